/* Actors on the redis backend, the host's side: a worker that takes an
 * actor's creation entry runs its constructor (or restores its last
 * checkpoint), holds its resources for life, reads its call stream with the
 * task queues and runs the calls in order on the actor's own threads
 * (max_concurrency of them). Checkpoints go to the actor's hash before the
 * Nth call is acknowledged. A crash in a method (marin_test_kill_worker)
 * fails that call with MARIN_EWORKER and restarts the instance here from
 * the last checkpoint, within max_restarts. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "redis_actor_host.h"

int marin__rhost_is_creation(const char *task_name)
{
    return strncmp(task_name, "@actor:", 7) == 0;
}

int marin__rhost_runnable(const char *task_name)
{
    return marin__rhost_is_creation(task_name) &&
           marin__registry_find_actor_class(task_name + 7) != NULL;
}

void marin__rhost_create(marin__rworker *w, marin__wtask *wt)
{
    char why[8192];
    marin__rhosted *h = marin__calloc(1, sizeof *h);
    if (!h) {
        marin__rh_set_outcome(wt, MARIN_ENOMEM, "out of memory hosting an actor");
        return;
    }
    h->w = w;
    snprintf(h->id, sizeof h->id, "%.*s", (int)wt->msg.arg_len, (const char *)wt->msg.arg);
    snprintf(h->key, sizeof h->key, "%sactor:%s", w->s->prefix, h->id);
    snprintf(h->stream, sizeof h->stream, "%sac:%s", w->s->prefix, h->id);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    pthread_mutex_init(&h->hook_mu, NULL);
    h->cls = marin__registry_find_actor_class(wt->msg.name + 7);
    const char *av[] = {"HMGET", h->key, "state", "name", "max_restarts", "max_concurrency",
                        "checkpoint_every", "restarts"};
    redisReply *r = marin__rh_cmd(w, 8, av, NULL);
    int rc = MARIN_OK;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 6) {
        rc = MARIN_EUNAVAILABLE;
        snprintf(why, sizeof why, "actor %s: its record could not be read", h->id);
    } else if (r->element[0]->type != REDIS_REPLY_STRING ||
               strcmp(r->element[0]->str, "dead") == 0) {
        rc = MARIN_ECANCELED;
        snprintf(why, sizeof why, "cancelled: actor %s was killed before it started", h->id);
    } else if (!h->cls) {
        rc = MARIN_ENOTFOUND;
        snprintf(why, sizeof why, "no actor class '%s' in worker %s", wt->msg.name + 7, w->id);
    } else {
        if (r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(h->name, sizeof h->name, "%s", r->element[1]->str);
        h->max_restarts = (int)marin__reply_i64(r->element[2]);
        h->max_concurrency = (int)marin__reply_i64(r->element[3]);
        h->checkpoint_every = marin__reply_i64(r->element[4]);
        h->restarts = (int)marin__reply_i64(r->element[5]);
        if (h->max_concurrency < 1)
            h->max_concurrency = 1;
        if (h->max_concurrency > HOST_THREADS_MAX)
            h->max_concurrency = HOST_THREADS_MAX;
    }
    if (r)
        freeReplyObject(r);
    if (rc == MARIN_OK) {
        memcpy(h->gpu_ids, wt->gpu_ids, wt->ngpus * sizeof *h->gpu_ids);
        memcpy(h->gpu_slot, wt->gpu_slot, wt->ngpus * sizeof *h->gpu_slot);
        h->ngpus = wt->ngpus;
        char detail[4096];
        if ((rc = marin__rh_instance_start(h, detail, sizeof detail)) != MARIN_OK) {
            char reason[4600];
            snprintf(reason, sizeof reason, "actor %s (class '%s') could not be created: %s",
                     marin__rh_shown(h), h->cls->name, detail);
            snprintf(why, sizeof why, "%s", reason);
            if (rc != MARIN_EUNAVAILABLE) {
                /* The constructor's failure is the creation's outcome: final
                 * (not retried), and the actor is dead for its callers. */
                marin__rh_die(h, rc, reason);
                wt->actor_dead = 1;
            }
        }
    }
    if (rc == MARIN_OK && marin__res_copy(wt->msg.res, &h->res) != MARIN_OK) {
        rc = MARIN_ENOMEM;
        snprintf(why, sizeof why, "out of memory hosting actor %s", h->id);
    }
    if (rc != MARIN_OK) {
        if (h->self && h->cls && h->cls->fini)
            h->cls->fini(h->self);
        marin__rh_set_outcome(wt, rc, why);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->hook_mu);
        marin__free(h);
        return;
    }
    /* Killed while its constructor ran? */
    const char *sv[] = {"HGET", h->key, "state"};
    redisReply *sr = marin__rh_cmd(w, 3, sv, NULL);
    int killed = sr && sr->type == REDIS_REPLY_STRING && strcmp(sr->str, "dead") == 0;
    if (sr)
        freeReplyObject(sr);
    if (killed) {
        if (h->self && h->cls->fini)
            h->cls->fini(h->self);
        marin_resources_destroy(h->res);
        snprintf(why, sizeof why, "cancelled: actor %s (class '%s') was killed while it was "
                 "being created", marin__rh_shown(h), h->cls->name);
        marin__rh_set_outcome(wt, MARIN_ECANCELED, why);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->hook_mu);
        marin__free(h);
        return;
    }
    marin__rh_hset(w, h->key, "host", w->id, strlen(w->id));
    marin__rh_hset(w, h->key, "state", "alive", 5);
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->max_concurrency; i++)
        if (pthread_create(&h->threads[h->nthreads], NULL, marin__rh_actor_thread, h) == 0) {
            h->nthreads++;
            h->live++;
        }
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_lock(&w->mu);
    h->next = w->hosted;
    w->hosted = h;
    pthread_mutex_unlock(&w->mu);
    wt->keep_res = 1; /* held for the actor's life */
    marin__rh_set_outcome(wt, MARIN_OK, NULL);
    marin__log(w->rt, MARIN_LOG_INFO, "worker %s: hosting actor %s (class '%s')%s", w->id,
               marin__rh_shown(h), h->cls->name, h->restarts ? " after a restart" : "");
    marin__rworker_kick(w); /* read its call stream too */
}

/* Under w->mu: ask @p h's running calls to stop. */
static void cancel_running_locked(marin__rworker *w, marin__rhosted *h)
{
    for (marin__wtask *r = w->running; r; r = r->next)
        if (r->stream && strcmp(r->stream, h->stream) == 0) {
            r->cancel_seen = 1;
            if (r->t)
                atomic_store(&r->t->cancel, 1);
        }
}

/* Under w->mu (so no sweeper frees @p h meanwhile): end @p h on this host
 * (killed). Queued calls get ECANCELED (returned, to be answered once no
 * lock is held); running ones are asked to stop and end ECANCELED when
 * they return. */
static marin__wtask *end_here_locked(marin__rworker *w, marin__rhosted *h)
{
    pthread_mutex_lock(&h->mu);
    h->killed = 1;
    h->dead = 1;
    marin__wtask *list = marin__rh_fail_mailbox_locked(h, MARIN_ECANCELED, "cancelled: ",
                                                       "the actor was killed");
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    cancel_running_locked(w, h);
    return list;
}

/* Under w->mu: its threads stop; they are joined, fini runs and its
 * resources come back on a sweeper thread. */
static void stop_here_locked(marin__rhosted *h)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Reactor, under w->mu: a kill does not wait in line. Running calls are
 * asked to stop and end ECANCELED, queued ones too; without restart the
 * actor leaves this host. Answers to give go on *answers. Returns 1 when a
 * sweeper must run. */
static int kill_locked(marin__rworker *w, marin__rhosted *h, marin__wtask *wt,
                       marin__wtask **answers)
{
    int no_restart = wt->msg.arg_len == 1 && ((const char *)wt->msg.arg)[0] == '1';
    char why[512];
    wt->next = NULL;
    pthread_mutex_lock(&h->mu);
    if (h->killed || h->dead || h->stop) {
        pthread_mutex_unlock(&h->mu);
        snprintf(why, sizeof why, "marin_actor_kill: actor %s is already gone", h->id);
        marin__rh_set_outcome(wt, MARIN_ESTATE, why);
        *answers = wt;
        return 0;
    }
    if (!no_restart && h->max_restarts >= 0 && h->restarts >= h->max_restarts)
        no_restart = 1; /* no restarts left: the kill ends it */
    if (!no_restart) {
        /* Running and queued calls end ECANCELED; the instance is rebuilt
         * (counted as a restart) once the running ones return. The record
         * says "restarting" before the kill is answered (same connection,
         * in order), so a ready() after the kill waits for the rebuild. */
        h->killed = 1;
        h->restarting = 1;
        const char *rs[] = {"HSET", h->key, "state", "restarting"};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 4, rs, NULL);
        marin__wtask *list = marin__rh_fail_mailbox_locked(h, MARIN_ECANCELED, "cancelled: ",
                                                           "the actor was killed");
        pthread_mutex_unlock(&h->mu);
        cancel_running_locked(w, h);
        w->sweepers++;
        pthread_t th;
        if (pthread_create(&th, NULL, marin__rh_kill_restart_main, h) == 0)
            pthread_detach(th);
        else
            w->sweepers--;
        marin__rh_set_outcome(wt, MARIN_OK, NULL);
        wt->next = list;
        *answers = wt;
        return 0;
    }
    pthread_mutex_unlock(&h->mu);
    marin__wtask *list = end_here_locked(w, h);
    snprintf(why, sizeof why, "actor %s (class '%s') was killed", marin__rh_shown(h),
             h->cls->name);
    const char *av[] = {"HSET", h->key, "state", "dead", "code", "-5", "error", why};
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 8, av, NULL);
    if (h->name[0]) {
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", w->s->prefix);
        const char *d[] = {"HDEL", names, h->name};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, d, NULL);
    }
    marin__rh_set_outcome(wt, MARIN_OK, NULL);
    wt->actor_dead = 1; /* the killer's driver refuses later calls at once */
    wt->next = list;
    *answers = wt;
    stop_here_locked(h);
    return 1;
}

int marin__rhost_take_call(marin__rworker *w, const char *stream, marin__wtask *wt)
{
    marin__wtask *answers = NULL;
    int sweep = 0, taken = 1;
    pthread_mutex_lock(&w->mu);
    marin__rhosted *h = w->hosted;
    while (h && strcmp(h->stream, stream) != 0)
        h = h->next;
    if (h && strcmp(wt->msg.name, "@kill") == 0) {
        sweep = kill_locked(w, h, wt, &answers);
    } else if (h) {
        pthread_mutex_lock(&h->mu);
        if (h->stop) { /* leaving this host: answer rather than drop */
            char why[512];
            snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') failed: the actor "
                     "is no longer hosted", wt->msg.name, marin__rh_shown(h), h->cls->name);
            wt->actor_dead = h->dead;
            marin__rh_set_outcome(wt, h->killed ? MARIN_ECANCELED : MARIN_EWORKER, why);
            answers = wt;
        } else {
            wt->next = NULL;
            if (h->tail)
                h->tail->next = wt;
            else
                h->head = wt;
            h->tail = wt;
            pthread_cond_signal(&h->cv);
        }
        pthread_mutex_unlock(&h->mu);
    } else if (strcmp(wt->msg.name, "@kill") == 0) {
        marin__rh_set_outcome(wt, MARIN_ESTATE, "marin_actor_kill: the actor is already gone");
        answers = wt;
    } else {
        /* An actor that died here: its calls end with its reason. */
        taken = 0;
        for (size_t i = 0; i < MARIN__RWORKER_TOMBS; i++) {
            marin__rtomb *t = &w->tombs[i];
            if (t->stream[0] && strcmp(t->stream, stream) == 0) {
                char why[1200];
                snprintf(why, sizeof why, "call '%s' failed: %s", wt->msg.name, t->why);
                wt->actor_dead = 1;
                marin__rh_set_outcome(wt, t->code, why);
                answers = wt;
                taken = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&w->mu);
    marin__rh_finish_list(w, answers);
    if (sweep)
        marin__rh_start_sweep(w);
    return taken;
}

size_t marin__rhost_streams(marin__rworker *w, const char **av, size_t max)
{
    size_t n = 0;
    for (marin__rhosted *h = w->hosted; h && n < max; h = h->next)
        if (!h->stop)
            av[n++] = h->stream;
    return n;
}

/* Free a stopped actor: join its threads, run fini, give back its
 * resources. */
static void host_free(marin__rworker *w, marin__rhosted *h)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    for (size_t i = 0; i < h->nthreads; i++)
        pthread_join(h->threads[i], NULL);
    while (h->head) {
        marin__wtask *wt = h->head;
        h->head = wt->next;
        marin__rworker_drop(w, wt);
    }
    if (h->self && h->cls->fini)
        h->cls->fini(h->self);
    pthread_mutex_lock(&w->mu);
    marin__rworker_release_res(w, h->res, h->gpu_slot, h->ngpus);
    if (h->dead) {
        marin__rtomb *t = &w->tombs[w->ntombs++ % MARIN__RWORKER_TOMBS];
        snprintf(t->stream, sizeof t->stream, "%s", h->stream);
        t->code = h->killed ? MARIN_ECANCELED : h->dead_code ? h->dead_code : MARIN_EWORKER;
        snprintf(t->why, sizeof t->why, "%.1000s", h->dead_why[0] ? h->dead_why
                                                             : "the actor was killed");
    }
    pthread_mutex_unlock(&w->mu);
    marin_resources_destroy(h->res);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->hook_mu);
    marin__free(h);
}

void marin__rhost_sweep(marin__rworker *w)
{
    /* Killed actors (dead and stopped) leave the host. */
    for (;;) {
        marin__rhosted *gone = NULL;
        pthread_mutex_lock(&w->mu);
        for (marin__rhosted **p = &w->hosted; *p; p = &(*p)->next)
            if ((*p)->stop) {
                gone = *p;
                *p = gone->next;
                break;
            }
        pthread_mutex_unlock(&w->mu);
        if (!gone)
            return;
        host_free(w, gone);
    }
}

void marin__rhost_stop_all(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    marin__rhosted *list = w->hosted;
    w->hosted = NULL;
    /* Calls still running are asked to stop (the worker is going away). */
    for (marin__wtask *r = w->running; r; r = r->next) {
        r->cancel_seen = 1;
        if (r->t)
            atomic_store(&r->t->cancel, 1);
    }
    pthread_mutex_unlock(&w->mu);
    for (marin__rhosted *h = list; h; h = h->next) {
        pthread_mutex_lock(&h->hook_mu);
        if (h->hook_running)
            marin__future_finish(h->hook_running, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL,
                                 0, "cancelled: the worker is stopping");
        pthread_mutex_unlock(&h->hook_mu);
    }
    while (list) {
        marin__rhosted *next = list->next;
        host_free(w, list);
        list = next;
    }
}

/* ---- the reaper: actors whose host died ---- */

static void reap_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    marin__rworker *w = ud;
    if (rc == MARIN_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        marin__log(w->rt, MARIN_LOG_INFO, "worker %s: %lld actor%s of dead hosts handled "
                   "(restarted or failed)", w->id, (long long)reply->integer,
                   reply->integer == 1 ? "" : "s");
}

void marin__rhost_reap(marin__rworker *w)
{
    char ids[MARIN__RKEY_MAX], ttl[24];
    snprintf(ids, sizeof ids, "%sactor_ids", w->s->prefix);
    snprintf(ttl, sizeof ttl, "%lld", (long long)w->s->cfg.result_ttl_ms);
    const char *args[] = {ids, w->s->prefix, ttl, "200"};
    marin__redis_eval(w->cmd, 0, MARIN__RS_ACTOR_REAP, reap_reply, w, 1, 3, args, NULL);
}

void marin__rhost_each_queued(marin__rworker *w, void (*fn)(marin__wtask *wt, void *ud),
                              void *ud)
{
    /* w->mu is held by the caller: the hosted list is stable. */
    for (marin__rhosted *h = w->hosted; h; h = h->next) {
        pthread_mutex_lock(&h->mu);
        for (marin__wtask *wt = h->head; wt; wt = wt->next)
            fn(wt, ud);
        pthread_mutex_unlock(&h->mu);
    }
}

/* ---- the record says dead (its creator closed, a kill by state) ---- */

typedef struct state_check {
    marin__rworker *w;
    char stream[MARIN__RKEY_MAX];
} state_check;

static void state_reply(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    state_check *sc = ud;
    marin__rworker *w = sc->w;
    /* [state, host]: dead, gone, or hosted by another worker now (this one
     * stalled past its TTL and the actor was restarted elsewhere). */
    int dead = 0, moved = 0;
    if (rc == MARIN_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        const redisReply *st = reply->element[0], *host = reply->element[1];
        dead = st->type == REDIS_REPLY_NIL ||
               (st->type == REDIS_REPLY_STRING && strcmp(st->str, "dead") == 0);
        moved = !dead && host->type == REDIS_REPLY_STRING && host->len &&
                strcmp(host->str, w->id) != 0;
    }
    marin__wtask *answers = NULL;
    int sweep = 0;
    if (dead || moved) {
        pthread_mutex_lock(&w->mu);
        marin__rhosted *h = w->hosted;
        while (h && strcmp(h->stream, sc->stream) != 0)
            h = h->next;
        if (h) {
            pthread_mutex_lock(&h->mu);
            int already = h->dead || h->stop;
            pthread_mutex_unlock(&h->mu);
            if (!already) {
                marin__log(w->rt, MARIN_LOG_INFO, "worker %s: actor %s %s; it leaves this "
                           "host", w->id, marin__rh_shown(h),
                           dead ? "is dead by its record" : "is hosted by another worker now");
                answers = end_here_locked(w, h);
                stop_here_locked(h);
                sweep = 1;
            }
        }
        pthread_mutex_unlock(&w->mu);
    }
    marin__rh_finish_list(w, answers);
    if (sweep)
        marin__rh_start_sweep(w);
    marin__free(sc);
}

void marin__rhost_check_states(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    for (marin__rhosted *h = w->hosted; h; h = h->next) {
        if (h->stop)
            continue;
        state_check *sc = marin__malloc(sizeof *sc);
        if (!sc)
            break;
        sc->w = w;
        snprintf(sc->stream, sizeof sc->stream, "%s", h->stream);
        const char *av[] = {"HMGET", h->key, "state", "host"};
        if (marin__rconn_cmd(w->cmd, 0, 0, state_reply, sc, 4, av, NULL) != MARIN_OK)
            marin__free(sc);
    }
    pthread_mutex_unlock(&w->mu);
}
