/* The wire format (src/core/codec.h): payload fields, frames, frames over a
 * file descriptor, every decode error, allocation failure. The codec is
 * internal: where OOM matters, codes pass through marin__api_exit as they do
 * in the library's public calls. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zstd.h>

#include "alloc.h"
#include "codec.h"
#include "fail.h"
#include "marin_config.h"
#include "testutil.h"

#define CAP_1M ((size_t)1 << 20)
#define CAP_64M ((size_t)64 << 20)

/* ---- helpers ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* n bytes that zstd cannot shrink. */
static unsigned char *random_bytes(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(next_rand() >> 24);
    return p;
}

/* n bytes of text that zstd shrinks well. */
static unsigned char *text_bytes(size_t n)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog; "
                                "marin frames travel between processes. ";
    unsigned char *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)words[(i * 7 + i / 97) % (sizeof words - 1)];
    return p;
}

static void encode_ok(uint8_t type, const void *payload, size_t len,
                      unsigned char **f, size_t *flen)
{
    void *out = NULL;
    ck_assert_marin(marin__frame_encode(type, payload, len, &out, flen),
                    MARIN_OK);
    ck_assert_ptr_nonnull(out);
    *f = out;
}

static void decode_ok(const void *f, size_t flen, size_t cap, uint8_t want_type,
                      const void *want, size_t want_len)
{
    uint8_t type = 0;
    void *p = NULL;
    size_t plen = 0;
    ck_assert_marin(marin__frame_decode(f, flen, cap, &type, &p, &plen),
                    MARIN_OK);
    ck_assert_uint_eq(type, want_type);
    ck_assert_uint_eq(plen, want_len);
    ck_assert_ptr_nonnull(p);
    ck_assert(want_len == 0 || memcmp(p, want, want_len) == 0);
    marin__free(p);
}

/* Decoding must fail with @p code and a message containing @p needle, and
 * leave the out-parameters empty. */
static void decode_fails(const void *f, size_t flen, size_t cap, int code,
                         const char *needle)
{
    uint8_t type = 0x5a;
    void *p = (void *)&type;
    size_t plen = 77;
    ck_assert_marin(marin__frame_decode(f, flen, cap, &type, &p, &plen), code);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(plen, 0);
    ck_assert_uint_eq(type, 0);
    ck_assert_lasterr_has(needle);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* A frame of the given parts, as a foreign or corrupt writer might send it. */
static unsigned char *raw_frame(const char magic[4], uint8_t version,
                                uint8_t type, uint8_t flags, uint8_t reserved,
                                uint32_t stored, uint32_t raw,
                                const void *payload, size_t plen)
{
    unsigned char *f = malloc(MARIN__FRAME_HEADER + plen);
    ck_assert_ptr_nonnull(f);
    memcpy(f, magic, 4);
    f[4] = version;
    f[5] = type;
    f[6] = flags;
    f[7] = reserved;
    put32(f + 8, stored);
    put32(f + 12, raw);
    if (plen)
        memcpy(f + MARIN__FRAME_HEADER, payload, plen);
    return f;
}

static void socket_pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void write_exactly(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
}

/* ---- payload fields ---- */

START_TEST(test_codec_fields_round_trip)
{
    static const unsigned char bin[] = {0, 1, 2, 0xff, 0, 0x80};
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_u8(&w, 0);
    marin__wbuf_u8(&w, 0xff);
    marin__wbuf_u32(&w, 0);
    marin__wbuf_u32(&w, UINT32_MAX);
    marin__wbuf_u32(&w, 0xdeadbeef);
    marin__wbuf_u64(&w, 0);
    marin__wbuf_u64(&w, UINT64_MAX);
    marin__wbuf_u64(&w, 0x0123456789abcdefULL);
    marin__wbuf_i32(&w, 0);
    marin__wbuf_i32(&w, -1);
    marin__wbuf_i32(&w, INT32_MIN);
    marin__wbuf_i32(&w, INT32_MAX);
    marin__wbuf_i32(&w, -123456);
    marin__wbuf_bytes(&w, bin, sizeof bin);
    marin__wbuf_bytes(&w, NULL, 0);
    marin__wbuf_bytes(&w, "x", 0);
    marin__wbuf_str(&w, "hello, world");
    marin__wbuf_str(&w, "");
    marin__wbuf_str(&w, NULL);
    marin__wbuf_str(&w, "caf\xc3\xa9");
    ck_assert_int_eq(w.failed, 0);
    ck_assert_ptr_nonnull(w.data);

    marin__rbuf r;
    marin__rbuf_init(&r, w.data, w.len, "test");
    uint8_t u8;
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    const void *p;
    size_t n;
    char *s;
    ck_assert_marin(marin__rbuf_u8(&r, "a", &u8), MARIN_OK);
    ck_assert_uint_eq(u8, 0);
    ck_assert_marin(marin__rbuf_u8(&r, "b", &u8), MARIN_OK);
    ck_assert_uint_eq(u8, 0xff);
    ck_assert_marin(marin__rbuf_u32(&r, "c", &u32), MARIN_OK);
    ck_assert_uint_eq(u32, 0);
    ck_assert_marin(marin__rbuf_u32(&r, "d", &u32), MARIN_OK);
    ck_assert_uint_eq(u32, UINT32_MAX);
    ck_assert_marin(marin__rbuf_u32(&r, "e", &u32), MARIN_OK);
    ck_assert_uint_eq(u32, 0xdeadbeef);
    ck_assert_marin(marin__rbuf_u64(&r, "f", &u64), MARIN_OK);
    ck_assert_uint_eq(u64, 0);
    ck_assert_marin(marin__rbuf_u64(&r, "g", &u64), MARIN_OK);
    ck_assert(u64 == UINT64_MAX);
    ck_assert_marin(marin__rbuf_u64(&r, "h", &u64), MARIN_OK);
    ck_assert(u64 == 0x0123456789abcdefULL);
    ck_assert_marin(marin__rbuf_i32(&r, "i", &i32), MARIN_OK);
    ck_assert_int_eq(i32, 0);
    ck_assert_marin(marin__rbuf_i32(&r, "j", &i32), MARIN_OK);
    ck_assert_int_eq(i32, -1);
    ck_assert_marin(marin__rbuf_i32(&r, "k", &i32), MARIN_OK);
    ck_assert_int_eq(i32, INT32_MIN);
    ck_assert_marin(marin__rbuf_i32(&r, "l", &i32), MARIN_OK);
    ck_assert_int_eq(i32, INT32_MAX);
    ck_assert_marin(marin__rbuf_i32(&r, "m", &i32), MARIN_OK);
    ck_assert_int_eq(i32, -123456);
    ck_assert_marin(marin__rbuf_bytes(&r, "n", &p, &n), MARIN_OK);
    ck_assert_uint_eq(n, sizeof bin);
    ck_assert_mem_eq(p, bin, sizeof bin);
    /* borrowed from the input */
    ck_assert(p > (const void *)w.data && p < (const void *)(w.data + w.len));
    ck_assert_marin(marin__rbuf_bytes(&r, "o", &p, &n), MARIN_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_marin(marin__rbuf_bytes(&r, "p", &p, &n), MARIN_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_marin(marin__rbuf_str(&r, "q", &s), MARIN_OK);
    ck_assert_str_eq(s, "hello, world");
    marin__free(s);
    ck_assert_marin(marin__rbuf_str(&r, "r", &s), MARIN_OK);
    ck_assert_str_eq(s, "");
    marin__free(s);
    ck_assert_marin(marin__rbuf_str(&r, "s", &s), MARIN_OK);
    ck_assert_str_eq(s, ""); /* NULL went as length 0 */
    marin__free(s);
    ck_assert_marin(marin__rbuf_str(&r, "t", &s), MARIN_OK);
    ck_assert_str_eq(s, "caf\xc3\xa9");
    marin__free(s);
    ck_assert_uint_eq(r.left, 0);
    ck_assert_marin(marin__rbuf_end(&r), MARIN_OK);
    marin__wbuf_free(&w);
    ck_assert_ptr_null(w.data);
    ck_assert_uint_eq(w.len, 0);
    marin__wbuf_free(&w); /* twice is fine */
}
END_TEST

/* The bytes are little endian, whatever the host. */
START_TEST(test_codec_fields_layout)
{
    static const unsigned char want[] = {
        0x7f,                                           /* u8 */
        0x04, 0x03, 0x02, 0x01,                         /* u32 0x01020304 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* u64 */
        0xfe, 0xff, 0xff, 0xff,                         /* i32 -2 */
        0x02, 0x00, 0x00, 0x00, 'a',  'b',              /* bytes "ab" */
        0x00, 0x00, 0x00, 0x00,                         /* str NULL */
        0x03, 0x00, 0x00, 0x00, 'x',  'y',  'z',        /* str "xyz" */
    };
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_u8(&w, 0x7f);
    marin__wbuf_u32(&w, 0x01020304);
    marin__wbuf_u64(&w, 0x0102030405060708ULL);
    marin__wbuf_i32(&w, -2);
    marin__wbuf_bytes(&w, "ab", 2);
    marin__wbuf_str(&w, NULL);
    marin__wbuf_str(&w, "xyz");
    ck_assert_int_eq(w.failed, 0);
    ck_assert_uint_eq(w.len, sizeof want);
    ck_assert_mem_eq(w.data, want, sizeof want);
    marin__wbuf_free(&w);
}
END_TEST

START_TEST(test_codec_wbuf_growth)
{
    marin__wbuf w;
    marin__wbuf_init(&w);
    ck_assert_ptr_null(w.data);
    ck_assert_uint_eq(w.cap, 0);
    size_t last_cap = 0;
    int grew = 0;
    for (size_t i = 0; i < 200000; i++) {
        marin__wbuf_u8(&w, (uint8_t)i);
        ck_assert_uint_ge(w.cap, w.len);
        if (w.cap != last_cap) {
            grew++;
            ck_assert(last_cap == 0 || w.cap >= 2 * last_cap); /* geometric */
            last_cap = w.cap;
        }
    }
    ck_assert_int_le(grew, 16);
    ck_assert_uint_lt(w.cap, 2 * w.len + 64);
    for (size_t i = 0; i < 200000; i++)
        ck_assert_uint_eq(w.data[i], (uint8_t)i);
    /* one big field at once */
    unsigned char *big = text_bytes(1 << 20);
    marin__wbuf_bytes(&w, big, 1 << 20);
    ck_assert_int_eq(w.failed, 0);
    ck_assert_uint_eq(w.len, 200000 + 4 + (1 << 20));
    ck_assert_mem_eq(w.data + 200000 + 4, big, 1 << 20);
    free(big);
    marin__wbuf_free(&w);
}
END_TEST

/* A failed allocation makes the buffer fail for good: later writes are
 * no-ops, even once memory is back. */
START_TEST(test_codec_wbuf_oom)
{
#if MARIN_FAULT_INJECTION
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__test_fail_alloc_after(0);
    marin__wbuf_u32(&w, 1);
    marin__test_fail_alloc_after(-1);
    ck_assert_int_eq(w.failed, 1);
    ck_assert_ptr_null(w.data);
    ck_assert_uint_eq(w.len, 0);
    marin__wbuf_u8(&w, 1);
    marin__wbuf_u64(&w, 1);
    marin__wbuf_i32(&w, 1);
    marin__wbuf_bytes(&w, "abc", 3);
    marin__wbuf_str(&w, "abc");
    ck_assert_int_eq(w.failed, 1);
    ck_assert_ptr_null(w.data);
    ck_assert_uint_eq(w.len, 0);
    marin__wbuf_free(&w);
    ck_assert_int_eq(w.failed, 0);

    /* failing part way: what was written is dropped (ASan: not leaked) */
    marin__wbuf_init(&w);
    marin__test_fail_alloc_after(2);
    for (int i = 0; i < 1000; i++)
        marin__wbuf_u64(&w, (uint64_t)i);
    marin__test_fail_alloc_after(-1);
    ck_assert_int_eq(w.failed, 1);
    ck_assert_ptr_null(w.data);
    ck_assert_uint_eq(w.len, 0);
    ck_assert_uint_eq(w.cap, 0);
    marin__wbuf_str(&w, "still failed");
    ck_assert_int_eq(w.failed, 1);
    ck_assert_ptr_null(w.data);
    marin__wbuf_free(&w);
#endif
    /* a byte string whose length does not fit the u32 prefix */
#if SIZE_MAX > UINT32_MAX
    marin__wbuf w2;
    marin__wbuf_init(&w2);
    marin__wbuf_u8(&w2, 1);
    marin__wbuf_bytes(&w2, "x", (size_t)UINT32_MAX + 1); /* never read */
    ck_assert_int_eq(w2.failed, 1);
    ck_assert_ptr_null(w2.data);
    marin__wbuf_u8(&w2, 1);
    ck_assert_int_eq(w2.failed, 1);
    marin__wbuf_free(&w2);
#endif
}
END_TEST

START_TEST(test_codec_rbuf_short)
{
    static const unsigned char three[] = {1, 2, 3};
    marin__rbuf r;
    uint32_t u32 = 99;
    uint64_t u64 = 99;
    int32_t i32 = 99;
    uint8_t u8 = 99;
    marin__rbuf_init(&r, three, sizeof three, "task");
    ck_assert_marin(marin__rbuf_u32(&r, "attempt", &u32), MARIN_EPROTO);
    ck_assert_str_eq(marin_last_error(), "task: attempt needs 4 bytes, 3 left");
    ck_assert_uint_eq(u32, 99);
    ck_assert_uint_eq(r.left, 3); /* nothing consumed */
    ck_assert_marin(marin__rbuf_i32(&r, "code", &i32), MARIN_EPROTO);
    ck_assert_lasterr_has("task: code needs 4 bytes, 3 left");
    ck_assert_marin(marin__rbuf_u64(&r, "id", &u64), MARIN_EPROTO);
    ck_assert_lasterr_has("task: id needs 8 bytes, 3 left");
    ck_assert_uint_eq(u64, 99);
    ck_assert_int_eq(i32, 99);
    ck_assert_marin(marin__rbuf_end(&r), MARIN_EPROTO);
    ck_assert_lasterr_has("task: 3 bytes left over");

    /* byte strings: the prefix, then the body */
    const void *p = NULL;
    size_t n = 0;
    char *s = (char *)"untouched";
    ck_assert_marin(marin__rbuf_bytes(&r, "name", &p, &n), MARIN_EPROTO);
    ck_assert_lasterr_has("task: name needs 4 bytes, 3 left");
    ck_assert_marin(marin__rbuf_str(&r, "name", &s), MARIN_EPROTO);
    ck_assert_ptr_null(s);
    static const unsigned char longer[] = {10, 0, 0, 0, 'a', 'b', 'c'};
    marin__rbuf_init(&r, longer, sizeof longer, "result");
    ck_assert_marin(marin__rbuf_bytes(&r, "value", &p, &n), MARIN_EPROTO);
    ck_assert_str_eq(marin_last_error(),
                     "result: value needs 10 bytes, 3 left");
    ck_assert_uint_eq(r.left, sizeof longer);
    ck_assert_marin(marin__rbuf_str(&r, "value", &s), MARIN_EPROTO);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(r.left, sizeof longer);
    /* a huge declared length is only compared, never allocated */
    static const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff, 'a'};
    marin__rbuf_init(&r, huge, sizeof huge, "result");
    ck_assert_marin(marin__rbuf_str(&r, "value", &s), MARIN_EPROTO);
    ck_assert_lasterr_has("needs 4294967295 bytes, 1 left");

    /* reading to the exact end, then one more */
    marin__rbuf_init(&r, three, sizeof three, NULL);
    ck_assert_marin(marin__rbuf_u8(&r, "a", &u8), MARIN_OK);
    ck_assert_marin(marin__rbuf_u8(&r, "b", &u8), MARIN_OK);
    ck_assert_marin(marin__rbuf_u8(&r, "c", &u8), MARIN_OK);
    ck_assert_uint_eq(u8, 3);
    ck_assert_marin(marin__rbuf_end(&r), MARIN_OK);
    ck_assert_marin(marin__rbuf_u8(&r, "d", &u8), MARIN_EPROTO);
    ck_assert_lasterr_has("payload: d needs 1 bytes, 0 left");
    /* an empty input */
    marin__rbuf_init(&r, NULL, 0, "empty");
    ck_assert_marin(marin__rbuf_end(&r), MARIN_OK);
    ck_assert_marin(marin__rbuf_u8(&r, "x", &u8), MARIN_EPROTO);
}
END_TEST

START_TEST(test_codec_rbuf_str_nul)
{
    static const unsigned char in[] = {5, 0, 0, 0, 'a', 'b', 0, 'c', 'd', 7};
    marin__rbuf r;
    marin__rbuf_init(&r, in, sizeof in, "hello");
    char *s = (char *)"untouched";
    ck_assert_marin(marin__rbuf_str(&r, "worker", &s), MARIN_EPROTO);
    ck_assert_ptr_null(s);
    ck_assert_lasterr_has("hello: worker holds a NUL at offset 2 of 5 bytes");
    ck_assert_uint_eq(r.left, sizeof in);
    /* the same field is fine as bytes */
    const void *p;
    size_t n;
    ck_assert_marin(marin__rbuf_bytes(&r, "worker", &p, &n), MARIN_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(r.left, 1);
    ck_assert_marin(marin__rbuf_end(&r), MARIN_EPROTO);
    ck_assert_lasterr_has("hello: 1 bytes left over after the last field");
}
END_TEST

/* ---- frames ---- */

START_TEST(test_codec_frame_layout)
{
    unsigned char *f;
    size_t flen;
    encode_ok(MARIN__FRAME_RESULT, "hello", 5, &f, &flen);
    static const unsigned char want[] = {'M', 'R', 'N', 'F', 1,   2,   0,
                                         0,   5,   0,   0,   0,   5,   0,
                                         0,   0,   'h', 'e', 'l', 'l', 'o'};
    ck_assert_uint_eq(flen, sizeof want);
    ck_assert_mem_eq(f, want, sizeof want);
    uint8_t type = 0;
    size_t stored = 0;
    ck_assert_marin(marin__frame_header(f, 5, &type, &stored), MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_RESULT);
    ck_assert_uint_eq(stored, 5);
    ck_assert_marin(marin__frame_header(f, 4, &type, &stored), MARIN_ETOOBIG);
    ck_assert_uint_eq(type, 0);
    ck_assert_marin(marin__frame_header(NULL, 4, &type, &stored), MARIN_EINVAL);
    ck_assert_uint_eq(type, 0);
    ck_assert_uint_eq(stored, 0);
    marin__free(f);
}
END_TEST

START_TEST(test_codec_frame_small)
{
    static const uint8_t types[] = {MARIN__FRAME_TASK, MARIN__FRAME_RESULT,
                                    MARIN__FRAME_HELLO, 0, 0xff};
    static const size_t sizes[] = {
        0, 1, 15, 16, 17, 100, MARIN__FRAME_ZSTD_MIN - 1};
    for (size_t t = 0; t < sizeof types; t++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unsigned char *payload = text_bytes(sizes[i]);
            unsigned char *f;
            size_t flen;
            encode_ok(types[t], payload, sizes[i], &f, &flen);
            /* under the threshold: stored as it is */
            ck_assert_uint_eq(flen, MARIN__FRAME_HEADER + sizes[i]);
            ck_assert_uint_eq(f[6], 0);
            decode_ok(f, flen, sizes[i], types[t], payload, sizes[i]);
            marin__free(f);
            free(payload);
        }
    /* an empty payload may be NULL */
    unsigned char *f;
    size_t flen;
    encode_ok(MARIN__FRAME_HELLO, NULL, 0, &f, &flen);
    ck_assert_uint_eq(flen, MARIN__FRAME_HEADER);
    decode_ok(f, flen, 0, MARIN__FRAME_HELLO, NULL, 0);
    marin__free(f);
}
END_TEST

START_TEST(test_codec_frame_compressed)
{
    static const size_t sizes[] = {MARIN__FRAME_ZSTD_MIN, 100000,
                                   (size_t)8 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *payload = text_bytes(n);
        unsigned char *f;
        size_t flen;
        encode_ok(MARIN__FRAME_TASK, payload, n, &f, &flen);
        ck_assert_uint_eq(f[6], 1); /* zstd */
        ck_assert_uint_lt(flen, MARIN__FRAME_HEADER + n / 4);
        ck_assert_uint_eq(get32(f + 8), flen - MARIN__FRAME_HEADER);
        ck_assert_uint_eq(get32(f + 12), n);
        ck_assert_uint_eq(get32(f + 16), ZSTD_MAGICNUMBER);
        decode_ok(f, flen, n, MARIN__FRAME_TASK, payload, n);
        decode_fails(f, flen, n - 1, MARIN_ETOOBIG,
                     "once decompressed is over the cap");
        marin__free(f);
        free(payload);
    }
}
END_TEST

START_TEST(test_codec_frame_incompressible)
{
    static const size_t sizes[] = {MARIN__FRAME_ZSTD_MIN, 65536,
                                   (size_t)4 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *payload = random_bytes(n);
        unsigned char *f;
        size_t flen;
        encode_ok(MARIN__FRAME_RESULT, payload, n, &f, &flen);
        ck_assert_uint_eq(f[6], 0); /* zstd would not save space: raw */
        ck_assert_uint_eq(flen, MARIN__FRAME_HEADER + n);
        ck_assert_mem_eq(f + MARIN__FRAME_HEADER, payload, n);
        decode_ok(f, flen, n, MARIN__FRAME_RESULT, payload, n);
        marin__free(f);
        free(payload);
    }
}
END_TEST

START_TEST(test_codec_frame_too_big_to_encode)
{
#if SIZE_MAX > UINT32_MAX
    void *out = (void *)&out;
    size_t out_len = 5;
    ck_assert_marin(marin__frame_encode(MARIN__FRAME_TASK, "x",
                                        (size_t)UINT32_MAX + 1, &out, &out_len),
                    MARIN_ETOOBIG);
    ck_assert_lasterr_has("payload of 4294967296 bytes is over");
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(out_len, 0);
#endif
    void *o = NULL;
    size_t ol = 0;
    ck_assert_marin(marin__frame_encode(1, NULL, 3, &o, &ol), MARIN_EINVAL);
    ck_assert_ptr_null(o);
}
END_TEST

START_TEST(test_codec_decode_truncated)
{
    unsigned char *f;
    size_t flen;
    encode_ok(MARIN__FRAME_TASK, "hello", 5, &f, &flen);
    for (size_t n = 0; n < MARIN__FRAME_HEADER; n++) {
        decode_fails(f, n, CAP_1M, MARIN_EPROTO, "truncated header");
        char want[64];
        snprintf(want, sizeof want, "truncated header: %zu of 16 bytes", n);
        ck_assert_lasterr_has(want);
    }
    for (size_t n = MARIN__FRAME_HEADER; n < flen; n++)
        decode_fails(f, n, CAP_1M, MARIN_EPROTO, "truncated payload");
    ck_assert_lasterr_has("truncated payload: 4 of 5 bytes");
    decode_fails(NULL, 3, CAP_1M, MARIN_EINVAL, "NULL frame");
    marin__free(f);

    /* trailing bytes after a whole frame */
    unsigned char buf[64];
    encode_ok(MARIN__FRAME_TASK, "hello", 5, &f, &flen);
    memcpy(buf, f, flen);
    buf[flen] = 'X';
    decode_fails(buf, flen + 1, CAP_1M, MARIN_EPROTO,
                 "1 bytes after the end of the frame");
    marin__free(f);
}
END_TEST

START_TEST(test_codec_decode_bad_header)
{
    unsigned char *f;

    f = raw_frame("ABCD", 1, 1, 0, 0, 2, 2, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO, "frame: ");
    ck_assert_str_eq(marin_last_error(),
                     "frame: bad magic 0x41424344 (not a marin frame)");
    free(f);
    f = raw_frame("mrnf", 1, 1, 0, 0, 2, 2, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO, "bad magic 0x6d726e66");
    free(f);

    f = raw_frame("MRNF", 2, 1, 0, 0, 2, 2, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO,
                 "frame: version 2, but this build reads version 1");
    free(f);
    f = raw_frame("MRNF", 0, 1, 0, 0, 2, 2, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO, "version 0");
    free(f);

    static const uint8_t bad_flags[] = {0x02, 0x03, 0x80, 0xff};
    for (size_t i = 0; i < sizeof bad_flags; i++) {
        f = raw_frame("MRNF", 1, 1, bad_flags[i], 0, 2, 2, "hi", 2);
        char want[64];
        snprintf(want, sizeof want, "unknown flags 0x%02x", bad_flags[i]);
        decode_fails(f, 18, CAP_1M, MARIN_EPROTO, want);
        free(f);
    }

    f = raw_frame("MRNF", 1, 1, 0, 1, 2, 2, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO, "reserved byte is 0x01, not 0");
    free(f);

    /* stored length over the cap: refused from the header alone */
    f = raw_frame("MRNF", 1, 1, 0, 0, 300000000, 300000000, NULL, 0);
    decode_fails(f, 16, 268435456, MARIN_ETOOBIG, "frame: ");
    ck_assert_str_eq(
        marin_last_error(),
        "frame: payload of 300000000 bytes is over the cap of 268435456");
    uint8_t type = 9;
    size_t stored = 9;
    ck_assert_marin(marin__frame_header(f, 268435456, &type, &stored),
                    MARIN_ETOOBIG);
    ck_assert_uint_eq(stored, 0);
    free(f);
    f = raw_frame("MRNF", 1, 1, 0, 0, UINT32_MAX, UINT32_MAX, NULL, 0);
    decode_fails(f, 16, CAP_1M, MARIN_ETOOBIG, "payload of 4294967295 bytes");
    free(f);

    /* decompressed length over the cap, stored length under it */
    f = raw_frame("MRNF", 1, 1, 1, 0, 2, 2000000, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_ETOOBIG,
                 "payload of 2000000 bytes once decompressed is over the cap "
                 "of 1048576");
    free(f);

    /* not compressed: both lengths must agree */
    f = raw_frame("MRNF", 1, 1, 0, 0, 2, 3, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO,
                 "uncompressed payload stores 2 bytes but declares 3");
    free(f);
    f = raw_frame("MRNF", 1, 1, 0, 0, 2, 1, "hi", 2);
    decode_fails(f, 18, CAP_1M, MARIN_EPROTO, "uncompressed payload stores 2");
    free(f);
}
END_TEST

/* A compressed frame of @p n text bytes (checked to be compressed). */
static unsigned char *zframe(size_t n, size_t *flen, unsigned char **payload)
{
    unsigned char *p = text_bytes(n), *f;
    encode_ok(MARIN__FRAME_TASK, p, n, &f, flen);
    ck_assert_uint_eq(f[6], 1);
    if (payload)
        *payload = p;
    else
        free(p);
    return f;
}

START_TEST(test_codec_decode_bad_zstd)
{
    size_t flen;
    unsigned char *payload, *f = zframe(20000, &flen, &payload);
    size_t stored = flen - MARIN__FRAME_HEADER;
    unsigned char *g = malloc(flen + 4096);
    ck_assert_ptr_nonnull(g);

    /* garbage flagged as zstd */
    unsigned char *junk = random_bytes(500);
    unsigned char *h = raw_frame("MRNF", 1, 1, 1, 0, 500, 20000, junk, 500);
    decode_fails(h, 516, CAP_1M, MARIN_EPROTO,
                 "payload flagged zstd is not a zstd frame");
    free(h);
    /* the zstd magic, then garbage */
    put32(junk, ZSTD_MAGICNUMBER);
    h = raw_frame("MRNF", 1, 1, 1, 0, 500, 20000, junk, 500);
    decode_fails(h, 516, CAP_1M, MARIN_EPROTO, "frame: ");
    free(h);
    /* too short to hold a magic */
    h = raw_frame("MRNF", 1, 1, 1, 0, 2, 20000, "hi", 2);
    decode_fails(h, 18, CAP_1M, MARIN_EPROTO, "not a zstd frame");
    free(h);
    h = raw_frame("MRNF", 1, 1, 1, 0, 0, 0, NULL, 0);
    decode_fails(h, 16, CAP_1M, MARIN_EPROTO, "not a zstd frame");
    free(h);
    free(junk);

    /* a well-formed zstd frame declaring 10 bytes but holding a raw block
     * of 20: only decompression finds out */
    static const unsigned char liar[] = {
        0x28, 0xb5, 0x2f, 0xfd, /* zstd magic */
        0x20, 10,               /* single segment, content size 10 */
        0xa1, 0x00, 0x00,       /* last block, raw, 20 bytes */
        'a',  'b',  'c',  'd',  'e', 'f', 'g', 'h', 'i', 'j',
        'k',  'l',  'm',  'n',  'o', 'p', 'q', 'r', 's', 't'};
    h = raw_frame("MRNF", 1, 1, 1, 0, sizeof liar, 10, liar, sizeof liar);
    decode_fails(h, MARIN__FRAME_HEADER + sizeof liar, CAP_1M, MARIN_EPROTO,
                 "frame: corrupt zstd payload of 29 bytes: ");
    free(h);

    /* the header's raw length disagrees with the zstd frame's */
    memcpy(g, f, flen);
    put32(g + 12, 19999);
    decode_fails(g, flen, CAP_1M, MARIN_EPROTO,
                 "zstd payload holds 20000 bytes but the header says 19999");
    put32(g + 12, 20001);
    decode_fails(g, flen, CAP_1M, MARIN_EPROTO, "but the header says 20001");
    put32(g + 12, 0);
    decode_fails(g, flen, CAP_1M, MARIN_EPROTO, "but the header says 0");

    /* the zstd frame cut short (the lengths adjusted to match) */
    memcpy(g, f, flen);
    put32(g + 8, (uint32_t)(stored - 1));
    decode_fails(g, flen - 1, CAP_1M, MARIN_EPROTO, "corrupt zstd payload");

    /* two zstd frames in one payload */
    memcpy(g, f, flen);
    memcpy(g + flen, f + MARIN__FRAME_HEADER, stored);
    put32(g + 8, (uint32_t)(2 * stored));
    decode_fails(g, flen + stored, CAP_1M, MARIN_EPROTO,
                 "after its first zstd frame");

    /* a zstd frame that does not declare its size */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ck_assert_ptr_nonnull(cc);
    ck_assert(
        !ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
    size_t z =
        ZSTD_compress2(cc, g + MARIN__FRAME_HEADER, 4096, payload, 20000);
    ck_assert(!ZSTD_isError(z));
    ZSTD_freeCCtx(cc);
    memcpy(g, f, MARIN__FRAME_HEADER);
    put32(g + 8, (uint32_t)z);
    decode_fails(g, MARIN__FRAME_HEADER + z, CAP_1M, MARIN_EPROTO,
                 "zstd payload does not declare its size");

    /* and the untouched frame still decodes */
    decode_ok(f, flen, CAP_1M, MARIN__FRAME_TASK, payload, 20000);
    free(g);
    free(payload);
    marin__free(f);
}
END_TEST

/* A payload of fields inside a frame, read back; a reader expecting
 * another layout sees the trailing bytes. */
START_TEST(test_codec_payload_in_frame)
{
    marin__wbuf w;
    marin__wbuf_init(&w);
    marin__wbuf_u64(&w, 42);
    marin__wbuf_str(&w, "square");
    marin__wbuf_bytes(&w, "\x01\x02\x03", 3);
    marin__wbuf_i32(&w, -7);
    ck_assert_int_eq(w.failed, 0);
    unsigned char *f;
    size_t flen;
    encode_ok(MARIN__FRAME_TASK, w.data, w.len, &f, &flen);

    uint8_t type;
    void *p;
    size_t plen;
    ck_assert_marin(marin__frame_decode(f, flen, CAP_1M, &type, &p, &plen),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_TASK);
    marin__rbuf r;
    marin__rbuf_init(&r, p, plen, "task");
    uint64_t id;
    char *name;
    const void *args;
    size_t nargs;
    int32_t prio;
    ck_assert_marin(marin__rbuf_u64(&r, "id", &id), MARIN_OK);
    ck_assert_marin(marin__rbuf_str(&r, "name", &name), MARIN_OK);
    ck_assert_marin(marin__rbuf_bytes(&r, "args", &args, &nargs), MARIN_OK);
    ck_assert_marin(marin__rbuf_i32(&r, "priority", &prio), MARIN_OK);
    ck_assert_marin(marin__rbuf_end(&r), MARIN_OK);
    ck_assert_uint_eq(id, 42);
    ck_assert_str_eq(name, "square");
    ck_assert_uint_eq(nargs, 3);
    ck_assert_mem_eq(args, "\x01\x02\x03", 3);
    ck_assert_int_eq(prio, -7);
    marin__free(name);

    /* an older reader that stops after the name */
    marin__rbuf_init(&r, p, plen, "task");
    ck_assert_marin(marin__rbuf_u64(&r, "id", &id), MARIN_OK);
    ck_assert_marin(marin__rbuf_str(&r, "name", &name), MARIN_OK);
    marin__free(name);
    ck_assert_marin(marin__rbuf_end(&r), MARIN_EPROTO);
    ck_assert_lasterr_has("task: 11 bytes left over after the last field");

    /* a string field holding a NUL */
    marin__wbuf_free(&w);
    marin__wbuf_init(&w);
    marin__wbuf_bytes(&w, "ab\0c", 4);
    marin__free(f);
    marin__free(p);
    encode_ok(MARIN__FRAME_RESULT, w.data, w.len, &f, &flen);
    ck_assert_marin(marin__frame_decode(f, flen, CAP_1M, &type, &p, &plen),
                    MARIN_OK);
    marin__rbuf_init(&r, p, plen, "result");
    ck_assert_marin(marin__rbuf_str(&r, "error", &name), MARIN_EPROTO);
    ck_assert_lasterr_has("result: error holds a NUL at offset 2 of 4 bytes");
    ck_assert_ptr_null(name);
    marin__free(p);
    marin__free(f);
    marin__wbuf_free(&w);
}
END_TEST

/* ---- frames over a descriptor ---- */

START_TEST(test_codec_fd_round_trip)
{
    int sv[2];
    socket_pair(sv);
    ck_assert_marin(
        marin__frame_write_fd(sv[0], MARIN__FRAME_HELLO, "ready", 5), MARIN_OK);
    ck_assert_marin(marin__frame_write_fd(sv[0], MARIN__FRAME_TASK, NULL, 0),
                    MARIN_OK);
    unsigned char *text = text_bytes(50000);
    ck_assert_marin(
        marin__frame_write_fd(sv[0], MARIN__FRAME_RESULT, text, 50000),
        MARIN_OK);

    uint8_t type;
    void *p;
    size_t n;
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_HELLO);
    ck_assert_uint_eq(n, 5);
    ck_assert_mem_eq(p, "ready", 5);
    marin__free(p);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_TASK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_nonnull(p);
    marin__free(p);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_RESULT);
    ck_assert_uint_eq(n, 50000);
    ck_assert_mem_eq(p, text, 50000);
    marin__free(p);
    free(text);

    /* end of file between frames */
    close(sv[0]);
    type = 7;
    p = (void *)&type;
    n = 7;
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has(
        "peer closed the connection after 0 of 16 header bytes");
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(type, 0);
    close(sv[1]);
}
END_TEST

typedef struct {
    int fd;
    const unsigned char *big_text, *big_random;
    size_t text_len, random_len;
    int rc[3];
} writer_arg;

static void *writer_main(void *a)
{
    writer_arg *w = a;
    w->rc[0] = marin__frame_write_fd(w->fd, MARIN__FRAME_RESULT, w->big_random,
                                     w->random_len);
    w->rc[1] = marin__frame_write_fd(w->fd, MARIN__FRAME_TASK, w->big_text,
                                     w->text_len);
    w->rc[2] = marin__frame_write_fd(w->fd, MARIN__FRAME_HELLO, "bye", 3);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
}

/* Interrupts the reader and the writer every millisecond until told. */
typedef struct {
    pthread_t who[2];
    atomic_int stop;
} pester_arg;

static void *pester_main(void *a)
{
    pester_arg *pa = a;
    while (!atomic_load(&pa->stop)) {
        pthread_kill(pa->who[0], SIGUSR1);
        pthread_kill(pa->who[1], SIGUSR1);
        sleep_ms(1);
    }
    return NULL;
}

/* Large frames through a socket from another thread: the writer blocks on
 * a full socket buffer and both sides see partial transfers. Loop 0:
 * blocking, with a signal interrupting both threads every millisecond
 * (EINTR); loop 1: both ends non-blocking (EAGAIN). */
START_TEST(test_codec_fd_large_threaded)
{
    int sv[2];
    socket_pair(sv);
    if (_i == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal; /* no SA_RESTART: calls fail with EINTR */
        sigemptyset(&sa.sa_mask);
        ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    } else {
        for (int i = 0; i < 2; i++)
            ck_assert_int_eq(
                fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK), 0);
    }
    writer_arg w = {.fd = sv[0],
                    .text_len = (size_t)16 << 20,
                    .random_len = (size_t)6 << 20};
    unsigned char *text = text_bytes(w.text_len),
                  *rnd = random_bytes(w.random_len);
    w.big_text = text;
    w.big_random = rnd;
    pthread_t th, pester;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    pester_arg pa = {.who = {pthread_self(), th}};
    atomic_init(&pa.stop, 0);
    if (_i == 0) {
        ck_assert_int_eq(pthread_create(&pester, NULL, pester_main, &pa), 0);
        /* let the writer fill the socket and block there, so a signal
         * finds it with nothing sent (EINTR, not a short count) */
        for (int64_t end = now_ms() + 30; now_ms() < end;)
            sleep_ms(1);
    }

    uint8_t type;
    void *p;
    size_t n;
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_64M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_RESULT);
    ck_assert_uint_eq(n, w.random_len);
    ck_assert_mem_eq(p, rnd, n);
    marin__free(p);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_64M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_TASK);
    ck_assert_uint_eq(n, w.text_len);
    ck_assert_mem_eq(p, text, n);
    marin__free(p);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_64M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_HELLO);
    ck_assert_mem_eq(p, "bye", 3);
    marin__free(p);

    if (_i == 0) {
        atomic_store(&pa.stop, 1);
        ck_assert_int_eq(pthread_join(pester, NULL), 0);
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(w.rc[i] == MARIN_OK, "write %d: %d", i, w.rc[i]);
    free(text);
    free(rnd);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_codec_fd_eof_mid_frame)
{
    int sv[2];
    uint8_t type;
    void *p = NULL;
    size_t n;
    unsigned char *f;
    size_t flen;
    encode_ok(MARIN__FRAME_RESULT, "0123456789", 10, &f, &flen);

    /* in the header */
    socket_pair(sv);
    write_exactly(sv[0], f, 5);
    close(sv[0]);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has(
        "frame: peer closed the connection after 5 of 16 header bytes");
    ck_assert_ptr_null(p);
    close(sv[1]);

    /* in the payload */
    socket_pair(sv);
    write_exactly(sv[0], f, MARIN__FRAME_HEADER + 4);
    close(sv[0]);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has(
        "peer closed the connection after 4 of 10 payload bytes");
    ck_assert_ptr_null(p);
    close(sv[1]);
    marin__free(f);
}
END_TEST

START_TEST(test_codec_fd_bad_frames)
{
    int sv[2];
    uint8_t type;
    void *p = NULL;
    size_t n;

    socket_pair(sv);
    unsigned char *h =
        raw_frame("MRNF", 1, 1, 0, 0, 300000000, 300000000, NULL, 0);
    write_exactly(sv[0], h, 16);
    free(h);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_ETOOBIG);
    ck_assert_lasterr_has(
        "payload of 300000000 bytes is over the cap of 1048576");
    ck_assert_ptr_null(p);
    close(sv[0]);
    close(sv[1]);

    socket_pair(sv);
    h = raw_frame("HTTP", 1, 1, 0, 0, 0, 0, NULL, 0);
    write_exactly(sv[0], h, 16);
    free(h);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_EPROTO);
    ck_assert_lasterr_has("bad magic 0x48545450");
    close(sv[0]);
    close(sv[1]);

    /* a corrupt zstd payload read in full, then refused */
    socket_pair(sv);
    unsigned char junk[100];
    memset(junk, 'j', sizeof junk);
    h = raw_frame("MRNF", 1, 1, 1, 0, 100, 5000, junk, 100);
    write_exactly(sv[0], h, 116);
    free(h);
    ck_assert_marin(marin__frame_read_fd(sv[1], CAP_1M, &type, &p, &n),
                    MARIN_EPROTO);
    ck_assert_lasterr_has("not a zstd frame");
    ck_assert_ptr_null(p);
    close(sv[0]);
    close(sv[1]);

    /* a descriptor that is not open */
    ck_assert_marin(marin__frame_read_fd(-1, CAP_1M, &type, &p, &n),
                    MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has("reading fd -1 failed after 0 of 16 header bytes");
    ck_assert_marin(marin__frame_write_fd(-1, 1, "x", 1), MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has("to fd -1 failed after 0 bytes");
}
END_TEST

/* A dead peer gives EPIPE, not SIGPIPE (which would kill this test). */
START_TEST(test_codec_fd_dead_peer)
{
    signal(SIGPIPE, SIG_DFL);
    int sv[2];
    socket_pair(sv);
    close(sv[1]);
    ck_assert_marin(
        marin__frame_write_fd(sv[0], MARIN__FRAME_RESULT, "late", 4),
        MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has("the peer is gone");
    ck_assert_lasterr_has(strerror(EPIPE));

    /* a large frame the peer stops reading half way */
    int sv2[2];
    socket_pair(sv2);
    unsigned char *big = random_bytes((size_t)4 << 20);
    pthread_t th;
    writer_arg w = {.fd = sv2[0],
                    .big_random = big,
                    .random_len = (size_t)4 << 20,
                    .big_text = (const unsigned char *)"",
                    .text_len = 0};
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    unsigned char some[1000];
    ck_assert_int_gt(read(sv2[1], some, sizeof some), 0);
    close(sv2[1]);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(w.rc[0], MARIN_EUNAVAILABLE);
    free(big);
    close(sv2[0]);
    close(sv[0]);
}
END_TEST

/* A pipe is not a socket: send() says ENOTSOCK and write() takes over. */
START_TEST(test_codec_fd_pipe)
{
    int pp[2];
    ck_assert_int_eq(pipe(pp), 0);
    ck_assert_marin(marin__frame_write_fd(pp[1], MARIN__FRAME_HELLO, "pipe", 4),
                    MARIN_OK);
    uint8_t type;
    void *p;
    size_t n;
    ck_assert_marin(marin__frame_read_fd(pp[0], CAP_1M, &type, &p, &n),
                    MARIN_OK);
    ck_assert_uint_eq(type, MARIN__FRAME_HELLO);
    ck_assert_uint_eq(n, 4);
    ck_assert_mem_eq(p, "pipe", 4);
    marin__free(p);
    close(pp[0]);
    close(pp[1]);
}
END_TEST

/* ---- the OOM loop (STYLE.md §7) ---- */

typedef int (*oom_fn)(void *c);

/* For n = 0, 1, ...: allow n allocations; expect MARIN_ENOMEM with a
 * message until the call succeeds. Returns the n that succeeded. */
static long oom_loop(const char *what, oom_fn call, void *c)
{
    for (long n = 0; n < 1000; n++) {
        marin__test_fail_alloc_after(n);
        int rc = marin__api_exit(call(c));
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            return n;
        ck_assert_msg(rc == MARIN_ENOMEM, "%s, n=%ld: %d (%s): %s", what, n, rc,
                      marin_strerror(rc), marin_last_error());
        ck_assert_msg(strstr(marin_last_error(), "memory") != NULL,
                      "%s, n=%ld: message '%s'", what, n, marin_last_error());
    }
    ck_abort_msg("%s never succeeded", what);
    return -1;
}

typedef struct {
    const unsigned char *in;
    size_t len;
    void *out;
    size_t out_len;
    uint8_t type;
    char *s;
} oom_ctx;

static int call_encode(void *c)
{
    oom_ctx *x = c;
    int rc = marin__frame_encode(MARIN__FRAME_TASK, x->in, x->len, &x->out,
                                 &x->out_len);
    ck_assert(rc == MARIN_OK || (x->out == NULL && x->out_len == 0));
    return rc;
}

static int call_decode(void *c)
{
    oom_ctx *x = c;
    int rc = marin__frame_decode(x->in, x->len, CAP_1M, &x->type, &x->out,
                                 &x->out_len);
    ck_assert(rc == MARIN_OK || (x->out == NULL && x->out_len == 0));
    return rc;
}

static int call_rbuf_str(void *c)
{
    oom_ctx *x = c;
    marin__rbuf r;
    marin__rbuf_init(&r, x->in, x->len, "oom");
    int rc = marin__rbuf_str(&r, "name", &x->s);
    ck_assert(rc == MARIN_OK || (x->s == NULL && r.left == x->len));
    return rc;
}

static int call_wbuf(void *c)
{
    oom_ctx *x = c;
    marin__wbuf w;
    marin__wbuf_init(&w);
    for (int i = 0; i < 100; i++) {
        marin__wbuf_u64(&w, (uint64_t)i);
        marin__wbuf_str(&w, "a string field of some length");
    }
    if (w.failed) {
        ck_assert_ptr_null(w.data);
        return marin__err(MARIN_ENOMEM,
                          "oom: out of memory building a payload");
    }
    x->out = w.data;
    x->out_len = w.len;
    return MARIN_OK;
}

static int call_read_fd(void *c)
{
    oom_ctx *x = c;
    int sv[2];
    socket_pair(sv);
    write_exactly(sv[0], x->in, x->len);
    int rc =
        marin__frame_read_fd(sv[1], CAP_1M, &x->type, &x->out, &x->out_len);
    close(sv[0]);
    close(sv[1]);
    ck_assert(rc == MARIN_OK || (x->out == NULL && x->out_len == 0));
    return rc;
}

START_TEST(test_codec_oom)
{
    long min_fail = MARIN_FAULT_INJECTION ? 1 : 0;
    unsigned char *text = text_bytes(100000);
    unsigned char *rnd = random_bytes(10000);
    static const size_t lens[] = {5, 10000, 100000};
    const unsigned char *inputs[] = {text, rnd, text};
    for (size_t i = 0; i < 3; i++) {
        oom_ctx x = {.in = inputs[i], .len = lens[i]};
        ck_assert_int_ge(oom_loop("encode", call_encode, &x), min_fail);
        unsigned char *frame = x.out;
        size_t flen = x.out_len;

        oom_ctx d = {.in = frame, .len = flen};
        ck_assert_int_ge(oom_loop("decode", call_decode, &d), min_fail);
        ck_assert_uint_eq(d.out_len, lens[i]);
        ck_assert_mem_eq(d.out, inputs[i], lens[i]);
        marin__free(d.out);

        oom_ctx f = {.in = frame, .len = flen};
        ck_assert_int_ge(oom_loop("read_fd", call_read_fd, &f), min_fail);
        ck_assert_uint_eq(f.out_len, lens[i]);
        ck_assert_mem_eq(f.out, inputs[i], lens[i]);
        marin__free(f.out);
        marin__free(frame);
    }

    static const unsigned char str[] = {3, 0, 0, 0, 'a', 'b', 'c'};
    oom_ctx s = {.in = str, .len = sizeof str};
    ck_assert_int_ge(oom_loop("rbuf_str", call_rbuf_str, &s), min_fail);
    ck_assert_str_eq(s.s, "abc");
    marin__free(s.s);

    oom_ctx w = {0};
    ck_assert_int_ge(oom_loop("wbuf", call_wbuf, &w), min_fail);
    ck_assert_uint_eq(w.out_len, 100 * (8 + 4 + 29));
    marin__free(w.out);
    free(text);
    free(rnd);
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_codec_fields_round_trip);
    tcase_add_test(tc, test_codec_fields_layout);
    tcase_add_test(tc, test_codec_wbuf_growth);
    tcase_add_test(tc, test_codec_wbuf_oom);
    tcase_add_test(tc, test_codec_rbuf_short);
    tcase_add_test(tc, test_codec_rbuf_str_nul);
    tcase_add_test(tc, test_codec_frame_layout);
    tcase_add_test(tc, test_codec_frame_small);
    tcase_add_test(tc, test_codec_frame_compressed);
    tcase_add_test(tc, test_codec_frame_incompressible);
    tcase_add_test(tc, test_codec_frame_too_big_to_encode);
    tcase_add_test(tc, test_codec_decode_truncated);
    tcase_add_test(tc, test_codec_decode_bad_header);
    tcase_add_test(tc, test_codec_decode_bad_zstd);
    tcase_add_test(tc, test_codec_payload_in_frame);
    tcase_add_test(tc, test_codec_fd_round_trip);
    tcase_add_loop_test(tc, test_codec_fd_large_threaded, 0, 2);
    tcase_add_test(tc, test_codec_fd_eof_mid_frame);
    tcase_add_test(tc, test_codec_fd_bad_frames);
    tcase_add_test(tc, test_codec_fd_dead_peer);
    tcase_add_test(tc, test_codec_fd_pipe);
    tcase_add_test(tc, test_codec_oom);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return marin_test_run(codec_suite());
}
