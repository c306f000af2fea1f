/* demo_shards.c — demo_pipeline's input side: the manifest (list the files
 * once, check them on later runs) and sharding (split the files into
 * documents and write them as JSON lines into N zstd shards). */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "demo_pipeline.h"

#define WHOLE_FILE_MAX (64u * 1024u)      /* bigger files: one doc/paragraph */
#define MAX_FILE_BYTES (1024u * 1024u * 1024u)

static const char *const input_globs[] = {
    "/usr/share/common-licenses/*",
    "/usr/share/doc/*/copyright",
};

/* ------------------------------------------------------------------------ */
/* manifest                                                                 */

void manifest_free(manifest_t *m)
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
int manifest_scan(manifest_t *m)
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

int manifest_write(const manifest_t *m, const char *path)
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
int manifest_read(manifest_t *m, const char *path)
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

/* OUT/DIR/shard-XXXXX.jsonl.zst into @p buf; -1 (reported) when it does
 * not fit. */
int shard_path(char *buf, size_t cap, const char *out, const char *dir,
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
int remove_stale_shards(const char *out, const char *dir, unsigned n)
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
int write_input_shards(const cfg_t *cfg, const manifest_t *m,
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
