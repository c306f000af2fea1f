/* Actors on the local backend: each actor is a mailbox (a FIFO of calls)
 * served by its own max_concurrency threads, so actors never take task
 * threads. The first thread runs the constructor; calls wait until it is
 * done.
 *
 * Crashes and kills move the actor through RESTARTING (or DYING): the epoch
 * counter goes up, so a method still running from before is known to be
 * lost when it returns; once no method runs, one thread rebuilds the
 * instance (restore from the last checkpoint, else the constructor) or
 * retires it. Checkpoints are stored before the call that triggered them is
 * acknowledged, so an acknowledged call is never lost to a restart. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "local_internal.h"

enum { A_STARTING, A_READY, A_RESTARTING, A_DYING, A_FAILED, A_DEAD };

/* t->shape of a queued checkpoint request (calls carry their method). */
static const char checkpoint_mark;
#define CHECKPOINT_MARK ((void *)&checkpoint_mark)

typedef struct lactor {
    struct lactor *next;          /* the runtime's list, under actors->mu */
    atomic_int refs;              /* the list's one plus one per handle */
    local_state *s;
    const marin__actor_class_entry *cls;
    marin__actor_spec spec;       /* name owned */
    void *ctor_arg;
    size_t ctor_len;
    char id[64];

    pthread_mutex_t mu;
    pthread_cond_t work_cv;       /* actor threads wait for calls and states */
    pthread_cond_t state_cv;      /* ready() and thread exits wait here */
    int state;
    int code;                     /* why FAILED / DYING / DEAD */
    char *why;
    void *self;
    int has_self;
    int busy;                     /* a thread is rebuilding or retiring it */
    int saving;                   /* a checkpoint hook runs (one at a time) */
    marin_future_t *hook_fut;     /* carrier of the running hook, if any */
    struct marin__task *head, *tail; /* pending calls */
    struct marin__task **inflight;   /* per thread slot */
    size_t running;
    uint64_t epoch;
    void *ckpt;
    size_t ckpt_len;
    int has_ckpt;
    int64_t since_ckpt;
    int restarts;
    int named;                    /* its name is still taken */
    int stop;                     /* threads leave */
    pthread_t *threads;
    size_t nthreads, nlive;
    local_hold hold;
} lactor;

struct local_actors {
    pthread_mutex_t mu;
    lactor *list;
    uint64_t next_id;
    int stopping;
};

typedef struct thread_arg {
    lactor *a;
    size_t slot;
} thread_arg;

static void lactor_unref(lactor *a)
{
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
        return;
    marin__free(a->spec.name);
    marin__free(a->ctor_arg);
    marin__free(a->ckpt);
    marin__free(a->why);
    marin__free(a->inflight);
    marin__free(a->threads);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->work_cv);
    pthread_cond_destroy(&a->state_cv);
    marin__free(a);
}

static const char *shown(const lactor *a)
{
    return a->spec.name ? a->spec.name : a->id;
}

/* ---- finishing calls ---- */

static void call_finish(struct marin__task *t, unsigned state, int code, void *result,
                        size_t len, const char *msg)
{
    marin_future_t *f = marin__task_future(t);
    marin__future_finish(f, state, code, result, len, msg);
    marin__task_cleanup(t);
    marin_future_release(f); /* the backend's reference */
}

static void call_fail(struct marin__task *t, int code, const char *msg)
{
    call_finish(t, code == MARIN_ECANCELED ? MARIN_FUTURE_CANCELLED : MARIN_FUTURE_FAILED,
                code, NULL, 0, msg);
}

/* Take every pending call off the mailbox (caller holds a->mu). */
static struct marin__task *take_pending_locked(lactor *a)
{
    struct marin__task *list = a->head;
    a->head = a->tail = NULL;
    return list;
}

static void fail_list(struct marin__task *list, int code, const char *msg)
{
    while (list) {
        struct marin__task *t = list;
        list = t->next;
        call_fail(t, code, msg);
    }
}

static void set_reason_locked(lactor *a, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_reason_locked(lactor *a, int code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *copy = marin__strdup(buf);
    if (copy) {
        marin__free(a->why);
        a->why = copy;
    }
    a->code = code;
}

static const char *reason(const lactor *a)
{
    return a->why ? a->why : marin_strerror(a->code);
}

/* Give up the name (so another actor may take it). */
static void unname(lactor *a)
{
    struct local_actors *as = a->s->actors;
    pthread_mutex_lock(&as->mu);
    a->named = 0;
    pthread_mutex_unlock(&as->mu);
}

static int restarts_left(const lactor *a)
{
    return a->spec.max_restarts < 0 || a->restarts < a->spec.max_restarts;
}

/* ---- building, rebuilding and retiring the instance (no lock held) ---- */

static int build(lactor *a, int from_checkpoint, char **msg)
{
    void *result = NULL, *self = NULL;
    size_t rlen = 0;
    int rc;
    if (from_checkpoint)
        rc = marin__hook_execute(a->s->rt, a->cls, MARIN__HOOK_RESTORE, a->ckpt,
                                 a->ckpt_len, &self, &result, &rlen, msg, &a->hook_fut,
                                 &a->mu);
    else
        rc = marin__hook_execute(a->s->rt, a->cls, MARIN__HOOK_INIT, a->ctor_arg,
                                 a->ctor_len, &self, &result, &rlen, msg, &a->hook_fut,
                                 &a->mu);
    marin__free(result);
    if (rc == MARIN_OK) {
        a->self = self;
        a->has_self = 1;
    }
    return rc;
}

static void destroy_instance(lactor *a)
{
    if (a->has_self && a->cls->fini)
        a->cls->fini(a->self);
    a->has_self = 0;
    a->self = NULL;
}

/* Store a checkpoint (called with a->mu held; drops it meanwhile). The
 * caller counts in a->running, so no restart can drop the instance under
 * the hook; if the actor crashed or was killed meanwhile, the checkpoint is
 * of a lost instance and is not kept (MARIN_EWORKER). */
static int checkpoint_locked(lactor *a, char **msg)
{
    /* One at a time, in the order they start: a save that began earlier
     * (and saw older state) must not be stored over a later one. */
    while (a->saving)
        pthread_cond_wait(&a->state_cv, &a->mu);
    a->saving = 1;
    void *self = a->self;
    uint64_t epoch = a->epoch;
    pthread_mutex_unlock(&a->mu);
    void *bytes = NULL;
    size_t len = 0;
    int rc = marin__hook_execute(a->s->rt, a->cls, MARIN__HOOK_SAVE, NULL, 0, &self, &bytes,
                                 &len, msg, &a->hook_fut, &a->mu);
    pthread_mutex_lock(&a->mu);
    a->saving = 0;
    pthread_cond_broadcast(&a->state_cv);
    if (rc == MARIN_OK && epoch != a->epoch) {
        marin__free(bytes);
        return MARIN_EWORKER;
    }
    if (rc == MARIN_OK) {
        marin__free(a->ckpt);
        a->ckpt = bytes;
        a->ckpt_len = len;
        a->has_ckpt = 1;
        a->since_ckpt = 0;
    }
    return rc;
}

/* Constructor failed or a rebuild failed: the actor is FAILED for good. */
static void fail_locked(lactor *a, int rc, const char *what, const char *msg)
{
    set_reason_locked(a, rc, "actor %s (class '%s') %s: %s", shown(a), a->cls->name, what,
                      msg ? msg : marin_strerror(rc));
    a->state = A_FAILED;
    a->stop = 1;
}

/* Runs on one actor thread once nothing else runs: rebuild or retire. */
static void settle_locked(lactor *a)
{
    a->busy = 1;
    int restarting = a->state == A_RESTARTING;
    pthread_mutex_unlock(&a->mu);
    destroy_instance(a); /* the dead host's memory: nothing of it survives */
    int rc = MARIN_OK;
    char *msg = NULL;
    if (restarting)
        rc = build(a, a->has_ckpt && a->cls->restore, &msg);
    pthread_mutex_lock(&a->mu);
    a->busy = 0;
    struct marin__task *drop = NULL;
    if (restarting && rc == MARIN_OK && a->state == A_DYING) {
        marin__free(msg); /* killed while it was rebuilt: settle again */
        return;
    }
    if (restarting && rc == MARIN_OK) {
        a->state = A_READY;
        char of[32] = "unlimited";
        if (a->spec.max_restarts >= 0)
            snprintf(of, sizeof of, "%d", a->spec.max_restarts);
        marin__log(a->s->rt, MARIN_LOG_WARN, "actor %s (class '%s') restarted %s (restart "
                   "%d, max_restarts %s)", shown(a), a->cls->name,
                   a->has_ckpt && a->cls->restore ? "from its last checkpoint"
                                                  : "by its constructor",
                   a->restarts, of);
    } else {
        if (restarting)
            fail_locked(a, rc, "could not be rebuilt after a restart", msg);
        else
            a->state = A_DEAD;
        a->stop = 1;
        drop = take_pending_locked(a);
    }
    marin__free(msg);
    pthread_cond_broadcast(&a->work_cv);
    pthread_cond_broadcast(&a->state_cv);
    int gone = a->stop;
    char why[1024];
    snprintf(why, sizeof why, "%s", reason(a));
    int code = a->code;
    pthread_mutex_unlock(&a->mu);
    if (gone) {
        unname(a);
        marin__local_unhold(a->s, &a->hold);
        fail_list(drop, code, why);
    }
    pthread_mutex_lock(&a->mu);
}

/* A method reported that its host died: start a restart (or the end). */
static void crashed_locked(lactor *a, const char *method)
{
    a->epoch++;
    if (restarts_left(a)) {
        a->restarts++;
        a->state = A_RESTARTING;
        marin__log(a->s->rt, MARIN_LOG_WARN, "actor %s (class '%s') died in method '%s'; "
                   "restarting", shown(a), a->cls->name, method);
    } else {
        set_reason_locked(a, MARIN_EWORKER, "actor %s (class '%s') died in method '%s' and "
                          "has no restarts left (max_restarts %d)", shown(a),
                          a->cls->name, method, a->spec.max_restarts);
        a->state = A_DYING;
    }
}

/* ---- the actor threads ---- */

/* Can this thread start the head of the mailbox now? */
static int can_take_locked(const lactor *a)
{
    if (a->state != A_READY || !a->head || a->running >= (size_t)a->spec.max_concurrency)
        return 0;
    /* a checkpoint request waits for the calls before it to finish */
    return a->head->shape != CHECKPOINT_MARK || a->running == 0;
}

static void run_checkpoint_request(lactor *a, struct marin__task *t)
{
    char *msg = NULL;
    a->running++;
    int rc = a->cls->save ? checkpoint_locked(a, &msg) : MARIN_EUNSUPPORTED;
    a->running--;
    pthread_cond_broadcast(&a->work_cv);
    if (rc == MARIN_EWORKER && !msg)
        msg = marin__strdup("the actor was killed or crashed while the checkpoint was "
                            "taken");
    pthread_mutex_unlock(&a->mu);
    if (rc == MARIN_OK) {
        call_finish(t, MARIN_FUTURE_SUCCEEDED, MARIN_OK, NULL, 0, NULL);
    } else {
        char text[1024];
        snprintf(text, sizeof text, "checkpoint of actor %s (class '%s') failed: %s",
                 shown(a), a->cls->name, msg ? msg : marin_strerror(rc));
        call_fail(t, rc, text);
    }
    marin__free(msg);
    pthread_mutex_lock(&a->mu);
}

/* Run one call (a->mu held on entry and exit). */
static void run_call(lactor *a, size_t slot, struct marin__task *t)
{
    marin_future_t *f = marin__task_future(t);
    unsigned pending = MARIN_FUTURE_PENDING;
    if (!atomic_compare_exchange_strong(&f->state, &pending, MARIN_FUTURE_RUNNING)) {
        pthread_mutex_unlock(&a->mu); /* cancelled while queued */
        marin__task_cleanup(t);
        marin_future_release(f);
        pthread_mutex_lock(&a->mu);
        return;
    }
    const marin__actor_method *m = t->shape;
    uint64_t epoch = a->epoch;
    void *self = a->self;
    a->running++;
    a->inflight[slot] = t;
    pthread_mutex_unlock(&a->mu);

    void *result = NULL;
    size_t len = 0;
    char *msg = NULL;
    int died = 0;
    int rc = marin__method_execute(a->s->rt, t, m->fn, self, &result, &len, &msg, &died);

    pthread_mutex_lock(&a->mu);
    char text[1200];
    int replay = 0;
    if (rc == MARIN_OK && !died && epoch == a->epoch && a->spec.checkpoint_every > 0 &&
        ++a->since_ckpt >= a->spec.checkpoint_every) {
        /* Before acknowledging, and still counted as running: a restart must
         * neither lose an acknowledged call nor drop the instance under the
         * hook. */
        char *cmsg = NULL;
        int crc = checkpoint_locked(a, &cmsg);
        if (crc != MARIN_OK && crc != MARIN_EWORKER) {
            /* Not durable, so not acknowledged: a restart would lose it. */
            marin__free(result);
            result = NULL;
            marin__free(msg);
            char buf[900];
            snprintf(buf, sizeof buf, "the method succeeded but the automatic checkpoint "
                     "after it failed, so a restart could lose its effect: %s",
                     cmsg ? cmsg : marin_strerror(crc));
            msg = marin__strdup(buf);
            rc = crc;
        }
        marin__free(cmsg);
    }
    a->running--;
    a->inflight[slot] = NULL;
    pthread_cond_broadcast(&a->work_cv); /* a settle or checkpoint may wait */
    if (epoch != a->epoch || died) {
        /* The instance it ran on is gone (killed, or a crash here or in a
         * method beside it, maybe during its checkpoint). Kill already
         * finished the future. */
        int own = died && epoch == a->epoch;
        if (own)
            crashed_locked(a, t->name);
        marin__free(result);
        result = NULL;
        if ((m->flags & MARIN_METHOD_IDEMPOTENT) && a->state == A_RESTARTING &&
            !a->stop && !marin__state_done(atomic_load(&f->state))) {
            unsigned running = MARIN_FUTURE_RUNNING;
            atomic_compare_exchange_strong(&f->state, &running, MARIN_FUTURE_PENDING);
            t->next = a->head; /* replayed first, after the restart */
            a->head = t;
            if (!a->tail)
                a->tail = t;
            replay = 1;
        } else {
            snprintf(text, sizeof text, "call '%s' of actor %s (class '%s') was lost: the "
                     "actor's host died while it ran%s", t->name, shown(a), a->cls->name,
                     own ? "" : " (in another call)");
            rc = MARIN_EWORKER;
        }
    }
    if (replay) {
        marin__free(msg);
        return;
    }
    pthread_mutex_unlock(&a->mu);
    if (rc == MARIN_OK) {
        call_finish(t, MARIN_FUTURE_SUCCEEDED, MARIN_OK, result, len, NULL);
    } else if (rc == MARIN_EWORKER) {
        call_fail(t, rc, text);
    } else {
        snprintf(text, sizeof text, "call '%s' of actor %s (class '%s') failed: %s",
                 t->name, shown(a), a->cls->name, msg ? msg : marin_strerror(rc));
        call_fail(t, rc, text);
    }
    marin__free(msg);
    pthread_mutex_lock(&a->mu);
}

static void *actor_main(void *p)
{
    thread_arg *arg = p;
    lactor *a = arg->a;
    size_t slot = arg->slot;
    marin__free(arg);
    pthread_mutex_lock(&a->mu);
    if (slot == 0 && a->state == A_STARTING) {
        a->busy = 1; /* no settle while the constructor runs */
        pthread_mutex_unlock(&a->mu);
        char *msg = NULL;
        int rc = build(a, 0, &msg);
        pthread_mutex_lock(&a->mu);
        a->busy = 0;
        struct marin__task *drop = NULL;
        int failed = 0;
        if (rc == MARIN_OK && a->state == A_STARTING) {
            a->state = A_READY;
        } else if (rc != MARIN_OK && a->state == A_STARTING) {
            fail_locked(a, rc, "failed in its constructor", msg);
            drop = take_pending_locked(a);
            failed = 1;
        }
        char why[1024];
        snprintf(why, sizeof why, "%s", reason(a));
        pthread_cond_broadcast(&a->work_cv);
        pthread_cond_broadcast(&a->state_cv);
        marin__free(msg);
        if (failed) {
            int code = a->code;
            pthread_mutex_unlock(&a->mu);
            unname(a);
            marin__local_unhold(a->s, &a->hold);
            fail_list(drop, code, why);
            pthread_mutex_lock(&a->mu);
        }
    }
    for (;;) {
        while (!a->stop && !can_take_locked(a) &&
               !((a->state == A_RESTARTING || a->state == A_DYING) && a->running == 0 &&
                 !a->busy))
            pthread_cond_wait(&a->work_cv, &a->mu);
        if (a->stop)
            break;
        if (a->state == A_RESTARTING || a->state == A_DYING) {
            settle_locked(a);
            continue;
        }
        struct marin__task *t = a->head;
        a->head = t->next;
        if (!a->head)
            a->tail = NULL;
        t->next = NULL;
        if (t->shape == CHECKPOINT_MARK)
            run_checkpoint_request(a, t);
        else
            run_call(a, slot, t);
    }
    a->nlive--;
    pthread_cond_broadcast(&a->state_cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Take references on the calls running now, to cancel them once a->mu is
 * released (*n of them). Out of memory: cancel them here, under the lock. */
static marin_future_t **grab_inflight_locked(lactor *a, const char *why, size_t *n)
{
    size_t cap = (size_t)a->spec.max_concurrency;
    marin_future_t **running = marin__calloc(cap + 1, sizeof *running);
    *n = 0;
    for (size_t i = 0; i <= cap; i++) {
        /* the method slots, then the running hook (constructor, checkpoint) */
        marin_future_t *f = i < cap ? (a->inflight[i] ? marin__task_future(a->inflight[i])
                                                       : NULL)
                                    : a->hook_fut;
        if (!f)
            continue;
        if (running) {
            running[(*n)++] = f;
            marin_future_retain(f);
        } else {
            marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0, why);
            atomic_store(&f->task.cancel, 1);
        }
    }
    return running;
}

/* Finish first, then tell the methods: one that stops at once must not win
 * with a result. */
static void cancel_grabbed(marin_future_t **running, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++) {
        marin__future_finish(running[i], MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0,
                             why);
        atomic_store(&running[i]->task.cancel, 1);
        marin_future_release(running[i]);
    }
    marin__free(running);
}

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
        destroy_instance(a);
        marin__local_unhold(a->s, &a->hold);
        lactor_unref(a);
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
        lactor_unref(a);
        return rc;
    }

    pthread_mutex_lock(&as->mu);
    if (as->stopping) {
        pthread_mutex_unlock(&as->mu);
        atomic_store(&a->refs, 1);
        lactor_unref(a);
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
        lactor_unref(a);
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

    snprintf(who, sizeof who, "actor %s (class '%s')", shown(a), cls->name);
    rc = marin__local_hold(s, &spec->res, -1, who, &a->hold);
    pthread_mutex_lock(&a->mu);
    if (rc == MARIN_OK && a->stop) /* the runtime began to close meanwhile */
        rc = marin__err(MARIN_ESTATE, "marin_actor_create: the runtime closed while %s "
                        "was placed", who);
    for (size_t i = 0; rc == MARIN_OK && i < n; i++) {
        thread_arg *ta = marin__malloc(sizeof *ta);
        if (ta) {
            ta->a = a;
            ta->slot = i;
        }
        if (!ta || pthread_create(&a->threads[i], NULL, actor_main, ta) != 0) {
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
            set_reason_locked(a, rc, "actor %s could not be created", shown(a));
        pthread_cond_broadcast(&a->work_cv);
        pthread_cond_broadcast(&a->state_cv);
        pthread_mutex_unlock(&a->mu);
        unname(a);
        lactor_unref(a); /* this call's reference */
        return rc;
    }
    pthread_mutex_unlock(&a->mu);
    attach(h, a);
    lactor_unref(a); /* this call's reference: the handle holds one now */
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
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(left / 1000);
            ts.tv_nsec += (long)(left % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
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
                        "is gone: %s", shown(a), a->why ? a->why : "the runtime closed");
    else if (a->state == A_STARTING || a->state == A_RESTARTING)
        rc = marin__err(MARIN_ETIMEDOUT, "marin_actor_ready: actor %s is still %s after "
                        "%lld ms", shown(a), a->state == A_STARTING ? "starting"
                                                                    : "restarting",
                        (long long)timeout_ms);
    else
        rc = marin__err(a->code ? a->code : MARIN_ECANCELED, "marin_actor_ready: %s",
                        reason(a));
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* Queue @p t (a call or a checkpoint request). */
static int enqueue(lactor *a, struct marin__task *t, const char *fn)
{
    pthread_mutex_lock(&a->mu);
    if (a->state == A_FAILED) {
        char why[1024];
        snprintf(why, sizeof why, "%s", reason(a));
        int code = a->code;
        pthread_mutex_unlock(&a->mu);
        /* accepted, and failed at once with the constructor's error */
        call_fail(t, code, why);
        return MARIN_OK;
    }
    if (a->state == A_DEAD || a->state == A_DYING || a->stop) {
        int rc = a->why ? marin__err(MARIN_ESTATE, "%s: the actor is gone: %s", fn, a->why)
                        : marin__err(MARIN_ESTATE, "%s: actor %s (class '%s') is gone: the "
                                     "runtime closed", fn, shown(a), a->cls->name);
        pthread_mutex_unlock(&a->mu);
        return rc;
    }
    t->next = NULL;
    if (a->tail)
        a->tail->next = t;
    else
        a->head = t;
    a->tail = t;
    int wake = can_take_locked(a);
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
                          "method '%s' (actor %s)", a->cls->name, t->name, shown(a));
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
                            shown(a), a->why ? a->why : "the runtime closed");
        pthread_mutex_unlock(&a->mu);
        return rc;
    }
    a->epoch++;
    struct marin__task *pending = take_pending_locked(a);
    char why[512];
    int restart = !no_restart && restarts_left(a) && a->state != A_FAILED;
    if (restart) {
        a->restarts++;
        a->state = a->state == A_STARTING ? A_STARTING : A_RESTARTING;
        snprintf(why, sizeof why, "cancelled: actor %s (class '%s') was killed and "
                 "restarts", shown(a), a->cls->name);
    } else {
        set_reason_locked(a, MARIN_ECANCELED, "actor %s (class '%s') was killed",
                          shown(a), a->cls->name);
        a->state = a->state == A_FAILED ? A_DEAD : A_DYING;
        if (a->state == A_DEAD) /* a failed actor has no instance and no threads */
            a->stop = 1;
        snprintf(why, sizeof why, "cancelled: %s", reason(a));
    }
    size_t k;
    marin_future_t **running = grab_inflight_locked(a, why, &k);
    pthread_cond_broadcast(&a->work_cv);
    pthread_cond_broadcast(&a->state_cv);
    pthread_mutex_unlock(&a->mu);
    if (!restart)
        unname(a);
    fail_list(pending, MARIN_ECANCELED, why);
    cancel_grabbed(running, k, why);
    return MARIN_OK;
}

static void actor_release(void *state, marin_actor_t *h)
{
    (void)state;
    lactor_unref(h->impl);
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
            set_reason_locked(a, MARIN_ECANCELED, "the runtime closed");
        struct marin__task *pending = take_pending_locked(a);
        static const char ran[] = "cancelled: the runtime closed while the actor call ran";
        size_t k;
        marin_future_t **running = grab_inflight_locked(a, ran, &k);
        pthread_cond_broadcast(&a->work_cv);
        pthread_cond_broadcast(&a->state_cv);
        pthread_mutex_unlock(&a->mu);
        fail_list(pending, MARIN_ECANCELED,
                  "cancelled: the runtime closed before the actor call ran");
        cancel_grabbed(running, k, ran);
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
        struct marin__task *left = take_pending_locked(a); /* replays queued late */
        pthread_mutex_unlock(&a->mu);
        fail_list(left, MARIN_ECANCELED,
                  "cancelled: the runtime closed before the actor call ran");
        destroy_instance(a);
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
        destroy_instance(a);
        marin__free(a->hold.sh.demand);
        a->hold.sh.demand = NULL;
        a->s = NULL;
        lactor_unref(a);
    }
    pthread_mutex_destroy(&as->mu);
    marin__free(as);
    s->actors = NULL;
}
