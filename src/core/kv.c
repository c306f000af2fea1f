/* The KV and lease front (kv.h): argument checks, then the backend's store
 * through its ops table (backend.h). The semantics live in the backends; a
 * backend reports its own failures with marin__err. */
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"

/* Checks shared by every call; fills nothing on failure but the message. */
static int check_common(marin_runtime_t *rt, const char *key, const char *fn)
{
    if (!rt)
        return marin__err(MARIN_EINVAL, "%s: the runtime is NULL", fn);
    if (!key)
        return marin__err(MARIN_EINVAL, "%s: the key is NULL", fn);
    size_t n = strnlen(key, MARIN_NAME_MAX + 1);
    if (n == 0 || n > MARIN_NAME_MAX)
        return marin__err(MARIN_EINVAL, "%s: a key must be 1 to %d bytes (got %s)", fn,
                          MARIN_NAME_MAX, n == 0 ? "an empty one" : "a longer one");
    return MARIN_OK;
}

/* After the argument checks: the runtime must be open and have a store. */
static int check_store(marin_runtime_t *rt, const char *key, const char *fn)
{
    if (atomic_load(&rt->closing))
        return marin__err(MARIN_ESTATE, "%s: the runtime is closing; key '%s' was not "
                          "touched", fn, key);
    if (!rt->backend->kv)
        return marin__err(MARIN_EUNSUPPORTED, "%s: the '%s' backend has no KV store",
                          fn, rt->backend->name);
    return MARIN_OK;
}

static int check_value(const void *val, size_t len, const char *what, const char *key,
                       const char *fn)
{
    if (!val && len)
        return marin__err(MARIN_EINVAL, "%s: %s for key '%s' is NULL but its length is "
                          "%zu", fn, what, key, len);
    if (len > MARIN_KV_VALUE_MAX)
        return marin__err(MARIN_ETOOBIG, "%s: %s for key '%s' is %zu bytes, over the "
                          "limit of %zu (MARIN_KV_VALUE_MAX)", fn, what, key, len,
                          MARIN_KV_VALUE_MAX);
    return MARIN_OK;
}

static int check_owner(const char *owner, const char *key, const char *fn)
{
    if (!owner)
        return marin__err(MARIN_EINVAL, "%s: the owner of lease '%s' is NULL", fn, key);
    size_t n = strnlen(owner, MARIN_NAME_MAX + 1);
    if (n == 0 || n > MARIN_NAME_MAX)
        return marin__err(MARIN_EINVAL, "%s: the owner of lease '%s' must be 1 to %d "
                          "bytes", fn, key, MARIN_NAME_MAX);
    return MARIN_OK;
}

static int check_ttl(int64_t ttl_ms, const char *key, const char *fn)
{
    if (ttl_ms <= 0)
        return marin__err(MARIN_EINVAL, "%s: the ttl of lease '%s' must be > 0 ms (got "
                          "%lld)", fn, key, (long long)ttl_ms);
    return MARIN_OK;
}

int marin_kv_put(marin_runtime_t *rt, const char *key, const void *val, size_t len)
{
    static const char fn[] = "marin_kv_put";
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK)
        rc = check_value(val, len, "the value", key, fn);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK)
        rc = rt->backend->kv->put(rt->bstate, key, val, len);
    return marin__api_exit(rc);
}

int marin_kv_get(marin_runtime_t *rt, const char *key, void **val, size_t *len)
{
    static const char fn[] = "marin_kv_get";
    if (val)
        *val = NULL;
    if (len)
        *len = 0;
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK && (!val || !len))
        rc = marin__err(MARIN_EINVAL, "%s: val and len must not be NULL (key '%s')", fn,
                        key);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK) {
        rc = rt->backend->kv->get(rt->bstate, key, val, len);
        if (rc != MARIN_OK) {
            *val = NULL;
            *len = 0;
        }
    }
    return marin__api_exit(rc);
}

int marin_kv_cas(marin_runtime_t *rt, const char *key, const void *expect, size_t elen,
                 const void *val, size_t len)
{
    static const char fn[] = "marin_kv_cas";
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK && !expect && elen)
        rc = marin__err(MARIN_EINVAL, "%s: expect for key '%s' is NULL (\"must not "
                        "exist\") but its length is %zu", fn, key, elen);
    if (rc == MARIN_OK && elen > MARIN_KV_VALUE_MAX)
        rc = check_value(expect, elen, "the expected value", key, fn);
    if (rc == MARIN_OK)
        rc = check_value(val, len, "the value", key, fn);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK)
        rc = rt->backend->kv->cas(rt->bstate, key, expect, elen, val, len);
    return marin__api_exit(rc);
}

int marin_kv_delete(marin_runtime_t *rt, const char *key)
{
    static const char fn[] = "marin_kv_delete";
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK)
        rc = rt->backend->kv->del(rt->bstate, key);
    return marin__api_exit(rc);
}

int marin_lease_acquire(marin_runtime_t *rt, const char *key, const char *owner,
                        int64_t ttl_ms, uint64_t *fencing_token)
{
    static const char fn[] = "marin_lease_acquire";
    if (fencing_token)
        *fencing_token = 0;
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK)
        rc = check_owner(owner, key, fn);
    if (rc == MARIN_OK)
        rc = check_ttl(ttl_ms, key, fn);
    if (rc == MARIN_OK && !fencing_token)
        rc = marin__err(MARIN_EINVAL, "%s: fencing_token must not be NULL (lease '%s')",
                        fn, key);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK) {
        rc = rt->backend->kv->lease_acquire(rt->bstate, key, owner, ttl_ms,
                                            fencing_token);
        if (rc != MARIN_OK)
            *fencing_token = 0;
    }
    return marin__api_exit(rc);
}

int marin_lease_renew(marin_runtime_t *rt, const char *key, const char *owner,
                      int64_t ttl_ms)
{
    static const char fn[] = "marin_lease_renew";
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK)
        rc = check_owner(owner, key, fn);
    if (rc == MARIN_OK)
        rc = check_ttl(ttl_ms, key, fn);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK)
        rc = rt->backend->kv->lease_renew(rt->bstate, key, owner, ttl_ms);
    return marin__api_exit(rc);
}

int marin_lease_release(marin_runtime_t *rt, const char *key, const char *owner)
{
    static const char fn[] = "marin_lease_release";
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK)
        rc = check_owner(owner, key, fn);
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK)
        rc = rt->backend->kv->lease_release(rt->bstate, key, owner);
    return marin__api_exit(rc);
}

int marin_kv_put_fenced(marin_runtime_t *rt, const char *key, const void *val, size_t len,
                        const char *lease_key, uint64_t fencing_token)
{
    static const char fn[] = "marin_kv_put_fenced";
    int rc = check_common(rt, key, fn);
    if (rc == MARIN_OK)
        rc = check_value(val, len, "the value", key, fn);
    if (rc == MARIN_OK && !lease_key)
        rc = marin__err(MARIN_EINVAL, "%s: the lease key for '%s' is NULL", fn, key);
    if (rc == MARIN_OK) {
        size_t n = strnlen(lease_key, MARIN_NAME_MAX + 1);
        if (n == 0 || n > MARIN_NAME_MAX)
            rc = marin__err(MARIN_EINVAL, "%s: the lease key for '%s' must be 1 to %d "
                            "bytes", fn, key, MARIN_NAME_MAX);
    }
    if (rc == MARIN_OK)
        rc = check_store(rt, key, fn);
    if (rc == MARIN_OK)
        rc = rt->backend->kv->put_fenced(rt->bstate, key, val, len, lease_key,
                                         fencing_token);
    return marin__api_exit(rc);
}

void marin_free(void *p) { marin__free(p); }
