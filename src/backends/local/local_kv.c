/* The local backend's KV store and leases (kv.h), in one of two forms:
 *
 * In memory (no `state=` in the URI): two chained hash tables under one
 * mutex, values (key -> bytes) and leases (key -> owner, expiry on the
 * monotonic clock, token). A released lease keeps its node, so its token
 * counter never goes back.
 *
 * File-backed (`local://?state=DIR`), shared by the processes of one
 * machine: local_kv_file.c, which describes its files.
 *
 * Here: the lease rules both forms share, the in-memory form, opening and
 * closing the store, and the ops table that sends each call to one form or
 * the other (local_kv_internal.h has what the two files share). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"
#include "fail.h"
#include "local_kv_internal.h"

/* ---- leases: the rules, shared by both forms ---- */

static int lease_held(const lease_rec *r, int64_t now)
{
    return r->owner[0] && r->expiry > now;
}

static int64_t add_ms(int64_t now, int64_t ttl_ms)
{
    return ttl_ms > INT64_MAX - now ? INT64_MAX : now + ttl_ms;
}

static int decide_acquire(lease_rec *r, const char *key, const char *owner,
                          int64_t ttl_ms, int64_t now, uint64_t *token)
{
    if (lease_held(r, now)) {
        if (strcmp(r->owner, owner) != 0)
            return marin__err(MARIN_EBUSY, "marin_lease_acquire: lease '%s' is held by "
                              "'%s' (expires in %lld ms); '%s' cannot take it", key,
                              r->owner, (long long)(r->expiry - now), owner);
    } else {
        r->token++;
        snprintf(r->owner, sizeof r->owner, "%s", owner);
    }
    r->expiry = add_ms(now, ttl_ms);
    *token = r->token;
    return MARIN_OK;
}

/* Renew and release: @p owner must hold the lease now. */
static int check_holder(const lease_rec *r, const char *key, const char *owner,
                        int64_t now, const char *fn)
{
    if (lease_held(r, now)) {
        if (strcmp(r->owner, owner) == 0)
            return MARIN_OK;
        return marin__err(MARIN_EBUSY, "%s: lease '%s' is held by '%s' (expires in %lld "
                          "ms), not by '%s'", fn, key, r->owner,
                          (long long)(r->expiry - now), owner);
    }
    if (r->owner[0])
        return marin__err(MARIN_EBUSY, "%s: lease '%s' of '%s' expired %lld ms ago and "
                          "nobody holds it now; '%s' must acquire it again", fn, key,
                          r->owner, (long long)(now - r->expiry), owner);
    return marin__err(MARIN_EBUSY, "%s: nobody holds lease '%s' (%s); '%s' must acquire "
                      "it first", fn, key,
                      r->token ? "it was released" : "never acquired", owner);
}

/* put_fenced: @p token must be the token of the current, unexpired lease. */
int marin__lkv_check_fence(const lease_rec *r, const char *key, const char *lease_key,
                           uint64_t token, int64_t now)
{
    if (lease_held(r, now) && r->token == token)
        return MARIN_OK;
    char why[MARIN_NAME_MAX + 64];
    if (!r->token)
        snprintf(why, sizeof why, "was never acquired");
    else if (lease_held(r, now))
        snprintf(why, sizeof why, "is held by '%s' under another token", r->owner);
    else if (r->owner[0])
        snprintf(why, sizeof why, "expired %lld ms ago", (long long)(now - r->expiry));
    else
        snprintf(why, sizeof why, "was released");
    return marin__err(MARIN_ECONFLICT, "marin_kv_put_fenced: refused to write '%s': "
                      "lease '%s' %s (current token %llu, given %llu)", key, lease_key,
                      why, (unsigned long long)r->token, (unsigned long long)token);
}

const char *const marin__lkv_lease_fn[] = {"marin_lease_acquire", "marin_lease_renew",
                                           "marin_lease_release"};

/* Apply lease operation @p op to @p r (already loaded) at @p now. */
int marin__lkv_lease_apply(int op, lease_rec *r, const char *key, const char *owner,
                           int64_t ttl_ms, int64_t now, uint64_t *token)
{
    if (op == OP_ACQUIRE)
        return decide_acquire(r, key, owner, ttl_ms, now, token);
    int rc = check_holder(r, key, owner, now, marin__lkv_lease_fn[op]);
    if (rc != MARIN_OK)
        return rc;
    if (op == OP_RENEW)
        r->expiry = add_ms(now, ttl_ms);
    else
        r->owner[0] = '\0';
    return MARIN_OK;
}

/* ---- the in-memory form ---- */

typedef struct vnode {
    hnode h;
    void *val; /* NULL when len is 0 */
    size_t len;
} vnode;

typedef struct lnode {
    hnode h;
    lease_rec rec;
} lnode;

enum { TABLE_MIN = 16 };

static int table_init(table *t)
{
    t->slots = marin__calloc(TABLE_MIN, sizeof *t->slots);
    t->nslots = TABLE_MIN;
    t->count = 0;
    return t->slots ? MARIN_OK : MARIN_ENOMEM;
}

static void table_free(table *t, int values)
{
    for (size_t i = 0; t->slots && i < t->nslots; i++)
        for (hnode *n = t->slots[i], *next; n; n = next) {
            next = n->next;
            if (values)
                marin__free(((vnode *)n)->val);
            marin__free(n);
        }
    marin__free(t->slots);
    t->slots = NULL;
}

/* The link that points at @p key's node, or at NULL where it would go. */
static hnode **table_link(table *t, const char *key, size_t klen, uint64_t hash)
{
    hnode **link = &t->slots[hash & (t->nslots - 1)];
    while (*link && ((*link)->hash != hash || (*link)->klen != klen ||
                     memcmp((*link)->key, key, klen) != 0))
        link = &(*link)->next;
    return link;
}

static void table_add(table *t, hnode *n)
{
    if (t->count >= t->nslots) {
        /* Growing is best effort: out of memory, the chains get longer. */
        hnode **slots = marin__calloc(t->nslots * 2, sizeof *slots);
        if (slots) {
            size_t mask = t->nslots * 2 - 1;
            for (size_t i = 0; i < t->nslots; i++)
                for (hnode *m = t->slots[i], *next; m; m = next) {
                    next = m->next;
                    m->next = slots[m->hash & mask];
                    slots[m->hash & mask] = m;
                }
            marin__free(t->slots);
            t->slots = slots;
            t->nslots *= 2;
        }
    }
    hnode **head = &t->slots[n->hash & (t->nslots - 1)];
    n->next = *head;
    *head = n;
    t->count++;
}

/* A zeroed node of @p size bytes followed by a copy of the key. */
static hnode *node_new(size_t size, const char *key, size_t klen, uint64_t hash)
{
    hnode *n = marin__calloc(1, size + klen + 1);
    if (!n)
        return NULL;
    n->key = (char *)n + size;
    memcpy(n->key, key, klen);
    n->hash = hash;
    n->klen = klen;
    return n;
}

static lnode *mem_lease(struct local_kv *kv, const char *key)
{
    size_t klen = strlen(key);
    return (lnode *)*table_link(&kv->leases, key, klen, XXH3_64bits(key, klen));
}

/* put, put_fenced (@p lease_key not NULL) and cas (@p cas set). */
static int mem_store(struct local_kv *kv, const char *fn, const char *key,
                     const void *val, size_t len, const char *lease_key, uint64_t token,
                     int cas, const void *expect, size_t elen)
{
    void *copy = NULL;
    if (len && !(copy = marin__memdup(val, len)))
        return marin__err(MARIN_ENOMEM, "%s: out of memory copying the value of '%s' "
                          "(%zu bytes)", fn, key, len);
    size_t klen = strlen(key);
    uint64_t hash = XXH3_64bits(key, klen);
    int rc = MARIN_OK;
    pthread_mutex_lock(&kv->mu);
    if (lease_key) {
        lnode *l = mem_lease(kv, lease_key);
        lease_rec none = {.token = 0};
        rc = marin__lkv_check_fence(l ? &l->rec : &none, key, lease_key, token,
                                    marin__now_ms());
    }
    hnode **link = table_link(&kv->vals, key, klen, hash);
    vnode *n = (vnode *)*link;
    if (rc == MARIN_OK && cas) {
        if (!expect && n)
            rc = marin__err(MARIN_ECONFLICT, "%s: key '%s' exists (%zu bytes), expected "
                            "it absent", fn, key, n->len);
        else if (expect && !n)
            rc = marin__err(MARIN_ECONFLICT, "%s: key '%s' does not exist, expected a "
                            "value of %zu bytes", fn, key, elen);
        else if (expect && (n->len != elen || (elen && memcmp(n->val, expect, elen))))
            rc = marin__err(MARIN_ECONFLICT, "%s: the value of '%s' differs from the "
                            "expected one (%zu bytes now, %zu expected)", fn, key,
                            n->len, elen);
    }
    if (rc == MARIN_OK) {
        if (n) {
            void *old = n->val;
            n->val = copy;
            n->len = len;
            copy = old;
        } else if ((n = (vnode *)node_new(sizeof *n, key, klen, hash))) {
            n->val = copy;
            n->len = len;
            copy = NULL;
            table_add(&kv->vals, &n->h);
        } else {
            rc = marin__err(MARIN_ENOMEM, "%s: out of memory adding key '%s'", fn, key);
        }
    }
    pthread_mutex_unlock(&kv->mu);
    marin__free(copy);
    return rc;
}

static int mem_get(struct local_kv *kv, const char *key, void **val, size_t *len)
{
    size_t klen = strlen(key);
    int rc = MARIN_OK;
    pthread_mutex_lock(&kv->mu);
    vnode *n = (vnode *)*table_link(&kv->vals, key, klen, XXH3_64bits(key, klen));
    if (!n) {
        rc = marin__err(MARIN_ENOTFOUND, "marin_kv_get: no key '%s' in the store", key);
    } else if (!(*val = marin__malloc(n->len))) {
        rc = marin__err(MARIN_ENOMEM, "marin_kv_get: out of memory for the value of '%s' "
                        "(%zu bytes)", key, n->len);
    } else {
        if (n->len)
            memcpy(*val, n->val, n->len);
        *len = n->len;
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

static int mem_del(struct local_kv *kv, const char *key)
{
    size_t klen = strlen(key);
    pthread_mutex_lock(&kv->mu);
    hnode **link = table_link(&kv->vals, key, klen, XXH3_64bits(key, klen));
    vnode *n = (vnode *)*link;
    if (n) {
        *link = n->h.next;
        kv->vals.count--;
    }
    pthread_mutex_unlock(&kv->mu);
    if (!n)
        return marin__err(MARIN_ENOTFOUND, "marin_kv_delete: no key '%s' in the store",
                          key);
    marin__free(n->val);
    marin__free(n);
    return MARIN_OK;
}

static int mem_lease_op(struct local_kv *kv, int op, const char *key, const char *owner,
                        int64_t ttl_ms, uint64_t *token)
{
    size_t klen = strlen(key);
    uint64_t hash = XXH3_64bits(key, klen);
    int rc;
    pthread_mutex_lock(&kv->mu);
    lnode *n = (lnode *)*table_link(&kv->leases, key, klen, hash);
    if (n) {
        rc = marin__lkv_lease_apply(op, &n->rec, key, owner, ttl_ms, marin__now_ms(),
                                    token);
    } else if (op != OP_ACQUIRE) {
        lease_rec none = {.token = 0};
        rc = marin__lkv_lease_apply(op, &none, key, owner, ttl_ms, marin__now_ms(),
                                    token);
    } else if (!(n = (lnode *)node_new(sizeof *n, key, klen, hash))) {
        rc = marin__err(MARIN_ENOMEM, "marin_lease_acquire: out of memory adding lease "
                        "'%s'", key);
    } else {
        rc = marin__lkv_lease_apply(op, &n->rec, key, owner, ttl_ms, marin__now_ms(),
                                    token);
        table_add(&kv->leases, &n->h); /* a fresh lease always succeeds */
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

void marin__local_kv_close(local_state *s)
{
    struct local_kv *kv = s->kv;
    if (!kv)
        return;
    s->kv = NULL;
    table_free(&kv->vals, 1);
    table_free(&kv->leases, 0);
    if (kv->lock_fd >= 0)
        close(kv->lock_fd);
    if (kv->kv_fd >= 0)
        close(kv->kv_fd);
    if (kv->lease_fd >= 0)
        close(kv->lease_fd);
    marin__free(kv->dir);
    pthread_mutex_destroy(&kv->mu);
    marin__free(kv);
}

int marin__local_kv_open(local_state *s, const char *state_dir)
{
    struct local_kv *kv = marin__calloc(1, sizeof *kv);
    if (!kv)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory for the KV "
                          "store");
    kv->lock_fd = kv->kv_fd = kv->lease_fd = -1;
    pthread_mutex_init(&kv->mu, NULL);
    s->kv = kv;
    int rc;
    if (!state_dir) {
        if (table_init(&kv->vals) != MARIN_OK || table_init(&kv->leases) != MARIN_OK)
            rc = marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory for the KV "
                            "store");
        else
            rc = MARIN_OK;
    } else if (!state_dir[0]) {
        rc = marin__err(MARIN_EINVAL, "marin_runtime_open: the local URI's state= is "
                        "empty; give a directory for the KV store");
    } else if (!(kv->dir = marin__strdup(state_dir))) {
        rc = marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory for the KV "
                        "store");
    } else {
        rc = marin__lkv_file_open(kv);
    }
    if (rc != MARIN_OK)
        marin__local_kv_close(s);
    return rc;
}

/* ---- the ops table ---- */

static struct local_kv *store_of(void *state)
{
    return ((local_state *)state)->kv;
}

static int op_put(void *state, const char *key, const void *val, size_t len)
{
    struct local_kv *kv = store_of(state);
    return kv->dir ? marin__lkv_file_store(kv, "marin_kv_put", key, val, len, NULL, 0, 0,
                                           NULL, 0)
                   : mem_store(kv, "marin_kv_put", key, val, len, NULL, 0, 0, NULL, 0);
}

static int op_get(void *state, const char *key, void **val, size_t *len)
{
    struct local_kv *kv = store_of(state);
    return kv->dir ? marin__lkv_file_get(kv, key, val, len) : mem_get(kv, key, val, len);
}

static int op_cas(void *state, const char *key, const void *expect, size_t elen,
                  const void *val, size_t len)
{
    struct local_kv *kv = store_of(state);
    static const char fn[] = "marin_kv_cas";
    return kv->dir ? marin__lkv_file_store(kv, fn, key, val, len, NULL, 0, 1, expect,
                                           elen)
                   : mem_store(kv, fn, key, val, len, NULL, 0, 1, expect, elen);
}

static int op_del(void *state, const char *key)
{
    struct local_kv *kv = store_of(state);
    return kv->dir ? marin__lkv_file_del(kv, key) : mem_del(kv, key);
}

static int lease_op(void *state, int op, const char *key, const char *owner,
                    int64_t ttl_ms, uint64_t *token)
{
    struct local_kv *kv = store_of(state);
    uint64_t unused;
    if (!token)
        token = &unused;
    return kv->dir ? marin__lkv_file_lease_op(kv, op, key, owner, ttl_ms, token)
                   : mem_lease_op(kv, op, key, owner, ttl_ms, token);
}

static int op_lease_acquire(void *state, const char *key, const char *owner,
                            int64_t ttl_ms, uint64_t *token)
{
    return lease_op(state, OP_ACQUIRE, key, owner, ttl_ms, token);
}

static int op_lease_renew(void *state, const char *key, const char *owner, int64_t ttl_ms)
{
    return lease_op(state, OP_RENEW, key, owner, ttl_ms, NULL);
}

static int op_lease_release(void *state, const char *key, const char *owner)
{
    return lease_op(state, OP_RELEASE, key, owner, 0, NULL);
}

static int op_put_fenced(void *state, const char *key, const void *val, size_t len,
                         const char *lease_key, uint64_t token)
{
    struct local_kv *kv = store_of(state);
    static const char fn[] = "marin_kv_put_fenced";
    return kv->dir ? marin__lkv_file_store(kv, fn, key, val, len, lease_key, token, 0,
                                           NULL, 0)
                   : mem_store(kv, fn, key, val, len, lease_key, token, 0, NULL, 0);
}

const marin__kv_ops marin__local_kv_ops = {
    .put = op_put,
    .get = op_get,
    .cas = op_cas,
    .del = op_del,
    .lease_acquire = op_lease_acquire,
    .lease_renew = op_lease_renew,
    .lease_release = op_lease_release,
    .put_fenced = op_put_fenced,
};
