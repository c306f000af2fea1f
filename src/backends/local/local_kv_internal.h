/* The local backend's KV store and leases, shared by local_kv.c (the lease
 * rules, the in-memory form, the ops table) and local_kv_file.c (the
 * file-backed form). Private. */
#ifndef MARIN_LOCAL_KV_INTERNAL_H
#define MARIN_LOCAL_KV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "local_internal.h"

typedef struct lease_rec {
    char owner[MARIN_NAME_MAX + 1]; /* "" when released (or never taken) */
    int64_t expiry;                 /* ms on the store's clock */
    uint64_t token;                 /* last token given; 0: never */
} lease_rec;

/* The in-memory form's hash tables (local_kv.c). */
typedef struct hnode {
    struct hnode *next;
    uint64_t hash;
    size_t klen;
    char *key; /* points just past the enclosing node */
} hnode;

typedef struct table {
    hnode **slots;
    size_t nslots; /* a power of two */
    size_t count;
} table;

struct local_kv {
    pthread_mutex_t mu;
    char *dir;     /* NULL: in memory */
    table vals, leases;
    int lock_fd, kv_fd, lease_fd;
};

/* ---- local_kv.c: the lease rules, shared by both forms ---- */

enum { OP_ACQUIRE, OP_RENEW, OP_RELEASE };
/* The API function of each OP_*, for messages. */
extern const char *const marin__lkv_lease_fn[];
/* Apply lease operation @p op to @p r (already loaded) at @p now. */
int marin__lkv_lease_apply(int op, lease_rec *r, const char *key, const char *owner,
                           int64_t ttl_ms, int64_t now, uint64_t *token);
/* put_fenced: @p token must be the token of the current, unexpired lease. */
int marin__lkv_check_fence(const lease_rec *r, const char *key, const char *lease_key,
                           uint64_t token, int64_t now);

/* ---- local_kv_file.c: the file-backed form ---- */

/* Create (when missing) and open kv->dir with its kv/, lease/ and lock
 * file, at runtime open. MARIN_* with a message. */
int marin__lkv_file_open(struct local_kv *kv);
/* put, put_fenced (@p lease_key not NULL) and cas (@p cas set). */
int marin__lkv_file_store(struct local_kv *kv, const char *fn, const char *key,
                          const void *val, size_t len, const char *lease_key,
                          uint64_t token, int cas, const void *expect, size_t elen);
int marin__lkv_file_get(struct local_kv *kv, const char *key, void **val, size_t *len);
int marin__lkv_file_del(struct local_kv *kv, const char *key);
int marin__lkv_file_lease_op(struct local_kv *kv, int op, const char *key,
                             const char *owner, int64_t ttl_ms, uint64_t *token);

#endif
