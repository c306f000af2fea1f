/* The executor's run (marin_executor_run; executor.c has the rest of
 * include/marin/executor.h, executor_internal.h what the two share).
 *
 * A run checks every status first (a corrupt file or, without force, a
 * FAILED step stops it before anything starts), marks the steps that wait
 * for others WAITING, then starts one thread per ready step (at most
 * max_parallel at once). A step thread: wait until the step is SUCCESS
 * (skip) or its lease is ours; append RUNNING; submit the task; while it
 * runs, renew the lease every ttl/3; then commit SUCCESS with a fenced KV
 * write and append SUCCESS, or append FAILED; release the lease. The
 * driving thread joins finished steps and starts the ones whose
 * dependencies are all SUCCESS; after the first failure it starts nothing
 * more and waits for the steps already running. */
#include "marin/executor.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "marin/error.h"
#include "marin/future.h"
#include "marin/kv.h"
#include "marin/task.h"

#include "alloc.h"
#include "executor_internal.h"
#include "fail.h"
#include "sync.h"
#include "task_internal.h" /* lend a calling task's resources while waiting */

#define MSG_CAP 1024
#define STEP_STACK ((size_t)512 << 10)

/* ---- small helpers ---- */

/* mkdir -p; an existing directory is fine. */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return marin__err(MARIN_EINVAL, "%s: path too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            return marin__err(MARIN_EUNAVAILABLE,
                              "cannot create directory %s: %s", buf,
                              strerror(e));
        }
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return marin__err(MARIN_EUNAVAILABLE, "%s: not a directory", path);
    return MARIN_OK;
}

/* ---- what a run does with a step ---- */

/* Whether the success commit of @p s is in the KV store (*present).
 * @return MARIN_OK or the KV error. */
static int commit_present(marin_runtime_t *rt, const marin_step_t *s,
                          int *present)
{
    void *val = NULL;
    size_t len = 0;
    *present = 0;
    int rc = marin_kv_get(rt, s->commit_key, &val, &len);
    marin_free(val);
    if (rc == MARIN_OK)
        *present = 1;
    return rc == MARIN_ENOTFOUND ? MARIN_OK : rc;
}

/* What a run would do with @p s: into *act; its status into *st. */
int marin__xstep_action(marin_executor_t *ex, const marin_step_t *s,
                        int force, int *act, marin__xstatus *st)
{
    int rc = marin__xstatus_read(s->status_file, st);
    if (rc != MARIN_OK)
        return rc;
    int committed = 0;
    if (st->state != MARIN_STEP_SUCCESS &&
        (rc = commit_present(ex->rt, s, &committed)) != MARIN_OK)
        return rc;
    if (st->state == MARIN_STEP_SUCCESS || committed)
        *act = MARIN__XACT_SKIP;
    else if (st->state == MARIN_STEP_FAILED && !force)
        *act = MARIN__XACT_STOP;
    else
        *act = MARIN__XACT_RUN;
    return MARIN_OK;
}

/* ---- running ---- */

enum { J_PENDING, J_ACTIVE, J_OK, J_FAILED };

typedef struct run run_t;

typedef struct {
    run_t *run;
    marin_step_t *s;
    int state;  /* J_*; guarded by run->mu */
    int exited; /* its thread has finished; guarded by run->mu */
    int rc;
    int ran;    /* the task ran in this run (not skipped) */
    pthread_t th;
    char msg[MSG_CAP];
} job_t;

struct run {
    marin_executor_t *ex;
    marin_runtime_t *rt;
    int force;
    int64_t ttl_ms;
    int64_t poll_ms;
    size_t max_parallel;
    const char *owner;
    atomic_int stop; /* a step failed: start nothing, stop waiting */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *jobs;
};

/* Record @p j's failure (the message goes to j->msg, which later marin
 * calls of this thread cannot clear) and return @p rc. */
__attribute__((format(printf, 3, 4))) static int jfail(job_t *j, int rc,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof j->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* This thread's last error, copied (the next marin call may clear it). */
static void save_msg(char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", marin__err_msg());
}

/* Sleep @p ms, waking early when the run stops. */
static void nap(run_t *r, int64_t ms)
{
    while (ms > 0 && !atomic_load(&r->stop)) {
        int64_t k = ms < 20 ? ms : 20;
        struct timespec ts = {0, (long)k * 1000000L};
        nanosleep(&ts, NULL);
        ms -= k;
    }
}

static void release_lease(run_t *r, const marin_step_t *s)
{
    (void)marin_lease_release(r->rt, s->lease_key, r->owner);
}

/* Still ours? (renew just before writing a status line that is not
 * fenced, so a driver that lost its lease keeps out of the file.) */
static int still_held(run_t *r, const marin_step_t *s)
{
    return marin_lease_renew(r->rt, s->lease_key, r->owner, r->ttl_ms) ==
           MARIN_OK;
}

/* With the lease held: the step may have been finished meanwhile. Sets
 * *done when it is SUCCESS (repairing the status file from the KV commit
 * when needed). On return with *done == 0 and MARIN_OK, *st is current. */
static int check_held(job_t *j, marin__xstatus *st, uint64_t token, int *done)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    int committed = 0;
    *done = 0;
    int rc = marin__xstatus_read(s->status_file, st);
    if (rc == MARIN_OK && st->state != MARIN_STEP_SUCCESS)
        rc = commit_present(r->rt, s, &committed);
    if (rc != MARIN_OK)
        return jfail(j, rc, "%s", marin__err_msg());
    if (st->state == MARIN_STEP_SUCCESS) {
        *done = 1;
        return MARIN_OK;
    }
    if (committed) {
        *done = 1;
        rc = marin__xstatus_append(
            s->status_file, s->name, MARIN_STEP_SUCCESS, st->attempt,
            r->owner, token,
            "repaired: the success commit was in the KV store, not here");
        if (rc != MARIN_OK)
            return jfail(j, rc, "committed, but cannot repair its status: %s",
                         marin__err_msg());
        return MARIN_OK;
    }
    if (st->state == MARIN_STEP_FAILED && !r->force)
        return jfail(j, MARIN_ESTATE,
                     "FAILED on attempt %d (by %s at %s) in %s; run with "
                     "force to run it again",
                     st->attempt, st->owner, st->time, s->status_file);
    return MARIN_OK;
}

/* Wait until the step is SUCCESS (*done) or its lease is ours (*token).
 * @return MARIN_OK or the failure (in j->msg). */
static int take_step(job_t *j, marin__xstatus *st, uint64_t *token, int *done)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    *done = 0;
    for (;;) {
        if (atomic_load(&r->stop))
            return jfail(j, MARIN_ECANCELED,
                         "not run: the run stops after another step failed");
        /* The KV commit is looked at only when it decides something: for
         * a FAILED status, and while another driver holds the lease (the
         * holder's own check runs under the lease). */
        int committed = 0;
        int rc = marin__xstatus_read(s->status_file, st);
        if (rc == MARIN_OK && st->state == MARIN_STEP_FAILED)
            rc = commit_present(r->rt, s, &committed);
        if (rc != MARIN_OK)
            return jfail(j, rc, "%s", marin__err_msg());
        if (st->state == MARIN_STEP_SUCCESS) {
            *done = 1;
            return MARIN_OK;
        }
        if (!committed && st->state == MARIN_STEP_FAILED && !r->force)
            return jfail(j, MARIN_ESTATE,
                         "FAILED on attempt %d (by %s at %s) in %s; run with "
                         "force to run it again",
                         st->attempt, st->owner, st->time, s->status_file);
        rc = marin_lease_acquire(r->rt, s->lease_key, r->owner, r->ttl_ms,
                                 token);
        if (rc == MARIN_EBUSY) {
            /* Another driver runs it (or repairs it): look again later,
             * unless it is committed already. */
            if (!committed &&
                (rc = commit_present(r->rt, s, &committed)) != MARIN_OK)
                return jfail(j, rc, "%s", marin__err_msg());
            if (committed) {
                *done = 1;
                return MARIN_OK;
            }
            nap(r, r->poll_ms);
            continue;
        }
        if (rc != MARIN_OK)
            return jfail(j, rc, "cannot take its lease %s: %s", s->lease_key,
                         marin__err_msg());
        rc = check_held(j, st, *token, done);
        if (rc != MARIN_OK || *done)
            release_lease(r, s);
        return rc;
    }
}

/* Run the step's task while renewing the lease every ttl/3. Returns the
 * task's code; *lost set (with *why) when the lease could not be renewed. */
static int run_task(job_t *j, marin_future_t *f, int *lost, char *why,
                    size_t why_cap)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    int64_t tick = r->ttl_ms / 3 > 0 ? r->ttl_ms / 3 : 1;
    int64_t last_ok = marin__now_ms();
    *lost = 0;
    for (;;) {
        int rc = marin_future_get(f, tick, NULL, NULL);
        if (rc != MARIN_ETIMEDOUT)
            return rc;
        rc = marin_lease_renew(r->rt, s->lease_key, r->owner, r->ttl_ms);
        int64_t now = marin__now_ms();
        if (rc == MARIN_OK) {
            last_ok = now;
            continue;
        }
        /* EBUSY: expired or taken. Other errors: keep trying until the
         * lease would have run out. */
        if (rc == MARIN_EBUSY || now - last_ok >= r->ttl_ms) {
            save_msg(why, why_cap);
            *lost = 1;
            (void)marin_future_cancel(f);
            return MARIN_ECONFLICT;
        }
    }
}

/* Everything one step needs, on its own thread. @return MARIN_OK (ran or
 * skipped) or the failure, with j->msg. */
static int step_work(job_t *j)
{
    run_t *r = j->run;
    marin_step_t *s = j->s;
    marin__xstatus st;
    uint64_t token = 0;
    int done;
    char why[MSG_CAP];
    int rc = mkdir_p(s->path);
    if (rc != MARIN_OK)
        return jfail(j, rc, "%s", marin__err_msg());
    if ((rc = take_step(j, &st, &token, &done)) != MARIN_OK || done)
        return rc;

    /* The lease is ours and the step is not SUCCESS. */
    int attempt = st.attempt < INT_MAX ? st.attempt + 1 : INT_MAX;
    rc = marin__xstatus_append(s->status_file, s->name, MARIN_STEP_RUNNING,
                               attempt, r->owner, token, NULL);
    if (rc != MARIN_OK) {
        jfail(j, rc, "%s", marin__err_msg());
        release_lease(r, s);
        return rc;
    }
    j->ran = 1;
    marin_future_t *f = NULL;
    rc = marin_submit(r->rt, s->task, s->config, s->config_len, s->opts, &f);
    if (rc != MARIN_OK) {
        jfail(j, rc, "cannot submit task '%s': %s", s->task,
              marin__err_msg());
        if (still_held(r, s))
            (void)marin__xstatus_append(s->status_file, s->name,
                                        MARIN_STEP_FAILED, attempt, r->owner,
                                        token, j->msg);
        release_lease(r, s);
        return rc;
    }
    int lost;
    int trc = run_task(j, f, &lost, why, sizeof why);
    if (lost) {
        marin_future_release(f);
        return jfail(j, MARIN_ECONFLICT,
                     "lost its lease %s while its task ran (%s); the task "
                     "was cancelled and nothing is committed",
                     s->lease_key, why);
    }
    if (trc != MARIN_OK) {
        snprintf(why, sizeof why, "%s", marin_future_error(f));
        marin_future_release(f);
        jfail(j, trc, "task '%s' failed on attempt %d: %s", s->task, attempt,
              why);
        if (still_held(r, s) &&
            (rc = marin__xstatus_append(s->status_file, s->name,
                                        MARIN_STEP_FAILED, attempt, r->owner,
                                        token, why)) != MARIN_OK) {
            char more[MSG_CAP];
            save_msg(more, sizeof more);
            jfail(j, trc,
                  "task '%s' failed on attempt %d: %s (and FAILED could not "
                  "be written: %s)",
                  s->task, attempt, why, more);
        }
        release_lease(r, s);
        return trc;
    }
    marin_future_release(f);

    /* The commit: at most once, and only with the lease still ours. */
    char *val = marin__xstatus_format(s->name, MARIN_STEP_SUCCESS, attempt,
                                      r->owner, token, NULL);
    if (!val) {
        release_lease(r, s);
        return jfail(j, MARIN_ENOMEM, "out of memory committing SUCCESS");
    }
    rc = marin_kv_put_fenced(r->rt, s->commit_key, val, strlen(val),
                             s->lease_key, token);
    marin__free(val);
    if (rc == MARIN_ECONFLICT)
        return jfail(j, rc,
                     "its task finished, but the lease %s was lost before the "
                     "commit (%s); not marked SUCCESS",
                     s->lease_key, marin__err_msg());
    if (rc != MARIN_OK) {
        jfail(j, rc, "cannot commit SUCCESS: %s", marin__err_msg());
        if (still_held(r, s))
            (void)marin__xstatus_append(s->status_file, s->name,
                                        MARIN_STEP_FAILED, attempt, r->owner,
                                        token, j->msg);
        release_lease(r, s);
        return rc;
    }
    rc = marin__xstatus_append(s->status_file, s->name, MARIN_STEP_SUCCESS,
                               attempt, r->owner, token, NULL);
    if (rc != MARIN_OK)
        jfail(j, rc,
              "committed, but cannot write SUCCESS to its status file (the "
              "next run repairs it): %s",
              marin__err_msg());
    release_lease(r, s);
    return rc;
}

static void *job_main(void *arg)
{
    job_t *j = arg;
    int rc = step_work(j);
    pthread_mutex_lock(&j->run->mu);
    j->rc = rc;
    j->exited = 1;
    pthread_cond_broadcast(&j->run->cv);
    pthread_mutex_unlock(&j->run->mu);
    return NULL;
}

/* Mark @p s WAITING (it waits for dependencies that have to run), under its
 * lease; a step whose lease is held elsewhere is left alone. */
static int mark_waiting(run_t *r, marin_step_t *s)
{
    uint64_t token;
    int rc = marin_lease_acquire(r->rt, s->lease_key, r->owner, r->ttl_ms,
                                 &token);
    if (rc == MARIN_EBUSY)
        return MARIN_OK;
    char why[MSG_CAP];
    if (rc != MARIN_OK) {
        save_msg(why, sizeof why);
        return marin__err(rc, "cannot take its lease %s: %s", s->lease_key,
                          why);
    }
    marin__xstatus st;
    if ((rc = mkdir_p(s->path)) == MARIN_OK &&
        (rc = marin__xstatus_read(s->status_file, &st)) == MARIN_OK &&
        st.state != MARIN_STEP_SUCCESS && st.state != MARIN_STEP_WAITING)
        rc = marin__xstatus_append(s->status_file, s->name,
                                   MARIN_STEP_WAITING, st.attempt, r->owner,
                                   token, NULL);
    save_msg(why, sizeof why);
    release_lease(r, s);
    return rc == MARIN_OK ? rc : marin__err(rc, "%s", why);
}

/* HOST:PID:RANDOM */
static void default_owner(char *buf, size_t cap)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    uint32_t rnd;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)marin__now_ns() ^ (uint32_t)(uintptr_t)buf;
    snprintf(buf, cap, "%.128s:%ld:%08x", host, (long)getpid(),
             (unsigned)rnd);
}

/* Start, join and order the step threads; returns the first failure. */
static int drive(run_t *r, const int *act, const int *state)
{
    marin_executor_t *ex = r->ex;
    size_t n = ex->nsteps, active = 0;
    job_t *first = NULL;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, STEP_STACK);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n; i++)
        if (act[i] == MARIN__XACT_SKIP && state[i] == MARIN_STEP_SUCCESS)
            r->jobs[i].state = J_OK; /* nothing to do: no thread */
    for (;;) {
        for (size_t i = 0; i < n; i++) {
            job_t *j = &r->jobs[i];
            if (j->state != J_ACTIVE || !j->exited)
                continue;
            pthread_join(j->th, NULL);
            active--;
            j->state = j->rc == MARIN_OK ? J_OK : J_FAILED;
            if (j->rc != MARIN_OK && !first) {
                first = j;
                atomic_store(&r->stop, 1);
            }
        }
        for (size_t i = 0; i < n && !atomic_load(&r->stop); i++) {
            job_t *j = &r->jobs[i];
            if (j->state != J_PENDING)
                continue;
            if (r->max_parallel && active >= r->max_parallel)
                break;
            int ready = 1;
            for (size_t k = 0; k < j->s->ndeps; k++)
                if (r->jobs[j->s->deps[k]->index].state != J_OK)
                    ready = 0;
            if (!ready)
                continue;
            int e = pthread_create(&j->th, &attr, job_main, j);
            if (e != 0) {
                j->rc = jfail(j, MARIN_ENOMEM, "cannot start a thread: %s",
                              strerror(e));
                j->state = J_FAILED;
                if (!first)
                    first = j;
                atomic_store(&r->stop, 1);
                break;
            }
            j->state = J_ACTIVE;
            active++;
        }
        if (active == 0)
            break;
        pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    pthread_attr_destroy(&attr);
    if (first)
        return marin__err(first->rc, "marin_executor_run: step '%s' (%s): %s",
                          first->s->name, first->s->path, first->msg);
    return MARIN_OK;
}

int marin_executor_run(marin_executor_t *ex,
                       const marin_executor_options_t *opts)
{
    MARIN__CHECK_ARG(ex, "marin_executor_run", "executor is NULL");
    marin_executor_options_t defaults = {0, 0, MARIN__XDEFAULT_TTL_MS,
                                         MARIN__XDEFAULT_POLL_MS, 0, NULL};
    if (!opts)
        opts = &defaults;
    if (opts->dry_run)
        return marin__api_exit(marin__xprint_plan(ex, opts->force));
    char owner[MARIN_NAME_MAX + 1];
    if (opts->owner)
        snprintf(owner, sizeof owner, "%s", opts->owner);
    else
        default_owner(owner, sizeof owner);

    run_t r;
    memset(&r, 0, sizeof r);
    r.ex = ex;
    r.rt = ex->rt;
    r.force = opts->force;
    r.ttl_ms = opts->ttl_ms;
    r.poll_ms = opts->poll_ms;
    r.max_parallel = opts->max_parallel;
    r.owner = owner;
    atomic_init(&r.stop, 0);
    size_t n = ex->nsteps;
    if (n == 0)
        return marin__api_exit(MARIN_OK);
    int *act = marin__calloc(2 * n, sizeof *act);
    int *state = act + n;
    r.jobs = marin__calloc(n, sizeof *r.jobs);
    if (!act || !r.jobs) {
        marin__free(act);
        marin__free(r.jobs);
        return marin__api_exit(
            marin__err(MARIN_ENOMEM, "marin_executor_run: out of memory"));
    }
    /* Look at every status first: a corrupt file or a FAILED step stops
     * the run before anything starts. */
    int rc = MARIN_OK;
    for (size_t i = 0; i < n && rc == MARIN_OK; i++) {
        marin_step_t *s = ex->steps[i];
        marin__xstatus st;
        if ((rc = marin__xstep_action(ex, s, r.force, &act[i], &st)) !=
            MARIN_OK) {
            char why[MSG_CAP];
            save_msg(why, sizeof why);
            rc = marin__err(rc, "marin_executor_run: step '%s': %s", s->name,
                            why);
        } else if ((state[i] = st.state), act[i] == MARIN__XACT_STOP) {
            rc = marin__err(MARIN_ESTATE,
                            "marin_executor_run: step '%s' FAILED on attempt "
                            "%d (by %s at %s) in %s; fix it and run with "
                            "force to run it again",
                            s->name, st.attempt, st.owner, st.time,
                            s->status_file);
        }
    }
    /* Steps that wait for others to run say so in their status. */
    for (size_t i = 0; i < n && rc == MARIN_OK; i++) {
        marin_step_t *s = ex->steps[i];
        int waits = 0;
        for (size_t k = 0; k < s->ndeps; k++)
            if (act[s->deps[k]->index] == MARIN__XACT_RUN)
                waits = 1;
        if (act[i] == MARIN__XACT_RUN && waits &&
            (rc = mark_waiting(&r, s)) != MARIN_OK) {
            char why[MSG_CAP];
            save_msg(why, sizeof why);
            rc = marin__err(rc, "marin_executor_run: step '%s' (%s): %s",
                            s->name, s->path, why);
        }
    }
    if (rc == MARIN_OK) {
        for (size_t i = 0; i < n; i++) {
            r.jobs[i].run = &r;
            r.jobs[i].s = ex->steps[i];
        }
        pthread_mutex_init(&r.mu, NULL);
        pthread_cond_init(&r.cv, NULL);
        /* Called from a task, it lends that task's cpus back while the
         * steps run, as marin_future_get does, so a small pool does not
         * deadlock. */
        marin__block_begin();
        rc = drive(&r, act, state);
        marin__block_end();
        pthread_cond_destroy(&r.cv);
        pthread_mutex_destroy(&r.mu);
    }
    marin__free(act);
    marin__free(r.jobs);
    return marin__api_exit(rc);
}
