/* The workflow executor: steps with content-addressed output paths, status
 * files, leases and a fenced commit (include/marin/executor.h;
 * docs/executor.md is the user's page).
 *
 * Written against the public API (tasks, futures, KV and leases), so it
 * runs unchanged on every backend. The internal reads are the runtime's
 * MARIN_PREFIX and the options clone.
 *
 * This file makes and describes executors and their steps: names, the
 * prefix, the content hash, options, and the plan, DOT and Mermaid text.
 * executor_run.c runs them; executor_status.c reads and writes the status
 * files; executor_internal.h has what they share. */
#include "marin/executor.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "marin/error.h"
#include "marin/task.h"

#include "alloc.h"
#include "backend.h" /* marin__task_options_clone */
#include "executor_internal.h"
#include "fail.h"
#include "runtime_impl.h" /* prefix_env: MARIN_PREFIX as read at open */

/* Longest output path accepted: leaves room under PATH_MAX for the status
 * file and its temporary name. */
#define PATH_LEN_MAX 3900
#define LEASE_PREFIX "executor:"
#define COMMIT_PREFIX "executor-success:"
#define ENCODING_MAGIC "marin-step" /* and its NUL: 11 bytes */
#define ENCODING_VERSION 1

/* ---- small helpers ---- */

/* Bounded string building, snprintf-style: len counts everything asked
 * for, buf holds what fits. */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
} sink_t;

static void put(sink_t *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void puts_(sink_t *o, const char *s) { put(o, s, strlen(s)); }

static void put_end(sink_t *o)
{
    if (o->cap > 0)
        o->buf[o->len < o->cap ? o->len : o->cap - 1] = '\0';
}

/* The sink's length as a formatter's return value. */
static int sink_result(const sink_t *o, const char *fn)
{
    if (o->len > INT_MAX)
        return marin__err(MARIN_ETOOBIG, "%s: the text is over %d bytes", fn,
                          INT_MAX);
    return (int)o->len;
}

static char *concat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = marin__malloc(na + nb + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- names, prefix, hashing ---- */

/* Why @p name is not a valid step name, or NULL. */
static const char *name_problem(const char *name)
{
    size_t n = strnlen(name, MARIN_NAME_MAX + 1);
    if (n == 0)
        return "is empty";
    if (n > MARIN_NAME_MAX)
        return "is over 255 bytes";
    if (name[0] == '/' || name[0] == '.')
        return "starts with '/' or '.'";
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
              c == '/'))
            return "has a byte outside [A-Za-z0-9._-/]";
        if (c == '/' && (name[i + 1] == '/' || name[i + 1] == '\0'))
            return "has an empty '/'-separated part";
        if (c == '/' && name[i + 1] == '.')
            return "has a '/'-separated part starting with '.'";
    }
    if (strstr(name, ".."))
        return "contains \"..\"";
    return NULL;
}

/* @p prefix made absolute (against the working directory) with repeated
 * '/' and "." parts removed and no trailing '/'; ".." is kept as written.
 * Into *out (marin__free). @return MARIN_OK, MARIN_EINVAL, MARIN_ENOMEM. */
static int normalize_prefix(const char *prefix, char **out)
{
    char cwd[PATH_MAX];
    const char *base = "";
    *out = NULL;
    if (prefix[0] != '/') {
        if (!getcwd(cwd, sizeof cwd)) {
            int e = errno;
            return marin__err(MARIN_EINVAL,
                              "marin_executor_create: prefix '%s' is relative "
                              "and the working directory is unknown: %s",
                              prefix, strerror(e));
        }
        base = cwd;
    }
    size_t nb = strlen(base), np = strlen(prefix);
    char *o = marin__malloc(nb + np + 3);
    if (!o)
        return marin__err(MARIN_ENOMEM,
                          "marin_executor_create: out of memory");
    size_t len = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *p = pass == 0 ? base : prefix;
        while (*p) {
            while (*p == '/')
                p++;
            const char *e = p;
            while (*e && *e != '/')
                e++;
            size_t k = (size_t)(e - p);
            if (k > 0 && !(k == 1 && p[0] == '.')) {
                o[len++] = '/';
                memcpy(o + len, p, k);
                len += k;
            }
            p = e;
        }
    }
    if (len == 0)
        o[len++] = '/';
    o[len] = '\0';
    *out = o;
    return MARIN_OK;
}

unsigned char *marin__xstep_encode(const char *name, const void *config,
                                   size_t config_len, const char *version,
                                   const char *const *deps, size_t ndeps,
                                   size_t *len)
{
    size_t nn = strlen(name), nv = strlen(version);
    size_t total = sizeof ENCODING_MAGIC + 8 + 8 + nn + 8 + config_len + 8 +
                   nv + 8;
    for (size_t i = 0; i < ndeps; i++)
        total += 8 + strlen(deps[i]);
    unsigned char *b = marin__malloc(total ? total : 1);
    if (!b)
        return NULL;
    unsigned char *p = b;
    memcpy(p, ENCODING_MAGIC, sizeof ENCODING_MAGIC); /* with its NUL */
    p += sizeof ENCODING_MAGIC;
    put_u64le(p, ENCODING_VERSION);
    p += 8;
    put_u64le(p, nn);
    memcpy(p + 8, name, nn);
    p += 8 + nn;
    put_u64le(p, config_len);
    if (config_len)
        memcpy(p + 8, config, config_len);
    p += 8 + config_len;
    put_u64le(p, nv);
    memcpy(p + 8, version, nv);
    p += 8 + nv;
    put_u64le(p, ndeps);
    p += 8;
    for (size_t i = 0; i < ndeps; i++) {
        size_t nd = strlen(deps[i]);
        put_u64le(p, nd);
        memcpy(p + 8, deps[i], nd);
        p += 8 + nd;
    }
    *len = total;
    return b;
}

/* KV key for @p path: KIND + path when it fits in a key, else
 * KIND "xxh128:" + 32 hex digits of XXH3-128 of the path. */
static char *make_key(const char *kind, const char *path)
{
    if (strlen(kind) + strlen(path) <= MARIN_NAME_MAX)
        return concat(kind, path);
    XXH128_hash_t h = XXH3_128bits(path, strlen(path));
    char hex[8 + 33];
    snprintf(hex, sizeof hex, "xxh128:%016llx%016llx",
             (unsigned long long)h.high64, (unsigned long long)h.low64);
    return concat(kind, hex);
}

/* ---- executor ---- */

int marin_executor_create(marin_runtime_t *rt, const char *prefix,
                          marin_executor_t **out)
{
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(rt && out, "marin_executor_create",
                     "runtime and out must not be NULL");
    if (!prefix || !*prefix)
        prefix = rt->prefix_env;
    if (!prefix || !*prefix)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_executor_create: no prefix: pass one, or set MARIN_PREFIX "
            "before marin_runtime_open"));
    if (strlen(prefix) >= PATH_LEN_MAX)
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_executor_create: prefix is over %d bytes",
            PATH_LEN_MAX - 1));
    marin_executor_t *ex = marin__calloc(1, sizeof *ex);
    if (!ex)
        return marin__api_exit(
            marin__err(MARIN_ENOMEM, "marin_executor_create: out of memory"));
    ex->rt = rt;
    int rc = normalize_prefix(prefix, &ex->prefix);
    if (rc != MARIN_OK) {
        marin__free(ex);
        return marin__api_exit(rc);
    }
    *out = ex;
    return marin__api_exit(MARIN_OK);
}

static void step_free(marin_step_t *s)
{
    if (!s)
        return;
    marin__free(s->name);
    marin__free(s->task);
    marin__free(s->config);
    marin__free(s->version);
    marin__free(s->deps);
    marin_task_options_destroy(s->opts);
    marin__free(s->path);
    marin__free(s->status_file);
    marin__free(s->lease_key);
    marin__free(s->commit_key);
    marin__free(s);
}

void marin_executor_destroy(marin_executor_t *ex)
{
    if (!ex)
        return;
    for (size_t i = 0; i < ex->nsteps; i++)
        step_free(ex->steps[i]);
    marin__free(ex->steps);
    marin__free(ex->prefix);
    marin__free(ex);
}

/* ---- steps ---- */

/* Fill the derived fields of @p s (path, keys, options with the MARIN_*
 * env). @return MARIN_OK or MARIN_ENOMEM. */
static int step_derive(marin_executor_t *ex, marin_step_t *s,
                       const marin_task_options_t *opts)
{
    const char *fn = "marin_executor_add_step";
    const char **rels = NULL;
    unsigned char *enc = NULL;
    char *dep_paths = NULL;
    int rc = MARIN_ENOMEM;
    if (s->ndeps && !(rels = marin__calloc(s->ndeps, sizeof *rels)))
        goto oom;
    size_t dep_len = 1;
    for (size_t i = 0; i < s->ndeps; i++) {
        rels[i] = s->deps[i]->rel;
        dep_len += strlen(s->deps[i]->path) + 1;
    }
    size_t enc_len;
    if (!(enc = marin__xstep_encode(s->name, s->config, s->config_len,
                                    s->version, rels, s->ndeps, &enc_len)))
        goto oom;
    unsigned long long h = (unsigned long long)XXH3_64bits(enc, enc_len);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", h);
    size_t np = strlen(ex->prefix), nn = strlen(s->name);
    int root = np > 0 && ex->prefix[np - 1] == '/';
    size_t path_len = np + (root ? 0 : 1) + nn + 9;
    if (!(s->path = marin__malloc(path_len + 1)))
        goto oom;
    snprintf(s->path, path_len + 1, "%s%s%s-%.8s", ex->prefix,
             root ? "" : "/", s->name, hex);
    s->rel = s->path + np + (root ? 0 : 1);
    if (!(s->status_file = concat(s->path, "/" MARIN__XSTATUS_FILE)) ||
        !(s->lease_key = make_key(LEASE_PREFIX, s->path)) ||
        !(s->commit_key = make_key(COMMIT_PREFIX, s->path)))
        goto oom;
    if (!(dep_paths = marin__malloc(dep_len)))
        goto oom;
    size_t k = 0;
    for (size_t i = 0; i < s->ndeps; i++) {
        size_t n = strlen(s->deps[i]->path);
        if (i)
            dep_paths[k++] = '\n';
        memcpy(dep_paths + k, s->deps[i]->path, n);
        k += n;
    }
    dep_paths[k] = '\0';
    if (opts)
        rc = marin__task_options_clone(opts, &s->opts);
    else
        rc = marin_task_options_create(&s->opts);
    if (rc != MARIN_OK ||
        (rc = marin_task_options_set_env(s->opts, "MARIN_OUTPUT_PATH",
                                         s->path)) != MARIN_OK ||
        (rc = marin_task_options_set_env(s->opts, "MARIN_PREFIX",
                                         ex->prefix)) != MARIN_OK ||
        (rc = marin_task_options_set_env(s->opts, "MARIN_STEP_NAME",
                                         s->name)) != MARIN_OK ||
        (rc = marin_task_options_set_env(s->opts, "MARIN_DEP_PATHS",
                                         dep_paths)) != MARIN_OK)
        goto oom;
    rc = MARIN_OK;
    goto done;
oom:
    rc = marin__err(MARIN_ENOMEM, "%s: out of memory adding step '%s'", fn,
                    s->name);
done:
    marin__free(dep_paths);
    marin__free(enc);
    marin__free(rels);
    return rc;
}

int marin_executor_add_step(marin_executor_t *ex, const char *name,
                            const char *task, const void *config,
                            size_t config_len, const char *version,
                            marin_step_t *const *deps, size_t ndeps,
                            const marin_task_options_t *opts,
                            marin_step_t **out)
{
    const char *fn = "marin_executor_add_step";
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(ex && name && task && out, fn,
                     "executor, name, task and out must not be NULL");
    const char *why = name_problem(name);
    if (why)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "%s: step name '%.*s' %s (1 to %d bytes of [A-Za-z0-9._-/], not "
            "starting with '/' or '.', no \"..\", no empty part)",
            fn, MARIN_NAME_MAX, name, why, MARIN_NAME_MAX));
    size_t nt = strnlen(task, MARIN_NAME_MAX + 1);
    if (nt == 0 || nt > MARIN_NAME_MAX)
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "%s: step '%s': task name must be 1 to %d bytes",
            fn, name, MARIN_NAME_MAX));
    MARIN__CHECK_ARG(config || config_len == 0, fn,
                     "config is NULL but config_len is not 0");
    MARIN__CHECK_ARG(deps || ndeps == 0, fn,
                     "deps is NULL but ndeps is not 0");
    for (size_t i = 0; i < ndeps; i++) {
        if (!deps[i] || deps[i]->ex != ex)
            return marin__api_exit(marin__err(
                MARIN_EINVAL,
                "%s: step '%s': dependency %zu is %s", fn, name, i,
                !deps[i] ? "NULL" : "a step of another executor"));
        for (size_t k = 0; k < i; k++)
            if (deps[k] == deps[i])
                return marin__api_exit(marin__err(
                    MARIN_EINVAL, "%s: step '%s': dependency '%s' is listed "
                    "twice", fn, name, deps[i]->name));
    }
    if (!version)
        version = "";
    size_t np = strlen(ex->prefix);
    if (np + 1 + strlen(name) + 9 > PATH_LEN_MAX)
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "%s: step '%s': output path over %d bytes", fn,
            name, PATH_LEN_MAX));
    for (size_t i = 0; i < ex->nsteps; i++)
        if (strcmp(ex->steps[i]->name, name) == 0)
            return marin__api_exit(marin__err(
                MARIN_EEXIST, "%s: a step named '%s' exists already", fn,
                name));

    if (ex->nsteps == ex->cap) {
        size_t cap = ex->cap ? ex->cap * 2 : 8;
        marin_step_t **steps = marin__realloc(ex->steps, cap * sizeof *steps);
        if (!steps)
            return marin__api_exit(marin__err(
                MARIN_ENOMEM, "%s: out of memory adding step '%s'", fn, name));
        ex->steps = steps;
        ex->cap = cap;
    }
    marin_step_t *s = marin__calloc(1, sizeof *s);
    if (!s)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM, "%s: out of memory adding step '%s'", fn, name));
    s->ex = ex;
    s->index = ex->nsteps;
    s->config_len = config_len;
    s->ndeps = ndeps;
    int rc = MARIN_ENOMEM;
    if (!(s->name = marin__strdup(name)) || !(s->task = marin__strdup(task)) ||
        !(s->version = marin__strdup(version)) ||
        (config_len && !(s->config = marin__memdup(config, config_len))) ||
        (ndeps && !(s->deps = marin__malloc(ndeps * sizeof *s->deps)))) {
        rc = marin__err(MARIN_ENOMEM, "%s: out of memory adding step '%s'",
                        fn, name);
        goto fail;
    }
    for (size_t i = 0; i < ndeps; i++)
        s->deps[i] = deps[i];
    if ((rc = step_derive(ex, s, opts)) != MARIN_OK)
        goto fail;
    ex->steps[ex->nsteps++] = s;
    *out = s;
    return marin__api_exit(MARIN_OK);
fail:
    step_free(s);
    return marin__api_exit(rc);
}

const char *marin_step_output_path(const marin_step_t *s)
{
    return s ? s->path : NULL;
}

const char *marin_step_name(const marin_step_t *s)
{
    return s ? s->name : NULL;
}

int marin_step_status(const marin_step_t *s, int *state, int *attempt)
{
    if (state)
        *state = MARIN_STEP_NONE;
    if (attempt)
        *attempt = 0;
    MARIN__CHECK_ARG(s && state, "marin_step_status",
                     "step and state must not be NULL");
    marin__xstatus st;
    int rc = marin__xstatus_read(s->status_file, &st);
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    *state = st.state;
    if (attempt)
        *attempt = st.attempt;
    return marin__api_exit(MARIN_OK);
}

/* ---- options ---- */

int marin_executor_options_create(marin_executor_options_t **out)
{
    if (out)
        *out = NULL;
    MARIN__CHECK_ARG(out, "marin_executor_options_create", "out is NULL");
    marin_executor_options_t *o = marin__calloc(1, sizeof *o);
    if (!o)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM, "marin_executor_options_create: out of memory"));
    o->ttl_ms = MARIN__XDEFAULT_TTL_MS;
    o->poll_ms = MARIN__XDEFAULT_POLL_MS;
    *out = o;
    return marin__api_exit(MARIN_OK);
}

int marin_executor_options_set_dry_run(marin_executor_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_executor_options_set_dry_run",
                     "options are NULL");
    o->dry_run = on != 0;
    return marin__api_exit(MARIN_OK);
}

int marin_executor_options_set_force(marin_executor_options_t *o, int on)
{
    MARIN__CHECK_ARG(o, "marin_executor_options_set_force",
                     "options are NULL");
    o->force = on != 0;
    return marin__api_exit(MARIN_OK);
}

int marin_executor_options_set_lease_ttl_ms(marin_executor_options_t *o,
                                            int64_t ms)
{
    MARIN__CHECK_ARG(o, "marin_executor_options_set_lease_ttl_ms",
                     "options are NULL");
    MARIN__CHECK_ARG(ms > 0, "marin_executor_options_set_lease_ttl_ms",
                     "the lease ttl must be positive");
    o->ttl_ms = ms;
    return marin__api_exit(MARIN_OK);
}

int marin_executor_options_set_poll_ms(marin_executor_options_t *o, int64_t ms)
{
    MARIN__CHECK_ARG(o, "marin_executor_options_set_poll_ms",
                     "options are NULL");
    MARIN__CHECK_ARG(ms > 0, "marin_executor_options_set_poll_ms",
                     "the poll interval must be positive");
    o->poll_ms = ms;
    return marin__api_exit(MARIN_OK);
}

int marin_executor_options_set_owner(marin_executor_options_t *o,
                                     const char *owner)
{
    MARIN__CHECK_ARG(o && owner, "marin_executor_options_set_owner",
                     "options and owner must not be NULL");
    size_t n = strnlen(owner, MARIN_NAME_MAX + 1);
    if (n == 0 || n > MARIN_NAME_MAX)
        return marin__api_exit(marin__err(
            MARIN_EINVAL,
            "marin_executor_options_set_owner: owner must be 1 to %d bytes",
            MARIN_NAME_MAX));
    char *copy = marin__strdup(owner);
    if (!copy)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM, "marin_executor_options_set_owner: out of memory"));
    marin__free(o->owner);
    o->owner = copy;
    return marin__api_exit(MARIN_OK);
}

int marin_executor_options_set_max_parallel(marin_executor_options_t *o,
                                            size_t n)
{
    MARIN__CHECK_ARG(o, "marin_executor_options_set_max_parallel",
                     "options are NULL");
    o->max_parallel = n;
    return marin__api_exit(MARIN_OK);
}

void marin_executor_options_destroy(marin_executor_options_t *o)
{
    if (!o)
        return;
    marin__free(o->owner);
    marin__free(o);
}

/* ---- plan, DOT, Mermaid ---- */

static int format_plan(marin_executor_t *ex, int force, char *buf, size_t cap)
{
    static const char *const names[] = {"RUN", "SKIP", "STOP"};
    sink_t o = {buf, cap, 0};
    for (size_t i = 0; i < ex->nsteps; i++) {
        const marin_step_t *s = ex->steps[i];
        int act;
        marin__xstatus st;
        int rc = marin__xstep_action(ex, s, force, &act, &st);
        if (rc != MARIN_OK)
            return rc;
        puts_(&o, names[act]);
        puts_(&o, " ");
        puts_(&o, s->name);
        puts_(&o, " ");
        puts_(&o, s->path);
        for (size_t k = 0; k < s->ndeps; k++) {
            puts_(&o, k ? "," : " after ");
            puts_(&o, s->deps[k]->name);
        }
        puts_(&o, "\n");
    }
    put_end(&o);
    return sink_result(&o, "marin_executor_plan");
}

int marin_executor_plan(marin_executor_t *ex, char *buf, size_t cap)
{
    MARIN__CHECK_ARG(ex, "marin_executor_plan", "executor is NULL");
    MARIN__CHECK_ARG(buf || cap == 0, "marin_executor_plan",
                     "buf is NULL but cap is not 0");
    int n = format_plan(ex, 0, buf, cap);
    if (n < 0) {
        if (cap > 0)
            buf[0] = '\0';
        return marin__api_exit(n);
    }
    (void)marin__api_exit(MARIN_OK);
    return n;
}

int marin_executor_format_dot(const marin_executor_t *ex, char *buf,
                              size_t cap)
{
    MARIN__CHECK_ARG(ex, "marin_executor_format_dot", "executor is NULL");
    MARIN__CHECK_ARG(buf || cap == 0, "marin_executor_format_dot",
                     "buf is NULL but cap is not 0");
    sink_t o = {buf, cap, 0};
    /* Names and NAME-HASH8 hold no '"' or '\\': nothing to escape. */
    puts_(&o, "digraph executor {\n  rankdir=LR;\n  node [shape=box];\n");
    for (size_t i = 0; i < ex->nsteps; i++) {
        const marin_step_t *s = ex->steps[i];
        puts_(&o, "  \"");
        puts_(&o, s->name);
        puts_(&o, "\" [label=\"");
        puts_(&o, s->name);
        puts_(&o, "\\n");
        puts_(&o, s->rel);
        puts_(&o, "\"];\n");
    }
    for (size_t i = 0; i < ex->nsteps; i++) {
        const marin_step_t *s = ex->steps[i];
        for (size_t k = 0; k < s->ndeps; k++) {
            puts_(&o, "  \"");
            puts_(&o, s->deps[k]->name);
            puts_(&o, "\" -> \"");
            puts_(&o, s->name);
            puts_(&o, "\";\n");
        }
    }
    puts_(&o, "}\n");
    put_end(&o);
    int n = sink_result(&o, "marin_executor_format_dot");
    if (n < 0)
        return marin__api_exit(n);
    (void)marin__api_exit(MARIN_OK);
    return n;
}

int marin_executor_format_mermaid(const marin_executor_t *ex, char *buf,
                                  size_t cap)
{
    MARIN__CHECK_ARG(ex, "marin_executor_format_mermaid", "executor is NULL");
    MARIN__CHECK_ARG(buf || cap == 0, "marin_executor_format_mermaid",
                     "buf is NULL but cap is not 0");
    sink_t o = {buf, cap, 0};
    char id[32];
    puts_(&o, "flowchart LR\n");
    for (size_t i = 0; i < ex->nsteps; i++) {
        const marin_step_t *s = ex->steps[i];
        snprintf(id, sizeof id, "  s%zu[\"", i);
        puts_(&o, id);
        puts_(&o, s->name);
        puts_(&o, "<br/>");
        puts_(&o, s->rel);
        puts_(&o, "\"]\n");
    }
    for (size_t i = 0; i < ex->nsteps; i++) {
        const marin_step_t *s = ex->steps[i];
        for (size_t k = 0; k < s->ndeps; k++) {
            snprintf(id, sizeof id, "  s%zu --> s%zu\n", s->deps[k]->index,
                     i);
            puts_(&o, id);
        }
    }
    put_end(&o);
    int n = sink_result(&o, "marin_executor_format_mermaid");
    if (n < 0)
        return marin__api_exit(n);
    (void)marin__api_exit(MARIN_OK);
    return n;
}

/* The dry run of marin_executor_run (executor_run.c). */
int marin__xprint_plan(marin_executor_t *ex, int force)
{
    int n = format_plan(ex, force, NULL, 0);
    if (n < 0)
        return n;
    char *buf = marin__malloc((size_t)n + 1);
    if (!buf)
        return marin__err(MARIN_ENOMEM,
                          "marin_executor_run: out of memory for the plan");
    int m = format_plan(ex, force, buf, (size_t)n + 1);
    if (m >= 0) {
        fwrite(buf, 1, (size_t)(m < n ? m : n), stdout);
        fflush(stdout);
    }
    marin__free(buf);
    return m < 0 ? m : MARIN_OK;
}
