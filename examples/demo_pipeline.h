/* demo_pipeline.h — what the parts of demo_pipeline share. Private to the
 * example (not installed, not a marin header):
 *
 *   demo_pipeline.c   main, options, the driver (marin_map_ordered over the
 *                     shards, dedup across shards, output shards), summary
 *   demo_shards.c     manifest; files -> documents -> zstd JSONL input shards
 *   demo_transform.c  the registered task: one input shard -> records
 *   demo_zstd.c       zstd streams: one-frame writer, bounds-checked reader
 *   demo_util.c       growable buffer, little endian, hash set, paths,
 *                     atomic file writes
 *
 * Helpers that print say what went wrong on stderr, prefixed with PROG. */
#ifndef DEMO_PIPELINE_H
#define DEMO_PIPELINE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <zstd.h>

#include "marin/marin.h"

#define PROG "demo_pipeline"
#define TASK_NAME "demo_pipeline.transform_shard"
#define MAX_SHARDS 100000                 /* shard-XXXXX: five digits */

/* The task's result, encoded by transform_shard and decoded by the driver
 * (the layout is described at transform_shard). */
#define RESULT_MAGIC "MDP1"
#define RESULT_HEADER 48  /* magic, u32 shard, 5 x u64 */
#define RECORD_HEADER 28  /* u64 hash, u64 tokens, u64 text bytes, u32 len */

typedef struct {
    const char *out;       /* absolute output directory */
    unsigned shards;
    size_t max_in_flight;
    unsigned min_chars;
} cfg_t;

/* ---- demo_util.c ---- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

int buf_reserve(buf_t *b, size_t extra);
int buf_put(buf_t *b, const void *data, size_t n);
int buf_put_le(buf_t *b, uint64_t v, size_t width);
void le_store(unsigned char *p, uint64_t v, size_t width);
uint64_t le_load(const unsigned char *p, size_t width);

/* A set of 64-bit hashes: open addressing, linear probing. Slot value 0 is
 * "empty", so the hash 0 is kept in a flag of its own. */
typedef struct {
    uint64_t *slots;
    size_t cap, n;
    int has_zero;
} hset_t;

int hset_add(hset_t *s, uint64_t h);
void hset_free(hset_t *s);

int path_join(char *buf, size_t cap, const char *dir, const char *name);
int write_file_atomic(const char *path, const void *data, size_t n);

/* ---- demo_zstd.c ---- */

typedef struct {
    FILE *f;
    ZSTD_CCtx *cctx;
    unsigned char *out;
    size_t out_cap;
    char path[PATH_MAX], tmp[PATH_MAX];
    uint64_t written; /* compressed bytes */
} zwriter_t;

int zw_open(zwriter_t *w, const char *path);
int zw_write(zwriter_t *w, const void *data, size_t n);
int zw_close(zwriter_t *w);
void zw_abort(zwriter_t *w);

/* Line reader over a zstd file (one or more frames), bounds-checked: a line
 * longer than MAX_LINE_BYTES (64 MiB), a shard over MAX_SHARD_BYTES (4 GiB)
 * decompressed, a truncated or corrupt frame are errors. */
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

int zr_open(zreader_t *r, const char *path);
int zr_getline(zreader_t *r, const unsigned char **line, size_t *len);
void zr_close(zreader_t *r);

/* ---- demo_shards.c ---- */

typedef struct {
    char *path;
    uint64_t size;
} mfile_t;

typedef struct {
    mfile_t *v;
    size_t n, cap;
} manifest_t;

int manifest_scan(manifest_t *m);
int manifest_write(const manifest_t *m, const char *path);
int manifest_read(manifest_t *m, const char *path);
void manifest_free(manifest_t *m);

int shard_path(char *buf, size_t cap, const char *out, const char *dir,
               size_t i);
int remove_stale_shards(const char *out, const char *dir, unsigned n);
int write_input_shards(const cfg_t *cfg, const manifest_t *m, uint64_t *docs,
                       uint64_t *zbytes);

/* ---- demo_transform.c ---- */

int transform_shard(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *userdata);

#endif
