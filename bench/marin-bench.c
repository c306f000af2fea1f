/* marin-bench: throughput, latency and memory figures of a marin backend,
 * with a raw pthread reference measured in the same process run.
 *
 *   marin-bench local [--quick] [--cpus N]
 *   marin-bench redis [--quick]      (= marin-bench local --only redis)
 *
 * Prints one line per figure on stdout, `name value unit`; notes and the
 * individual runs go to stderr as `# ...` lines. docs/performance.md says
 * what each figure means. Exit status: 0 when every figure was measured,
 * 1 on a marin failure (printed with marin_strerror/marin_last_error),
 * 2 on bad usage.
 *
 * This file: the marin figures, the groups, option parsing. The pthread
 * reference is bench_pthread_ref.c; actors, leases and the executor are
 * bench_actor.c; the redis backend (its own redis-server and marin-worker
 * processes; never part of a `local` run unless asked for with --only
 * redis) is bench_redis.c; clock, output lines and medians are
 * bench_util.h/.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <marin/marin.h>

#include "bench_groups.h"
#include "bench_pthread_ref.h"
#include "bench_util.h"

#define NOOP_TASK "bench.noop"
#define GATE_TASK "bench.gate"

typedef struct bench_cfg {
    size_t n;          /* tasks per throughput run and pending tasks */
    size_t redis_n;    /* tasks per redis throughput run */
    size_t redis_lat;  /* redis round-trip latency samples */
    size_t lat_iters;  /* submit latency samples */
    size_t wait_n;     /* futures per wait fan-in round */
    size_t wait_rounds;
    long ncpu;         /* cpus of the marin runtime = reference threads */
    const char *only;  /* run one group (for profiling), NULL: all */
    int no_ref;        /* skip the pthread reference (for profiling) */
} bench_cfg;

/* Groups: memory, latency, submit_get, map, wait, actor, lease, executor;
 * redis only when named (bench_redis). */
static int want(const bench_cfg *cfg, const char *group)
{
    return !cfg->only || strcmp(cfg->only, group) == 0;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "marin-bench: %s: %s: %s\n", what, marin_strerror(rc),
            marin_last_error());
    return rc;
}

/* ---- tasks ---- */

static int noop_task(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *userdata)
{
    (void)ctx, (void)arg, (void)len, (void)userdata;
    return 0;
}

/* The gate task holds its resources until the bench opens the gate. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int holding;
    int open;
} gate;

static gate the_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                        0, 0};

static int gate_task(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *userdata)
{
    gate *g = userdata;
    (void)arg, (void)len;
    pthread_mutex_lock(&g->mu);
    g->holding = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->open && !marin_task_cancelled(ctx)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* ---- memory accounting ---- */

typedef struct mem_sample {
    double rss;   /* resident bytes, /proc/self/statm */
    double heap;  /* malloc in-use bytes: arena + mmapped chunks */
} mem_sample;

static mem_sample mem_now(void)
{
    mem_sample m = {0, 0};
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size = 0, resident = 0;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2)
            m.rss = (double)resident * (double)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    m.heap = (double)mi.uordblks + (double)mi.hblkhd;
#endif
    return m;
}

/* ---- marin figures ---- */

static const char noop_arg[1] = {0};

/* Submit n no-op tasks into futs, then get and release each in order. */
static int marin_submit_get(marin_runtime_t *rt, marin_future_t **futs,
                            size_t n, double *rate)
{
    int rc = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        rc = marin_submit(rt, NOOP_TASK, NULL, 0, NULL, &futs[i]);
        if (rc != MARIN_OK) {
            fail("marin_submit", rc);
            for (size_t j = 0; j < i; j++)
                marin_future_release(futs[j]);
            return rc;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int grc = marin_future_get(futs[i], -1, NULL, NULL);
        if (grc != MARIN_OK && rc == 0)
            rc = fail("marin_future_get", grc);
        marin_future_release(futs[i]);
    }
    *rate = (double)n / (now_s() - t0);
    return rc;
}

typedef struct map_state {
    size_t n, produced, delivered, next_index;
    int bad_order;
} map_state;

static int map_next(const void **arg, size_t *len, void *userdata)
{
    map_state *s = userdata;
    if (s->produced == s->n)
        return 0;
    s->produced++;
    *arg = noop_arg;
    *len = 0;
    return 1;
}

static int map_result(size_t index, int status, const void *data, size_t len,
                      void *userdata)
{
    map_state *s = userdata;
    (void)data, (void)len;
    if (index != s->next_index)
        s->bad_order = 1;
    s->next_index = index + 1;
    s->delivered++;
    return status;
}

static int marin_map(marin_runtime_t *rt, const marin_map_options_t *mo,
                     size_t n, double *rate)
{
    map_state s = {n, 0, 0, 0, 0};
    double t0 = now_s();
    int rc = marin_map_ordered(rt, NOOP_TASK, map_next, map_result, mo, &s);
    double dt = now_s() - t0;
    if (rc != MARIN_OK)
        return fail("marin_map_ordered", rc);
    if (s.delivered != n || s.bad_order) {
        fprintf(stderr, "marin-bench: marin_map_ordered delivered %zu of %zu"
                " results%s\n", s.delivered, n,
                s.bad_order ? ", out of order" : "");
        return MARIN_ESTATE;
    }
    *rate = (double)n / dt;
    return 0;
}

/* Submit latency with idle workers: submit one, wait for it, repeat; only
 * the marin_submit call is timed, and the submit-to-result round trip.
 * pause_us = 0: back to back (a worker may still be on its way back to the
 * queue); > 0: sleep that long before each submit, so every worker is
 * asleep and the submit pays for waking one. Figures are named
 * local.<prefix>_p50 and so on. */
static int marin_latency(marin_runtime_t *rt, size_t iters, long pause_us,
                         const char *sub_name, const char *rt_name)
{
    int64_t *sub = malloc(iters * sizeof *sub);
    int64_t *rt_ns = malloc(iters * sizeof *rt_ns);
    int rc = 0;
    char name[96];
    if (!sub || !rt_ns) {
        fprintf(stderr, "marin-bench: out of memory\n");
        free(sub), free(rt_ns);
        return MARIN_ENOMEM;
    }
    size_t warm = iters / 10;
    for (size_t i = 0; i < warm + iters; i++) {
        marin_future_t *f;
        if (pause_us > 0) {
            struct timespec ts = {0, pause_us * 1000};
            nanosleep(&ts, NULL);
        }
        int64_t t0 = now_ns();
        rc = marin_submit(rt, NOOP_TASK, NULL, 0, NULL, &f);
        int64_t t1 = now_ns();
        if (rc != MARIN_OK) {
            fail("marin_submit", rc);
            goto out;
        }
        rc = marin_future_get(f, -1, NULL, NULL);
        int64_t t2 = now_ns();
        marin_future_release(f);
        if (rc != MARIN_OK) {
            fail("marin_future_get", rc);
            goto out;
        }
        if (i >= warm) {
            sub[i - warm] = t1 - t0;
            rt_ns[i - warm] = t2 - t0;
        }
    }
    qsort(sub, iters, sizeof *sub, cmp_i64);
    qsort(rt_ns, iters, sizeof *rt_ns, cmp_i64);
    size_t p50 = iters / 2, p99 = iters * 99 / 100, p999 = iters * 999 / 1000;
    snprintf(name, sizeof name, "local.%s_p50", sub_name);
    figure(name, (double)sub[p50] / 1e3, 2, "us");
    snprintf(name, sizeof name, "local.%s_p99", sub_name);
    figure(name, (double)sub[p99] / 1e3, 2, "us");
    snprintf(name, sizeof name, "local.%s_p99.9", sub_name);
    figure(name, (double)sub[p999] / 1e3, 2, "us");
    snprintf(name, sizeof name, "local.%s_p50", rt_name);
    figure(name, (double)rt_ns[p50] / 1e3, 2, "us");
    snprintf(name, sizeof name, "local.%s_p99", rt_name);
    figure(name, (double)rt_ns[p99] / 1e3, 2, "us");
out:
    free(sub);
    free(rt_ns);
    return rc;
}

/* marin_wait fan-in: (a) n futures, one wait for all of them; (b) a
 * wait-any loop that takes one ready future at a time out of the set. */
static int marin_wait_fanin(marin_runtime_t *rt, marin_future_t **futs,
                            size_t n, size_t rounds)
{
    size_t *idx = malloc(n * sizeof *idx);
    int rc = 0;
    size_t submitted = 0, alive = 0;
    if (!idx) {
        fprintf(stderr, "marin-bench: out of memory\n");
        return MARIN_ENOMEM;
    }
    char name[64];

    /* (a) wait for all */
    double t0 = now_s();
    for (size_t r = 0; r < rounds; r++) {
        for (submitted = 0; submitted < n; submitted++) {
            rc = marin_submit(rt, NOOP_TASK, NULL, 0, NULL, &futs[submitted]);
            if (rc != MARIN_OK) {
                fail("marin_submit", rc);
                alive = submitted;
                goto out;
            }
        }
        alive = n;
        size_t nready = 0;
        rc = marin_wait(futs, n, n, -1, idx, &nready);
        if (rc != MARIN_OK) {
            fail("marin_wait", rc);
            goto out;
        }
        if (nready != n) {
            fprintf(stderr, "marin-bench: marin_wait(-1) returned %zu of %zu"
                    "\n", nready, n);
            rc = MARIN_ESTATE;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            marin_future_release(futs[i]);
        alive = 0;
    }
    snprintf(name, sizeof name, "local.wait_all_%zuk", n / 1000);
    figure(name, (double)(n * rounds) / (now_s() - t0), 0, "tasks/s");

    /* (b) wait-any loop */
    double waits = 0, wait_time = 0;
    for (size_t r = 0; r < rounds; r++) {
        for (submitted = 0; submitted < n; submitted++) {
            rc = marin_submit(rt, NOOP_TASK, NULL, 0, NULL, &futs[submitted]);
            if (rc != MARIN_OK) {
                fail("marin_submit", rc);
                alive = submitted;
                goto out;
            }
        }
        alive = n;
        t0 = now_s();
        while (alive > 0) {
            size_t nready = 0;
            rc = marin_wait(futs, alive, 1, -1, idx, &nready);
            if (rc != MARIN_OK) {
                fail("marin_wait", rc);
                goto out;
            }
            if (nready != 1 || idx[0] >= alive) {
                fprintf(stderr, "marin-bench: marin_wait(num_returns=1) gave"
                        " %zu ready\n", nready);
                rc = MARIN_ESTATE;
                goto out;
            }
            marin_future_release(futs[idx[0]]);
            futs[idx[0]] = futs[--alive];
            waits++;
        }
        wait_time += now_s() - t0;
    }
    snprintf(name, sizeof name, "local.wait_any_%zuk", n / 1000);
    figure(name, waits / wait_time, 0, "waits/s");
out:
    for (size_t i = 0; i < alive; i++)
        marin_future_release(futs[i]);
    free(idx);
    return rc;
}

/* Memory per pending task: a gate task holds the only unit of resource
 * `gate`; n tasks that each need gate=1 then stay pending. */
static int marin_pending_memory(const bench_cfg *cfg, marin_future_t **futs)
{
    char uri[128];
    marin_runtime_t *rt = NULL;
    marin_task_options_t *to = NULL;
    marin_resources_t *res = NULL;
    marin_future_t *holder = NULL;
    size_t submitted = 0;
    int rc;

    snprintf(uri, sizeof uri, "local://?resources=cpus=%ld,gate=1",
             cfg->ncpu);
    if ((rc = marin_runtime_open(uri, &rt)) != MARIN_OK)
        return fail("marin_runtime_open(gate)", rc);
    if ((rc = marin_task_options_create(&to)) != MARIN_OK ||
        (rc = marin_resources_parse("cpus=1,gate=1", &res)) != MARIN_OK ||
        (rc = marin_task_options_set_resources(to, res)) != MARIN_OK) {
        fail("task options", rc);
        goto out;
    }
    if ((rc = marin_submit(rt, GATE_TASK, NULL, 0, to, &holder)) != MARIN_OK) {
        fail("marin_submit(gate)", rc);
        goto out;
    }
    pthread_mutex_lock(&the_gate.mu);
    while (!the_gate.holding)
        pthread_cond_wait(&the_gate.cv, &the_gate.mu);
    pthread_mutex_unlock(&the_gate.mu);

    malloc_trim(0);
    mem_sample before = mem_now();
    double t0 = now_s();
    for (; submitted < cfg->n; submitted++) {
        rc = marin_submit(rt, NOOP_TASK, NULL, 0, to, &futs[submitted]);
        if (rc != MARIN_OK) {
            fail("marin_submit(pending)", rc);
            goto out;
        }
    }
    double t1 = now_s();
    mem_sample after = mem_now();
    size_t still_pending = 0;
    for (size_t i = 0; i < submitted; i++)
        still_pending += marin_future_state(futs[i]) == MARIN_FUTURE_PENDING;
    if (still_pending != submitted)
        note("only %zu of %zu gated tasks were pending", still_pending,
             submitted);
    double n = (double)submitted;
    figure("local.pending_task_bytes", (after.heap - before.heap) / n, 0,
           "bytes/task");
    figure("local.pending_task_rss_bytes", (after.rss - before.rss) / n, 0,
           "bytes/task");
    figure("local.submit_pending", n / (t1 - t0), 0, "tasks/s");

    /* open the gate: the pending tasks run one at a time (gate=1) */
    pthread_mutex_lock(&the_gate.mu);
    the_gate.open = 1;
    pthread_cond_broadcast(&the_gate.cv);
    pthread_mutex_unlock(&the_gate.mu);
    t0 = now_s();
    rc = marin_future_get(holder, -1, NULL, NULL);
    if (rc != MARIN_OK) {
        fail("marin_future_get(gate)", rc);
        goto out;
    }
    for (size_t i = 0; i < submitted; i++) {
        int grc = marin_future_get(futs[i], -1, NULL, NULL);
        if (grc != MARIN_OK && rc == MARIN_OK)
            rc = fail("marin_future_get(gated)", grc);
    }
    if (rc == MARIN_OK)
        figure("local.drain_gated", n / (now_s() - t0), 0, "tasks/s");
out:
    for (size_t i = 0; i < submitted; i++)
        marin_future_release(futs[i]);
    marin_future_release(holder);
    marin_task_options_destroy(to);
    marin_resources_destroy(res);
    marin_runtime_close(rt);
    return rc;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: marin-bench local [--quick] [--cpus N] [--only G]\n"
            "       marin-bench redis [--quick]\n"
            "  --quick   100k tasks per run instead of 1M (smoke run);\n"
            "            redis: 5k instead of 50k, 500 latency samples\n"
            "  --cpus N  cpus of the runtime and reference threads"
            " (default: online CPUs)\n"
            "  --only G  one group: memory, latency, submit_get, map, wait,\n"
            "            actor, lease, executor, redis\n"
            "  --no-ref  skip the pthread reference and the ratios\n"
            "redis starts its own redis-server and two marin-worker processes\n"
            "(docs/performance.md#redis); it is skipped when redis-server is missing.\n");
}

/* Submit latency back to back and with sleeping workers, and the same for
 * the reference. */
static int group_latency(const bench_cfg *cfg, marin_runtime_t *rt,
                         ref_pool *pool)
{
    size_t idle_iters = cfg->lat_iters / 5;
    int rc;
    if ((rc = marin_latency(rt, cfg->lat_iters, 0, "submit_latency",
                            "roundtrip_latency")) != MARIN_OK ||
        (rc = marin_latency(rt, idle_iters, 100, "submit_latency_idle",
                            "roundtrip_latency_idle")) != MARIN_OK)
        return rc;
    if (cfg->no_ref)
        return 0;
    if ((rc = ref_latency(pool, cfg->lat_iters, 0,
                          "pthread_submit_latency")) != MARIN_OK)
        return rc;
    return ref_latency(pool, idle_iters, 100, "pthread_submit_latency_idle");
}

/* Submit all, then get in order: marin and the reference, interleaved. */
static int group_submit_get(const bench_cfg *cfg, marin_runtime_t *rt,
                            ref_pool *pool, marin_future_t **futs,
                            ref_item **items)
{
    double m[RUNS], r[RUNS], warm;
    int rc;
    if ((rc = marin_submit_get(rt, futs, cfg->n / 10, &warm)) != MARIN_OK ||
        (!cfg->no_ref &&
         (rc = ref_submit_get(pool, items, cfg->n / 10, &warm)) != MARIN_OK))
        return rc;
    for (int i = 0; i < RUNS; i++)
        if ((rc = marin_submit_get(rt, futs, cfg->n, &m[i])) != MARIN_OK ||
            (!cfg->no_ref &&
             (rc = ref_submit_get(pool, items, cfg->n, &r[i])) != MARIN_OK))
            return rc;
    double mm = median3(m, "local.submit_get_noop");
    figure("local.submit_get_noop", mm, 0, "tasks/s");
    if (cfg->no_ref)
        return 0;
    double rm = median3(r, "ref.pthread_submit_get");
    figure("ref.pthread_submit_get", rm, 0, "tasks/s");
    figure("ratio_vs_pthread", mm / rm, 3, "x");
    return 0;
}

/* Ordered map with a window of 1000, and the windowed reference. */
static int group_map(const bench_cfg *cfg, marin_runtime_t *rt,
                     ref_pool *pool)
{
    double m[RUNS], r[RUNS];
    marin_map_options_t *mo = NULL;
    int rc;
    if ((rc = marin_map_options_create(&mo)) != MARIN_OK ||
        (rc = marin_map_options_set_max_in_flight(mo, WINDOW)) != MARIN_OK) {
        fail("map options", rc);
        goto out;
    }
    for (int i = 0; i < RUNS; i++)
        if ((rc = marin_map(rt, mo, cfg->n, &m[i])) != MARIN_OK ||
            (!cfg->no_ref &&
             (rc = ref_window(pool, cfg->n, &r[i])) != MARIN_OK))
            goto out;
    double mm = median3(m, "local.map_ordered_noop");
    figure("local.map_ordered_noop", mm, 0, "tasks/s");
    if (cfg->no_ref)
        goto out;
    double rm = median3(r, "ref.pthread_window");
    figure("ref.pthread_window", rm, 0, "tasks/s");
    figure("ratio_vs_pthread_window", mm / rm, 3, "x");
out:
    marin_map_options_destroy(mo);
    return rc;
}

static int run_local(const bench_cfg *cfg)
{
    marin_runtime_t *rt = NULL;
    marin_future_t **futs = NULL;
    ref_item **items = NULL;
    ref_pool pool;
    int pool_up = 0;
    int rc;
    char uri[96];

    char load[64] = "?";
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (!fgets(load, sizeof load, lf))
            snprintf(load, sizeof load, "?");
        load[strcspn(load, "\n")] = '\0';
        fclose(lf);
    }
    note("marin-bench local: n=%zu cpus=%ld marin %s; loadavg %s", cfg->n,
         cfg->ncpu, MARIN_VERSION_STRING, load);
    futs = calloc(cfg->n, sizeof *futs);
    items = calloc(cfg->n, sizeof *items);
    if (!futs || !items) {
        fprintf(stderr, "marin-bench: out of memory\n");
        rc = MARIN_ENOMEM;
        goto out;
    }
    /* touch the arrays now so they are not counted as task memory */
    memset(futs, 0, cfg->n * sizeof *futs);
    memset(items, 0, cfg->n * sizeof *items);

    if ((rc = marin_register_task(NOOP_TASK, noop_task, NULL)) != MARIN_OK ||
        (rc = marin_register_task(GATE_TASK, gate_task, &the_gate)) !=
            MARIN_OK) {
        fail("marin_register_task", rc);
        goto out;
    }

    /* memory first, on a fresh heap and its own runtime */
    if (want(cfg, "memory") &&
        (rc = marin_pending_memory(cfg, futs)) != MARIN_OK)
        goto out;

    snprintf(uri, sizeof uri, "local://?resources=cpus=%ld", cfg->ncpu);
    if ((rc = marin_runtime_open(uri, &rt)) != MARIN_OK) {
        fail("marin_runtime_open", rc);
        goto out;
    }
    pool_up = 1; /* ref_stop undoes a partial start too */
    if (ref_start(&pool, cfg->ncpu) != 0) {
        fprintf(stderr, "marin-bench: cannot start reference threads\n");
        rc = MARIN_ENOMEM;
        goto out;
    }

    if ((want(cfg, "latency") &&
         (rc = group_latency(cfg, rt, &pool)) != MARIN_OK) ||
        (want(cfg, "submit_get") &&
         (rc = group_submit_get(cfg, rt, &pool, futs, items)) != MARIN_OK) ||
        (want(cfg, "map") && (rc = group_map(cfg, rt, &pool)) != MARIN_OK) ||
        (want(cfg, "wait") &&
         (rc = marin_wait_fanin(rt, futs, cfg->wait_n, cfg->wait_rounds)) !=
             MARIN_OK) ||
        (want(cfg, "actor") &&
         (rc = bench_actors(rt, cfg->n / 20, cfg->n, cfg->ncpu, cfg->no_ref)) != 0) ||
        (want(cfg, "lease") && (rc = bench_leases(rt, cfg->n / 5)) != 0) ||
        (want(cfg, "executor") && (rc = bench_executor(rt, 50)) != 0))
        goto out;
    rc = 0;
out:
    if (pool_up)
        ref_stop(&pool);
    marin_runtime_close(rt);
    free(futs);
    free(items);
    return rc;
}

int main(int argc, char **argv)
{
    bench_cfg cfg = {1000000, 50000, 2000, 100000, 10000, 10, 0, NULL, 0};
    const char *backend = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            cfg.n = 100000;
            cfg.redis_n = 5000;
            cfg.redis_lat = 500;
            cfg.lat_iters = 20000;
            cfg.wait_rounds = 3;
        } else if (strcmp(argv[i], "--cpus") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            cfg.ncpu = strtol(argv[++i], &end, 10);
            if (errno || *end || cfg.ncpu < 1 || cfg.ncpu > 4096) {
                usage();
                return 2;
            }
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            cfg.only = argv[++i];
        } else if (strcmp(argv[i], "--no-ref") == 0) {
            cfg.no_ref = 1;
        } else if (strcmp(argv[i], "-h") == 0 ||
                   strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (!backend && argv[i][0] != '-') {
            backend = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (backend && strcmp(backend, "redis") == 0) {
        if (cfg.only && strcmp(cfg.only, "redis") != 0) {
            usage();
            return 2;
        }
        cfg.only = "redis";
    } else if (!backend && cfg.only && strcmp(cfg.only, "redis") == 0) {
        backend = "redis";
    }
    if (!backend || (strcmp(backend, "local") != 0 && strcmp(backend, "redis") != 0)) {
        usage();
        return 2;
    }
    if (cfg.only && strcmp(cfg.only, "redis") == 0)
        return bench_redis(cfg.redis_n, cfg.redis_lat) == 0 ? 0 : 1;
    if (cfg.ncpu == 0) {
        cfg.ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (cfg.ncpu < 1)
            cfg.ncpu = 1;
    }
    return run_local(&cfg) == 0 ? 0 : 1;
}
