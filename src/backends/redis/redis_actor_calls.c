/* An actor's instance on its host and the calls it runs: constructor or
 * restore, checkpoints stored in the actor's record before the Nth call is
 * acknowledged, the calls in mailbox order on the actor's own threads, and
 * rebuilding after a crash (other running calls are lost; idempotent ones
 * are replayed) within max_restarts. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "redis_actor_host.h"


const char *marin__rh_shown(const marin__rhosted *h)
{
    return h->name[0] ? h->name : h->id;
}

/* Synchronous command on the worker's connection (a task or actor thread). */
redisReply *marin__rh_cmd(marin__rworker *w, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = NULL;
    if (marin__rconn_call(w->cmd, 0, &r, argc, argv, lens) != MARIN_OK)
        return NULL;
    if (r->type == REDIS_REPLY_ERROR) {
        marin__log(w->rt, MARIN_LOG_WARN, "worker %s: Redis refused %s: %s", w->id, argv[0],
                   r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

void marin__rh_hset(marin__rworker *w, const char *key, const char *field, const char *value,
                 size_t vlen)
{
    const char *av[] = {"HSET", key, field, value};
    size_t al[] = {4, strlen(key), strlen(field), vlen};
    redisReply *r = marin__rh_cmd(w, 4, av, al);
    if (r)
        freeReplyObject(r);
}

/* Run a hook (init, restore, save) of @p h's class. */
static int run_hook(marin__rhosted *h, int kind, const void *arg, size_t len, void **result,
                    size_t *rlen, char **msg)
{
    marin__exec_env env = {.gpu_ids = h->gpu_ids, .ngpus = h->ngpus};
    return marin__hook_execute(h->w->rt, &env, h->cls, kind, arg, len, &h->self, result, rlen,
                               msg, &h->hook_running, &h->hook_mu);
}

/* Start the instance: restore the checkpoint in the hash, else construct. */
int marin__rh_instance_start(marin__rhosted *h, char *why, size_t cap)
{
    const char *av[] = {"HMGET", h->key, "ckpt", "arg"};
    redisReply *r = marin__rh_cmd(h->w, 4, av, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        snprintf(why, cap, "cannot read the actor's record %s from Redis", h->key);
        if (r)
            freeReplyObject(r);
        return MARIN_EUNAVAILABLE;
    }
    const redisReply *ck = r->element[0], *arg = r->element[1];
    void *result = NULL;
    size_t rlen = 0;
    char *msg = NULL;
    int rc;
    h->self = NULL;
    if (ck->type == REDIS_REPLY_STRING && h->cls->restore)
        rc = run_hook(h, MARIN__HOOK_RESTORE, ck->str, ck->len, &result, &rlen, &msg);
    else
        rc = run_hook(h, MARIN__HOOK_INIT, arg->type == REDIS_REPLY_STRING ? arg->str : NULL,
                      arg->type == REDIS_REPLY_STRING ? arg->len : 0, &result, &rlen, &msg);
    freeReplyObject(r);
    marin__free(result);
    if (rc != MARIN_OK)
        snprintf(why, cap, "%s", msg ? msg : marin_strerror(rc));
    marin__free(msg);
    return rc;
}

/* Save a checkpoint into the hash. */
static int checkpoint(marin__rhosted *h, char *why, size_t cap)
{
    if (!h->cls->save) {
        snprintf(why, cap, "actor class '%s' has no checkpoint hooks", h->cls->name);
        return MARIN_EUNSUPPORTED;
    }
    void *data = NULL;
    size_t len = 0;
    char *msg = NULL;
    int rc = run_hook(h, MARIN__HOOK_SAVE, NULL, 0, &data, &len, &msg);
    if (rc == MARIN_OK) {
        const char *av[] = {"HSET", h->key, "ckpt", data ? (const char *)data : ""};
        size_t al[] = {4, strlen(h->key), 4, len};
        redisReply *r = marin__rh_cmd(h->w, 4, av, al);
        if (r)
            freeReplyObject(r);
        else {
            rc = MARIN_EUNAVAILABLE;
            snprintf(why, cap, "the checkpoint could not be stored in Redis");
        }
        h->since_ckpt = 0;
    } else {
        snprintf(why, cap, "%s", msg ? msg : marin_strerror(rc));
    }
    marin__free(data);
    marin__free(msg);
    return rc;
}

/* A call's outcome changes after it ran: any result it made is dropped. */
static void replace_outcome(marin__wtask *wt, int rc, const char *why)
{
    marin__free(wt->result);
    wt->result = NULL;
    wt->len = 0;
    marin__rh_set_outcome(wt, rc, why);
}

void marin__rh_set_outcome(marin__wtask *wt, int rc, const char *why)
{
    wt->rc = rc;
    marin__free(wt->why);
    wt->why = why ? marin__strdup(why) : NULL;
}

/* Under h->mu: fail every call still in the mailbox ("<lead>call 'm' of
 * actor X (class 'C'): <tail>"). */
marin__wtask *marin__rh_fail_mailbox_locked(marin__rhosted *h, int rc, const char *lead,
                                            const char *tail)
{
    marin__wtask *list = h->head;
    for (marin__wtask *wt = list; wt; wt = wt->next) {
        char why[3072]; /* the tail may be a whole reason */
        snprintf(why, sizeof why, "%scall '%s' of actor %s (class '%s') failed: %s", lead,
                 wt->msg.name, marin__rh_shown(h), h->cls->name, tail);
        wt->actor_dead = h->dead;
        marin__rh_set_outcome(wt, rc, why);
    }
    h->head = h->tail = NULL;
    return list;
}

void marin__rh_finish_list(marin__rworker *w, marin__wtask *list)
{
    while (list) {
        marin__wtask *next = list->next;
        list->next = NULL;
        marin__rworker_finish(w, list);
        list = next;
    }
}

void marin__rh_die(marin__rhosted *h, int code, const char *reason)
{
    char c[16];
    snprintf(c, sizeof c, "%d", code);
    marin__rh_hset(h->w, h->key, "code", c, strlen(c));
    marin__rh_hset(h->w, h->key, "error", reason, strlen(reason));
    marin__rh_hset(h->w, h->key, "state", "dead", 4);
    if (h->name[0]) {
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", h->w->s->prefix);
        const char *av[] = {"HDEL", names, h->name};
        redisReply *r = marin__rh_cmd(h->w, 3, av, NULL);
        if (r)
            freeReplyObject(r);
    }
}


/* Rebuild the instance (a crash, or a kill that lets it restart): wait
 * until no other call runs (@p mine: the caller's own call counts), drop
 * the old instance, and rebuild from the last checkpoint, or die when the
 * budget is spent (then it leaves this host and its resources come back). */
static void rebuild(marin__rhosted *h, int mine)
{
    char why[2048];
    pthread_mutex_lock(&h->mu);
    h->epoch++;
    h->restarting = 1;
    while (h->running > mine)
        pthread_cond_wait(&h->cv, &h->mu);
    h->killed = 0; /* calls from now on run on the rebuilt instance */
    int spent = h->max_restarts >= 0 && h->restarts >= h->max_restarts;
    if (!spent)
        h->restarts++;
    pthread_mutex_unlock(&h->mu);
    marin__rh_hset(h->w, h->key, "state", "restarting", 10);
    if (h->self && h->cls->fini)
        h->cls->fini(h->self);
    h->self = NULL;
    int rc = MARIN_OK;
    if (spent) {
        snprintf(why, sizeof why, "actor %s (class '%s') died and its max_restarts (%d) "
                 "are spent", marin__rh_shown(h), h->cls->name, h->max_restarts);
        rc = MARIN_EWORKER;
    } else {
        char n[24];
        snprintf(n, sizeof n, "%d", h->restarts);
        marin__rh_hset(h->w, h->key, "restarts", n, strlen(n));
        char detail[1024];
        if ((rc = marin__rh_instance_start(h, detail, sizeof detail)) != MARIN_OK)
            snprintf(why, sizeof why, "actor %s (class '%s') could not be rebuilt: %s",
                     marin__rh_shown(h), h->cls->name, detail);
    }
    if (rc == MARIN_OK)
        marin__rh_hset(h->w, h->key, "state", "alive", 5);
    else
        marin__rh_die(h, rc, why);
    marin__wtask *failed = NULL;
    pthread_mutex_lock(&h->mu);
    if (rc != MARIN_OK) {
        h->dead = 1;
        h->dead_code = rc;
        snprintf(h->dead_why, sizeof h->dead_why, "%s", why);
        failed = marin__rh_fail_mailbox_locked(h, rc, "", why);
        h->stop = 1;
    }
    h->restarting = 0;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    marin__rh_finish_list(h->w, failed); /* w->mu is never taken under h->mu */
    if (rc != MARIN_OK)
        marin__rh_start_sweep(h->w);
}

static void crash_restart(marin__rhosted *h)
{
    rebuild(h, 1);
}

static void *sweep_main(void *p)
{
    marin__rworker *w = p;
    marin__rhost_sweep(w);
    pthread_mutex_lock(&w->mu);
    w->sweepers--;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void marin__rh_start_sweep(marin__rworker *w)
{
    pthread_mutex_lock(&w->mu);
    w->sweepers++;
    pthread_mutex_unlock(&w->mu);
    pthread_t th;
    if (pthread_create(&th, NULL, sweep_main, w) == 0) {
        pthread_detach(th);
    } else {
        pthread_mutex_lock(&w->mu);
        w->sweepers--;
        pthread_mutex_unlock(&w->mu);
    }
}

void *marin__rh_kill_restart_main(void *p)
{
    marin__rhosted *h = p;
    marin__rworker *w = h->w;
    rebuild(h, 0);
    pthread_mutex_lock(&w->mu);
    w->sweepers--;
    pthread_cond_broadcast(&w->idle_cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Run one call (or a checkpoint) on this actor thread. Returns 1 when the
 * call is to be replayed (an idempotent method whose run crashed). */
static int run_call(marin__rhosted *h, marin__wtask *wt, int *idem, int *own_crash)
{
    char why[8192];
    const char *name = wt->msg.name;
    if (strcmp(name, "@checkpoint") == 0) {
        char ck[4096];
        int rc = checkpoint(h, ck, sizeof ck);
        char text[4600];
        if (rc != MARIN_OK)
            snprintf(text, sizeof text, "checkpoint of actor %s (class '%s') failed: %s",
                     marin__rh_shown(h), h->cls->name, ck);
        marin__rh_set_outcome(wt, rc, rc == MARIN_OK ? NULL : text);
        return 0;
    }
    const marin__actor_method *m = marin__actor_class_method(h->cls, name);
    if (!m) {
        snprintf(why, sizeof why, "marin_actor_call: actor class '%s' has no method '%s' "
                 "(actor %s)", h->cls->name, name, marin__rh_shown(h));
        marin__rh_set_outcome(wt, MARIN_ENOTFOUND, why);
        return 0;
    }
    *idem = (m->flags & MARIN_METHOD_IDEMPOTENT) != 0;
    marin_future_t *f = marin__future_new(h->w->rt);
    if (!f) {
        marin__rh_set_outcome(wt, MARIN_ENOMEM, "out of memory running an actor call");
        return 0;
    }
    struct marin__task *t = &f->task;
    t->name = name;
    t->arg = (void *)wt->msg.arg;
    t->arg_len = wt->msg.arg_len;
    t->attempt = wt->attempt;
    marin__topts_default(&t->opts);
    pthread_mutex_lock(&h->w->mu);
    wt->t = t;
    pthread_mutex_unlock(&h->w->mu);
    marin__exec_env env = {.gpu_ids = h->gpu_ids, .ngpus = h->ngpus,
                           .task_id = wt->msg.task_id};
    void *result = NULL;
    size_t len = 0;
    char *msg = NULL;
    int died = 0;
    marin__rworker_set_current(wt);
    int rc = marin__method_execute(h->w->rt, t, &env, m->fn, h->self, &result, &len, &msg,
                                   &died);
    marin__rworker_set_current(NULL);
    pthread_mutex_lock(&h->w->mu);
    wt->t = NULL;
    pthread_mutex_unlock(&h->w->mu);
    t->arg = NULL; /* borrowed */
    t->arg_len = 0;
    marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, NULL);
    marin_future_release(f);
    marin_future_release(f);
    if (died) { /* the caller answers, then rebuilds (CRASHED) */
        marin__free(result);
        marin__free(msg);
        *own_crash = 1;
        snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') was lost: the actor's "
                 "host died while it ran", name, marin__rh_shown(h), h->cls->name);
        marin__rh_set_outcome(wt, MARIN_EWORKER, why);
        return 2;
    }
    if (rc != MARIN_OK) {
        snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') failed: %s", name,
                 marin__rh_shown(h), h->cls->name, msg ? msg : marin_strerror(rc));
        marin__free(msg);
        marin__free(result);
        marin__rh_set_outcome(wt, rc, why);
        return 0;
    }
    marin__free(msg);
    wt->result = result;
    wt->len = len;
    wt->rc = MARIN_OK;
    if (h->checkpoint_every > 0 && ++h->since_ckpt >= h->checkpoint_every) {
        char ck[1024];
        int crc = checkpoint(h, ck, sizeof ck);
        if (crc != MARIN_OK) {
            snprintf(why, sizeof why, "call '%s' of actor %s (class '%s'): the method "
                     "succeeded but the automatic checkpoint failed: %s", name, marin__rh_shown(h),
                     h->cls->name, ck);
            replace_outcome(wt, crc, why);
        }
    }
    return 0;
}

static void link_running(marin__rworker *w, marin__wtask *wt, int on)
{
    pthread_mutex_lock(&w->mu);
    marin__rworker_running_locked(w, wt, on);
    pthread_mutex_unlock(&w->mu);
}

void *marin__rh_actor_thread(void *p)
{
    marin__rhosted *h = p;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while ((!h->head || h->restarting) && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop)
            break; /* whoever stopped it answers the mailbox */
        marin__wtask *wt = h->head;
        h->head = wt->next;
        if (!h->head)
            h->tail = NULL;
        wt->next = NULL;
        if (h->dead || wt->cancel_seen) {
            char why[512];
            snprintf(why, sizeof why, wt->cancel_seen ? "cancelled: call '%s' of actor %s "
                     "(class '%s') was cancelled before it ran" : "call '%s' of actor %s "
                     "(class '%s') failed: the actor is dead", wt->msg.name, marin__rh_shown(h),
                     h->cls->name);
            marin__rh_set_outcome(wt, wt->cancel_seen ? MARIN_ECANCELED
                                             : h->dead_code ? h->dead_code : MARIN_EWORKER,
                        !wt->cancel_seen && h->dead_why[0] ? h->dead_why : why);
            wt->actor_dead = h->dead;
            pthread_mutex_unlock(&h->mu);
            marin__rworker_finish(h->w, wt);
            pthread_mutex_lock(&h->mu);
            continue;
        }
        h->running++;
        unsigned epoch = h->epoch;
        pthread_mutex_unlock(&h->mu);
        /* In the worker's running list, so cancellations reach it. */
        link_running(h->w, wt, 1);
        int idem = 0, own_crash = 0;
        int replay = run_call(h, wt, &idem, &own_crash);
        link_running(h->w, wt, 0);
        if (replay == 2) {
            /* This call crashed the instance: it is answered at once (unless
             * idempotent: replayed first on the rebuilt one), then the
             * instance is rebuilt once the other running calls return. */
            replay = 0;
            pthread_mutex_lock(&h->mu);
            /* Its budget is spent: this crash ends the actor. */
            wt->actor_dead = h->max_restarts >= 0 && h->restarts >= h->max_restarts;
            pthread_mutex_unlock(&h->mu);
            /* The record says so before the caller hears of the crash, so a
             * ready() after it waits for the rebuild. */
            marin__rh_hset(h->w, h->key, "state", "restarting", 10);
            if (!idem)
                marin__rworker_finish(h->w, wt);
            crash_restart(h);
            pthread_mutex_lock(&h->mu);
            if (idem && !h->dead && !h->killed) {
                replay = 1;
            } else if (idem) {
                pthread_mutex_unlock(&h->mu);
                marin__rworker_finish(h->w, wt);
                pthread_mutex_lock(&h->mu);
            }
            h->running--;
            pthread_cond_broadcast(&h->cv);
            if (replay) {
                marin__rh_set_outcome(wt, MARIN_OK, NULL);
                wt->next = h->head;
                h->head = wt;
                if (!h->tail)
                    h->tail = wt;
            }
            continue;
        }
        pthread_mutex_lock(&h->mu);
        if (!replay && h->killed) {
            char why[512];
            snprintf(why, sizeof why, "cancelled: call '%s' of actor %s (class '%s'): the "
                     "actor was killed", wt->msg.name, marin__rh_shown(h), h->cls->name);
            replace_outcome(wt, MARIN_ECANCELED, why);
        } else if (!replay && !own_crash && epoch != h->epoch) {
            /* Another call crashed the instance this one ran on. */
            if (idem && !h->dead) {
                replay = 1;
            } else {
                char why[512];
                snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') was lost: the "
                         "actor's host died while it ran (in another call)", wt->msg.name,
                         marin__rh_shown(h), h->cls->name);
                replace_outcome(wt, MARIN_EWORKER, why);
            }
        }
        h->running--;
        pthread_cond_broadcast(&h->cv);
        if (replay) { /* first in line on the rebuilt instance */
            replace_outcome(wt, MARIN_OK, NULL);
            wt->next = h->head;
            h->head = wt;
            if (!h->tail)
                h->tail = wt;
            continue;
        }
        pthread_mutex_unlock(&h->mu);
        marin__rworker_finish(h->w, wt);
        pthread_mutex_lock(&h->mu);
    }
    h->live--;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

