/* The one wire format for everything that leaves the process: frames with a
 * versioned header, checked lengths, zstd above a size threshold.
 *
 *   offset size  field
 *   0      4     magic "MRNF"
 *   4      1     version (1)
 *   5      1     type (MARIN__FRAME_*; the reader checks what it expects)
 *   6      1     flags (bit 0: payload is one zstd frame)
 *   7      1     reserved, 0
 *   8      4     payload length as stored (little endian)
 *   12     4     payload length once decompressed (= stored when not zstd)
 *   16     ...   payload
 *
 * A payload is a sequence of fields; marin__wbuf writes them and
 * marin__rbuf reads them back with every length checked against what is
 * left: u8/u32/u64/i32 little endian, and byte strings as u32 length + bytes.
 * A decoder never reads past its input and never allocates more than the
 * caller's cap; bad input gives MARIN_EPROTO (or MARIN_ETOOBIG over the cap)
 * with a message saying what and where. Private to the library. */
#ifndef MARIN_CORE_CODEC_H
#define MARIN_CORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define MARIN__FRAME_HEADER 16
#define MARIN__FRAME_VERSION 1
/* Payloads at least this big are compressed when that makes them smaller. */
#define MARIN__FRAME_ZSTD_MIN 4096

enum {
    MARIN__FRAME_TASK = 1,    /* local process pool: run this task */
    MARIN__FRAME_RESULT = 2,  /* its outcome */
    MARIN__FRAME_HELLO = 3,   /* a worker process is ready */
    MARIN__FRAME_RTASK = 4,   /* redis: a task or actor call in a stream entry */
    MARIN__FRAME_RRESULT = 5, /* redis: an outcome in a done stream entry */
    MARIN__FRAME_RACTOR = 6   /* redis: an actor's creation request */
};

/* ---- payload fields ---- */
typedef struct marin__wbuf {
    unsigned char *data;  /* marin__malloc'd; NULL after an allocation failure */
    size_t len, cap;
    int failed;           /* an allocation failed: every later write is a no-op */
} marin__wbuf;

void marin__wbuf_init(marin__wbuf *w);
void marin__wbuf_free(marin__wbuf *w);
void marin__wbuf_u8(marin__wbuf *w, uint8_t v);
void marin__wbuf_u32(marin__wbuf *w, uint32_t v);
void marin__wbuf_u64(marin__wbuf *w, uint64_t v);
void marin__wbuf_i32(marin__wbuf *w, int32_t v);
/* u32 length + bytes; @p len must fit in 32 bits (else the buffer fails). */
void marin__wbuf_bytes(marin__wbuf *w, const void *p, size_t len);
/* A NUL-terminated string as bytes (without the NUL); NULL as length 0. */
void marin__wbuf_str(marin__wbuf *w, const char *s);

typedef struct marin__rbuf {
    const unsigned char *p;
    size_t left;
    const char *what;     /* names the payload in error messages */
} marin__rbuf;

void marin__rbuf_init(marin__rbuf *r, const void *p, size_t len, const char *what);
/* Each returns MARIN_OK or MARIN_EPROTO ("<what>: <field> needs N bytes,
 * M left"). */
int marin__rbuf_u8(marin__rbuf *r, const char *field, uint8_t *v);
int marin__rbuf_u32(marin__rbuf *r, const char *field, uint32_t *v);
int marin__rbuf_u64(marin__rbuf *r, const char *field, uint64_t *v);
int marin__rbuf_i32(marin__rbuf *r, const char *field, int32_t *v);
/* A count of entries that follow, each at least @p per bytes: a count
 * larger than what is left is a lie (MARIN_EPROTO), so what a decoder
 * allocates for it stays bounded by its input. */
int marin__rbuf_count(marin__rbuf *r, const char *field, size_t per, uint32_t *n);
/* Bytes borrowed from the input (valid as long as it is). */
int marin__rbuf_bytes(marin__rbuf *r, const char *field, const void **p, size_t *len);
/* Bytes as a new NUL-terminated string (marin__malloc; MARIN_EPROTO when
 * they hold a NUL). */
int marin__rbuf_str(marin__rbuf *r, const char *field, char **s);
/* MARIN_EPROTO when bytes are left over (a frame of another layout). */
int marin__rbuf_end(marin__rbuf *r);

/* ---- frames ---- */

/* Encode a frame of @p type around @p payload into a new buffer (*out,
 * *out_len; marin__free it). Compresses payloads >= MARIN__FRAME_ZSTD_MIN
 * when that saves space. MARIN_ETOOBIG when the payload is over 4 GiB - 1,
 * MARIN_ENOMEM. */
int marin__frame_encode(uint8_t type, const void *payload, size_t len, void **out,
                        size_t *out_len);

/* Check a header (exactly MARIN__FRAME_HEADER bytes): magic, version, flags,
 * reserved, the stored length against @p cap (MARIN_ETOOBIG naming cap and
 * size) and the decompressed length against @p cap. Gives the type and the
 * stored payload length to read next. */
int marin__frame_header(const void *hdr, size_t cap, uint8_t *type, size_t *stored_len);

/* Decode a whole frame (header + payload, exactly @p len bytes) into a new
 * payload buffer (*payload, *plen; marin__free it). Checks as above, plus a
 * zstd payload must decompress to exactly the declared length. */
int marin__frame_decode(const void *frame, size_t len, size_t cap, uint8_t *type,
                        void **payload, size_t *plen);

/* ---- frames over a file descriptor (blocking) ---- */

/* Write a whole frame. MARIN_EUNAVAILABLE (with errno's text) when the
 * peer is gone. */
int marin__frame_write_fd(int fd, uint8_t type, const void *payload, size_t len);
/* Read one whole frame. MARIN_EUNAVAILABLE on end of file or an error
 * (the message says which), MARIN_EPROTO / MARIN_ETOOBIG on a bad frame. */
int marin__frame_read_fd(int fd, size_t cap, uint8_t *type, void **payload, size_t *plen);

#endif
