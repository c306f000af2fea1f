/* marin — key/value store and leases with fencing tokens.
 *
 * A small strongly consistent store that belongs to the runtime's backend:
 * on local, in memory (this process) or in a directory shared by the
 * processes of one machine (`local://?state=DIR`); on Redis, keys of the
 * namespace. Values are bytes (at most 64 MiB); keys are 1 to
 * MARIN_NAME_MAX bytes without NUL.
 *
 * Leases: marin_lease_acquire() gives @p owner the key for @p ttl_ms and a
 * fencing token that strictly increases per key (also across restarts of a
 * file-backed store). A holder that lost its lease (it expired and someone
 * else took it) is told apart by its stale token: marin_kv_put_fenced()
 * refuses its writes with MARIN_ECONFLICT. Lease keys and plain keys live in
 * separate spaces: a lease named "x" does not collide with the value "x".
 *
 * Thread safety: every function may be called from any thread at once.
 * Ownership: inputs are copied; the value from marin_kv_get() belongs to the
 * caller, who frees it with marin_free(). Since 0.2. */
#ifndef MARIN_KV_H
#define MARIN_KV_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest value accepted by the KV calls, in bytes. */
#define MARIN_KV_VALUE_MAX ((size_t)64 << 20)

/** Store @p val (@p len bytes, NULL when 0) under @p key, replacing any value.
 *  @return MARIN_OK; MARIN_EINVAL (bad key, NULL); MARIN_ETOOBIG (over
 *  MARIN_KV_VALUE_MAX); MARIN_EUNSUPPORTED (backend has no KV);
 *  MARIN_ESTATE (the runtime is closing); MARIN_EUNAVAILABLE (the store
 *  cannot be read or written: the message says which file and why);
 *  MARIN_EPROTO (a file of a file-backed store is corrupt: the message names
 *  it, and the keys it holds stay unusable until it is removed);
 *  MARIN_ENOMEM. */
MARIN_API int marin_kv_put(marin_runtime_t *rt, const char *key, const void *val,
                           size_t len);

/** Fetch @p key's value into a new buffer (*val, *len; free with marin_free;
 *  an empty value gives a non-NULL buffer of length 0).
 *  @return MARIN_OK; MARIN_ENOTFOUND (no such key, *val = NULL); as put. */
MARIN_API int marin_kv_get(marin_runtime_t *rt, const char *key, void **val, size_t *len);

/** Compare-and-swap: store @p val only when @p key currently holds exactly
 *  @p expect (@p elen bytes), or, with @p expect NULL, only when @p key does
 *  not exist.
 *  @return MARIN_OK; MARIN_ECONFLICT (the current value differs, or the key
 *  exists / is missing); as put. */
MARIN_API int marin_kv_cas(marin_runtime_t *rt, const char *key, const void *expect,
                           size_t elen, const void *val, size_t len);

/** Remove @p key. @return MARIN_OK; MARIN_ENOTFOUND; as put. */
MARIN_API int marin_kv_delete(marin_runtime_t *rt, const char *key);

/** Take the lease @p key for @p owner (1 to MARIN_NAME_MAX bytes) for
 *  @p ttl_ms (> 0) milliseconds. Free or expired: taken, with a new fencing
 *  token (strictly greater than every token given for this key before) in
 *  *fencing_token. Already held by @p owner: extended, same token.
 *  @return MARIN_OK; MARIN_EBUSY while another owner holds it (the message
 *  names the holder and when its lease expires); MARIN_EINVAL; as put. */
MARIN_API int marin_lease_acquire(marin_runtime_t *rt, const char *key, const char *owner,
                                  int64_t ttl_ms, uint64_t *fencing_token);

/** Extend @p owner's lease on @p key to @p ttl_ms from now.
 *  @return MARIN_OK; MARIN_EBUSY when @p owner no longer holds it (expired
 *  or taken: the message says who holds it now, or that nobody does);
 *  MARIN_EINVAL; as put. */
MARIN_API int marin_lease_renew(marin_runtime_t *rt, const char *key, const char *owner,
                                int64_t ttl_ms);

/** Give the lease back. The token counter of the key is kept.
 *  @return MARIN_OK; MARIN_EBUSY when @p owner does not hold it (as renew). */
MARIN_API int marin_lease_release(marin_runtime_t *rt, const char *key, const char *owner);

/** marin_kv_put, done only if @p fencing_token is still the token of the
 *  current, unexpired lease @p lease_key.
 *  @return MARIN_OK; MARIN_ECONFLICT when the token is stale or the lease
 *  expired or was released (the message gives both tokens); as put. */
MARIN_API int marin_kv_put_fenced(marin_runtime_t *rt, const char *key, const void *val,
                                  size_t len, const char *lease_key,
                                  uint64_t fencing_token);

/** Free a buffer marin allocated for the caller (a KV value). NULL is fine. */
MARIN_API void marin_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
