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
#include "local_actor_internal.h"

const char marin__la_checkpoint_mark;

void marin__la_lactor_unref(lactor *a)
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

const char *marin__la_shown(const lactor *a)
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

void marin__la_call_fail(struct marin__task *t, int code, const char *msg)
{
    call_finish(t, code == MARIN_ECANCELED ? MARIN_FUTURE_CANCELLED : MARIN_FUTURE_FAILED,
                code, NULL, 0, msg);
}

/* Take every pending call off the mailbox (caller holds a->mu). */
struct marin__task *marin__la_take_pending_locked(lactor *a)
{
    struct marin__task *list = a->head;
    a->head = a->tail = NULL;
    return list;
}

void marin__la_fail_list(struct marin__task *list, int code, const char *msg)
{
    while (list) {
        struct marin__task *t = list;
        list = t->next;
        marin__la_call_fail(t, code, msg);
    }
}

void marin__la_set_reason_locked(lactor *a, int code, const char *fmt, ...)
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

const char *marin__la_reason(const lactor *a)
{
    return a->why ? a->why : marin_strerror(a->code);
}

/* Give up the name (so another actor may take it). */
void marin__la_unname(lactor *a)
{
    struct local_actors *as = a->s->actors;
    pthread_mutex_lock(&as->mu);
    a->named = 0;
    pthread_mutex_unlock(&as->mu);
}

int marin__la_restarts_left(const lactor *a)
{
    return a->spec.max_restarts < 0 || a->restarts < a->spec.max_restarts;
}

/* ---- building, rebuilding and retiring the instance (no lock held) ---- */

static int build(lactor *a, int from_checkpoint, char **msg)
{
    marin__exec_env env = {.gpu_ids = a->gpu_ids, .ngpus = a->ngpus};
    void *result = NULL, *self = NULL;
    size_t rlen = 0;
    int rc;
    if (from_checkpoint)
        rc = marin__hook_execute(a->s->rt, &env, a->cls, MARIN__HOOK_RESTORE, a->ckpt,
                                 a->ckpt_len, &self, &result, &rlen, msg, &a->hook_fut,
                                 &a->mu);
    else
        rc = marin__hook_execute(a->s->rt, &env, a->cls, MARIN__HOOK_INIT, a->ctor_arg,
                                 a->ctor_len, &self, &result, &rlen, msg, &a->hook_fut,
                                 &a->mu);
    marin__free(result);
    if (rc == MARIN_OK) {
        a->self = self;
        a->has_self = 1;
    }
    return rc;
}

void marin__la_destroy_instance(lactor *a)
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
    marin__exec_env env = {.gpu_ids = a->gpu_ids, .ngpus = a->ngpus};
    void *self = a->self;
    uint64_t epoch = a->epoch;
    pthread_mutex_unlock(&a->mu);
    void *bytes = NULL;
    size_t len = 0;
    int rc = marin__hook_execute(a->s->rt, &env, a->cls, MARIN__HOOK_SAVE, NULL, 0, &self,
                                 &bytes, &len, msg, &a->hook_fut, &a->mu);
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
    marin__la_set_reason_locked(a, rc, "actor %s (class '%s') %s: %s", marin__la_shown(a), a->cls->name, what,
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
    marin__la_destroy_instance(a); /* the dead host's memory: nothing of it survives */
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
                   "%d, max_restarts %s)", marin__la_shown(a), a->cls->name,
                   a->has_ckpt && a->cls->restore ? "from its last checkpoint"
                                                  : "by its constructor",
                   a->restarts, of);
    } else {
        if (restarting)
            fail_locked(a, rc, "could not be rebuilt after a restart", msg);
        else
            a->state = A_DEAD;
        a->stop = 1;
        drop = marin__la_take_pending_locked(a);
    }
    marin__free(msg);
    pthread_cond_broadcast(&a->work_cv);
    pthread_cond_broadcast(&a->state_cv);
    int gone = a->stop;
    char why[1024];
    snprintf(why, sizeof why, "%s", marin__la_reason(a));
    int code = a->code;
    pthread_mutex_unlock(&a->mu);
    if (gone) {
        marin__la_unname(a);
        marin__local_unhold(a->s, &a->hold);
        marin__la_fail_list(drop, code, why);
    }
    pthread_mutex_lock(&a->mu);
}

/* A method reported that its host died: start a restart (or the end). */
static void crashed_locked(lactor *a, const char *method)
{
    a->epoch++;
    if (marin__la_restarts_left(a)) {
        a->restarts++;
        a->state = A_RESTARTING;
        marin__log(a->s->rt, MARIN_LOG_WARN, "actor %s (class '%s') died in method '%s'; "
                   "restarting", marin__la_shown(a), a->cls->name, method);
    } else {
        marin__la_set_reason_locked(a, MARIN_EWORKER, "actor %s (class '%s') died in method '%s' and "
                          "has no restarts left (max_restarts %d)", marin__la_shown(a),
                          a->cls->name, method, a->spec.max_restarts);
        a->state = A_DYING;
    }
}

/* ---- the actor threads ---- */

/* Can this thread start the head of the mailbox now? */
int marin__la_can_take_locked(const lactor *a)
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
                 marin__la_shown(a), a->cls->name, msg ? msg : marin_strerror(rc));
        marin__la_call_fail(t, rc, text);
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
    /* the GPUs the actor holds for its lifetime */
    marin__exec_env env = {.gpu_ids = a->gpu_ids, .ngpus = a->ngpus};
    int rc = marin__method_execute(a->s->rt, t, &env, m->fn, self, &result, &len, &msg,
                                   &died);

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
                     "actor's host died while it ran%s", t->name, marin__la_shown(a), a->cls->name,
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
        marin__la_call_fail(t, rc, text);
    } else {
        snprintf(text, sizeof text, "call '%s' of actor %s (class '%s') failed: %s",
                 t->name, marin__la_shown(a), a->cls->name, msg ? msg : marin_strerror(rc));
        marin__la_call_fail(t, rc, text);
    }
    marin__free(msg);
    pthread_mutex_lock(&a->mu);
}

void *marin__la_actor_main(void *p)
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
            drop = marin__la_take_pending_locked(a);
            failed = 1;
        }
        char why[1024];
        snprintf(why, sizeof why, "%s", marin__la_reason(a));
        pthread_cond_broadcast(&a->work_cv);
        pthread_cond_broadcast(&a->state_cv);
        marin__free(msg);
        if (failed) {
            int code = a->code;
            pthread_mutex_unlock(&a->mu);
            marin__la_unname(a);
            marin__local_unhold(a->s, &a->hold);
            marin__la_fail_list(drop, code, why);
            pthread_mutex_lock(&a->mu);
        }
    }
    for (;;) {
        while (!a->stop && !marin__la_can_take_locked(a) &&
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
marin_future_t **marin__la_grab_inflight_locked(lactor *a, const char *why, size_t *n)
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
void marin__la_cancel_grabbed(marin_future_t **running, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++) {
        marin__future_finish(running[i], MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0,
                             why);
        atomic_store(&running[i]->task.cancel, 1);
        marin_future_release(running[i]);
    }
    marin__free(running);
}

