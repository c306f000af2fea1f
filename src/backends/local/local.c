/* The local backend: tasks on this process's own worker threads.
 *
 * A task starts only when its resources fit the free capacity. Pending tasks
 * wait in one FIFO per resource shape; a free worker takes the oldest task
 * whose shape fits. Threads are made on demand: a task that blocks in
 * marin_future_get/marin_wait lends its cpus back, and another thread may
 * start so nested work always completes (as Ray does). */
#define _GNU_SOURCE 1
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "fail.h"
#include "local_internal.h"


/* Release mu, then send the wake-up a kick decided on: signalled with the
 * lock held, the woken thread would block on it at once. */
static void unlock_and_signal(local_state *s)
{
    int sig = s->signal_pending;
    s->signal_pending = 0;
    pthread_mutex_unlock(&s->mu);
    if (sig)
        pthread_cond_signal(&s->work_cv);
}

static const char *const known_params[] = {"resources", "max_threads", "idle_ms",
                                             "state", "processes", "worker", NULL};

/* ---- capacity and shapes ---- */

static size_t slot_of(const local_state *s, const char *name)
{
    for (size_t i = 0; i < s->capacity.n; i++)
        if (strcmp(s->capacity.e[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

/* GPUs are placed one by one: whole GPUs must be entirely free, a share
 * must fit on one GPU, so totals alone are not enough. */
static int gpus_fit(const local_state *s, const shape *sh)
{
    size_t idle = 0;
    int share_fits = sh->gpu_fraction == 0;
    for (size_t g = 0; g < s->ngpu_ids; g++) {
        if (s->gpu_used[g] == 0)
            idle++;
        else if (s->gpu_used[g] + sh->gpu_fraction <= MARIN__RES_SCALE)
            share_fits = 1;
    }
    return idle >= sh->whole_gpus + (share_fits ? 0 : 1);
}

static int fits(const local_state *s, const shape *sh)
{
    for (size_t i = 0; i < s->capacity.n; i++)
        if (sh->demand[i] > 0 && s->free_amt[i] < sh->demand[i])
            return 0;
    return (sh->whole_gpus == 0 && sh->gpu_fraction == 0) || gpus_fit(s, sh);
}

/* Fill @p sh's demand for @p req (sh->demand allocated by the caller). */
static void shape_compute(const local_state *s, shape *sh, const marin_resources_t *req)
{
    sh->req = *req;
    for (size_t i = 0; i < req->n; i++) {
        size_t k = slot_of(s, req->e[i].name);
        if (k != SIZE_MAX) /* admit() made sure every name exists */
            sh->demand[k] = req->e[i].amount;
    }
    sh->cpus = s->cpu_slot != SIZE_MAX ? sh->demand[s->cpu_slot] : 0;
    sh->max_running = SIZE_MAX;
    for (size_t i = 0; i < s->capacity.n; i++)
        if (sh->demand[i] > 0 && (size_t)(s->capacity.e[i].amount / sh->demand[i]) <
                                     sh->max_running)
            sh->max_running = (size_t)(s->capacity.e[i].amount / sh->demand[i]);
    if (s->gpu_slot != SIZE_MAX) {
        int64_t g = sh->demand[s->gpu_slot];
        sh->whole_gpus = (size_t)(g / MARIN__RES_SCALE);
        sh->gpu_fraction = g % MARIN__RES_SCALE;
    }
}

static shape *find_shape_locked(local_state *s, marin__topts *o)
{
    for (shape *sh = s->shapes; sh; sh = sh->next)
        if (sh->cached_opts == o)
            return sh;
    for (shape *sh = s->shapes; sh; sh = sh->next)
        if (marin__res_equal(&sh->req, &o->res)) {
            marin__topts_retain(o);
            marin__topts_release(sh->cached_opts);
            sh->cached_opts = o;
            return sh;
        }
    shape *sh = marin__calloc(1, sizeof *sh);
    if (!sh || !(sh->demand = marin__calloc(s->capacity.n ? s->capacity.n : 1,
                                            sizeof(int64_t)))) {
        marin__free(sh);
        return NULL;
    }
    shape_compute(s, sh, &o->res);
    marin__topts_retain(o);
    sh->cached_opts = o;
    sh->next = s->shapes;
    s->shapes = sh;
    return sh;
}

/* ---- threads ---- */

static void *worker_main(void *arg);
static int local_submit(void *state, struct marin__task *t);

/* Join threads that have left; they hold no lock, so this is quick. */
static void reap_locked(local_state *s)
{
    while (s->exited) {
        thread_node *n = s->exited;
        s->exited = n->next;
        pthread_join(n->th, NULL);
        marin__free(n);
    }
}

static int spawn_locked(local_state *s)
{
    reap_locked(s);
    thread_node *n = marin__calloc(1, sizeof *n);
    if (!n)
        return MARIN_ENOMEM;
    n->s = s;
    if (pthread_create(&n->th, NULL, worker_main, n) != 0) {
        marin__free(n);
        return MARIN_ENOMEM;
    }
    s->nthreads++;
    return MARIN_OK;
}

/* Make sure some thread will look at the queues: wake an idle one, or start
 * one, unless enough threads are active to run as many tasks of this shape
 * as the capacity allows (more would only fight over the lock). */
static void kick_locked(local_state *s, const shape *sh)
{
    if (s->nidle > s->nwaking) {
        s->nwaking++;
        s->signal_pending = 1; /* sent by the caller after unlocking */
        return;
    }
    /* every idle worker is already woken for earlier tasks: one more? */
    size_t active = s->nthreads - s->nblocked;
    if (active >= s->max_active || active >= sh->max_running)
        return;
    if (spawn_locked(s) != MARIN_OK)
        marin__log(s->rt, MARIN_LOG_WARN, "local backend: cannot start another "
                   "worker thread; %zu are running", s->nthreads);
}

static void take_gpu(local_state *s, worker *w, size_t g, int64_t share)
{
    s->gpu_used[g] += share;
    w->gpu_index[w->ngpus] = g;
    w->gpu_share[w->ngpus] = share;
    w->gpu_ids[w->ngpus++] = s->gpu_ids[g];
}

/* The shape whose queued head is oldest among those that fit now. */
static shape *oldest_fitting_locked(local_state *s)
{
    shape *best = NULL;
    for (shape *sh = s->shapes; sh; sh = sh->next)
        if (sh->head && (!best || sh->head->seq < best->head->seq) && fits(s, sh))
            best = sh;
    return best;
}

/* Resources came free (a task blocked): kick for the oldest fitting shape. */
static void kick_for_queued_locked(local_state *s)
{
    const shape *best = oldest_fitting_locked(s);
    if (best)
        kick_locked(s, best);
}

/* Take @p sh's resources (it fits) and place its GPUs on @p w. */
static void reserve_locked(local_state *s, const shape *sh, worker *w)
{
    for (size_t i = 0; i < s->capacity.n; i++)
        s->free_amt[i] -= sh->demand[i];
    w->ngpus = 0;
    for (size_t g = 0; g < s->ngpu_ids && w->ngpus < sh->whole_gpus; g++)
        if (s->gpu_used[g] == 0)
            take_gpu(s, w, g, MARIN__RES_SCALE);
    if (sh->gpu_fraction > 0) {
        /* best fit: the fullest GPU the share still fits on */
        size_t pick = SIZE_MAX;
        for (size_t g = 0; g < s->ngpu_ids; g++)
            if (s->gpu_used[g] + sh->gpu_fraction <= MARIN__RES_SCALE &&
                (pick == SIZE_MAX || s->gpu_used[g] > s->gpu_used[pick]))
                pick = g;
        if (pick != SIZE_MAX)
            take_gpu(s, w, pick, sh->gpu_fraction);
    }
}

/* Take the oldest queued task whose shape fits, reserving its resources. */
static struct marin__task *pick_locked(local_state *s, worker *w, shape **out_shape)
{
    for (shape *sh = s->shapes; sh; sh = sh->next)
        /* drop tasks cancelled while queued */
        while (sh->head && marin__state_done(atomic_load(
                               &marin__task_future(sh->head)->state))) {
            struct marin__task *t = sh->head;
            sh->head = t->next;
            if (!sh->head)
                sh->tail = NULL;
            marin__task_cleanup(t);
            marin_future_release(marin__task_future(t));
        }
    if (s->holds_head && fits(s, &s->holds_head->sh)) {
        /* an actor waiting for these resources goes first */
        pthread_cond_broadcast(&s->hold_cv);
        return NULL;
    }
    shape *best = oldest_fitting_locked(s);
    if (!best)
        return NULL;
    struct marin__task *t = best->head;
    best->head = t->next;
    if (!best->head)
        best->tail = NULL;
    t->next = NULL;
    reserve_locked(s, best, w);
    *out_shape = best;
    return t;
}

static void give_back_locked(local_state *s, const shape *sh, worker *w)
{
    for (size_t i = 0; i < s->capacity.n; i++)
        s->free_amt[i] += sh->demand[i];
    for (size_t k = 0; k < w->ngpus; k++)
        s->gpu_used[w->gpu_index[k]] -= w->gpu_share[k];
    w->ngpus = 0;
    if (s->nhold_waiting)
        pthread_cond_broadcast(&s->hold_cv);
}

static void link_worker(local_state *s, worker *w)
{
    w->prev = NULL;
    w->next = s->workers;
    if (w->next)
        w->next->prev = w;
    s->workers = w;
}

static void unlink_worker(local_state *s, worker *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        s->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static void *worker_main(void *arg)
{
    thread_node *self = arg;
    local_state *s = self->s;
    worker w;
    memset(&w, 0, sizeof w);
    int yielded = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        shape *sh = NULL;
        struct marin__task *t = pick_locked(s, &w, &sh);
        if (t) {
            yielded = 0;
            w.running = t;
            link_worker(s, &w);
            if (s->nidle > s->nwaking && s->shapes && s->shapes->next) {
                s->nwaking++; /* another shape may fit too */
                s->signal_pending = 1;
            }
            unlock_and_signal(s);
            marin__exec_env env = {.gpu_ids = w.gpu_ids, .ngpus = w.ngpus,
                                   .run = s->procs ? marin__local_procs_run : NULL,
                                   .run_ud = s};
            int settled = marin__task_execute(s->rt, t, &env);
            pthread_mutex_lock(&s->mu);
            unlink_worker(s, &w); /* before release or requeue: shutdown reads it */
            w.running = NULL;
            give_back_locked(s, sh, &w);
            if (!settled) { /* a retry: queue it again, as a new submission */
                pthread_mutex_unlock(&s->mu);
                int rc = local_submit(s, t);
                if (rc != MARIN_OK)
                    marin__task_retry_refused(t, rc);
                settled = rc != MARIN_OK;
                pthread_mutex_lock(&s->mu);
            }
            if (settled) /* only frees memory; takes no lock of ours */
                marin_future_release(marin__task_future(t));
            continue;
        }
        if (s->stopping)
            break;
        if (!yielded) {
            /* Before sleeping, let a submitter on this CPU run once: a burst of
             * small tasks then finds this worker awake instead of paying a
             * wake-up per task. */
            yielded = 1;
            pthread_mutex_unlock(&s->mu);
            sched_yield();
            pthread_mutex_lock(&s->mu);
            continue;
        }
        yielded = 0;
        s->nidle++;
        int timed_out = 0;
        if (s->idle_ms > 0) {
            struct timespec ts;
            marin__realtime_after_ms(s->idle_ms, &ts);
            timed_out = pthread_cond_timedwait(&s->work_cv, &s->mu, &ts) != 0;
        } else {
            pthread_cond_wait(&s->work_cv, &s->mu);
        }
        s->nidle--;
        if (s->nwaking > 0)
            s->nwaking--;
        if (timed_out && !s->stopping)
            break; /* idle too long: a new thread is made when needed */
    }
    self->next = s->exited;
    s->exited = self;
    s->nthreads--;
    pthread_cond_broadcast(&s->exit_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- ops ---- */

static int local_admit(void *state, struct marin__task *t)
{
    local_state *s = state;
    if (!t->entry)
        return marin__err(MARIN_ENOTFOUND,
                          "marin_submit: no task named '%s' is registered in this process "
                          "(register it with marin_register_task before submitting)",
                          t->name);
    char who[MARIN_NAME_MAX + 16];
    snprintf(who, sizeof who, "task '%s'", t->opts->label ? t->opts->label : t->name);
    return marin__local_check_feasible(s, &t->opts->res, "marin_submit", who);
}

static int local_submit(void *state, struct marin__task *t)
{
    local_state *s = state;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return marin__err(MARIN_ESTATE, "marin_submit: the runtime is closing; task '%s' "
                          "was not submitted", t->name);
    }
    shape *sh = find_shape_locked(s, t->opts);
    if (!sh) {
        pthread_mutex_unlock(&s->mu);
        return marin__err(MARIN_ENOMEM, "marin_submit: out of memory queueing task '%s'",
                          t->name);
    }
    if (s->nthreads == 0 && spawn_locked(s) != MARIN_OK) {
        pthread_mutex_unlock(&s->mu);
        return marin__err(MARIN_ENOMEM, "marin_submit: cannot start a worker thread for "
                          "task '%s'", t->name);
    }
    t->shape = sh;
    t->next = NULL;
    if (sh->tail)
        sh->tail->next = t;
    else
        sh->head = t;
    sh->tail = t;
    if (fits(s, sh))
        kick_locked(s, sh);
    unlock_and_signal(s);
    return MARIN_OK;
}

/* A running task blocks: lend its cpus so queued work can use them. */
static void local_blocking(void *state, struct marin__task *t, int begin)
{
    local_state *s = state;
    shape *sh = t->shape;
    pthread_mutex_lock(&s->mu);
    if (begin) {
        s->nblocked++;
        if (s->cpu_slot != SIZE_MAX)
            s->free_amt[s->cpu_slot] += sh->cpus;
        if (s->nhold_waiting)
            pthread_cond_broadcast(&s->hold_cv);
        kick_for_queued_locked(s);
        unlock_and_signal(s);
        return;
    } else {
        s->nblocked--;
        /* Take them back at once, even past capacity (as Ray does): new
         * tasks wait until the total is under capacity again. */
        if (s->cpu_slot != SIZE_MAX)
            s->free_amt[s->cpu_slot] -= sh->cpus;
    }
    pthread_mutex_unlock(&s->mu);
}

int marin__local_check_feasible(const local_state *s, const marin_resources_t *req,
                                const char *what, const char *who)
{
    for (size_t i = 0; i < req->n; i++) {
        const char *name = req->e[i].name;
        size_t k = slot_of(s, name);
        int64_t have = k == SIZE_MAX ? 0 : s->capacity.e[k].amount;
        if (req->e[i].amount > have) {
            char want[64], cap[64], all[512];
            marin__res_format_amount(name, req->e[i].amount, want, sizeof want);
            marin__res_format_amount(name, have, cap, sizeof cap);
            marin_resources_format(&s->capacity, all, sizeof all);
            return marin__err(MARIN_EINFEASIBLE,
                              "%s: %s asks for %s=%s but this local runtime has %s=%s in "
                              "all (capacity: %s), so it could never run", what, who, name,
                              want, name, cap, all[0] ? all : "none");
        }
    }
    return MARIN_OK;
}

int marin__local_hold(local_state *s, const marin_resources_t *req, int64_t timeout_ms,
                      const char *who, local_hold *h)
{
    memset(h, 0, sizeof *h);
    int rc = marin__local_check_feasible(s, req, "marin_actor_create", who);
    if (rc != MARIN_OK)
        return rc;
    if (!(h->sh.demand = marin__calloc(s->capacity.n ? s->capacity.n : 1, sizeof(int64_t))))
        return marin__err(MARIN_ENOMEM, "marin_actor_create: out of memory for %s", who);
    shape_compute(s, &h->sh, req);
    struct timespec ts;
    marin__realtime_after_ms(timeout_ms >= 0 ? timeout_ms : 0, &ts);
    pthread_mutex_lock(&s->mu);
    if (!s->stopping && (s->holds_head || !fits(s, &h->sh))) {
        /* Wait in line: while this hold is the oldest and fits, workers start
         * no new task (pick_locked), so a stream of tasks cannot starve it.
         * A task creating an actor lends its own cpus meanwhile. */
        h->next = NULL;
        *(s->holds_head ? &s->holds_tail->next : &s->holds_head) = h;
        s->holds_tail = h;
        s->nhold_waiting++;
        pthread_mutex_unlock(&s->mu);
        marin__block_begin();
        pthread_mutex_lock(&s->mu);
        int w = 0;
        while (!s->stopping && !(s->holds_head == h && fits(s, &h->sh)) && w == 0)
            w = timeout_ms < 0 ? pthread_cond_wait(&s->hold_cv, &s->mu)
                               : pthread_cond_timedwait(&s->hold_cv, &s->mu, &ts);
        /* leave the line */
        local_hold **pp = &s->holds_head;
        local_hold *prev = NULL;
        while (*pp != h) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = h->next;
        if (s->holds_tail == h)
            s->holds_tail = prev;
        s->nhold_waiting--;
        int ok = !s->stopping && fits(s, &h->sh);
        if (ok)
            reserve_locked(s, &h->sh, &h->w);
        pthread_cond_broadcast(&s->hold_cv); /* the next in line */
        kick_for_queued_locked(s);           /* and tasks held back for it */
        unlock_and_signal(s);
        marin__block_end();
        pthread_mutex_lock(&s->mu);
        if (!ok) {
            int stopping = s->stopping;
            pthread_mutex_unlock(&s->mu);
            marin__free(h->sh.demand);
            h->sh.demand = NULL;
            if (stopping)
                return marin__err(MARIN_ESTATE, "marin_actor_create: the runtime closed "
                                  "while %s waited for its resources", who);
            return marin__err(MARIN_ETIMEDOUT, "marin_actor_create: %s waited %lld ms "
                              "for its resources to come free", who, (long long)timeout_ms);
        }
        h->held = 1;
        pthread_mutex_unlock(&s->mu);
        return MARIN_OK;
    }
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        marin__free(h->sh.demand);
        h->sh.demand = NULL;
        return marin__err(MARIN_ESTATE, "marin_actor_create: the runtime closed while %s "
                          "waited for its resources", who);
    }
    reserve_locked(s, &h->sh, &h->w);
    h->held = 1;
    pthread_mutex_unlock(&s->mu);
    return MARIN_OK;
}

void marin__local_unhold(local_state *s, local_hold *h)
{
    /* Idempotent: two callers (a failed create and a reap) may race. */
    pthread_mutex_lock(&s->mu);
    if (h->held) {
        give_back_locked(s, &h->sh, &h->w);
        h->held = 0;
        kick_for_queued_locked(s);
    }
    int64_t *demand = h->sh.demand;
    h->sh.demand = NULL;
    unlock_and_signal(s);
    marin__free(demand);
}

static int local_capacity(void *state, marin_resources_t *out)
{
    local_state *s = state;
    for (size_t i = 0; i < s->capacity.n; i++) {
        int rc = marin__res_set_fixed(out, s->capacity.e[i].name, s->capacity.e[i].amount);
        if (rc != MARIN_OK)
            return rc;
    }
    return MARIN_OK;
}

static void local_shutdown(void *state)
{
    local_state *s = state;
    /* Actors first: their pending calls fail, their threads are asked to
     * stop; methods blocked on tasks wake when the tasks end below. */
    marin__local_actors_stop(s);
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->hold_cv);
    struct marin__task *queued = NULL;
    for (shape *sh = s->shapes; sh; sh = sh->next) {
        if (sh->tail) {
            sh->tail->next = queued;
            queued = sh->head;
        }
        sh->head = sh->tail = NULL;
    }
    /* Running tasks: finish their futures now and ask them to stop. Hold a
     * reference so the future outlives the unlocked finish. */
    size_t nrun = 0;
    for (worker *w = s->workers; w; w = w->next)
        nrun++;
    marin_future_t **running = nrun ? marin__calloc(nrun, sizeof *running) : NULL;
    size_t k = 0;
    for (worker *w = s->workers; w && running; w = w->next) {
        running[k] = marin__task_future(w->running);
        marin_future_retain(running[k++]);
    }
    if (!running) /* out of memory: still ask them to stop */
        for (worker *w = s->workers; w; w = w->next)
            atomic_store(&w->running->cancel, 1);
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);

    while (queued) {
        struct marin__task *t = queued;
        queued = t->next;
        marin_future_t *f = marin__task_future(t);
        marin__future_finish(f, MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0,
                             "cancelled: the runtime closed before the task started");
        marin__task_cleanup(t);
        marin_future_release(f);
    }
    /* Finish first, then ask the task to stop: a task that returns as soon as
     * it sees marin_task_cancelled() must not win with a result. */
    for (size_t i = 0; i < k; i++) {
        marin__future_finish(running[i], MARIN_FUTURE_CANCELLED, MARIN_ECANCELED, NULL, 0,
                             "cancelled: the runtime closed while the task was running");
        atomic_store(&running[i]->task.cancel, 1);
        marin_future_release(running[i]);
    }
    marin__free(running);

    pthread_mutex_lock(&s->mu);
    while (s->nthreads > 0)
        pthread_cond_wait(&s->exit_cv, &s->mu);
    reap_locked(s);
    pthread_mutex_unlock(&s->mu);
    marin__local_actors_join(s);
    marin__local_procs_stop(s);
}

static void local_fini(void *state)
{
    local_state *s = state;
    marin__local_actors_fini(s);
    marin__local_kv_close(s);
    marin__local_procs_free(s);
    while (s->shapes) {
        shape *sh = s->shapes;
        s->shapes = sh->next;
        marin__topts_release(sh->cached_opts);
        marin__free(sh->demand);
        marin__free(sh);
    }
    marin__free(s->free_amt);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->exit_cv);
    pthread_cond_destroy(&s->hold_cv);
    pthread_mutex_destroy(&s->mu);
}

/* A resource given as 0 in the URI ("gpus=0") removes the detected amount;
 * parsing keeps no zero entries, so find the names in the spec itself, with
 * the parser's idea of blanks, and only names the parser accepted. */
static int drop_zeroed(local_state *s, const char *spec, const marin_resources_t *over)
{
    static const char blanks[] = " \t\n\r\v\f";
    for (const char *p = spec; *p;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *name = p, *name_end = eq ? eq : end;
        while (name < name_end && strchr(blanks, *name))
            name++;
        while (name_end > name && strchr(blanks, name_end[-1]))
            name_end--;
        char buf[MARIN__RES_NAME_MAX + 1];
        size_t n = (size_t)(name_end - name);
        if (eq && n > 0 && n <= MARIN__RES_NAME_MAX) {
            memcpy(buf, name, n);
            buf[n] = '\0';
            if (marin__res_name_ok(buf) && marin__res_amount(over, buf) == 0) {
                int rc = marin__res_set_fixed(&s->capacity, buf, 0);
                if (rc != MARIN_OK)
                    return rc;
                if (strcmp(buf, "gpus") == 0)
                    s->ngpu_ids = 0;
            }
        }
        p = *end ? end + 1 : end;
    }
    return MARIN_OK;
}

static int local_init(void *state, marin_runtime_t *rt, const marin__uri *uri)
{
    local_state *s = state;
    s->rt = rt;
    int rc = marin__uri_check_params(uri, known_params);
    if (rc != MARIN_OK)
        return rc;
    long long max_threads = 0, idle_ms = 10000;
    if ((rc = marin__uri_param_i64(uri, "max_threads", &max_threads)) != MARIN_OK ||
        (rc = marin__uri_param_i64(uri, "idle_ms", &idle_ms)) != MARIN_OK)
        return rc;
    s->idle_ms = idle_ms;

    size_t ngpus = 0;
    if ((rc = marin__detect_capacity(NULL, &s->capacity, s->gpu_ids, &ngpus)) != MARIN_OK)
        return rc;
    s->ngpu_ids = ngpus;
    const char *spec = marin__uri_param(uri, "resources");
    if (spec) {
        marin_resources_t *over = NULL;
        if ((rc = marin_resources_parse(spec, &over)) != MARIN_OK) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", marin_last_error());
            return marin__err(rc, "marin_runtime_open: bad resources in the local URI: %s",
                              detail);
        }
        for (size_t i = 0; i < over->n && rc == MARIN_OK; i++)
            rc = marin__res_set_fixed(&s->capacity, over->e[i].name, over->e[i].amount);
        rc = rc == MARIN_OK ? drop_zeroed(s, spec, over) : rc;
        double g = marin_resources_get(over, "gpus");
        if (rc == MARIN_OK && g > 0) {
            /* Given GPUs: keep detected ids when there are enough, else number
             * them 0..n-1. */
            size_t want = (size_t)ceil(g);
            if (want > MARIN__MAX_GPUS)
                want = MARIN__MAX_GPUS;
            if (s->ngpu_ids < want)
                for (size_t i = 0; i < want; i++)
                    s->gpu_ids[i] = (int)i;
            s->ngpu_ids = want;
        }
        marin_resources_destroy(over);
        if (rc != MARIN_OK)
            return rc;
    }
    s->cpu_slot = slot_of(s, "cpus");
    s->gpu_slot = slot_of(s, "gpus");
    s->free_amt = marin__calloc(s->capacity.n ? s->capacity.n : 1, sizeof(int64_t));
    if (!s->free_amt)
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    for (size_t i = 0; i < s->capacity.n; i++)
        s->free_amt[i] = s->capacity.e[i].amount;
    double cpus = marin_resources_get(&s->capacity, "cpus");
    s->max_active = max_threads > 0 ? (size_t)max_threads
                                    : (size_t)(4 * ceil(cpus) + 28);
    /* Adaptive: the lock is held for a few hundred nanoseconds, so spinning
     * briefly beats sleeping in the kernel when submitter and workers meet. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&s->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->exit_cv, NULL);
    pthread_cond_init(&s->hold_cv, NULL);
    long long processes = 0;
    if ((rc = marin__uri_param_i64(uri, "processes", &processes)) != MARIN_OK ||
        (rc = marin__local_kv_open(s, marin__uri_param(uri, "state"))) != MARIN_OK ||
        (rc = marin__local_actors_init(s)) != MARIN_OK ||
        (marin__uri_param(uri, "processes") &&
         (rc = marin__local_procs_start(s, processes, marin__uri_param(uri, "worker"))) !=
             MARIN_OK)) {
        local_fini(s); /* the runtime calls fini only after a good init */
        return rc;
    }
    return MARIN_OK;
}

const marin__backend marin__backend_local = {
    .name = "local",
    .state_size = sizeof(local_state),
    .init = local_init,
    .shutdown = local_shutdown,
    .fini = local_fini,
    .admit = local_admit,
    .submit = local_submit,
    .cancel = NULL,
    .blocking = local_blocking,
    .capacity = local_capacity,
    .kv = &marin__local_kv_ops,
    .actor = &marin__local_actor_ops,
};
