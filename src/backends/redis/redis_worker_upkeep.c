/* The worker's upkeep, on the reactor: heartbeats, the queue set, polls of
 * cancellations, reclaiming the entries of dead peers (tasks, and actors
 * through the actor reaper), the janitor, and the drain at stop. redis_worker.c reads, runs and
 * acknowledges. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "fail.h"
#include "redis_actor.h"
#include "redis_internal.h"
#include "redis_worker.h"

/* ---- marin__rworker_heartbeat, queue discovery, cancellations, reclaim ---- */

static void names_cb(const char *name, void *ud)
{
    json_array_append_new(ud, json_string(name));
}

/* Actor classes travel as the task name of their creation queue. */
static void class_task_cb(const char *name, void *ud)
{
    char buf[MARIN_NAME_MAX + 16];
    snprintf(buf, sizeof buf, "@actor:%s", name);
    json_array_append_new(ud, json_string(buf));
}

void marin__rworker_heartbeat(marin__rworker *w)
{
    char key[MARIN__RKEY_MAX], hash[MARIN__RKEY_MAX], ttl[24], cap[512], fr[512];
    snprintf(key, sizeof key, "%sw:%s", w->s->prefix, w->id);
    snprintf(hash, sizeof hash, "%sworkers", w->s->prefix);
    snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.worker_ttl_ms);
    marin__redis_shape(w->cap, cap, sizeof cap);
    json_t *tasks = json_array(), *classes = json_array();
    marin__registry_each_task(names_cb, tasks);
    marin__registry_each_actor_class(class_task_cb, tasks);
    marin__registry_each_actor_class(names_cb, classes);
    size_t running = 0;
    pthread_mutex_lock(&w->mu);
    marin__redis_shape(w->free, fr, sizeof fr);
    for (marin__wtask *wt = w->running; wt; wt = wt->next)
        running++;
    pthread_mutex_unlock(&w->mu);
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:I, s:I, s:i, s:b, s:I}",
                          "name", w->id, "host", host, "pid", (int)getpid(), "resources", cap,
                          "free", fr, "tasks", tasks, "classes", classes, "started_ms",
                          (json_int_t)w->started_ms, "hb_ms", (json_int_t)marin__redis_wall_ms(), "running",
                          (int)running, "draining", w->draining, "rd_client",
                          (json_int_t)w->rd_client_id);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return;
    const char *a[] = {"SET", key, "1", "PX", ttl};
    const char *b[] = {"HSET", hash, w->id, text};
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 5, a, NULL);
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 4, b, NULL);
    free(text);
}

static void queues_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    marin__rworker *w = ud;
    if (rc != MARIN_OK || reply->type != REDIS_REPLY_ARRAY || w->stopped)
        return;
    int changed = 0;
    for (size_t i = 0; i < reply->elements && w->nqueues < MARIN__RWORKER_QUEUES; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len >= MARIN__RKEY_MAX)
            continue;
        int known = 0;
        for (size_t k = 0; k < w->nqueues && !known; k++)
            known = strlen(w->queues[k].key) == e->len &&
                    memcmp(w->queues[k].key, e->str, e->len) == 0;
        if (known)
            continue;
        marin__rwqueue *q = &w->queues[w->nqueues];
        memset(q, 0, sizeof *q);
        if (!(q->key = marin__malloc(e->len + 1)))
            continue;
        memcpy(q->key, e->str, e->len);
        q->key[e->len] = 0;
        /* marin:{NS}:q:<task>:<shape> — the shape never holds ':'. */
        size_t plen = strlen(w->s->prefix);
        const char *body = strncmp(q->key, w->s->prefix, plen) == 0 ? q->key + plen : NULL;
        const char *colon = body ? strrchr(body, ':') : NULL;
        if (body && strncmp(body, "q:", 2) == 0 && colon && colon > body + 2) {
            size_t tl = (size_t)(colon - (body + 2));
            q->task = marin__malloc(tl + 1);
            if (q->task) {
                memcpy(q->task, body + 2, tl);
                q->task[tl] = 0;
            }
            if (q->task && marin_resources_parse(strcmp(colon + 1, "none") == 0 ? "cpus=0"
                                                                              : colon + 1,
                                                 &q->res) == MARIN_OK)
                q->runnable = (marin__registry_find_task(q->task) != NULL ||
                               marin__rhost_runnable(q->task)) &&
                              marin__redis_fits(q->res, w->cap);
            w->nrunnable += q->runnable;
        }
        w->nqueues++;
        changed = 1;
        if (!w->reading && !w->self_reclaimed) {
            /* Entries a previous process with our name left pending (it was
             * killed and restarted faster than worker_ttl_ms): they are
             * not running here, so hand them to their drivers as lost. */
            char ttl[24], msg[256];
            snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.result_ttl_ms);
            snprintf(msg, sizeof msg, "worker %s restarted while running the task", w->id);
            const char *args[] = {q->key, MARIN__RGROUP_WORKERS, w->id, w->s->prefix, "1000",
                                  ttl, msg, "1"};
            marin__redis_eval(w->cmd, 0, MARIN__RS_RECLAIM, NULL, NULL, 1, 7, args, NULL);
        }
    }
    w->self_reclaimed = 1;
    (void)changed;
    marin__rworker_read_queues(w);
}

void marin__rworker_refresh_queues(marin__rworker *w)
{
    char set[MARIN__RKEY_MAX];
    snprintf(set, sizeof set, "%squeues", w->s->prefix);
    const char *a[] = {"SMEMBERS", set};
    marin__rconn_cmd(w->cmd, 0, 0, queues_reply, w, 2, a, NULL);
}

typedef struct cancel_poll {
    marin__rworker *w;
    size_t n;
    struct {
        char driver[40];
        uint64_t seq;
    } k[];
} cancel_poll;

typedef struct cancel_match {
    const char *driver;
    uint64_t seq;
} cancel_match;

static void mark_cancelled(marin__wtask *wt, void *ud)
{
    cancel_match *m = ud;
    if (wt->seq == m->seq && strcmp(wt->driver, m->driver) == 0)
        wt->cancel_seen = 1;
}

static void count_cb(marin__wtask *wt, void *ud)
{
    (void)wt;
    (*(size_t *)ud)++;
}

typedef struct key_fill {
    cancel_poll *p;
    char (*keys)[MARIN__RKEY_MAX];
    const char **av;
    size_t max;
    const char *prefix;
} key_fill;

static void fill_cb(marin__wtask *wt, void *ud)
{
    key_fill *f = ud;
    cancel_poll *p = f->p;
    if (p->n >= f->max)
        return;
    snprintf(p->k[p->n].driver, sizeof p->k[p->n].driver, "%s", wt->driver);
    p->k[p->n].seq = wt->seq;
    snprintf(f->keys[p->n], MARIN__RKEY_MAX, "%scancel:%s:%llu", f->prefix, wt->driver,
             (unsigned long long)wt->seq);
    f->av[1 + p->n] = f->keys[p->n];
    p->n++;
}

static void cancel_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    cancel_poll *p = ud;
    marin__rworker *w = p->w;
    if (rc == MARIN_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == p->n) {
        pthread_mutex_lock(&w->mu);
        for (size_t i = 0; i < p->n; i++) {
            if (reply->element[i]->type == REDIS_REPLY_NIL)
                continue;
            for (marin__wtask *wt = w->running; wt; wt = wt->next)
                if (wt->seq == p->k[i].seq && strcmp(wt->driver, p->k[i].driver) == 0) {
                    wt->cancel_seen = 1;
                    if (wt->t)
                        atomic_store(&wt->t->cancel, 1);
                }
            cancel_match m = {p->k[i].driver, p->k[i].seq};
            marin__rhost_each_queued(w, mark_cancelled, &m);
        }
        pthread_mutex_unlock(&w->mu);
    }
    marin__free(p);
}

static void poll_cancels(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = 0;
    for (marin__wtask *wt = w->running; wt; wt = wt->next)
        n++;
    marin__rhost_each_queued(w, count_cb, &n);
    if (n > 512)
        n = 512;
    cancel_poll *p = n ? marin__malloc(sizeof *p + n * sizeof p->k[0]) : NULL;
    char (*keys)[MARIN__RKEY_MAX] = p ? marin__malloc(n * MARIN__RKEY_MAX) : NULL;
    const char **av = keys ? marin__malloc((n + 1) * sizeof *av) : NULL;
    if (!av) {
        pthread_mutex_unlock(&w->mu);
        marin__free(p);
        marin__free(keys);
        return;
    }
    p->w = w;
    p->n = 0;
    av[0] = "MGET";
    for (marin__wtask *wt = w->running; wt && p->n < n; wt = wt->next) {
        snprintf(p->k[p->n].driver, sizeof p->k[p->n].driver, "%s", wt->driver);
        p->k[p->n].seq = wt->seq;
        snprintf(keys[p->n], MARIN__RKEY_MAX, "%scancel:%s:%llu", w->s->prefix, wt->driver,
                 (unsigned long long)wt->seq);
        av[1 + p->n] = keys[p->n];
        p->n++;
    }
    key_fill kf = {p, keys, av, n, w->s->prefix};
    marin__rhost_each_queued(w, fill_cb, &kf);
    pthread_mutex_unlock(&w->mu);
    if (marin__rconn_cmd(w->cmd, 0, 0, cancel_reply, p, (int)(1 + p->n), av, NULL) != MARIN_OK)
        marin__free(p);
    marin__free(av);
    marin__free(keys);
}

typedef struct reclaim_ud {
    marin__rworker *w;
    char stream[MARIN__RKEY_MAX];
} reclaim_ud;

static void consumers_reply(marin__rconn *c, redisReply *reply, int rc, const char *err,
                            void *ud)
{
    (void)c;
    (void)err;
    reclaim_ud *r = ud;
    marin__rworker *w = r->w;
    if (rc == MARIN_OK && !w->stopped)
        marin__redis_reclaim_dead(w->s, w->cmd, r->stream, reply, w->id, 1);
    marin__free(r);
}

static void janitor_reply(marin__rconn *c, redisReply *reply, int rc, const char *err,
                          void *ud)
{
    (void)c;
    (void)err;
    marin__rworker *w = ud;
    if (rc != MARIN_OK || reply->type != REDIS_REPLY_ARRAY)
        return;
    pthread_mutex_lock(&w->mu);
    w->ndead_drivers = 0; /* only those dead now (a driver may come back) */
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len >= sizeof w->dead_drivers[0])
            continue;
        snprintf(w->dead_drivers[w->ndead_drivers++ % 64], sizeof w->dead_drivers[0], "%.*s",
                 (int)e->len, e->str);
    }
    pthread_mutex_unlock(&w->mu);
    if (reply->elements)
        marin__log(w->rt, MARIN_LOG_INFO, "worker %s: janitor: %zu dead driver%s cleaned up",
                   w->id, reply->elements, reply->elements == 1 ? "" : "s");
}

int marin__rworker_driver_dead(marin__rworker *w, const char *driver)
{
    int dead = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < 64 && i < w->ndead_drivers && !dead; i++)
        dead = strcmp(w->dead_drivers[i], driver) == 0;
    pthread_mutex_unlock(&w->mu);
    return dead;
}

static void reclaim(marin__rworker *w)
{
    marin__rhost_reap(w);
    if (w->janitor_round++ % 10 == 0) {
        char drivers[MARIN__RKEY_MAX], workers[MARIN__RKEY_MAX];
        snprintf(drivers, sizeof drivers, "%sdrivers", w->s->prefix);
        snprintf(workers, sizeof workers, "%sworkers", w->s->prefix);
        const char *args[] = {drivers, workers, w->s->prefix};
        marin__redis_eval(w->cmd, 0, MARIN__RS_JANITOR, janitor_reply, w, 2, 1, args, NULL);
    }
    for (size_t i = 0; i < w->nqueues; i++) {
        reclaim_ud *r = marin__malloc(sizeof *r);
        if (!r)
            return;
        r->w = w;
        snprintf(r->stream, sizeof r->stream, "%s", w->queues[i].key);
        const char *a[] = {"XINFO", "CONSUMERS", r->stream, MARIN__RGROUP_WORKERS};
        if (marin__rconn_cmd(w->cmd, 0, 0, consumers_reply, r, 4, a, NULL) != MARIN_OK)
            marin__free(r);
    }
}

void marin__rworker_hb_fire(void *arg)
{
    marin__rworker *w = arg;
    marin__timer_cancel(w->rt, w->hb); /* disposes the fired timer */
    w->hb = NULL;
    if (w->stopped)
        return;
    marin__rworker_heartbeat(w);
    marin__rworker_refresh_queues(w);
    poll_cancels(w);
    marin__rhost_check_states(w);
    int64_t now = marin__redis_mono_ms();
    if (now - w->last_reclaim >= w->s->cfg.reclaim_ms) {
        w->last_reclaim = now;
        reclaim(w);
    }
    marin__rworker_read_queues(w);
    int64_t next = w->s->cfg.heartbeat_ms;
    if (w->s->cfg.reclaim_ms < next)
        next = w->s->cfg.reclaim_ms;
    marin__timer_start(w->rt, next, marin__rworker_hb_fire, w, NULL, &w->hb);
}

/* ---- drain and stop ---- */

static void handback_one(marin__rworker *w, marin__wtask *wt)
{
    const char *args[] = {wt->stream, MARIN__RGROUP_WORKERS, w->id, wt->entry_id};
    marin__redis_eval(w->cmd, MARIN__RC_RETRY, MARIN__RS_HANDBACK, NULL, NULL, 1, 3, args,
                      NULL);
}

void marin__rworker_handback_backlog(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    marin__wtask *list = w->backlog_head;
    w->backlog_head = w->backlog_tail = NULL;
    w->nbacklog = 0;
    pthread_mutex_unlock(&w->mu);
    while (list) {
        marin__wtask *next = list->next;
        handback_one(w, list);
        marin__rworker_wtask_free(list);
        list = next;
    }
}

static void finish_stop(marin__rworker *w)
{
    if (w->stopped)
        return;
    w->stopped = 1;
    if (w->hb)
        marin__timer_cancel(w->rt, w->hb);
    if (w->read_retry)
        marin__timer_cancel(w->rt, w->read_retry);
    if (w->drain_timer)
        marin__timer_cancel(w->rt, w->drain_timer);
    w->hb = w->read_retry = w->drain_timer = NULL;
    char key[MARIN__RKEY_MAX], hash[MARIN__RKEY_MAX];
    snprintf(key, sizeof key, "%sw:%s", w->s->prefix, w->id);
    snprintf(hash, sizeof hash, "%sworkers", w->s->prefix);
    const char *a[] = {"DEL", key};
    const char *b[] = {"HDEL", hash, w->id};
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 2, a, NULL);
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, b, NULL);
    pthread_mutex_lock(&w->mu);
    w->async_closed = 1;
    pthread_mutex_unlock(&w->mu);
    uv_close((uv_handle_t *)&w->async, NULL);
    pthread_mutex_lock(&w->mu);
    w->reactor_done = 1;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
}

static void drain_timeout(void *arg)
{
    marin__rworker *w = arg;
    marin__timer_cancel(w->rt, w->drain_timer); /* disposes the fired timer */
    w->drain_timer = NULL;
    /* Time is up: hand back what still runs (its result will be dropped
     * by the ACK script) and ask it to stop. */
    pthread_mutex_lock(&w->mu);
    size_t n = 0;
    for (marin__wtask *wt = w->running; wt; wt = wt->next) {
        handback_one(w, wt);
        wt->cancel_seen = 1;
        if (wt->t)
            atomic_store(&wt->t->cancel, 1);
        n++;
    }
    w->handed_back_running = 1;
    pthread_mutex_unlock(&w->mu);
    if (n)
        marin__log(w->rt, MARIN_LOG_WARN, "worker %s: drain period over; %zu running task%s "
                   "handed back to the queue", w->id, n, n == 1 ? "" : "s");
    marin__rworker_drain_check(w);
}

void marin__rworker_drain_begin(marin__rworker *w)
{
    w->draining = 1;
    marin__log(w->rt, MARIN_LOG_INFO, "worker %s: draining (up to %lld ms)", w->id,
               (long long)w->drain_ms);
    marin__rworker_heartbeat(w);
    marin__rworker_handback_backlog(w);
    if (w->reading && w->rd_client_id > 0) {
        /* The blocked read returns now instead of after block_ms. */
        char id[24];
        snprintf(id, sizeof id, "%lld", w->rd_client_id);
        const char *a[] = {"CLIENT", "UNBLOCK", id};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, a, NULL);
    }
    marin__timer_start(w->rt, w->drain_ms, drain_timeout, w, NULL, &w->drain_timer);
}

void marin__rworker_drain_check(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    int idle = (!w->running || w->handed_back_running) && !w->ready_head && !w->done_head;
    pthread_mutex_unlock(&w->mu);
    if (idle && !w->reading)
        finish_stop(w);
}

