/* The workflow executor: steps with content-addressed output paths, status
 * files, leases and a fenced commit (include/marin/executor.h;
 * docs/executor.md is the user's page).
 *
 * Written against the public API (tasks, futures, KV and leases), so it
 * runs unchanged on every backend. The internal reads are the runtime's
 * MARIN_PREFIX and the options clone.
 *
 * A run checks every status first (a corrupt file or, without force, a
 * FAILED step stops it before anything starts), marks the steps that wait
 * for others WAITING, then starts one thread per ready step (at most
 * max_parallel at once). A step thread: wait until the step is SUCCESS
 * (skip) or its lease is ours; append RUNNING; submit the task; while it
 * runs, renew the lease every ttl/3; then commit SUCCESS with a fenced KV
 * write and append SUCCESS, or append FAILED; release the lease. The
 * driving thread joins finished steps and starts the ones whose
 * dependencies are all SUCCESS; after the first failure it starts nothing
 * more and waits for the steps already running. */
#include "marin/executor.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "marin/error.h"
#include "marin/future.h"
#include "marin/kv.h"
#include "marin/task.h"

#include "alloc.h"
#include "backend.h" /* marin__task_options_clone */
#include "executor_internal.h"
#include "fail.h"
#include "runtime_impl.h" /* prefix_env: MARIN_PREFIX as read at open */
#include "sync.h"
#include "task_internal.h" /* lend a calling task's resources while waiting */

#define DEFAULT_TTL_MS 30000
#define DEFAULT_POLL_MS 500
/* Longest output path accepted: leaves room under PATH_MAX for the status
 * file and its temporary name. */
#define PATH_LEN_MAX 3900
#define MSG_CAP 1024
#define LEASE_PREFIX "executor:"
#define COMMIT_PREFIX "executor-success:"
#define STEP_STACK ((size_t)512 << 10)
#define ENCODING_MAGIC "marin-step" /* and its NUL: 11 bytes */
#define ENCODING_VERSION 1

struct marin_step {
    marin_executor_t *ex;
    size_t index; /* in ex->steps */
    char *name;
    char *task;
    void *config;
    size_t config_len;
    char *version;
    marin_step_t **deps; /* borrowed from ex; NULL when ndeps == 0 */
    size_t ndeps;
    marin_task_options_t *opts; /* the caller's, plus the MARIN_* env */
    char *path;         /* PREFIX/NAME-HASH8 */
    const char *rel;    /* NAME-HASH8, inside path */
    char *status_file;  /* path/.executor_status */
    char *lease_key;
    char *commit_key;
};

struct marin_executor {
    marin_runtime_t *rt;
    char *prefix;
    marin_step_t **steps; /* in the order added: dependencies first */
    size_t nsteps, cap;
};

struct marin_executor_options {
    int dry_run;
    int force;
    int64_t ttl_ms;
    int64_t poll_ms;
    size_t max_parallel;
    char *owner; /* NULL: HOST:PID:RANDOM per run */
};

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

/* mkdir -p; an existing directory is fine. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return marin__err(MARIN_EINVAL, "%s: path too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            return marin__err(MARIN_EUNAVAILABLE,
                              "cannot create directory %s: %s", buf,
                              strerror(e));
        }
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return marin__err(MARIN_EUNAVAILABLE, "%s: not a directory", path);
    return MARIN_OK;
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
    o->ttl_ms = DEFAULT_TTL_MS;
    o->poll_ms = DEFAULT_POLL_MS;
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

/* Whether the success commit of @p s is in the KV store (*present).
 * @return MARIN_OK or the KV error. */
static int commit_present(marin_runtime_t *rt, const marin_step_t *s,
                          int *present)
{
    void *val = NULL;
    size_t len = 0;
    *present = 0;
    int rc = marin_kv_get(rt, s->commit_key, &val, &len);
    marin_free(val);
    if (rc == MARIN_OK)
        *present = 1;
    return rc == MARIN_ENOTFOUND ? MARIN_OK : rc;
}

enum { ACT_RUN, ACT_SKIP, ACT_STOP };

/* What a run would do with @p s: into *act; its status into *st. */
static int step_action(marin_executor_t *ex, const marin_step_t *s, int force,
                       int *act, marin__xstatus *st)
{
    int rc = marin__xstatus_read(s->status_file, st);
    if (rc != MARIN_OK)
        return rc;
    int committed = 0;
    if (st->state != MARIN_STEP_SUCCESS &&
        (rc = commit_present(ex->rt, s, &committed)) != MARIN_OK)
        return rc;
    if (st->state == MARIN_STEP_SUCCESS || committed)
        *act = ACT_SKIP;
    else if (st->state == MARIN_STEP_FAILED && !force)
        *act = ACT_STOP;
    else
        *act = ACT_RUN;
    return MARIN_OK;
}

static int format_plan(marin_executor_t *ex, int force, char *buf, size_t cap)
{
    static const char *const names[] = {"RUN", "SKIP", "STOP"};
    sink_t o = {buf, cap, 0};
    for (size_t i = 0; i < ex->nsteps; i++) {
        const marin_step_t *s = ex->steps[i];
        int act;
        marin__xstatus st;
        int rc = step_action(ex, s, force, &act, &st);
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

/* ---- running ---- */

enum { J_PENDING, J_ACTIVE, J_OK, J_FAILED };

typedef struct run run_t;

typedef struct {
    run_t *run;
    marin_step_t *s;
    int state;  /* J_*; guarded by run->mu */
    int exited; /* its thread has finished; guarded by run->mu */
    int rc;
    int ran;    /* the task ran in this run (not skipped) */
    pthread_t th;
    char msg[MSG_CAP];
} job_t;

struct run {
    marin_executor_t *ex;
    marin_runtime_t *rt;
    int force;
    int64_t ttl_ms;
    int64_t poll_ms;
    size_t max_parallel;
    const char *owner;
    atomic_int stop; /* a step failed: start nothing, stop waiting */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *jobs;
};

/* Record @p j's failure (the message goes to j->msg, which later marin
 * calls of this thread cannot clear) and return @p rc. */
__attribute__((format(printf, 3, 4))) static int jfail(job_t *j, int rc,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof j->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* This thread's last error, copied (the next marin call may clear it). */
static void save_msg(char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", marin__err_msg());
}

/* Sleep @p ms, waking early when the run stops. */
static void nap(run_t *r, int64_t ms)
{
    while (ms > 0 && !atomic_load(&r->stop)) {
        int64_t k = ms < 20 ? ms : 20;
        struct timespec ts = {0, (long)k * 1000000L};
        nanosleep(&ts, NULL);
        ms -= k;
    }
}

static void release_lease(run_t *r, const marin_step_t *s)
{
    (void)marin_lease_release(r->rt, s->lease_key, r->owner);
}

/* Still ours? (renew just before writing a status line that is not
 * fenced, so a driver that lost its lease keeps out of the file.) */
static int still_held(run_t *r, const marin_step_t *s)
{
    return marin_lease_renew(r->rt, s->lease_key, r->owner, r->ttl_ms) ==
           MARIN_OK;
}

/* With the lease held: the step may have been finished meanwhile. Sets
 * *done when it is SUCCESS (repairing the status file from the KV commit
 * when needed). On return with *done == 0 and MARIN_OK, *st is current. */
static int check_held(job_t *j, marin__xstatus *st, uint64_t token, int *done)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    int committed = 0;
    *done = 0;
    int rc = marin__xstatus_read(s->status_file, st);
    if (rc == MARIN_OK && st->state != MARIN_STEP_SUCCESS)
        rc = commit_present(r->rt, s, &committed);
    if (rc != MARIN_OK)
        return jfail(j, rc, "%s", marin__err_msg());
    if (st->state == MARIN_STEP_SUCCESS) {
        *done = 1;
        return MARIN_OK;
    }
    if (committed) {
        *done = 1;
        rc = marin__xstatus_append(
            s->status_file, s->name, MARIN_STEP_SUCCESS, st->attempt,
            r->owner, token,
            "repaired: the success commit was in the KV store, not here");
        if (rc != MARIN_OK)
            return jfail(j, rc, "committed, but cannot repair its status: %s",
                         marin__err_msg());
        return MARIN_OK;
    }
    if (st->state == MARIN_STEP_FAILED && !r->force)
        return jfail(j, MARIN_ESTATE,
                     "FAILED on attempt %d (by %s at %s) in %s; run with "
                     "force to run it again",
                     st->attempt, st->owner, st->time, s->status_file);
    return MARIN_OK;
}

/* Wait until the step is SUCCESS (*done) or its lease is ours (*token).
 * @return MARIN_OK or the failure (in j->msg). */
static int take_step(job_t *j, marin__xstatus *st, uint64_t *token, int *done)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    *done = 0;
    for (;;) {
        if (atomic_load(&r->stop))
            return jfail(j, MARIN_ECANCELED,
                         "not run: the run stops after another step failed");
        /* The KV commit is looked at only when it decides something: for
         * a FAILED status, and while another driver holds the lease (the
         * holder's own check runs under the lease). */
        int committed = 0;
        int rc = marin__xstatus_read(s->status_file, st);
        if (rc == MARIN_OK && st->state == MARIN_STEP_FAILED)
            rc = commit_present(r->rt, s, &committed);
        if (rc != MARIN_OK)
            return jfail(j, rc, "%s", marin__err_msg());
        if (st->state == MARIN_STEP_SUCCESS) {
            *done = 1;
            return MARIN_OK;
        }
        if (!committed && st->state == MARIN_STEP_FAILED && !r->force)
            return jfail(j, MARIN_ESTATE,
                         "FAILED on attempt %d (by %s at %s) in %s; run with "
                         "force to run it again",
                         st->attempt, st->owner, st->time, s->status_file);
        rc = marin_lease_acquire(r->rt, s->lease_key, r->owner, r->ttl_ms,
                                 token);
        if (rc == MARIN_EBUSY) {
            /* Another driver runs it (or repairs it): look again later,
             * unless it is committed already. */
            if (!committed &&
                (rc = commit_present(r->rt, s, &committed)) != MARIN_OK)
                return jfail(j, rc, "%s", marin__err_msg());
            if (committed) {
                *done = 1;
                return MARIN_OK;
            }
            nap(r, r->poll_ms);
            continue;
        }
        if (rc != MARIN_OK)
            return jfail(j, rc, "cannot take its lease %s: %s", s->lease_key,
                         marin__err_msg());
        rc = check_held(j, st, *token, done);
        if (rc != MARIN_OK || *done)
            release_lease(r, s);
        return rc;
    }
}

/* Run the step's task while renewing the lease every ttl/3. Returns the
 * task's code; *lost set (with *why) when the lease could not be renewed. */
static int run_task(job_t *j, marin_future_t *f, int *lost, char *why,
                    size_t why_cap)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    int64_t tick = r->ttl_ms / 3 > 0 ? r->ttl_ms / 3 : 1;
    int64_t last_ok = marin__now_ms();
    *lost = 0;
    for (;;) {
        int rc = marin_future_get(f, tick, NULL, NULL);
        if (rc != MARIN_ETIMEDOUT)
            return rc;
        rc = marin_lease_renew(r->rt, s->lease_key, r->owner, r->ttl_ms);
        int64_t now = marin__now_ms();
        if (rc == MARIN_OK) {
            last_ok = now;
            continue;
        }
        /* EBUSY: expired or taken. Other errors: keep trying until the
         * lease would have run out. */
        if (rc == MARIN_EBUSY || now - last_ok >= r->ttl_ms) {
            save_msg(why, why_cap);
            *lost = 1;
            (void)marin_future_cancel(f);
            return MARIN_ECONFLICT;
        }
    }
}

/* Everything one step needs, on its own thread. @return MARIN_OK (ran or
 * skipped) or the failure, with j->msg. */
static int step_work(job_t *j)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    marin__xstatus st;
    uint64_t token = 0;
    int done;
    char why[MSG_CAP];
    int rc = mkdir_p(s->path);
    if (rc != MARIN_OK)
        return jfail(j, rc, "%s", marin__err_msg());
    if ((rc = take_step(j, &st, &token, &done)) != MARIN_OK || done)
        return rc;

    /* The lease is ours and the step is not SUCCESS. */
    int attempt = st.attempt < INT_MAX ? st.attempt + 1 : INT_MAX;
    rc = marin__xstatus_append(s->status_file, s->name, MARIN_STEP_RUNNING,
                               attempt, r->owner, token, NULL);
    if (rc != MARIN_OK) {
        jfail(j, rc, "%s", marin__err_msg());
        release_lease(r, s);
        return rc;
    }
    j->ran = 1;
    marin_future_t *f = NULL;
    rc = marin_submit(r->rt, s->task, s->config, s->config_len, s->opts, &f);
    if (rc != MARIN_OK) {
        jfail(j, rc, "cannot submit task '%s': %s", s->task,
              marin__err_msg());
        if (still_held(r, s))
            (void)marin__xstatus_append(s->status_file, s->name,
                                        MARIN_STEP_FAILED, attempt, r->owner,
                                        token, j->msg);
        release_lease(r, s);
        return rc;
    }
    int lost;
    int trc = run_task(j, f, &lost, why, sizeof why);
    if (lost) {
        marin_future_release(f);
        return jfail(j, MARIN_ECONFLICT,
                     "lost its lease %s while its task ran (%s); the task "
                     "was cancelled and nothing is committed",
                     s->lease_key, why);
    }
    if (trc != MARIN_OK) {
        snprintf(why, sizeof why, "%s", marin_future_error(f));
        marin_future_release(f);
        jfail(j, trc, "task '%s' failed on attempt %d: %s", s->task, attempt,
              why);
        if (still_held(r, s) &&
            (rc = marin__xstatus_append(s->status_file, s->name,
                                        MARIN_STEP_FAILED, attempt, r->owner,
                                        token, why)) != MARIN_OK) {
            char more[MSG_CAP];
            save_msg(more, sizeof more);
            jfail(j, trc,
                  "task '%s' failed on attempt %d: %s (and FAILED could not "
                  "be written: %s)",
                  s->task, attempt, why, more);
        }
        release_lease(r, s);
        return trc;
    }
    marin_future_release(f);

    /* The commit: at most once, and only with the lease still ours. */
    char *val = marin__xstatus_format(s->name, MARIN_STEP_SUCCESS, attempt,
                                      r->owner, token, NULL);
    if (!val) {
        release_lease(r, s);
        return jfail(j, MARIN_ENOMEM, "out of memory committing SUCCESS");
    }
    rc = marin_kv_put_fenced(r->rt, s->commit_key, val, strlen(val),
                             s->lease_key, token);
    marin__free(val);
    if (rc == MARIN_ECONFLICT)
        return jfail(j, rc,
                     "its task finished, but the lease %s was lost before the "
                     "commit (%s); not marked SUCCESS",
                     s->lease_key, marin__err_msg());
    if (rc != MARIN_OK) {
        jfail(j, rc, "cannot commit SUCCESS: %s", marin__err_msg());
        if (still_held(r, s))
            (void)marin__xstatus_append(s->status_file, s->name,
                                        MARIN_STEP_FAILED, attempt, r->owner,
                                        token, j->msg);
        release_lease(r, s);
        return rc;
    }
    rc = marin__xstatus_append(s->status_file, s->name, MARIN_STEP_SUCCESS,
                               attempt, r->owner, token, NULL);
    if (rc != MARIN_OK)
        jfail(j, rc,
              "committed, but cannot write SUCCESS to its status file (the "
              "next run repairs it): %s",
              marin__err_msg());
    release_lease(r, s);
    return rc;
}

static void *job_main(void *arg)
{
    job_t *j = arg;
    int rc = step_work(j);
    pthread_mutex_lock(&j->run->mu);
    j->rc = rc;
    j->exited = 1;
    pthread_cond_broadcast(&j->run->cv);
    pthread_mutex_unlock(&j->run->mu);
    return NULL;
}

/* Mark @p s WAITING (it waits for dependencies that have to run), under its
 * lease; a step whose lease is held elsewhere is left alone. */
static int mark_waiting(run_t *r, marin_step_t *s)
{
    uint64_t token;
    int rc = marin_lease_acquire(r->rt, s->lease_key, r->owner, r->ttl_ms,
                                 &token);
    if (rc == MARIN_EBUSY)
        return MARIN_OK;
    char why[MSG_CAP];
    if (rc != MARIN_OK) {
        save_msg(why, sizeof why);
        return marin__err(rc, "cannot take its lease %s: %s", s->lease_key,
                          why);
    }
    marin__xstatus st;
    if ((rc = mkdir_p(s->path)) == MARIN_OK &&
        (rc = marin__xstatus_read(s->status_file, &st)) == MARIN_OK &&
        st.state != MARIN_STEP_SUCCESS && st.state != MARIN_STEP_WAITING)
        rc = marin__xstatus_append(s->status_file, s->name,
                                   MARIN_STEP_WAITING, st.attempt, r->owner,
                                   token, NULL);
    save_msg(why, sizeof why);
    release_lease(r, s);
    return rc == MARIN_OK ? rc : marin__err(rc, "%s", why);
}

/* HOST:PID:RANDOM */
static void default_owner(char *buf, size_t cap)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    uint32_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)marin__now_ns() ^ (uint32_t)(uintptr_t)buf;
    snprintf(buf, cap, "%.128s:%ld:%08x", host, (long)getpid(),
             (unsigned)rnd);
}

/* Start, join and order the step threads; returns the first failure. */
static int drive(run_t *r, const int *act, const int *state)
{
    marin_executor_t *ex = r->ex;
    size_t n = ex->nsteps, active = 0;
    job_t *first = NULL;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STEP_STACK);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n; i++)
        if (act[i] == ACT_SKIP && state[i] == MARIN_STEP_SUCCESS)
            r->jobs[i].state = J_OK; /* nothing to do: no thread */
    for (;;) {
        for (size_t i = 0; i < n; i++) {
            job_t *j = &r->jobs[i];
            if (j->state != J_ACTIVE || !j->exited)
                continue;
            pthread_join(j->th, NULL);
            active--;
            j->state = j->rc == MARIN_OK ? J_OK : J_FAILED;
            if (j->rc != MARIN_OK && !first) {
                first = j;
                atomic_store(&r->stop, 1);
            }
        }
        for (size_t i = 0; i < n && !atomic_load(&r->stop); i++) {
            job_t *j = &r->jobs[i];
            if (j->state != J_PENDING)
                continue;
            if (r->max_parallel && active >= r->max_parallel)
                break;
            int ready = 1;
            for (size_t k = 0; k < j->s->ndeps; k++)
                if (r->jobs[j->s->deps[k]->index].state != J_OK)
                    ready = 0;
            if (!ready)
                continue;
            int e = pthread_create(&j->th, &attr, job_main, j);
            if (e != 0) {
                j->rc = jfail(j, MARIN_ENOMEM, "cannot start a thread: %s",
                              strerror(e));
                j->state = J_FAILED;
                if (!first)
                    first = j;
                atomic_store(&r->stop, 1);
                break;
            }
            j->state = J_ACTIVE;
            active++;
        }
        if (active == 0)
            break;
        pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    pthread_attr_destroy(&attr);
    if (first)
        return marin__err(first->rc, "marin_executor_run: step '%s' (%s): %s",
                          first->s->name, first->s->path, first->msg);
    return MARIN_OK;
}

static int print_plan(marin_executor_t *ex, int force)
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

int marin_executor_run(marin_executor_t *ex,
                       const marin_executor_options_t *opts)
{
    MARIN__CHECK_ARG(ex, "marin_executor_run", "executor is NULL");
    marin_executor_options_t defaults = {0, 0, DEFAULT_TTL_MS,
                                         DEFAULT_POLL_MS, 0, NULL};
    if (!opts)
        opts = &defaults;
    if (opts->dry_run)
        return marin__api_exit(print_plan(ex, opts->force));
    char owner[MARIN_NAME_MAX + 1];
    if (opts->owner)
        snprintf(owner, sizeof owner, "%s", opts->owner);
    else
        default_owner(owner, sizeof owner);

    run_t r;
    memset(&r, 0, sizeof r);
    r.ex = ex;
    r.rt = ex->rt;
    r.force = opts->force;
    r.ttl_ms = opts->ttl_ms;
    r.poll_ms = opts->poll_ms;
    r.max_parallel = opts->max_parallel;
    r.owner = owner;
    atomic_init(&r.stop, 0);
    size_t n = ex->nsteps;
    if (n == 0)
        return marin__api_exit(MARIN_OK);
    int *act = marin__calloc(2 * n, sizeof *act);
    int *state = act + n;
    r.jobs = marin__calloc(n, sizeof *r.jobs);
    if (!act || !r.jobs) {
        marin__free(act);
        marin__free(r.jobs);
        return marin__api_exit(
            marin__err(MARIN_ENOMEM, "marin_executor_run: out of memory"));
    }
    /* Look at every status first: a corrupt file or a FAILED step stops
     * the run before anything starts. */
    int rc = MARIN_OK;
    for (size_t i = 0; i < n && rc == MARIN_OK; i++) {
        marin_step_t *s = ex->steps[i];
        marin__xstatus st;
        if ((rc = step_action(ex, s, r.force, &act[i], &st)) != MARIN_OK) {
            char why[MSG_CAP];
            save_msg(why, sizeof why);
            rc = marin__err(rc, "marin_executor_run: step '%s': %s", s->name,
                            why);
        } else if ((state[i] = st.state), act[i] == ACT_STOP) {
            rc = marin__err(MARIN_ESTATE,
                            "marin_executor_run: step '%s' FAILED on attempt "
                            "%d (by %s at %s) in %s; fix it and run with "
                            "force to run it again",
                            s->name, st.attempt, st.owner, st.time,
                            s->status_file);
        }
    }
    /* Steps that wait for others to run say so in their status. */
    for (size_t i = 0; i < n && rc == MARIN_OK; i++) {
        marin_step_t *s = ex->steps[i];
        int waits = 0;
        for (size_t k = 0; k < s->ndeps; k++)
            if (act[s->deps[k]->index] == ACT_RUN)
                waits = 1;
        if (act[i] == ACT_RUN && waits &&
            (rc = mark_waiting(&r, s)) != MARIN_OK) {
            char why[MSG_CAP];
            save_msg(why, sizeof why);
            rc = marin__err(rc, "marin_executor_run: step '%s' (%s): %s",
                            s->name, s->path, why);
        }
    }
    if (rc == MARIN_OK) {
        for (size_t i = 0; i < n; i++) {
            r.jobs[i].run = &r;
            r.jobs[i].s = ex->steps[i];
        }
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        /* Called from a task, it lends that task's cpus back while the
         * steps run, as marin_future_get does, so a small pool does not
         * deadlock. */
        marin__block_begin();
        rc = drive(&r, act, state);
        marin__block_end();
        pthread_cond_destroy(&r.cv);
        pthread_mutex_destroy(&r.mu);
    }
    marin__free(act);
    marin__free(r.jobs);
    return marin__api_exit(rc);
}
