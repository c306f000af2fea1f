/* The local backend's KV store and leases (kv.h) in the file-backed form
 * (`local://?state=DIR`), shared by the processes of one machine (local_kv.c
 * has the in-memory form, the lease rules both share and the ops table that
 * calls in here):
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
#include "local_kv_internal.h"

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

int marin__lkv_file_store(struct local_kv *kv, const char *fn, const char *key,
                          const void *val, size_t len, const char *lease_key,
                          uint64_t token, int cas, const void *expect, size_t elen)
{
    int rc = file_lock(kv, F_WRLCK, fn);
    if (rc != MARIN_OK)
        return rc;
    bucket b;
    if (lease_key && (rc = bucket_load(kv, KIND_LEASE, lease_key, &b, fn)) == MARIN_OK) {
        lease_rec r;
        rec_from(&b, &r);
        bucket_free(&b);
        rc = marin__lkv_check_fence(&r, key, lease_key, token, wall_ms());
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

int marin__lkv_file_get(struct local_kv *kv, const char *key, void **val, size_t *len)
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

int marin__lkv_file_del(struct local_kv *kv, const char *key)
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

int marin__lkv_file_lease_op(struct local_kv *kv, int op, const char *key,
                             const char *owner, int64_t ttl_ms, uint64_t *token)
{
    const char *fn = marin__lkv_lease_fn[op];
    int rc = file_lock(kv, F_WRLCK, fn);
    if (rc != MARIN_OK)
        return rc;
    bucket b;
    if ((rc = bucket_load(kv, KIND_LEASE, key, &b, fn)) == MARIN_OK) {
        lease_rec r;
        rec_from(&b, &r);
        rc = marin__lkv_lease_apply(op, &r, key, owner, ttl_ms, wall_ms(), token);
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

int marin__lkv_file_open(struct local_kv *kv)
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
