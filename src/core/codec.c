/* The one wire format (codec.h): payload fields, frames, frames over a file
 * descriptor.
 *
 * Everything is encoded byte by byte, little endian, never by casting a
 * struct. Decoders check every length against what is left before reading
 * it and allocate at most the caller's cap (zstd payloads: exactly the
 * declared length, which the header check bounded). A frame read from a
 * descriptor that fails its checks leaves the stream out of step: the caller
 * closes it. */
#define _GNU_SOURCE 1 /* GNU strerror_r */
#include "codec.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "alloc.h"
#include "fail.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* no such flag here: callers ignore SIGPIPE */
#endif

#define FLAG_ZSTD 0x01u
#define FLAGS_KNOWN FLAG_ZSTD
#define ZSTD_LEVEL 1
#define WBUF_MIN_CAP 64
/* One read()/send() asks for at most this much (well under SSIZE_MAX). */
#define IO_CHUNK ((size_t)1 << 30)

static const unsigned char frame_magic[4] = {'M', 'R', 'N', 'F'};

/* ---- little-endian helpers ---- */

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)((v >> 24) & 0xff);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* ---- marin__wbuf ---- */

void marin__wbuf_init(marin__wbuf *w)
{
    w->data = NULL;
    w->len = 0;
    w->cap = 0;
    w->failed = 0;
}

void marin__wbuf_free(marin__wbuf *w)
{
    marin__free(w->data);
    marin__wbuf_init(w);
}

/* Give up: drop what was written, and make every later write a no-op. */
static void wbuf_fail(marin__wbuf *w)
{
    marin__free(w->data);
    w->data = NULL;
    w->len = 0;
    w->cap = 0;
    w->failed = 1;
}

/* Room for @p n more bytes (capacity doubles); the address to write them,
 * or NULL once the buffer has failed. */
static unsigned char *wbuf_room(marin__wbuf *w, size_t n)
{
    if (w->failed)
        return NULL;
    if (n > SIZE_MAX - w->len) {
        wbuf_fail(w);
        return NULL;
    }
    size_t need = w->len + n;
    if (need > w->cap) {
        size_t cap = w->cap ? w->cap : WBUF_MIN_CAP;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        unsigned char *d = marin__realloc(w->data, cap);
        if (!d) {
            wbuf_fail(w);
            return NULL;
        }
        w->data = d;
        w->cap = cap;
    }
    unsigned char *at = w->data + w->len;
    w->len = need;
    return at;
}

void marin__wbuf_u8(marin__wbuf *w, uint8_t v)
{
    unsigned char *p = wbuf_room(w, 1);
    if (p)
        p[0] = v;
}

void marin__wbuf_u32(marin__wbuf *w, uint32_t v)
{
    unsigned char *p = wbuf_room(w, 4);
    if (p)
        put_u32(p, v);
}

void marin__wbuf_u64(marin__wbuf *w, uint64_t v)
{
    unsigned char *p = wbuf_room(w, 8);
    if (p) {
        put_u32(p, (uint32_t)(v & 0xffffffffu));
        put_u32(p + 4, (uint32_t)(v >> 32));
    }
}

void marin__wbuf_i32(marin__wbuf *w, int32_t v)
{
    marin__wbuf_u32(w, (uint32_t)v); /* two's complement */
}

void marin__wbuf_bytes(marin__wbuf *w, const void *p, size_t len)
{
    if (w->failed)
        return;
    if (len > UINT32_MAX) {
        wbuf_fail(w);
        return;
    }
    unsigned char *at = wbuf_room(w, 4 + len);
    if (!at)
        return;
    put_u32(at, (uint32_t)len);
    if (len)
        memcpy(at + 4, p, len);
}

void marin__wbuf_str(marin__wbuf *w, const char *s)
{
    marin__wbuf_bytes(w, s, s ? strlen(s) : 0);
}

/* ---- marin__rbuf ---- */

void marin__rbuf_init(marin__rbuf *r, const void *p, size_t len,
                      const char *what)
{
    r->p = p;
    r->left = p ? len : 0;
    r->what = what;
}

static const char *rbuf_what(const marin__rbuf *r)
{
    return r->what ? r->what : "payload";
}

static int rbuf_short(const marin__rbuf *r, const char *field, size_t need)
{
    return marin__err(MARIN_EPROTO, "%s: %s needs %zu bytes, %zu left",
                      rbuf_what(r), field ? field : "field", need, r->left);
}

/* The next @p n bytes, consumed; NULL (and the message) when fewer are left. */
static const unsigned char *rbuf_take(marin__rbuf *r, const char *field,
                                      size_t n, int *rc)
{
    if (r->left < n) {
        *rc = rbuf_short(r, field, n);
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += n;
    r->left -= n;
    *rc = MARIN_OK;
    return at;
}

int marin__rbuf_u8(marin__rbuf *r, const char *field, uint8_t *v)
{
    int rc;
    const unsigned char *p = rbuf_take(r, field, 1, &rc);
    if (p)
        *v = p[0];
    return rc;
}

int marin__rbuf_u32(marin__rbuf *r, const char *field, uint32_t *v)
{
    int rc;
    const unsigned char *p = rbuf_take(r, field, 4, &rc);
    if (p)
        *v = get_u32(p);
    return rc;
}

int marin__rbuf_u64(marin__rbuf *r, const char *field, uint64_t *v)
{
    int rc;
    const unsigned char *p = rbuf_take(r, field, 8, &rc);
    if (p)
        *v = (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
    return rc;
}

int marin__rbuf_i32(marin__rbuf *r, const char *field, int32_t *v)
{
    uint32_t u = 0;
    int rc = marin__rbuf_u32(r, field, &u);
    if (rc ==
        MARIN_OK) /* two's complement, without implementation-defined casts */
        *v = u <= INT32_MAX ? (int32_t)u
                            : (int32_t)(u - 2147483648u) + INT32_MIN;
    return rc;
}

/* Length and address of the next byte string, without consuming it. */
static int rbuf_peek_bytes(const marin__rbuf *r, const char *field,
                           const unsigned char **p, size_t *len)
{
    if (r->left < 4)
        return rbuf_short(r, field, 4);
    size_t n = get_u32(r->p);
    if (r->left - 4 < n)
        return marin__err(MARIN_EPROTO, "%s: %s needs %zu bytes, %zu left",
                          rbuf_what(r), field ? field : "field", n,
                          r->left - 4);
    *p = r->p + 4;
    *len = n;
    return MARIN_OK;
}

int marin__rbuf_count(marin__rbuf *r, const char *field, size_t per, uint32_t *n)
{
    int rc = marin__rbuf_u32(r, field, n);
    if (rc == MARIN_OK && (size_t)*n > r->left / per)
        rc = marin__err(MARIN_EPROTO, "%s: %s says %u entries but only %zu bytes are "
                        "left", r->what, field, *n, r->left);
    return rc;
}

int marin__rbuf_bytes(marin__rbuf *r, const char *field, const void **p,
                      size_t *len)
{
    const unsigned char *at = NULL;
    size_t n = 0;
    int rc = rbuf_peek_bytes(r, field, &at, &n);
    if (rc != MARIN_OK)
        return rc;
    r->p = at + n;
    r->left -= 4 + n;
    *p = at;
    *len = n;
    return MARIN_OK;
}

int marin__rbuf_str(marin__rbuf *r, const char *field, char **s)
{
    const unsigned char *at = NULL;
    size_t n = 0;
    *s = NULL;
    int rc = rbuf_peek_bytes(r, field, &at, &n);
    if (rc != MARIN_OK)
        return rc;
    const unsigned char *nul = memchr(at, '\0', n);
    if (nul)
        return marin__err(MARIN_EPROTO,
                          "%s: %s holds a NUL at offset %zu of %zu bytes "
                          "(not a string)",
                          rbuf_what(r), field ? field : "field",
                          (size_t)(nul - at), n);
    char *copy = marin__malloc(n + 1);
    if (!copy)
        return marin__err(MARIN_ENOMEM,
                          "%s: out of memory copying %s (%zu bytes)",
                          rbuf_what(r), field ? field : "field", n);
    memcpy(copy, at, n);
    copy[n] = '\0';
    r->p = at + n;
    r->left -= 4 + n;
    *s = copy;
    return MARIN_OK;
}

int marin__rbuf_end(marin__rbuf *r)
{
    if (r->left)
        return marin__err(
            MARIN_EPROTO,
            "%s: %zu bytes left over after the last field (a frame "
            "of another layout?)",
            rbuf_what(r), r->left);
    return MARIN_OK;
}

/* ---- frames ---- */

typedef struct {
    uint8_t type, flags;
    size_t stored, raw;
} frame_hdr;

static int parse_header(const unsigned char *h, size_t cap, frame_hdr *out)
{
    if (memcmp(h, frame_magic, sizeof frame_magic) != 0)
        return marin__err(
            MARIN_EPROTO,
            "frame: bad magic 0x%02x%02x%02x%02x (not a marin frame)", h[0],
            h[1], h[2], h[3]);
    if (h[4] != MARIN__FRAME_VERSION)
        return marin__err(MARIN_EPROTO,
                          "frame: version %u, but this build reads version %u",
                          (unsigned)h[4], (unsigned)MARIN__FRAME_VERSION);
    if (h[6] & ~FLAGS_KNOWN)
        return marin__err(
            MARIN_EPROTO,
            "frame: unknown flags 0x%02x (this build knows 0x%02x)",
            (unsigned)h[6], (unsigned)FLAGS_KNOWN);
    if (h[7] != 0)
        return marin__err(MARIN_EPROTO, "frame: reserved byte is 0x%02x, not 0",
                          (unsigned)h[7]);
    size_t stored = get_u32(h + 8), raw = get_u32(h + 12);
    if (stored > cap)
        return marin__err(MARIN_ETOOBIG,
                          "frame: payload of %zu bytes is over the cap of %zu",
                          stored, cap);
    if (raw > cap)
        return marin__err(
            MARIN_ETOOBIG,
            "frame: payload of %zu bytes once decompressed is over the "
            "cap of %zu",
            raw, cap);
    if (!(h[6] & FLAG_ZSTD) && raw != stored)
        return marin__err(
            MARIN_EPROTO,
            "frame: uncompressed payload stores %zu bytes but declares "
            "%zu",
            stored, raw);
    out->type = h[5];
    out->flags = h[6];
    out->stored = stored;
    out->raw = raw;
    return MARIN_OK;
}

int marin__frame_header(const void *hdr, size_t cap, uint8_t *type,
                        size_t *stored_len)
{
    frame_hdr h;
    *type = 0;
    *stored_len = 0;
    if (!hdr)
        return marin__err(MARIN_EINVAL, "frame: no header");
    int rc = parse_header(hdr, cap, &h);
    if (rc != MARIN_OK)
        return rc;
    *type = h.type;
    *stored_len = h.stored;
    return MARIN_OK;
}

/* Decompress a zstd payload (one frame, h->stored bytes at @p src) into a new
 * buffer of exactly h->raw bytes. */
static int unzstd(const frame_hdr *h, const unsigned char *src, void **out)
{
    uint32_t zmagic = h->stored >= 4 ? get_u32(src) : 0;
    if (zmagic != ZSTD_MAGICNUMBER)
        return marin__err(
            MARIN_EPROTO,
            "frame: payload flagged zstd is not a zstd frame (%zu bytes, "
            "magic 0x%08x)",
            h->stored, (unsigned)zmagic);
    size_t flen = ZSTD_findFrameCompressedSize(src, h->stored);
    if (ZSTD_isError(flen))
        return marin__err(MARIN_EPROTO,
                          "frame: corrupt zstd payload of %zu bytes: %s",
                          h->stored, ZSTD_getErrorName(flen));
    if (flen != h->stored)
        return marin__err(
            MARIN_EPROTO,
            "frame: zstd payload of %zu bytes holds %zu bytes after its "
            "first zstd frame (one frame expected)",
            h->stored, h->stored - flen);
    unsigned long long csize = ZSTD_getFrameContentSize(src, h->stored);
    if (csize == ZSTD_CONTENTSIZE_UNKNOWN || csize == ZSTD_CONTENTSIZE_ERROR)
        return marin__err(
            MARIN_EPROTO,
            "frame: zstd payload does not declare its size (the header "
            "says %zu bytes)",
            h->raw);
    if (csize != h->raw)
        return marin__err(
            MARIN_EPROTO,
            "frame: zstd payload holds %llu bytes but the header says %zu",
            csize, h->raw);
    void *dst = marin__malloc(h->raw);
    if (!dst)
        return marin__err(MARIN_ENOMEM,
                          "frame: out of memory for a payload of %zu bytes",
                          h->raw);
    size_t got = ZSTD_decompress(dst, h->raw, src, h->stored);
    if (ZSTD_isError(got) || got != h->raw) {
        int rc;
        if (!ZSTD_isError(got))
            rc = marin__err(
                MARIN_EPROTO,
                "frame: zstd payload decompressed to %zu bytes but the "
                "header says %zu",
                got, h->raw);
        else if (ZSTD_getErrorCode(got) == ZSTD_error_memory_allocation)
            rc = marin__err(MARIN_ENOMEM,
                            "frame: out of memory decompressing %zu bytes",
                            h->raw);
        else
            rc = marin__err(MARIN_EPROTO,
                            "frame: corrupt zstd payload of %zu bytes: %s",
                            h->stored, ZSTD_getErrorName(got));
        marin__free(dst);
        return rc;
    }
    *out = dst;
    return MARIN_OK;
}

int marin__frame_encode(uint8_t type, const void *payload, size_t len,
                        void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX)
        return marin__err(
            MARIN_ETOOBIG,
            "frame: payload of %zu bytes is over the format's limit of "
            "%u",
            len, (unsigned)UINT32_MAX);
    if (!payload && len)
        return marin__err(MARIN_EINVAL, "frame: NULL payload of %zu bytes",
                          len);
    unsigned char *f = marin__malloc(MARIN__FRAME_HEADER + len);
    if (!f)
        return marin__err(MARIN_ENOMEM,
                          "frame: out of memory for a frame of %zu bytes",
                          MARIN__FRAME_HEADER + len);
    size_t stored = len;
    uint8_t flags = 0;
    if (len >= MARIN__FRAME_ZSTD_MIN) {
        /* Room for one byte less than the payload: zstd fails with
         * "destination too small" unless compressing saves space (or on
         * any other failure of its own; the payload then goes raw). */
        size_t z = ZSTD_compress(f + MARIN__FRAME_HEADER, len - 1, payload, len,
                                 ZSTD_LEVEL);
        if (!ZSTD_isError(z) && z < len) {
            stored = z;
            flags = FLAG_ZSTD;
        }
    }
    if (!flags && len)
        memcpy(f + MARIN__FRAME_HEADER, payload, len);
    memcpy(f, frame_magic, sizeof frame_magic);
    f[4] = MARIN__FRAME_VERSION;
    f[5] = type;
    f[6] = flags;
    f[7] = 0;
    put_u32(f + 8, (uint32_t)stored);
    put_u32(f + 12, (uint32_t)len);
    if (stored <
        len) { /* give back what compression saved; keep it if that fails */
        unsigned char *g = marin__realloc(f, MARIN__FRAME_HEADER + stored);
        if (g)
            f = g;
    }
    *out = f;
    *out_len = MARIN__FRAME_HEADER + stored;
    return MARIN_OK;
}

int marin__frame_decode(const void *frame, size_t len, size_t cap,
                        uint8_t *type, void **payload, size_t *plen)
{
    *type = 0;
    *payload = NULL;
    *plen = 0;
    if (!frame && len)
        return marin__err(MARIN_EINVAL, "frame: NULL frame of %zu bytes", len);
    if (len < MARIN__FRAME_HEADER)
        return marin__err(MARIN_EPROTO,
                          "frame: truncated header: %zu of %d bytes", len,
                          MARIN__FRAME_HEADER);
    const unsigned char *f = frame;
    frame_hdr h;
    int rc = parse_header(f, cap, &h);
    if (rc != MARIN_OK)
        return rc;
    size_t have = len - MARIN__FRAME_HEADER;
    if (have < h.stored)
        return marin__err(MARIN_EPROTO,
                          "frame: truncated payload: %zu of %zu bytes", have,
                          h.stored);
    if (have > h.stored)
        return marin__err(
            MARIN_EPROTO,
            "frame: %zu bytes after the end of the frame (payload of %zu "
            "bytes)",
            have - h.stored, h.stored);
    void *out = NULL;
    if (h.flags & FLAG_ZSTD) {
        rc = unzstd(&h, f + MARIN__FRAME_HEADER, &out);
        if (rc != MARIN_OK)
            return rc;
    } else {
        out = marin__memdup(f + MARIN__FRAME_HEADER, h.stored);
        if (!out)
            return marin__err(MARIN_ENOMEM,
                              "frame: out of memory for a payload of %zu bytes",
                              h.stored);
    }
    *type = h.type;
    *payload = out;
    *plen = h.raw;
    return MARIN_OK;
}

/* ---- frames over a file descriptor ---- */

/* Wait until @p fd is ready (a descriptor left non-blocking). */
static void wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    size_t done = 0;
    int sock = 1;
    while (done < n) {
        size_t chunk = n - done < IO_CHUNK ? n - done : IO_CHUNK;
        ssize_t k;
        if (sock) {
            k = send(fd, p + done, chunk, MSG_NOSIGNAL);
            if (k < 0 && errno == ENOTSOCK) {
                sock = 0;
                continue;
            }
        } else {
            k = write(fd, p + done, chunk);
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_fd(fd, POLLOUT);
            continue;
        }
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            char buf[128];
            return marin__err(
                MARIN_EUNAVAILABLE,
                "frame: writing a frame of %zu bytes to fd %d failed after "
                "%zu bytes: %s%s",
                n, fd, done, strerror_r(e, buf, sizeof buf),
                e == EPIPE || e == ECONNRESET ? " (the peer is gone)" : "");
        }
        done += (size_t)k;
    }
    return MARIN_OK;
}

/* Read exactly @p n bytes of the frame's @p part ("header", "payload"). */
static int read_all(int fd, unsigned char *p, size_t n, const char *part)
{
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < IO_CHUNK ? n - done : IO_CHUNK;
        ssize_t k = read(fd, p + done, chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_fd(fd, POLLIN);
            continue;
        }
        if (k == 0)
            return marin__err(
                MARIN_EUNAVAILABLE,
                "frame: peer closed the connection after %zu of %zu %s "
                "bytes (fd %d)",
                done, n, part, fd);
        if (k < 0) {
            char buf[128];
            return marin__err(
                MARIN_EUNAVAILABLE,
                "frame: reading fd %d failed after %zu of %zu %s bytes: %s", fd,
                done, n, part, strerror_r(errno, buf, sizeof buf));
        }
        done += (size_t)k;
    }
    return MARIN_OK;
}

int marin__frame_write_fd(int fd, uint8_t type, const void *payload, size_t len)
{
    void *f = NULL;
    size_t flen = 0;
    int rc = marin__frame_encode(type, payload, len, &f, &flen);
    if (rc != MARIN_OK)
        return rc;
    rc = write_all(fd, f, flen);
    marin__free(f);
    return rc;
}

int marin__frame_read_fd(int fd, size_t cap, uint8_t *type, void **payload,
                         size_t *plen)
{
    *type = 0;
    *payload = NULL;
    *plen = 0;
    unsigned char hdr[MARIN__FRAME_HEADER];
    int rc = read_all(fd, hdr, sizeof hdr, "header");
    if (rc != MARIN_OK)
        return rc;
    frame_hdr h;
    if ((rc = parse_header(hdr, cap, &h)) != MARIN_OK)
        return rc;
    unsigned char *stored = marin__malloc(h.stored);
    if (!stored)
        return marin__err(MARIN_ENOMEM,
                          "frame: out of memory for a payload of %zu bytes",
                          h.stored);
    if ((rc = read_all(fd, stored, h.stored, "payload")) != MARIN_OK) {
        marin__free(stored);
        return rc;
    }
    void *out = stored;
    if (h.flags & FLAG_ZSTD) {
        rc = unzstd(&h, stored, &out);
        marin__free(stored);
        if (rc != MARIN_OK)
            return rc;
    }
    *type = h.type;
    *payload = out;
    *plen = h.raw;
    return MARIN_OK;
}
