/* The front of worker.h: options, and a runtime opened on the URI whose
 * backend serves as a worker (the same runtime carries the nested work the
 * tasks submit). */
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"
#include "marin/worker.h"

#define WORKER_NAME_MAX 64

struct marin_worker_options {
    marin_resources_t *res;
    char name[WORKER_NAME_MAX + 1];
    int64_t drain_ms;
    marin_log_fn log_fn;
    int log_level;
    void *log_ud;
};

struct marin_worker {
    marin_runtime_t *rt;
    void *impl;
};

int marin_worker_options_create(marin_worker_options_t **out)
{
    MARIN__CHECK_ARG(out, "marin_worker_options_create", "out must not be NULL");
    *out = NULL;
    marin_worker_options_t *o = marin__calloc(1, sizeof *o);
    if (!o)
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_worker_options_create: "
                                          "out of memory"));
    o->drain_ms = 30000;
    *out = o;
    return marin__api_exit(MARIN_OK);
}

int marin_worker_options_set_resources(marin_worker_options_t *o, const marin_resources_t *r)
{
    MARIN__CHECK_ARG(o && r, "marin_worker_options_set_resources",
                     "options and resources must not be NULL");
    marin_resources_t *copy = NULL;
    int rc = marin__res_copy(r, &copy);
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    marin_resources_destroy(o->res);
    o->res = copy;
    return marin__api_exit(MARIN_OK);
}

static int name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > WORKER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int marin_worker_options_set_name(marin_worker_options_t *o, const char *name)
{
    MARIN__CHECK_ARG(o && name, "marin_worker_options_set_name",
                     "options and name must not be NULL");
    if (!name_ok(name))
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_worker_options_set_name: "
                                          "'%.80s' is not a worker name (1 to %d bytes of "
                                          "A-Z a-z 0-9 . _ -)", name, WORKER_NAME_MAX));
    strcpy(o->name, name);
    return marin__api_exit(MARIN_OK);
}

int marin_worker_options_set_drain_ms(marin_worker_options_t *o, int64_t ms)
{
    MARIN__CHECK_ARG(o, "marin_worker_options_set_drain_ms", "options must not be NULL");
    if (ms < 0)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_worker_options_set_drain_ms: "
                                          "%lld ms is negative", (long long)ms));
    o->drain_ms = ms;
    return marin__api_exit(MARIN_OK);
}

int marin_worker_options_set_logger(marin_worker_options_t *o, marin_log_fn fn, int level,
                                    void *userdata)
{
    MARIN__CHECK_ARG(o, "marin_worker_options_set_logger", "options must not be NULL");
    if (level < 0 || level > MARIN_LOG_DEBUG)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_worker_options_set_logger: "
                                          "level %d is outside 0..4", level));
    o->log_fn = fn;
    o->log_level = level;
    o->log_ud = userdata;
    return marin__api_exit(MARIN_OK);
}

void marin_worker_options_destroy(marin_worker_options_t *o)
{
    if (!o)
        return;
    marin_resources_destroy(o->res);
    marin__free(o);
}

int marin_worker_start(const char *uri, const marin_worker_options_t *o, marin_worker_t **out)
{
    MARIN__CHECK_ARG(out, "marin_worker_start", "out must not be NULL");
    *out = NULL;
    marin_worker_t *w = marin__calloc(1, sizeof *w);
    if (!w)
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_worker_start: out of memory"));
    int rc = marin_runtime_open(uri, &w->rt);
    if (rc != MARIN_OK) {
        marin__free(w);
        return marin__api_exit(rc);
    }
    if (o && o->log_fn)
        marin_runtime_set_logger(w->rt, o->log_fn, o->log_level, o->log_ud);
    const marin__backend *b = w->rt->backend;
    if (!b->worker_start) {
        rc = marin__err(MARIN_EUNSUPPORTED, "marin_worker_start: the %s backend has no "
                        "workers to serve (tasks run inside the driver); use a cluster "
                        "backend such as redis://", b->name);
        goto fail;
    }
    marin__worker_opts wo = {0};
    wo.res = o ? o->res : NULL;
    wo.name = o && o->name[0] ? o->name : NULL;
    wo.drain_ms = o ? o->drain_ms : 30000;
    if ((rc = b->worker_start(w->rt->bstate, &wo, &w->impl)) != MARIN_OK)
        goto fail;
    *out = w;
    return marin__api_exit(MARIN_OK);
fail:
    marin_runtime_close(w->rt);
    marin__free(w);
    return marin__api_exit(rc);
}

void marin_worker_stop(marin_worker_t *w)
{
    if (w && w->impl)
        w->rt->backend->worker_stop(w->impl);
}

int marin_worker_join(marin_worker_t *w)
{
    if (!w)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_worker_join: worker must "
                                          "not be NULL"));
    int rc = w->rt->backend->worker_join(w->impl);
    marin_runtime_close(w->rt);
    marin__free(w);
    return marin__api_exit(rc);
}

const char *marin_worker_id(const marin_worker_t *w)
{
    return w && w->impl ? w->rt->backend->worker_id(w->impl) : "";
}
