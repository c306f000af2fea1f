/* libFuzzer target: the wire format (src/core/codec.h).
 *
 * Part 1: the input, copied into a buffer of its exact size (ASan catches a
 * read past the end), goes to marin__frame_decode() with a cap of 1 MiB.
 * It must give MARIN_OK, MARIN_EPROTO or MARIN_ETOOBIG, with a message on
 * failure and empty out-parameters. marin__frame_header() must agree with
 * it on the header. A payload that decodes is read as a little program of
 * fields (an opcode byte, then a u8, u32, u64, i32, byte string or string)
 * until a read fails; the fields read are written again with marin__wbuf
 * and must give back exactly the bytes consumed.
 *
 * Part 2: the input, as a payload (type = its first byte), is encoded,
 * checked (header, zstd only when smaller and only at the threshold) and
 * decoded again, and must come back unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marin/error.h"
#include "alloc.h"
#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP ((size_t)1 << 20)

__attribute__((noreturn)) static void fail(const char *what)
{
    fprintf(stderr, "fuzz_codec: %s\n  last error: %s\n", what,
            marin_last_error());
    abort();
}

/* Read fields until one fails; write them back; compare. */
static void parse_payload(const unsigned char *p, size_t n)
{
    marin__rbuf r;
    marin__wbuf w;
    marin__rbuf_init(&r, p, n, "fuzz");
    marin__wbuf_init(&w);
    size_t good = 0; /* bytes consumed by the fields read whole */
    for (;;) {
        uint8_t op, u8;
        uint32_t u32;
        uint64_t u64;
        int32_t i32;
        const void *b;
        size_t blen;
        char *s;
        size_t before = r.left;
        if (marin__rbuf_u8(&r, "op", &op) != MARIN_OK)
            break;
        int rc = MARIN_OK;
        switch (op % 6) {
        case 0:
            if ((rc = marin__rbuf_u8(&r, "u8", &u8)) == MARIN_OK) {
                marin__wbuf_u8(&w, op);
                marin__wbuf_u8(&w, u8);
            }
            break;
        case 1:
            if ((rc = marin__rbuf_u32(&r, "u32", &u32)) == MARIN_OK) {
                marin__wbuf_u8(&w, op);
                marin__wbuf_u32(&w, u32);
            }
            break;
        case 2:
            if ((rc = marin__rbuf_u64(&r, "u64", &u64)) == MARIN_OK) {
                marin__wbuf_u8(&w, op);
                marin__wbuf_u64(&w, u64);
            }
            break;
        case 3:
            if ((rc = marin__rbuf_i32(&r, "i32", &i32)) == MARIN_OK) {
                marin__wbuf_u8(&w, op);
                marin__wbuf_i32(&w, i32);
            }
            break;
        case 4:
            if ((rc = marin__rbuf_bytes(&r, "bytes", &b, &blen)) == MARIN_OK) {
                if ((const unsigned char *)b < p ||
                    (const unsigned char *)b + blen > p + n)
                    fail("rbuf_bytes: borrowed bytes outside the input");
                marin__wbuf_u8(&w, op);
                marin__wbuf_bytes(&w, b, blen);
            }
            break;
        default:
            s = NULL;
            if ((rc = marin__rbuf_str(&r, "str", &s)) == MARIN_OK) {
                if (!s)
                    fail("rbuf_str: MARIN_OK without a string");
                marin__wbuf_u8(&w, op);
                marin__wbuf_str(&w, s);
                marin__free(s);
            } else if (s) {
                fail("rbuf_str: a string left behind on failure");
            }
            break;
        }
        if (rc != MARIN_OK) {
            if (rc != MARIN_EPROTO && rc != MARIN_ENOMEM)
                fail("rbuf: unexpected error code");
            if (r.left != before - 1)
                fail("rbuf: a failed read consumed input");
            break;
        }
        good = n - r.left;
    }
    if (r.left > n)
        fail("rbuf: left grew");
    if (!w.failed && (w.len != good || (good && memcmp(w.data, p, good) != 0)))
        fail("rbuf/wbuf: the fields written back differ from those read");
    if ((marin__rbuf_end(&r) == MARIN_OK) != (r.left == 0))
        fail("rbuf_end disagrees with what is left");
    marin__wbuf_free(&w);
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf)
        return;
    memcpy(buf, data, size);
    uint8_t type = 0x5a;
    void *payload = (void *)&type;
    size_t plen = 99;
    int rc = marin__frame_decode(buf, size, FUZZ_CAP, &type, &payload, &plen);
    if (rc != MARIN_OK) {
        if (rc != MARIN_EPROTO && rc != MARIN_ETOOBIG)
            fail("frame_decode: unexpected error code");
        if (payload || plen || type)
            fail("frame_decode: out-parameters set on failure");
        if (strncmp(marin_last_error(), "frame: ", 7) != 0)
            fail("frame_decode: a failure without a frame message");
    } else {
        if (!payload || plen > FUZZ_CAP)
            fail("frame_decode: bad payload on success");
        uint8_t t2;
        size_t stored;
        if (marin__frame_header(buf, FUZZ_CAP, &t2, &stored) != MARIN_OK ||
            t2 != type || stored != size - MARIN__FRAME_HEADER)
            fail("frame_header disagrees with frame_decode");
        if (!(buf[6] & 1) &&
            (plen != stored ||
             memcmp(payload, buf + MARIN__FRAME_HEADER, plen) != 0))
            fail("frame_decode: a raw payload came back changed");
        parse_payload(payload, plen);
        marin__free(payload);
    }
    free(buf);
}

static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    uint8_t type = size ? data[0] : 0;
    void *frame = NULL;
    size_t flen = 0;
    if (marin__frame_encode(type, data, size, &frame, &flen) != MARIN_OK)
        fail("frame_encode failed");
    const unsigned char *f = frame;
    int zstd = f[6] & 1;
    if (zstd &&
        (size < MARIN__FRAME_ZSTD_MIN || flen >= MARIN__FRAME_HEADER + size))
        fail("frame_encode: compressed when it should not have");
    if (!zstd && flen != MARIN__FRAME_HEADER + size)
        fail("frame_encode: raw frame of the wrong length");
    uint8_t t2;
    size_t stored;
    if (marin__frame_header(f, size, &t2, &stored) != MARIN_OK || t2 != type ||
        stored != flen - MARIN__FRAME_HEADER)
        fail("frame_header refused an encoded frame");
    void *back = NULL;
    size_t blen = 0;
    if (marin__frame_decode(frame, flen, size, &t2, &back, &blen) != MARIN_OK)
        fail("frame_decode refused an encoded frame");
    if (t2 != type || blen != size || (size && memcmp(back, data, size) != 0))
        fail("round trip changed the payload");
    marin__free(back);
    marin__free(frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_CAP + MARIN__FRAME_HEADER)
        return 0;
    fuzz_decode(data, size);
    fuzz_round_trip(data, size);
    return 0;
}
