/* Tests for the local backend (src/backends/local): resource-fitted
 * scheduling, infeasible requests, GPU ids, capacity, URIs and backend
 * selection, nested work that must not deadlock, FIFO order and worker
 * death. */
#define _GNU_SOURCE
#define MARIN_EXPERIMENTAL
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#include "marin/experimental.h"

#define CAP_MIXED "local://?resources=cpus=2,memory=1GiB,TPU=4"

/* ---- shared state (each case runs in its own forked process) ---- */

static atomic_int g_cur;         /* tracked tasks running now */
static atomic_int g_max;         /* most seen at once */
static atomic_int g_target;      /* l_track waits for this many at once */
static atomic_int g_gate;
static atomic_int g_started;
static atomic_int g_ran;         /* tasks run (l_nest, l_tree) */
static atomic_int g_order[64];
static atomic_int g_norder;
static atomic_int g_gpu_use[8];  /* tasks holding each GPU id now */
static atomic_int g_gpu_violation;
static atomic_int g_gpu_bad_id;
static atomic_int g_attempts;
static atomic_int g_done_calls;

static void track_enter(void)
{
    int now = atomic_fetch_add(&g_cur, 1) + 1;
    int max = atomic_load(&g_max);
    while (now > max && !atomic_compare_exchange_weak(&g_max, &max, now))
        ;
}

static void track_exit(void) { atomic_fetch_sub(&g_cur, 1); }

/* ---- tasks ---- */

/* Counted while running; stays until g_target have run at once (at most the
 * number of ms given as argument). */
static int l_track(marin_task_ctx_t *ctx, const void *arg, size_t len,
                   void *ud)
{
    (void)ctx;
    (void)ud;
    track_enter();
    int64_t end = now_ms() + arg_int(arg, len);
    while (now_ms() < end && atomic_load(&g_max) < atomic_load(&g_target))
        sleep_ms(1);
    track_exit();
    return 0;
}

/* Holds its GPU ids for a while, checking no other task holds them;
 * result: its ids. Waits for g_target tasks at once (at most the argument
 * in ms). */
static int l_gpu(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    int ids[8];
    size_t n = 0;
    int rc = marin_task_gpu_ids(ctx, ids, 8, &n);
    if (rc != MARIN_OK)
        return marin_task_fail(ctx, "marin_task_gpu_ids failed");
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= 8) {
            atomic_store(&g_gpu_bad_id, 1);
            continue;
        }
        if (atomic_fetch_add(&g_gpu_use[ids[i]], 1) != 0)
            atomic_store(&g_gpu_violation, 1);
    }
    track_enter();
    int64_t end = now_ms() + arg_int(arg, len);
    while (now_ms() < end && atomic_load(&g_max) < atomic_load(&g_target))
        sleep_ms(1);
    sleep_ms(2);
    track_exit();
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < 8)
            atomic_fetch_sub(&g_gpu_use[ids[i]], 1);
    return marin_task_return(ctx, ids, n * sizeof ids[0]);
}

/* Submits itself with depth - 1 and waits with marin_future_get; result:
 * the depth reached + 1 (an int). */
static int l_nest(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_ran, 1);
    int depth = arg_int(arg, len);
    int result = 1;
    if (depth > 0) {
        int child_depth = depth - 1;
        marin_future_t *child = NULL;
        int rc = marin_submit(marin_task_runtime(ctx), "l_nest", &child_depth,
                              sizeof child_depth, NULL, &child);
        if (rc != MARIN_OK)
            return marin_task_fail(ctx, "nested submit failed");
        const void *data = NULL;
        size_t dl = 0;
        rc = marin_future_get(child, 10000, &data, &dl);
        if (rc != MARIN_OK) {
            marin_future_release(child);
            return marin_task_fail(ctx, "nested get failed");
        }
        result = arg_int(data, dl) + 1;
        marin_future_release(child);
    }
    return marin_task_return(ctx, &result, sizeof result);
}

#define FANOUT 3

/* Submits FANOUT children with depth - 1, waits for all with marin_wait;
 * result: the number of leaves below (an int). */
static int l_tree(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_ran, 1);
    int depth = arg_int(arg, len);
    int leaves = 1;
    if (depth > 0) {
        int child_depth = depth - 1;
        marin_future_t *kids[FANOUT] = {NULL};
        int rc = MARIN_OK;
        for (int i = 0; i < FANOUT && rc == MARIN_OK; i++)
            rc = marin_submit(marin_task_runtime(ctx), "l_tree", &child_depth,
                              sizeof child_depth, NULL, &kids[i]);
        size_t idx[FANOUT], nready = 0;
        if (rc == MARIN_OK)
            rc = marin_wait(kids, FANOUT, FANOUT, 10000, idx, &nready);
        leaves = 0;
        for (int i = 0; i < FANOUT; i++) {
            const void *data = NULL;
            size_t dl = 0;
            if (rc == MARIN_OK && nready == FANOUT &&
                marin_future_get(kids[i], 0, &data, &dl) == MARIN_OK)
                leaves += arg_int(data, dl);
            else
                rc = MARIN_ETIMEDOUT;
            marin_future_release(kids[i]);
        }
        if (rc != MARIN_OK)
            return marin_task_fail(ctx, "fan-out wait failed");
    }
    return marin_task_return(ctx, &leaves, sizeof leaves);
}

/* Waits for g_gate (at most 3 s). */
static int l_gate(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_started, 1);
    for (int i = 0; i < 3000 && !atomic_load(&g_gate) &&
                    !marin_task_cancelled(ctx);
         i++)
        sleep_ms(1);
    return 0;
}

/* Appends its argument to g_order. */
static int l_order(marin_task_ctx_t *ctx, const void *arg, size_t len,
                   void *ud)
{
    (void)ctx;
    (void)ud;
    int k = atomic_fetch_add(&g_norder, 1);
    if (k < 64)
        atomic_store(&g_order[k], arg_int(arg, len));
    return 0;
}

/* The first attempt sets a result and then its worker dies; the second
 * returns "good". */
static int l_kill_once(marin_task_ctx_t *ctx, const void *arg, size_t len,
                       void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_attempts, 1);
    if (marin_task_attempt(ctx) == 1) {
        marin_task_return(ctx, "bad", 3);
        return marin_test_kill_worker(ctx);
    }
    return marin_task_return(ctx, "good", 4);
}

static void count_done(marin_future_t *f, int status, void *ud)
{
    (void)f;
    (void)ud;
    if (status == MARIN_OK)
        atomic_fetch_add(&g_done_calls, 1);
    else
        atomic_fetch_add(&g_done_calls, 1000);
}

/* ---- helpers ---- */

/* Submit n l_track tasks needing @p spec, each staying up to @p ms;
 * return the most that ran at once. */
static int run_tracked(marin_runtime_t *rt, const char *spec, int n, int ms,
                       int target)
{
    atomic_store(&g_cur, 0);
    atomic_store(&g_max, 0);
    atomic_store(&g_target, target);
    marin_task_options_t *o = opts_with_resources(spec);
    marin_future_t *fs[16];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++)
        ck_assert_marin(marin_submit(rt, "l_track", &ms, sizeof ms, o, &fs[i]),
                        MARIN_OK);
    marin_task_options_destroy(o);
    for (int i = 0; i < n; i++) {
        ck_assert_marin(marin_future_get(fs[i], 5000, NULL, NULL), MARIN_OK);
        marin_future_release(fs[i]);
    }
    return atomic_load(&g_max);
}

/* ---- resource fitting ---- */

START_TEST(test_local_custom_resource_one_at_a_time)
{
    marin_runtime_t *rt = open_rt(CAP_MIXED);
    /* each would like company, but TPU=4 leaves room for one only */
    ck_assert_int_eq(run_tracked(rt, "TPU=4", 4, 15, 2), 1);
    /* TPU=2: two at a time */
    ck_assert_int_eq(run_tracked(rt, "TPU=2", 4, 1000, 2), 2);
    ck_assert_int_le(run_tracked(rt, "TPU=2", 4, 15, 3), 2);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_local_memory_one_at_a_time)
{
    marin_runtime_t *rt = open_rt(CAP_MIXED);
    ck_assert_int_eq(run_tracked(rt, "memory=600MiB", 3, 15, 2), 1);
    ck_assert_int_eq(run_tracked(rt, "cpus=0.1,memory=512MiB", 4, 1000, 2), 2);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_local_fractional_cpus)
{
    marin_runtime_t *rt = open_rt(CAP_MIXED);
    /* cpus=0.5 on cpus=2: four at once, never five */
    ck_assert_int_eq(run_tracked(rt, "cpus=0.5", 8, 1000, 4), 4);
    ck_assert_int_le(run_tracked(rt, "cpus=0.5", 8, 20, 5), 4);
    /* default cpus=1: two at once */
    atomic_store(&g_cur, 0);
    atomic_store(&g_max, 0);
    atomic_store(&g_target, 3);
    marin_future_t *fs[4];
    int ms = 20;
    for (int i = 0; i < 4; i++)
        ck_assert_marin(marin_submit(rt, "l_track", &ms, sizeof ms, NULL,
                                     &fs[i]),
                        MARIN_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_marin(marin_future_get(fs[i], 5000, NULL, NULL), MARIN_OK);
        marin_future_release(fs[i]);
    }
    ck_assert_int_le(atomic_load(&g_max), 2);
    marin_runtime_close(rt);
}
END_TEST

/* Idle workers exist; more fitting tasks arrive at once than there are
 * idle workers: every one of them starts now, none waits for a running
 * task to finish. */
START_TEST(test_local_idle_workers_take_all_fitting)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=4");
    for (int round = 0; round < 3; round++) {
        marin_future_t *warm = NULL;
        ck_assert_marin(marin_submit(rt, "l_order", NULL, 0, NULL, &warm),
                        MARIN_OK);
        ck_assert_marin(marin_future_get(warm, 2000, NULL, NULL), MARIN_OK);
        marin_future_release(warm);
        sleep_ms(20); /* the workers go idle */
        int64_t t0 = now_ms();
        ck_assert_int_eq(run_tracked(rt, "cpus=1", 3, 1000, 3), 3);
        ck_assert_msg(now_ms() - t0 < 900,
                      "round %d: three fitting tasks took %lld ms to run "
                      "together", round, (long long)(now_ms() - t0));
    }
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_local_infeasible)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_rt(CAP_MIXED);
    marin_future_t *f = (marin_future_t *)1;
    marin_task_options_t *o = opts_with_resources("TPU=8");
    ck_assert_marin(marin_submit(rt, "l_track", NULL, 0, o, &f),
                    MARIN_EINFEASIBLE);
    ck_assert_ptr_null(f);
    ck_assert_lasterr_has("TPU");
    ck_assert_lasterr_has("8");
    ck_assert_lasterr_has("4");
    /* submit_after is checked at submit too */
    marin_future_t *dep = NULL;
    ck_assert_marin(marin_submit(rt, "l_order", NULL, 0, NULL, &dep), MARIN_OK);
    f = (marin_future_t *)1;
    ck_assert_marin(marin_submit_after(rt, "l_track", NULL, 0, o, &dep, 1, &f),
                    MARIN_EINFEASIBLE);
    ck_assert_ptr_null(f);
    ck_assert_lasterr_has("TPU");
    marin_task_options_destroy(o);

    o = opts_with_resources("cpus=3");
    ck_assert_marin(marin_submit(rt, "l_track", NULL, 0, o, &f),
                    MARIN_EINFEASIBLE);
    ck_assert_lasterr_has("cpus");
    ck_assert_lasterr_has("3");
    ck_assert_lasterr_has("2");
    marin_task_options_destroy(o);

    o = opts_with_resources("memory=2GiB");
    ck_assert_marin(marin_submit(rt, "l_track", NULL, 0, o, &f),
                    MARIN_EINFEASIBLE);
    ck_assert_lasterr_has("memory");
    ck_assert_lasterr_has("2GiB");
    ck_assert_lasterr_has("1GiB");
    marin_task_options_destroy(o);

    /* a resource the capacity lacks */
    o = opts_with_resources("cpus=1,FPGA=1");
    ck_assert_marin(marin_submit(rt, "l_track", NULL, 0, o, &f),
                    MARIN_EINFEASIBLE);
    ck_assert_lasterr_has("FPGA");
    ck_assert_lasterr_has("1");
    marin_task_options_destroy(o);

    /* exactly the capacity is feasible */
    o = opts_with_resources("cpus=2,memory=1GiB,TPU=4");
    ck_assert_marin(marin_submit(rt, "l_order", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_task_options_destroy(o);
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(dep);
    marin_runtime_close(rt);
}
END_TEST

/* ---- GPUs ---- */

START_TEST(test_local_gpu_ids_distinct)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_rt("local://?resources=cpus=4,gpus=2");
    marin_task_options_t *one = opts_with_resources("gpus=1");
    atomic_store(&g_target, 2);
    int ms = 1000;
    marin_future_t *a = NULL, *b = NULL;
    ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms, one, &a),
                    MARIN_OK);
    ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms, one, &b),
                    MARIN_OK);
    const void *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    ck_assert_marin(marin_future_get(a, 5000, &da, &la), MARIN_OK);
    ck_assert_marin(marin_future_get(b, 5000, &db, &lb), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_max), 2); /* they ran together */
    ck_assert_uint_eq(la, sizeof(int));
    ck_assert_uint_eq(lb, sizeof(int));
    int ia = arg_int(da, la), ib = arg_int(db, lb);
    ck_assert(ia == 0 || ia == 1);
    ck_assert(ib == 0 || ib == 1);
    ck_assert_int_ne(ia, ib);
    ck_assert_int_eq(atomic_load(&g_gpu_violation), 0);
    marin_future_release(a);
    marin_future_release(b);

    /* gpus=2 gets both */
    marin_task_options_t *two = opts_with_resources("gpus=2");
    atomic_store(&g_target, 0);
    ms = 1;
    ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms, two, &a),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(a, 5000, &da, &la), MARIN_OK);
    ck_assert_uint_eq(la, 2 * sizeof(int));
    int ids[2];
    memcpy(ids, da, sizeof ids);
    ck_assert((ids[0] == 0 && ids[1] == 1) || (ids[0] == 1 && ids[1] == 0));
    marin_future_release(a);

    /* gpus=3 on two GPUs is infeasible */
    marin_task_options_t *three = opts_with_resources("gpus=3");
    ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms, three, &a),
                    MARIN_EINFEASIBLE);
    ck_assert_lasterr_has("gpus");
    marin_task_options_destroy(one);
    marin_task_options_destroy(two);
    marin_task_options_destroy(three);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_local_gpu_ids_never_shared)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=8,gpus=2");
    marin_task_options_t *one = opts_with_resources("gpus=1");
    marin_task_options_t *two = opts_with_resources("gpus=2");
    atomic_store(&g_target, 99); /* no waiting for company */
    int ms = 3;
    marin_future_t *fs[12];
    for (int i = 0; i < 12; i++)
        ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms,
                                     i % 4 == 3 ? two : one, &fs[i]),
                        MARIN_OK);
    for (int i = 0; i < 12; i++) {
        const void *d = NULL;
        size_t l = 0;
        ck_assert_marin(marin_future_get(fs[i], 5000, &d, &l), MARIN_OK);
        ck_assert_uint_eq(l, (i % 4 == 3 ? 2 : 1) * sizeof(int));
        marin_future_release(fs[i]);
    }
    ck_assert_int_eq(atomic_load(&g_gpu_violation), 0);
    ck_assert_int_eq(atomic_load(&g_gpu_bad_id), 0);
    ck_assert_int_le(atomic_load(&g_max), 2);
    marin_task_options_destroy(one);
    marin_task_options_destroy(two);
    marin_runtime_close(rt);
}
END_TEST

/* A whole GPU is the task's own: a task given gpus=1 never shares its id
 * with a task holding a fraction of a GPU. */
START_TEST(test_local_gpu_whole_not_shared_with_fraction)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=8,gpus=2");
    marin_task_options_t *half = opts_with_resources("gpus=0.5");
    marin_task_options_t *one = opts_with_resources("gpus=1");
    atomic_store(&g_target, 2);
    int ms = 1000;
    marin_future_t *a = NULL, *b = NULL;
    ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms, half, &a),
                    MARIN_OK);
    ck_assert_marin(marin_submit(rt, "l_gpu", &ms, sizeof ms, one, &b),
                    MARIN_OK);
    const void *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    ck_assert_marin(marin_future_get(a, 5000, &da, &la), MARIN_OK);
    ck_assert_marin(marin_future_get(b, 5000, &db, &lb), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_max), 2); /* they ran together */
    ck_assert_uint_eq(la, sizeof(int));
    ck_assert_uint_eq(lb, sizeof(int));
    int ia = arg_int(da, la), ib = arg_int(db, lb);
    ck_assert_msg(ia != ib, "gpus=0.5 task and gpus=1 task both got GPU %d",
                  ia);
    ck_assert_int_eq(atomic_load(&g_gpu_violation), 0);
    marin_future_release(a);
    marin_future_release(b);
    marin_task_options_destroy(half);
    marin_task_options_destroy(one);
    marin_runtime_close(rt);
}
END_TEST

/* ---- capacity, URIs, backend selection ---- */

START_TEST(test_local_capacity_override)
{
    SKIP_UNLESS_LOCAL("the backend name 'local' and the capacity of a local:// URI");
    marin_runtime_t *rt = open_rt(CAP_MIXED);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_resources_t *cap = NULL;
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(cap, "cpus"), 2.0);
    ck_assert_double_eq(marin_resources_get(cap, "memory"), 1073741824.0);
    ck_assert_double_eq(marin_resources_get(cap, "TPU"), 4.0);
    ck_assert_marin(marin_runtime_capacity(NULL, cap), MARIN_EINVAL);
    ck_assert_marin(marin_runtime_capacity(rt, NULL), MARIN_EINVAL);
    marin_resources_destroy(cap);
    ck_assert_ptr_null(marin_runtime_backend(NULL));
    marin_runtime_close(rt);

    rt = open_rt("local://?resources=cpus=0.5,gpus=0");
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_double_eq_tol(marin_resources_get(cap, "cpus"), 0.5, 1e-9);
    ck_assert_double_eq(marin_resources_get(cap, "gpus"), 0.0);
    marin_resources_destroy(cap);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_local_uri_errors)
{
    SKIP_UNLESS_LOCAL("validation of local:// URI parameters");
    marin_runtime_t *rt = (marin_runtime_t *)1;
    ck_assert_marin(marin_runtime_open("local://?bogus_param=1", &rt),
                    MARIN_EINVAL);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("bogus_param");
    rt = (marin_runtime_t *)1;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=-1", &rt),
                    MARIN_EINVAL);
    ck_assert_ptr_null(rt);
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=two", &rt),
                    MARIN_EINVAL);
    ck_assert_lasterr_has("two");
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=1,cpus=2", &rt),
                    MARIN_EINVAL);
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=1&resources=x",
                                       &rt),
                    MARIN_EINVAL);
    ck_assert_marin(marin_runtime_open("local", NULL), MARIN_EINVAL);
}
END_TEST

START_TEST(test_local_unknown_scheme)
{
    marin_runtime_t *rt = (marin_runtime_t *)1;
    ck_assert_marin(marin_runtime_open("nosuchbackend://host:1", &rt),
                    MARIN_ENOBACKEND);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("nosuchbackend");
    ck_assert_lasterr_has("local");
}
END_TEST

START_TEST(test_local_env_backend)
{
    SKIP_UNLESS_LOCAL("MARIN_BACKEND selecting local:// URIs and their capacity");
    ck_assert_int_eq(setenv("MARIN_BACKEND",
                            "local://?resources=cpus=3,TPU=2", 1), 0);
    marin_runtime_t *rt = open_rt(NULL);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_resources_t *cap = NULL;
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(cap, "cpus"), 3.0);
    ck_assert_double_eq(marin_resources_get(cap, "TPU"), 2.0);
    marin_resources_destroy(cap);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "l_order", NULL, 0, NULL, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);

    /* an explicit URI wins over the variable */
    rt = open_rt("local://?resources=cpus=1");
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(cap, "cpus"), 1.0);
    ck_assert_double_eq(marin_resources_get(cap, "TPU"), 0.0);
    marin_resources_destroy(cap);
    marin_runtime_close(rt);

    ck_assert_int_eq(setenv("MARIN_BACKEND", "nosuchbackend://x", 1), 0);
    rt = (marin_runtime_t *)1;
    ck_assert_marin(marin_runtime_open(NULL, &rt), MARIN_ENOBACKEND);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("local");

    /* unset: plain "local" */
    ck_assert_int_eq(unsetenv("MARIN_BACKEND"), 0);
    rt = open_rt(NULL);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_runtime_close(rt);
}
END_TEST

/* ---- nesting ---- */

static void check_nest(const char *uri, int depth)
{
    marin_runtime_t *rt = open_rt(uri);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "l_nest", &depth, sizeof depth, NULL, &f),
                    MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 10000, &data, &len), MARIN_OK);
    ck_assert_int_eq(arg_int(data, len), depth + 1);
    marin_future_release(f);
    marin_runtime_close(rt);
}

START_TEST(test_local_nested_chain_cpus1)
{
    check_nest("local://?resources=cpus=1", 20);
    ck_assert_int_eq(atomic_load(&g_ran), 21);
}
END_TEST

START_TEST(test_local_nested_chain_cpus2)
{
    check_nest("local://?resources=cpus=2", 20);
    ck_assert_int_eq(atomic_load(&g_ran), 21);
}
END_TEST

START_TEST(test_local_nested_chain_few_threads)
{
    SKIP_UNLESS_LOCAL("max_threads= is a local:// thread-pool parameter");
    /* deeper than the thread cap */
    check_nest("local://?resources=cpus=1&max_threads=2", 20);
    ck_assert_int_eq(atomic_load(&g_ran), 21);
}
END_TEST

static void check_tree(const char *uri)
{
    marin_runtime_t *rt = open_rt(uri);
    int depth = 3;
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "l_tree", &depth, sizeof depth, NULL, &f),
                    MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 10000, &data, &len), MARIN_OK);
    ck_assert_int_eq(arg_int(data, len), 27);
    ck_assert_int_eq(atomic_load(&g_ran), 1 + 3 + 9 + 27);
    marin_future_release(f);
    marin_runtime_close(rt);
}

START_TEST(test_local_nested_fanout_cpus1)
{
    check_tree("local://?resources=cpus=1");
}
END_TEST

START_TEST(test_local_nested_fanout_cpus2)
{
    check_tree("local://?resources=cpus=2");
}
END_TEST

/* ---- order and worker death ---- */

START_TEST(test_local_fifo_one_shape)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=1");
    marin_future_t *blocker = NULL;
    ck_assert_marin(marin_submit(rt, "l_gate", NULL, 0, NULL, &blocker),
                    MARIN_OK);
    ck_assert(wait_for(&g_started, 1, 2000));
    enum { N = 20 };
    marin_future_t *fs[N];
    for (int i = 0; i < N; i++)
        ck_assert_marin(marin_submit(rt, "l_order", &i, sizeof i, NULL, &fs[i]),
                        MARIN_OK);
    atomic_store(&g_gate, 1);
    size_t idx[N], nready = 0;
    ck_assert_marin(marin_wait(fs, N, N, 5000, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, N);
    ck_assert_int_eq(atomic_load(&g_norder), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&g_order[i]), i);
        marin_future_release(fs[i]);
    }
    ck_assert_marin(marin_future_get(blocker, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(blocker);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_local_kill_worker_result_once)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=2");
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "l_kill_once", NULL, 0, NULL, &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_on_done(f, count_done, NULL, NULL), MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 5000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(data, "good", 4);
    ck_assert_int_eq(atomic_load(&g_attempts), 2);
    ck_assert(wait_for(&g_done_calls, 1, 2000));
    sleep_ms(20);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_done_calls), 1);
    ck_assert_int_eq(atomic_load(&g_attempts), 2);
    ck_assert_marin(marin_future_get(f, 0, &data, &len), MARIN_OK);
    ck_assert_mem_eq(data, "good", 4);
    marin_future_release(f);
}
END_TEST

static Suite *local_suite(void)
{
    Suite *s = suite_create("local");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_local_custom_resource_one_at_a_time);
    tcase_add_test(tc, test_local_memory_one_at_a_time);
    tcase_add_test(tc, test_local_fractional_cpus);
    tcase_add_test(tc, test_local_idle_workers_take_all_fitting);
    tcase_add_test(tc, test_local_infeasible);
    tcase_add_test(tc, test_local_gpu_ids_distinct);
    tcase_add_test(tc, test_local_gpu_ids_never_shared);
    tcase_add_test(tc, test_local_gpu_whole_not_shared_with_fraction);
    tcase_add_test(tc, test_local_capacity_override);
    tcase_add_test(tc, test_local_uri_errors);
    tcase_add_test(tc, test_local_unknown_scheme);
    tcase_add_test(tc, test_local_env_backend);
    tcase_add_test(tc, test_local_nested_chain_cpus1);
    tcase_add_test(tc, test_local_nested_chain_cpus2);
    tcase_add_test(tc, test_local_nested_chain_few_threads);
    tcase_add_test(tc, test_local_nested_fanout_cpus1);
    tcase_add_test(tc, test_local_nested_fanout_cpus2);
    tcase_add_test(tc, test_local_fifo_one_shape);
    tcase_add_test(tc, test_local_kill_worker_result_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } tasks[] = {
        {"l_track", l_track}, {"l_gpu", l_gpu},   {"l_nest", l_nest},
        {"l_tree", l_tree},   {"l_gate", l_gate}, {"l_order", l_order},
        {"l_kill_once", l_kill_once},
    };
    /* GPU ids must come from the URI, not from this machine */
    unsetenv("CUDA_VISIBLE_DEVICES");
    unsetenv("MARIN_BACKEND");
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (marin_register_task(tasks[i].name, tasks[i].fn, NULL) != MARIN_OK) {
            fprintf(stderr, "register %s: %s\n", tasks[i].name,
                    marin_last_error());
            return EXIT_FAILURE;
        }
    return marin_test_run(local_suite());
}
