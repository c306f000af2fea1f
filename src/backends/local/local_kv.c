/* The local backend's KV store and leases (kv.h), in one of two forms:
 *
 * In memory (no `state=` in the URI): two chained hash tables under one
 * mutex, values (key -> bytes) and leases (key -> owner, expiry on the
 * monotonic clock, token). A released lease keeps its node, so its token
 * counter never goes back.
 *
 * File-backed (`local://?state=DIR`), shared by the processes of one
 * machine:
 *
 *   DIR/lock          empty; every operation takes an open-file-description
 *                     lock on it (F_OFD_SETLKW): a write lock to change the
 *                     store, a read lock to read it. OFD locks belong to the
 *                     open file, so two runtimes of one process exclude each
 *                     other too, and a process that dies lets go. Threads of
 *                     one runtime share its descriptor, so they also take the
 *                     store's mutex first.
 *   DIR/kv/NAME       the values whose key hashes to NAME
 *   DIR/lease/NAME    the leases whose key hashes to NAME
 *
 * NAME is the XXH3-128 of the key in 32 hex digits (a key of 255 bytes in
 * hex would not fit NAME_MAX). A file is a bucket: it stores the full keys,
 * so two keys with one hash (never seen in practice) simply share a file.
 * Format, integers little-endian:
 *
 *   "MKVB" (values) or "MKLB" (leases), u32 version = 1, u32 count (>= 1),
 *   u32 reserved = 0, then count entries, then u64 XXH3-64 of all the bytes
 *   before it. A value entry is u32 klen, key, u64 vlen, value; a lease
 *   entry is u32 klen, key, u32 olen, owner (olen 0: released), i64 expiry
 *   (CLOCK_REALTIME ms, since other processes compare it), u64 token.
 *
 * Every length is checked against the file's size and the API's limits, and
 * every key against the file's name; a file that fails a check is
 * MARIN_EPROTO with a message naming it, never a crash, and it is left as
 * it is (remove it by hand to drop the keys it held).
 *
 * A change writes NAME.tmp, fsyncs it, renames it over NAME and fsyncs the
 * directory, so a crash leaves the old or the new bucket, whole. A value
 * bucket left with no entry is unlinked; lease buckets stay, with the last
 * token, so tokens keep increasing across restarts of the store. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"
#include "fail.h"
#include "local_internal.h"

/* ---- leases: the rules, shared by both forms ---- */

typedef struct lease_rec {
    char owner[MARIN_NAME_MAX + 1]; /* "" when released (or never taken) */
    int64_t expiry;                 /* ms on the store's clock */
    uint64_t token;                 /* last token given; 0: never */
} lease_rec;

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
static int check_fence(const lease_rec *r, const char *key, const char *lease_key,
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

/* ---- the in-memory form ---- */

typedef struct hnode {
    struct hnode *next;
    uint64_t hash;
    size_t klen;
    char *key; /* points just past the enclosing node */
} hnode;

typedef struct vnode {
    hnode h;
    void *val; /* NULL when len is 0 */
    size_t len;
} vnode;

typedef struct lnode {
    hnode h;
    lease_rec rec;
} lnode;

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
        rc = check_fence(l ? &l->rec : &none, key, lease_key, token, marin__now_ms());
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

enum { OP_ACQUIRE, OP_RENEW, OP_RELEASE };
static const char *const op_fn[] = {"marin_lease_acquire", "marin_lease_renew",
                                    "marin_lease_release"};

/* Apply lease operation @p op to @p r (already loaded) at @p now. */
static int lease_apply(int op, lease_rec *r, const char *key, const char *owner,
                       int64_t ttl_ms, int64_t now, uint64_t *token)
{
    if (op == OP_ACQUIRE)
        return decide_acquire(r, key, owner, ttl_ms, now, token);
    int rc = check_holder(r, key, owner, now, op_fn[op]);
    if (rc != MARIN_OK)
        return rc;
    if (op == OP_RENEW)
        r->expiry = add_ms(now, ttl_ms);
    else
        r->owner[0] = '\0';
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
        rc = lease_apply(op, &n->rec, key, owner, ttl_ms, marin__now_ms(), token);
    } else if (op != OP_ACQUIRE) {
        lease_rec none = {.token = 0};
        rc = lease_apply(op, &none, key, owner, ttl_ms, marin__now_ms(), token);
    } else if (!(n = (lnode *)node_new(sizeof *n, key, klen, hash))) {
        rc = marin__err(MARIN_ENOMEM, "marin_lease_acquire: out of memory adding lease "
                        "'%s'", key);
    } else {
        rc = lease_apply(op, &n->rec, key, owner, ttl_ms, marin__now_ms(), token);
        table_add(&kv->leases, &n->h); /* a fresh lease always succeeds */
    }
    pthread_mutex_unlock(&kv->mu);
    return rc;
}

/* ---- the file-backed form ---- */

enum { KIND_VAL, KIND_LEASE };
static const char *const kind_dir[] = {"kv", "lease"};
static const char kind_magic[2][4] = {{'M', 'K', 'V', 'B'}, {'M', 'K', 'L', 'B'}};

#define FORMAT_VERSION 1u
#define HDR_SIZE 16u
#define TRAILER_SIZE 8u
/* No bucket is near this big: one value at most MARIN_KV_VALUE_MAX, and
 * keys that share a 128-bit hash are not expected at all. */
#define BUCKET_MAX ((size_t)16 * (MARIN_KV_VALUE_MAX + 4096))

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The bucket file name of @p key: 32 hex digits and a NUL. */
static void bucket_name(const char *key, size_t klen, char out[33])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(key, klen));
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[c.digest[i] >> 4];
        out[2 * i + 1] = hex[c.digest[i] & 15];
    }
    out[32] = '\0';
}

static int unavailable(struct local_kv *kv, const char *fn, const char *what, int kind,
                       const char *name, int err)
{
    char buf[128];
    return marin__err(MARIN_EUNAVAILABLE, "%s: cannot %s '%s/%s/%s': %s", fn, what,
                      kv->dir, kind_dir[kind], name, strerror_r(err, buf, sizeof buf));
}

static int corrupt(struct local_kv *kv, const char *fn, int kind, const char *name,
                   const char *why)
{
    return marin__err(MARIN_EPROTO, "%s: the KV file '%s/%s/%s' is corrupt (%s); remove "
                      "it to drop the keys it holds", fn, kv->dir, kind_dir[kind], name,
                      why);
}

static int file_lock(struct local_kv *kv, short type, const char *fn)
{
    pthread_mutex_lock(&kv->mu);
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET};
    while (fcntl(kv->lock_fd, F_OFD_SETLKW, &fl) != 0) {
        int err = errno;
        if (err == EINTR)
            continue;
        pthread_mutex_unlock(&kv->mu);
        char buf[128];
        return marin__err(MARIN_EUNAVAILABLE, "%s: cannot lock '%s/lock': %s", fn,
                          kv->dir, strerror_r(err, buf, sizeof buf));
    }
    return MARIN_OK;
}

static void file_unlock(struct local_kv *kv)
{
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
    (void)fcntl(kv->lock_fd, F_OFD_SETLK, &fl);
    pthread_mutex_unlock(&kv->mu);
}

/* One entry of a bucket, pointing into the file's bytes. */
typedef struct entry {
    const char *key;
    size_t klen;
    const unsigned char *val; /* values */
    size_t vlen;
    const char *owner;        /* leases */
    size_t olen;
    int64_t expiry;
    uint64_t token;
    size_t off, size;         /* the entry's bytes within the file */
} entry;

typedef struct bucket {
    char name[33];
    int kind;
    unsigned char *buf; /* the file's bytes; NULL when there is no file */
    size_t len;
    uint32_t count;
    int found;          /* the key asked for has an entry: hit */
    entry hit;
} bucket;

/* Parse the entry at @p off (before @p end); NULL when good, else why not. */
static const char *entry_parse(int kind, const unsigned char *buf, size_t off, size_t end,
                               entry *e)
{
    size_t at = off;
    if (end - at < 4)
        return "an entry runs past the end";
    e->klen = get_u32(buf + at);
    at += 4;
    if (e->klen == 0 || e->klen > MARIN_NAME_MAX)
        return "a key length is out of range";
    if (end - at < e->klen)
        return "a key runs past the end";
    e->key = (const char *)buf + at;
    if (memchr(e->key, '\0', e->klen))
        return "a key holds a NUL byte";
    at += e->klen;
    if (kind == KIND_VAL) {
        if (end - at < 8)
            return "a value length runs past the end";
        uint64_t vlen = get_u64(buf + at);
        at += 8;
        if (vlen > MARIN_KV_VALUE_MAX || vlen > end - at)
            return "a value length is out of range";
        e->vlen = (size_t)vlen;
        e->val = buf + at;
        at += e->vlen;
    } else {
        if (end - at < 4)
            return "an owner length runs past the end";
        e->olen = get_u32(buf + at);
        at += 4;
        if (e->olen > MARIN_NAME_MAX || e->olen > end - at)
            return "an owner length is out of range";
        e->owner = (const char *)buf + at;
        if (memchr(e->owner, '\0', e->olen))
            return "an owner holds a NUL byte";
        at += e->olen;
        if (end - at < 16)
            return "a lease runs past the end";
        e->expiry = (int64_t)get_u64(buf + at);
        e->token = get_u64(buf + at + 8);
        at += 16;
        if (e->token == 0)
            return "a lease has token 0";
    }
    e->off = off;
    e->size = at - off;
    return NULL;
}

/* Check the whole of b's file and find @p key's entry in it. */
static int bucket_scan(struct local_kv *kv, bucket *b, const char *key, size_t klen,
                       const char *fn)
{
    const unsigned char *buf = b->buf;
    size_t len = b->len;
    if (len < HDR_SIZE + TRAILER_SIZE)
        return corrupt(kv, fn, b->kind, b->name, "too short");
    if (memcmp(buf, kind_magic[b->kind], 4) != 0)
        return corrupt(kv, fn, b->kind, b->name, "bad magic");
    if (get_u32(buf + 4) != FORMAT_VERSION)
        return corrupt(kv, fn, b->kind, b->name, "unknown format version");
    size_t end = len - TRAILER_SIZE;
    if (get_u64(buf + end) != XXH3_64bits(buf, end))
        return corrupt(kv, fn, b->kind, b->name, "checksum mismatch");
    b->count = get_u32(buf + 8);
    if (b->count == 0 || get_u32(buf + 12) != 0)
        return corrupt(kv, fn, b->kind, b->name, "bad header");
    size_t off = HDR_SIZE;
    for (uint32_t i = 0; i < b->count; i++) {
        entry e;
        const char *why = entry_parse(b->kind, buf, off, end, &e);
        if (why)
            return corrupt(kv, fn, b->kind, b->name, why);
        char name[33];
        bucket_name(e.key, e.klen, name);
        if (memcmp(name, b->name, sizeof name) != 0)
            return corrupt(kv, fn, b->kind, b->name, "it holds a key of another file");
        if (e.klen == klen && memcmp(e.key, key, klen) == 0) {
            if (b->found)
                return corrupt(kv, fn, b->kind, b->name, "a key appears twice");
            b->found = 1;
            b->hit = e;
        }
        off += e.size;
    }
    if (off != end)
        return corrupt(kv, fn, b->kind, b->name, "bytes after the last entry");
    return MARIN_OK;
}

static void bucket_free(bucket *b)
{
    marin__free(b->buf);
    b->buf = NULL;
}

/* Read the bucket of @p key (none: empty) and find the key in it. */
static int bucket_load(struct local_kv *kv, int kind, const char *key, bucket *b,
                       const char *fn)
{
    size_t klen = strlen(key);
    memset(b, 0, sizeof *b);
    b->kind = kind;
    bucket_name(key, klen, b->name);
    int dfd = kind == KIND_VAL ? kv->kv_fd : kv->lease_fd;
    int fd = openat(dfd, b->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) /* no file: an empty bucket */
        return errno == ENOENT ? MARIN_OK
                               : unavailable(kv, fn, "open", kind, b->name, errno);
    struct stat st;
    int rc = MARIN_OK;
    if (fstat(fd, &st) != 0) {
        rc = unavailable(kv, fn, "stat", kind, b->name, errno);
    } else if (!S_ISREG(st.st_mode)) {
        rc = corrupt(kv, fn, kind, b->name, "not a regular file");
    } else if ((uint64_t)st.st_size > BUCKET_MAX) {
        rc = corrupt(kv, fn, kind, b->name, "far too large");
    } else if (!(b->buf = marin__malloc((size_t)st.st_size))) {
        rc = marin__err(MARIN_ENOMEM, "%s: out of memory reading '%s/%s/%s' (%lld bytes)",
                        fn, kv->dir, kind_dir[kind], b->name, (long long)st.st_size);
    } else {
        size_t want = (size_t)st.st_size;
        while (b->len < want) {
            ssize_t n = read(fd, b->buf + b->len, want - b->len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = unavailable(kv, fn, "read", kind, b->name, errno);
                break;
            }
            if (n == 0)
                break; /* shrank under us: the checks below catch it */
            b->len += (size_t)n;
        }
    }
    close(fd);
    if (rc == MARIN_OK)
        rc = bucket_scan(kv, b, key, klen, fn);
    if (rc != MARIN_OK)
        bucket_free(b);
    return rc;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replace the file of @p b by @p len bytes at @p data (len 0: remove it). */
static int file_replace(struct local_kv *kv, const bucket *b, const unsigned char *data,
                        size_t len, const char *fn)
{
    int dfd = b->kind == KIND_VAL ? kv->kv_fd : kv->lease_fd;
    if (len == 0) {
        if (unlinkat(dfd, b->name, 0) != 0 && errno != ENOENT)
            return unavailable(kv, fn, "remove", b->kind, b->name, errno);
    } else {
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%s.tmp", b->name);
        int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                        0666);
        if (fd < 0)
            return unavailable(kv, fn, "create", b->kind, tmp, errno);
        if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
            int err = errno;
            close(fd);
            unlinkat(dfd, tmp, 0);
            return unavailable(kv, fn, "write", b->kind, tmp, err);
        }
        if (close(fd) != 0 || renameat(dfd, tmp, dfd, b->name) != 0) {
            int err = errno;
            unlinkat(dfd, tmp, 0);
            return unavailable(kv, fn, "write", b->kind, b->name, err);
        }
    }
    if (fsync(dfd) != 0)
        return unavailable(kv, fn, "sync the directory of", b->kind, b->name, errno);
    return MARIN_OK;
}

/* Write b's bucket again: its entries but the hit, plus @p add_* when
 * @p add is set. */
static int bucket_write(struct local_kv *kv, const bucket *b, int add, const char *key,
                        const void *val, size_t vlen, const lease_rec *rec,
                        const char *fn)
{
    size_t klen = strlen(key), olen = rec ? strlen(rec->owner) : 0;
    size_t kept = b->buf ? b->len - HDR_SIZE - TRAILER_SIZE : 0;
    uint32_t count = b->buf ? b->count : 0;
    if (b->found) {
        kept -= b->hit.size;
        count--;
    }
    size_t add_size = 0;
    if (add) {
        add_size = 4 + klen + (b->kind == KIND_VAL ? 8 + vlen : 4 + olen + 16);
        count++;
    }
    if (count == 0)
        return file_replace(kv, b, NULL, 0, fn);
    size_t len = HDR_SIZE + kept + add_size + TRAILER_SIZE;
    unsigned char *out = marin__malloc(len);
    if (!out)
        return marin__err(MARIN_ENOMEM, "%s: out of memory writing '%s/%s/%s' (%zu "
                          "bytes)", fn, kv->dir, kind_dir[b->kind], b->name, len);
    memcpy(out, kind_magic[b->kind], 4);
    put_u32(out + 4, FORMAT_VERSION);
    put_u32(out + 8, count);
    put_u32(out + 12, 0);
    unsigned char *p = out + HDR_SIZE;
    if (b->buf) {
        size_t end = b->len - TRAILER_SIZE;
        size_t cut = b->found ? b->hit.off : end;
        size_t resume = b->found ? b->hit.off + b->hit.size : end;
        memcpy(p, b->buf + HDR_SIZE, cut - HDR_SIZE);
        p += cut - HDR_SIZE;
        memcpy(p, b->buf + resume, end - resume);
        p += end - resume;
    }
    if (add) {
        put_u32(p, (uint32_t)klen);
        memcpy(p + 4, key, klen);
        p += 4 + klen;
        if (b->kind == KIND_VAL) {
            put_u64(p, vlen);
            if (vlen)
                memcpy(p + 8, val, vlen);
            p += 8 + vlen;
        } else {
            put_u32(p, (uint32_t)olen);
            memcpy(p + 4, rec->owner, olen);
            p += 4 + olen;
            put_u64(p, (uint64_t)rec->expiry);
            put_u64(p + 8, rec->token);
            p += 16;
        }
    }
    put_u64(p, XXH3_64bits(out, (size_t)(p - out)));
    int rc = file_replace(kv, b, out, len, fn);
    marin__free(out);
    return rc;
}

static void rec_from(const bucket *b, lease_rec *r)
{
    memset(r, 0, sizeof *r);
    if (!b->found)
        return;
    memcpy(r->owner, b->hit.owner, b->hit.olen);
    r->owner[b->hit.olen] = '\0';
    r->expiry = b->hit.expiry;
    r->token = b->hit.token;
}

static int file_store(struct local_kv *kv, const char *fn, const char *key,
                      const void *val, size_t len, const char *lease_key, uint64_t token,
                      int cas, const void *expect, size_t elen)
{
    int rc = file_lock(kv, F_WRLCK, fn);
    if (rc != MARIN_OK)
        return rc;
    bucket b;
    if (lease_key && (rc = bucket_load(kv, KIND_LEASE, lease_key, &b, fn)) == MARIN_OK) {
        lease_rec r;
        rec_from(&b, &r);
        bucket_free(&b);
        rc = check_fence(&r, key, lease_key, token, wall_ms());
    }
    if (rc == MARIN_OK && (rc = bucket_load(kv, KIND_VAL, key, &b, fn)) == MARIN_OK) {
        if (cas) {
            const entry *n = b.found ? &b.hit : NULL;
            if (!expect && n)
                rc = marin__err(MARIN_ECONFLICT, "%s: key '%s' exists (%zu bytes), "
                                "expected it absent", fn, key, n->vlen);
            else if (expect && !n)
                rc = marin__err(MARIN_ECONFLICT, "%s: key '%s' does not exist, expected "
                                "a value of %zu bytes", fn, key, elen);
            else if (expect &&
                     (n->vlen != elen || (elen && memcmp(n->val, expect, elen))))
                rc = marin__err(MARIN_ECONFLICT, "%s: the value of '%s' differs from "
                                "the expected one (%zu bytes now, %zu expected)", fn, key,
                                n->vlen, elen);
        }
        if (rc == MARIN_OK)
            rc = bucket_write(kv, &b, 1, key, val, len, NULL, fn);
        bucket_free(&b);
    }
    file_unlock(kv);
    return rc;
}

static int file_get(struct local_kv *kv, const char *key, void **val, size_t *len)
{
    static const char fn[] = "marin_kv_get";
    int rc = file_lock(kv, F_RDLCK, fn);
    if (rc != MARIN_OK)
        return rc;
    bucket b;
    if ((rc = bucket_load(kv, KIND_VAL, key, &b, fn)) == MARIN_OK) {
        if (!b.found)
            rc = marin__err(MARIN_ENOTFOUND, "%s: no key '%s' in the store '%s'", fn, key,
                            kv->dir);
        else if (!(*val = marin__malloc(b.hit.vlen)))
            rc = marin__err(MARIN_ENOMEM, "%s: out of memory for the value of '%s' (%zu "
                            "bytes)", fn, key, b.hit.vlen);
        else {
            if (b.hit.vlen)
                memcpy(*val, b.hit.val, b.hit.vlen);
            *len = b.hit.vlen;
        }
        bucket_free(&b);
    }
    file_unlock(kv);
    return rc;
}

static int file_del(struct local_kv *kv, const char *key)
{
    static const char fn[] = "marin_kv_delete";
    int rc = file_lock(kv, F_WRLCK, fn);
    if (rc != MARIN_OK)
        return rc;
    bucket b;
    if ((rc = bucket_load(kv, KIND_VAL, key, &b, fn)) == MARIN_OK) {
        if (!b.found)
            rc = marin__err(MARIN_ENOTFOUND, "%s: no key '%s' in the store '%s'", fn, key,
                            kv->dir);
        else
            rc = bucket_write(kv, &b, 0, key, NULL, 0, NULL, fn);
        bucket_free(&b);
    }
    file_unlock(kv);
    return rc;
}

static int file_lease_op(struct local_kv *kv, int op, const char *key, const char *owner,
                         int64_t ttl_ms, uint64_t *token)
{
    const char *fn = op_fn[op];
    int rc = file_lock(kv, F_WRLCK, fn);
    if (rc != MARIN_OK)
        return rc;
    bucket b;
    if ((rc = bucket_load(kv, KIND_LEASE, key, &b, fn)) == MARIN_OK) {
        lease_rec r;
        rec_from(&b, &r);
        rc = lease_apply(op, &r, key, owner, ttl_ms, wall_ms(), token);
        if (rc == MARIN_OK)
            rc = bucket_write(kv, &b, 1, key, NULL, 0, &r, fn);
        bucket_free(&b);
    }
    file_unlock(kv);
    return rc;
}

/* mkdir -p @p path. 0 or an errno. */
static int make_dirs(const char *path)
{
    char *p = marin__strdup(path);
    if (!p)
        return ENOMEM;
    int err = 0;
    for (char *s = p + 1; *s && !err; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                err = errno;
            *s = '/';
        }
    if (!err && mkdir(p, 0777) != 0 && errno != EEXIST)
        err = errno;
    marin__free(p);
    return err;
}

static int open_files(struct local_kv *kv)
{
    static const char fn[] = "marin_runtime_open";
    char buf[128];
    const char *what = "create";
    int err = make_dirs(kv->dir), dfd = -1;
    if (err == ENOMEM)
        return marin__err(MARIN_ENOMEM, "%s: out of memory opening the KV store", fn);
    if (!err && (dfd = open(kv->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        err = errno, what = "open";
    for (int k = 0; !err && k < 2; k++) {
        if (mkdirat(dfd, kind_dir[k], 0777) != 0 && errno != EEXIST) {
            err = errno, what = k == KIND_VAL ? "create kv/ in" : "create lease/ in";
        } else if (faccessat(dfd, kind_dir[k], W_OK | X_OK, AT_EACCESS) != 0) {
            err = errno, what = k == KIND_VAL ? "write to kv/ in" : "write to lease/ in";
        } else {
            int fd = openat(dfd, kind_dir[k], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0)
                err = errno, what = k == KIND_VAL ? "open kv/ in" : "open lease/ in";
            *(k == KIND_VAL ? &kv->kv_fd : &kv->lease_fd) = fd;
        }
    }
    if (!err &&
        (kv->lock_fd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666)) < 0)
        err = errno, what = "create the lock file in";
    if (!err && fsync(dfd) != 0) /* the entries just made */
        err = errno, what = "sync";
    if (!err) {
        /* Fail here, not on every call, where OFD locks do not work. */
        struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
        int r;
        while ((r = fcntl(kv->lock_fd, F_OFD_SETLKW, &fl)) != 0 && errno == EINTR)
            ;
        if (r != 0) {
            err = errno, what = "lock the lock file in";
        } else {
            fl.l_type = F_UNLCK;
            (void)fcntl(kv->lock_fd, F_OFD_SETLK, &fl);
        }
    }
    if (dfd >= 0)
        close(dfd);
    if (err)
        return marin__err(MARIN_EUNAVAILABLE, "%s: cannot %s the KV state directory "
                          "'%s': %s", fn, what, kv->dir,
                          strerror_r(err, buf, sizeof buf));
    return MARIN_OK;
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
        rc = open_files(kv);
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
    return kv->dir ? file_store(kv, "marin_kv_put", key, val, len, NULL, 0, 0, NULL, 0)
                   : mem_store(kv, "marin_kv_put", key, val, len, NULL, 0, 0, NULL, 0);
}

static int op_get(void *state, const char *key, void **val, size_t *len)
{
    struct local_kv *kv = store_of(state);
    return kv->dir ? file_get(kv, key, val, len) : mem_get(kv, key, val, len);
}

static int op_cas(void *state, const char *key, const void *expect, size_t elen,
                  const void *val, size_t len)
{
    struct local_kv *kv = store_of(state);
    static const char fn[] = "marin_kv_cas";
    return kv->dir ? file_store(kv, fn, key, val, len, NULL, 0, 1, expect, elen)
                   : mem_store(kv, fn, key, val, len, NULL, 0, 1, expect, elen);
}

static int op_del(void *state, const char *key)
{
    struct local_kv *kv = store_of(state);
    return kv->dir ? file_del(kv, key) : mem_del(kv, key);
}

static int lease_op(void *state, int op, const char *key, const char *owner,
                    int64_t ttl_ms, uint64_t *token)
{
    struct local_kv *kv = store_of(state);
    uint64_t unused;
    if (!token)
        token = &unused;
    return kv->dir ? file_lease_op(kv, op, key, owner, ttl_ms, token)
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
    return kv->dir ? file_store(kv, fn, key, val, len, lease_key, token, 0, NULL, 0)
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
