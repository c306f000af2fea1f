/* demo_zstd.c — the zstd streams demo_pipeline's shards are made of: a
 * writer of one checksummed frame, renamed into place when complete, and a
 * bounds-checked line reader. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_pipeline.h"

#define MAX_LINE_BYTES (64u * 1024u * 1024u)        /* one JSON line */
#define MAX_SHARD_BYTES (UINT64_C(4) << 30)         /* decompressed shard */
#define ZSTD_LEVEL 3

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

void zw_abort(zwriter_t *w)
{
    if (w->f) {
        zw_free(w);
        unlink(w->tmp);
    }
    zw_free(w);
}

/* Open a one-frame zstd stream to @p path (written to path.tmp, renamed by
 * zw_close). Prints what went wrong. */
int zw_open(zwriter_t *w, const char *path)
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

int zw_write(zwriter_t *w, const void *data, size_t n)
{
    return zw_stream(w, data, n, ZSTD_e_continue);
}

/* Finish the frame, close and rename into place; on failure removes the
 * temporary file. */
int zw_close(zwriter_t *w)
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

int zr_open(zreader_t *r, const char *path)
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

void zr_close(zreader_t *r)
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
int zr_getline(zreader_t *r, const unsigned char **line, size_t *len)
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
