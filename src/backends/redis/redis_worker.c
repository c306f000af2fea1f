/* The worker side of the redis backend: read the queues this worker can
 * run and fit now (XREADGROUP on its own connection), run each task on a
 * thread, report the outcome with the ACK script (which first checks the
 * entry is still ours), marin__rworker_heartbeat, reclaim the entries of dead workers,
 * poll cancellations, and drain on stop.
 *
 * Threads: the reactor thread owns the reads, timers and acks; task
 * threads only run functions and hand finished tasks back under w->mu. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "alloc.h"
#include "capacity.h"
#include "fail.h"
#include "redis_internal.h"
#include "redis_worker.h"
#include "redis_actor.h"

#define MAX_THREADS 256
#define READ_COUNT_MAX 256

/* The task a thread of a worker is running (for the blocking op). */
static _Thread_local marin__wtask *current_wtask;

/* ---- resources (under w->mu) ---- */

static void res_sub(marin_resources_t *from, const marin_resources_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        marin__res_set_fixed(from, r->e[i].name,
                             marin__res_amount(from, r->e[i].name) - r->e[i].amount);
}

static void res_add(marin_resources_t *to, const marin_resources_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        marin__res_set_fixed(to, r->e[i].name,
                             marin__res_amount(to, r->e[i].name) + r->e[i].amount);
}

/* ---- the task threads ---- */

static void wake_reactor(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    if (!w->async_closed)
        uv_async_send(&w->async);
    pthread_mutex_unlock(&w->mu);
}

void marin__rworker_running_locked(marin__rworker *w, marin__wtask *wt, int on)
{
    if (on) {
        wt->prev = NULL;
        wt->next = w->running;
        if (w->running)
            w->running->prev = wt;
        w->running = wt;
        return;
    }
    if (wt->prev)
        wt->prev->next = wt->next;
    else
        w->running = wt->next;
    if (wt->next)
        wt->next->prev = wt->prev;
    wt->next = wt->prev = NULL;
}

void marin__rworker_finish(marin__rworker *w, marin__wtask *wt)
{
    pthread_mutex_lock(&w->mu);
    wt->next = NULL;
    if (w->done_tail)
        w->done_tail->next = wt;
    else
        w->done_head = wt;
    w->done_tail = wt;
    pthread_cond_broadcast(&w->idle_cv);
    if (!w->async_closed)
        uv_async_send(&w->async);
    pthread_mutex_unlock(&w->mu);
}

void marin__rworker_release_res(marin__rworker *w, const marin_resources_t *res,
                                const size_t *gpu_slot, size_t ngpus)
{
    if (res)
        res_add(w->free, res);
    for (size_t i = 0; i < ngpus; i++)
        w->gpu_busy[gpu_slot[i]] = 0;
    if (!w->async_closed)
        uv_async_send(&w->async);
}

void marin__rworker_kick(marin__rworker *w)
{
    /* A blocked read returns now (CLIENT UNBLOCK), and the next one
     * includes the new stream. */
    pthread_mutex_lock(&w->mu);
    w->kicked = 1;
    if (!w->async_closed)
        uv_async_send(&w->async);
    pthread_mutex_unlock(&w->mu);
}

static void on_start(void *ud, struct marin__task *t)
{
    marin__wtask *wt = ud;
    pthread_mutex_lock(&wt->w->mu);
    wt->t = t; /* NULL once the function returned: the task is going away */
    if (t && wt->cancel_seen)
        atomic_store(&t->cancel, 1);
    pthread_mutex_unlock(&wt->w->mu);
}

static void run_one(marin__rworker *w, marin__wtask *wt)
{
    if (marin__rhost_is_creation(wt->msg.name)) {
        marin__rhost_create(w, wt);
        return;
    }
    marin__detached_task d = {0};
    d.name = wt->msg.name;
    d.label = wt->msg.label;
    d.arg = wt->msg.arg;
    d.arg_len = wt->msg.arg_len;
    d.attempt = wt->attempt;
    d.nenv = wt->msg.nenv;
    d.env_keys = (const char *const *)wt->msg.env_keys;
    d.env_values = (const char *const *)wt->msg.env_values;
    d.ndeps = wt->msg.ndeps;
    d.dep_data = wt->msg.dep_data;
    d.dep_len = wt->msg.dep_len;
    d.gpu_ids = wt->gpu_ids;
    d.ngpus = wt->ngpus;
    d.task_id = wt->msg.task_id;
    d.lend = 1;
    d.on_start = on_start;
    d.on_start_ud = wt;
    char *msg = NULL;
    current_wtask = wt;
    marin__api_exit(MARIN_OK);
    int rc = marin__task_run_here(w->rt, &d, &wt->result, &wt->len, &msg, &wt->died);
    current_wtask = NULL;
    if (rc != MARIN_OK && !msg) {
        const char *detail = marin__err_msg();
        msg = marin__strdup(detail[0] ? detail : marin_strerror(rc));
    }
    wt->rc = wt->died ? MARIN_EWORKER : rc;
    wt->why = msg;
}

static void *thread_main(void *arg)
{
    marin__rworker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->ready_head && !w->threads_exit) {
            w->idle++;
            pthread_cond_wait(&w->cv, &w->mu);
            w->idle--;
        }
        if (!w->ready_head)
            break;
        marin__wtask *wt = w->ready_head;
        w->nready--;
        w->ready_head = wt->next;
        if (!w->ready_head)
            w->ready_tail = NULL;
        marin__rworker_running_locked(w, wt, 1);
        pthread_mutex_unlock(&w->mu);

        run_one(w, wt);

        pthread_mutex_lock(&w->mu);
        marin__rworker_running_locked(w, wt, 0);
        if (!wt->lent && !wt->keep_res)
            res_add(w->free, wt->msg.res);
        if (!wt->keep_res)
            for (size_t i = 0; i < wt->ngpus; i++)
                w->gpu_busy[wt->gpu_slot[i]] = 0;
        pthread_mutex_unlock(&w->mu);
        marin__rworker_finish(w, wt);
        pthread_mutex_lock(&w->mu);
    }
    w->live_threads--;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Under w->mu: a thread for every task waiting, up to MAX_THREADS. */
static void ensure_thread(marin__rworker *w)
{
    w->nready++;
    if (w->nready <= w->idle || w->nthreads >= MAX_THREADS) {
        pthread_cond_signal(&w->cv);
        return;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, thread_main, w) != 0) {
        pthread_cond_signal(&w->cv);
        return;
    }
    w->threads[w->nthreads++] = th;
    w->live_threads++;
}

void marin__rworker_blocking(void *state, struct marin__task *t, int begin)
{
    (void)t;
    marin__wtask *wt = current_wtask;
    if (!wt || wt->w->s != state)
        return;
    marin__rworker *w = wt->w;
    pthread_mutex_lock(&w->mu);
    if (begin && !wt->lent) {
        res_add(w->free, wt->msg.res);
        wt->lent = 1;
    } else if (!begin && wt->lent) {
        res_sub(w->free, wt->msg.res); /* may go below zero for a while */
        wt->lent = 0;
    }
    pthread_mutex_unlock(&w->mu);
    if (begin)
        wake_reactor(w);
}

/* ---- entries in ---- */

void marin__rworker_wtask_free(marin__wtask *wt)
{
    marin__rtask_msg_free(&wt->msg);
    marin__free(wt->stream);
    marin__free(wt->result);
    marin__free(wt->why);
    marin__free(wt);
}

void marin__rworker_drop(marin__rworker *w, marin__wtask *wt)
{
    (void)w;
    marin__rworker_wtask_free(wt);
}

static int decimal(const redisReply *r, uint64_t *v)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return 0;
        x = x * 10 + (uint64_t)(r->str[i] - '0');
    }
    *v = x;
    return 1;
}

static int driver_id_ok(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= 40)
        return 0;
    for (size_t i = 0; i < r->len; i++) {
        char c = r->str[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}


static void dead_letter(marin__rworker *w, const char *stream, const char *id, const char *why)
{
    char dead[MARIN__RKEY_MAX], ttl[24];
    snprintf(dead, sizeof dead, "%sdead", w->s->prefix);
    snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.result_ttl_ms);
    marin__log(w->rt, MARIN_LOG_WARN, "worker %s: entry %s of %s moved to the dead-letter "
               "stream: %s", w->id, id, stream, why);
    const char *args[] = {stream, dead, MARIN__RGROUP_WORKERS, id, why, w->id, w->s->prefix,
                          ttl};
    marin__redis_eval(w->cmd, MARIN__RC_RETRY, MARIN__RS_DEADLETTER, NULL, NULL, 2, 6, args,
                      NULL);
}

/* Take one entry read from @p stream: a wtask in the backlog, or a dead
 * letter. */
static void take_entry(marin__rworker *w, const char *stream, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return;
    char id[48];
    snprintf(id, sizeof id, "%.*s", (int)e->element[0]->len, e->element[0]->str);
    const redisReply *fields = e->element[1];
    if (fields->type == REDIS_REPLY_NIL) /* deleted after delivery (cancelled) */
        return;
    const redisReply *fd = marin__redis_field(fields, "d"), *fs = marin__redis_field(fields, "s"),
                     *fa = marin__redis_field(fields, "a"), *ff = marin__redis_field(fields, "f");
    uint64_t seq = 0, attempt = 0;
    if (!driver_id_ok(fd) || !decimal(fs, &seq) || !decimal(fa, &attempt) || !ff ||
        ff->type != REDIS_REPLY_STRING || attempt == 0 || attempt > 1000000) {
        dead_letter(w, stream, id, "not a marin task entry (fields d, s, a and f with a "
                    "driver id, a sequence, an attempt and a frame are required)");
        return;
    }
    char drv[40];
    snprintf(drv, sizeof drv, "%.*s", (int)fd->len, fd->str);
    if (seq != 0 && marin__rworker_driver_dead(w, drv)) { /* 0: an actor's restart */
        /* Nobody waits for it: drop it unrun. */
        const char *ack[] = {"XACK", stream, MARIN__RGROUP_WORKERS, id};
        const char *del[] = {"XDEL", stream, id};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 4, ack, NULL);
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, del, NULL);
        return;
    }
    marin__wtask *wt = marin__calloc(1, sizeof *wt);
    if (!wt)
        return; /* stays pending: reclaimed if we die, else redelivered never: log */
    wt->w = w;
    wt->seq = seq;
    wt->attempt = (int)attempt;
    snprintf(wt->driver, sizeof wt->driver, "%.*s", (int)fd->len, fd->str);
    snprintf(wt->entry_id, sizeof wt->entry_id, "%s", id);
    int rc = marin__rtask_decode(ff->str, ff->len, w->s->cfg.max_payload, &wt->msg);
    if (rc != MARIN_OK) {
        char why[600];
        snprintf(why, sizeof why, "corrupt task frame: %s", marin__err_msg());
        marin__free(wt);
        dead_letter(w, stream, id, why);
        return;
    }
    if (!(wt->stream = marin__strdup(stream))) {
        marin__rworker_wtask_free(wt);
        return;
    }
    size_t plen = strlen(w->s->prefix);
    if (strncmp(stream + plen, "ac:", 3) == 0) { /* a call to an actor we host */
        if (!marin__rhost_take_call(w, stream, wt)) {
            char why[256];
            snprintf(why, sizeof why, "call '%s' failed: its actor is no longer hosted by "
                     "worker %s", wt->msg.name, w->id);
            wt->rc = MARIN_EWORKER;
            wt->why = marin__strdup(why);
            marin__rworker_finish(w, wt);
        }
        return;
    }
    wt->id_ms = strtoull(id, NULL, 10);
    const char *dash = strchr(id, '-');
    wt->id_seq = dash ? strtoull(dash + 1, NULL, 10) : 0;
    /* Entries of one read come grouped by queue; the backlog keeps them in
     * the order Redis stamped them (ms-seq ids), so tasks start in the order
     * they were submitted, across queues. */
    pthread_mutex_lock(&w->mu);
    marin__wtask **p = &w->backlog_head, *prev = NULL;
    while (*p && ((*p)->id_ms < wt->id_ms ||
                  ((*p)->id_ms == wt->id_ms && (*p)->id_seq <= wt->id_seq))) {
        prev = *p;
        p = &(*p)->next;
    }
    wt->next = *p;
    *p = wt;
    if (!wt->next)
        w->backlog_tail = wt;
    (void)prev;
    w->nbacklog++;
    pthread_mutex_unlock(&w->mu);
}

/* Under w->mu: place whole GPUs for @p wt. 0 when they are not free. */
static int place_gpus(marin__rworker *w, marin__wtask *wt)
{
    int64_t want = marin__res_amount(wt->msg.res, "gpus");
    size_t whole = (size_t)(want / MARIN__RES_SCALE);
    if (want % MARIN__RES_SCALE)
        whole++;
    if (whole > MARIN__RWORKER_GPUS)
        return 0;
    size_t got = 0;
    for (size_t i = 0; i < w->ngpus && got < whole; i++)
        if (!w->gpu_busy[i])
            wt->gpu_slot[got++] = i;
    if (got < whole)
        return 0;
    for (size_t i = 0; i < whole; i++) {
        w->gpu_busy[wt->gpu_slot[i]] = 1;
        wt->gpu_ids[i] = w->gpu_ids[wt->gpu_slot[i]];
    }
    wt->ngpus = whole;
    return 1;
}

/* Start what fits from the backlog, oldest first (FIFO per shape would
 * starve less; the backlog is short: at most one read's worth). */
static void start_backlog(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    marin__wtask **p = &w->backlog_head, *prev = NULL;
    while (*p) {
        marin__wtask *wt = *p;
        if (!w->draining && marin__redis_fits(wt->msg.res, w->free) && place_gpus(w, wt)) {
            *p = wt->next;
            if (w->backlog_tail == wt)
                w->backlog_tail = prev;
            w->nbacklog--;
            res_sub(w->free, wt->msg.res);
            wt->next = NULL;
            if (w->ready_tail)
                w->ready_tail->next = wt;
            else
                w->ready_head = wt;
            w->ready_tail = wt;
            ensure_thread(w);
            continue;
        }
        prev = wt;
        p = &wt->next;
    }
    pthread_mutex_unlock(&w->mu);
}

/* ---- reading ---- */


static void read_retry_fire(void *arg)
{
    marin__rworker *w = arg;
    marin__timer_cancel(w->rt, w->read_retry); /* disposes the fired timer */
    w->read_retry = NULL;
    marin__rworker_read_queues(w);
}

static void schedule_read_retry(marin__rworker *w)
{
    if (!w->read_retry && !w->stopped)
        marin__timer_start(w->rt, w->s->cfg.conn.backoff_min_ms, read_retry_fire, w, NULL,
                           &w->read_retry);
}

static void create_groups(marin__rworker *w)
{
    for (size_t i = 0; i < w->nqueues; i++) {
        const char *g[] = {"XGROUP", "CREATE", w->queues[i].key, MARIN__RGROUP_WORKERS, "0",
                           "MKSTREAM"};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 6, g, NULL);
    }
    /* The call streams of hosted actors too: one missing group fails the
     * whole read. */
    const char *streams[MARIN__RWORKER_QUEUES];
    pthread_mutex_lock(&w->mu);
    size_t n = marin__rhost_streams(w, streams, MARIN__RWORKER_QUEUES);
    char (*copy)[MARIN__RKEY_MAX] = n ? marin__malloc(n * MARIN__RKEY_MAX) : NULL;
    for (size_t i = 0; copy && i < n; i++)
        snprintf(copy[i], MARIN__RKEY_MAX, "%s", streams[i]);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; copy && i < n; i++) {
        const char *g[] = {"XGROUP", "CREATE", copy[i], MARIN__RGROUP_WORKERS, "0", "MKSTREAM"};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 6, g, NULL);
    }
    marin__free(copy);
}

static void read_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    marin__rworker *w = ud;
    w->reading = 0;
    if (w->stopped || rc == MARIN_ECANCELED)
        return;
    if (w->draining && (rc != MARIN_OK || reply->type == REDIS_REPLY_ERROR)) {
        marin__rworker_drain_check(w); /* no more reads: the drain may end now */
        return;
    }
    if (rc != MARIN_OK) {
        marin__log(w->rt, MARIN_LOG_DEBUG, "worker %s: read failed: %s", w->id, err);
        schedule_read_retry(w);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) == 0)
            create_groups(w); /* a queue lost its group (a purge, a Redis without AOF) */
        else
            marin__log(w->rt, MARIN_LOG_WARN, "worker %s: Redis refused the read: %s", w->id,
                       reply->str);
        schedule_read_retry(w);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL && !w->draining) {
        /* Timed out or unblocked (a driver made a new queue): look at the
         * queue set again, then read (queues_reply reads). */
        marin__rworker_refresh_queues(w);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        char wake[MARIN__RKEY_MAX];
        snprintf(wake, sizeof wake, "%swake", w->s->prefix);
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *st = reply->element[i];
            if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 ||
                st->element[0]->type != REDIS_REPLY_STRING ||
                st->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            char stream[MARIN__RKEY_MAX];
            snprintf(stream, sizeof stream, "%.*s", (int)st->element[0]->len,
                     st->element[0]->str);
            if (strcmp(stream, wake) == 0) {
                /* A driver made a queue: look at the set again. */
                const redisReply *es = st->element[1];
                if (es->elements && es->element[es->elements - 1]->type == REDIS_REPLY_ARRAY &&
                    es->element[es->elements - 1]->element[0]->type == REDIS_REPLY_STRING)
                    snprintf(w->wake_last, sizeof w->wake_last, "%.*s",
                             (int)es->element[es->elements - 1]->element[0]->len,
                             es->element[es->elements - 1]->element[0]->str);
                marin__rworker_refresh_queues(w);
                return;
            }
            for (size_t k = 0; k < st->element[1]->elements; k++)
                take_entry(w, stream, st->element[1]->element[k]);
        }
    }
    start_backlog(w);
    if (w->draining) {
        marin__rworker_handback_backlog(w);
        marin__rworker_drain_check(w);
        return;
    }
    marin__rworker_read_queues(w);
}

static void client_id_reply(marin__rconn *c, redisReply *reply, int rc, const char *err,
                            void *ud)
{
    (void)c;
    (void)err;
    marin__rworker *w = ud;
    if (rc == MARIN_OK && reply->type == REDIS_REPLY_INTEGER)
        w->rd_client_id = reply->integer;
}

/* After a reconnect the read connection is another client: learn its id
 * (CLIENT UNBLOCK must reach our read, not a stranger's) before reading. */
static void refresh_client_id(marin__rworker *w)
{
    uint64_t epoch = marin__rconn_epoch(w->rd);
    if (epoch == w->rd_epoch)
        return;
    w->rd_epoch = epoch;
    w->rd_client_id = 0;
    const char *a[] = {"CLIENT", "ID"};
    marin__rconn_cmd(w->rd, 0, 0, client_id_reply, w, 2, a, NULL);
}

/* How many tasks of shape @p need fit in @p free (at most @p cap). */
static size_t fit_count(const marin_resources_t *need, const marin_resources_t *free_,
                        size_t cap)
{
    size_t n = cap;
    for (size_t i = 0; i < need->n; i++) {
        int64_t have = marin__res_amount(free_, need->e[i].name);
        if (need->e[i].amount <= 0)
            continue;
        int64_t k = have > 0 ? have / need->e[i].amount : 0;
        if ((size_t)k < n)
            n = (size_t)k;
    }
    return n;
}

void marin__rworker_read_queues(marin__rworker *w)
{
    if (w->reading || w->stopped || w->draining || !w->nqueues)
        return;
    /* 9 words, then at most MARIN__RWORKER_QUEUES streams and as many '>' */
    const char *av[9 + 2 * MARIN__RWORKER_QUEUES];
    size_t n = 0, count = 0;
    char block[24], cnt[24];
    av[n++] = "XREADGROUP";
    av[n++] = "GROUP";
    av[n++] = MARIN__RGROUP_WORKERS;
    av[n++] = w->id;
    av[n++] = "COUNT";
    av[n++] = cnt;
    av[n++] = "BLOCK";
    av[n++] = block;
    av[n++] = "STREAMS";
    size_t first = n, nstreams = 0;
    pthread_mutex_lock(&w->mu);
    size_t backlog = w->nbacklog;
    for (size_t i = 0; i < w->nqueues; i++) {
        marin__rwqueue *q = &w->queues[i];
        if (!q->runnable)
            continue;
        size_t k = fit_count(q->res, w->free, READ_COUNT_MAX);
        if (k == 0)
            continue;
        if (k > count)
            count = k;
        av[n++] = q->key;
        nstreams++;
    }
    size_t nhosted = marin__rhost_streams(w, av + n, MARIN__RWORKER_QUEUES - nstreams);
    n += nhosted;
    nstreams += nhosted;
    if (nhosted && count < 64)
        count = 64; /* actor calls do not wait for capacity: it is held */
    pthread_mutex_unlock(&w->mu);
    if (!nstreams && !w->nrunnable) {
        /* No queue we can run yet: wait for a driver to make one. */
        char wake[MARIN__RKEY_MAX];
        snprintf(wake, sizeof wake, "%swake", w->s->prefix);
        snprintf(block, sizeof block, "%lld", (long long)w->s->cfg.block_ms);
        const char *x[] = {"XREAD", "BLOCK", block, "STREAMS", wake, w->wake_last};
        refresh_client_id(w);
        w->reading = 1;
        if (marin__rconn_cmd(w->rd, MARIN__RC_BLOCKING, w->s->cfg.block_ms, read_reply, w, 6,
                             x, NULL) != MARIN_OK) {
            w->reading = 0;
            schedule_read_retry(w);
        }
        return;
    }
    if (!nstreams)
        return; /* nothing fits now: a finished task or a refresh wakes us */
    count *= (size_t)w->prefetch;
    if (count > READ_COUNT_MAX)
        count = READ_COUNT_MAX;
    if (backlog >= count)
        return;
    count -= backlog;
    for (size_t i = 0; i < nstreams; i++)
        av[n++] = ">";
    (void)first;
    snprintf(cnt, sizeof cnt, "%zu", count);
    snprintf(block, sizeof block, "%lld", (long long)w->s->cfg.block_ms);
    refresh_client_id(w);
    w->reading = 1;
    if (marin__rconn_cmd(w->rd, MARIN__RC_BLOCKING, w->s->cfg.block_ms, read_reply, w, (int)n,
                         av, NULL) != MARIN_OK) {
        w->reading = 0;
        schedule_read_retry(w);
    }
}

/* ---- outcomes out ---- */

static void ack_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    marin__wtask *wt = ud;
    marin__rworker *w = wt->w;
    if (rc == MARIN_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        marin__log(w->rt, MARIN_LOG_INFO, "worker %s: the outcome of %s-%llu attempt %d was "
                   "dropped: the entry is no longer this worker's (reclaimed, handed back "
                   "or cancelled)", w->id, wt->driver, (unsigned long long)wt->seq,
                   wt->attempt);
    else if (rc == MARIN_OK && reply->type == REDIS_REPLY_ERROR)
        marin__log(w->rt, MARIN_LOG_ERROR, "worker %s: Redis refused the outcome of %s-%llu: "
                   "%s", w->id, wt->driver, (unsigned long long)wt->seq, reply->str);
    marin__rworker_wtask_free(wt);
    pthread_mutex_lock(&w->mu);
    w->acks_inflight--;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
}

static void send_ack(marin__rworker *w, marin__wtask *wt)
{
    void *frame = NULL;
    size_t flen = 0;
    int code = wt->rc;
    int rc = code == MARIN_OK
                 ? marin__rresult_encode(wt->result, wt->len, wt->actor_dead ? 2 : 0, &frame,
                                         &flen)
                 : marin__rresult_encode(wt->why, wt->why ? strlen(wt->why) : 0,
                                         wt->actor_dead ? 2 : wt->died, &frame, &flen);
    if (rc == MARIN_OK && (int64_t)flen > w->s->cfg.max_payload) {
        char msg[256];
        snprintf(msg, sizeof msg, "the task's result is %zu bytes, over the cap of %lld "
                 "bytes (max_payload=)", flen, (long long)w->s->cfg.max_payload);
        marin__free(frame);
        code = MARIN_ETOOBIG;
        rc = marin__rresult_encode(msg, strlen(msg), 0, &frame, &flen);
    }
    if (rc != MARIN_OK) {
        const char *msg = "out of memory encoding the outcome";
        code = MARIN_ENOMEM;
        if (marin__rresult_encode(msg, strlen(msg), 0, &frame, &flen) != MARIN_OK) {
            marin__rworker_wtask_free(wt); /* left pending: reclaimed when this worker dies */
            return;
        }
    }
    char done[MARIN__RKEY_MAX], sseq[24], satt[16], scode[16], ttl[24];
    snprintf(done, sizeof done, "%sdone:%s", w->s->prefix, wt->driver);
    snprintf(sseq, sizeof sseq, "%llu", (unsigned long long)wt->seq);
    snprintf(satt, sizeof satt, "%d", wt->attempt);
    snprintf(scode, sizeof scode, "%d", code);
    snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.result_ttl_ms);
    const char *args[] = {wt->stream, done, MARIN__RGROUP_WORKERS, w->id, wt->entry_id,
                          sseq, satt, scode, w->id, frame, ttl};
    size_t lens[] = {strlen(wt->stream), strlen(done), 1, strlen(w->id), strlen(wt->entry_id),
                     strlen(sseq), strlen(satt), strlen(scode), strlen(w->id), flen,
                     strlen(ttl)};
    pthread_mutex_lock(&w->mu);
    w->acks_inflight++;
    pthread_mutex_unlock(&w->mu);
    rc = marin__redis_eval(w->cmd, MARIN__RC_RETRY, MARIN__RS_ACK, ack_reply, wt, 2, 9, args,
                           lens);
    marin__free(frame);
    if (rc != MARIN_OK) {
        pthread_mutex_lock(&w->mu);
        w->acks_inflight--;
        pthread_mutex_unlock(&w->mu);
        marin__rworker_wtask_free(wt);
    }
}

static void flush_done(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    marin__wtask *list = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (list) {
        marin__wtask *next = list->next;
        list->next = NULL;
        send_ack(w, list);
        list = next;
    }
}

/* ---- the reactor's wake-up ---- */


static void on_wake(uv_async_t *a)
{
    marin__rworker *w = a->data;
    if (w->stopped)
        return;
    flush_done(w);
    pthread_mutex_lock(&w->mu);
    int kicked = w->kicked;
    w->kicked = 0;
    pthread_mutex_unlock(&w->mu);
    if (kicked && w->reading && w->rd_client_id > 0) {
        char id[24];
        snprintf(id, sizeof id, "%lld", w->rd_client_id);
        const char *unblock[] = {"CLIENT", "UNBLOCK", id};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, unblock, NULL);
    }
    if (atomic_load(&w->stop_asked) && !w->draining)
        marin__rworker_drain_begin(w);
    start_backlog(w);
    marin__rworker_read_queues(w);
    if (w->draining)
        marin__rworker_drain_check(w);
}

/* ---- start, stop, join ---- */

static void start_job(marin__job *job)
{
    marin__rworker *w = (marin__rworker *)((char *)job - offsetof(marin__rworker, start_job));
    uv_async_init(marin__reactor_loop(w->rt), &w->async, on_wake);
    w->async.data = w;
    marin__rworker_heartbeat(w);
    marin__rworker_refresh_queues(w);
    w->last_reclaim = marin__redis_mono_ms();
    marin__timer_start(w->rt, w->s->cfg.heartbeat_ms < w->s->cfg.reclaim_ms
                                  ? w->s->cfg.heartbeat_ms
                                  : w->s->cfg.reclaim_ms,
                       marin__rworker_hb_fire, w, NULL, &w->hb);
    pthread_mutex_lock(&w->mu);
    w->reactor_started = 1;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
}

static void gen_id(char *buf, size_t cap)
{
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            *p = '-';
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)time(NULL);
    snprintf(buf, cap, "%.40s-%d-%06x", host, (int)getpid(), rnd & 0xffffff);
}

static int claim_name(marin__rworker *w)
{
    char key[MARIN__RKEY_MAX], ttl[24];
    snprintf(key, sizeof key, "%sw:%s", w->s->prefix, w->id);
    snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.worker_ttl_ms);
    const char *a[] = {"SET", key, "1", "NX", "PX", ttl};
    redisReply *r = NULL;
    int rc = marin__rconn_call(w->cmd, 0, &r, 6, a, NULL);
    if (rc != MARIN_OK)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = marin__err(MARIN_EEXIST, "marin_worker_start: a live worker named '%s' already "
                        "serves namespace '%s' (pick another --name, or wait %lld ms for its "
                        "heartbeat to expire)", w->id, w->s->cfg.ns,
                        (long long)w->s->cfg.worker_ttl_ms);
    else if (r->type == REDIS_REPLY_ERROR)
        rc = marin__err(MARIN_EUNAVAILABLE, "marin_worker_start: Redis refused a write: %s",
                        r->str);
    freeReplyObject(r);
    return rc;
}

static void worker_free(marin__rworker *w)
{
    marin__rconn_close(w->rd);
    marin__rconn_close(w->cmd);
    for (size_t i = 0; i < w->nqueues; i++) {
        marin__free(w->queues[i].key);
        marin__free(w->queues[i].task);
        marin_resources_destroy(w->queues[i].res);
    }
    marin_resources_destroy(w->cap);
    marin_resources_destroy(w->free);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->idle_cv);
    marin__free(w);
}

int marin__rworker_start(void *state, const marin__worker_opts *o, void **out)
{
    marin__redis *s = state;
    *out = NULL;
    marin__rworker *w = marin__calloc(1, sizeof *w);
    if (!w)
        return marin__err(MARIN_ENOMEM, "marin_worker_start: out of memory");
    w->s = s;
    w->rt = s->rt;
    w->drain_ms = o->drain_ms;
    w->prefetch = 4;
    snprintf(w->wake_last, sizeof w->wake_last, "$");
    w->started_ms = marin__redis_wall_ms();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->idle_cv, NULL);
    int rc;
    if (o->name)
        snprintf(w->id, sizeof w->id, "%s", o->name);
    else
        gen_id(w->id, sizeof w->id);
    size_t ngpus = 0;
    if ((rc = marin_resources_parse("cpus=0", &w->cap)) != MARIN_OK)
        goto fail;
    if (o->res) {
        marin_resources_destroy(w->cap);
        w->cap = NULL;
        if ((rc = marin__res_copy(o->res, &w->cap)) != MARIN_OK)
            goto fail;
        size_t g = (size_t)(marin__res_amount(w->cap, "gpus") / MARIN__RES_SCALE);
        for (size_t i = 0; i < g && i < MARIN__RWORKER_GPUS; i++)
            w->gpu_ids[ngpus++] = (int)i;
    } else if ((rc = marin__detect_capacity(NULL, w->cap, w->gpu_ids, &ngpus)) != MARIN_OK) {
        goto fail;
    }
    w->ngpus = ngpus;
    if ((rc = marin__res_copy(w->cap, &w->free)) != MARIN_OK)
        goto fail;
    marin__rconf c = s->cfg.conn;
    c.label = "worker";
    if ((rc = marin__rconn_open(s->rt, &c, &w->cmd)) != MARIN_OK)
        goto fail;
    c.label = "worker-read";
    if ((rc = marin__rconn_open(s->rt, &c, &w->rd)) != MARIN_OK)
        goto fail;
    if ((rc = claim_name(w)) != MARIN_OK)
        goto fail;
    /* Actors a previous process with this name hosted are orphans now: no
     * one else will see their host die (the heartbeat key is ours again). */
    if (o->name) {
        char ids[MARIN__RKEY_MAX], ttl[24];
        snprintf(ids, sizeof ids, "%sactor_ids", s->prefix);
        snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.result_ttl_ms);
        const char *args[] = {ids, s->prefix, ttl, "10000", w->id};
        redisReply *rr = NULL;
        if (marin__redis_eval_sync(w->cmd, MARIN__RS_ACTOR_REAP, &rr, 1, 4, args, NULL) ==
            MARIN_OK)
            freeReplyObject(rr);
    }
    /* Wake-ups from now on count (a queue made before our first read). */
    char wake[MARIN__RKEY_MAX];
    snprintf(wake, sizeof wake, "%swake", s->prefix);
    const char *rev[] = {"XREVRANGE", wake, "+", "-", "COUNT", "1"};
    redisReply *wr = NULL;
    snprintf(w->wake_last, sizeof w->wake_last, "0-0");
    if (marin__rconn_call(w->cmd, 0, &wr, 6, rev, NULL) == MARIN_OK) {
        if (wr->type == REDIS_REPLY_ARRAY && wr->elements == 1 &&
            wr->element[0]->type == REDIS_REPLY_ARRAY && wr->element[0]->elements == 2 &&
            wr->element[0]->element[0]->type == REDIS_REPLY_STRING)
            snprintf(w->wake_last, sizeof w->wake_last, "%.*s",
                     (int)wr->element[0]->element[0]->len, wr->element[0]->element[0]->str);
        freeReplyObject(wr);
    }
    const char *cid[] = {"CLIENT", "ID"};
    redisReply *idr = NULL;
    if (marin__rconn_call(w->rd, 0, &idr, 2, cid, NULL) == MARIN_OK) {
        if (idr->type == REDIS_REPLY_INTEGER)
            w->rd_client_id = idr->integer;
        w->rd_epoch = marin__rconn_epoch(w->rd);
        freeReplyObject(idr);
    }
    w->start_job.run = start_job;
    if (marin__reactor_post(s->rt, &w->start_job) != MARIN_OK) {
        rc = marin__err(MARIN_ESTATE, "marin_worker_start: the runtime is closing");
        goto fail;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->reactor_started)
        pthread_cond_wait(&w->idle_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    char cap[512];
    marin__redis_shape(w->cap, cap, sizeof cap);
    marin__log(s->rt, MARIN_LOG_INFO, "worker %s: serving namespace '%s' at %s with %s",
               w->id, s->cfg.ns, marin__rconn_addr(w->cmd), cap);
    *out = w;
    return MARIN_OK;
fail:
    worker_free(w);
    return rc;
}

void marin__rworker_stop(void *wp)
{
    marin__rworker *w = wp;
    /* Async-signal-safe: no lock. The first stop wakes the reactor; the
     * handle is closed only after a stop was asked (finish_stop), so a
     * later stop does not touch it. */
    if (atomic_exchange(&w->stop_asked, 1) == 0)
        uv_async_send(&w->async);
}

int marin__rworker_join(void *wp)
{
    marin__rworker *w = wp;
    pthread_mutex_lock(&w->mu);
    while (!w->reactor_done || w->sweepers > 0)
        pthread_cond_wait(&w->idle_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    marin__rhost_stop_all(w);
    pthread_mutex_lock(&w->mu);
    while (w->sweepers > 0) /* a rebuild cut short by the stop may start one */
        pthread_cond_wait(&w->idle_cv, &w->mu);
    /* Threads finish what they run (handed-back tasks were asked to stop). */
    w->threads_exit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    /* Outcomes that finished late still go out, from this thread (the
     * connections are open until the runtime closes); the ACK script drops
     * those handed back meanwhile. */
    flush_done(w);
    pthread_mutex_lock(&w->mu);
    while (w->acks_inflight > 0 && marin__rconn_up(w->cmd)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->idle_cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    marin__log(w->rt, MARIN_LOG_INFO, "worker %s: stopped", w->id);
    worker_free(w);
    return MARIN_OK;
}

const char *marin__rworker_id(const void *wp)
{
    return ((const marin__rworker *)wp)->id;
}

void marin__rworker_task_log(void *state, const char *task_id, int level, const char *message)
{
    marin__wtask *wt = current_wtask;
    if (!wt || wt->w->s != state)
        return; /* not a task of a worker of this runtime (the driver itself) */
    marin__rworker *w = wt->w;
    char key[MARIN__RKEY_MAX], seq[24], lv[8], ttl[24];
    snprintf(key, sizeof key, "%slogs:%s", w->s->prefix, wt->driver);
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)wt->seq);
    snprintf(lv, sizeof lv, "%d", level);
    snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.result_ttl_ms);
    const char *a[] = {"XADD", key, "MAXLEN", "~", "100000", "*", "s", seq, "t", task_id,
                       "l", lv, "w", w->id, "m", message};
    const char *b[] = {"PEXPIRE", key, ttl};
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 16, a, NULL);
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, b, NULL);
}

void marin__rworker_set_current(marin__wtask *wt)
{
    current_wtask = wt;
}
