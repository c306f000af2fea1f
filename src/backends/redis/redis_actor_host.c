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
        set_outcome(wt, rc, why);
        marin__rworker_finish(h->w, wt);
    }
    h->tail = NULL;
}

static void die(marin__rhosted *h, const char *reason)
{
    hset(h->w, h->key, "state", "dead", 4);
    hset(h->w, h->key, "error", reason, strlen(reason));
    if (h->name[0]) {
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", h->w->s->prefix);
        const char *av[] = {"HDEL", names, h->name};
        redisReply *r = cmd(h->w, 3, av, NULL);
        if (r)
            freeReplyObject(r);
    }
}

/* A crash: restart here from the last checkpoint, or die. Under nothing. */
static void crash_restart(marin__rhosted *h)
{
    char why[2048];
    pthread_mutex_lock(&h->mu);
    if (h->max_restarts >= 0 && h->restarts >= h->max_restarts) {
        h->dead = 1;
        snprintf(why, sizeof why, "actor %s (class '%s') died and its max_restarts (%d) "
                 "are spent", shown(h), h->cls->name, h->max_restarts);
        fail_mailbox_locked(h, MARIN_EWORKER, "", "the actor is dead");
        pthread_mutex_unlock(&h->mu);
        die(h, why);
        return;
    }
    h->restarts++;
    pthread_mutex_unlock(&h->mu);
    char n[24];
    snprintf(n, sizeof n, "%d", h->restarts);
    hset(h->w, h->key, "restarts", n, strlen(n));
    int rc = instance_start(h, why, sizeof why);
    if (rc != MARIN_OK) {
        pthread_mutex_lock(&h->mu);
        h->dead = 1;
        fail_mailbox_locked(h, MARIN_EWORKER, "", "the actor could not be restarted");
        pthread_mutex_unlock(&h->mu);
        char reason[2300];
        snprintf(reason, sizeof reason, "restart failed: %s", why);
        die(h, reason);
    }
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

/* Run one call (or a control) on this actor thread. */
static void run_call(marin__rhosted *h, marin__wtask *wt)
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
        return;
    }
    if (strcmp(name, "@kill") == 0) {
        int no_restart = wt->msg.arg_len == 1 && ((const char *)wt->msg.arg)[0] == '1';
        if (!no_restart) {
            crash_restart(h);
            set_outcome(wt, MARIN_OK, NULL);
            return;
        }
        pthread_mutex_lock(&h->mu);
        h->dead = 1;
        h->stop = 1;
        fail_mailbox_locked(h, MARIN_ECANCELED, "cancelled: ", "the actor was killed");
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        char reason[512];
        snprintf(reason, sizeof reason, "actor %s (class '%s') was killed", shown(h),
                 h->cls->name);
        die(h, reason);
        set_outcome(wt, MARIN_OK, NULL);
        /* Its threads (this one too) are joined and it is freed elsewhere. */
        marin__rworker *w = h->w;
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
        return;
    }
    const marin__actor_method *m = marin__actor_class_method(h->cls, name);
    if (!m) {
        snprintf(why, sizeof why, "marin_actor_call: actor class '%s' has no method '%s' "
                 "(actor %s)", h->cls->name, name, shown(h));
        set_outcome(wt, MARIN_ENOTFOUND, why);
        return;
    }
    marin_future_t *f = marin__future_new(h->w->rt);
    if (!f) {
        set_outcome(wt, MARIN_ENOMEM, "out of memory running an actor call");
        return;
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
    int rc = marin__method_execute(h->w->rt, t, &env, m->fn, h->self, &result, &len, &msg,
                                   &died);
    pthread_mutex_lock(&h->w->mu);
    wt->t = NULL;
    pthread_mutex_unlock(&h->w->mu);
    t->arg = NULL; /* borrowed */
    t->arg_len = 0;
    marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, NULL);
    marin_future_release(f);
    marin_future_release(f);
    if (died) {
        marin__free(result);
        marin__free(msg);
        snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') was lost: the actor's "
                 "host died while it ran", name, shown(h), h->cls->name);
        set_outcome(wt, MARIN_EWORKER, why);
        crash_restart(h);
        return;
    }
    if (rc != MARIN_OK) {
        snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') failed: %s", name,
                 shown(h), h->cls->name, msg ? msg : marin_strerror(rc));
        marin__free(msg);
        marin__free(result);
        set_outcome(wt, rc, why);
        return;
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
}

static void *actor_thread(void *p)
{
    marin__rhosted *h = p;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->head && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!h->head)
            break;
        marin__wtask *wt = h->head;
        h->head = wt->next;
        if (!h->head)
            h->tail = NULL;
        wt->next = NULL;
        if (h->dead) {
            char why[512];
            snprintf(why, sizeof why, "call '%s' of actor %s (class '%s') failed: the actor "
                     "is dead", wt->msg.name, shown(h), h->cls->name);
            set_outcome(wt, MARIN_EWORKER, why);
            pthread_mutex_unlock(&h->mu);
            marin__rworker_finish(h->w, wt);
            pthread_mutex_lock(&h->mu);
            continue;
        }
        pthread_mutex_unlock(&h->mu);
        run_call(h, wt);
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
            if (rc != MARIN_EUNAVAILABLE)
                die(h, reason);
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

int marin__rhost_take_call(marin__rworker *w, const char *stream, marin__wtask *wt)
{
    pthread_mutex_lock(&w->mu);
    marin__rhosted *h = w->hosted;
    while (h && strcmp(h->stream, stream) != 0)
        h = h->next;
    pthread_mutex_unlock(&w->mu);
    if (!h)
        return 0;
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
    pthread_mutex_unlock(&w->mu);
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
