/* Actors on the local backend, the ops: create (names, resources, threads),
 * lookup, ready, calls, checkpoints on request, kill, and the runtime's list
 * of actors (stop, join, free at close). One actor's threads, restarts and
 * checkpoints are in local_actor_host.c. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "fail.h"
#include "local_actor_internal.h"

/* ---- ops ---- */

static struct local_actors *actors_of(void *state)
{
    return ((local_state *)state)->actors;
}

static void attach(marin_actor_t *h, lactor *a)
{
    atomic_fetch_add(&a->refs, 1);
    h->impl = a;
    snprintf(h->id, sizeof h->id, "%s", a->id);
}

/* Take actors that are gone and whose threads all left off the list (the
 * caller holds as->mu); reap_finish joins and frees them after the caller
 * let go of as->mu, since a destructor may call back into marin. */
static lactor *reap_take_locked(struct local_actors *as)
{
    lactor *gone_list = NULL;
    for (lactor **p = &as->list; *p;) {
        lactor *a = *p;
        pthread_mutex_lock(&a->mu);
        int gone = a->stop && a->nlive == 0 && !a->named;
        pthread_mutex_unlock(&a->mu);
        if (!gone) {
            p = &a->next;
            continue;
        }
        *p = a->next;
        a->next = gone_list;
        gone_list = a;
    }
    return gone_list;
}

static void reap_finish(lactor *gone_list)
{
    while (gone_list) {
        lactor *a = gone_list;
        gone_list = a->next;
        for (size_t i = 0; i < a->nthreads; i++)
            pthread_join(a->threads[i], NULL);
        a->nthreads = 0;
        marin__la_destroy_instance(a);
        marin__local_unhold(a->s, &a->hold);
        marin__la_lactor_unref(a);
    }
}

static lactor *find_named_locked(struct local_actors *as, const char *name)
{
    for (lactor *a = as->list; a; a = a->next)
        if (a->named && a->spec.name && strcmp(a->spec.name, name) == 0)
            return a;
    return NULL;
}

static int actor_create(void *state, const marin__actor_class_entry *cls,
                        const marin__actor_spec *spec, const void *arg, size_t len,
                        marin_actor_t *h)
{
    local_state *s = state;
    struct local_actors *as = s->actors;
    lactor *a = marin__calloc(1, sizeof *a);
    if (!a)
        return marin__err(MARIN_ENOMEM, "marin_actor_create: out of memory");
    atomic_init(&a->refs, 2); /* the list's, and this call's until it returns */
    a->s = s;
    a->cls = cls;
    a->spec = *spec;
    a->spec.name = spec->name ? marin__strdup(spec->name) : NULL;
    a->ctor_arg = len ? marin__memdup(arg, len) : NULL;
    a->ctor_len = len;
    size_t n = (size_t)spec->max_concurrency;
    a->inflight = marin__calloc(n, sizeof *a->inflight);
    a->threads = marin__calloc(n, sizeof *a->threads);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->work_cv, NULL);
    pthread_cond_init(&a->state_cv, NULL);
    char who[320];
    snprintf(who, sizeof who, "actor %s (class '%s')",
             spec->name ? spec->name : "(anonymous)", cls->name);
    int rc = MARIN_OK;
    if ((spec->name && !a->spec.name) || (len && !a->ctor_arg) || !a->inflight ||
        !a->threads)
        rc = marin__err(MARIN_ENOMEM, "marin_actor_create: out of memory for an actor "
                        "of class '%s'", cls->name);
    else
        rc = marin__local_check_feasible(s, &spec->res, "marin_actor_create", who);
    if (rc != MARIN_OK) {
        atomic_store(&a->refs, 1);
        marin__la_lactor_unref(a);
        return rc;
    }

    pthread_mutex_lock(&as->mu);
    if (as->stopping) {
        pthread_mutex_unlock(&as->mu);
        atomic_store(&a->refs, 1);
        marin__la_lactor_unref(a);
        return marin__err(MARIN_ESTATE, "marin_actor_create: the runtime is closing");
    }
    lactor *gone_list = reap_take_locked(as);
    lactor *old = spec->name ? find_named_locked(as, spec->name) : NULL;
    if (old) {
        rc = MARIN_OK;
        if (!spec->get_if_exists)
            rc = marin__err(MARIN_EEXIST, "marin_actor_create: an actor named '%s' already "
                            "exists (%s, class '%s'); use get_if_exists to share it",
                            spec->name, old->id, old->cls->name);
        else if (old->cls != cls)
            rc = marin__err(MARIN_EEXIST, "marin_actor_create: the actor named '%s' has "
                            "class '%s', not '%s'", spec->name, old->cls->name, cls->name);
        else
            attach(h, old);
        pthread_mutex_unlock(&as->mu);
        reap_finish(gone_list);
        atomic_store(&a->refs, 1);
        marin__la_lactor_unref(a);
        return rc;
    }
    struct marin__task idt = {.seq = ++as->next_id};
    char rid[48];
    marin__task_format_id(s->rt, &idt, rid, sizeof rid);
    snprintf(a->id, sizeof a->id, "actor-%s", rid);
    a->named = spec->name != NULL;
    a->next = as->list; /* the name is taken from here on */
    as->list = a;
    pthread_mutex_unlock(&as->mu);
    reap_finish(gone_list);

    snprintf(who, sizeof who, "actor %s (class '%s')", marin__la_shown(a), cls->name);
    rc = marin__local_hold(s, &spec->res, -1, who, &a->hold);
    pthread_mutex_lock(&a->mu);
    if (rc == MARIN_OK) {
        a->ngpus = a->hold.w.ngpus;
        memcpy(a->gpu_ids, a->hold.w.gpu_ids, a->ngpus * sizeof *a->gpu_ids);
    }
    if (rc == MARIN_OK && a->stop) /* the runtime began to close meanwhile */
        rc = marin__err(MARIN_ESTATE, "marin_actor_create: the runtime closed while %s "
                        "was placed", who);
    for (size_t i = 0; rc == MARIN_OK && i < n; i++) {
        thread_arg *ta = marin__malloc(sizeof *ta);
        if (ta) {
            ta->a = a;
            ta->slot = i;
        }
        if (!ta || pthread_create(&a->threads[i], NULL, marin__la_actor_main, ta) != 0) {
            marin__free(ta);
            rc = marin__err(MARIN_ENOMEM, "marin_actor_create: cannot start thread %zu "
                            "of %zu for %s", i + 1, n, who);
            break;
        }
        a->nthreads++;
        a->nlive++;
    }
    if (rc != MARIN_OK) {
        /* Threads already started leave at once; reap (or close) joins them.
         * The hold goes back before the actor can be reaped. */
        pthread_mutex_unlock(&a->mu);
        marin__local_unhold(s, &a->hold);
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        a->state = A_DEAD;
        if (!a->why)
            marin__la_set_reason_locked(a, rc, "actor %s could not be created", marin__la_shown(a));
        pthread_cond_broadcast(&a->work_cv);
        pthread_cond_broadcast(&a->state_cv);
        pthread_mutex_unlock(&a->mu);
        marin__la_unname(a);
        marin__la_lactor_unref(a); /* this call's reference */
        return rc;
    }
    pthread_mutex_unlock(&a->mu);
    attach(h, a);
    marin__la_lactor_unref(a); /* this call's reference: the handle holds one now */
    return MARIN_OK;
}

static int find_by(void *state, const char *key, int by_id, marin_actor_t *h)
{
    struct local_actors *as = actors_of(state);
    pthread_mutex_lock(&as->mu);
    lactor *found = NULL;
    if (by_id) {
        for (lactor *a = as->list; a && !found; a = a->next)
            if (strcmp(a->id, key) == 0)
                found = a;
    } else {
        found = find_named_locked(as, key);
    }
    int dead = 0;
    if (found) {
        pthread_mutex_lock(&found->mu);
        dead = found->state == A_DEAD || found->state == A_DYING ||
               found->state == A_FAILED;
        pthread_mutex_unlock(&found->mu);
    }
    if (found && !dead)
        attach(h, found);
    pthread_mutex_unlock(&as->mu);
    if (found && !dead)
        return MARIN_OK;
    if (by_id)
        return marin__err(MARIN_ENOTFOUND, "marin_actor_from_id: no live actor with id "
                          "'%s' in this runtime%s", key, dead ? " (it is dead)" : "");
    return marin__err(MARIN_ENOTFOUND, "marin_actor_lookup: no live actor named '%s' in "
                      "this runtime", key);
}

static int actor_lookup(void *state, const char *name, marin_actor_t *h)
{
    return find_by(state, name, 0, h);
}

static int actor_from_id(void *state, const char *id, marin_actor_t *h)
{
    return find_by(state, id, 1, h);
}

static int actor_ready(void *state, marin_actor_t *h, int64_t timeout_ms)
{
    (void)state;
    lactor *a = h->impl;
    int64_t deadline = timeout_ms < 0 ? -1 : marin__now_ms() + timeout_ms;
    pthread_mutex_lock(&a->mu);
    while ((a->state == A_STARTING || a->state == A_RESTARTING) && !a->stop) {
        if (deadline >= 0) {
            int64_t left = deadline - marin__now_ms();
            if (left <= 0)
                break;
            struct timespec ts;
            marin__realtime_after_ms(left, &ts);
            pthread_cond_timedwait(&a->state_cv, &a->mu, &ts);
        } else {
            pthread_cond_wait(&a->state_cv, &a->mu);
        }
    }
    int rc;
    if (a->state == A_READY && !a->stop)
        rc = MARIN_OK;
    else if (a->stop && a->state != A_FAILED)
        rc = marin__err(a->code ? a->code : MARIN_ECANCELED, "marin_actor_ready: actor %s "
                        "is gone: %s", marin__la_shown(a), a->why ? a->why : "the runtime closed");
    else if (a->state == A_STARTING || a->state == A_RESTARTING)
        rc = marin__err(MARIN_ETIMEDOUT, "marin_actor_ready: actor %s is still %s after "
                        "%lld ms", marin__la_shown(a), a->state == A_STARTING ? "starting"
                                                                    : "restarting",
                        (long long)timeout_ms);
    else
        rc = marin__err(a->code ? a->code : MARIN_ECANCELED, "marin_actor_ready: %s",
                        marin__la_reason(a));
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* Queue @p t (a call or a checkpoint request). */
static int enqueue(lactor *a, struct marin__task *t, const char *fn)
{
    pthread_mutex_lock(&a->mu);
    if (a->state == A_FAILED) {
        char why[1024];
        snprintf(why, sizeof why, "%s", marin__la_reason(a));
        int code = a->code;
        pthread_mutex_unlock(&a->mu);
        /* accepted, and failed at once with the constructor's error */
        marin__la_call_fail(t, code, why);
        return MARIN_OK;
    }
    if (a->state == A_DEAD || a->state == A_DYING || a->stop) {
        int rc = a->why ? marin__err(MARIN_ESTATE, "%s: the actor is gone: %s", fn, a->why)
                        : marin__err(MARIN_ESTATE, "%s: actor %s (class '%s') is gone: the "
                                     "runtime closed", fn, marin__la_shown(a), a->cls->name);
        pthread_mutex_unlock(&a->mu);
        return rc;
    }
    t->next = NULL;
    if (a->tail)
        a->tail->next = t;
    else
        a->head = t;
    a->tail = t;
    int wake = marin__la_can_take_locked(a);
    pthread_mutex_unlock(&a->mu);
    if (wake)
        pthread_cond_signal(&a->work_cv);
    return MARIN_OK;
}

static int actor_call(void *state, marin_actor_t *h, struct marin__task *t)
{
    (void)state;
    lactor *a = h->impl;
    const marin__actor_method *m = marin__actor_class_method(a->cls, t->name);
    if (!m)
        return marin__err(MARIN_ENOTFOUND, "marin_actor_call: actor class '%s' has no "
                          "method '%s' (actor %s)", a->cls->name, t->name, marin__la_shown(a));
    t->shape = (void *)m;
    return enqueue(a, t, "marin_actor_call");
}

static int actor_checkpoint(void *state, marin_actor_t *h)
{
    (void)state;
    lactor *a = h->impl;
    if (!a->cls->save)
        return marin__err(MARIN_EUNSUPPORTED, "marin_actor_checkpoint: actor class '%s' "
                          "has no checkpoint hooks", a->cls->name);
    marin_runtime_t *rt = a->s->rt;
    marin_future_t *f = marin__future_new(rt);
    if (!f)
        return marin__err(MARIN_ENOMEM, "marin_actor_checkpoint: out of memory");
    f->task.name = "__checkpoint__";
    f->task.shape = CHECKPOINT_MARK;
    int rc = enqueue(a, &f->task, "marin_actor_checkpoint");
    if (rc != MARIN_OK) {
        atomic_store(&f->refs, 1);
        marin_future_release(f);
        return rc;
    }
    rc = marin_future_get(f, -1, NULL, NULL);
    if (rc != MARIN_OK)
        rc = marin__err(rc, "marin_actor_checkpoint: %s", marin_future_error(f));
    marin_future_release(f);
    return rc;
}

static int actor_kill(void *state, marin_actor_t *h, int no_restart)
{
    (void)state;
    lactor *a = h->impl;
    pthread_mutex_lock(&a->mu);
    if (a->state == A_DEAD || a->state == A_DYING || a->stop) {
        int rc = marin__err(MARIN_ESTATE, "marin_actor_kill: actor %s is already gone: %s",
                            marin__la_shown(a), a->why ? a->why : "the runtime closed");
        pthread_mutex_unlock(&a->mu);
        return rc;
    }
    a->epoch++;
    struct marin__task *pending = marin__la_take_pending_locked(a);
    char why[512];
    int restart = !no_restart && marin__la_restarts_left(a) && a->state != A_FAILED;
    if (restart) {
        a->restarts++;
        a->state = a->state == A_STARTING ? A_STARTING : A_RESTARTING;
        snprintf(why, sizeof why, "cancelled: actor %s (class '%s') was killed and "
                 "restarts", marin__la_shown(a), a->cls->name);
    } else {
        marin__la_set_reason_locked(a, MARIN_ECANCELED, "actor %s (class '%s') was killed",
                          marin__la_shown(a), a->cls->name);
        a->state = a->state == A_FAILED ? A_DEAD : A_DYING;
        if (a->state == A_DEAD) /* a failed actor has no instance and no threads */
            a->stop = 1;
        snprintf(why, sizeof why, "cancelled: %s", marin__la_reason(a));
    }
    size_t k;
    marin_future_t **running = marin__la_grab_inflight_locked(a, why, &k);
    pthread_cond_broadcast(&a->work_cv);
    pthread_cond_broadcast(&a->state_cv);
    pthread_mutex_unlock(&a->mu);
    if (!restart)
        marin__la_unname(a);
    marin__la_fail_list(pending, MARIN_ECANCELED, why);
    marin__la_cancel_grabbed(running, k, why);
    return MARIN_OK;
}

static void actor_release(void *state, marin_actor_t *h)
{
    (void)state;
    marin__la_lactor_unref(h->impl);
    h->impl = NULL;
}

const marin__actor_ops marin__local_actor_ops = {
    .create = actor_create,
    .lookup = actor_lookup,
    .from_id = actor_from_id,
    .ready = actor_ready,
    .call = actor_call,
    .checkpoint = actor_checkpoint,
    .kill = actor_kill,
    .release = actor_release,
};

/* ---- the runtime's actors ---- */

int marin__local_actors_init(local_state *s)
{
    struct local_actors *as = marin__calloc(1, sizeof *as);
    if (!as)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    pthread_mutex_init(&as->mu, NULL);
    s->actors = as;
    return MARIN_OK;
}

void marin__local_actors_stop(local_state *s)
{
    struct local_actors *as = s->actors;
    if (!as)
        return;
    pthread_mutex_lock(&as->mu);
    as->stopping = 1;
    for (lactor *a = as->list; a; a = a->next) {
        pthread_mutex_lock(&a->mu);
        a->epoch++;
        a->stop = 1;
        if (a->state != A_DEAD && a->state != A_FAILED)
            marin__la_set_reason_locked(a, MARIN_ECANCELED, "the runtime closed");
        struct marin__task *pending = marin__la_take_pending_locked(a);
        static const char ran[] = "cancelled: the runtime closed while the actor call ran";
        size_t k;
        marin_future_t **running = marin__la_grab_inflight_locked(a, ran, &k);
        pthread_cond_broadcast(&a->work_cv);
        pthread_cond_broadcast(&a->state_cv);
        pthread_mutex_unlock(&a->mu);
        marin__la_fail_list(pending, MARIN_ECANCELED,
                  "cancelled: the runtime closed before the actor call ran");
        marin__la_cancel_grabbed(running, k, ran);
    }
    pthread_mutex_unlock(&as->mu);
}

void marin__local_actors_join(local_state *s)
{
    struct local_actors *as = s->actors;
    if (!as)
        return;
    /* Nothing adds to the list once stopping is set. */
    for (lactor *a = as->list; a; a = a->next) {
        pthread_mutex_lock(&a->mu);
        size_t n = a->nthreads;
        pthread_mutex_unlock(&a->mu);
        for (size_t i = 0; i < n; i++)
            pthread_join(a->threads[i], NULL);
        pthread_mutex_lock(&a->mu);
        a->nthreads = 0;
        struct marin__task *left = marin__la_take_pending_locked(a); /* replays queued late */
        pthread_mutex_unlock(&a->mu);
        marin__la_fail_list(left, MARIN_ECANCELED,
                  "cancelled: the runtime closed before the actor call ran");
        marin__la_destroy_instance(a);
        marin__local_unhold(s, &a->hold);
    }
}

void marin__local_actors_fini(local_state *s)
{
    struct local_actors *as = s->actors;
    if (!as)
        return;
    while (as->list) {
        lactor *a = as->list;
        as->list = a->next;
        for (size_t i = 0; i < a->nthreads; i++) /* init failed halfway */
            pthread_join(a->threads[i], NULL);
        a->nthreads = 0;
        marin__la_destroy_instance(a);
        marin__free(a->hold.sh.demand);
        a->hold.sh.demand = NULL;
        a->s = NULL;
        marin__la_lactor_unref(a);
    }
    pthread_mutex_destroy(&as->mu);
    marin__free(as);
    s->actors = NULL;
}
