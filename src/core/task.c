/* Submission, dependencies, running an attempt (retries, timeouts) and the
 * accessors a task function uses. */
#define MARIN_EXPERIMENTAL 1
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"
#include "task_internal.h"

struct marin_task_ctx {
    marin_runtime_t *rt;
    struct marin__task *t;
    marin_future_t *f;
    int attempt;
    int worker_died;
    int blocked;      /* resources lent back while waiting */
    int no_lend;      /* actor methods: resources are held for life */
    void *result;
    size_t result_len;
    char *fail_msg;
    const int *gpu_ids;
    size_t ngpus;
    char id[64];
};

/* What logs call a task: its label when it has one. */
static const char *shown_name(const struct marin__task *t)
{
    return t->opts && t->opts->label ? t->opts->label : t->name;
}

/* The task running on this thread, if any (thread state, not shared). */
static _Thread_local marin_task_ctx_t *current_ctx;

int marin__task_format_id(marin_runtime_t *rt, const struct marin__task *t,
                          char *buf, size_t cap)
{
    return snprintf(buf, cap, "%s-%llu", rt->id_prefix, (unsigned long long)t->seq);
}

void marin__task_cleanup(struct marin__task *t)
{
    marin__free(t->arg);
    t->arg = NULL;
    t->arg_len = 0;
    for (size_t i = 0; i < t->ndeps; i++)
        marin_future_release(t->deps[i]);
    marin__free(t->deps);
    t->deps = NULL;
    t->ndeps = 0;
}

marin_runtime_t *marin__current_task_runtime(void)
{
    return current_ctx ? current_ctx->rt : NULL;
}

void marin__block_begin(void)
{
    marin_task_ctx_t *c = current_ctx;
    if (!c || c->no_lend || c->blocked++ > 0)
        return;
    if (c->rt->backend->blocking)
        c->rt->backend->blocking(c->rt->bstate, c->t, 1);
}

void marin__block_end(void)
{
    marin_task_ctx_t *c = current_ctx;
    if (!c || c->no_lend || --c->blocked > 0)
        return;
    if (c->rt->backend->blocking)
        c->rt->backend->blocking(c->rt->bstate, c->t, 0);
}

void marin__task_cancelled_notify(marin_runtime_t *rt, struct marin__task *t)
{
    if (!atomic_load(&rt->closing) && rt->backend->cancel)
        rt->backend->cancel(rt->bstate, t);
}

/* ---- submission ---- */

static int check_submit_args(marin_runtime_t *rt, const char *task, const void *arg,
                             size_t len, marin_future_t **out, const char *fn)
{
    if (!rt || !task || !out)
        return marin__err(MARIN_EINVAL, "%s: runtime, task name and out must not be NULL", fn);
    if (!arg && len)
        return marin__err(MARIN_EINVAL, "%s: arg is NULL but len is %zu", fn, len);
    size_t n = strnlen(task, MARIN_NAME_MAX + 1);
    if (n == 0 || n > MARIN_NAME_MAX)
        return marin__err(MARIN_EINVAL, "%s: a task name must be 1 to %d bytes",
                          fn, MARIN_NAME_MAX);
    if (atomic_load(&rt->closing))
        return marin__err(MARIN_ESTATE, "%s: the runtime is closing; task '%s' "
                          "was not submitted", fn, task);
    return MARIN_OK;
}

/* Build a future holding a new task; the caller publishes or frees it. */
static int make_task(marin_runtime_t *rt, const char *task, const void *arg, size_t len,
                     const marin_task_options_t *opts, marin_future_t **out)
{
    marin_future_t *f = marin__future_new(rt);
    if (!f)
        return marin__err(MARIN_ENOMEM, "marin_submit: out of memory for task '%s'", task);
    struct marin__task *t = &f->task;
    t->entry = marin__registry_find_task(task);
    if (t->entry) {
        t->name = t->entry->name;
    } else {
        t->name = marin__strdup(task);
        t->name_owned = 1;
    }
    if (len)
        t->arg = marin__memdup(arg, len);
    t->arg_len = len;
    if (opts) {
        t->opts = marin__task_options_snapshot(opts);
    } else {
        t->opts = rt->default_opts;
        marin__topts_retain(t->opts);
    }
    if (!t->name || (len && !t->arg)) {
        atomic_store(&f->refs, 1);
        marin_future_release(f);
        return marin__err(MARIN_ENOMEM, "marin_submit: out of memory for task '%s' "
                          "(argument of %zu bytes)", task, len);
    }
    if (rt->backend->admit) {
        int rc = rt->backend->admit(rt->bstate, t);
        if (rc != MARIN_OK) {
            atomic_store(&f->refs, 1);
            marin_future_release(f);
            return rc;
        }
    }
    *out = f;
    return MARIN_OK;
}

int marin_submit(marin_runtime_t *rt, const char *task, const void *arg, size_t len,
                 const marin_task_options_t *opts, marin_future_t **out)
{
    if (out)
        *out = NULL;
    int rc = check_submit_args(rt, task, arg, len, out, "marin_submit");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    marin_future_t *f;
    if ((rc = make_task(rt, task, arg, len, opts, &f)) != MARIN_OK)
        return marin__api_exit(rc);
    if ((rc = rt->backend->submit(rt->bstate, &f->task)) != MARIN_OK) {
        atomic_store(&f->refs, 1);
        marin_future_release(f);
        return marin__api_exit(rc);
    }
    *out = f;
    return marin__api_exit(MARIN_OK);
}

/* ---- dependencies ---- */

struct marin__dep_wait {
    struct marin__dep_wait *prev, *next; /* rt->deps_waiting, under deps_mu */
    marin_runtime_t *rt;
    marin_future_t *f;
    size_t nlisteners;
    struct dep_listener {
        marin__listener l;
        struct marin__dep_wait *w;
    } listeners[];
};

static void dep_unlink(struct marin__dep_wait *w)
{
    marin_runtime_t *rt = w->rt;
    pthread_mutex_lock(&rt->deps_mu);
    if (w->prev)
        w->prev->next = w->next;
    else if (rt->deps_waiting == w)
        rt->deps_waiting = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    pthread_mutex_unlock(&rt->deps_mu);
}

/* Every dependency finished: run the task, or fail it naming the culprit.
 * Returns the backend's submit error when @p sync (the caller unwinds the
 * task and reports it); otherwise the future carries every outcome. */
static int dep_launch(struct marin__dep_wait *w, int sync)
{
    marin_future_t *f = w->f;
    marin_runtime_t *rt = w->rt;
    struct marin__task *t = &f->task;
    dep_unlink(w);
    marin__free(w);
    if (marin__state_done(atomic_load(&f->state))) { /* cancelled meanwhile */
        marin__task_cleanup(t);
        marin_future_release(f);
        return MARIN_OK;
    }
    for (size_t i = 0; i < t->ndeps; i++) {
        marin_future_t *d = t->deps[i];
        if (atomic_load(&d->state) == MARIN_FUTURE_SUCCEEDED)
            continue;
        char did[64], msg[1024];
        marin__task_format_id(d->rt, &d->task, did, sizeof did);
        snprintf(msg, sizeof msg, "task '%s' did not run: its dependency %zu (task %s, "
                 "'%s') failed: %s", shown_name(t), i, did, shown_name(&d->task),
                 marin_future_error(d));
        int code = d->status;
        marin__future_finish(f, code == MARIN_ECANCELED ? MARIN_FUTURE_CANCELLED
                                                        : MARIN_FUTURE_FAILED,
                             code, NULL, 0, msg);
        marin__task_cleanup(t);
        marin_future_release(f);
        return MARIN_OK;
    }
    int rc = atomic_load(&rt->closing)
                 ? marin__err(MARIN_ECANCELED, "the runtime closed before task '%s' "
                              "could start", shown_name(t))
                 : rt->backend->submit(rt->bstate, t);
    if (rc != MARIN_OK && !sync) {
        marin__future_finish(f, rc == MARIN_ECANCELED ? MARIN_FUTURE_CANCELLED
                                                      : MARIN_FUTURE_FAILED,
                             rc, NULL, 0, marin__err_msg());
        marin__task_cleanup(t);
        marin_future_release(f);
    }
    return rc;
}

static void dep_fire(marin__listener *l, marin_future_t *dep)
{
    (void)dep;
    struct marin__dep_wait *w = ((struct dep_listener *)l)->w;
    if (atomic_fetch_sub(&w->f->task.deps_left, 1) == 1)
        dep_launch(w, 0);
}

int marin_submit_after(marin_runtime_t *rt, const char *task, const void *arg,
                       size_t len, const marin_task_options_t *opts,
                       marin_future_t *const *deps, size_t ndeps, marin_future_t **out)
{
    if (out)
        *out = NULL;
    int rc = check_submit_args(rt, task, arg, len, out, "marin_submit_after");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    if (ndeps && !deps)
        return marin__api_exit(marin__err(MARIN_EINVAL,
                                          "marin_submit_after: deps is NULL but ndeps is %zu",
                                          ndeps));
    for (size_t i = 0; i < ndeps; i++)
        if (!deps[i])
            return marin__api_exit(marin__err(MARIN_EINVAL,
                                              "marin_submit_after: deps[%zu] is NULL", i));
    if (ndeps == 0)
        return marin_submit(rt, task, arg, len, opts, out);

    marin_future_t *f;
    if ((rc = make_task(rt, task, arg, len, opts, &f)) != MARIN_OK)
        return marin__api_exit(rc);
    struct marin__task *t = &f->task;
    struct marin__dep_wait *w =
        marin__calloc(1, sizeof *w + ndeps * sizeof(struct dep_listener));
    t->deps = marin__calloc(ndeps, sizeof *t->deps);
    if (!w || !t->deps) {
        marin__free(w);
        atomic_store(&f->refs, 1);
        marin_future_release(f);
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_submit_after: out of memory"));
    }
    for (size_t i = 0; i < ndeps; i++) {
        t->deps[i] = deps[i];
        marin_future_retain(deps[i]);
    }
    t->ndeps = ndeps;
    w->rt = rt;
    w->f = f;
    w->nlisteners = ndeps;
    /* One extra count held while registering, so launch happens once, after
     * every listener is in place. */
    atomic_store(&t->deps_left, ndeps + 1);
    pthread_mutex_lock(&rt->deps_mu);
    w->next = rt->deps_waiting;
    if (w->next)
        w->next->prev = w;
    rt->deps_waiting = w;
    pthread_mutex_unlock(&rt->deps_mu);
    *out = f;
    for (size_t i = 0; i < ndeps; i++) {
        w->listeners[i].w = w;
        w->listeners[i].l.fire = dep_fire;
        if (marin__future_listen(deps[i], &w->listeners[i].l) != 0)
            atomic_fetch_sub(&t->deps_left, 1);
    }
    if (atomic_fetch_sub(&t->deps_left, 1) == 1 && (rc = dep_launch(w, 1)) != MARIN_OK) {
        /* Every dependency had finished and the backend refused the task:
         * report it here, as marin_submit would. */
        *out = NULL;
        marin__task_cleanup(t);
        atomic_store(&f->refs, 1);
        marin_future_release(f);
        return marin__api_exit(rc);
    }
    return marin__api_exit(MARIN_OK);
}

void marin__cancel_dep_waiters(marin_runtime_t *rt)
{
    /* Finish them; each stays registered on its dependencies and is freed
     * when they fire (dep_launch sees the finished future). */
    for (;;) {
        pthread_mutex_lock(&rt->deps_mu);
        marin_future_t *f = NULL;
        for (struct marin__dep_wait *w = rt->deps_waiting; w; w = w->next)
            if (!marin__state_done(atomic_load(&w->f->state))) {
                f = w->f;
                marin_future_retain(f);
                break;
            }
        pthread_mutex_unlock(&rt->deps_mu);
        if (!f)
            return;
        atomic_store(&f->task.cancel, 1);
        marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0,
                             "cancelled: the runtime closed while the task waited for "
                             "its dependencies");
        marin_future_release(f);
    }
}

/* ---- running an attempt ---- */

typedef struct timeout_arm {
    marin_future_t *f;
    int attempt;
    int notify;  /* tell the backend: its attempt runs elsewhere */
    int64_t ms;
} timeout_arm;

static void timeout_fire(void *arg)
{
    timeout_arm *a = arg;
    marin_future_t *f = a->f;
    if (f->task.attempt != a->attempt)
        return;
    char msg[512], id[64];
    marin__task_format_id(f->rt, &f->task, id, sizeof id);
    snprintf(msg, sizeof msg, "task '%s' (%s) ran past its timeout of %lld ms on attempt %d; "
             "it keeps its resources until its function returns",
             shown_name(&f->task), id, (long long)a->ms, a->attempt);
    /* Finish first, then tell the task: one that returns as soon as it sees
     * marin_task_cancelled() must not win with a result. */
    marin__future_finish(f, MARIN_FUTURE_FAILED, MARIN_ETASKTIMEOUT, NULL, 0, msg);
    atomic_store(&f->task.cancel, 1);
    if (a->notify)
        marin__task_cancelled_notify(f->rt, &f->task);
}

static void timeout_dispose(void *arg)
{
    timeout_arm *a = arg;
    marin_future_release(a->f);
    marin__free(a);
}

static int retries_left(const struct marin__task *t)
{
    return t->opts->max_retries < 0 || t->attempt - 1 < t->opts->max_retries;
}

static void attempts_text(const struct marin__task *t, int app, char *buf, size_t cap)
{
    if (app && !t->opts->retry_exceptions)
        snprintf(buf, cap, "attempt %d (application errors are retried only with "
                 "retry_exceptions)", t->attempt);
    else if (t->opts->max_retries < 0)
        snprintf(buf, cap, "attempt %d (retries unlimited)", t->attempt);
    else
        snprintf(buf, cap, "attempt %d of %lld", t->attempt,
                 (long long)t->opts->max_retries + 1);
}

/* Settle one finished attempt of @p t: success, a final failure (with the
 * message that names the attempt), or back to PENDING for a retry (returns
 * 0). @p result is taken over. @p why: the failure's own words, or NULL. */
static int settle_attempt(marin_runtime_t *rt, struct marin__task *t, int rc, void *result,
                          size_t result_len, const char *why, int died, int no_retry)
{
    marin_future_t *f = marin__task_future(t);
    char id[64];
    marin__task_format_id(rt, t, id, sizeof id);
    if (died)
        rc = MARIN_EWORKER;
    if (rc == MARIN_OK) {
        marin__future_finish(f, MARIN_FUTURE_SUCCEEDED, MARIN_OK, result, result_len, NULL);
        return 1;
    }
    marin__free(result);
    int app = rc == MARIN_ETASK;
    if (!why || !why[0])
        why = marin_strerror(rc);
    unsigned s = atomic_load(&f->state);
    if (!no_retry && (!app || t->opts->retry_exceptions) && retries_left(t) &&
        !atomic_load(&t->cancel) && s == MARIN_FUTURE_RUNNING && !atomic_load(&rt->closing)) {
        int plain = why == marin_strerror(rc);
        marin__log(rt, MARIN_LOG_WARN, "task '%s' (%s) failed on attempt %d (%s%s%s); "
                   "retrying", shown_name(t), id, t->attempt, marin_strerror(rc),
                   plain ? "" : ": ", plain ? "" : why);
        /* The backend queues it again once it has let go of this run. */
        unsigned expected = MARIN_FUTURE_RUNNING;
        atomic_compare_exchange_strong(&f->state, &expected, MARIN_FUTURE_PENDING);
        return 0;
    }
    char msg[16384], at[128]; /* a task's own words may be long */
    attempts_text(t, app, at, sizeof at);
    int plain = app || why == marin_strerror(rc);
    if (no_retry) /* an actor call: its host wrote the whole message */
        snprintf(msg, sizeof msg, "%s", why);
    else
        snprintf(msg, sizeof msg, "task '%s' (%s) failed on %s: %s%s%s", shown_name(t), id, at,
                 plain ? "" : marin_strerror(rc), plain ? "" : ": ", why);
    marin__future_finish(f, no_retry && rc == MARIN_ECANCELED ? MARIN_FUTURE_CANCELLED
                                                              : MARIN_FUTURE_FAILED,
                         rc, NULL, 0, msg);
    return 1;
}

/* Arm @p t's timeout for its current attempt (none: *timer NULL). Fails the
 * future and returns MARIN_ENOMEM when it cannot be armed. @p notify: tell
 * the backend (cancel op) when it fires. */
static int arm_timeout(marin_runtime_t *rt, struct marin__task *t, int notify,
                       marin__timer **timer)
{
    marin_future_t *f = marin__task_future(t);
    *timer = NULL;
    if (t->opts->timeout_ms <= 0)
        return MARIN_OK;
    timeout_arm *a = marin__malloc(sizeof *a);
    if (a) {
        a->f = f;
        a->attempt = t->attempt;
        a->ms = t->opts->timeout_ms;
        a->notify = notify;
        marin_future_retain(f);
        if (marin__timer_start(rt, a->ms, timeout_fire, a, timeout_dispose, timer) != MARIN_OK) {
            timeout_dispose(a);
            *timer = NULL;
        }
    }
    if (!*timer) { /* cannot enforce the timeout: fail rather than hang */
        marin__future_finish(f, MARIN_FUTURE_FAILED, MARIN_ENOMEM, NULL, 0,
                             "out of memory arming the task's timeout");
        return MARIN_ENOMEM;
    }
    return MARIN_OK;
}

int marin__task_attempt_begin(marin_runtime_t *rt, struct marin__task *t)
{
    marin_future_t *f = marin__task_future(t);
    /* The future stays PENDING: the driver is not told when a worker
     * starts the attempt (attempt_end marks it RUNNING to settle it). */
    if (atomic_load(&f->state) != MARIN_FUTURE_PENDING) {
        marin__task_cleanup(t);
        return 1;
    }
    t->attempt++;
    marin__timer *timer = NULL;
    if (arm_timeout(rt, t, 1, &timer) != MARIN_OK) {
        marin__task_cleanup(t);
        return 1;
    }
    t->timeout_timer = timer;
    return 0;
}

int marin__task_attempt_end(marin_runtime_t *rt, struct marin__task *t, int attempt, int rc,
                            void *result, size_t len, const char *why, int died, int no_retry)
{
    if (t->timeout_timer) {
        marin__timer_cancel(rt, t->timeout_timer);
        t->timeout_timer = NULL;
    }
    if (attempt > 0)
        t->attempt = attempt;
    if (rc > 0)
        rc = MARIN_ETASK;
    marin_future_t *f = marin__task_future(t);
    unsigned expected = MARIN_FUTURE_PENDING;
    if (!atomic_compare_exchange_strong(&f->state, &expected, MARIN_FUTURE_RUNNING) &&
        expected != MARIN_FUTURE_RUNNING) {
        marin__free(result); /* finished meanwhile (cancelled, timed out) */
        marin__task_cleanup(t);
        return 1;
    }
    int settled = settle_attempt(rt, t, rc, result, len, why, died, no_retry);
    if (settled)
        marin__task_cleanup(t);
    return settled;
}

void marin__task_attempt_abandon(marin_runtime_t *rt, struct marin__task *t)
{
    if (t->timeout_timer) {
        marin__timer_cancel(rt, t->timeout_timer);
        t->timeout_timer = NULL;
    }
    marin__task_cleanup(t);
}

int marin__task_execute(marin_runtime_t *rt, struct marin__task *t,
                        const marin__exec_env *env)
{
    marin_future_t *f = marin__task_future(t);
    unsigned expected = MARIN_FUTURE_PENDING;
    if (!atomic_compare_exchange_strong(&f->state, &expected, MARIN_FUTURE_RUNNING)) {
        marin__task_cleanup(t); /* cancelled before it started */
        return 1;
    }
    t->attempt++;
    marin_task_ctx_t ctx = {0};
    ctx.rt = rt;
    ctx.t = t;
    ctx.f = f;
    ctx.attempt = t->attempt;
    if (env) {
        ctx.gpu_ids = env->gpu_ids;
        ctx.ngpus = env->ngpus;
    }

    marin__timer *timer = NULL;
    if (arm_timeout(rt, t, 0, &timer) != MARIN_OK) {
        marin__task_cleanup(t);
        return 1;
    }

    marin_task_ctx_t *prev = current_ctx;
    current_ctx = &ctx;
    marin__api_exit(MARIN_OK); /* so a failure's detail below is the task's own */
    const marin__task_entry *e = t->entry;
    int rc = env && env->run ? env->run(env->run_ud, &ctx, t, &ctx.worker_died)
                             : e->fn(&ctx, t->arg, t->arg_len, e->userdata);
    current_ctx = prev;
    if (timer)
        marin__timer_cancel(rt, timer);
    if (ctx.worker_died)
        rc = MARIN_EWORKER;
    else if (rc > 0) /* not a marin code: count it as the task's own error */
        rc = marin__err(MARIN_ETASK, "the task function returned %d, which is not 0 "
                        "or a negative marin code", rc);

    const char *detail = marin__err_msg();
    /* The task's own words: marin_task_fail, else the detail of the marin
     * call that failed inside it, else the code's description. */
    const char *why = ctx.fail_msg ? ctx.fail_msg
                      : ctx.worker_died ? (env && env->run && detail[0]
                                               ? detail
                                               : "simulated by marin_test_kill_worker")
                                        : detail;
    int settled = settle_attempt(rt, t, rc, rc == MARIN_OK ? ctx.result : NULL,
                                 ctx.result_len, why, 0, 0);
    if (rc == MARIN_OK)
        ctx.result = NULL;
    marin__free(ctx.result);
    marin__free(ctx.fail_msg);
    if (settled)
        marin__task_cleanup(t);
    return settled;
}

/* ---- actor methods and hooks ---- */

/* Run @p fn with a context for @p call (which lives in a future). */
static int run_with_ctx(marin_runtime_t *rt, struct marin__task *call,
                        const marin__exec_env *env,
                        int (*invoke)(marin_task_ctx_t *ctx, void *a), void *a,
                        void **result, size_t *len, char **msg, int *died)
{
    marin_task_ctx_t ctx = {0};
    ctx.rt = rt;
    ctx.t = call;
    ctx.f = marin__task_future(call);
    ctx.attempt = call->attempt > 0 ? call->attempt : 1;
    ctx.no_lend = !(env && env->lend);
    if (env && env->task_id)
        snprintf(ctx.id, sizeof ctx.id, "%s", env->task_id);
    if (env) {
        ctx.gpu_ids = env->gpu_ids;
        ctx.ngpus = env->ngpus;
    }
    marin_task_ctx_t *prev = current_ctx;
    current_ctx = &ctx;
    marin__api_exit(MARIN_OK);
    int rc = invoke(&ctx, a);
    current_ctx = prev;
    if (rc > 0)
        rc = marin__err(MARIN_ETASK, "the method returned %d, which is not 0 or a "
                        "negative marin code", rc);
    if (ctx.worker_died)
        rc = MARIN_EWORKER;
    *died = ctx.worker_died;
    *msg = NULL;
    if (rc == MARIN_OK) {
        *result = ctx.result;
        *len = ctx.result_len;
        ctx.result = NULL;
    } else {
        *result = NULL;
        *len = 0;
        const char *detail = marin__err_msg();
        *msg = ctx.fail_msg ? ctx.fail_msg
               : ctx.worker_died ? marin__strdup("the host died (simulated by "
                                                 "marin_test_kill_worker)")
               : marin__strdup(detail[0] ? detail : marin_strerror(rc));
        ctx.fail_msg = NULL;
    }
    marin__free(ctx.result);
    marin__free(ctx.fail_msg);
    return rc;
}

struct method_args {
    marin_method_fn fn;
    void *self;
    const void *arg;
    size_t len;
};

static int invoke_method(marin_task_ctx_t *ctx, void *a)
{
    struct method_args *m = a;
    return m->fn(ctx, m->self, m->arg, m->len);
}

int marin__method_execute(marin_runtime_t *rt, struct marin__task *call,
                          const marin__exec_env *env, marin_method_fn fn, void *self,
                          void **result, size_t *len, char **msg, int *died)
{
    struct method_args m = {fn, self, call->arg, call->arg_len};
    return run_with_ctx(rt, call, env, invoke_method, &m, result, len, msg, died);
}

struct hook_args {
    const marin__actor_class_entry *cls;
    int kind;
    const void *arg;
    size_t len;
    void **self;
};

static int invoke_hook(marin_task_ctx_t *ctx, void *a)
{
    struct hook_args *h = a;
    switch (h->kind) {
    case MARIN__HOOK_INIT:
        return h->cls->init(ctx, h->arg, h->len, h->self);
    case MARIN__HOOK_RESTORE:
        return h->cls->restore(ctx, h->arg, h->len, h->self);
    default:
        return h->cls->save(ctx, *h->self);
    }
}

int marin__hook_execute(marin_runtime_t *rt, const marin__exec_env *env,
                        const marin__actor_class_entry *cls,
                        int kind, const void *arg, size_t len, void **self,
                        void **result, size_t *rlen, char **msg,
                        marin_future_t **running, pthread_mutex_t *running_mu)
{
    /* Hooks get a context like methods do, carried by a private future. */
    static const char *const what[] = {"__init__", "__restore__", "__checkpoint__"};
    marin_future_t *f = marin__future_new(rt);
    if (!f) {
        *result = NULL;
        *rlen = 0;
        *msg = NULL;
        return marin__err(MARIN_ENOMEM, "out of memory running %s of actor class '%s'",
                          what[kind], cls->name);
    }
    f->task.name = what[kind];
    f->task.opts = rt->default_opts;
    marin__topts_retain(f->task.opts);
    struct hook_args h = {cls, kind, arg, len, self};
    int died = 0;
    if (running) {
        pthread_mutex_lock(running_mu);
        *running = f;
        pthread_mutex_unlock(running_mu);
    }
    int rc = run_with_ctx(rt, &f->task, env, invoke_hook, &h, result, rlen, msg, &died);
    if (running) {
        pthread_mutex_lock(running_mu);
        *running = NULL;
        pthread_mutex_unlock(running_mu);
    }
    if (died && rc == MARIN_EWORKER) { /* a hook cannot simulate a crash */
        marin__free(*msg);
        *msg = marin__strdup("marin_test_kill_worker was called in a constructor or "
                             "checkpoint hook; only methods may simulate a crash");
    }
    marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, NULL);
    marin_future_release(f);
    marin_future_release(f);
    return rc;
}

/* ---- a task run by a worker process for its driver ---- */

struct task_args {
    const marin__task_entry *e;
    const void *arg;
    size_t len;
};

static int invoke_task(marin_task_ctx_t *ctx, void *a)
{
    struct task_args *ta = a;
    return ta->e->fn(ctx, ta->arg, ta->len, ta->e->userdata);
}

int marin__task_run_here(marin_runtime_t *rt, const marin__detached_task *d,
                         void **result, size_t *len, char **msg, int *died)
{
    *result = NULL;
    *len = 0;
    *msg = NULL;
    *died = 0;
    const marin__task_entry *e = marin__registry_find_task(d->name);
    if (!e)
        return marin__err(MARIN_ENOTFOUND, "no task named '%s' is registered in this "
                          "worker process (register it before marin_runtime_open, or "
                          "import its module in the worker)", d->name);
    marin_task_options_t *o = NULL;
    marin_future_t *f = NULL;
    int rc = marin_task_options_create(&o);
    for (size_t i = 0; rc == MARIN_OK && i < d->nenv; i++)
        rc = marin_task_options_set_env(o, d->env_keys[i], d->env_values[i]);
    if (rc == MARIN_OK && d->label && d->label[0])
        rc = marin_task_options_set_label(o, d->label);
    if (rc == MARIN_OK && !(f = marin__future_new(rt)))
        rc = marin__err(MARIN_ENOMEM, "out of memory running task '%s'", d->name);
    if (rc != MARIN_OK) {
        marin_task_options_destroy(o);
        return rc;
    }
    struct marin__task *t = &f->task;
    t->name = e->name;
    t->entry = e;
    t->opts = marin__task_options_snapshot(o);
    marin_task_options_destroy(o);
    t->attempt = d->attempt > 0 ? d->attempt : 1;
    if (d->ndeps && !(t->deps = marin__calloc(d->ndeps, sizeof *t->deps)))
        rc = marin__err(MARIN_ENOMEM, "out of memory for the dependencies of task '%s'",
                        d->name);
    /* Dependencies arrive as bytes: give them to the task as finished
     * futures, so marin_task_dep works as in the driver. */
    for (size_t i = 0; rc == MARIN_OK && i < d->ndeps; i++) {
        marin_future_t *dep = marin__future_new(rt);
        void *copy = d->dep_len[i] ? marin__memdup(d->dep_data[i], d->dep_len[i]) : NULL;
        if (!dep || (d->dep_len[i] && !copy)) {
            marin__free(copy);
            if (dep) {
                atomic_store(&dep->refs, 1);
                marin_future_release(dep);
            }
            rc = marin__err(MARIN_ENOMEM, "out of memory for the dependencies of task "
                            "'%s'", d->name);
            break;
        }
        marin__future_finish(dep, MARIN_FUTURE_SUCCEEDED, MARIN_OK, copy, d->dep_len[i],
                             NULL);
        marin_future_release(dep); /* the system side's reference */
        t->deps[t->ndeps++] = dep;
    }
    if (rc == MARIN_OK) {
        marin__exec_env env = {d->gpu_ids, d->ngpus, NULL, NULL, d->task_id, d->lend};
        struct task_args ta = {e, d->arg, d->arg_len};
        if (d->on_start)
            d->on_start(d->on_start_ud, t);
        rc = run_with_ctx(rt, t, &env, invoke_task, &ta, result, len, msg, died);
        if (d->on_start) /* the task is about to go: nothing may touch it */
            d->on_start(d->on_start_ud, NULL);
    }
    marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, NULL);
    marin_future_release(f);
    marin_future_release(f);
    return rc;
}

void marin__task_retry_refused(struct marin__task *t, int rc)
{
    marin_future_t *f = marin__task_future(t);
    char msg[1024];
    if (atomic_load(&f->rt->closing)) {
        /* Between two attempts the task is in no queue and on no worker:
         * close cannot see it, so it ends here as close would end it. */
        snprintf(msg, sizeof msg, "cancelled: the runtime closed before attempt %d of "
                 "task '%s' could start", t->attempt + 1, shown_name(t));
        marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, msg);
    } else {
        snprintf(msg, sizeof msg, "task '%s' could not be queued for its retry after "
                 "attempt %d: %s", shown_name(t), t->attempt, marin__err_msg());
        marin__future_finish(f, MARIN_FUTURE_FAILED, rc, NULL, 0, msg);
    }
    marin__task_cleanup(t);
}

/* ---- accessors ---- */

int marin_task_return(marin_task_ctx_t *ctx, const void *data, size_t len)
{
    MARIN__CHECK_ARG(ctx && (data || !len), "marin_task_return",
                     "ctx must not be NULL, nor data when len > 0");
    void *copy = marin__malloc(len ? len : 1);
    if (!copy)
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_task_return: out of memory for %zu bytes",
                                          len));
    if (len)
        memcpy(copy, data, len);
    marin__free(ctx->result);
    ctx->result = copy;
    ctx->result_len = len;
    return marin__api_exit(MARIN_OK);
}

int marin_task_fail(marin_task_ctx_t *ctx, const char *message)
{
    if (!ctx)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_task_fail: ctx is NULL"));
    marin__free(ctx->fail_msg);
    ctx->fail_msg = marin__strdup(message ? message : "the task failed");
    marin__err(MARIN_ETASK, "%s", message ? message : "the task failed");
    return MARIN_ETASK;
}

int marin_test_kill_worker(marin_task_ctx_t *ctx)
{
    if (!ctx)
        return marin__api_exit(marin__err(MARIN_EINVAL, "marin_test_kill_worker: ctx is NULL"));
    ctx->worker_died = 1;
    return MARIN_EWORKER;
}

int marin_task_dep(marin_task_ctx_t *ctx, size_t i, const void **data, size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    MARIN__CHECK_ARG(ctx && data && len, "marin_task_dep",
                     "ctx, data and len must not be NULL");
    if (i >= ctx->t->ndeps)
        return marin__api_exit(marin__err(MARIN_EINVAL,
                                          "marin_task_dep: index %zu but the task has %zu "
                                          "dependencies", i, ctx->t->ndeps));
    marin_future_t *d = ctx->t->deps[i];
    *data = d->result;
    *len = d->result_len;
    return marin__api_exit(MARIN_OK);
}

size_t marin_task_ndeps(const marin_task_ctx_t *ctx) { return ctx ? ctx->t->ndeps : 0; }

marin_runtime_t *marin_task_runtime(marin_task_ctx_t *ctx) { return ctx ? ctx->rt : NULL; }

int marin_task_attempt(const marin_task_ctx_t *ctx) { return ctx ? ctx->attempt : 0; }

const char *marin_task_id(const marin_task_ctx_t *ctx)
{
    if (!ctx)
        return "";
    marin_task_ctx_t *c = (marin_task_ctx_t *)ctx; /* formatted on first use */
    if (!c->id[0])
        marin__task_format_id(c->rt, c->t, c->id, sizeof c->id);
    return c->id;
}

const char *marin_task_env(const marin_task_ctx_t *ctx, const char *key)
{
    if (!ctx || !key)
        return NULL;
    const marin__topts *o = ctx->t->opts;
    for (size_t i = 0; i < o->nenv; i++)
        if (strcmp(o->env_keys[i], key) == 0)
            return o->env_values[i];
    return NULL;
}

int marin_task_gpu_ids(const marin_task_ctx_t *ctx, int *ids, size_t cap, size_t *n)
{
    if (n)
        *n = 0;
    MARIN__CHECK_ARG(ctx && n && (ids || !cap), "marin_task_gpu_ids",
                     "ctx and n must not be NULL, nor ids when cap > 0");
    *n = ctx->ngpus;
    if (cap < ctx->ngpus)
        return marin__api_exit(marin__err(MARIN_ETOOBIG,
                                          "marin_task_gpu_ids: the task has %zu GPUs but "
                                          "ids has room for %zu", ctx->ngpus, cap));
    for (size_t i = 0; i < ctx->ngpus; i++)
        ids[i] = ctx->gpu_ids[i];
    return marin__api_exit(MARIN_OK);
}

int marin_task_cancelled(const marin_task_ctx_t *ctx)
{
    if (!ctx)
        return 0;
    /* Closing the runtime finishes the future first, then sets cancel. */
    return atomic_load(&ctx->t->cancel) || marin__state_done(atomic_load(&ctx->f->state));
}

int marin_task_log(marin_task_ctx_t *ctx, int level, const char *message)
{
    MARIN__CHECK_ARG(ctx && message, "marin_task_log", "ctx and message must not be NULL");
    if (level < MARIN_LOG_ERROR || level > MARIN_LOG_DEBUG)
        return marin__api_exit(marin__err(MARIN_EINVAL,
                                          "marin_task_log: level %d is outside 1..4", level));
    marin__log(ctx->rt, level, "[task %s '%s'] %s", marin_task_id(ctx),
               shown_name(ctx->t), message);
    /* A cluster backend also sends the line to the driver's log stream. */
    if (ctx->rt->backend->task_log)
        ctx->rt->backend->task_log(ctx->rt->bstate, marin_task_id(ctx), level, message);
    return marin__api_exit(MARIN_OK);
}
