/* marin-bench: actors, leases and the executor, with a condvar ping-pong
 * between two threads as the reference for synchronous actor calls (an
 * actor round trip is two thread handoffs, as is one ping-pong). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <marin/marin.h>

#include "bench_groups.h"
#include "bench_util.h"

#define BENCH_CLASS "bench.Counter"
#define STEP_TASK "bench.step"

static int report(const char *what, int rc)
{
    fprintf(stderr, "marin-bench: %s: %s: %s\n", what, marin_strerror(rc),
            marin_last_error());
    return rc;
}

/* ---- the actor class: a counter ---- */

static int counter_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    (void)ctx, (void)arg, (void)len;
    long *n = calloc(1, sizeof *n);
    if (!n)
        return MARIN_ENOMEM;
    *self = n;
    return 0;
}

static void counter_fini(void *self)
{
    free(self);
}

static int counter_add(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)ctx, (void)arg, (void)len;
    ++*(long *)self;
    return 0;
}

static int register_class(void)
{
    static int done;
    if (done)
        return 0;
    marin_actor_class_t *c = NULL;
    int rc;
    if ((rc = marin_actor_class_create(BENCH_CLASS, counter_init, counter_fini, &c)) ||
        (rc = marin_actor_class_add_method(c, "add", counter_add, 0)) ||
        (rc = marin_register_actor_class(c))) {
        marin_actor_class_destroy(c);
        return report("registering the actor class", rc);
    }
    marin_actor_class_destroy(c);
    done = 1;
    return 0;
}

/* ---- reference: condvar ping-pong between two threads ---- */

typedef struct pingpong {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long turn; /* odd: the server's move */
    long rounds;
} pingpong;

static void *pong_main(void *p)
{
    pingpong *pp = p;
    pthread_mutex_lock(&pp->mu);
    for (long i = 0; i < pp->rounds; i++) {
        while (!(pp->turn & 1))
            pthread_cond_wait(&pp->cv, &pp->mu);
        pp->turn++;
        pthread_cond_signal(&pp->cv);
    }
    pthread_mutex_unlock(&pp->mu);
    return NULL;
}

static double pingpong_run(long rounds)
{
    pingpong pp = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, rounds};
    pthread_t th;
    if (pthread_create(&th, NULL, pong_main, &pp) != 0)
        return 0;
    double t0 = now_s();
    pthread_mutex_lock(&pp.mu);
    for (long i = 0; i < rounds; i++) {
        pp.turn++;
        pthread_cond_signal(&pp.cv);
        while (pp.turn & 1)
            pthread_cond_wait(&pp.cv, &pp.mu);
    }
    pthread_mutex_unlock(&pp.mu);
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    return (double)rounds / dt;
}

/* ---- actor figures ---- */

static int sync_calls(marin_actor_t *a, size_t n, double *rate)
{
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        marin_future_t *f;
        int rc = marin_actor_call(a, "add", NULL, 0, &f);
        if (rc == MARIN_OK)
            rc = marin_future_get(f, -1, NULL, NULL);
        marin_future_release(f);
        if (rc != MARIN_OK)
            return report("sync actor call", rc);
    }
    *rate = (double)n / (now_s() - t0);
    return 0;
}

static int pipelined_calls(marin_actor_t *a, marin_future_t **futs, size_t n,
                           double *rate)
{
    double t0 = now_s();
    int rc = 0;
    size_t made = 0;
    for (; made < n; made++)
        if ((rc = marin_actor_call(a, "add", NULL, 0, &futs[made])) != MARIN_OK)
            break;
    for (size_t i = 0; i < made; i++) {
        int r = marin_future_get(futs[i], -1, NULL, NULL);
        if (r != MARIN_OK && rc == MARIN_OK)
            rc = r;
        marin_future_release(futs[i]);
    }
    if (rc != MARIN_OK)
        return report("pipelined actor call", rc);
    *rate = (double)n / (now_s() - t0);
    return 0;
}

typedef struct caller {
    pthread_t th;
    marin_actor_t *a;
    size_t n;
    int rc;
} caller;

static void *caller_main(void *p)
{
    caller *c = p;
    double rate;
    c->rc = sync_calls(c->a, c->n, &rate);
    return NULL;
}

/* n callers, each with its own actor, synchronous calls. */
static int fan_calls(marin_runtime_t *rt, long ncallers, size_t per, double *rate)
{
    caller *cs = calloc((size_t)ncallers, sizeof *cs);
    if (!cs)
        return MARIN_ENOMEM;
    int rc = 0;
    long made = 0;
    for (; made < ncallers; made++)
        if ((rc = marin_actor_create(rt, BENCH_CLASS, NULL, 0, NULL, &cs[made].a)) !=
            MARIN_OK) {
            report("marin_actor_create", rc);
            break;
        }
    double t0 = now_s();
    long started = 0;
    for (; rc == MARIN_OK && started < made; started++) {
        cs[started].n = per;
        if (pthread_create(&cs[started].th, NULL, caller_main, &cs[started]) != 0) {
            rc = MARIN_ENOMEM;
            break;
        }
    }
    for (long i = 0; i < started; i++) {
        pthread_join(cs[i].th, NULL);
        if (cs[i].rc && !rc)
            rc = cs[i].rc;
    }
    *rate = (double)(per * (size_t)started) / (now_s() - t0);
    for (long i = 0; i < made; i++) {
        marin_actor_kill(cs[i].a, 1);
        marin_actor_release(cs[i].a);
    }
    free(cs);
    return rc;
}

int bench_actors(marin_runtime_t *rt, size_t n_sync, size_t n_pipe, long ncpu,
                 int no_ref)
{
    if (register_class())
        return MARIN_EINVAL;
    marin_actor_t *a = NULL;
    marin_future_t **futs = calloc(n_pipe, sizeof *futs);
    double s[RUNS], p[RUNS], r[RUNS], fan[RUNS];
    int rc = MARIN_ENOMEM;
    if (!futs)
        goto out;
    if ((rc = marin_actor_create(rt, BENCH_CLASS, NULL, 0, NULL, &a)) != MARIN_OK ||
        (rc = marin_actor_ready(a, -1)) != MARIN_OK) {
        report("marin_actor_create", rc);
        goto out;
    }
    double warm;
    if ((rc = sync_calls(a, n_sync / 10, &warm)) != 0)
        goto out;
    if (!no_ref)
        pingpong_run((long)n_sync / 10);
    for (int i = 0; i < RUNS; i++) {
        if ((rc = sync_calls(a, n_sync, &s[i])) != 0)
            goto out;
        if (!no_ref)
            r[i] = pingpong_run((long)n_sync);
    }
    for (int i = 0; i < RUNS; i++)
        if ((rc = pipelined_calls(a, futs, n_pipe, &p[i])) != 0)
            goto out;
    for (int i = 0; i < RUNS; i++)
        if ((rc = fan_calls(rt, ncpu, n_sync, &fan[i])) != 0)
            goto out;
    double sm = median3(s, "local.actor_call_sync");
    figure("local.actor_call_sync", sm, 0, "calls/s");
    if (!no_ref) {
        double rm = median3(r, "ref.pthread_pingpong");
        figure("ref.pthread_pingpong", rm, 0, "roundtrips/s");
        figure("ratio_vs_pingpong", sm / rm, 3, "x");
    }
    figure("local.actor_call_pipelined", median3(p, "local.actor_call_pipelined"), 0,
           "calls/s");
    char name[64];
    snprintf(name, sizeof name, "local.actor_call_%ldcallers_%ldactors", ncpu, ncpu);
    figure(name, median3(fan, name), 0, "calls/s");
    rc = 0;
out:
    marin_actor_kill(a, 1);
    marin_actor_release(a);
    free(futs);
    return rc;
}

/* Remove a scratch directory made with mkdtemp. */
static void remove_dir(const char *dir)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        note("could not remove %s", dir);
}

/* ---- leases ---- */

static int lease_loop(marin_runtime_t *rt, size_t n, double *rate)
{
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        uint64_t token;
        int rc = marin_lease_acquire(rt, "bench-lease", "bench", 30000, &token);
        if (rc == MARIN_OK)
            rc = marin_lease_release(rt, "bench-lease", "bench");
        if (rc != MARIN_OK)
            return report("lease acquire+release", rc);
    }
    *rate = (double)n / (now_s() - t0);
    return 0;
}

int bench_leases(marin_runtime_t *rt, size_t n)
{
    double m[RUNS], f[RUNS];
    int rc;
    for (int i = 0; i < RUNS; i++)
        if ((rc = lease_loop(rt, n, &m[i])) != 0)
            return rc;
    figure("local.lease_acquire_release", median3(m, "local.lease_acquire_release"), 0,
           "pairs/s");
    char dir[] = "/tmp/marin-bench-state-XXXXXX";
    if (!mkdtemp(dir))
        return MARIN_EUNAVAILABLE;
    char uri[128];
    snprintf(uri, sizeof uri, "local://?state=%s", dir);
    marin_runtime_t *frt = NULL;
    if ((rc = marin_runtime_open(uri, &frt)) != MARIN_OK) {
        report("marin_runtime_open (file-backed state)", rc);
        goto out;
    }
    size_t fn = n / 20 ? n / 20 : 1; /* each one fsyncs */
    for (int i = 0; i < RUNS; i++)
        if ((rc = lease_loop(frt, fn, &f[i])) != 0)
            goto out;
    figure("local.lease_acquire_release_file", median3(f, "local.lease_acquire_release_file"),
           0, "pairs/s");
out:
    marin_runtime_close(frt);
    remove_dir(dir);
    return rc;
}

/* ---- executor ---- */

static int step_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *userdata)
{
    (void)ctx, (void)arg, (void)len, (void)userdata;
    return 0;
}

/* A chain of @p nsteps no-op steps: time per step run, then per skip. */
int bench_executor(marin_runtime_t *rt, size_t nsteps)
{
    static int registered;
    int rc;
    if (!registered && (rc = marin_register_task(STEP_TASK, step_task, NULL)) != MARIN_OK)
        return report("marin_register_task", rc);
    registered = 1;
    char dir[] = "/tmp/marin-bench-prefix-XXXXXX";
    if (!mkdtemp(dir))
        return MARIN_EUNAVAILABLE;
    marin_executor_t *ex = NULL;
    if ((rc = marin_executor_create(rt, dir, &ex)) != MARIN_OK) {
        report("marin_executor_create", rc);
        goto out;
    }
    marin_step_t *prev = NULL;
    for (size_t i = 0; i < nsteps; i++) {
        char name[32];
        snprintf(name, sizeof name, "step%03zu", i);
        marin_step_t *s;
        if ((rc = marin_executor_add_step(ex, name, STEP_TASK, name, strlen(name), "v1",
                                          prev ? &prev : NULL, prev ? 1 : 0, NULL, &s)) !=
            MARIN_OK) {
            report("marin_executor_add_step", rc);
            goto out;
        }
        prev = s;
    }
    double t0 = now_s();
    if ((rc = marin_executor_run(ex, NULL)) != MARIN_OK) {
        report("marin_executor_run", rc);
        goto out;
    }
    double ran = (now_s() - t0) / (double)nsteps;
    t0 = now_s();
    if ((rc = marin_executor_run(ex, NULL)) != MARIN_OK) {
        report("marin_executor_run (rerun)", rc);
        goto out;
    }
    double skipped = (now_s() - t0) / (double)nsteps;
    figure("local.executor_step_overhead", ran * 1e6, 0, "us/step");
    figure("local.executor_skip_overhead", skipped * 1e6, 0, "us/step");
out:
    marin_executor_destroy(ex);
    remove_dir(dir);
    return rc;
}
