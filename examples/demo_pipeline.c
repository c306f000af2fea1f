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
 * backend (default local). See examples/README.md; demo_pipeline.h lists
 * which file holds which part. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "demo_pipeline.h"

#define DEFAULT_OUT "out/demo"
#define DEFAULT_SHARDS 16
#define DEFAULT_MAX_IN_FLIGHT 4
#define DEFAULT_MIN_CHARS 64

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
