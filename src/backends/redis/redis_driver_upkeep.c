/* The driver's upkeep, on the reactor: its heartbeat, the grace period of
 * tasks no live worker can run (judged from the live workers' heartbeats),
 * and reaping what dead workers left on its queues (also actors of dead
 * hosts), so nothing waits for a worker that will never come.
 * redis_driver.c sends tasks and reads outcomes. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "fail.h"
#include "redis_internal.h"

/* ---- heartbeat and the grace period ---- */

typedef struct live_worker {
    json_t *tasks;
    marin_resources_t *res;
} live_worker;

/* Fail every outstanding task of queue @p q (under nothing). */
static void fail_queue(marin__redis *s, marin__rqueue *q, int code, const char *why)
{
    for (;;) {
        marin__rtask *r = NULL;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->nbuckets && !r; i++)
            for (marin__rtask *x = s->buckets[i]; x; x = x->next)
                if (x->q == q) {
                    r = marin__rdriver_table_take(s, x->seq);
                    break;
                }
        pthread_mutex_unlock(&s->mu);
        if (!r)
            return;
        if (r->entry_id[0]) {
            const char *del[] = {"XDEL", r->stream, r->entry_id};
            marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, del, NULL);
        }
        char id[64], msg[2048];
        marin__task_format_id(s->rt, r->t, id, sizeof id);
        snprintf(msg, sizeof msg, "task '%s' (%s) cannot run: %s", r->t->name, id, why);
        marin__rdriver_fail_taken(s, r, MARIN_FUTURE_FAILED, code, msg);
    }
}

void marin__rdriver_grace_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    marin__redis *s = ud;
    s->loop->grace_inflight = 0;
    if (rc != MARIN_OK || reply->type != REDIS_REPLY_ARRAY || s->loop->stopped)
        return;
    size_t n = reply->elements;
    live_worker *lw = marin__calloc(n ? n : 1, sizeof *lw);
    if (!lw)
        return;
    long long wake[64];
    size_t nwake = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        json_t *j = json_loadb(e->str, e->len, 0, NULL);
        if (!j)
            continue;
        json_int_t rid = json_integer_value(json_object_get(j, "rd_client"));
        if (rid > 0 && nwake < 64)
            wake[nwake++] = (long long)rid;
        json_t *tasks = json_object_get(j, "tasks");
        const char *res = json_string_value(json_object_get(j, "resources"));
        if (json_is_array(tasks) && res && marin_resources_parse(res, &lw[i].res) == MARIN_OK)
            lw[i].tasks = json_incref(tasks);
        json_decref(j);
    }
    pthread_mutex_lock(&s->mu);
    memcpy(s->wake_ids, wake, nwake * sizeof *wake);
    s->nwake = nwake;
    pthread_mutex_unlock(&s->mu);
    int64_t now = marin__redis_mono_ms();
    /* Judge each queue with outstanding tasks. */
    marin__rqueue *expired[64];
    int codes[64];
    char whys[64][512];
    size_t nexp = 0;
    pthread_mutex_lock(&s->mu);
    for (marin__rqueue *q = s->queues; q; q = q->next) {
        if (!q->pending) {
            q->unrunnable_since = 0;
            continue;
        }
        int named = 0, fits = 0;
        for (size_t i = 0; i < n && !fits; i++) {
            if (!lw[i].tasks)
                continue;
            size_t k;
            json_t *v;
            int has = 0;
            json_array_foreach(lw[i].tasks, k, v) {
                const char *name = json_string_value(v);
                if (name && strcmp(name, q->task) == 0)
                    has = 1;
            }
            if (has) {
                named = 1;
                if (marin__redis_fits(q->res, lw[i].res))
                    fits = 1;
            }
        }
        if (fits) {
            if (q->unrunnable_since)
                marin__log(s->rt, MARIN_LOG_INFO, "redis: a worker that can run '%s' (%s) "
                           "is live again", q->task, q->key + strlen(s->prefix));
            q->unrunnable_since = 0;
            continue;
        }
        char shape[256];
        marin__redis_shape(q->res, shape, sizeof shape);
        char why[512];
        int code = named ? MARIN_EINFEASIBLE : MARIN_ENOTFOUND;
        if (named)
            snprintf(why, sizeof why, "no live worker has the capacity for %s (it waited "
                     "grace_ms=%lld ms; start a worker with more resources or ask for "
                     "less)", shape, (long long)s->cfg.grace_ms);
        else
            snprintf(why, sizeof why, "no live worker registers task '%s' (it waited "
                     "grace_ms=%lld ms; %zu live worker%s; start a marin-worker that loads "
                     "it)", q->task, (long long)s->cfg.grace_ms, n, n == 1 ? "" : "s");
        if (!q->unrunnable_since) {
            q->unrunnable_since = now;
            q->unrunnable_code = code;
            marin__log(s->rt, MARIN_LOG_WARN, "redis: %zu task%s of '%s' (%s) wait%s: no "
                       "live worker %s; they fail after grace_ms=%lld ms", q->pending,
                       q->pending == 1 ? "" : "s", q->task, shape, q->pending == 1 ? "s" : "",
                       named ? "has the capacity" : "registers the task",
                       (long long)s->cfg.grace_ms);
        } else if (now - q->unrunnable_since >= s->cfg.grace_ms && nexp < 64) {
            codes[nexp] = code;
            snprintf(whys[nexp], sizeof whys[nexp], "%s", why);
            expired[nexp++] = q;
            q->unrunnable_since = 0;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        json_decref(lw[i].tasks);
        marin_resources_destroy(lw[i].res);
    }
    marin__free(lw);
    for (size_t i = 0; i < nexp; i++)
        fail_queue(s, expired[i], codes[i], whys[i]);
}

static void heartbeat_reply(marin__rconn *c, redisReply *reply, int rc, const char *err,
                            void *ud)
{
    (void)c;
    (void)err;
    marin__redis *s = ud;
    if (rc != MARIN_OK || reply->type != REDIS_REPLY_NIL || s->loop->stopped)
        return;
    char key[MARIN__RKEY_MAX], ttl[24];
    snprintf(key, sizeof key, "%sd:%s", s->prefix, s->driver_id);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.driver_ttl_ms);
    const char *a[] = {"SET", key, "1", "PX", ttl};
    marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 5, a, NULL);
    size_t n = marin__rdriver_resend_all(s);
    marin__log(s->rt, MARIN_LOG_WARN, "redis: driver %s was silent for more than "
               "driver_ttl_ms=%lld ms (its heartbeat key was gone); %zu outstanding task%s "
               "sent again", s->driver_id, (long long)s->cfg.driver_ttl_ms, n,
               n == 1 ? "" : "s");
}

void marin__rdriver_heartbeat(marin__redis *s)
{
    char key[MARIN__RKEY_MAX], hash[MARIN__RKEY_MAX], done[MARIN__RKEY_MAX], ttl[24],
        rttl[24], json[512], now[24];
    snprintf(key, sizeof key, "%sd:%s", s->prefix, s->driver_id);
    snprintf(hash, sizeof hash, "%sdrivers", s->prefix);
    snprintf(done, sizeof done, "%sdone:%s", s->prefix, s->driver_id);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.driver_ttl_ms);
    snprintf(rttl, sizeof rttl, "%lld", (long long)s->cfg.result_ttl_ms);
    snprintf(now, sizeof now, "%lld", (long long)marin__redis_wall_ms());
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    size_t running;
    pthread_mutex_lock(&s->mu);
    running = s->ntasks;
    pthread_mutex_unlock(&s->mu);
    snprintf(json, sizeof json, "{\"host\":\"%s\",\"pid\":%d,\"hb_ms\":%s,\"submitted\":%llu,"
             "\"succeeded\":%llu,\"failed\":%llu,\"outstanding\":%zu}", host, (int)getpid(),
             now, (unsigned long long)atomic_load(&s->submitted),
             (unsigned long long)atomic_load(&s->succeeded),
             (unsigned long long)atomic_load(&s->failed), running);
    /* XX: the key must still be there. When it is not, this driver was
     * silent past driver_ttl_ms (a long Redis outage) and a janitor may
     * have dropped its queued tasks and its done stream: say so and send
     * every outstanding task again. */
    const char *a[] = {"SET", key, now, "PX", ttl, "XX"};
    const char *b[] = {"HSET", hash, s->driver_id, json};
    const char *c[] = {"PEXPIRE", done, rttl};
    marin__rconn_cmd(s->cmd, 0, 0, heartbeat_reply, s, 6, a, NULL);
    marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 4, b, NULL);
    marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, c, NULL);
}

/* ---- the driver reaps too: with no live worker left, the entries of a
 * dead one would otherwise wait for a worker to come (tasks then fail after
 * grace_ms instead of hanging; actors of a dead host are restarted or
 * failed) ---- */

typedef struct dreap {
    marin__redis *s;
    char stream[MARIN__RKEY_MAX];
} dreap;

static void dreap_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    dreap *d = ud;
    marin__redis *s = d->s;
    if (rc == MARIN_OK && !s->loop->stopped)
        marin__redis_reclaim_dead(s, s->cmd, d->stream, reply, NULL, 0);
    marin__free(d);
}

static void driver_reap(marin__redis *s)
{
    pthread_mutex_lock(&s->mu);
    for (marin__rqueue *q = s->queues; q; q = q->next) {
        if (!q->pending)
            continue;
        dreap *d = marin__malloc(sizeof *d);
        if (!d)
            break;
        d->s = s;
        snprintf(d->stream, sizeof d->stream, "%s", q->key);
        const char *a[] = {"XINFO", "CONSUMERS", d->stream, MARIN__RGROUP_WORKERS};
        if (marin__rconn_cmd(s->cmd, 0, 0, dreap_reply, d, 4, a, NULL) != MARIN_OK)
            marin__free(d);
    }
    pthread_mutex_unlock(&s->mu);
    char ids[MARIN__RKEY_MAX], ttl[24];
    snprintf(ids, sizeof ids, "%sactor_ids", s->prefix);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.result_ttl_ms);
    const char *args[] = {ids, s->prefix, ttl, "200"};
    marin__redis_eval(s->cmd, 0, MARIN__RS_ACTOR_REAP, NULL, NULL, 1, 3, args, NULL);
}

void marin__rdriver_hb_fire(void *arg)
{
    marin__redis *s = arg;
    marin__timer_cancel(s->rt, s->loop->hb); /* disposes the fired timer */
    s->loop->hb = NULL;
    if (s->loop->stopped)
        return;
    marin__rdriver_heartbeat(s);
    int any = 0;
    pthread_mutex_lock(&s->mu);
    for (marin__rqueue *q = s->queues; q; q = q->next)
        any |= q->pending > 0;
    pthread_mutex_unlock(&s->mu);
    (void)any; /* the snapshot also keeps the workers' wake-up ids fresh */
    if (!s->loop->grace_inflight) {
        char hash[MARIN__RKEY_MAX];
        snprintf(hash, sizeof hash, "%sworkers", s->prefix);
        const char *args[] = {hash, s->prefix};
        if (marin__redis_eval(s->cmd, 0, MARIN__RS_LIVE, marin__rdriver_grace_reply, s, 1, 1, args, NULL) ==
            MARIN_OK)
            s->loop->grace_inflight = 1;
    }
    int64_t now = marin__redis_mono_ms();
    if (now - s->loop->last_reap >= s->cfg.reclaim_ms) {
        s->loop->last_reap = now;
        driver_reap(s);
    }
    /* The outcomes read must go on even when a read was lost. */
    marin__rdriver_read_done(s);
    marin__timer_start(s->rt, s->cfg.heartbeat_ms, marin__rdriver_hb_fire, s, NULL, &s->loop->hb);
}

