/* Runtime open/close and backend selection. */
#define MARIN_EXPERIMENTAL 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"
#include "task_internal.h"

unsigned marin_version(void) { return MARIN_VERSION_HEX; }

void marin__runtime_retain(marin_runtime_t *rt)
{
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
}

void marin__runtime_release(marin_runtime_t *rt)
{
    if (atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) != 1)
        return;
    marin__reactor_free(rt);
    marin__free(rt->prefix_env);
    pthread_mutex_destroy(&rt->log_mu);
    pthread_mutex_destroy(&rt->deps_mu);
    marin__free(rt);
}

static const marin__backend *find_backend(const char *scheme)
{
    for (size_t i = 0; marin__backends[i]; i++)
        if (strcmp(marin__backends[i]->name, scheme) == 0)
            return marin__backends[i];
    return NULL;
}

static int no_backend(const char *uri, const char *scheme)
{
    char names[256] = "";
    size_t used = 0;
    for (size_t i = 0; marin__backends[i]; i++) {
        int n = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                         marin__backends[i]->name);
        if (n < 0 || (size_t)n >= sizeof names - used)
            break;
        used += (size_t)n;
    }
    (void)uri; /* not quoted: it may hold a password */
    return marin__err(MARIN_ENOBACKEND,
                      "marin_runtime_open: no backend named '%s' (the URI's scheme); "
                      "built-in backends: %s", scheme, names);
}

int marin_runtime_open(const char *uri, marin_runtime_t **out)
{
    MARIN__CHECK_ARG(out, "marin_runtime_open", "out must not be NULL");
    *out = NULL;
    /* Environment is read here and nowhere else. */
    if (!uri || !*uri)
        uri = getenv("MARIN_BACKEND");
    if (!uri || !*uri)
        uri = "local";
    marin__uri u;
    int rc = marin__uri_parse(uri, &u);
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    const marin__backend *b = find_backend(u.scheme);
    if (!b) {
        rc = no_backend(uri, u.scheme);
        marin__uri_free(&u);
        return marin__api_exit(rc);
    }
    /* A worker process of a `local://?processes=N` driver that is this same
     * program started again: serve the driver, then end the process (its
     * main() is not meant to go on as a second driver). */
    const char *worker_fd = getenv("MARIN_LOCAL_WORKER_FD");
    if (worker_fd && *worker_fd && strcmp(u.scheme, "local") == 0 &&
        marin__uri_param(&u, "processes")) {
        marin__uri_free(&u);
        int fd = atoi(worker_fd);
        exit(marin_worker_serve_fd(fd) == MARIN_OK ? 0 : 1);
    }
    marin_runtime_t *rt = marin__calloc(1, sizeof *rt);
    if (!rt) {
        marin__uri_free(&u);
        return marin__api_exit(marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory"));
    }
    atomic_init(&rt->refs, 1);
    rt->backend = b;
    pthread_mutex_init(&rt->log_mu, NULL);
    pthread_mutex_init(&rt->deps_mu, NULL);
    rt->env_log_level = marin__log_level_from_env(getenv("MARIN_LOG"));
    atomic_init(&rt->log_level, rt->env_log_level);
    const char *progress = getenv("MARIN_PROGRESS");
    rt->progress_env = progress && progress[0] == '1';
    const char *prefix = getenv("MARIN_PREFIX");
    if (prefix && *prefix && !(rt->prefix_env = marin__strdup(prefix))) {
        rc = marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
        goto fail;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(rt->id_prefix, sizeof rt->id_prefix, "%c%x%05lx", b->name[0],
             (unsigned)getpid(), (unsigned long)((ts.tv_nsec / 1000) ^ (long)(uintptr_t)rt) & 0xfffffUL);

    if ((rc = marin__topts_default(&rt->default_opts)) != MARIN_OK)
        goto fail;
    if (b->state_size && !(rt->bstate = marin__calloc(1, b->state_size))) {
        rc = marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
        goto fail;
    }
    if ((rc = marin__reactor_start(rt)) != MARIN_OK)
        goto fail;
    if ((rc = b->init(rt->bstate, rt, &u)) != MARIN_OK) {
        marin__reactor_stop(rt);
        goto fail;
    }
    marin__uri_free(&u);
    *out = rt;
    return marin__api_exit(MARIN_OK);
fail:
    marin__uri_free(&u);
    marin__topts_release(rt->default_opts);
    marin__free(rt->bstate);
    marin__runtime_release(rt);
    return marin__api_exit(rc);
}

void marin_runtime_close(marin_runtime_t *rt)
{
    if (!rt)
        return;
    /* Closing waits for the runtime's own threads: from one of them it would
     * wait for itself forever. Refuse, loudly, rather than hang. */
    if (marin__current_task_runtime() == rt || marin__reactor_on_thread(rt)) {
        marin__log(rt, MARIN_LOG_ERROR, "marin_runtime_close: called from a task or "
                   "callback of the same runtime; it must be closed from another "
                   "thread (the runtime stays open)");
        return;
    }
    atomic_store(&rt->closing, 1);
    rt->backend->shutdown(rt->bstate);
    marin__cancel_dep_waiters(rt);
    marin__reactor_stop(rt); /* runs every callback already queued */
    rt->backend->fini(rt->bstate);
    marin__free(rt->bstate);
    rt->bstate = NULL;
    marin__topts_release(rt->default_opts);
    rt->default_opts = NULL;
    marin__future_slab_retire(rt);
    marin__runtime_release(rt);
}

const char *marin_runtime_backend(const marin_runtime_t *rt)
{
    return rt ? rt->backend->name : NULL;
}

int marin_runtime_capacity(marin_runtime_t *rt, marin_resources_t *out)
{
    MARIN__CHECK_ARG(rt && out, "marin_runtime_capacity", "runtime and out must not be NULL");
    if (!rt->backend->capacity)
        return marin__api_exit(marin__err(MARIN_EUNSUPPORTED,
                                          "marin_runtime_capacity: the %s backend does not "
                                          "report capacity", rt->backend->name));
    return marin__api_exit(rt->backend->capacity(rt->bstate, out));
}

void marin__runtime_set_id_prefix(marin_runtime_t *rt, const char *prefix)
{
    snprintf(rt->id_prefix, sizeof rt->id_prefix, "%s", prefix);
}

const char *marin__runtime_id_prefix(const marin_runtime_t *rt)
{
    return rt->id_prefix;
}
