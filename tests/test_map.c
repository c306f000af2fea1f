/* Tests for marin_map_ordered and its options (include/marin/map.h). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "alloc.h"

#define RT_URI "local://?resources=cpus=4"
#define MAXN 4096

/* ---- shared state (Check runs each test in its own forked process) ---- */

static atomic_int g_running;      /* tasks running now */
static atomic_int g_max_running;  /* most seen at once */
static atomic_int g_finish_seq;   /* completion counter */
static atomic_int g_finish_at[MAXN]; /* completion rank of each index */
static atomic_int g_started;      /* task functions entered */
static int64_t g_fail_at = -1;    /* map_fail: index that fails */
static int64_t g_fail_mod = 0;    /* map_fail: fail when i % mod == mod-1 */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t arg_u64(const void *arg, size_t len)
{
    uint64_t v = 0;
    if (arg && len == sizeof v)
        memcpy(&v, arg, sizeof v);
    return v;
}

/* ---- tasks ---- */

/* Result: the 8-byte square of the 8-byte argument. */
static int task_square(marin_task_ctx_t *ctx, const void *arg, size_t len,
                       void *ud)
{
    (void)ud;
    uint64_t x = arg_u64(arg, len);
    uint64_t sq = x * x;
    return marin_task_return(ctx, &sq, sizeof sq);
}

/* Later indices sleep less, so they finish first. Arg: index; sleeps
 * (32 - index) * 2 ms. Result: the index. */
static int task_sleepy(marin_task_ctx_t *ctx, const void *arg, size_t len,
                       void *ud)
{
    (void)ud;
    uint64_t i = arg_u64(arg, len);
    sleep_ms((long)(32 - (i % 32)) * 2);
    if (i < MAXN)
        atomic_store(&g_finish_at[i], atomic_fetch_add(&g_finish_seq, 1));
    return marin_task_return(ctx, &i, sizeof i);
}

/* Counts how many run at once. */
static int task_window(marin_task_ctx_t *ctx, const void *arg, size_t len,
                       void *ud)
{
    (void)ud;
    int now = atomic_fetch_add(&g_running, 1) + 1;
    int max = atomic_load(&g_max_running);
    while (now > max &&
           !atomic_compare_exchange_weak(&g_max_running, &max, now))
        ;
    sleep_ms(2);
    atomic_fetch_sub(&g_running, 1);
    uint64_t i = arg_u64(arg, len);
    return marin_task_return(ctx, &i, sizeof i);
}

/* Fails with an application error at g_fail_at, or where
 * i % g_fail_mod == g_fail_mod - 1; else returns the index. */
static int task_fail(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *ud)
{
    (void)ud;
    uint64_t i = arg_u64(arg, len);
    atomic_fetch_add(&g_started, 1);
    if ((int64_t)i == g_fail_at ||
        (g_fail_mod > 0 && (int64_t)(i % (uint64_t)g_fail_mod) ==
                               g_fail_mod - 1)) {
        char msg[64];
        snprintf(msg, sizeof msg, "boom at %llu", (unsigned long long)i);
        return marin_task_fail(ctx, msg);
    }
    return marin_task_return(ctx, &i, sizeof i);
}

/* Index 0 fails at once; the others run up to 5 s unless cancelled. */
static int task_slow(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_started, 1);
    if (arg_u64(arg, len) == 0)
        return marin_task_fail(ctx, "first one fails");
    for (int k = 0; k < 5000 && !marin_task_cancelled(ctx); k++)
        sleep_ms(1);
    return 0;
}

/* A system failure on the first attempt, success after. */
static int task_flaky(marin_task_ctx_t *ctx, const void *arg, size_t len,
                      void *ud)
{
    (void)ud;
    (void)arg;
    (void)len;
    int attempt = marin_task_attempt(ctx);
    if (attempt < 2)
        return MARIN_EUNAVAILABLE;
    return marin_task_return(ctx, &attempt, sizeof attempt);
}

/* Result: the value of env option MAP_KEY ("" when unset). */
static int task_env(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *ud)
{
    (void)ud;
    (void)arg;
    (void)len;
    const char *v = marin_task_env(ctx, "MAP_KEY");
    if (!v)
        v = "";
    return marin_task_return(ctx, v, strlen(v));
}

static void register_tasks(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } tasks[] = {
        {"map_square", task_square}, {"map_sleepy", task_sleepy},
        {"map_window", task_window}, {"map_fail", task_fail},
        {"map_slow", task_slow},     {"map_flaky", task_flaky},
        {"map_env", task_env},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        int rc = marin_register_task(tasks[i].name, tasks[i].fn, NULL);
        ck_assert_msg(rc == MARIN_OK || rc == MARIN_EEXIST,
                      "register %s: %d %s", tasks[i].name, rc,
                      marin_last_error());
    }
}

static marin_runtime_t *open_map_rt(void)
{
    register_tasks();
    return open_rt(RT_URI);
}

/* ---- the driver's callbacks ---- */

typedef struct {
    size_t n;              /* items next() yields */
    size_t produced;       /* items next() gave */
    size_t delivered;      /* on_result calls */
    size_t limit;          /* max_in_flight, checked in next() */
    size_t max_window;     /* largest submitted - delivered after a next() */
    int window_violation;  /* next() called with a full window */
    int order_violation;   /* on_result index out of order */
    uint64_t buf;          /* the one buffer next() reuses for every arg */
    int64_t abort_next_at; /* next() returns abort_code here (-1: never) */
    int64_t abort_result_at;
    int abort_code;
    int status[MAXN];
    uint64_t value[MAXN];
    size_t value_len[MAXN];
    int data_null[MAXN];
    /* progress callback */
    size_t progress_calls;
    size_t last_done, last_submitted, last_failed;
    size_t failed_seen;    /* nonzero statuses delivered */
    int progress_violation;
    char first_error[256]; /* marin_last_error() seen with the first failure */
} drv_t;

static void drv_init(drv_t *d, size_t n, size_t limit)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->limit = limit;
    d->abort_next_at = -1;
    d->abort_result_at = -1;
}

static int drv_next(const void **arg, size_t *len, void *ud)
{
    drv_t *d = ud;
    if ((int64_t)d->produced == d->abort_next_at)
        return d->abort_code;
    if (d->produced == d->n)
        return 0;
    if (d->produced - d->delivered >= d->limit)
        d->window_violation = 1;
    /* The same buffer every time: the map must copy it before asking for
     * the next one. */
    d->buf = d->produced;
    *arg = &d->buf;
    *len = sizeof d->buf;
    d->produced++;
    if (d->produced - d->delivered > d->max_window)
        d->max_window = d->produced - d->delivered;
    return 1;
}

static int drv_result(size_t index, int status, const void *data, size_t len,
                      void *ud)
{
    drv_t *d = ud;
    if (index != d->delivered || index >= MAXN) {
        d->order_violation = 1;
        return 0;
    }
    d->status[index] = status;
    d->data_null[index] = data == NULL;
    d->value_len[index] = len;
    if (data && len == sizeof(uint64_t))
        memcpy(&d->value[index], data, sizeof(uint64_t));
    if (status != 0 && d->failed_seen++ == 0)
        snprintf(d->first_error, sizeof d->first_error, "%s", marin_last_error());
    d->delivered++;
    if ((int64_t)index == d->abort_result_at)
        return d->abort_code;
    return 0;
}

static void drv_progress(size_t done, size_t submitted, size_t failed,
                         void *ud)
{
    drv_t *d = ud;
    if (done != d->last_done + 1 || done != d->delivered ||
        submitted != d->produced || submitted < done ||
        failed != d->failed_seen)
        d->progress_violation = 1;
    d->progress_calls++;
    d->last_done = done;
    d->last_submitted = submitted;
    d->last_failed = failed;
}

static marin_map_options_t *make_opts(size_t max_in_flight)
{
    marin_map_options_t *o = NULL;
    ck_assert_marin(marin_map_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_map_options_set_max_in_flight(o, max_in_flight),
                    MARIN_OK);
    return o;
}

/* ---- options ---- */

START_TEST(test_map_options_defaults_and_setters)
{
    marin_map_options_t *o = NULL;
    ck_assert_marin(marin_map_options_create(&o), MARIN_OK);
    ck_assert_ptr_nonnull(o);
    ck_assert_marin(marin_map_options_set_max_in_flight(o, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_max_in_flight(o, SIZE_MAX),
                    MARIN_OK);
    ck_assert_marin(marin_map_options_set_continue_on_error(o, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_continue_on_error(o, 0), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(o, NULL), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress(o, drv_progress, NULL),
                    MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress(o, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress_bar(o, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress_bar(o, 0), MARIN_OK);
    marin_map_options_destroy(o);
    marin_map_options_destroy(NULL);
}
END_TEST

START_TEST(test_map_options_null)
{
    ck_assert_marin(marin_map_options_create(NULL), MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_max_in_flight(NULL, 4),
                    MARIN_EINVAL);
    ck_assert_lasterr_has("marin_map_options_set_max_in_flight");
    ck_assert_marin(marin_map_options_set_continue_on_error(NULL, 1),
                    MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_task_options(NULL, NULL),
                    MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_progress(NULL, drv_progress, NULL),
                    MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_progress_bar(NULL, 1),
                    MARIN_EINVAL);
}
END_TEST

START_TEST(test_map_max_in_flight_zero)
{
    marin_map_options_t *o = NULL;
    ck_assert_marin(marin_map_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_map_options_set_max_in_flight(o, 0), MARIN_EINVAL);
    ck_assert_lasterr_has("max_in_flight");
    marin_map_options_destroy(o);
}
END_TEST

START_TEST(test_map_options_oom)
{
    int ok = 0;
    for (long n = 0; n < 100 && !ok; n++) {
        marin_map_options_t *o = (marin_map_options_t *)1;
        marin__test_fail_alloc_after(n);
        int rc = marin_map_options_create(&o);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_ENOMEM) {
            ck_assert_ptr_null(o);
            ck_assert_lasterr_has("memory");
            continue;
        }
        ck_assert_marin(rc, MARIN_OK);
        ck_assert_ptr_nonnull(o);
        marin_map_options_destroy(o);
        ok = 1;
    }
    ck_assert(ok);
}
END_TEST

/* ---- arguments ---- */

START_TEST(test_map_null_args)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 3, 1000);
    ck_assert_marin(
        marin_map_ordered(NULL, "map_square", drv_next, drv_result, NULL, d),
        MARIN_EINVAL);
    ck_assert_lasterr_has("marin_map_ordered");
    ck_assert_marin(
        marin_map_ordered(rt, NULL, drv_next, drv_result, NULL, d),
        MARIN_EINVAL);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", NULL, drv_result, NULL, d),
        MARIN_EINVAL);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, NULL, NULL, d),
        MARIN_EINVAL);
    ck_assert_uint_eq(d->produced, 0);
    ck_assert_uint_eq(d->delivered, 0);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_empty_input)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 0, 1000);
    marin_map_options_t *o = make_opts(8);
    ck_assert_marin(marin_map_options_set_progress(o, drv_progress, d),
                    MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    ck_assert_uint_eq(d->delivered, 0);
    ck_assert_uint_eq(d->progress_calls, 0);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* ---- ordering and the window ---- */

START_TEST(test_map_square_default_options)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 2500, 1000); /* NULL options: max_in_flight 1000 */
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, NULL, d),
        MARIN_OK);
    ck_assert_int_eq(d->order_violation, 0);
    ck_assert_int_eq(d->window_violation, 0);
    ck_assert_uint_eq(d->max_window, 1000);
    ck_assert_uint_eq(d->delivered, 2500);
    for (size_t i = 0; i < 2500; i++) {
        ck_assert_int_eq(d->status[i], 0);
        ck_assert_uint_eq(d->value_len[i], 8);
        ck_assert_uint_eq(d->value[i], (uint64_t)i * i);
    }
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_ordering_out_of_order_completion)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 64, 16);
    marin_map_options_t *o = make_opts(16);
    ck_assert_marin(
        marin_map_ordered(rt, "map_sleepy", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_int_eq(d->order_violation, 0);
    ck_assert_uint_eq(d->delivered, 64);
    for (size_t i = 0; i < 64; i++) {
        ck_assert_int_eq(d->status[i], 0);
        ck_assert_uint_eq(d->value[i], i);
    }
    /* Later tasks really did finish first. */
    int inversions = 0;
    for (size_t i = 0; i + 1 < 64; i++)
        if (atomic_load(&g_finish_at[i + 1]) < atomic_load(&g_finish_at[i]))
            inversions++;
    ck_assert_int_gt(inversions, 0);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_window_bounded)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 60, 3);
    marin_map_options_t *o = make_opts(3);
    ck_assert_marin(
        marin_map_ordered(rt, "map_window", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_int_eq(d->window_violation, 0);
    ck_assert_int_eq(d->order_violation, 0);
    /* The window is filled, never overfilled. */
    ck_assert_uint_eq(d->max_window, 3);
    ck_assert_int_le(atomic_load(&g_max_running), 3);
    ck_assert_int_ge(atomic_load(&g_max_running), 1);
    ck_assert_uint_eq(d->delivered, 60);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_window_one)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 20, 1);
    marin_map_options_t *o = make_opts(1);
    ck_assert_marin(
        marin_map_ordered(rt, "map_window", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_int_eq(d->window_violation, 0);
    ck_assert_uint_eq(d->max_window, 1);
    ck_assert_int_eq(atomic_load(&g_max_running), 1);
    ck_assert_uint_eq(d->delivered, 20);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* A max_in_flight larger than the input: the ring grows past its first
 * size and order is kept. */
START_TEST(test_map_window_grows)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 3000, SIZE_MAX);
    marin_map_options_t *o = make_opts(SIZE_MAX);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_int_eq(d->order_violation, 0);
    ck_assert_uint_eq(d->delivered, 3000);
    ck_assert_uint_eq(d->max_window, 3000);
    for (size_t i = 0; i < 3000; i++)
        ck_assert_uint_eq(d->value[i], (uint64_t)i * i);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_map_default_stops_at_first_failure)
{
    marin_runtime_t *rt = open_map_rt();
    g_fail_at = 5;
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 200, 4);
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(marin_map_options_set_progress(o, drv_progress, d),
                    MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_fail", drv_next, drv_result, o, d),
        MARIN_ETASK);
    ck_assert_lasterr_has("boom at 5");
    ck_assert_lasterr_has("index 5");
    ck_assert_lasterr_has("map_fail");
    ck_assert_int_eq(d->order_violation, 0);
    ck_assert_uint_eq(d->delivered, 6); /* 0..4 fine, 5 failed, no more */
    for (size_t i = 0; i < 5; i++) {
        ck_assert_int_eq(d->status[i], 0);
        ck_assert_uint_eq(d->value[i], i);
    }
    ck_assert_int_eq(d->status[5], MARIN_ETASK);
    /* on_result can read why the task failed */
    ck_assert_msg(strstr(d->first_error, "boom at 5") != NULL,
                  "on_result saw last error '%s'", d->first_error);
    ck_assert_int_eq(d->data_null[5], 1);
    ck_assert_uint_eq(d->value_len[5], 0);
    /* Submission stopped: at most the window past the failed index. */
    ck_assert_uint_le(d->produced, 6 + 4);
    ck_assert_uint_eq(d->progress_calls, 6);
    ck_assert_uint_eq(d->last_failed, 1);
    ck_assert_int_eq(d->progress_violation, 0);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* The first failure cancels what is in flight: slow tasks behind it do not
 * hold the map up. */
START_TEST(test_map_failure_cancels_in_flight)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 100, 8);
    marin_map_options_t *o = make_opts(8);
    double t0 = now_s();
    ck_assert_marin(
        marin_map_ordered(rt, "map_slow", drv_next, drv_result, o, d),
        MARIN_ETASK);
    double took = now_s() - t0;
    ck_assert_lasterr_has("first one fails");
    ck_assert_uint_eq(d->delivered, 1);
    ck_assert_uint_eq(d->produced, 8);
    ck_assert_msg(took < 2.0, "map took %.2fs: in-flight work not cancelled",
                  took);
    marin_runtime_close(rt); /* waits for the running ones to stop */
    /* Pending ones never ran: at most the 4 cpus' worth started, plus 0. */
    ck_assert_int_le(atomic_load(&g_started), 8);
    marin_map_options_destroy(o);
    free(d);
}
END_TEST

START_TEST(test_map_continue_on_error)
{
    marin_runtime_t *rt = open_map_rt();
    g_fail_mod = 4; /* indices 3, 7, 11, ... fail */
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 40, 5);
    marin_map_options_t *o = make_opts(5);
    ck_assert_marin(marin_map_options_set_continue_on_error(o, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress(o, drv_progress, d),
                    MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_fail", drv_next, drv_result, o, d),
        MARIN_ETASK);
    /* The first failure's message. */
    ck_assert_lasterr_has("boom at 3");
    ck_assert_lasterr_has("index 3");
    ck_assert_int_eq(d->order_violation, 0);
    ck_assert_uint_eq(d->delivered, 40);
    for (size_t i = 0; i < 40; i++) {
        if (i % 4 == 3) {
            ck_assert_int_eq(d->status[i], MARIN_ETASK);
            ck_assert_int_eq(d->data_null[i], 1);
            ck_assert_uint_eq(d->value_len[i], 0);
        } else {
            ck_assert_int_eq(d->status[i], 0);
            ck_assert_uint_eq(d->value[i], i);
        }
    }
    ck_assert_uint_eq(d->progress_calls, 40);
    ck_assert_uint_eq(d->last_done, 40);
    ck_assert_uint_eq(d->last_submitted, 40);
    ck_assert_uint_eq(d->last_failed, 10);
    ck_assert_int_eq(d->progress_violation, 0);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_continue_on_error_all_ok)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 30, 4);
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(marin_map_options_set_continue_on_error(o, 1), MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_fail", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_uint_eq(d->delivered, 30);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_on_result_abort)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 1000, 4);
    d->abort_result_at = 2;
    d->abort_code = -1000;
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
        -1000);
    ck_assert_lasterr_has("on_result");
    ck_assert_uint_eq(d->delivered, 3);
    ck_assert_uint_le(d->produced, 3 + 4);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* A positive return from on_result aborts too and comes back as is, also
 * with continue_on_error. */
START_TEST(test_map_on_result_abort_positive)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 50, 4);
    d->abort_result_at = 0;
    d->abort_code = 7;
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(marin_map_options_set_continue_on_error(o, 1), MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d), 7);
    ck_assert_uint_eq(d->delivered, 1);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_next_abort)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 1000, 2);
    d->abort_next_at = 5;
    d->abort_code = MARIN_ECANCELED;
    marin_map_options_t *o = make_opts(2);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
        MARIN_ECANCELED);
    ck_assert_lasterr_has("next returned");
    ck_assert_int_eq(d->order_violation, 0);
    ck_assert_uint_eq(d->produced, 5);
    /* Nothing more is delivered once next aborts: with a window of 2,
     * index 5 is asked for after 0..3 were delivered. */
    ck_assert_uint_eq(d->delivered, 4);
    for (size_t i = 0; i < d->delivered; i++)
        ck_assert_uint_eq(d->value[i], (uint64_t)i * i);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* next() gives len 8 with a NULL arg: marin_submit refuses it, which
 * aborts the map with MARIN_EINVAL after cancelling what is in flight. */
static int bad_next(const void **arg, size_t *len, void *ud)
{
    drv_t *d = ud;
    if (d->produced == 3) {
        *arg = NULL;
        *len = 8;
        d->produced++;
        return 1;
    }
    return drv_next(arg, len, ud);
}

START_TEST(test_map_submit_error_aborts)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 10, 8);
    marin_map_options_t *o = make_opts(8);
    ck_assert_marin(marin_map_options_set_continue_on_error(o, 1), MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", bad_next, drv_result, o, d),
        MARIN_EINVAL);
    ck_assert_lasterr_has("submitting index 3");
    ck_assert_lasterr_has("arg is NULL");
    ck_assert_uint_eq(d->delivered, 0);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_unknown_task)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 10, 4);
    ck_assert_marin(marin_map_ordered(rt, "map_no_such_task", drv_next,
                                      drv_result, NULL, d),
                    MARIN_ENOTFOUND);
    ck_assert_lasterr_has("map_no_such_task");
    ck_assert_lasterr_has("index 0");
    ck_assert_uint_eq(d->delivered, 0);
    ck_assert_uint_eq(d->produced, 1);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_map_infeasible_task_options)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_map_rt();
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=64", &r), MARIN_OK);
    marin_task_options_t *t = NULL;
    ck_assert_marin(marin_task_options_create(&t), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(t, r), MARIN_OK);
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(marin_map_options_set_task_options(o, t), MARIN_OK);
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 10, 4);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
        MARIN_EINFEASIBLE);
    ck_assert_lasterr_has("cpus");
    ck_assert_uint_eq(d->delivered, 0);
    marin_map_options_destroy(o);
    marin_task_options_destroy(t);
    marin_resources_destroy(r);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* Task options reach every task: env and retries. */
START_TEST(test_map_task_options_applied)
{
    marin_runtime_t *rt = open_map_rt();
    marin_task_options_t *t = NULL;
    ck_assert_marin(marin_task_options_create(&t), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(t, "MAP_KEY", "applied"),
                    MARIN_OK);
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(marin_map_options_set_task_options(o, t), MARIN_OK);

    /* env: every result is "applied" (7 bytes, so value_len says it). */
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 12, 4);
    ck_assert_marin(
        marin_map_ordered(rt, "map_env", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_uint_eq(d->delivered, 12);
    for (size_t i = 0; i < 12; i++)
        ck_assert_uint_eq(d->value_len[i], strlen("applied"));

    /* retries: the flaky task needs one; with max_retries 0 it fails. */
    drv_init(d, 6, 4);
    ck_assert_marin(
        marin_map_ordered(rt, "map_flaky", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_uint_eq(d->delivered, 6);
    ck_assert_marin(marin_task_options_set_max_retries(t, 0), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(o, t), MARIN_OK);
    drv_init(d, 6, 4);
    int rc = marin_map_ordered(rt, "map_flaky", drv_next, drv_result, o, d);
    ck_assert_int_ne(rc, MARIN_OK);
    ck_assert_uint_eq(d->delivered, 1);
    ck_assert_int_eq(d->status[0], rc);

    marin_map_options_destroy(o);
    marin_task_options_destroy(t);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* One options object is reused across maps. */
START_TEST(test_map_options_reused)
{
    marin_runtime_t *rt = open_map_rt();
    marin_map_options_t *o = make_opts(3);
    drv_t *d = calloc(1, sizeof *d);
    for (int k = 0; k < 3; k++) {
        drv_init(d, 25, 3);
        ck_assert_marin(
            marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
            MARIN_OK);
        ck_assert_uint_eq(d->delivered, 25);
        ck_assert_uint_eq(d->max_window, 3);
    }
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* ---- progress ---- */

START_TEST(test_map_progress_callback)
{
    marin_runtime_t *rt = open_map_rt();
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 100, 7);
    marin_map_options_t *o = make_opts(7);
    ck_assert_marin(marin_map_options_set_progress(o, drv_progress, d),
                    MARIN_OK);
    ck_assert_marin(
        marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d),
        MARIN_OK);
    ck_assert_uint_eq(d->progress_calls, 100);
    ck_assert_uint_eq(d->last_done, 100);
    ck_assert_uint_eq(d->last_submitted, 100);
    ck_assert_uint_eq(d->last_failed, 0);
    ck_assert_int_eq(d->progress_violation, 0);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* Point fd 2 at @p fd; returns the old fd 2. */
static int redirect_stderr(int fd)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    return saved;
}

static void restore_stderr(int saved)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
}

START_TEST(test_map_progress_bar_not_a_tty)
{
    setenv("MARIN_PROGRESS", "1", 1); /* read by marin_runtime_open */
    marin_runtime_t *rt = open_map_rt();
    char path[] = "/tmp/marin_test_map_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    int saved = redirect_stderr(fd);
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, 50, 4);
    marin_map_options_t *o = make_opts(4);
    ck_assert_marin(marin_map_options_set_progress_bar(o, 1), MARIN_OK);
    int rc = marin_map_ordered(rt, "map_sleepy", drv_next, drv_result, o, d);
    restore_stderr(saved);
    ck_assert_marin(rc, MARIN_OK);
    ck_assert_int_eq((int)lseek(fd, 0, SEEK_END), 0);
    close(fd);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

/* Run a map with stderr on a pseudo-terminal; returns what was drawn. */
static void run_on_pty(marin_runtime_t *rt, marin_map_options_t *o, size_t n,
                       char *out, size_t cap)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert_int_eq(grantpt(master), 0);
    ck_assert_int_eq(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(slave, 0);
    int saved = redirect_stderr(slave);
    drv_t *d = calloc(1, sizeof *d);
    drv_init(d, n, 4);
    int rc = marin_map_ordered(rt, "map_window", drv_next, drv_result, o, d);
    restore_stderr(saved);
    ck_assert_marin(rc, MARIN_OK);
    ck_assert_uint_eq(d->delivered, n);
    close(slave);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    size_t got = 0;
    for (;;) {
        ssize_t r = read(master, out + got, cap - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    out[got] = '\0';
    close(master);
    free(d);
}

START_TEST(test_map_progress_bar_tty)
{
    unsetenv("MARIN_PROGRESS");
    marin_runtime_t *rt = open_map_rt();
    marin_map_options_t *o = make_opts(4);
    static char out[65536];

    /* Off unless asked for. */
    run_on_pty(rt, o, 10, out, sizeof out);
    ck_assert_str_eq(out, "");

    /* Asked for by the option: count, rate and a final newline; the total
     * is known by the end, so the last line has a full bar and 100%. */
    ck_assert_marin(marin_map_options_set_progress_bar(o, 1), MARIN_OK);
    run_on_pty(rt, o, 150, out, sizeof out); /* ~75 ms of 2 ms tasks / 4 */
    ck_assert_msg(strstr(out, "/s") != NULL, "no rate in '%s'", out);
    ck_assert_msg(strstr(out, "150/150") != NULL, "no count in '%s'", out);
    ck_assert_msg(strstr(out, "100%") != NULL, "no percent in '%s'", out);
    ck_assert_msg(out[0] == '\r', "no carriage return in '%s'", out);
    size_t len = strlen(out);
    ck_assert_msg(len > 0 && out[len - 1] == '\n', "no newline in '%s'",
                  out);

    marin_map_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* MARIN_PROGRESS=1 when the runtime opens switches the bar on without the
 * option; set later, it changes nothing for a runtime already open. */
START_TEST(test_map_progress_bar_env)
{
    static char out[65536];
    unsetenv("MARIN_PROGRESS");
    marin_runtime_t *rt_off = open_map_rt();
    setenv("MARIN_PROGRESS", "1", 1);
    marin_runtime_t *rt_on = open_map_rt();

    run_on_pty(rt_on, NULL, 10, out, sizeof out);
    ck_assert_msg(strstr(out, "10/10") != NULL, "no count in '%s'", out);
    size_t len = strlen(out);
    ck_assert_msg(len > 0 && out[len - 1] == '\n', "no newline in '%s'",
                  out);
    run_on_pty(rt_off, NULL, 10, out, sizeof out);
    ck_assert_str_eq(out, "");

    setenv("MARIN_PROGRESS", "0", 1);
    marin_runtime_t *rt_zero = open_map_rt();
    run_on_pty(rt_zero, NULL, 10, out, sizeof out);
    ck_assert_str_eq(out, "");

    marin_runtime_close(rt_zero);
    marin_runtime_close(rt_on);
    marin_runtime_close(rt_off);
}
END_TEST

/* Redraws are rate-limited: a long map draws a handful of lines, not one
 * per item. */
START_TEST(test_map_progress_bar_rate_limited)
{
    unsetenv("MARIN_PROGRESS");
    marin_runtime_t *rt = open_map_rt();
    marin_map_options_t *o = make_opts(64);
    ck_assert_marin(marin_map_options_set_progress_bar(o, 1), MARIN_OK);
    static char out[1 << 20];
    run_on_pty(rt, o, 2000, out, sizeof out);
    size_t lines = 0;
    for (const char *p = out; *p; p++)
        if (*p == '\r' && p[1] != '\n')
            lines++;
    /* 2000 tasks of 2 ms on 4 cpus: ~1 s, so ~10 redraws and the final. */
    ck_assert_msg(lines >= 1 && lines < 100, "%zu redraws", lines);
    marin_map_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- out of memory ---- */

START_TEST(test_map_ordered_oom)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
    marin_runtime_t *rt = open_map_rt();
    marin_map_options_t *o = make_opts(4);
    drv_t *d = calloc(1, sizeof *d);
    int ok = 0;
    for (long n = 0; n < 1000 && !ok; n++) {
        drv_init(d, 8, 4);
        marin__test_fail_alloc_after(n);
        int rc =
            marin_map_ordered(rt, "map_square", drv_next, drv_result, o, d);
        marin__test_fail_alloc_after(-1);
        ck_assert_int_eq(d->order_violation, 0);
        if (rc == MARIN_OK) {
            ck_assert_uint_eq(d->delivered, 8);
            for (size_t i = 0; i < 8; i++)
                ck_assert_uint_eq(d->value[i], (uint64_t)i * i);
            ok = 1;
            break;
        }
        ck_assert_msg(rc == MARIN_ENOMEM, "n=%ld: rc %d (%s): %s", n, rc,
                      marin_strerror(rc), marin_last_error());
        ck_assert_lasterr_has("memory");
    }
    ck_assert(ok);
    marin_map_options_destroy(o);
    free(d);
    marin_runtime_close(rt);
}
END_TEST

static Suite *map_suite(void)
{
    Suite *s = suite_create("map");
    TCase *tc = tcase_create("map");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_map_options_defaults_and_setters);
    tcase_add_test(tc, test_map_options_null);
    tcase_add_test(tc, test_map_max_in_flight_zero);
    tcase_add_test(tc, test_map_options_oom);
    tcase_add_test(tc, test_map_null_args);
    tcase_add_test(tc, test_map_empty_input);
    tcase_add_test(tc, test_map_square_default_options);
    tcase_add_test(tc, test_map_ordering_out_of_order_completion);
    tcase_add_test(tc, test_map_window_bounded);
    tcase_add_test(tc, test_map_window_one);
    tcase_add_test(tc, test_map_window_grows);
    tcase_add_test(tc, test_map_default_stops_at_first_failure);
    tcase_add_test(tc, test_map_failure_cancels_in_flight);
    tcase_add_test(tc, test_map_continue_on_error);
    tcase_add_test(tc, test_map_continue_on_error_all_ok);
    tcase_add_test(tc, test_map_on_result_abort);
    tcase_add_test(tc, test_map_on_result_abort_positive);
    tcase_add_test(tc, test_map_next_abort);
    tcase_add_test(tc, test_map_submit_error_aborts);
    tcase_add_test(tc, test_map_unknown_task);
    tcase_add_test(tc, test_map_infeasible_task_options);
    tcase_add_test(tc, test_map_task_options_applied);
    tcase_add_test(tc, test_map_options_reused);
    tcase_add_test(tc, test_map_progress_callback);
    tcase_add_test(tc, test_map_progress_bar_not_a_tty);
    tcase_add_test(tc, test_map_progress_bar_tty);
    tcase_add_test(tc, test_map_progress_bar_env);
    tcase_add_test(tc, test_map_progress_bar_rate_limited);
    tcase_add_test(tc, test_map_ordered_oom);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return marin_test_run(map_suite());
}
