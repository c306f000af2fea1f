/* demo_pipeline — an example batch pipeline on marin.
 *
 * Over text every Debian machine has (the files in /usr/share/common-licenses
 * and /usr/share/doc/PKG/copyright) it runs the shape of a data-preparation job:
 *
 *   1. manifest  list the input files once (sorted, regular, readable) into
 *                OUT/manifest.txt; later runs read it instead of rescanning
 *                and fail, naming the file, when one vanished or changed size.
 *   2. shard     split the files into documents and write them as JSON lines
 *                {"id","source","text"} into N zstd shards OUT/input/.
 *   3. transform marin_map_ordered(), one task per shard: decompress,
 *                normalise, drop short documents, drop exact duplicates
 *                (XXH3-64 of the normalised text) within the shard, count
 *                tokens; the driver drops duplicates across shards in
 *                on_result (which runs in shard order, so the outcome is
 *                deterministic) and writes OUT/output/ and OUT/summary.json.
 *
 * Documents: a file of at most 64 KiB is one document; a bigger file is split
 * into paragraphs (runs of non-blank lines), one document each.
 *
 * The same manifest gives the same bytes in every output file; timings go to
 * stderr only. Uses only the public marin API; MARIN_BACKEND picks the
 * backend (default local). See examples/README.md. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>
#include <zstd.h>

#include "marin/marin.h"

#define PROG "demo_pipeline"
#define TASK_NAME "demo_pipeline.transform_shard"
#define DEFAULT_OUT "out/demo"
#define DEFAULT_SHARDS 16
#define DEFAULT_MAX_IN_FLIGHT 4
#define DEFAULT_MIN_CHARS 64
#define MAX_SHARDS 100000                 /* shard-XXXXX: five digits */
#define WHOLE_FILE_MAX (64u * 1024u)      /* bigger files: one doc/paragraph */
#define MAX_FILE_BYTES (1024u * 1024u * 1024u)
#define MAX_LINE_BYTES (64u * 1024u * 1024u)        /* one JSON line */
#define MAX_SHARD_BYTES (UINT64_C(4) << 30)         /* decompressed shard */
#define ZSTD_LEVEL 3
#define RESULT_MAGIC "MDP1"
#define RESULT_HEADER 48  /* magic, u32 shard, 5 x u64 */
#define RECORD_HEADER 28  /* u64 hash, u64 tokens, u64 text bytes, u32 len */

static const char *const input_globs[] = {
    "/usr/share/common-licenses/*",
    "/usr/share/doc/*/copyright",
};

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Report a failed marin call: what we were doing, the code, the detail. */
static void marin_fail(const char *what, int rc)
{
    fprintf(stderr, PROG ": %s: %s: %s\n", what, marin_strerror(rc),
            marin_last_error());
}

/* The runtime's warnings and errors (a task retried, and why) go to stderr.
 * May run on several threads at once; stdio locks each call. */
static void log_line(int level, const char *msg, void *userdata)
{
    (void)userdata;
    fprintf(stderr, PROG ": marin %s: %s\n",
            level <= MARIN_LOG_ERROR ? "error" : "warning", msg);
}

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

/* 0, or -1 when out of memory (or the size would overflow). */
static int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(buf_t *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static void le_store(unsigned char *p, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_load(const unsigned char *p, size_t width)
{
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int buf_put_le(buf_t *b, uint64_t v, size_t width)
{
    unsigned char tmp[8];
    le_store(tmp, v, width);
    return buf_put(b, tmp, width);
}

/* A set of 64-bit hashes: open addressing, linear probing. Slot value 0 is
 * "empty", so the hash 0 is kept in a flag of its own. */
typedef struct {
    uint64_t *slots;
    size_t cap, n;
    int has_zero;
} hset_t;

/* 1: added; 0: already there; -1: out of memory. */
static int hset_add(hset_t *s, uint64_t h)
{
    if (h == 0) {
        if (s->has_zero)
            return 0;
        s->has_zero = 1;
        return 1;
    }
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t v = s->slots[i];
            if (!v)
                continue;
            size_t j = (size_t)v & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = v;
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t j = (size_t)h & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == h)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = h;
    s->n++;
    return 1;
}

static void hset_free(hset_t *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* mkdir -p; 0 or -1 with errno set. */
static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0777) < 0 && errno != EEXIST)
            return -1;
        tmp[i] = c;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* @p dir/@p name into @p buf; -1 (reported) when it does not fit. */
static int path_join(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, PROG ": %s/%s: path too long\n", dir, name);
        return -1;
    }
    return 0;
}

/* Write @p data to @p path atomically (a .tmp file, then rename). */
static int write_file_atomic(const char *path, const void *data, size_t n)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, PROG ": %s: path too long\n", path);
        return -1;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int bad = n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) < 0) {
        fprintf(stderr, PROG ": writing %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Replace invalid UTF-8 in @p s with U+FFFD, so jansson accepts it.
 * Returns a malloc'd copy (NUL-terminated, length in *out_len), or NULL. */
static char *utf8_sanitize(const unsigned char *s, size_t n, size_t *out_len)
{
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    unsigned char *o = malloc(3 * n + 1);
    if (!o)
        return NULL;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = 0;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c < 0x80)
            len = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        }
        int ok = len > 0 && i + len <= n;
        for (size_t j = 1; ok && j < len; j++) {
            unsigned b = s[i + j];
            if (j == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
                ok = 0;
        }
        if (ok) {
            memcpy(o + k, s + i, len);
            k += len;
            i += len;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += 1;
        }
    }
    o[k] = '\0';
    *out_len = k;
    return (char *)o;
}

/* ------------------------------------------------------------------------ */
/* zstd streams                                                             */

typedef struct {
    FILE *f;
    ZSTD_CCtx *cctx;
    unsigned char *out;
    size_t out_cap;
    char path[PATH_MAX], tmp[PATH_MAX];
    uint64_t written; /* compressed bytes */
} zwriter_t;

static void zw_free(zwriter_t *w)
{
    if (w->f)
        fclose(w->f);
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    w->f = NULL;
    w->cctx = NULL;
    w->out = NULL;
}

static void zw_abort(zwriter_t *w)
{
    if (w->f) {
        zw_free(w);
        unlink(w->tmp);
    }
    zw_free(w);
}

/* Open a one-frame zstd stream to @p path (written to path.tmp, renamed by
 * zw_close). Prints what went wrong. */
static int zw_open(zwriter_t *w, const char *path)
{
    memset(w, 0, sizeof *w);
    if ((size_t)snprintf(w->path, sizeof w->path, "%s", path) >=
            sizeof w->path ||
        (size_t)snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path) >=
            sizeof w->tmp) {
        fprintf(stderr, PROG ": %s: path too long\n", path);
        return -1;
    }
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    w->cctx = ZSTD_createCCtx();
    if (!w->out || !w->cctx) {
        fprintf(stderr, PROG ": %s: out of memory\n", path);
        zw_free(w);
        return -1;
    }
    size_t rc = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel,
                                       ZSTD_LEVEL);
    if (!ZSTD_isError(rc))
        rc = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(rc)) {
        fprintf(stderr, PROG ": %s: zstd: %s\n", path, ZSTD_getErrorName(rc));
        zw_free(w);
        return -1;
    }
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        fprintf(stderr, PROG ": %s: %s\n", w->tmp, strerror(errno));
        zw_free(w);
        return -1;
    }
    return 0;
}

static int zw_stream(zwriter_t *w, const void *data, size_t n,
                     ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {data, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_cap, 0};
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(rem)) {
            fprintf(stderr, PROG ": %s: zstd: %s\n", w->path,
                    ZSTD_getErrorName(rem));
            return -1;
        }
        if (out.pos && fwrite(w->out, 1, out.pos, w->f) != out.pos) {
            fprintf(stderr, PROG ": %s: %s\n", w->tmp, strerror(errno));
            return -1;
        }
        w->written += out.pos;
        if (mode == ZSTD_e_end ? rem == 0 : in.pos == in.size)
            return 0;
    }
}

static int zw_write(zwriter_t *w, const void *data, size_t n)
{
    return zw_stream(w, data, n, ZSTD_e_continue);
}

/* Finish the frame, close and rename into place; on failure removes the
 * temporary file. */
static int zw_close(zwriter_t *w)
{
    if (zw_stream(w, NULL, 0, ZSTD_e_end) < 0) {
        zw_abort(w);
        return -1;
    }
    int bad = fclose(w->f) != 0;
    w->f = NULL;
    if (bad || rename(w->tmp, w->path) < 0) {
        fprintf(stderr, PROG ": writing %s: %s\n", w->path, strerror(errno));
        unlink(w->tmp);
        zw_free(w);
        return -1;
    }
    zw_free(w);
    return 0;
}

/* Line reader over a zstd file (one or more frames), bounds-checked: a line
 * longer than MAX_LINE_BYTES, a shard over MAX_SHARD_BYTES decompressed, a
 * truncated or corrupt frame are errors. */
typedef struct {
    FILE *f;
    ZSTD_DCtx *dctx;
    unsigned char *in;
    size_t in_cap, chunk;
    ZSTD_inBuffer ib;
    buf_t pend;        /* decompressed bytes; [start, len) not yet returned */
    size_t start, scan;
    size_t frame_rc;   /* last ZSTD_decompressStream result; 0: frame end */
    uint64_t total;
    int eof;
    int transient;     /* the error is an I/O or memory failure */
    char err[256];
} zreader_t;

static int zr_open(zreader_t *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->frame_rc = 1; /* no complete frame yet */
    r->in_cap = ZSTD_DStreamInSize();
    r->chunk = ZSTD_DStreamOutSize();
    r->in = malloc(r->in_cap);
    r->dctx = ZSTD_createDCtx();
    if (!r->in || !r->dctx) {
        r->transient = 1;
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    r->f = fopen(path, "rb");
    if (!r->f) {
        r->transient = errno == EIO || errno == EINTR || errno == ENOMEM;
        snprintf(r->err, sizeof r->err, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void zr_close(zreader_t *r)
{
    if (r->f)
        fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->pend.p);
    r->f = NULL;
    r->dctx = NULL;
    r->in = NULL;
    r->pend.p = NULL;
}

static int zr_fill(zreader_t *r)
{
    if (r->ib.pos == r->ib.size) {
        size_t n = fread(r->in, 1, r->in_cap, r->f);
        if (n == 0) {
            if (ferror(r->f)) {
                r->transient = 1;
                snprintf(r->err, sizeof r->err, "read: %s", strerror(errno));
                return -1;
            }
            if (r->frame_rc != 0) {
                snprintf(r->err, sizeof r->err,
                         "truncated or empty zstd stream");
                return -1;
            }
            r->eof = 1;
            return 0;
        }
        r->ib.src = r->in;
        r->ib.size = n;
        r->ib.pos = 0;
    }
    if (buf_reserve(&r->pend, r->chunk) < 0) {
        r->transient = 1;
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    ZSTD_outBuffer ob = {r->pend.p + r->pend.len, r->chunk, 0};
    size_t rc = ZSTD_decompressStream(r->dctx, &ob, &r->ib);
    if (ZSTD_isError(rc)) {
        snprintf(r->err, sizeof r->err, "zstd: %s", ZSTD_getErrorName(rc));
        return -1;
    }
    r->frame_rc = rc;
    r->pend.len += ob.pos;
    r->total += ob.pos;
    if (r->total > MAX_SHARD_BYTES) {
        snprintf(r->err, sizeof r->err,
                 "decompressed shard over %" PRIu64 " bytes", MAX_SHARD_BYTES);
        return -1;
    }
    return 0;
}

/* 1: a line (without its newline) in *line and *len, valid until the next
 * call;
 * 0: end; -1: error in r->err. */
static int zr_getline(zreader_t *r, const unsigned char **line, size_t *len)
{
    for (;;) {
        unsigned char *p = r->pend.p + r->start;
        size_t avail = r->pend.len - r->start;
        if (avail > r->scan) {
            unsigned char *nl = memchr(p + r->scan, '\n', avail - r->scan);
            if (nl) {
                *line = p;
                *len = (size_t)(nl - p);
                r->start += *len + 1;
                r->scan = 0;
                return 1;
            }
        }
        r->scan = avail;
        if (avail > MAX_LINE_BYTES) {
            snprintf(r->err, sizeof r->err, "line over %u bytes",
                     MAX_LINE_BYTES);
            return -1;
        }
        if (r->eof) {
            if (avail == 0)
                return 0;
            *line = p; /* a last line without a newline */
            *len = avail;
            r->start += avail;
            r->scan = 0;
            return 1;
        }
        if (r->start > 0) {
            memmove(r->pend.p, p, avail);
            r->pend.len = avail;
            r->start = 0;
        }
        if (zr_fill(r) < 0)
            return -1;
    }
}

/* ------------------------------------------------------------------------ */
/* the task: transform one input shard                                      */

/* Normalise valid UTF-8 @p s into @p o (room for n bytes): ASCII lowercase;
 * control characters (C0 other than whitespace, DEL, C1 U+0080..U+009F)
 * dropped; runs of whitespace made one space; trimmed. Returns the length;
 * *chars gets the number of code points and *tokens the number of
 * whitespace-separated words. */
static size_t normalise(const unsigned char *s, size_t n, unsigned char *o,
                        size_t *chars, size_t *tokens)
{
    size_t k = 0, nc = 0, nt = 0;
    int space = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
            c == '\r') {
            space = k > 0;
            continue;
        }
        if (c < 0x20 || c == 0x7F)
            continue;
        if (c == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F) {
            i++;
            continue;
        }
        if (space) {
            o[k++] = ' ';
            nc++;
            space = 0;
        }
        if (k == 0 || o[k - 1] == ' ')
            nt++;
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        o[k++] = (unsigned char)c;
        if ((c & 0xC0) != 0x80)
            nc++;
    }
    *chars = nc;
    *tokens = nt;
    return k;
}

/* An application error (not retried): the message reaches the driver. */
static int task_fail(marin_task_ctx_t *ctx, int shard, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, "shard %05d: %s", shard, what);
    return marin_task_fail(ctx, msg);
}

/* A system failure (retried within max_retries): log why, return @p code. */
static int task_transient(marin_task_ctx_t *ctx, int shard, const char *why,
                          int code)
{
    char msg[512];
    snprintf(msg, sizeof msg, "shard %05d: %s (attempt %d)", shard, why,
             marin_task_attempt(ctx));
    marin_task_log(ctx, MARIN_LOG_WARN, msg);
    return code;
}

/* Argument: {"shard": I, "path": "/abs/OUT/input/shard-I.jsonl.zst",
 * "min_chars": N}. Result (bytes, little endian):
 *   "MDP1", u32 shard, u64 docs_in, u64 filtered, u64 duplicates within the
 *   shard, u64 text bytes in, u64 record count; then per kept document
 *   u64 XXH3-64 of the normalised text, u64 tokens, u64 text bytes,
 *   u32 length, and that many bytes: the output JSON line (no newline). */
static int transform_shard(marin_task_ctx_t *ctx, const void *arg, size_t len,
                           void *userdata)
{
    (void)userdata;
    json_error_t jerr;
    json_t *a = json_loadb(arg, len, JSON_REJECT_DUPLICATES, &jerr);
    json_int_t shard_i = -1, min_chars = -1;
    const char *path = NULL;
    if (!a || json_unpack(a, "{s:I, s:s, s:I}", "shard", &shard_i, "path",
                          &path, "min_chars", &min_chars) != 0 ||
        shard_i < 0 || shard_i >= MAX_SHARDS || min_chars < 0) {
        json_decref(a);
        return marin_task_fail(ctx, "bad argument: want {\"shard\": I, "
                                    "\"path\": S, \"min_chars\": N}");
    }
    int shard = (int)shard_i;
    int rc = 0;
    zreader_t r;
    buf_t res = {0}, norm = {0};
    hset_t seen = {0};
    uint64_t docs = 0, filtered = 0, dups = 0, bytes_in = 0, nrec = 0;
    size_t lineno = 0;

    if (zr_open(&r, path) < 0) {
        rc = r.transient ? task_transient(ctx, shard, r.err, MARIN_EUNAVAILABLE)
                         : task_fail(ctx, shard, r.err);
        goto done;
    }
    if (buf_reserve(&res, RESULT_HEADER) < 0) {
        rc = MARIN_ENOMEM;
        goto done;
    }
    res.len = RESULT_HEADER; /* filled in at the end */
    for (;;) {
        const unsigned char *line;
        size_t n;
        int got = zr_getline(&r, &line, &n);
        if (got < 0) {
            char why[320];
            snprintf(why, sizeof why, "line %zu: %s", lineno + 1, r.err);
            rc = r.transient ? task_transient(ctx, shard, why,
                                              MARIN_EUNAVAILABLE)
                             : task_fail(ctx, shard, why);
            goto done;
        }
        if (got == 0)
            break;
        lineno++;
        if ((lineno & 255) == 0 && marin_task_cancelled(ctx)) {
            rc = MARIN_ECANCELED;
            goto done;
        }
        json_t *doc = json_loadb((const char *)line, n,
                                 JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                                 &jerr);
        json_t *jid, *jsrc, *jtext;
        if (!doc || !json_is_object(doc) ||
            !json_is_string(jid = json_object_get(doc, "id")) ||
            !json_is_string(jsrc = json_object_get(doc, "source")) ||
            !json_is_string(jtext = json_object_get(doc, "text"))) {
            char why[320];
            snprintf(why, sizeof why, "line %zu: %s", lineno,
                     doc ? "want an object with string id, source, text"
                         : jerr.text);
            json_decref(doc);
            rc = task_fail(ctx, shard, why);
            goto done;
        }
        const unsigned char *text =
            (const unsigned char *)json_string_value(jtext);
        size_t tlen = json_string_length(jtext);
        docs++;
        bytes_in += tlen;
        norm.len = 0;
        if (buf_reserve(&norm, tlen + 1) < 0) {
            json_decref(doc);
            rc = MARIN_ENOMEM;
            goto done;
        }
        size_t chars, tokens;
        size_t nlen = normalise(text, tlen, norm.p, &chars, &tokens);
        if (chars < (uint64_t)min_chars) {
            filtered++;
            json_decref(doc);
            continue;
        }
        uint64_t h = XXH3_64bits(norm.p, nlen);
        int added = hset_add(&seen, h);
        if (added <= 0) {
            json_decref(doc);
            if (added < 0) {
                rc = MARIN_ENOMEM;
                goto done;
            }
            dups++;
            continue;
        }
        json_t *out = json_pack("{s:O, s:O, s:s%, s:I}", "id", jid, "source",
                                jsrc, "text", (const char *)norm.p, nlen,
                                "tokens", (json_int_t)tokens);
        json_decref(doc);
        char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
        json_decref(out);
        size_t slen = s ? strlen(s) : 0;
        if (!s || slen > UINT32_MAX || buf_put_le(&res, h, 8) < 0 ||
            buf_put_le(&res, tokens, 8) < 0 ||
            buf_put_le(&res, nlen, 8) < 0 ||
            buf_put_le(&res, slen, 4) < 0 || buf_put(&res, s, slen) < 0) {
            free(s);
            rc = MARIN_ENOMEM;
            goto done;
        }
        free(s);
        nrec++;
    }
    memcpy(res.p, RESULT_MAGIC, 4);
    le_store(res.p + 4, (uint64_t)shard, 4);
    le_store(res.p + 8, docs, 8);
    le_store(res.p + 16, filtered, 8);
    le_store(res.p + 24, dups, 8);
    le_store(res.p + 32, bytes_in, 8);
    le_store(res.p + 40, nrec, 8);
    rc = marin_task_return(ctx, res.p, res.len);

done:
    zr_close(&r);
    free(res.p);
    free(norm.p);
    hset_free(&seen);
    json_decref(a);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* manifest                                                                 */

typedef struct {
    char *path;
    uint64_t size;
} mfile_t;

typedef struct {
    mfile_t *v;
    size_t n, cap;
} manifest_t;

static void manifest_free(manifest_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    memset(m, 0, sizeof *m);
}

static int manifest_add(manifest_t *m, const char *path, uint64_t size)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        mfile_t *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return -1;
    m->v[m->n].path = p;
    m->v[m->n].size = size;
    m->n++;
    return 0;
}

static int cmp_mfile(const void *a, const void *b)
{
    return strcmp(((const mfile_t *)a)->path, ((const mfile_t *)b)->path);
}

/* List the inputs: regular (after symlinks), readable files whose path has
 * no tab or newline, sorted bytewise, each once. */
static int manifest_scan(manifest_t *m)
{
    glob_t g;
    memset(&g, 0, sizeof g);
    for (size_t i = 0; i < sizeof input_globs / sizeof *input_globs; i++) {
        int rc = glob(input_globs[i], i ? GLOB_APPEND : 0, NULL, &g);
        if (rc != 0 && rc != GLOB_NOMATCH) {
            fprintf(stderr, PROG ": glob %s failed\n", input_globs[i]);
            globfree(&g);
            return -1;
        }
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i];
        struct stat st;
        if (strpbrk(p, "\t\n") || stat(p, &st) < 0 || !S_ISREG(st.st_mode) ||
            access(p, R_OK) < 0)
            continue;
        if (manifest_add(m, p, (uint64_t)st.st_size) < 0) {
            fprintf(stderr, PROG ": out of memory\n");
            globfree(&g);
            return -1;
        }
    }
    globfree(&g);
    if (m->n)
        qsort(m->v, m->n, sizeof *m->v, cmp_mfile);
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (k && strcmp(m->v[k - 1].path, m->v[i].path) == 0) {
            free(m->v[i].path);
            continue;
        }
        m->v[k++] = m->v[i];
    }
    m->n = k;
    return 0;
}

static int manifest_write(const manifest_t *m, const char *path)
{
    buf_t b = {0};
    const char *head = "# demo_pipeline manifest v1: path<TAB>size in bytes\n";
    int bad = buf_put(&b, head, strlen(head));
    for (size_t i = 0; !bad && i < m->n; i++) {
        char num[32];
        int k = snprintf(num, sizeof num, "\t%" PRIu64 "\n", m->v[i].size);
        bad = buf_put(&b, m->v[i].path, strlen(m->v[i].path)) < 0 ||
              buf_put(&b, num, (size_t)k) < 0;
    }
    if (bad) {
        fprintf(stderr, PROG ": out of memory\n");
        free(b.p);
        return -1;
    }
    int rc = write_file_atomic(path, b.p, b.len);
    free(b.p);
    return rc;
}

/* Read the manifest and check every file is still there with its size. */
static int manifest_read(manifest_t *m, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    errno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *tab = strrchr(line, '\t');
        char *end = NULL;
        errno = 0;
        unsigned long long size = tab ? strtoull(tab + 1, &end, 10) : 0;
        if (!tab || tab == line || end == tab + 1 || *end != '\0' ||
            errno != 0 || tab[1] == '-') {
            fprintf(stderr,
                    PROG ": %s:%zu: malformed line (want path<TAB>size)\n",
                    path, lineno);
            rc = -1;
            break;
        }
        *tab = '\0';
        struct stat st;
        if (stat(line, &st) < 0) {
            fprintf(stderr,
                    PROG ": %s:%zu: %s: %s (listed in the manifest; delete "
                         "it to rescan)\n",
                    path, lineno, line, strerror(errno));
            rc = -1;
            break;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
            fprintf(stderr,
                    PROG ": %s:%zu: %s: %s (manifest: %llu bytes, now %lld; "
                         "delete the manifest to rescan)\n",
                    path, lineno, line,
                    S_ISREG(st.st_mode) ? "changed size"
                                        : "no longer a regular file",
                    size, (long long)st.st_size);
            rc = -1;
            break;
        }
        if (manifest_add(m, line, size) < 0) {
            fprintf(stderr, PROG ": out of memory\n");
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, PROG ": reading %s: %s\n", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* shard: files -> documents -> N zstd JSONL shards                         */

typedef struct {
    const char *out;       /* absolute output directory */
    unsigned shards;
    size_t max_in_flight;
    unsigned min_chars;
} cfg_t;

static int shard_path(char *buf, size_t cap, const char *out, const char *dir,
                      size_t i)
{
    if ((size_t)snprintf(buf, cap, "%s/%s/shard-%05zu.jsonl.zst", out, dir,
                         i) >= cap) {
        fprintf(stderr, PROG ": %s: path too long\n", out);
        return -1;
    }
    return 0;
}

/* Remove shard files of DIR that this run does not write (index >= N, or a
 * leftover .tmp), so the directory holds exactly this run's shards. */
static int remove_stale_shards(const char *out, const char *dir, unsigned n)
{
    char path[PATH_MAX];
    if (path_join(path, sizeof path, out, dir) < 0)
        return -1;
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned idx;
        int used = 0;
        if (sscanf(e->d_name, "shard-%5u.jsonl.zst%n", &idx, &used) != 1 ||
            used <= 0)
            continue;
        const char *rest = e->d_name + used;
        if (*rest == '\0' && idx < n && strlen(e->d_name) == 21)
            continue;
        if (*rest != '\0' && strcmp(rest, ".tmp") != 0)
            continue;
        char victim[PATH_MAX];
        if ((size_t)snprintf(victim, sizeof victim, "%s/%s", path,
                             e->d_name) >= sizeof victim)
            continue;
        if (unlink(victim) < 0) {
            fprintf(stderr, PROG ": removing %s: %s\n", victim,
                    strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

typedef struct {
    const cfg_t *cfg;
    zwriter_t w;
    size_t cur;       /* shard being written */
    uint64_t per;     /* input bytes per shard */
    uint64_t docs;
    uint64_t zbytes;  /* compressed bytes of the finished shards */
} sharder_t;

/* Finish the current input shard; open the next one unless it was last. */
static int next_input_shard(sharder_t *s)
{
    char path[PATH_MAX];
    if (zw_close(&s->w) < 0)
        return -1;
    s->zbytes += s->w.written;
    if (++s->cur >= s->cfg->shards)
        return 0;
    if (shard_path(path, sizeof path, s->cfg->out, "input", s->cur) < 0 ||
        zw_open(&s->w, path) < 0)
        return -1;
    return 0;
}

/* Write one document into the shard its input offset falls in. */
static int shard_doc(sharder_t *s, uint64_t offset, const char *id,
                     const char *source, const unsigned char *text, size_t n)
{
    size_t want = (size_t)(offset / s->per);
    if (want >= s->cfg->shards)
        want = s->cfg->shards - 1;
    while (s->cur < want)
        if (next_input_shard(s) < 0)
            return -1;
    size_t tlen;
    char *t = utf8_sanitize(text, n, &tlen);
    json_t *o = t ? json_pack("{s:s, s:s, s:s%}", "id", id, "source", source,
                              "text", t, tlen)
                  : NULL;
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    free(t);
    if (!line) {
        fprintf(stderr, PROG ": %s: cannot encode document %s\n", source, id);
        return -1;
    }
    int rc = zw_write(&s->w, line, strlen(line));
    if (rc == 0)
        rc = zw_write(&s->w, "\n", 1);
    free(line);
    s->docs++;
    return rc;
}

static int is_blank_line(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\f' &&
            p[i] != '\v')
            return 0;
    return 1;
}

/* Split file @p fi (contents @p data) into documents. */
static int shard_file(sharder_t *s, size_t fi, const char *path,
                      const unsigned char *data, size_t n, uint64_t offset)
{
    char id[48];
    size_t src_len;
    char *src = utf8_sanitize((const unsigned char *)path, strlen(path),
                              &src_len);
    if (!src) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    int rc = 0;
    if (n <= WHOLE_FILE_MAX) {
        snprintf(id, sizeof id, "f%06zu.p00000", fi);
        rc = shard_doc(s, offset, id, src, data, n);
        free(src);
        return rc;
    }
    size_t para = 0, i = 0, start = 0, end = 0;
    int in_para = 0;
    while (rc == 0 && i <= n) {
        size_t eol = i;
        while (eol < n && data[eol] != '\n')
            eol++;
        int blank = i == n || is_blank_line(data + i, eol - i);
        if (!blank) {
            if (!in_para)
                start = i;
            in_para = 1;
            end = eol;
        } else if (in_para) {
            snprintf(id, sizeof id, "f%06zu.p%05zu", fi, para++);
            rc = shard_doc(s, offset + start, id, src, data + start,
                           end - start);
            in_para = 0;
        }
        i = eol + 1;
    }
    if (rc == 0 && in_para) { /* a last line without a newline */
        snprintf(id, sizeof id, "f%06zu.p%05zu", fi, para);
        rc = shard_doc(s, offset + start, id, src, data + start, end - start);
    }
    free(src);
    return rc;
}

static unsigned char *read_whole(const char *path, uint64_t size)
{
    if (size > MAX_FILE_BYTES) {
        fprintf(stderr, PROG ": %s: over %u bytes\n", path, MAX_FILE_BYTES);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned char *p = malloc((size_t)size + 1);
    size_t got = p ? fread(p, 1, (size_t)size + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!p || err || got != size) {
        fprintf(stderr, PROG ": %s: %s\n", path,
                !p ? "out of memory"
                : err ? "read error"
                      : "size differs from the manifest (changed while "
                        "running?)");
        free(p);
        return NULL;
    }
    return p;
}

/* Documents go to shards by the input offset where they start: shard k gets
 * the documents starting in bytes [k*per, (k+1)*per) of all files in
 * manifest order. Every shard is written, empty ones too. */
static int write_input_shards(const cfg_t *cfg, const manifest_t *m,
                              uint64_t *docs, uint64_t *zbytes)
{
    uint64_t total = 0;
    for (size_t i = 0; i < m->n; i++)
        total += m->v[i].size;
    sharder_t s = {.cfg = cfg};
    s.per = total ? (total + cfg->shards - 1) / cfg->shards : 1;
    char path[PATH_MAX];
    if (shard_path(path, sizeof path, cfg->out, "input", 0) < 0 ||
        zw_open(&s.w, path) < 0)
        return -1;
    uint64_t offset = 0;
    for (size_t i = 0; i < m->n; i++) {
        unsigned char *data = read_whole(m->v[i].path, m->v[i].size);
        if (!data || shard_file(&s, i, m->v[i].path, data,
                                (size_t)m->v[i].size, offset) < 0) {
            free(data);
            zw_abort(&s.w);
            return -1;
        }
        free(data);
        offset += m->v[i].size;
    }
    while (s.cur < cfg->shards)
        if (next_input_shard(&s) < 0)
            return -1;
    *docs = s.docs;
    *zbytes = s.zbytes;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* driver: marin_map_ordered over the shards                               */

typedef struct {
    uint64_t docs_in, docs_out, filtered, dup_within, dup_across, tokens,
        bytes_in, bytes_out, zbytes_out;
} totals_t;

typedef struct {
    const cfg_t *cfg;
    size_t next;        /* next shard to hand out */
    char *arg;          /* the argument last returned by next_shard */
    hset_t seen;        /* hashes of every document written so far */
    totals_t t;
    json_t *per_shard;  /* array of per-shard figures */
    int failed;         /* our own error, already printed */
} driver_t;

static int next_shard(const void **arg, size_t *len, void *userdata)
{
    driver_t *d = userdata;
    if (d->next >= d->cfg->shards)
        return 0;
    char path[PATH_MAX];
    if (shard_path(path, sizeof path, d->cfg->out, "input", d->next) < 0) {
        d->failed = 1;
        return MARIN_EINVAL;
    }
    free(d->arg);
    json_t *a = json_pack("{s:I, s:s, s:I}", "shard", (json_int_t)d->next,
                          "path", path, "min_chars",
                          (json_int_t)d->cfg->min_chars);
    d->arg = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!d->arg) {
        fprintf(stderr, PROG ": out of memory\n");
        d->failed = 1;
        return MARIN_ENOMEM;
    }
    *arg = d->arg;
    *len = strlen(d->arg);
    d->next++;
    return 1;
}

static int bad_result(driver_t *d, size_t index, const char *why)
{
    fprintf(stderr, PROG ": shard %05zu: malformed task result: %s\n", index,
            why);
    d->failed = 1;
    return MARIN_EPROTO;
}

/* Runs on the driver thread for shard 0, 1, 2, ... in order: drop documents
 * already seen in earlier shards, write the output shard. */
static int on_result(size_t index, int status, const void *data, size_t len,
                     void *userdata)
{
    driver_t *d = userdata;
    if (status != 0)
        return status; /* marin_map_ordered returns it, with the task's
                        * error in marin_last_error(): main reports it */
    const unsigned char *p = data;
    if (!p || len < RESULT_HEADER || memcmp(p, RESULT_MAGIC, 4) != 0)
        return bad_result(d, index, "no header");
    if (le_load(p + 4, 4) != index)
        return bad_result(d, index, "result of another shard");
    uint64_t docs = le_load(p + 8, 8), filtered = le_load(p + 16, 8),
             dups = le_load(p + 24, 8), bytes_in = le_load(p + 32, 8),
             nrec = le_load(p + 40, 8);
    if (nrec > (len - RESULT_HEADER) / RECORD_HEADER)
        return bad_result(d, index, "record count past the end");

    char path[PATH_MAX];
    zwriter_t w;
    if (shard_path(path, sizeof path, d->cfg->out, "output", index) < 0 ||
        zw_open(&w, path) < 0) {
        d->failed = 1;
        return MARIN_EUNAVAILABLE;
    }
    uint64_t out = 0, across = 0, tokens = 0, bytes_out = 0;
    size_t off = RESULT_HEADER;
    for (uint64_t i = 0; i < nrec; i++) {
        if (len - off < RECORD_HEADER) {
            zw_abort(&w);
            return bad_result(d, index, "truncated record");
        }
        uint64_t h = le_load(p + off, 8), tok = le_load(p + off + 8, 8),
                 tb = le_load(p + off + 16, 8);
        size_t n = (size_t)le_load(p + off + 24, 4);
        off += RECORD_HEADER;
        if (len - off < n) {
            zw_abort(&w);
            return bad_result(d, index, "record past the end");
        }
        int added = hset_add(&d->seen, h);
        if (added < 0) {
            zw_abort(&w);
            fprintf(stderr, PROG ": out of memory\n");
            d->failed = 1;
            return MARIN_ENOMEM;
        }
        if (added) {
            if (zw_write(&w, p + off, n) < 0 || zw_write(&w, "\n", 1) < 0) {
                zw_abort(&w);
                d->failed = 1;
                return MARIN_EUNAVAILABLE;
            }
            out++;
            tokens += tok;
            bytes_out += tb;
        } else {
            across++;
        }
        off += n;
    }
    if (off != len) {
        zw_abort(&w);
        return bad_result(d, index, "trailing bytes");
    }
    if (zw_close(&w) < 0) {
        d->failed = 1;
        return MARIN_EUNAVAILABLE;
    }
    uint64_t zb = w.written; /* zw_close keeps the count */
    d->t.docs_in += docs;
    d->t.docs_out += out;
    d->t.filtered += filtered;
    d->t.dup_within += dups;
    d->t.dup_across += across;
    d->t.tokens += tokens;
    d->t.bytes_in += bytes_in;
    d->t.bytes_out += bytes_out;
    d->t.zbytes_out += zb;
    json_t *s = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "shard", (json_int_t)index,
        "documents_in", (json_int_t)docs, "documents_out", (json_int_t)out,
        "filtered_short", (json_int_t)filtered, "duplicates_within_shard",
        (json_int_t)dups, "duplicates_across_shards", (json_int_t)across,
        "tokens_out", (json_int_t)tokens);
    if (!s || json_array_append_new(d->per_shard, s) < 0) {
        fprintf(stderr, PROG ": out of memory\n");
        d->failed = 1;
        return MARIN_ENOMEM;
    }
    return 0;
}

static int run_map(const cfg_t *cfg, marin_runtime_t *rt, driver_t *d)
{
    marin_task_options_t *to = NULL;
    marin_map_options_t *mo = NULL;
    int rc;
    if ((rc = marin_task_options_create(&to)) != MARIN_OK) {
        marin_fail("marin_task_options_create", rc);
        goto out;
    }
    if ((rc = marin_task_options_set_max_retries(to, 2)) != MARIN_OK) {
        marin_fail("marin_task_options_set_max_retries", rc);
        goto out;
    }
    if ((rc = marin_map_options_create(&mo)) != MARIN_OK) {
        marin_fail("marin_map_options_create", rc);
        goto out;
    }
    if ((rc = marin_map_options_set_max_in_flight(mo, cfg->max_in_flight)) !=
        MARIN_OK) {
        marin_fail("marin_map_options_set_max_in_flight", rc);
        goto out;
    }
    if ((rc = marin_map_options_set_task_options(mo, to)) != MARIN_OK) {
        marin_fail("marin_map_options_set_task_options", rc);
        goto out;
    }
    if ((rc = marin_map_options_set_progress_bar(mo, 1)) != MARIN_OK) {
        marin_fail("marin_map_options_set_progress_bar", rc);
        goto out;
    }
    rc = marin_map_ordered(rt, TASK_NAME, next_shard, on_result, mo, d);
    if (rc != MARIN_OK && !d->failed)
        marin_fail("marin_map_ordered", rc);
out:
    marin_map_options_destroy(mo);
    marin_task_options_destroy(to);
    return rc;
}

static int write_summary(const cfg_t *cfg, const manifest_t *m,
                         uint64_t input_zbytes, const driver_t *d)
{
    uint64_t in_bytes = 0;
    for (size_t i = 0; i < m->n; i++)
        in_bytes += m->v[i].size;
    const totals_t *t = &d->t;
    json_t *s = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:O}",
        "pipeline", "demo_pipeline/1", "files", (json_int_t)m->n,
        "file_bytes", (json_int_t)in_bytes, "shards", (json_int_t)cfg->shards,
        "min_chars", (json_int_t)cfg->min_chars, "documents_in",
        (json_int_t)t->docs_in, "documents_out", (json_int_t)t->docs_out,
        "filtered_short", (json_int_t)t->filtered, "duplicates_within_shard",
        (json_int_t)t->dup_within, "duplicates_across_shards",
        (json_int_t)t->dup_across, "duplicates_total",
        (json_int_t)(t->dup_within + t->dup_across), "tokens_out",
        (json_int_t)t->tokens, "bytes_in", (json_int_t)t->bytes_in,
        "bytes_out", (json_int_t)t->bytes_out, "input_shard_bytes",
        (json_int_t)input_zbytes, "output_shard_bytes",
        (json_int_t)t->zbytes_out, "per_shard", d->per_shard);
    char *text = s ? json_dumps(s, JSON_INDENT(2)) : NULL;
    json_decref(s);
    if (!text) {
        fprintf(stderr, PROG ": cannot encode summary.json\n");
        return -1;
    }
    size_t n = strlen(text);
    char *full = malloc(n + 2);
    if (!full) {
        free(text);
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    memcpy(full, text, n);
    full[n] = '\n';
    free(text);
    char path[PATH_MAX];
    int rc = path_join(path, sizeof path, cfg->out, "summary.json");
    if (rc == 0)
        rc = write_file_atomic(path, full, n + 1);
    free(full);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [--out DIR] [--shards N] [--max-in-flight N] "
            "[--min-chars N]\n"
            "  --out DIR          output directory (default " DEFAULT_OUT ")\n"
            "  --shards N         input shards, 1..%d (default %d)\n"
            "  --max-in-flight N  tasks outstanding at once (default %d)\n"
            "  --min-chars N      drop documents shorter than N characters "
            "after\n"
            "                     normalisation (default %d)\n"
            "MARIN_BACKEND picks the backend (default local).\n",
            MAX_SHARDS, DEFAULT_SHARDS, DEFAULT_MAX_IN_FLIGHT,
            DEFAULT_MIN_CHARS);
}

static int parse_count(const char *opt, const char *s, unsigned long lo,
                       unsigned long hi, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = s ? strtoul(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, PROG ": %s wants a number in %lu..%lu, got '%s'\n",
                opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* --opt VALUE or --opt=VALUE: the value, or NULL when @p a is not @p opt. */
static const char *opt_value(const char *opt, int argc, char **argv, int *i)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        return "";
    return argv[++*i];
}

int main(int argc, char **argv)
{
    const char *out_arg = DEFAULT_OUT;
    unsigned long shards = DEFAULT_SHARDS, mif = DEFAULT_MAX_IN_FLIGHT,
                  min_chars = DEFAULT_MIN_CHARS;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((v = opt_value("--out", argc, argv, &i)) != NULL) {
            if (!*v) {
                fprintf(stderr, PROG ": --out wants a directory\n");
                return 2;
            }
            out_arg = v;
        } else if ((v = opt_value("--shards", argc, argv, &i)) != NULL) {
            if (parse_count("--shards", v, 1, MAX_SHARDS, &shards) < 0)
                return 2;
        } else if ((v = opt_value("--max-in-flight", argc, argv, &i)) !=
                   NULL) {
            if (parse_count("--max-in-flight", v, 1, 1000000, &mif) < 0)
                return 2;
        } else if ((v = opt_value("--min-chars", argc, argv, &i)) != NULL) {
            if (parse_count("--min-chars", v, 0, 1u << 30, &min_chars) < 0)
                return 2;
        } else {
            fprintf(stderr, PROG ": unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    double t0 = now_s();
    int status = 1;
    marin_runtime_t *rt = NULL;
    manifest_t m = {0};
    driver_t d = {0};
    char out[PATH_MAX], path[PATH_MAX];
    uint64_t docs_sharded = 0, input_zbytes = 0;
    double t1, t2, t3, map_s;

    /* Outputs: absolute paths, so a task on another machine (sharing this
     * storage) finds its shard. */
    if (mkdir_p(out_arg) < 0 || !realpath(out_arg, out)) {
        fprintf(stderr, PROG ": %s: %s\n", out_arg, strerror(errno));
        return 1;
    }
    cfg_t cfg = {.out = out,
                 .shards = (unsigned)shards,
                 .max_in_flight = mif,
                 .min_chars = (unsigned)min_chars};
    if (path_join(path, sizeof path, out, "input") < 0)
        return 1;
    if (mkdir_p(path) < 0) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (path_join(path, sizeof path, out, "output") < 0)
        return 1;
    if (mkdir_p(path) < 0) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* A summary only ever describes a complete run. */
    if (path_join(path, sizeof path, out, "summary.json") < 0)
        return 1;
    if (unlink(path) < 0 && errno != ENOENT) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return 1;
    }

    int rc = marin_register_task(TASK_NAME, transform_shard, NULL);
    if (rc != MARIN_OK) {
        marin_fail("marin_register_task " TASK_NAME, rc);
        return 1;
    }
    if ((rc = marin_runtime_open(NULL, &rt)) != MARIN_OK) {
        marin_fail("marin_runtime_open", rc);
        return 1;
    }
    if ((rc = marin_runtime_set_logger(rt, log_line, MARIN_LOG_WARN, NULL)) !=
        MARIN_OK) {
        marin_fail("marin_runtime_set_logger", rc);
        goto done;
    }

    /* 1. manifest */
    if (path_join(path, sizeof path, out, "manifest.txt") < 0)
        goto done;
    int have_manifest = access(path, F_OK) == 0;
    if (have_manifest ? manifest_read(&m, path) < 0
                      : (manifest_scan(&m) < 0 || manifest_write(&m, path) < 0))
        goto done;
    fprintf(stderr, PROG ": %s %zu files (%s)\n",
            have_manifest ? "read" : "scanned", m.n, path);

    /* 2. shard */
    if (remove_stale_shards(out, "input", cfg.shards) < 0 ||
        remove_stale_shards(out, "output", cfg.shards) < 0 ||
        write_input_shards(&cfg, &m, &docs_sharded, &input_zbytes) < 0)
        goto done;
    t1 = now_s();

    /* 3. transform, dedup across shards, write outputs */
    d.cfg = &cfg;
    d.per_shard = json_array();
    if (!d.per_shard) {
        fprintf(stderr, PROG ": out of memory\n");
        goto done;
    }
    if (run_map(&cfg, rt, &d) != MARIN_OK)
        goto done;
    t2 = now_s();
    if (d.t.docs_in != docs_sharded) {
        fprintf(stderr,
                PROG ": tasks read %" PRIu64 " documents, %" PRIu64
                     " were written\n",
                d.t.docs_in, docs_sharded);
        goto done;
    }
    if (write_summary(&cfg, &m, input_zbytes, &d) < 0)
        goto done;

    t3 = now_s();
    map_s = t2 - t1 > 1e-9 ? t2 - t1 : 1e-9;
    fprintf(stderr,
            PROG ": backend %s, %u shards, max_in_flight %zu\n"
                 PROG ": documents in %" PRIu64 ", out %" PRIu64
                 "; filtered %" PRIu64 "; duplicates %" PRIu64
                 " within shards + %" PRIu64 " across shards; tokens %" PRIu64
                 "\n" PROG ": bytes in %" PRIu64 ", out %" PRIu64 "\n" PROG
                 ": shard %.3f s, transform %.3f s (%.1f MB/s, %.0f docs/s), "
                 "total %.3f s\n" PROG ": wrote %s/summary.json\n",
            marin_runtime_backend(rt), cfg.shards, cfg.max_in_flight,
            d.t.docs_in, d.t.docs_out, d.t.filtered, d.t.dup_within,
            d.t.dup_across, d.t.tokens, d.t.bytes_in, d.t.bytes_out, t1 - t0,
            map_s, (double)d.t.bytes_in / 1e6 / map_s,
            (double)d.t.docs_in / map_s, t3 - t0, out);
    status = 0;

done:
    marin_runtime_close(rt);
    manifest_free(&m);
    hset_free(&d.seen);
    free(d.arg);
    json_decref(d.per_shard);
    return status;
}
