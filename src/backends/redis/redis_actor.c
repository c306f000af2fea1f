/* Actors on the redis backend, the driver's side. An actor is the hash
 * actor:<id> (class, spec, constructor argument, host, state, restarts,
 * checkpoint) plus its call stream ac:<id>. Creation travels like a task
 * ("@actor:<class>" queue of the actor's resource shape); the worker that
 * takes it hosts the actor (redis_actor_host.c) and reads the call stream
 * in order. Names map to ids with HSETNX. A host that dies is noticed by
 * any worker's reaper, which fails the calls it was running and queues the
 * creation again (restart from the last checkpoint) within max_restarts. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "fail.h"
#include "redis_actor.h"

typedef struct ractor {
    char id[40];
    char name[MARIN_NAME_MAX + 1];
    char cls[MARIN_NAME_MAX + 1];
    char stream[MARIN__RKEY_MAX];
    marin_future_t *created;    /* the creation, when this handle made it */
    atomic_int killed;          /* this handle killed it for good */
} ractor;

/* Actors this driver learnt are dead (bounded; oldest forgotten). */
#define DEAD_MAX 64
struct owned_actor {
    struct owned_actor *next;
    char id[40];
};

struct marin__ractors {
    pthread_mutex_t mu;
    struct owned_actor *owned; /* created here, not detached: end with us */
    size_t n;
    struct {
        char stream[MARIN__RKEY_MAX];
        char why[512];
    } dead[DEAD_MAX];
};

int marin__ractors_init(marin__redis *s)
{
    struct marin__ractors *r = marin__calloc(1, sizeof *r);
    if (!r)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    s->actors = r;
    return MARIN_OK;
}

void marin__ractors_note_dead(marin__redis *s, const char *stream, const char *why)
{
    struct marin__ractors *r = s->actors;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    size_t i = r->n++ % DEAD_MAX;
    snprintf(r->dead[i].stream, sizeof r->dead[i].stream, "%s", stream);
    snprintf(r->dead[i].why, sizeof r->dead[i].why, "%s", why);
    pthread_mutex_unlock(&r->mu);
}

static int dead_why(marin__redis *s, const char *stream, char *why, size_t cap)
{
    struct marin__ractors *r = s->actors;
    int found = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < DEAD_MAX && i < r->n; i++)
        if (strcmp(r->dead[i].stream, stream) == 0) {
            snprintf(why, cap, "%s", r->dead[i].why);
            found = 1;
        }
    pthread_mutex_unlock(&r->mu);
    return found;
}

/* The actors this runtime created (not detached) end with it, as on
 * local: the record says dead (calls fail), the name is freed, and a kill
 * goes to the host through the call stream. */
void marin__ractors_shutdown(marin__redis *s)
{
    struct marin__ractors *r = s->actors;
    if (!r || !s->cmd)
        return;
    pthread_mutex_lock(&r->mu);
    struct owned_actor *list = r->owned;
    r->owned = NULL;
    pthread_mutex_unlock(&r->mu);
    static const char end_lua[] =
        "local st = redis.call('HGET', KEYS[1], 'state')\n"
        "if not st or st == 'dead' then return 0 end\n"
        "redis.call('HSET', KEYS[1], 'state', 'dead', 'code', '-5', 'error', ARGV[1])\n"
        "local name = redis.call('HGET', KEYS[1], 'name')\n"
        "if name and name ~= '' then redis.call('HDEL', KEYS[3], name) end\n"
        "redis.call('XADD', KEYS[2], '*', 'd', ARGV[2], 's', '0', 'a', '1', 'f', ARGV[3])\n"
        "return 1\n";
    void *frame = NULL;
    size_t flen = 0;
    int have_frame = marin__rtask_encode_raw("@kill", "1", 1, &frame, &flen) == MARIN_OK;
    while (list) {
        struct owned_actor *next = list->next;
        char key[MARIN__RKEY_MAX], stream[MARIN__RKEY_MAX], names[MARIN__RKEY_MAX];
        snprintf(key, sizeof key, "%sactor:%s", s->prefix, list->id);
        snprintf(stream, sizeof stream, "%sac:%s", s->prefix, list->id);
        snprintf(names, sizeof names, "%sactors", s->prefix);
        const char *av[] = {"EVAL", end_lua, "3", key, stream, names,
                            "it ended with the runtime that created it (not detached)",
                            s->driver_id, have_frame ? (const char *)frame : ""};
        size_t al[9];
        for (int i = 0; i < 9; i++)
            al[i] = strlen(av[i]);
        al[8] = have_frame ? flen : 0;
        redisReply *rep = NULL;
        if (marin__rconn_call(s->cmd, 0, &rep, 9, av, al) == MARIN_OK)
            freeReplyObject(rep);
        marin__free(list);
        list = next;
    }
    marin__free(frame);
}

void marin__ractors_fini(marin__redis *s)
{
    if (!s->actors)
        return;
    while (s->actors->owned) {
        struct owned_actor *next = s->actors->owned->next;
        marin__free(s->actors->owned);
        s->actors->owned = next;
    }
    pthread_mutex_destroy(&s->actors->mu);
    marin__free(s->actors);
    s->actors = NULL;
}

static int call_sync(marin__redis *s, redisReply **r, int argc, const char **argv,
                     const size_t *lens, const char *fn)
{
    int rc = marin__rconn_call(s->cmd, 0, r, argc, argv, lens);
    if (rc != MARIN_OK)
        return marin__err(rc, "%s: %s", fn, marin__err_msg());
    if ((*r)->type == REDIS_REPLY_ERROR) {
        rc = marin__err(MARIN_EUNAVAILABLE, "%s: Redis refused %s: %s", fn, argv[0], (*r)->str);
        freeReplyObject(*r);
        *r = NULL;
    }
    return rc;
}

static ractor *impl_new(const char *id, const char *stream_prefix)
{
    ractor *x = marin__calloc(1, sizeof *x);
    if (!x)
        return NULL;
    snprintf(x->id, sizeof x->id, "%s", id);
    snprintf(x->stream, sizeof x->stream, "%sac:%s", stream_prefix, id);
    return x;
}

/* Fill @p a from the actor hash of @p id. */
static int attach(marin__redis *s, const char *id, marin_actor_t *a, const char *fn,
                  const char *what)
{
    char key[MARIN__RKEY_MAX];
    snprintf(key, sizeof key, "%sactor:%s", s->prefix, id);
    const char *av[] = {"HMGET", key, "state", "class", "name", "error"};
    redisReply *r = NULL;
    int rc = call_sync(s, &r, 6, av, NULL, fn);
    if (rc != MARIN_OK)
        return rc;
    const redisReply *st = r->element[0];
    if (st->type != REDIS_REPLY_STRING || strcmp(st->str, "dead") == 0) {
        rc = marin__err(MARIN_ENOTFOUND, "%s: no live actor %s in namespace '%s'%s%s", fn, what,
                        s->cfg.ns,
                        r->element[3]->type == REDIS_REPLY_STRING ? ": " : "",
                        r->element[3]->type == REDIS_REPLY_STRING ? r->element[3]->str : "");
        freeReplyObject(r);
        return rc;
    }
    ractor *x = impl_new(id, s->prefix);
    if (!x) {
        freeReplyObject(r);
        return marin__err(MARIN_ENOMEM, "%s: out of memory", fn);
    }
    if (r->element[1]->type == REDIS_REPLY_STRING)
        snprintf(x->cls, sizeof x->cls, "%s", r->element[1]->str);
    if (r->element[2]->type == REDIS_REPLY_STRING)
        snprintf(x->name, sizeof x->name, "%s", r->element[2]->str);
    freeReplyObject(r);
    a->impl = x;
    snprintf(a->id, sizeof a->id, "%s", id);
    return MARIN_OK;
}

typedef struct creation_watch {
    marin__redis *s;
    char key[MARIN__RKEY_MAX], stream[MARIN__RKEY_MAX], names[MARIN__RKEY_MAX];
    char name[MARIN_NAME_MAX + 1];
} creation_watch;

static void creation_done(marin_future_t *f, int status, void *ud)
{
    creation_watch *cw = ud;
    pthread_mutex_lock(&cw->s->mu);
    int stopping = cw->s->stopping;
    pthread_mutex_unlock(&cw->s->mu);
    if (status == MARIN_OK || stopping)
        return;
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    const char *why = marin_future_error(f);
    /* Only a record still waiting for a host: one a host answered for
     * (dead, alive) says more. */
    const char *av[] = {"EVAL",
                        "if redis.call('HGET', KEYS[1], 'state') == 'pending' then "
                        "redis.call('HSET', KEYS[1], 'state', 'dead', 'code', ARGV[1], "
                        "'error', ARGV[2]) "
                        "if ARGV[3] ~= '' then redis.call('HDEL', KEYS[2], ARGV[3]) end end "
                        "return 1",
                        "2", cw->key, cw->names, code, why ? why : "creation failed", cw->name};
    /* Calls already made, and later ones, fail on their futures with this
     * code once a reaper drains the stream (as on local: not at call). */
    marin__rconn_cmd(cw->s->cmd, 0, 0, NULL, NULL, 8, av, NULL);
}

static int ra_create(void *state, const marin__actor_class_entry *cls,
                     const marin__actor_spec *spec, const void *arg, size_t len,
                     marin_actor_t *a)
{
    marin__redis *s = state;
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)a;
    char id[40];
    snprintf(id, sizeof id, "actor-%016llx", (unsigned long long)rnd);
    int rc;
    redisReply *r = NULL;
    int claimed = 0;
    /* The creation request: a task "@actor:<class>" of the actor's shape,
     * whose argument is the actor id. */
    char tname[MARIN_NAME_MAX + 16];
    snprintf(tname, sizeof tname, "@actor:%s", cls->name);
    marin_task_options_t *o = NULL;
    marin_future_t *f = NULL;
    void *frame = NULL;
    size_t flen = 0;
    char shape[512], qkey[MARIN__RKEY_MAX];
    marin__redis_shape(&spec->res, shape, sizeof shape);
    snprintf(qkey, sizeof qkey, "%sq:%s:%s", s->prefix, tname, shape);
    if ((rc = marin_task_options_create(&o)) != MARIN_OK ||
        (rc = marin_task_options_set_resources(o, &spec->res)) != MARIN_OK ||
        (rc = marin_task_options_set_max_retries(o, 3)) != MARIN_OK)
        goto out;
    if (!(f = marin__future_new(s->rt))) {
        rc = marin__err(MARIN_ENOMEM, "marin_actor_create: out of memory");
        goto out;
    }
    struct marin__task *t = &f->task;
    t->name = marin__strdup(tname);
    t->name_owned = 1;
    t->opts = marin__task_options_snapshot(o);
    t->arg = marin__strdup(id);
    t->arg_len = strlen(id);
    if (!t->name || !t->arg) {
        rc = marin__err(MARIN_ENOMEM, "marin_actor_create: out of memory");
        goto out;
    }
    if ((rc = marin__rtask_encode(s->rt, t, s->cfg.max_payload, &frame, &flen)) != MARIN_OK)
        goto out;
    /* The actor's record, then its call stream, then the creation. */
    char key[MARIN__RKEY_MAX], stream[MARIN__RKEY_MAX], ids[MARIN__RKEY_MAX], mr[24], mc[24],
        ce[24];
    snprintf(key, sizeof key, "%sactor:%s", s->prefix, id);
    snprintf(stream, sizeof stream, "%sac:%s", s->prefix, id);
    snprintf(ids, sizeof ids, "%sactor_ids", s->prefix);
    snprintf(mr, sizeof mr, "%d", spec->max_restarts);
    snprintf(mc, sizeof mc, "%d", spec->max_concurrency > 0 ? spec->max_concurrency : 1);
    snprintf(ce, sizeof ce, "%lld", (long long)spec->checkpoint_every);
    const char *h[] = {"HSET", key, "class", cls->name, "name", spec->name ? spec->name : "",
                       "arg", arg ? (const char *)arg : "", "state", "pending", "host", "",
                       "restarts", "0", "max_restarts", mr, "max_concurrency", mc,
                       "checkpoint_every", ce, "creator", s->driver_id, "cq", qkey,
                       "cframe", frame};
    size_t hl[26];
    for (int i = 0; i < 26; i++)
        hl[i] = strlen(h[i]);
    hl[7] = len;
    hl[25] = flen;
    const char *g[] = {"XGROUP", "CREATE", stream, MARIN__RGROUP_WORKERS, "0", "MKSTREAM"};
    const char *sa[] = {"SADD", ids, id};
    if ((rc = call_sync(s, &r, 26, h, hl, "marin_actor_create")) != MARIN_OK)
        goto out;
    freeReplyObject(r);
    if (spec->name) {
        /* The name is claimed after the record exists, so whoever finds it
         * taken finds a record to attach to. */
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", s->prefix);
        const char *nx[] = {"HSETNX", names, spec->name, id};
        if ((rc = call_sync(s, &r, 4, nx, NULL, "marin_actor_create")) != MARIN_OK)
            goto out;
        claimed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (!claimed) {
            const char *del[] = {"DEL", key};
            if (call_sync(s, &r, 2, del, NULL, "marin_actor_create") == MARIN_OK)
                freeReplyObject(r);
            const char *gn[] = {"HGET", names, spec->name};
            if ((rc = call_sync(s, &r, 3, gn, NULL, "marin_actor_create")) != MARIN_OK)
                goto out;
            char other[40] = "";
            if (r->type == REDIS_REPLY_STRING)
                snprintf(other, sizeof other, "%s", r->str);
            freeReplyObject(r);
            if (spec->get_if_exists && other[0]) {
                char what[256];
                snprintf(what, sizeof what, "named '%s'", spec->name);
                rc = attach(s, other, a, "marin_actor_create", what);
            } else {
                rc = marin__err(MARIN_EEXIST, "marin_actor_create: an actor named '%s' "
                                "already exists in namespace '%s' (id %s); use get_if_exists "
                                "or another name", spec->name, s->cfg.ns, other);
            }
            goto out;
        }
    }
    if ((rc = call_sync(s, &r, 6, g, NULL, "marin_actor_create")) != MARIN_OK ||
        (freeReplyObject(r), (rc = call_sync(s, &r, 3, sa, NULL, "marin_actor_create"))) !=
            MARIN_OK)
        goto out;
    freeReplyObject(r);
    ractor *x = impl_new(id, s->prefix);
    if (!x) {
        rc = marin__err(MARIN_ENOMEM, "marin_actor_create: out of memory");
        goto out;
    }
    snprintf(x->cls, sizeof x->cls, "%s", cls->name);
    if (spec->name)
        snprintf(x->name, sizeof x->name, "%s", spec->name);
    /* The caller's reference becomes the handle's; the system one goes
     * with the submission. */
    x->created = f;
    rc = marin__rdriver_submit_to(s, t, NULL, frame, flen, 0);
    if (rc != MARIN_OK) {
        marin__free(x);
        goto out; /* f: both references still ours */
    }
    if (!spec->detached) {
        struct owned_actor *oa = marin__calloc(1, sizeof *oa);
        if (oa) {
            snprintf(oa->id, sizeof oa->id, "%s", id);
            pthread_mutex_lock(&s->actors->mu);
            oa->next = s->actors->owned;
            s->actors->owned = oa;
            pthread_mutex_unlock(&s->actors->mu);
        }
    }
    /* A creation that fails for good (no worker can host it within grace,
     * retries spent, the runtime closed) leaves a dead record, so calls
     * fail rather than wait for a host that never comes. */
    creation_watch *cw = marin__calloc(1, sizeof *cw);
    if (cw) {
        cw->s = s;
        snprintf(cw->key, sizeof cw->key, "%s", key);
        snprintf(cw->stream, sizeof cw->stream, "%s", stream);
        snprintf(cw->names, sizeof cw->names, "%sactors", s->prefix);
        snprintf(cw->name, sizeof cw->name, "%s", spec->name ? spec->name : "");
        if (marin_future_on_done(f, creation_done, cw, marin__free) != MARIN_OK)
            marin__free(cw);
    }
    f = NULL;
    a->impl = x;
    snprintf(a->id, sizeof a->id, "%s", id);
out:
    if (f) {
        marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, NULL);
        marin_future_release(f);
        marin_future_release(f);
    }
    marin__free(frame);
    marin_task_options_destroy(o);
    if (rc != MARIN_OK && claimed) {
        char names[MARIN__RKEY_MAX];
        snprintf(names, sizeof names, "%sactors", s->prefix);
        const char *d[] = {"HDEL", names, spec->name};
        marin__rconn_cmd(s->cmd, 0, 0, NULL, NULL, 3, d, NULL);
    }
    return rc;
}

static int ra_lookup(void *state, const char *name, marin_actor_t *a)
{
    marin__redis *s = state;
    char names[MARIN__RKEY_MAX];
    snprintf(names, sizeof names, "%sactors", s->prefix);
    const char *g[] = {"HGET", names, name};
    redisReply *r = NULL;
    int rc = call_sync(s, &r, 3, g, NULL, "marin_actor_lookup");
    if (rc != MARIN_OK)
        return rc;
    char id[40] = "";
    if (r->type == REDIS_REPLY_STRING)
        snprintf(id, sizeof id, "%s", r->str);
    freeReplyObject(r);
    if (!id[0])
        return marin__err(MARIN_ENOTFOUND, "marin_actor_lookup: no live actor named '%s' in "
                          "namespace '%s'", name, s->cfg.ns);
    char what[256];
    snprintf(what, sizeof what, "named '%s'", name);
    return attach(s, id, a, "marin_actor_lookup", what);
}

static int ra_from_id(void *state, const char *id, marin_actor_t *a)
{
    marin__redis *s = state;
    char what[128];
    snprintf(what, sizeof what, "with id %.60s", id);
    return attach(s, id, a, "marin_actor_from_id", what);
}

static int ra_ready(void *state, marin_actor_t *a, int64_t timeout_ms)
{
    marin__redis *s = state;
    ractor *x = a->impl;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (x->created) {
        int rc = marin_future_get(x->created, timeout_ms, NULL, NULL);
        if (rc == MARIN_ETIMEDOUT)
            return marin__err(rc, "marin_actor_ready: actor %s is still being created after "
                              "%lld ms", a->id, (long long)timeout_ms);
        if (rc != MARIN_OK)
            return marin__err(rc, "marin_actor_ready: %s", marin_future_error(x->created));
        /* Created; it may have died or be restarting since: the record says. */
    }
    /* Wait for the record to say alive. */
    char key[MARIN__RKEY_MAX];
    snprintf(key, sizeof key, "%sactor:%s", s->prefix, x->id);
    for (;;) {
        const char *av[] = {"HMGET", key, "state", "error", "code"};
        redisReply *r = NULL;
        int rc = call_sync(s, &r, 5, av, NULL, "marin_actor_ready");
        if (rc != MARIN_OK)
            return rc;
        char st[32] = "", err[512] = "";
        if (r->element[0]->type == REDIS_REPLY_STRING)
            snprintf(st, sizeof st, "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(err, sizeof err, "%s", r->element[1]->str);
        int code = r->element[2]->type == REDIS_REPLY_STRING
                       ? (int)marin__reply_i64(r->element[2])
                       : MARIN_ECANCELED;
        freeReplyObject(r);
        if (strcmp(st, "alive") == 0)
            return MARIN_OK;
        if (!st[0] || strcmp(st, "dead") == 0)
            return marin__err(code < 0 ? code : MARIN_ECANCELED, "marin_actor_ready: actor %s "
                              "is gone%s%s", a->id, err[0] ? ": " : "", err);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (timeout_ms >= 0 && spent >= timeout_ms)
            return marin__err(MARIN_ETIMEDOUT, "marin_actor_ready: actor %s is still %s after "
                              "%lld ms", a->id, st, (long long)timeout_ms);
        marin__block_begin();
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        marin__block_end();
    }
}

static int ra_call(void *state, marin_actor_t *a, struct marin__task *call)
{
    marin__redis *s = state;
    ractor *x = a->impl;
    if (atomic_load(&x->killed) && call->name[0] != '@')
        return marin__err(MARIN_ESTATE, "marin_actor_call: the actor is gone: actor %s (class "
                          "'%s') was killed", x->name[0] ? x->name : x->id, x->cls);
    char why[512];
    if (strcmp(call->name, "@kill") != 0 && dead_why(s, x->stream, why, sizeof why))
        return marin__err(MARIN_ESTATE, "marin_actor_call: the actor is gone: %s", why);
    /* An unknown method is refused here when this process knows the class
     * (as on local); else the host says so on the future. */
    const marin__actor_class_entry *cls = x->cls[0] ? marin__registry_find_actor_class(x->cls)
                                                    : NULL;
    if (cls && call->name[0] != '@' && !marin__actor_class_method(cls, call->name))
        return marin__err(MARIN_ENOTFOUND, "marin_actor_call: actor class '%s' has no "
                          "method '%s' (actor %s)", cls->name, call->name,
                          x->name[0] ? x->name : x->id);
    void *frame = NULL;
    size_t flen = 0;
    int rc = marin__rtask_encode(s->rt, call, s->cfg.max_payload, &frame, &flen);
    if (rc != MARIN_OK)
        return rc;
    rc = marin__rdriver_submit_to(s, call, x->stream, frame, flen, 1);
    marin__free(frame);
    return rc;
}

/* A control call (checkpoint, kill) through the call stream, in order
 * with the calls before it; waits for its outcome. */
static int control(marin__redis *s, marin_actor_t *a, const char *what, const char *arg,
                   const char *fn)
{
    marin_future_t *f = NULL;
    int rc = marin_actor_call(a, what, arg, arg ? strlen(arg) : 0, &f);
    if (rc != MARIN_OK)
        return marin__err(rc, "%s: %s", fn, marin_last_error());
    (void)s;
    rc = marin_future_get(f, -1, NULL, NULL);
    if (rc != MARIN_OK)
        rc = marin__err(rc, "%s: %s", fn, marin_future_error(f));
    marin_future_release(f);
    return rc;
}

static int ra_checkpoint(void *state, marin_actor_t *a)
{
    return control(state, a, "@checkpoint", NULL, "marin_actor_checkpoint");
}

static int ra_kill(void *state, marin_actor_t *a, int no_restart)
{
    marin__redis *s = state;
    ractor *x = a->impl;
    char key[MARIN__RKEY_MAX];
    snprintf(key, sizeof key, "%sactor:%s", s->prefix, x->id);
    const char *g[] = {"HGET", key, "state"};
    redisReply *r = NULL;
    int rc = call_sync(s, &r, 3, g, NULL, "marin_actor_kill");
    if (rc != MARIN_OK)
        return rc;
    int gone = r->type != REDIS_REPLY_STRING || strcmp(r->str, "dead") == 0;
    int hosted = !gone && strcmp(r->str, "alive") == 0;
    freeReplyObject(r);
    if (gone)
        return marin__err(MARIN_ESTATE, "marin_actor_kill: actor %s is already gone", a->id);
    if (no_restart) { /* one kill wins; the others find it gone */
        const char *nx[] = {"HSETNX", key, "killing", "1"};
        if ((rc = call_sync(s, &r, 4, nx, NULL, "marin_actor_kill")) != MARIN_OK)
            return rc;
        int first = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (!first)
            return marin__err(MARIN_ESTATE, "marin_actor_kill: actor %s is already gone "
                              "(killed)", a->id);
    }
    if (!hosted && no_restart) {
        /* Not hosted yet (or restarting): mark it dead; a host that is
         * building it sees that when its constructor returns. */
        char why[256];
        snprintf(why, sizeof why, "actor %s was killed before it started", a->id);
        const char *h[] = {"HSET", key, "state", "dead", "code", "-5", "error", why};
        if ((rc = call_sync(s, &r, 8, h, NULL, "marin_actor_kill")) != MARIN_OK)
            return rc;
        freeReplyObject(r);
        if (x->name[0]) {
            char names[MARIN__RKEY_MAX];
            snprintf(names, sizeof names, "%sactors", s->prefix);
            const char *d[] = {"HDEL", names, x->name};
            if (call_sync(s, &r, 3, d, NULL, "marin_actor_kill") == MARIN_OK)
                freeReplyObject(r);
        }
        if (x->created)
            marin_future_cancel(x->created);
        atomic_store(&x->killed, 1);
        return MARIN_OK;
    }
    rc = control(s, a, "@kill", no_restart ? "1" : "0", "marin_actor_kill");
    if (no_restart && rc == MARIN_ECANCELED) {
        /* This kill holds the "killing" token, and its control call was
         * answered by the reaper of a dead actor (the record turned dead
         * before the host read it): the actor is dead, by this kill. */
        rc = MARIN_OK;
    }
    if (rc == MARIN_OK && no_restart)
        atomic_store(&x->killed, 1);
    return rc;
}

static void ra_release(void *state, marin_actor_t *a)
{
    (void)state;
    ractor *x = a->impl;
    if (!x)
        return;
    marin_future_release(x->created);
    marin__free(x);
    a->impl = NULL;
}

const marin__actor_ops marin__redis_actor_ops = {
    .create = ra_create,
    .lookup = ra_lookup,
    .from_id = ra_from_id,
    .ready = ra_ready,
    .call = ra_call,
    .checkpoint = ra_checkpoint,
    .kill = ra_kill,
    .release = ra_release,
};
