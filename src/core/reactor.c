/* The runtime's one libuv thread: runs posted jobs (future callbacks, timer
 * changes) and timers. Any thread may post; jobs run in posting order. */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <uv.h>

#include "alloc.h"
#include "fail.h"
#include "runtime_impl.h"

struct marin__reactor {
    uv_loop_t loop;
    uv_async_t wake;
    pthread_t thread;
    pthread_mutex_t mu;
    marin__job *head, *tail; /* guarded by mu */
    int accepting;           /* guarded by mu */
    int stop_asked;          /* guarded by mu */
    int stopped;             /* marin__reactor_stop ran (closing thread only) */
};

struct marin__timer {
    marin__job job;        /* arms the timer */
    marin__job cancel_job; /* stops, closes and disposes it */
    uv_timer_t handle;
    marin_runtime_t *rt;
    int64_t delay_ms;
    void (*fire)(void *arg);
    void (*dispose)(void *arg);
    void *arg;
};

static void run_jobs(uv_async_t *a)
{
    struct marin__reactor *r = a->data;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        marin__job *list = r->head;
        r->head = r->tail = NULL;
        int stop = r->stop_asked && !list;
        pthread_mutex_unlock(&r->mu);
        if (stop) {
            uv_close((uv_handle_t *)&r->wake, NULL);
            return;
        }
        if (!list)
            return;
        while (list) {
            marin__job *next = list->next;
            list->run(list);
            list = next;
        }
    }
}

static void *reactor_main(void *arg)
{
    struct marin__reactor *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

int marin__reactor_start(marin_runtime_t *rt)
{
    struct marin__reactor *r = marin__calloc(1, sizeof *r);
    if (!r)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    int uvrc = uv_loop_init(&r->loop);
    if (uvrc != 0) {
        marin__free(r);
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: cannot start the "
                          "event loop: %s", uv_strerror(uvrc));
    }
    uv_async_init(&r->loop, &r->wake, run_jobs);
    r->wake.data = r;
    pthread_mutex_init(&r->mu, NULL);
    r->accepting = 1;
    if (pthread_create(&r->thread, NULL, reactor_main, r) != 0) {
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
        pthread_mutex_destroy(&r->mu);
        marin__free(r);
        return marin__err(MARIN_ENOMEM,
                          "marin_runtime_open: cannot start the reactor thread");
    }
    rt->reactor = r;
    return MARIN_OK;
}

int marin__reactor_post(marin_runtime_t *rt, marin__job *job)
{
    struct marin__reactor *r = rt->reactor;
    job->next = NULL;
    if (!r)
        return MARIN_ESTATE;
    pthread_mutex_lock(&r->mu);
    if (!r->accepting) {
        pthread_mutex_unlock(&r->mu);
        return MARIN_ESTATE;
    }
    if (r->tail)
        r->tail->next = job;
    else
        r->head = job;
    r->tail = job;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
    return MARIN_OK;
}

struct uv_loop_s *marin__reactor_loop(marin_runtime_t *rt)
{
    return rt->reactor ? &rt->reactor->loop : NULL;
}

int marin__reactor_on_thread(marin_runtime_t *rt)
{
    return rt->reactor && pthread_equal(pthread_self(), rt->reactor->thread);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void marin__reactor_stop(marin_runtime_t *rt)
{
    struct marin__reactor *r = rt->reactor;
    if (!r || r->stopped)
        return;
    r->stopped = 1;
    pthread_mutex_lock(&r->mu);
    r->accepting = 0;
    r->stop_asked = 1;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
    pthread_join(r->thread, NULL);
    /* Timers still armed were owned by work that has finished; close them. */
    uv_walk(&r->loop, close_walk, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    /* The shell stays until the runtime's memory goes (marin__reactor_free):
     * futures outlive the runtime and may still try to post, and are told
     * MARIN_ESTATE. */
}

void marin__reactor_free(marin_runtime_t *rt)
{
    struct marin__reactor *r = rt->reactor;
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    marin__free(r);
    rt->reactor = NULL;
}

/* ---- timers ---- */

static void timer_closed(uv_handle_t *h)
{
    marin__timer *t = h->data;
    if (t->dispose)
        t->dispose(t->arg);
    marin__free(t);
}

/* Fires at most once; the cancel job that always follows closes and
 * disposes. */
static void timer_fired(uv_timer_t *h)
{
    marin__timer *t = h->data;
    t->fire(t->arg);
}

static void timer_cancel_job(marin__job *job)
{
    marin__timer *t =
        (marin__timer *)((char *)job - offsetof(marin__timer, cancel_job));
    /* Jobs run in posting order, so the start job has armed the handle. */
    uv_timer_stop(&t->handle);
    uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void timer_start_job(marin__job *job)
{
    marin__timer *t = (marin__timer *)job;
    uv_timer_init(&t->rt->reactor->loop, &t->handle);
    t->handle.data = t;
    uv_timer_start(&t->handle, timer_fired, (uint64_t)t->delay_ms, 0);
}

int marin__timer_start(marin_runtime_t *rt, int64_t delay_ms,
                       void (*fire)(void *arg), void *arg,
                       void (*dispose)(void *arg), marin__timer **out)
{
    marin__timer *t = marin__calloc(1, sizeof *t);
    if (!t)
        return marin__err(MARIN_ENOMEM, "out of memory arming a timer");
    t->rt = rt;
    t->delay_ms = delay_ms;
    t->fire = fire;
    t->arg = arg;
    t->dispose = dispose;
    t->handle.data = t;
    t->job.run = timer_start_job;
    int rc = marin__reactor_post(rt, &t->job);
    if (rc != MARIN_OK) {
        marin__free(t);
        return marin__err(rc, "the runtime is closing: cannot arm a timer");
    }
    *out = t;
    return MARIN_OK;
}

void marin__timer_cancel(marin_runtime_t *rt, marin__timer *t)
{
    if (!t)
        return;
    /* The start job has run or is queued ahead of this one. */
    t->cancel_job.run = timer_cancel_job;
    if (marin__reactor_post(rt, &t->cancel_job) != MARIN_OK) {
        /* reactor gone: the loop was closed with the handle; just dispose */
        if (t->dispose)
            t->dispose(t->arg);
        marin__free(t);
    }
}
