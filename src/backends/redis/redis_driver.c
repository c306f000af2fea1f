/* The driver side of the redis backend: tasks go out as stream entries
 * (XADD to their queue), outcomes come back on this driver's done stream
 * (one blocking XREAD at a time, on its own connection), retries and
 * timeouts are decided here by core (marin__task_attempt_end), and tasks no
 * live worker can run fail after grace_ms.
 *
 * Ownership: the table holds the backend's future reference of every
 * outstanding task; whoever takes a record out of the table releases it. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "fail.h"
#include "redis_internal.h"
#include "runtime_impl.h"
#include "redis_actor.h"


/* ---- the table (under s->mu) ---- */

static size_t bucket_of(const marin__redis *s, uint64_t seq)
{
    return (size_t)((seq * 0x9e3779b97f4a7c15ULL) >> 20) & (s->nbuckets - 1);
}

static int table_grow(marin__redis *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 1024;
    marin__rtask **b = marin__calloc(n, sizeof *b);
    if (!b)
        return MARIN_ENOMEM;
    marin__rtask **old = s->buckets;
    size_t oldn = s->nbuckets;
    s->buckets = b;
    s->nbuckets = n;
    for (size_t i = 0; i < oldn; i++)
        for (marin__rtask *r = old[i], *next; r; r = next) {
            next = r->next;
            size_t k = bucket_of(s, r->seq);
            r->next = b[k];
            b[k] = r;
        }
    marin__free(old);
    return MARIN_OK;
}

static int table_put(marin__redis *s, marin__rtask *r)
{
    if (s->ntasks + 1 > s->nbuckets && table_grow(s) != MARIN_OK)
        return MARIN_ENOMEM;
    size_t k = bucket_of(s, r->seq);
    r->next = s->buckets[k];
    s->buckets[k] = r;
    s->ntasks++;
    return MARIN_OK;
}

static marin__rtask *table_find(marin__redis *s, uint64_t seq)
{
    if (!s->nbuckets)
        return NULL;
    for (marin__rtask *r = s->buckets[bucket_of(s, seq)]; r; r = r->next)
        if (r->seq == seq)
            return r;
    return NULL;
}

marin__rtask *marin__rdriver_table_take(marin__redis *s, uint64_t seq)
{
    if (!s->nbuckets)
        return NULL;
    for (marin__rtask **p = &s->buckets[bucket_of(s, seq)]; *p; p = &(*p)->next)
        if ((*p)->seq == seq) {
            marin__rtask *r = *p;
            *p = r->next;
            s->ntasks--;
            if (r->q)
                r->q->pending--;
            return r;
        }
    return NULL;
}

/* ---- queues (under s->mu) ---- */

static marin__rqueue *queue_for(marin__redis *s, const struct marin__task *t)
{
    char shape[512], key[MARIN__RKEY_MAX];
    marin__redis_shape(&t->opts->res, shape, sizeof shape);
    snprintf(key, sizeof key, "%sq:%s:%s", s->prefix, t->name, shape);
    for (marin__rqueue *q = s->queues; q; q = q->next)
        if (strcmp(q->key, key) == 0)
            return q;
    marin__rqueue *q = marin__calloc(1, sizeof *q);
    if (!q || !(q->key = marin__strdup(key)) || !(q->task = marin__strdup(t->name)) ||
        marin__res_copy(&t->opts->res, &q->res) != MARIN_OK) {
        if (q) {
            marin__free(q->key);
            marin__free(q->task);
            marin__free(q);
        }
        return NULL;
    }
    q->next = s->queues;
    s->queues = q;
    return q;
}

/* ---- sending ---- */

typedef struct xadd_ud {
    marin__redis *s;
    uint64_t seq;
    int attempt;        /* a late reply must not touch a later attempt */
} xadd_ud;

static void xadd_done(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud);

/* Send @p r's entry (the record is in the table; its attempt begun). */
static int send_entry(marin__redis *s, uint64_t seq, const char *stream, int attempt,
                      const void *frame, size_t flen, int create_group, const char *qkey)
{
    char sseq[24], satt[16];
    snprintf(sseq, sizeof sseq, "%llu", (unsigned long long)seq);
    snprintf(satt, sizeof satt, "%d", attempt);
    int rc = MARIN_OK;
    if (create_group) {
        const char *g[] = {"XGROUP", "CREATE", qkey, MARIN__RGROUP_WORKERS, "0", "MKSTREAM"};
        char set[MARIN__RKEY_MAX];
        snprintf(set, sizeof set, "%squeues", s->prefix);
        const char *a[] = {"SADD", set, qkey};
        /* Idle workers wait on the wake stream: tell them there is a new
         * queue to look at. */
        char wake[MARIN__RKEY_MAX];
        snprintf(wake, sizeof wake, "%swake", s->prefix);
        const char *x[] = {"XADD", wake, "MAXLEN", "~", "100", "*", "q", qkey};
        if ((rc = marin__rconn_cmd(s->cmd, MARIN__RC_RETRY, 0, NULL, NULL, 6, g, NULL)) ||
            (rc = marin__rconn_cmd(s->cmd, MARIN__RC_RETRY, 0, NULL, NULL, 3, a, NULL)) ||
            (rc = marin__rconn_cmd(s->cmd, MARIN__RC_RETRY, 0, NULL, NULL, 8, x, NULL)))
            return rc;
    }
    const char *av[] = {"XADD", stream, "*", "d", s->driver_id, "s", sseq, "a", satt,
                        "f", frame};
    size_t al[] = {4, strlen(stream), 1, 1, strlen(s->driver_id), 1, strlen(sseq), 1,
                   strlen(satt), 1, flen};
    xadd_ud *x = marin__malloc(sizeof *x);
    if (!x)
        return marin__err(MARIN_ENOMEM, "out of memory queueing a task");
    x->s = s;
    x->seq = seq;
    x->attempt = attempt;
    rc = marin__rconn_cmd(s->cmd, MARIN__RC_RETRY, 0, xadd_done, x, 11, av, al);
    if (rc != MARIN_OK)
        marin__free(x);
    return rc;
}

/* Settle a record taken out of the table with a failure of our own. */
void marin__rdriver_fail_taken(marin__redis *s, marin__rtask *r, unsigned state, int code,
                       const char *msg)
{
    marin_future_t *f = marin__task_future(r->t);
    if (marin__future_finish(f, state, code, NULL, 0, msg))
        atomic_fetch_add(&s->failed, 1);
    atomic_store(&r->t->cancel, 1);
    marin__task_attempt_abandon(s->rt, r->t);
    marin_future_release(f);
    marin__free(r);
}

static void xadd_done(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    xadd_ud *x = ud;
    marin__redis *s = x->s;
    uint64_t seq = x->seq;
    int attempt = x->attempt;
    marin__free(x);
    if (rc == MARIN_OK && reply->type == REDIS_REPLY_STRING) {
        pthread_mutex_lock(&s->mu);
        marin__rtask *r = table_find(s, seq);
        if (r && r->attempt == attempt)
            snprintf(r->entry_id, sizeof r->entry_id, "%.*s", (int)reply->len, reply->str);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    char msg[1024];
    if (rc == MARIN_OK)
        snprintf(msg, sizeof msg, "Redis refused the task's entry: %.*s",
                 reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    else
        snprintf(msg, sizeof msg, "the task's entry could not be sent: %s", err);
    pthread_mutex_lock(&s->mu);
    marin__rtask *r = table_find(s, seq);
    if (r && r->attempt == attempt)
        r = marin__rdriver_table_take(s, seq);
    else
        r = NULL;
    pthread_mutex_unlock(&s->mu);
    if (r)
        marin__rdriver_fail_taken(s, r, MARIN_FUTURE_FAILED, rc == MARIN_OK ? MARIN_EUNAVAILABLE : rc, msg);
}

/* A new queue: workers blocked in a read learn of it now rather than at
 * their next heartbeat (CLIENT UNBLOCK makes their read return; they then
 * look at the queue set). */
static void wake_workers(marin__redis *s)
{
    long long ids[64];
    size_t n;
    pthread_mutex_lock(&s->mu);
    n = s->nwake;
    memcpy(ids, s->wake_ids, n * sizeof *ids);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%lld", ids[i]);
        const char *a[] = {"CLIENT", "UNBLOCK", id};
        marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, a, NULL);
    }
}

/* Start an attempt of @p t and queue it. The backend's reference moves to
 * the table (or is released when the task had been settled). */
static int launch(marin__redis *s, struct marin__task *t, const char *stream, const void *frame,
                  size_t flen, int is_call)
{
    marin_future_t *f = marin__task_future(t);
    marin__rtask *r = marin__calloc(1, sizeof *r);
    if (!r)
        return marin__err(MARIN_ENOMEM, "out of memory queueing task '%s'", t->name);
    if (marin__task_attempt_begin(s->rt, t)) {
        marin__free(r);
        marin_future_release(f);
        return MARIN_OK;
    }
    r->seq = t->seq;
    r->t = t;
    r->attempt = t->attempt;
    r->is_call = is_call;
    int create = 0;
    char qkey[MARIN__RKEY_MAX];
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        marin__rdriver_fail_taken(s, r, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED,
                   "cancelled: the runtime closed before the task was queued");
        return MARIN_OK;
    }
    if (!stream) {
        marin__rqueue *q = queue_for(s, t);
        if (!q) { /* its attempt began (a timeout may be armed): settle it */
            pthread_mutex_unlock(&s->mu);
            marin__rdriver_fail_taken(s, r, MARIN_FUTURE_FAILED, MARIN_ENOMEM,
                                      "out of memory queueing the task");
            return MARIN_OK;
        }
        r->q = q;
        q->pending++;
        create = !q->created;
        q->created = 1;
        stream = q->key;
    }
    snprintf(r->stream, sizeof r->stream, "%s", stream);
    snprintf(qkey, sizeof qkey, "%s", stream);
    if (table_put(s, r) != MARIN_OK) {
        if (r->q)
            r->q->pending--;
        pthread_mutex_unlock(&s->mu);
        marin__rdriver_fail_taken(s, r, MARIN_FUTURE_FAILED, MARIN_ENOMEM,
                                  "out of memory queueing the task");
        return MARIN_OK;
    }
    int attempt = r->attempt;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->submitted, 1);
    int rc = send_entry(s, t->seq, qkey, attempt, frame, flen, create, qkey);
    if (rc == MARIN_OK && create)
        wake_workers(s);
    if (rc != MARIN_OK) {
        pthread_mutex_lock(&s->mu);
        marin__rtask *taken = marin__rdriver_table_take(s, t->seq);
        pthread_mutex_unlock(&s->mu);
        if (taken)
            marin__rdriver_fail_taken(s, taken, MARIN_FUTURE_FAILED, rc, marin__err_msg());
    }
    return MARIN_OK;
}

int marin__rdriver_submit_to(marin__redis *s, struct marin__task *t, const char *stream,
                             const void *frame, size_t flen, int is_call)
{
    return launch(s, t, stream, frame, flen, is_call);
}

int marin__rdriver_submit(void *state, struct marin__task *t)
{
    marin__redis *s = state;
    void *frame = NULL;
    size_t flen = 0;
    int rc = marin__rtask_encode(s->rt, t, s->cfg.max_payload, &frame, &flen);
    if (rc != MARIN_OK)
        return rc;
    rc = launch(s, t, NULL, frame, flen, 0);
    marin__free(frame);
    return rc;
}

/* A retry: the task is PENDING again and out of the table. */
static void requeue(marin__redis *s, struct marin__task *t, int is_call, const char *stream)
{
    void *frame = NULL;
    size_t flen = 0;
    int rc = marin__rtask_encode(s->rt, t, s->cfg.max_payload, &frame, &flen);
    if (rc == MARIN_OK)
        rc = launch(s, t, is_call ? stream : NULL, frame, flen, is_call);
    marin__free(frame);
    if (rc != MARIN_OK) {
        marin__task_retry_refused(t, rc);
        marin_future_release(marin__task_future(t));
    }
}

int marin__rdriver_cancel(void *state, struct marin__task *t)
{
    marin__redis *s = state;
    pthread_mutex_lock(&s->mu);
    marin__rtask *r = table_find(s, t->seq);
    if (r && r->t == t)
        r = marin__rdriver_table_take(s, t->seq);
    else
        r = NULL;
    pthread_mutex_unlock(&s->mu);
    if (!r)
        return MARIN_OK;
    char key[MARIN__RKEY_MAX], ttl[24];
    snprintf(key, sizeof key, "%scancel:%s:%llu", s->prefix, s->driver_id,
             (unsigned long long)r->seq);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.result_ttl_ms);
    const char *set[] = {"SET", key, "1", "PX", ttl};
    marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 5, set, NULL);
    if (r->entry_id[0] && !r->is_call) {
        const char *del[] = {"XDEL", r->stream, r->entry_id};
        marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, del, NULL);
    }
    marin__task_attempt_abandon(s->rt, r->t);
    marin_future_release(marin__task_future(r->t));
    marin__free(r);
    return MARIN_OK;
}

/* ---- outcomes ---- */

static void handle_outcome(marin__redis *s, const redisReply *fields)
{
    const redisReply *fs = marin__redis_field(fields, "s"), *fa = marin__redis_field(fields, "a"),
                     *fc = marin__redis_field(fields, "c"), *ff = marin__redis_field(fields, "f"),
                     *fm = marin__redis_field(fields, "m"), *fw = marin__redis_field(fields, "w");
    if (!fs || !fa || !fc || (!ff && !fm)) {
        marin__log(s->rt, MARIN_LOG_WARN, "redis: an entry of done:%s lacks its fields; "
                   "ignored", s->driver_id);
        return;
    }
    uint64_t seq = (uint64_t)marin__reply_i64(fs);
    int attempt = (int)marin__reply_i64(fa);
    int code = (int)marin__reply_i64(fc);
    pthread_mutex_lock(&s->mu);
    marin__rtask *r = table_find(s, seq);
    if (!r || r->attempt != attempt) {
        pthread_mutex_unlock(&s->mu); /* stale: a reclaimed or cancelled attempt */
        return;
    }
    marin__rdriver_table_take(s, seq);
    pthread_mutex_unlock(&s->mu);

    void *payload = NULL;
    const void *data = NULL;
    size_t dlen = 0;
    int died = 0;
    char why[16384];
    why[0] = 0;
    if (ff) {
        int rc = marin__rresult_decode(ff->str, ff->len, s->cfg.max_payload, &payload, &data,
                                       &dlen, &died);
        if (rc != MARIN_OK) {
            code = rc;
            snprintf(why, sizeof why, "the worker's result could not be read: %s",
                     marin__err_msg());
        }
    } else {
        snprintf(why, sizeof why, "%.*s", (int)fm->len, fm->str);
    }
    void *result = NULL;
    size_t rlen = 0;
    if (code == MARIN_OK) {
        if (dlen && !(result = marin__memdup(data, dlen))) {
            code = MARIN_ENOMEM;
            snprintf(why, sizeof why, "out of memory taking the result");
        }
        rlen = dlen;
    } else if (ff && !why[0]) {
        snprintf(why, sizeof why, "%.*s", (int)(dlen < sizeof why - 1 ? dlen : sizeof why - 1),
                 (const char *)data);
    }
    marin__free(payload);
    if (code == MARIN_EWORKER && fw && !ff && !why[0])
        snprintf(why, sizeof why, "worker %.*s died", (int)fw->len, fw->str);
    struct marin__task *t = r->t;
    int is_call = r->is_call;
    char stream[MARIN__RKEY_MAX];
    snprintf(stream, sizeof stream, "%s", r->stream);
    marin__free(r);
    /* A frame no worker could read, or a result over the cap, fails the
     * same way every time: final, not retried. */
    int final = is_call;
    if (!is_call && (code == MARIN_EPROTO || code == MARIN_ETOOBIG)) {
        char id[64], full[16384];
        marin__task_format_id(s->rt, t, id, sizeof id);
        snprintf(full, sizeof full, "task '%s' (%s) failed on attempt %d (not retried): %s: %s",
                 t->opts && t->opts->label ? t->opts->label : t->name, id, attempt,
                 marin_strerror(code), why[0] ? why : marin_strerror(code));
        snprintf(why, sizeof why, "%s", full);
        final = 1;
    }
    if (died == 2) {
        /* The actor is dead: later calls are refused at once (as on local);
         * a creation that failed so is final. */
        if (is_call)
            marin__ractors_note_dead(s, stream, why);
        final = 1;
        died = 0;
    }
    int settled = marin__task_attempt_end(s->rt, t, attempt, code, result, rlen,
                                          why[0] ? why : NULL, died, final);
    if (settled) {
        if (code == MARIN_OK)
            atomic_fetch_add(&s->succeeded, 1);
        else
            atomic_fetch_add(&s->failed, 1);
        marin_future_release(marin__task_future(t));
    } else {
        requeue(s, t, is_call, stream);
    }
}

void marin__rdriver_read_done(marin__redis *s);

static void retry_fire(void *arg)
{
    marin__redis *s = arg;
    marin__timer_cancel(s->rt, s->loop->retry); /* disposes the fired timer */
    s->loop->retry = NULL;
    marin__rdriver_read_done(s);
}

static void read_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    marin__redis *s = ud;
    s->reading = 0;
    if (s->loop->stopped)
        return;
    if (rc != MARIN_OK || reply->type == REDIS_REPLY_ERROR) {
        if (rc == MARIN_ECANCELED)
            return;
        marin__log(s->rt, MARIN_LOG_DEBUG, "redis: reading done:%s failed (%s); retrying",
                   s->driver_id, rc == MARIN_OK ? reply->str : err);
        if (!s->loop->retry)
            marin__timer_start(s->rt, s->cfg.conn.backoff_min_ms, retry_fire, s, NULL,
                               &s->loop->retry);
        return;
    }
    /* [[stream, [[id, [f, v, ...]], ...]]] or nil on timeout */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        const redisReply *st = reply->element[0];
        const redisReply *entries = st->type == REDIS_REPLY_ARRAY && st->elements == 2
                                        ? st->element[1]
                                        : NULL;
        if (entries && entries->type == REDIS_REPLY_ARRAY && entries->elements) {
            const char *dav[1024 + 2];
            size_t dal[1024 + 2];
            size_t nd = 0;
            char key[MARIN__RKEY_MAX];
            snprintf(key, sizeof key, "%sdone:%s", s->prefix, s->driver_id);
            dav[nd] = "XDEL";
            dal[nd++] = 4;
            dav[nd] = key;
            dal[nd++] = strlen(key);
            for (size_t i = 0; i < entries->elements; i++) {
                const redisReply *e = entries->element[i];
                if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                    e->element[0]->type != REDIS_REPLY_STRING)
                    continue;
                snprintf(s->last_done, sizeof s->last_done, "%.*s", (int)e->element[0]->len,
                         e->element[0]->str);
                handle_outcome(s, e->element[1]);
                if (nd < sizeof dav / sizeof *dav) {
                    dav[nd] = e->element[0]->str;
                    dal[nd++] = e->element[0]->len;
                }
            }
            if (nd > 2)
                marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, (int)nd, dav, dal);
        }
    }
    marin__rdriver_read_done(s);
}

void marin__rdriver_read_done(marin__redis *s)
{
    if (s->loop->stopped || s->reading)
        return;
    char key[MARIN__RKEY_MAX], block[24];
    snprintf(key, sizeof key, "%sdone:%s", s->prefix, s->driver_id);
    snprintf(block, sizeof block, "%lld", (long long)s->cfg.block_ms);
    const char *av[] = {"XREAD", "COUNT", "1024", "BLOCK", block, "STREAMS", key,
                        s->last_done};
    s->reading = 1;
    if (marin__rconn_cmd(s->done, MARIN__RC_BLOCKING, s->cfg.block_ms, read_reply, s, 8, av,
                         NULL) != MARIN_OK) {
        s->reading = 0;
        if (!s->loop->retry)
            marin__timer_start(s->rt, s->cfg.conn.backoff_min_ms, retry_fire, s, NULL,
                               &s->loop->retry);
    }
}

static void start_job(marin__job *job)
{
    struct marin__rdriver_loop *l = (struct marin__rdriver_loop *)((char *)job -
                                    offsetof(struct marin__rdriver_loop, start_job));
    marin__redis *s = l->s;
    marin__rdriver_read_done(s);
    marin__timer_start(s->rt, s->cfg.heartbeat_ms, marin__rdriver_hb_fire, s, NULL, &l->hb);
}

int marin__rdriver_start(marin__redis *s)
{
    struct marin__rdriver_loop *l = marin__calloc(1, sizeof *l);
    if (!l)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->s = s;
    s->loop = l;
    snprintf(s->last_done, sizeof s->last_done, "0-0");
    /* The heartbeat goes out before the first task, so workers know we live. */
    char key[MARIN__RKEY_MAX], ttl[24];
    snprintf(key, sizeof key, "%sd:%s", s->prefix, s->driver_id);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.driver_ttl_ms);
    const char *a[] = {"SET", key, "1", "PX", ttl};
    redisReply *r = NULL;
    int rc = marin__rconn_call(s->cmd, 0, &r, 5, a, NULL);
    if (rc != MARIN_OK)
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = marin__err(MARIN_EUNAVAILABLE, "marin_runtime_open: Redis at %s refused a "
                        "write: %s", marin__rconn_addr(s->cmd), r->str);
        freeReplyObject(r);
        return rc;
    }
    freeReplyObject(r);
    marin__rdriver_heartbeat(s);
    /* Know the live workers' read clients before the first new queue. */
    char hash[MARIN__RKEY_MAX];
    snprintf(hash, sizeof hash, "%sworkers", s->prefix);
    const char *args[] = {hash, s->prefix};
    if (marin__redis_eval_sync(s->cmd, MARIN__RS_LIVE, &r, 1, 1, args, NULL) == MARIN_OK) {
        marin__rdriver_grace_reply(s->cmd, r, MARIN_OK, NULL, s);
        freeReplyObject(r);
    }
    l->start_job.run = start_job;
    if (marin__reactor_post(s->rt, &l->start_job) != MARIN_OK)
        return marin__err(MARIN_ESTATE, "marin_runtime_open: the reactor stopped");
    return MARIN_OK;
}

static void stop_job(marin__job *job)
{
    struct marin__rdriver_loop *l = (struct marin__rdriver_loop *)((char *)job -
                                    offsetof(struct marin__rdriver_loop, stop_job));
    l->stopped = 1;
    if (l->hb)
        marin__timer_cancel(l->s->rt, l->hb);
    if (l->retry)
        marin__timer_cancel(l->s->rt, l->retry);
    l->hb = l->retry = NULL;
    pthread_mutex_lock(&l->mu);
    l->stop_done = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void marin__rdriver_stop(marin__redis *s)
{
    struct marin__rdriver_loop *l = s->loop;
    if (!l)
        return;
    /* Timers and reads stop first (on the reactor), then what is left of
     * our work ends as cancelled. */
    l->stop_job.run = stop_job;
    if (marin__reactor_post(s->rt, &l->stop_job) == MARIN_OK) {
        pthread_mutex_lock(&l->mu);
        while (!l->stop_done)
            pthread_cond_wait(&l->cv, &l->mu);
        pthread_mutex_unlock(&l->mu);
    }
    for (;;) {
        marin__rtask *r = NULL;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->nbuckets && !r; i++)
            if (s->buckets[i])
                r = marin__rdriver_table_take(s, s->buckets[i]->seq);
        pthread_mutex_unlock(&s->mu);
        if (!r)
            break;
        char key[MARIN__RKEY_MAX];
        snprintf(key, sizeof key, "%scancel:%s:%llu", s->prefix, s->driver_id,
                 (unsigned long long)r->seq);
        const char *set[] = {"SET", key, "1", "PX", "600000"};
        marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 5, set, NULL);
        if (r->entry_id[0] && !r->is_call) {
            const char *del[] = {"XDEL", r->stream, r->entry_id};
            marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, del, NULL);
        }
        marin__rdriver_fail_taken(s, r, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED,
                   "cancelled: the runtime closed before the task finished");
    }
    char key[MARIN__RKEY_MAX], hash[MARIN__RKEY_MAX], done[MARIN__RKEY_MAX];
    snprintf(key, sizeof key, "%sd:%s", s->prefix, s->driver_id);
    snprintf(hash, sizeof hash, "%sdrivers", s->prefix);
    snprintf(done, sizeof done, "%sdone:%s", s->prefix, s->driver_id);
    const char *a[] = {"DEL", key, done};
    const char *b[] = {"HDEL", hash, s->driver_id};
    redisReply *r = NULL;
    marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, b, NULL);
    if (marin__rconn_call(s->cmd, 0, &r, 3, a, NULL) == MARIN_OK)
        freeReplyObject(r);
}

void marin__rdriver_free(marin__redis *s)
{
    for (marin__rqueue *q = s->queues, *next; q; q = next) {
        next = q->next;
        marin__free(q->key);
        marin__free(q->task);
        marin_resources_destroy(q->res);
        marin__free(q);
    }
    s->queues = NULL;
    marin__free(s->buckets);
    s->buckets = NULL;
    if (s->loop) {
        pthread_mutex_destroy(&s->loop->mu);
        pthread_cond_destroy(&s->loop->cv);
        marin__free(s->loop);
        s->loop = NULL;
    }
}

size_t marin__rdriver_resend_all(marin__redis *s)
{
    /* The records stay in the table (same attempt): whichever copy's
     * outcome comes first settles the task, the other is stale. Frames are
     * made under the lock, sent after it (a send may answer at once). */
    typedef struct resend {
        struct resend *next;
        uint64_t seq;
        int attempt, queue;
        char stream[MARIN__RKEY_MAX];
        void *frame;
        size_t flen;
    } resend;
    resend *list = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nbuckets; i++)
        for (marin__rtask *r = s->buckets[i]; r; r = r->next) {
            resend *x = marin__calloc(1, sizeof *x);
            if (!x)
                break;
            if (marin__rtask_encode(s->rt, r->t, s->cfg.max_payload, &x->frame, &x->flen) !=
                MARIN_OK) {
                marin__free(x);
                continue;
            }
            x->seq = r->seq;
            x->attempt = r->attempt;
            x->queue = r->q != NULL;
            snprintf(x->stream, sizeof x->stream, "%s", r->stream);
            x->next = list;
            list = x;
        }
    pthread_mutex_unlock(&s->mu);
    size_t n = 0;
    while (list) {
        resend *next = list->next;
        if (send_entry(s, list->seq, list->stream, list->attempt, list->frame, list->flen,
                       list->queue, list->stream) == MARIN_OK)
            n++;
        marin__free(list->frame);
        marin__free(list);
        list = next;
    }
    return n;
}
