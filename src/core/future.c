/* Futures: a state word to sleep on, a small lock for listeners, and the
 * task inside. See future.h for the contract. */
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"
#include "task_internal.h"

/* Rounds of `pause` (about 25 ns each on the 2-core EPYC CI machine) a
 * get spins before it sleeps: ~25 us, less than a futex sleep+wake costs. */
#define SPIN_ROUNDS 1000
#define YIELD_EVERY 100

/* ---- slabs: futures are carved from chunks of FUTURES_PER_SLAB ----
 * One allocation per chunk instead of one per task: a submit+get of a no-op
 * task spent more in malloc/free than in the rest of marin. A slab holds a
 * reference for each live future plus one while it is the runtime's current
 * slab; the last reference frees it, so futures still outlive the runtime. */
#define FUTURES_PER_SLAB 64

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON_FUTURE(f) ASAN_POISON_MEMORY_REGION((f), sizeof *(f))
#else
#define POISON_FUTURE(f) ((void)(f))
#endif

struct marin__future_slab {
    atomic_uint refs;
    unsigned used; /* carved so far; guarded by rt->slab_lock while current */
    marin_future_t futures[FUTURES_PER_SLAB];
};

static void slab_unref(struct marin__future_slab *slab)
{
    if (atomic_fetch_sub_explicit(&slab->refs, 1, memory_order_acq_rel) == 1)
        marin__free(slab);
}

void marin__future_slab_retire(marin_runtime_t *rt)
{
    marin__lock(&rt->slab_lock);
    struct marin__future_slab *slab = rt->slab;
    rt->slab = NULL;
    marin__unlock(&rt->slab_lock);
    if (slab)
        slab_unref(slab);
}

static marin_future_t *future_carve(marin_runtime_t *rt)
{
    struct marin__future_slab *full = NULL;
    marin__lock(&rt->slab_lock);
    struct marin__future_slab *slab = rt->slab;
    if (!slab || slab->used == FUTURES_PER_SLAB) {
        /* once per FUTURES_PER_SLAB submits: allocating under the lock is fine */
        struct marin__future_slab *fresh = marin__malloc(sizeof *fresh);
        if (!fresh) {
            marin__unlock(&rt->slab_lock);
            return NULL;
        }
        atomic_init(&fresh->refs, 1); /* the runtime's, while current */
        fresh->used = 0;
        full = slab;
        rt->slab = slab = fresh;
    }
    marin_future_t *f = &slab->futures[slab->used++];
    atomic_fetch_add_explicit(&slab->refs, 1, memory_order_relaxed);
    marin__unlock(&rt->slab_lock);
    if (full)
        slab_unref(full); /* the runtime lets go of the full one */
    memset(f, 0, sizeof *f);
    f->slab = slab;
    return f;
}

marin_future_t *marin__future_new(marin_runtime_t *rt)
{
    marin_future_t *f = future_carve(rt);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 2); /* the caller's and the system side's */
    atomic_init(&f->state, MARIN_FUTURE_PENDING);
    f->rt = rt;
    marin__runtime_retain(rt);
    f->task.seq = atomic_fetch_add_explicit(&rt->next_seq, 1, memory_order_relaxed) + 1;
    return f;
}

static void future_destroy(marin_future_t *f)
{
    marin__task_cleanup(&f->task);
    marin__topts_release(f->task.opts);
    if (f->task.name_owned)
        marin__free((char *)f->task.name);
    marin__free(f->result);
    marin__free(f->error);
    marin_runtime_t *rt = f->rt;
    struct marin__future_slab *slab = f->slab;
    /* Slots are never reused, so ASan can still catch a use after release. */
    POISON_FUTURE(f);
    slab_unref(slab);
    marin__runtime_release(rt);
}

void marin_future_retain(marin_future_t *f)
{
    if (f)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void marin_future_release(marin_future_t *f)
{
    if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        future_destroy(f);
}

int marin__future_finish(marin_future_t *f, unsigned state, int status,
                         void *result, size_t len, const char *error)
{
    /* Copy the message before taking the lock: allocation may be slow. */
    char *err = (error && *error) ? marin__strdup(error) : NULL;
    marin__lock(&f->lock);
    if (marin__state_done(atomic_load_explicit(&f->state, memory_order_relaxed))) {
        marin__unlock(&f->lock);
        marin__free(result);
        marin__free(err);
        return 0;
    }
    f->result = result;
    f->result_len = len;
    f->status = status;
    f->error = err;
    atomic_store(&f->state, state);
    /* Detach listeners in registration order (the list is built newest
     * first); run lock-free ones now, the rest after unlocking. */
    marin__listener *ordered = NULL, *l = f->listeners;
    f->listeners = NULL;
    while (l) {
        marin__listener *next = l->next;
        l->next = ordered;
        ordered = l;
        l = next;
    }
    marin__listener *later = NULL, **later_tail = &later;
    for (l = ordered; l;) {
        marin__listener *next = l->next;
        if (l->under_lock) {
            l->fire(l, f);
        } else {
            l->next = NULL;
            *later_tail = l;
            later_tail = &l->next;
        }
        l = next;
    }
    if (atomic_load(&f->sleepers))
        marin__futex_wake_all(&f->state);
    marin__unlock(&f->lock);
    while (later) {
        marin__listener *next = later->next;
        later->fire(later, f);
        later = next;
    }
    return 1;
}

int marin__future_listen(marin_future_t *f, marin__listener *l)
{
    marin__lock(&f->lock);
    if (marin__state_done(atomic_load_explicit(&f->state, memory_order_relaxed))) {
        marin__unlock(&f->lock);
        return 1;
    }
    l->next = f->listeners;
    f->listeners = l;
    marin__unlock(&f->lock);
    return 0;
}

int marin__future_unlisten(marin_future_t *f, marin__listener *l)
{
    int removed = 0;
    marin__lock(&f->lock);
    for (marin__listener **p = &f->listeners; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            removed = 1;
            break;
        }
    marin__unlock(&f->lock);
    return removed;
}

static int check_timeout(int64_t timeout_ms, const char *fn)
{
    if (timeout_ms < -1)
        return marin__err(MARIN_EINVAL,
                          "%s: timeout %lld ms is invalid (use -1 to wait "
                          "forever, 0 to poll, or a positive number)",
                          fn, (long long)timeout_ms);
    return MARIN_OK;
}

/* Report a finished future's outcome through the return code and the
 * thread's last error. */
static int outcome(marin_future_t *f, const void **data, size_t *len)
{
    unsigned s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (s == MARIN_FUTURE_SUCCEEDED) {
        if (data)
            *data = f->result;
        if (len)
            *len = f->result_len;
        return MARIN_OK;
    }
    return marin__err(f->status, "%s", f->error ? f->error : marin_strerror(f->status));
}

int marin_future_get(marin_future_t *f, int64_t timeout_ms, const void **data,
                     size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    MARIN__CHECK_ARG(f, "marin_future_get", "future must not be NULL");
    int rc = check_timeout(timeout_ms, "marin_future_get");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);
    unsigned s = atomic_load_explicit(&f->state, memory_order_acquire);
    /* A short spin first: a task about to finish is cheaper to watch than to
     * sleep for, which would also make its worker pay for a wake-up. */
    for (int spin = 1; spin <= SPIN_ROUNDS && !marin__state_done(s) && timeout_ms != 0;
         spin++) {
        /* The worker running it may have been woken on this very CPU: give
         * it the CPU now and then rather than spin it out. */
        if (spin % YIELD_EVERY == 0)
            sched_yield();
        else
            marin__cpu_relax();
        s = atomic_load_explicit(&f->state, memory_order_acquire);
    }
    if (!marin__state_done(s) && timeout_ms != 0) {
        int64_t deadline = timeout_ms > 0 ? marin__now_ms() + timeout_ms : -1;
        marin__block_begin();
        for (;;) {
            atomic_fetch_add(&f->sleepers, 1);
            s = atomic_load(&f->state);
            if (marin__state_done(s)) {
                atomic_fetch_sub(&f->sleepers, 1);
                break;
            }
            int64_t left = -1;
            if (deadline >= 0 && (left = deadline - marin__now_ms()) <= 0) {
                atomic_fetch_sub(&f->sleepers, 1);
                break;
            }
            marin__futex_wait(&f->state, s, left);
            atomic_fetch_sub(&f->sleepers, 1);
        }
        marin__block_end();
        s = atomic_load_explicit(&f->state, memory_order_acquire);
    }
    if (!marin__state_done(s)) {
        char id[64];
        marin__task_format_id(f->rt, &f->task, id, sizeof id);
        return marin__api_exit(marin__err(
            MARIN_ETIMEDOUT, "marin_future_get: task %s ('%s') still %s after %lld ms",
            id, f->task.name ? f->task.name : "?",
            s == MARIN_FUTURE_RUNNING ? "running" : "pending", (long long)timeout_ms));
    }
    return marin__api_exit(outcome(f, data, len));
}

int marin_future_state(const marin_future_t *f)
{
    if (!f)
        return MARIN_FUTURE_FAILED;
    return (int)atomic_load_explicit(&f->state, memory_order_acquire);
}

const char *marin_future_error(const marin_future_t *f)
{
    if (!f)
        return "marin_future_error: future is NULL";
    unsigned s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (!marin__state_done(s) || s == MARIN_FUTURE_SUCCEEDED)
        return "";
    /* f->error is NULL only when copying the message ran out of memory. */
    return f->error ? f->error : marin_strerror(f->status);
}

int marin_future_id(const marin_future_t *f, char *buf, size_t cap)
{
    if (!f || (!buf && cap))
        return marin__api_exit(marin__err(MARIN_EINVAL,
                                          "marin_future_id: future is NULL, or buf is "
                                          "NULL with cap > 0"));
    int n = marin__task_format_id(f->rt, &f->task, buf, cap);
    marin__api_exit(MARIN_OK);
    return n;
}

/* ---- marin_wait ---- */

typedef struct wait_state {
    atomic_uint fired; /* futex word: listeners that fired */
    atomic_uint sleeping;
} wait_state;

typedef struct wait_listener {
    marin__listener l;
    wait_state *w;
    int registered;
} wait_listener;

static void wait_fire(marin__listener *l, marin_future_t *f)
{
    (void)f;
    wait_state *w = ((wait_listener *)l)->w;
    atomic_fetch_add(&w->fired, 1);
    if (atomic_load(&w->sleeping))
        marin__futex_wake_all(&w->fired);
}

static size_t collect_ready(marin_future_t *const *futs, size_t n, size_t want,
                            size_t *ready_idx)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < want; i++)
        if (marin__state_done(atomic_load_explicit(&futs[i]->state, memory_order_acquire)))
            ready_idx[k++] = i;
    return k;
}

int marin_wait(marin_future_t *const *futs, size_t n, size_t num_returns,
               int64_t timeout_ms, size_t *ready_idx, size_t *nready)
{
    if (nready)
        *nready = 0;
    MARIN__CHECK_ARG(futs && ready_idx && nready, "marin_wait",
                     "futs, ready_idx and nready must not be NULL");
    if (num_returns < 1 || num_returns > n)
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_wait: num_returns is %zu but must be between 1 and "
            "the number of futures (%zu)", num_returns, n));
    for (size_t i = 0; i < n; i++)
        if (!futs[i])
            return marin__api_exit(marin__err(MARIN_EINVAL,
                                              "marin_wait: futs[%zu] is NULL", i));
    int rc = check_timeout(timeout_ms, "marin_wait");
    if (rc != MARIN_OK)
        return marin__api_exit(rc);

    size_t done = 0; /* stop counting at num_returns: wait-any stays O(1) */
    for (size_t i = 0; i < n && done < num_returns; i++)
        done += marin__state_done(atomic_load_explicit(&futs[i]->state, memory_order_acquire));
    if (done >= num_returns || timeout_ms == 0) {
        *nready = collect_ready(futs, n, num_returns, ready_idx);
        return marin__api_exit(MARIN_OK);
    }

    wait_state w;
    atomic_init(&w.fired, 0);
    atomic_init(&w.sleeping, 0);
    wait_listener *ls = marin__calloc(n, sizeof *ls);
    if (!ls)
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_wait: out of memory for %zu waiters", n));
    size_t already = 0;
    for (size_t i = 0; i < n; i++) {
        ls[i].w = &w;
        ls[i].l.fire = wait_fire;
        ls[i].l.under_lock = 1;
        if (marin__future_listen(futs[i], &ls[i].l) == 0)
            ls[i].registered = 1;
        else
            already++;
    }
    int64_t deadline = timeout_ms > 0 ? marin__now_ms() + timeout_ms : -1;
    marin__block_begin();
    for (;;) {
        unsigned fired = atomic_load(&w.fired);
        if (already + fired >= num_returns)
            break;
        int64_t left = -1;
        if (deadline >= 0 && (left = deadline - marin__now_ms()) <= 0)
            break;
        atomic_store(&w.sleeping, 1);
        if (atomic_load(&w.fired) == fired)
            marin__futex_wait(&w.fired, fired, left);
        atomic_store(&w.sleeping, 0);
    }
    marin__block_end();
    for (size_t i = 0; i < n; i++)
        if (ls[i].registered)
            marin__future_unlisten(futs[i], &ls[i].l);
    marin__free(ls);
    *nready = collect_ready(futs, n, num_returns, ready_idx);
    return marin__api_exit(MARIN_OK);
}

/* ---- on_done ---- */

typedef struct done_cb {
    marin__listener l;
    marin__job job;
    marin_future_t *f;
    marin_done_fn fn;
    void *userdata;
    void (*free_userdata)(void *);
} done_cb;

static void done_run(marin__job *job)
{
    done_cb *c = (done_cb *)((char *)job - offsetof(done_cb, job));
    marin_future_t *f = c->f;
    c->fn(f, f->status, c->userdata);
    if (c->free_userdata)
        c->free_userdata(c->userdata);
    marin__free(c);
    marin_future_release(f); /* the callback's own reference */
}

static void done_fire(marin__listener *l, marin_future_t *f)
{
    done_cb *c = (done_cb *)l;
    c->job.run = done_run;
    /* Runs under f's lock: only queue it. Every task of a runtime finishes
     * before its reactor stops, so the post cannot fail; were it to, the
     * callback is dropped (its userdata freed) rather than run under a lock. */
    if (marin__reactor_post(f->rt, &c->job) != MARIN_OK) {
        if (c->free_userdata)
            c->free_userdata(c->userdata);
        marin__free(c);
        atomic_fetch_sub(&f->refs, 1); /* f's finisher holds another */
    }
}

int marin_future_on_done(marin_future_t *f, marin_done_fn fn, void *userdata,
                         void (*free_userdata)(void *))
{
    MARIN__CHECK_ARG(f && fn, "marin_future_on_done", "future and fn must not be NULL");
    done_cb *c = marin__calloc(1, sizeof *c);
    if (!c)
        return marin__api_exit(marin__err(MARIN_ENOMEM,
                                          "marin_future_on_done: out of memory"));
    c->f = f;
    c->fn = fn;
    c->userdata = userdata;
    c->free_userdata = free_userdata;
    c->l.fire = done_fire;
    /* Posted under the future's lock, so a callback registered while the
     * future completes can never overtake the ones registered before. */
    c->l.under_lock = 1;
    marin_future_retain(f);
    if (marin__future_listen(f, &c->l) == 0)
        return marin__api_exit(MARIN_OK);
    /* Already finished: run on the reactor, never inline. */
    c->job.run = done_run;
    if (marin__reactor_post(f->rt, &c->job) != MARIN_OK) {
        marin__free(c);
        marin_future_release(f);
        return marin__api_exit(marin__err(
            MARIN_ESTATE, "marin_future_on_done: the future's runtime is closed, so "
            "no runtime thread is left to run the callback; read the future directly"));
    }
    return marin__api_exit(MARIN_OK);
}

int marin_future_cancel(marin_future_t *f)
{
    MARIN__CHECK_ARG(f, "marin_future_cancel", "future must not be NULL");
    unsigned s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (marin__state_done(s))
        return marin__api_exit(marin__err(
            MARIN_ESTATE, "marin_future_cancel: the task had already finished (%s)",
            marin_strerror(f->status)));
    if (!marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0,
                              "cancelled by marin_future_cancel"))
        return marin__api_exit(marin__err(
            MARIN_ESTATE, "marin_future_cancel: the task had already finished (%s)",
            marin_strerror(f->status)));
    atomic_store(&f->task.cancel, 1); /* after: the task cannot win with a result */
    marin__task_cancelled_notify(f->rt, &f->task);
    return marin__api_exit(MARIN_OK);
}
