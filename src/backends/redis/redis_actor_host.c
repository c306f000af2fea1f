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
#include "redis_actor.h"
#include "redis_worker.h"

#define HOST_THREADS_MAX 64

typedef struct marin__rhosted marin__rhosted;

struct marin__rhosted {
    struct marin__rhosted *next;
    marin__rworker *w;
    char id[40];
    char name[MARIN_NAME_MAX + 1];
    char key[MARIN__RKEY_MAX];
    char stream[MARIN__RKEY_MAX];
    const marin__actor_class_entry *cls;
    void *self;
    int max_concurrency, max_restarts, restarts;
    int64_t checkpoint_every, since_ckpt;
    marin_resources_t *res;      /* held for life */
    int gpu_ids[MARIN__RWORKER_GPUS];
    size_t gpu_slot[MARIN__RWORKER_GPUS];
    size_t ngpus;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    marin__wtask *head, *tail;   /* the mailbox, in stream order */
    pthread_t threads[HOST_THREADS_MAX];
    size_t nthreads, live;
    int stop, dead;
    int killed;                  /* by marin_actor_kill: calls end ECANCELED */
    int dead_code;
    char dead_why[2048];
    int running;                 /* calls running now */
    int restarting;              /* a crash: no call starts until rebuilt */
    unsigned epoch;              /* +1 per crash: calls of an older one are lost */
    marin_future_t *hook_running;
    pthread_mutex_t hook_mu;
};

int marin__rhost_is_creation(const char *task_name)
{
    return strncmp(task_name, "@actor:", 7) == 0;
}

int marin__rhost_runnable(const char *task_name)
{
    return marin__rhost_is_creation(task_name) &&
           marin__registry_find_actor_class(task_name + 7) != NULL;
}

static const char *shown(const marin__rhosted *h)
{
    return h->name[0] ? h->name : h->id;
}

/* Synchronous command on the worker's connection (a task or actor thread). */
static redisReply *cmd(marin__rworker *w, int argc, const char **argv, const size_t *lens)
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

static void hset(marin__rworker *w, const char *key, const char *field, const char *value,
                 size_t vlen)
{
    const char *av[] = {"HSET", key, field, value};
    size_t al[] = {4, strlen(key), strlen(field), vlen};
    redisReply *r = cmd(w, 4, av, al);
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
static int instance_start(marin__rhosted *h, char *why, size_t cap)
{
    const char *av[] = {"HMGET", h->key, "ckpt", "arg"};
    redisReply *r = cmd(h->w, 4, av, NULL);
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
        redisReply *r = cmd(h->w, 4, av, al);
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

static void set_outcome(marin__wtask *wt, int rc, const char *why)
{
    wt->rc = rc;
    marin__free(wt->why);
    wt->why = why ? marin__strdup(why) : NULL;
}

/* Under h->mu: fail every call still in the mailbox ("<lead>call 'm' of
 * actor X (class 'C'): <tail>"). */
static void fail_mailbox_locked(marin__rhosted *h, int rc, const char *lead, const char *tail)
{
    while (h->head) {
        marin__wtask *wt = h->head;
        h->head = wt->next;
        wt->next = NULL;
        char why[1024];
        snprintf(why, sizeof why, "%scall '%s' of actor %s (class '%s') failed: %s", lead,
                 wt->msg.name, shown(h), h->cls->name, tail);
        wt->actor_dead = h->dead;
        set_outcome(wt, rc, why);
        marin__rworker_finish(h->w, wt);
    }
    h->tail = NULL;
}

static void die(marin__rhosted *h, int code, const char *reason)
{
    char c[16];
    snprintf(c, sizeof c, "%d", code);
    hset(h->w, h->key, "code", c, strlen(c));
    hset(h->w, h->key, "error", reason, strlen(reason));
    hset(h->w, h->key, "state", "dead", 4);
    if (h->name[0]) {
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", h->w->s->prefix);
        const char *av[] = {"HDEL", names, h->name};
        redisReply *r = cmd(h->w, 3, av, NULL);
        if (r)
            freeReplyObject(r);
    }
}

static void start_sweep(marin__rworker *w);

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
    hset(h->w, h->key, "state", "restarting", 10);
    if (h->self && h->cls->fini)
        h->cls->fini(h->self);
    h->self = NULL;
    int rc = MARIN_OK;
    if (spent) {
        snprintf(why, sizeof why, "actor %s (class '%s') died and its max_restarts (%d) "
                 "are spent", shown(h), h->cls->name, h->max_restarts);
        rc = MARIN_EWORKER;
    } else {
        char n[24];
        snprintf(n, sizeof n, "%d", h->restarts);
        hset(h->w, h->key, "restarts", n, strlen(n));
        char detail[1024];
        if ((rc = instance_start(h, detail, sizeof detail)) != MARIN_OK)
            snprintf(why, sizeof why, "actor %s (class '%s') could not be rebuilt: %s",
                     shown(h), h->cls->name, detail);
    }
    if (rc == MARIN_OK)
        hset(h->w, h->key, "state", "alive", 5);
    else
        die(h, rc, why);
    pthread_mutex_lock(&h->mu);
    if (rc != MARIN_OK) {
        h->dead = 1;
        h->dead_code = rc;
        snprintf(h->dead_why, sizeof h->dead_why, "%s", why);
        fail_mailbox_locked(h, rc, "", why);
        h->stop = 1;
    }
    h->restarting = 0;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (rc != MARIN_OK)
        start_sweep(h->w);
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

static void start_sweep(marin__rworker *w)
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

static void *kill_restart_main(void *p)
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
                     shown(h), h->cls->name, ck);
        set_outcome(wt, rc, rc == MARIN_OK ? NULL : text);
        return 0;
    }
    const marin__actor_method *m = marin__actor_class_method(h->cls, name);
    if (!m) {
        snprintf(why, sizeof why, "marin_actor_call: actor class '%s' has no method '%s' "
                 "(actor %s)", h->cls->name, name, shown(h));
        set_outcome(wt, MARIN_ENOTFOUND, why);
        return 0;
    }
    *idem = (m->flags & MARIN_METHOD_IDEMPOTENT) != 0;
    marin_future_t *f = marin__future_new(h->w->rt);
    if (!f) {
        set_outcome(wt, MARIN_ENOMEM, "out of memory running an actor call");
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
                 "host died while it ran", name, shown(h), h->cls->name);
        set_outcome(wt, MARIN_EWORKER, why);
        return 2;
    }
    if (rc != MARIN_OK) {
        snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') failed: %s", name,
                 shown(h), h->cls->name, msg ? msg : marin_strerror(rc));
        marin__free(msg);
        marin__free(result);
        set_outcome(wt, rc, why);
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
                     "succeeded but the automatic checkpoint failed: %s", name, shown(h),
                     h->cls->name, ck);
            marin__free(wt->result);
            wt->result = NULL;
            wt->len = 0;
            set_outcome(wt, crc, why);
        }
    }
    return 0;
}

static void link_running(marin__rworker *w, marin__wtask *wt, int on)
{
    pthread_mutex_lock(&w->mu);
    if (on) {
        wt->prev = NULL;
        wt->next = w->running;
        if (w->running)
            w->running->prev = wt;
        w->running = wt;
    } else {
        if (wt->prev)
            wt->prev->next = wt->next;
        else
            w->running = wt->next;
        if (wt->next)
            wt->next->prev = wt->prev;
        wt->next = wt->prev = NULL;
    }
    pthread_mutex_unlock(&w->mu);
}

static void *actor_thread(void *p)
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
                     "(class '%s') failed: the actor is dead", wt->msg.name, shown(h),
                     h->cls->name);
            set_outcome(wt, wt->cancel_seen ? MARIN_ECANCELED
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
            hset(h->w, h->key, "state", "restarting", 10);
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
                set_outcome(wt, MARIN_OK, NULL);
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
                     "actor was killed", wt->msg.name, shown(h), h->cls->name);
            marin__free(wt->result);
            wt->result = NULL;
            wt->len = 0;
            set_outcome(wt, MARIN_ECANCELED, why);
        } else if (!replay && !own_crash && epoch != h->epoch) {
            /* Another call crashed the instance this one ran on. */
            if (idem && !h->dead) {
                replay = 1;
            } else {
                char why[512];
                snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') was lost: the "
                         "actor's host died while it ran (in another call)", wt->msg.name,
                         shown(h), h->cls->name);
                marin__free(wt->result);
                wt->result = NULL;
                wt->len = 0;
                set_outcome(wt, MARIN_EWORKER, why);
            }
        }
        h->running--;
        pthread_cond_broadcast(&h->cv);
        if (replay) { /* first in line on the rebuilt instance */
            marin__free(wt->result);
            wt->result = NULL;
            wt->len = 0;
            set_outcome(wt, MARIN_OK, NULL);
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

void marin__rhost_create(marin__rworker *w, marin__wtask *wt)
{
    char why[8192];
    marin__rhosted *h = marin__calloc(1, sizeof *h);
    if (!h) {
        set_outcome(wt, MARIN_ENOMEM, "out of memory hosting an actor");
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
    redisReply *r = cmd(w, 8, av, NULL);
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
        if ((rc = instance_start(h, detail, sizeof detail)) != MARIN_OK) {
            char reason[4600];
            snprintf(reason, sizeof reason, "actor %s (class '%s') could not be created: %s",
                     shown(h), h->cls->name, detail);
            snprintf(why, sizeof why, "%s", reason);
            if (rc != MARIN_EUNAVAILABLE) {
                /* The constructor's failure is the creation's outcome: final
                 * (not retried), and the actor is dead for its callers. */
                die(h, rc, reason);
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
        set_outcome(wt, rc, why);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->hook_mu);
        marin__free(h);
        return;
    }
    /* Killed while its constructor ran? */
    const char *sv[] = {"HGET", h->key, "state"};
    redisReply *sr = cmd(w, 3, sv, NULL);
    int killed = sr && sr->type == REDIS_REPLY_STRING && strcmp(sr->str, "dead") == 0;
    if (sr)
        freeReplyObject(sr);
    if (killed) {
        if (h->self && h->cls->fini)
            h->cls->fini(h->self);
        marin_resources_destroy(h->res);
        snprintf(why, sizeof why, "cancelled: actor %s (class '%s') was killed while it was "
                 "being created", shown(h), h->cls->name);
        set_outcome(wt, MARIN_ECANCELED, why);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->hook_mu);
        marin__free(h);
        return;
    }
    hset(w, h->key, "host", w->id, strlen(w->id));
    hset(w, h->key, "state", "alive", 5);
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->max_concurrency; i++)
        if (pthread_create(&h->threads[h->nthreads], NULL, actor_thread, h) == 0) {
            h->nthreads++;
            h->live++;
        }
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_lock(&w->mu);
    h->next = w->hosted;
    w->hosted = h;
    pthread_mutex_unlock(&w->mu);
    wt->keep_res = 1; /* held for the actor's life */
    set_outcome(wt, MARIN_OK, NULL);
    marin__log(w->rt, MARIN_LOG_INFO, "worker %s: hosting actor %s (class '%s')%s", w->id,
               shown(h), h->cls->name, h->restarts ? " after a restart" : "");
    marin__rworker_kick(w); /* read its call stream too */
}

/* End @p h on this host (killed): queued calls end ECANCELED, running
 * ones are asked to stop and end ECANCELED when they return. */
static void end_here(marin__rworker *w, marin__rhosted *h)
{
    pthread_mutex_lock(&h->mu);
    h->killed = 1;
    h->dead = 1;
    fail_mailbox_locked(h, MARIN_ECANCELED, "cancelled: ", "the actor was killed");
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_lock(&w->mu);
    for (marin__wtask *r = w->running; r; r = r->next)
        if (r->stream && strcmp(r->stream, h->stream) == 0) {
            r->cancel_seen = 1;
            if (r->t)
                atomic_store(&r->t->cancel, 1);
        }
    pthread_mutex_unlock(&w->mu);
}

/* Its threads are joined, fini runs and its resources come back on another
 * thread (running calls may take a while to notice). */
static void stop_here(marin__rworker *w, marin__rhosted *h)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    start_sweep(w);
}

/* Reactor: a kill does not wait in line. Running calls are asked to stop
 * and end ECANCELED, queued ones too; the actor leaves this host. */
static void kill_now(marin__rworker *w, marin__rhosted *h, marin__wtask *wt)
{
    int no_restart = wt->msg.arg_len == 1 && ((const char *)wt->msg.arg)[0] == '1';
    char why[512];
    pthread_mutex_lock(&h->mu);
    if (h->killed || h->dead) {
        pthread_mutex_unlock(&h->mu);
        snprintf(why, sizeof why, "marin_actor_kill: actor %s is already gone", h->id);
        set_outcome(wt, MARIN_ESTATE, why);
        marin__rworker_finish(w, wt);
        return;
    }
    if (!no_restart && h->max_restarts >= 0 && h->restarts >= h->max_restarts)
        no_restart = 1; /* no restarts left: the kill ends it */
    h->killed = 1;
    if (!no_restart) {
        /* Running and queued calls end ECANCELED; the instance is rebuilt
         * (counted as a restart) once the running ones return. The record
         * says "restarting" before the kill is answered (same connection,
         * in order), so a ready() after the kill waits for the rebuild. */
        h->restarting = 1;
        const char *rs[] = {"HSET", h->key, "state", "restarting"};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 4, rs, NULL);
        fail_mailbox_locked(h, MARIN_ECANCELED, "cancelled: ", "the actor was killed");
        pthread_mutex_unlock(&h->mu);
        pthread_mutex_lock(&w->mu);
        for (marin__wtask *r = w->running; r; r = r->next)
            if (r->stream && strcmp(r->stream, h->stream) == 0) {
                r->cancel_seen = 1;
                if (r->t)
                    atomic_store(&r->t->cancel, 1);
            }
        w->sweepers++;
        pthread_mutex_unlock(&w->mu);
        pthread_t th;
        if (pthread_create(&th, NULL, kill_restart_main, h) == 0) {
            pthread_detach(th);
        } else {
            pthread_mutex_lock(&w->mu);
            w->sweepers--;
            pthread_mutex_unlock(&w->mu);
        }
        set_outcome(wt, MARIN_OK, NULL);
        marin__rworker_finish(w, wt);
        return;
    }
    pthread_mutex_unlock(&h->mu);
    end_here(w, h);
    snprintf(why, sizeof why, "actor %s (class '%s') was killed", shown(h), h->cls->name);
    const char *av[] = {"HSET", h->key, "state", "dead", "code", "-5", "error", why};
    marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 8, av, NULL);
    if (h->name[0]) {
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", w->s->prefix);
        const char *d[] = {"HDEL", names, h->name};
        marin__rconn_cmd(w->cmd, 0, 0, NULL, NULL, 3, d, NULL);
    }
    set_outcome(wt, MARIN_OK, NULL);
    wt->actor_dead = 1; /* the killer's driver refuses later calls at once */
    marin__rworker_finish(w, wt);
    stop_here(w, h);
}

int marin__rhost_take_call(marin__rworker *w, const char *stream, marin__wtask *wt)
{
    pthread_mutex_lock(&w->mu);
    marin__rhosted *h = w->hosted;
    while (h && strcmp(h->stream, stream) != 0)
        h = h->next;
    pthread_mutex_unlock(&w->mu);
    if (!h) {
        if (strcmp(wt->msg.name, "@kill") == 0) {
            set_outcome(wt, MARIN_ESTATE, "marin_actor_kill: the actor is already gone");
            marin__rworker_finish(w, wt);
            return 1;
        }
        /* An actor that died here: its calls end with its reason. */
        pthread_mutex_lock(&w->mu);
        for (size_t i = 0; i < MARIN__RWORKER_TOMBS; i++) {
            marin__rtomb *t = &w->tombs[i];
            if (t->stream[0] && strcmp(t->stream, stream) == 0) {
                char why[1200];
                snprintf(why, sizeof why, "call '%s' failed: %s", wt->msg.name, t->why);
                wt->actor_dead = 1;
                set_outcome(wt, t->code, why);
                pthread_mutex_unlock(&w->mu);
                marin__rworker_finish(w, wt);
                return 1;
            }
        }
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    if (strcmp(wt->msg.name, "@kill") == 0) {
        kill_now(w, h, wt);
        return 1;
    }
    pthread_mutex_lock(&h->mu);
    wt->next = NULL;
    if (h->tail)
        h->tail->next = wt;
    else
        h->head = wt;
    h->tail = wt;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return 1;
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
    int dead = rc == MARIN_OK && (reply->type == REDIS_REPLY_NIL ||
                                  (reply->type == REDIS_REPLY_STRING &&
                                   strcmp(reply->str, "dead") == 0));
    if (dead) {
        pthread_mutex_lock(&w->mu);
        marin__rhosted *h = w->hosted;
        while (h && strcmp(h->stream, sc->stream) != 0)
            h = h->next;
        pthread_mutex_unlock(&w->mu);
        if (h) {
            pthread_mutex_lock(&h->mu);
            int already = h->dead || h->stop;
            pthread_mutex_unlock(&h->mu);
            if (!already) {
                marin__log(w->rt, MARIN_LOG_INFO, "worker %s: actor %s is dead by its "
                           "record; it leaves this host", w->id, shown(h));
                end_here(w, h);
                stop_here(w, h);
            }
        }
    }
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
        const char *av[] = {"HGET", h->key, "state"};
        if (marin__rconn_cmd(w->cmd, 0, 0, state_reply, sc, 3, av, NULL) != MARIN_OK)
            marin__free(sc);
    }
    pthread_mutex_unlock(&w->mu);
}
