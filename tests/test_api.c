/* The public API's error contract, in one place (STYLE.md §3, §12).
 *
 * For every MARIN_API function: each error code its header documents, NULL
 * handles and outputs, and the bad inputs users actually type (zero
 * lengths, names over MARIN_NAME_MAX bytes, unknown task names, resource
 * typos, max_in_flight 0, negative timeouts other than -1). Each failure is
 * checked for its exact code AND for a last-error sentence that names the
 * function or the offending value. Also: getters that cannot fail behave on
 * NULL as documented, destroy/close/release accept NULL, and constructors
 * leave *out NULL on failure (checked from a non-NULL sentinel).
 *
 * Not reachable with the built-in local backend, so not tested here:
 * marin_runtime_capacity's MARIN_EUNSUPPORTED (local reports capacity) and
 * MARIN_ENOMEM (local copies into the caller's set without allocating), and
 * marin_resources_set's MARIN_ENOMEM (a set has fixed room for 32 names). */
#define _GNU_SOURCE
#define MARIN_EXPERIMENTAL
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h" /* marin__test_fail_alloc_after */
#include "marin_config.h"
#include "testutil.h"

#include "marin/experimental.h"

#define RT "local://?resources=cpus=2"

/* A non-NULL value for out-parameters: a failing call must overwrite it. */
static char sentinel_byte;
#define SENTINEL ((void *)&sentinel_byte)

/* The call returns @p want, and marin_last_error() is a sentence (not just
 * a word) that contains @p needle: the function or the offending value. */
#define EXPECT_ERR(call, want, needle)                                        \
    do {                                                                      \
        ck_assert_marin(call, want);                                          \
        ck_assert_msg(strlen(marin_last_error()) > 10,                        \
                      "%s: last error is not a sentence: '%s'", #call,        \
                      marin_last_error());                                    \
        ck_assert_lasterr_has(needle);                                        \
    } while (0)

/* ---- what tasks saw (written on a runtime thread, read after the task's
 * future finished or its runtime closed: both order the accesses) ---- */

#define REC_MAX 16
typedef struct {
    int rc;
    int flag; /* a probe-specific check, 1 when it held */
    char err[1024];
} rec_t;
static rec_t g_rec[REC_MAX];
static atomic_int g_nrec;

static void rec(int rc, int flag)
{
    int k = atomic_fetch_add(&g_nrec, 1);
    if (k < REC_MAX) {
        g_rec[k].rc = rc;
        g_rec[k].flag = flag;
        snprintf(g_rec[k].err, sizeof g_rec[k].err, "%s", marin_last_error());
    }
}

/* Record @p i returned @p want with a last error containing @p needle. */
#define CHECK_REC(i, want, needle)                                            \
    do {                                                                      \
        ck_assert_int_gt(atomic_load(&g_nrec), (i));                          \
        ck_assert_msg(g_rec[i].rc == (want),                                  \
                      "probe %d returned %d (%s), wanted %d: %s", (i),        \
                      g_rec[i].rc, marin_strerror(g_rec[i].rc), (int)(want),  \
                      g_rec[i].err);                                          \
        ck_assert_msg(strlen(g_rec[i].err) > 10 &&                            \
                          strstr(g_rec[i].err, (needle)) != NULL,             \
                      "probe %d: last error '%s' lacks '%s'", (i),            \
                      g_rec[i].err, (needle));                                \
    } while (0)

static atomic_int g_gate;
static atomic_int g_started;
static marin_future_t *g_close_dep; /* set before the closing task starts */

/* ---- tasks (registered in main, before the suite forks) ---- */

static int api_echo(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *ud)
{
    (void)ud;
    return marin_task_return(ctx, arg, len);
}

/* Runs until g_gate opens or it is cancelled (at most 3 s). */
static int api_gate(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_started, 1);
    for (int i = 0; i < 3000 && !atomic_load(&g_gate); i++) {
        if (marin_task_cancelled(ctx))
            break;
        sleep_ms(1);
    }
    return 0;
}

/* Fails with the application error given as argument (a string). */
static int api_fail(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *ud)
{
    (void)ud;
    char msg[128];
    snprintf(msg, sizeof msg, "%.*s", (int)len, (const char *)arg);
    int rc = marin_task_fail(ctx, msg);
    rec(rc, 1);
    return rc;
}

static int api_kill(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    return marin_test_kill_worker(ctx);
}

/* Misuses every ctx accessor that can fail, with a valid ctx. */
static int api_ctx_probe(marin_task_ctx_t *ctx, const void *arg, size_t len,
                         void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    const void *d = SENTINEL;
    size_t l = 9, n = 9;
    int ids[2], rc;
    /* each call before its check: argument order is unspecified */
    rc = marin_task_return(ctx, NULL, 3);
    rec(rc, 1);                                                        /* 0 */
    rc = marin_task_dep(ctx, 0, NULL, &l);
    rec(rc, l == 0);                                                   /* 1 */
    l = 9;
    rc = marin_task_dep(ctx, 7, &d, &l);
    rec(rc, d == NULL && l == 0);                                      /* 2 */
    rc = marin_task_gpu_ids(ctx, NULL, 2, &n);
    rec(rc, n == 0);                                                   /* 3 */
    rc = marin_task_gpu_ids(ctx, ids, 2, NULL);
    rec(rc, 1);                                                        /* 4 */
    rc = marin_task_log(ctx, 0, "api probe");
    rec(rc, 1);                                                        /* 5 */
    rc = marin_task_log(ctx, MARIN_LOG_DEBUG + 1, "api probe");
    rec(rc, 1);                                                        /* 6 */
    rc = marin_task_log(ctx, MARIN_LOG_WARN, NULL);
    rec(rc, 1);                                                        /* 7 */
    rec(MARIN_OK, marin_task_env(ctx, NULL) == NULL &&                 /* 8 */
                      marin_task_env(ctx, "") == NULL &&
                      marin_task_env(ctx, "API_UNSET") == NULL);
    n = 9;
    rc = marin_task_gpu_ids(ctx, NULL, 0, &n);
    rec(rc, n == 0);                                                   /* 9 */
    rc = marin_task_return(ctx, NULL, 0);
    rec(rc, marin_last_error()[0] == '\0');                           /* 10 */
    rec(MARIN_OK, marin_task_ndeps(ctx) == 0 &&                        /* 11 */
                      marin_task_attempt(ctx) == 1 &&
                      marin_task_id(ctx)[0] != '\0' &&
                      marin_task_runtime(ctx) != NULL &&
                      marin_task_cancelled(ctx) == 0);
    return 0;
}

/* GPUs given to the task with room for none: MARIN_ETOOBIG, *n = count. */
static int api_gpu_probe(marin_task_ctx_t *ctx, const void *arg, size_t len,
                         void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    size_t n = 99;
    int rc = marin_task_gpu_ids(ctx, NULL, 0, &n);
    rec(rc, (int)n);
    return 0;
}

/* marin_task_return out of memory keeps the earlier result. */
static int api_return_oom(marin_task_ctx_t *ctx, const void *arg, size_t len,
                          void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    int rc = marin_task_return(ctx, "first", 5);
    if (rc != MARIN_OK)
        return rc;
    marin__test_fail_alloc_after(0);
    rc = marin_task_return(ctx, "second", 6);
    marin__test_fail_alloc_after(-1);
    rec(rc, 1);
    return 0;
}

static int one_item_next(const void **arg, size_t *len, void *ud)
{
    int *k = ud;
    if ((*k)++ > 0)
        return 0;
    *arg = NULL;
    *len = 0;
    return 1;
}

static int no_item_next(const void **arg, size_t *len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    return 0;
}

static atomic_int g_results;

static int count_result(size_t index, int status, const void *data,
                        size_t len, void *ud)
{
    (void)index;
    (void)status;
    (void)data;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_results, 1);
    return 0;
}

/* Waits for its runtime to close, then submits in every way. */
static int api_on_close(marin_task_ctx_t *ctx, const void *arg, size_t len,
                        void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_started, 1);
    for (int i = 0; i < 3000 && !marin_task_cancelled(ctx); i++)
        sleep_ms(1);
    marin_runtime_t *rt = marin_task_runtime(ctx);
    marin_future_t *f = SENTINEL;
    int rc = marin_submit(rt, "api_echo", "c", 1, NULL, &f);
    rec(rc, f == NULL);
    marin_future_release(f == SENTINEL ? NULL : f);
    f = SENTINEL;
    rc = marin_submit_after(rt, "api_echo", "c", 1, NULL, &g_close_dep, 1, &f);
    rec(rc, f == NULL);
    marin_future_release(f == SENTINEL ? NULL : f);
    int k = 0;
    rc = marin_map_ordered(rt, "api_echo", one_item_next, count_result, NULL,
                           &k);
    rec(rc, k == 1);
    return 0;
}

/* ---- helpers ---- */

/* A running gated task (waits until it has started). */
static marin_future_t *running_gate(marin_runtime_t *rt)
{
    int before = atomic_load(&g_started);
    marin_future_t *f = submit_opts(rt, "api_gate", NULL, 0, NULL);
    ck_assert_msg(wait_for(&g_started, before + 1, 2000),
                  "gated task did not start");
    return f;
}

/* @p n copies of @p c, NUL-terminated (buf has room for n + 1). */
static char *fill(char *buf, size_t n, char c)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

static void noop_done(marin_future_t *f, int status, void *ud)
{
    (void)f;
    (void)status;
    (void)ud;
}

static void noop_log(int level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
}

static void noop_progress(size_t done, size_t submitted, size_t failed,
                          void *ud)
{
    (void)done;
    (void)submitted;
    (void)failed;
    (void)ud;
}

/* ---- NULL handles and outputs, header by header ---- */

START_TEST(test_api_null_resources)
{
    marin_resources_t *r = SENTINEL;
    EXPECT_ERR(marin_resources_parse(NULL, &r), MARIN_EINVAL,
               "marin_resources_parse");
    ck_assert_ptr_null(r);
    EXPECT_ERR(marin_resources_parse("cpus=1", NULL), MARIN_EINVAL,
               "marin_resources_parse");
    EXPECT_ERR(marin_resources_create(NULL), MARIN_EINVAL,
               "marin_resources_create");
    EXPECT_ERR(marin_resources_set(NULL, "cpus", 1), MARIN_EINVAL,
               "marin_resources_set");
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    EXPECT_ERR(marin_resources_set(r, NULL, 1), MARIN_EINVAL,
               "marin_resources_set");
    char buf[16];
    EXPECT_ERR(marin_resources_format(NULL, buf, sizeof buf), MARIN_EINVAL,
               "marin_resources_format");
    EXPECT_ERR(marin_resources_format(NULL, NULL, 0), MARIN_EINVAL,
               "marin_resources_format");
    EXPECT_ERR(marin_resources_format(r, NULL, 4), MARIN_EINVAL,
               "marin_resources_format");
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_api_null_runtime)
{
    EXPECT_ERR(marin_runtime_open(RT, NULL), MARIN_EINVAL,
               "marin_runtime_open");
    marin_runtime_t *rt = open_rt(RT);
    marin_resources_t *cap = NULL;
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    EXPECT_ERR(marin_runtime_capacity(NULL, cap), MARIN_EINVAL,
               "marin_runtime_capacity");
    EXPECT_ERR(marin_runtime_capacity(rt, NULL), MARIN_EINVAL,
               "marin_runtime_capacity");
    EXPECT_ERR(marin_runtime_set_logger(NULL, noop_log, MARIN_LOG_WARN, NULL),
               MARIN_EINVAL, "marin_runtime_set_logger");
    EXPECT_ERR(marin_runtime_set_logger(NULL, NULL, MARIN_LOG_WARN, NULL),
               MARIN_EINVAL, "marin_runtime_set_logger");
    /* NULL fn is not an error: back to the default */
    ck_assert_marin(marin_runtime_set_logger(rt, NULL, MARIN_LOG_WARN, NULL),
                    MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(cap, "cpus"), 2.0);
    marin_resources_destroy(cap);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_null_task_options)
{
    EXPECT_ERR(marin_task_options_create(NULL), MARIN_EINVAL,
               "marin_task_options_create");
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=1", &r), MARIN_OK);
    EXPECT_ERR(marin_task_options_set_resources(NULL, r), MARIN_EINVAL,
               "marin_task_options_set_resources");
    EXPECT_ERR(marin_task_options_set_max_retries(NULL, 1), MARIN_EINVAL,
               "marin_task_options_set_max_retries");
    EXPECT_ERR(marin_task_options_set_retry_exceptions(NULL, 1), MARIN_EINVAL,
               "marin_task_options_set_retry_exceptions");
    EXPECT_ERR(marin_task_options_set_timeout_ms(NULL, 1), MARIN_EINVAL,
               "marin_task_options_set_timeout_ms");
    EXPECT_ERR(marin_task_options_set_env(NULL, "K", "v"), MARIN_EINVAL,
               "marin_task_options_set_env");
    EXPECT_ERR(marin_task_options_set_label(NULL, "x"), MARIN_EINVAL,
               "marin_task_options_set_label");
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    EXPECT_ERR(marin_task_options_set_resources(o, NULL), MARIN_EINVAL,
               "marin_task_options_set_resources");
    EXPECT_ERR(marin_task_options_set_env(o, NULL, "v"), MARIN_EINVAL,
               "marin_task_options_set_env");
    /* NULL value and NULL label are documented as "remove" / "clear" */
    ck_assert_marin(marin_task_options_set_env(o, "K", NULL), MARIN_OK);
    ck_assert_marin(marin_task_options_set_label(o, NULL), MARIN_OK);
    marin_task_options_destroy(o);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_api_null_map)
{
    EXPECT_ERR(marin_map_options_create(NULL), MARIN_EINVAL,
               "marin_map_options_create");
    EXPECT_ERR(marin_map_options_set_max_in_flight(NULL, 4), MARIN_EINVAL,
               "marin_map_options_set_max_in_flight");
    EXPECT_ERR(marin_map_options_set_continue_on_error(NULL, 1), MARIN_EINVAL,
               "marin_map_options_set_continue_on_error");
    EXPECT_ERR(marin_map_options_set_task_options(NULL, NULL), MARIN_EINVAL,
               "marin_map_options_set_task_options");
    EXPECT_ERR(marin_map_options_set_progress(NULL, noop_progress, NULL),
               MARIN_EINVAL, "marin_map_options_set_progress");
    EXPECT_ERR(marin_map_options_set_progress_bar(NULL, 1), MARIN_EINVAL,
               "marin_map_options_set_progress_bar");

    marin_runtime_t *rt = open_rt(RT);
    int k = 0;
    EXPECT_ERR(marin_map_ordered(NULL, "api_echo", one_item_next, count_result,
                                 NULL, &k),
               MARIN_EINVAL, "marin_map_ordered");
    EXPECT_ERR(marin_map_ordered(rt, NULL, one_item_next, count_result, NULL,
                                 &k),
               MARIN_EINVAL, "marin_map_ordered");
    EXPECT_ERR(marin_map_ordered(rt, "api_echo", NULL, count_result, NULL,
                                 &k),
               MARIN_EINVAL, "marin_map_ordered");
    EXPECT_ERR(marin_map_ordered(rt, "api_echo", one_item_next, NULL, NULL,
                                 &k),
               MARIN_EINVAL, "marin_map_ordered");
    ck_assert_int_eq(k, 0); /* refused before asking for an item */
    ck_assert_int_eq(atomic_load(&g_results), 0);
    /* opts NULL is the documented default, not an error */
    ck_assert_marin(marin_map_ordered(rt, "api_echo", one_item_next,
                                      count_result, NULL, &k),
                    MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_results), 1);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_null_submit)
{
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    marin_future_t *f = SENTINEL;
    EXPECT_ERR(marin_submit(NULL, "api_echo", NULL, 0, NULL, &f), MARIN_EINVAL,
               "marin_submit");
    ck_assert_ptr_null(f);
    f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, NULL, NULL, 0, NULL, &f), MARIN_EINVAL,
               "marin_submit");
    ck_assert_ptr_null(f);
    EXPECT_ERR(marin_submit(rt, "api_echo", NULL, 0, NULL, NULL), MARIN_EINVAL,
               "marin_submit");
    f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, "api_echo", NULL, 3, NULL, &f), MARIN_EINVAL,
               "marin_submit");
    ck_assert_lasterr_has("3");
    ck_assert_ptr_null(f);

    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(NULL, "api_echo", NULL, 0, NULL, &dep, 1, &f),
               MARIN_EINVAL, "marin_submit_after");
    ck_assert_ptr_null(f);
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, NULL, NULL, 0, NULL, &dep, 1, &f),
               MARIN_EINVAL, "marin_submit_after");
    ck_assert_ptr_null(f);
    EXPECT_ERR(marin_submit_after(rt, "api_echo", NULL, 0, NULL, &dep, 1, NULL),
               MARIN_EINVAL, "marin_submit_after");
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "api_echo", NULL, 2, NULL, &dep, 1, &f),
               MARIN_EINVAL, "marin_submit_after");
    ck_assert_ptr_null(f);
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "api_echo", NULL, 0, NULL, NULL, 2, &f),
               MARIN_EINVAL, "marin_submit_after");
    ck_assert_ptr_null(f);
    marin_future_t *withnull[3] = {dep, dep, NULL};
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "api_echo", NULL, 0, NULL, withnull, 3,
                                  &f),
               MARIN_EINVAL, "deps[2]");
    ck_assert_lasterr_has("marin_submit_after");
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(dep);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_null_future)
{
    const void *data = SENTINEL;
    size_t len = 7;
    EXPECT_ERR(marin_future_get(NULL, -1, &data, &len), MARIN_EINVAL,
               "marin_future_get");
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    char buf[64];
    EXPECT_ERR(marin_future_id(NULL, buf, sizeof buf), MARIN_EINVAL,
               "marin_future_id");
    EXPECT_ERR(marin_future_id(NULL, NULL, 0), MARIN_EINVAL, "marin_future_id");
    EXPECT_ERR(marin_future_on_done(NULL, noop_done, NULL, NULL), MARIN_EINVAL,
               "marin_future_on_done");
    EXPECT_ERR(marin_future_cancel(NULL), MARIN_EINVAL, "marin_future_cancel");

    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *f = submit_opts(rt, "api_echo", "x", 1, NULL);
    EXPECT_ERR(marin_future_id(f, NULL, 8), MARIN_EINVAL, "marin_future_id");
    EXPECT_ERR(marin_future_on_done(f, NULL, NULL, NULL), MARIN_EINVAL,
               "marin_future_on_done");
    marin_future_t *fs[2] = {f, NULL};
    size_t idx[2], nready = 5;
    EXPECT_ERR(marin_wait(NULL, 1, 1, -1, idx, &nready), MARIN_EINVAL,
               "marin_wait");
    ck_assert_uint_eq(nready, 0);
    EXPECT_ERR(marin_wait(fs, 1, 1, -1, NULL, &nready), MARIN_EINVAL,
               "marin_wait");
    EXPECT_ERR(marin_wait(fs, 1, 1, -1, idx, NULL), MARIN_EINVAL, "marin_wait");
    nready = 5;
    EXPECT_ERR(marin_wait(fs, 2, 1, -1, idx, &nready), MARIN_EINVAL,
               "futs[1]");
    ck_assert_lasterr_has("marin_wait");
    ck_assert_uint_eq(nready, 0);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* Outside a task there is no ctx: every accessor refuses NULL. */
START_TEST(test_api_null_task_ctx)
{
    EXPECT_ERR(marin_task_return(NULL, "x", 1), MARIN_EINVAL,
               "marin_task_return");
    EXPECT_ERR(marin_task_return(NULL, NULL, 0), MARIN_EINVAL,
               "marin_task_return");
    EXPECT_ERR(marin_task_fail(NULL, "boom"), MARIN_EINVAL, "marin_task_fail");
    const void *d = SENTINEL;
    size_t l = 4;
    EXPECT_ERR(marin_task_dep(NULL, 0, &d, &l), MARIN_EINVAL, "marin_task_dep");
    ck_assert_ptr_null(d);
    ck_assert_uint_eq(l, 0);
    int ids[4];
    size_t n = 4;
    EXPECT_ERR(marin_task_gpu_ids(NULL, ids, 4, &n), MARIN_EINVAL,
               "marin_task_gpu_ids");
    ck_assert_uint_eq(n, 0);
    EXPECT_ERR(marin_task_log(NULL, MARIN_LOG_WARN, "x"), MARIN_EINVAL,
               "marin_task_log");
    EXPECT_ERR(marin_test_kill_worker(NULL), MARIN_EINVAL,
               "marin_test_kill_worker");
}
END_TEST

/* With a valid ctx: NULL outputs, indices out of range, bad levels. */
START_TEST(test_api_ctx_misuse_in_task)
{
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *f = submit_opts(rt, "api_ctx_probe", NULL, 0, NULL);
    size_t len = 99;
    ck_assert_marin(marin_future_get(f, 2000, NULL, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0); /* marin_task_return(ctx, NULL, 0) */
    ck_assert_int_eq(atomic_load(&g_nrec), 12);
    CHECK_REC(0, MARIN_EINVAL, "marin_task_return");
    CHECK_REC(1, MARIN_EINVAL, "marin_task_dep");
    CHECK_REC(2, MARIN_EINVAL, "index 7");
    CHECK_REC(3, MARIN_EINVAL, "marin_task_gpu_ids");
    CHECK_REC(4, MARIN_EINVAL, "marin_task_gpu_ids");
    CHECK_REC(5, MARIN_EINVAL, "level 0");
    CHECK_REC(6, MARIN_EINVAL, "level 5");
    CHECK_REC(7, MARIN_EINVAL, "marin_task_log");
    for (int i = 0; i < 12; i++)
        ck_assert_msg(g_rec[i].flag == 1, "probe %d: its check failed", i);
    ck_assert_int_eq(g_rec[8].rc, MARIN_OK);
    ck_assert_int_eq(g_rec[9].rc, MARIN_OK); /* cap 0 is enough for none */
    ck_assert_int_eq(g_rec[10].rc, MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- zero lengths ---- */

START_TEST(test_api_zero_lengths)
{
    /* empty names are refused everywhere a name is taken */
    EXPECT_ERR(marin_register_task("", noop_task, NULL), MARIN_EINVAL,
               "marin_register_task");
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, "", NULL, 0, NULL, &f), MARIN_EINVAL,
               "marin_submit");
    ck_assert_ptr_null(f);
    marin_future_t *dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "", NULL, 0, NULL, &dep, 1, &f),
               MARIN_EINVAL, "marin_submit_after");
    ck_assert_ptr_null(f);
    int k = 0;
    EXPECT_ERR(marin_map_ordered(rt, "", one_item_next, count_result, NULL,
                                 &k),
               MARIN_EINVAL, "marin_map_ordered");
    ck_assert_lasterr_has("1 to 255 bytes");
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    EXPECT_ERR(marin_task_options_set_label(o, ""), MARIN_EINVAL,
               "marin_task_options_set_label");
    EXPECT_ERR(marin_task_options_set_env(o, "", "v"), MARIN_EINVAL,
               "marin_task_options_set_env");
    ck_assert_marin(marin_task_options_set_env(o, "K", ""), MARIN_OK);
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    EXPECT_ERR(marin_resources_set(r, "", 1), MARIN_EINVAL,
               "marin_resources_set");
    ck_assert_lasterr_has("empty");
    marin_resources_destroy(r);

    /* "" is the empty set; a lone comma is an empty token */
    r = SENTINEL;
    ck_assert_marin(marin_resources_parse("", &r), MARIN_OK);
    ck_assert_int_eq(marin_resources_format(r, NULL, 0), 0);
    marin_resources_destroy(r);
    r = SENTINEL;
    EXPECT_ERR(marin_resources_parse(",", &r), MARIN_EINVAL, "empty token");
    ck_assert_ptr_null(r);

    /* zero-length arguments and dependency lists are fine */
    const void *data = NULL;
    size_t len = 99;
    f = submit_opts(rt, "api_echo", NULL, 0, NULL);
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0);
    marin_future_release(f);
    f = submit_opts(rt, "api_echo", "ignored", 0, o);
    len = 99;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0);
    marin_future_release(f);
    ck_assert_marin(marin_submit_after(rt, "api_echo", NULL, 0, NULL, NULL, 0,
                                       &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    ck_assert_marin(marin_submit_after(rt, "api_echo", NULL, 0, NULL, &dep, 0,
                                       &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);

    /* zero-capacity buffers: the length needed, nothing written */
    char buf[8];
    memset(buf, 'X', sizeof buf);
    int need = marin_future_id(f, NULL, 0);
    ck_assert_int_gt(need, 0);
    ck_assert_int_eq(marin_future_id(f, buf, 0), need);
    ck_assert_int_eq(buf[0], 'X');
    ck_assert_marin(marin_resources_parse("cpus=2", &r), MARIN_OK);
    ck_assert_int_eq(marin_resources_format(r, buf, 0), 6);
    ck_assert_int_eq(buf[0], 'X');
    marin_resources_destroy(r);

    /* waiting on nothing is refused */
    size_t idx[1], nready = 3;
    EXPECT_ERR(marin_wait(&f, 0, 0, -1, idx, &nready), MARIN_EINVAL,
               "marin_wait");
    ck_assert_uint_eq(nready, 0);
    EXPECT_ERR(marin_wait(&f, 1, 0, -1, idx, &nready), MARIN_EINVAL,
               "num_returns");

    /* an empty map is a successful map */
    atomic_store(&g_results, 0);
    ck_assert_marin(marin_map_ordered(rt, "api_echo", no_item_next,
                                      count_result, NULL, NULL),
                    MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_results), 0);

    marin_future_release(f);
    marin_future_release(dep);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);

    /* README: an empty URI means the default, like NULL */
    marin_runtime_t *def = SENTINEL;
    ck_assert_marin(marin_runtime_open("", &def), MARIN_OK);
    ck_assert_str_eq(marin_runtime_backend(def), "local");
    marin_runtime_close(def);
}
END_TEST

/* ---- names over MARIN_NAME_MAX (255) bytes ---- */

START_TEST(test_api_names_over_255)
{
    char n255[MARIN_NAME_MAX + 1], n256[MARIN_NAME_MAX + 2], n4k[4097];
    fill(n255, MARIN_NAME_MAX, 'a');
    fill(n256, MARIN_NAME_MAX + 1, 'b');
    fill(n4k, 4096, 'c');

    EXPECT_ERR(marin_register_task(n256, noop_task, NULL), MARIN_EINVAL,
               "marin_register_task");
    ck_assert_lasterr_has("255");
    EXPECT_ERR(marin_register_task(n4k, noop_task, NULL), MARIN_EINVAL,
               "marin_register_task");
    ck_assert_uint_lt(strlen(marin_last_error()), 1024);

    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    marin_future_t *f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, n256, NULL, 0, NULL, &f), MARIN_EINVAL,
               "marin_submit");
    ck_assert_ptr_null(f);
    f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, n4k, NULL, 0, NULL, &f), MARIN_EINVAL,
               "marin_submit");
    ck_assert_ptr_null(f);
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, n256, NULL, 0, NULL, &dep, 1, &f),
               MARIN_EINVAL, "marin_submit_after");
    ck_assert_ptr_null(f);
    int k = 0;
    EXPECT_ERR(marin_map_ordered(rt, n256, one_item_next, count_result, NULL,
                                 &k),
               MARIN_EINVAL, "marin_map_ordered");
    ck_assert_lasterr_has("255");

    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    EXPECT_ERR(marin_task_options_set_label(o, n256), MARIN_EINVAL,
               "marin_task_options_set_label");
    EXPECT_ERR(marin_task_options_set_env(o, n256, "v"), MARIN_EINVAL,
               "marin_task_options_set_env");
    EXPECT_ERR(marin_task_options_set_env(o, n4k, NULL), MARIN_EINVAL,
               "marin_task_options_set_env");

    /* resource names: at most 63 bytes (resources.h) */
    char r63[64], r64[65];
    fill(r63, 63, 'r');
    fill(r64, 64, 'r');
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    EXPECT_ERR(marin_resources_set(r, n256, 1), MARIN_EINVAL,
               "marin_resources_set");
    ck_assert_lasterr_has("256 bytes");
    EXPECT_ERR(marin_resources_set(r, r64, 1), MARIN_EINVAL,
               "marin_resources_set");
    ck_assert_lasterr_has("64 bytes");
    ck_assert_marin(marin_resources_set(r, r63, 1), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(r, r63), 1.0);
    marin_resources_destroy(r);
    char spec[4200];
    snprintf(spec, sizeof spec, "cpus=1,%s=1", n256);
    r = SENTINEL;
    EXPECT_ERR(marin_resources_parse(spec, &r), MARIN_EINVAL, "token 2");
    ck_assert_lasterr_has("invalid resource name");
    ck_assert_ptr_null(r);
    char uri[4300];
    snprintf(uri, sizeof uri, "local://?resources=%s=1", n256);
    marin_runtime_t *bad = SENTINEL;
    EXPECT_ERR(marin_runtime_open(uri, &bad), MARIN_EINVAL,
               "marin_runtime_open");
    ck_assert_lasterr_has("invalid resource name");
    ck_assert_ptr_null(bad);

    /* exactly 255 bytes is a name */
    ck_assert_marin(marin_task_options_set_label(o, n255), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, n255, "v"), MARIN_OK);
    f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, n255, NULL, 0, NULL, &f), MARIN_ENOTFOUND,
               n255);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_register_task(n255, api_echo, NULL), MARIN_OK);
    f = submit_opts(rt, n255, "ok", 2, o);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);

    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(dep);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- unknown task names: MARIN_ENOTFOUND naming the name ---- */

START_TEST(test_api_unknown_task_names)
{
    marin_runtime_t *rt = open_rt(RT);
    const char *names[] = {"api_never_registered", "API_ECHO", "api_echo ",
                           "api echo", "api_ech"};
    marin_future_t *dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", names[i]);
        marin_future_t *f = SENTINEL;
        EXPECT_ERR(marin_submit(rt, names[i], "x", 1, NULL, &f),
                   MARIN_ENOTFOUND, quoted);
        ck_assert_ptr_null(f);
        /* pending or finished dependencies: refused at submit either way */
        f = SENTINEL;
        EXPECT_ERR(marin_submit_after(rt, names[i], NULL, 0, NULL, &dep, 1,
                                      &f),
                   MARIN_ENOTFOUND, quoted);
        ck_assert_ptr_null(f);
        int k = 0;
        atomic_store(&g_results, 0);
        EXPECT_ERR(marin_map_ordered(rt, names[i], one_item_next,
                                     count_result, NULL, &k),
                   MARIN_ENOTFOUND, quoted);
        ck_assert_lasterr_has("marin_map_ordered");
        ck_assert_int_eq(atomic_load(&g_results), 0);
    }
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_t *f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "api_never_registered", NULL, 0, NULL,
                                  &dep, 1, &f),
               MARIN_ENOTFOUND, "'api_never_registered'");
    ck_assert_ptr_null(f);
    marin_future_release(dep);
    marin_runtime_close(rt);
}
END_TEST

/* ---- resource typos ---- */

START_TEST(test_api_resource_typos)
{
    /* typos the parser can see: units, separators, signs */
    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"cpus=2,memory=4GIB", "unknown unit 'GIB'"},
        {"memory=4gb", "unknown unit 'gb'"},
        {"memory=512mb", "unknown unit 'mb'"},
        {"cpus=2;gpus=1", "trailing characters"},
        {"cpus:2", "missing '='"},
        {"cpus 2", "missing '='"},
        {"cpus==2", "'=2'"},
        {"cpus=2,,memory=1GiB", "empty token"},
        {"cpus=two", "'two'"},
        {"cpus=1,cpus=2", "duplicate resource 'cpus'"},
        {"cpus=-2", "negative"},
        {"cpu s=1", "invalid resource name 'cpu s'"},
        {"2cpus=1", "invalid resource name '2cpus'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        marin_resources_t *r = SENTINEL;
        int rc = marin_resources_parse(bad[i].spec, &r);
        ck_assert_msg(rc == MARIN_EINVAL, "'%s': %d (%s), wanted EINVAL",
                      bad[i].spec, rc, marin_strerror(rc));
        ck_assert_msg(r == NULL, "'%s': *out not NULL", bad[i].spec);
        ck_assert_msg(strstr(marin_last_error(), bad[i].needle) != NULL,
                      "'%s': last error '%s' lacks '%s'", bad[i].spec,
                      marin_last_error(), bad[i].needle);
    }
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    EXPECT_ERR(marin_resources_set(r, "cpus ", 1), MARIN_EINVAL, "'cpus '");
    EXPECT_ERR(marin_resources_set(r, "me mory", 1), MARIN_EINVAL, "'me mory'");
    marin_resources_destroy(r);

    /* the same typos in the runtime URI */
    marin_runtime_t *rt = SENTINEL;
    EXPECT_ERR(marin_runtime_open("local://?resources=cpus=2,memory=4GIB", &rt),
               MARIN_EINVAL, "'GIB'");
    ck_assert_ptr_null(rt);
    rt = SENTINEL;
    EXPECT_ERR(marin_runtime_open("local://?resourcs=cpus=2", &rt),
               MARIN_EINVAL, "'resourcs'");
    ck_assert_ptr_null(rt);

    /* a misspelt name is a valid custom resource, which no capacity has:
     * the submit is infeasible and the message names it */
    rt = open_rt(RT);
    static const char *const misspelt[] = {"memroy=1GiB", "cpu=1", "gpu=1",
                                           "CPUS=1"};
    for (size_t i = 0; i < sizeof misspelt / sizeof misspelt[0]; i++) {
        marin_task_options_t *o = opts_with_resources(misspelt[i]);
        char name[16];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(misspelt[i], "="),
                 misspelt[i]);
        marin_future_t *f = SENTINEL;
        EXPECT_ERR(marin_submit(rt, "api_echo", NULL, 0, o, &f),
                   MARIN_EINFEASIBLE, name);
        ck_assert_ptr_null(f);
        ck_assert_lasterr_has("api_echo");
        marin_task_options_destroy(o);
    }
    marin_runtime_close(rt);
}
END_TEST

/* ---- max_in_flight 0 ---- */

START_TEST(test_api_max_in_flight_zero)
{
    marin_map_options_t *m = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_marin(marin_map_options_set_max_in_flight(m, 2), MARIN_OK);
    EXPECT_ERR(marin_map_options_set_max_in_flight(m, 0), MARIN_EINVAL,
               "marin_map_options_set_max_in_flight");
    ck_assert_lasterr_has("0");
    EXPECT_ERR(marin_map_options_set_max_in_flight(NULL, 0), MARIN_EINVAL,
               "marin_map_options_set_max_in_flight");
    /* the refused call left the options usable */
    marin_runtime_t *rt = open_rt(RT);
    int k = 0;
    atomic_store(&g_results, 0);
    ck_assert_marin(marin_map_ordered(rt, "api_echo", one_item_next,
                                      count_result, m, &k),
                    MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_results), 1);
    marin_runtime_close(rt);
    marin_map_options_destroy(m);
}
END_TEST

/* ---- negative timeouts other than -1 ---- */

START_TEST(test_api_negative_timeouts)
{
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *f = running_gate(rt);
    static const int64_t bad[] = {-2, -3, -1000, INT32_MIN, INT64_MIN};
    static const char *const shown[] = {"-2", "-3", "-1000", "-2147483648",
                                        "-9223372036854775808"};
    size_t idx[1], nready;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const void *data = SENTINEL;
        size_t len = 5;
        EXPECT_ERR(marin_future_get(f, bad[i], &data, &len), MARIN_EINVAL,
                   "marin_future_get");
        ck_assert_lasterr_has(shown[i]);
        ck_assert_ptr_null(data);
        ck_assert_uint_eq(len, 0);
        nready = 9;
        EXPECT_ERR(marin_wait(&f, 1, 1, bad[i], idx, &nready), MARIN_EINVAL,
                   "marin_wait");
        ck_assert_lasterr_has(shown[i]);
        ck_assert_uint_eq(nready, 0);
    }
    /* the refused waits left the task alone */
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_RUNNING);

    /* a task timeout has no "forever" value: every negative is refused */
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    EXPECT_ERR(marin_task_options_set_timeout_ms(o, -1), MARIN_EINVAL,
               "marin_task_options_set_timeout_ms");
    ck_assert_lasterr_has("-1");
    EXPECT_ERR(marin_task_options_set_timeout_ms(o, -2), MARIN_EINVAL, "-2");
    EXPECT_ERR(marin_task_options_set_timeout_ms(o, INT64_MIN), MARIN_EINVAL,
               "-9223372036854775808");
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 0), MARIN_OK);
    marin_task_options_destroy(o);

    /* -1 waits (here: until the gate opens) */
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    nready = 0;
    ck_assert_marin(marin_wait(&f, 1, 1, -1, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 1);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- the other documented codes, one function at a time ---- */

START_TEST(test_api_register_duplicate)
{
    EXPECT_ERR(marin_register_task("api_echo", noop_task, NULL), MARIN_EEXIST,
               "'api_echo'");
    ck_assert_lasterr_has("marin_register_task");
    EXPECT_ERR(marin_register_task("api_echo", api_echo, NULL), MARIN_EEXIST,
               "'api_echo'");
    EXPECT_ERR(marin_register_task("api_new", NULL, NULL), MARIN_EINVAL,
               "marin_register_task");
    EXPECT_ERR(marin_register_task(NULL, noop_task, NULL), MARIN_EINVAL,
               "marin_register_task");
}
END_TEST

START_TEST(test_api_runtime_open_errors)
{
    marin_runtime_t *rt = SENTINEL;
    EXPECT_ERR(marin_runtime_open("nosuch://host", &rt), MARIN_ENOBACKEND,
               "'nosuch'");
    ck_assert_lasterr_has("local"); /* the built-in backends */
    ck_assert_ptr_null(rt);
    static const char *const malformed[] = {"://", "local:", "1local",
                                            "local://?bogus=1",
                                            "local://?max_threads=-1"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        rt = SENTINEL;
        int rc = marin_runtime_open(malformed[i], &rt);
        ck_assert_msg(rc == MARIN_EINVAL, "'%s': %d (%s)", malformed[i], rc,
                      marin_strerror(rc));
        ck_assert_msg(rt == NULL, "'%s': *out not NULL", malformed[i]);
        ck_assert_msg(strlen(marin_last_error()) > 10, "'%s': no message",
                      malformed[i]);
    }
}
END_TEST

START_TEST(test_api_logger_bad_level)
{
    marin_runtime_t *rt = open_rt(RT);
    EXPECT_ERR(marin_runtime_set_logger(rt, noop_log, -1, NULL), MARIN_EINVAL,
               "level -1");
    ck_assert_lasterr_has("marin_runtime_set_logger");
    EXPECT_ERR(marin_runtime_set_logger(rt, noop_log, MARIN_LOG_DEBUG + 1,
                                        NULL),
               MARIN_EINVAL, "level 5");
    EXPECT_ERR(marin_runtime_set_logger(rt, noop_log, INT_MIN, NULL),
               MARIN_EINVAL, "marin_runtime_set_logger");
    for (int lvl = MARIN_LOG_ERROR; lvl <= MARIN_LOG_DEBUG; lvl++)
        ck_assert_marin(marin_runtime_set_logger(rt, noop_log, lvl, NULL),
                        MARIN_OK);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_options_bad_values)
{
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    EXPECT_ERR(marin_task_options_set_max_retries(o, -2), MARIN_EINVAL, "-2");
    ck_assert_lasterr_has("marin_task_options_set_max_retries");
    EXPECT_ERR(marin_task_options_set_max_retries(o, INT_MIN), MARIN_EINVAL,
               "-2147483648");
    EXPECT_ERR(marin_task_options_set_env(o, "A=B", "v"), MARIN_EINVAL,
               "marin_task_options_set_env");
    ck_assert_lasterr_has("'='");
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    marin_task_options_destroy(o);
}
END_TEST

START_TEST(test_api_submit_infeasible)
{
    marin_runtime_t *rt = open_rt(RT);
    marin_task_options_t *o = opts_with_resources("cpus=3");
    marin_future_t *f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, "api_echo", NULL, 0, o, &f), MARIN_EINFEASIBLE,
               "cpus=3"); /* the request */
    ck_assert_lasterr_has("cpus=2"); /* the capacity */
    ck_assert_lasterr_has("api_echo");
    ck_assert_ptr_null(f);
    marin_future_t *dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "api_echo", NULL, 0, o, &dep, 1, &f),
               MARIN_EINFEASIBLE, "cpus=3");
    ck_assert_ptr_null(f);
    marin_map_options_t *m = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(m, o), MARIN_OK);
    int k = 0;
    EXPECT_ERR(marin_map_ordered(rt, "api_echo", one_item_next, count_result,
                                 m, &k),
               MARIN_EINFEASIBLE, "cpus=3");
    ck_assert_lasterr_has("marin_map_ordered");
    marin_map_options_destroy(m);
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(dep);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_future_get_timeout)
{
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *f = running_gate(rt);
    const void *data = SENTINEL;
    size_t len = 5;
    EXPECT_ERR(marin_future_get(f, 0, &data, &len), MARIN_ETIMEDOUT,
               "marin_future_get");
    ck_assert_lasterr_has("'api_gate'");
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    EXPECT_ERR(marin_future_get(f, 5, NULL, NULL), MARIN_ETIMEDOUT,
               "'api_gate'");
    /* marin_wait reports a timeout as OK with fewer ready */
    size_t idx[1], nready = 9;
    ck_assert_marin(marin_wait(&f, 1, 1, 5, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 0);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_future_get_task_codes)
{
    marin_runtime_t *rt = open_rt(RT);
    const void *data = SENTINEL;
    size_t len = 5;

    marin_future_t *f = submit_opts(rt, "api_fail", "disk 7 is full", 14, NULL);
    EXPECT_ERR(marin_future_get(f, 2000, &data, &len), MARIN_ETASK,
               "disk 7 is full");
    ck_assert_lasterr_has("api_fail");
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(strstr(marin_future_error(f), "disk 7 is full"));
    /* marin_task_fail itself returned MARIN_ETASK with its message */
    CHECK_REC(0, MARIN_ETASK, "disk 7 is full");
    marin_future_release(f);

    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    f = submit_opts(rt, "api_kill", NULL, 0, o);
    EXPECT_ERR(marin_future_get(f, 2000, NULL, NULL), MARIN_EWORKER,
               "api_kill");
    marin_future_release(f);

    ck_assert_marin(marin_task_options_set_timeout_ms(o, 10), MARIN_OK);
    f = submit_opts(rt, "api_gate", NULL, 0, o);
    EXPECT_ERR(marin_future_get(f, 2000, NULL, NULL), MARIN_ETASKTIMEOUT,
               "10 ms");
    ck_assert_lasterr_has("api_gate");
    marin_future_release(f);
    marin_task_options_destroy(o);

    f = running_gate(rt);
    ck_assert_marin(marin_future_cancel(f), MARIN_OK);
    EXPECT_ERR(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED,
               "marin_future_cancel");
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_api_future_estate)
{
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *ok = submit_opts(rt, "api_echo", "a", 1, NULL);
    ck_assert_marin(marin_future_get(ok, 2000, NULL, NULL), MARIN_OK);
    EXPECT_ERR(marin_future_cancel(ok), MARIN_ESTATE, "marin_future_cancel");
    ck_assert_lasterr_has("already finished");
    marin_future_t *bad = submit_opts(rt, "api_fail", "x", 1, NULL);
    ck_assert_marin(marin_future_get(bad, 2000, NULL, NULL), MARIN_ETASK);
    EXPECT_ERR(marin_future_cancel(bad), MARIN_ESTATE, "marin_future_cancel");
    marin_future_t *c = running_gate(rt);
    ck_assert_marin(marin_future_cancel(c), MARIN_OK);
    EXPECT_ERR(marin_future_cancel(c), MARIN_ESTATE, "marin_future_cancel");
    marin_runtime_close(rt);
    /* no runtime thread is left to run a callback */
    EXPECT_ERR(marin_future_on_done(ok, noop_done, NULL, NULL), MARIN_ESTATE,
               "marin_future_on_done");
    EXPECT_ERR(marin_future_on_done(c, noop_done, NULL, NULL), MARIN_ESTATE,
               "marin_future_on_done");
    /* still readable after close */
    ck_assert_marin(marin_future_get(ok, 0, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(c, 0, NULL, NULL), MARIN_ECANCELED);
    marin_future_release(ok);
    marin_future_release(bad);
    marin_future_release(c);
}
END_TEST

/* A task of a closing runtime submits: MARIN_ESTATE, *out NULL. */
START_TEST(test_api_closing_runtime_estate)
{
    marin_runtime_t *rt = open_rt(RT);
    g_close_dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    ck_assert_marin(marin_future_get(g_close_dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_t *f = submit_opts(rt, "api_on_close", NULL, 0, NULL);
    ck_assert(wait_for(&g_started, 1, 2000));
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_nrec), 3);
    CHECK_REC(0, MARIN_ESTATE, "marin_submit");
    ck_assert_msg(strstr(g_rec[0].err, "closing") != NULL, "%s", g_rec[0].err);
    ck_assert_msg(g_rec[0].flag, "marin_submit: *out not NULL");
    CHECK_REC(1, MARIN_ESTATE, "marin_submit_after");
    ck_assert_msg(strstr(g_rec[1].err, "closing") != NULL, "%s", g_rec[1].err);
    ck_assert_msg(g_rec[1].flag, "marin_submit_after: *out not NULL");
    CHECK_REC(2, MARIN_ESTATE, "marin_map_ordered");
    ck_assert_msg(strstr(g_rec[2].err, "closing") != NULL, "%s", g_rec[2].err);
    ck_assert_int_eq(atomic_load(&g_results), 0);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    marin_future_release(f);
    marin_future_release(g_close_dep);
}
END_TEST

START_TEST(test_api_gpu_ids_toobig)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=2,gpus=1");
    marin_task_options_t *o = opts_with_resources("cpus=1,gpus=1");
    marin_future_t *f = submit_opts(rt, "api_gpu_probe", NULL, 0, o);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    CHECK_REC(0, MARIN_ETOOBIG, "marin_task_gpu_ids");
    ck_assert_int_eq(g_rec[0].flag, 1); /* *n: how many there are */
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- out of memory: the codes nothing else checks ---- */

START_TEST(test_api_task_return_oom)
{
#if MARIN_FAULT_INJECTION
    marin_runtime_t *rt = open_rt(RT);
    marin_future_t *f = submit_opts(rt, "api_return_oom", NULL, 0, NULL);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    CHECK_REC(0, MARIN_ENOMEM, "marin_task_return");
    /* all or nothing: the earlier result stands */
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(data, "first", 5);
    marin_future_release(f);
    marin_runtime_close(rt);
#endif
}
END_TEST

START_TEST(test_api_map_set_task_options_oom)
{
#if MARIN_FAULT_INJECTION
    marin_map_options_t *m = NULL;
    marin_task_options_t *t = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_marin(marin_task_options_create(&t), MARIN_OK);
    marin__test_fail_alloc_after(0);
    int rc = marin_map_options_set_task_options(m, t);
    marin__test_fail_alloc_after(-1);
    ck_assert_marin(rc, MARIN_ENOMEM);
    ck_assert_lasterr_has("marin_map_options_set_task_options");
    ck_assert_marin(marin_map_options_set_task_options(m, t), MARIN_OK);
    marin_task_options_destroy(t);
    marin_map_options_destroy(m);
#endif
}
END_TEST

/* Every constructor leaves *out NULL when an allocation fails. */
START_TEST(test_api_constructors_null_on_oom)
{
#if MARIN_FAULT_INJECTION
    marin_resources_t *r = SENTINEL;
    marin__test_fail_alloc_after(0);
    int rc = marin_resources_parse("cpus=1", &r);
    marin__test_fail_alloc_after(-1);
    ck_assert_marin(rc, MARIN_ENOMEM);
    ck_assert_ptr_null(r);
    ck_assert_lasterr_has("marin_resources_parse");

    r = SENTINEL;
    marin__test_fail_alloc_after(0);
    rc = marin_resources_create(&r);
    marin__test_fail_alloc_after(-1);
    ck_assert_marin(rc, MARIN_ENOMEM);
    ck_assert_ptr_null(r);
    ck_assert_lasterr_has("marin_resources_create");

    marin_task_options_t *o = SENTINEL;
    marin__test_fail_alloc_after(0);
    rc = marin_task_options_create(&o);
    marin__test_fail_alloc_after(-1);
    ck_assert_marin(rc, MARIN_ENOMEM);
    ck_assert_ptr_null(o);
    ck_assert_lasterr_has("marin_task_options_create");

    marin_map_options_t *m = SENTINEL;
    marin__test_fail_alloc_after(0);
    rc = marin_map_options_create(&m);
    marin__test_fail_alloc_after(-1);
    ck_assert_marin(rc, MARIN_ENOMEM);
    ck_assert_ptr_null(m);
    ck_assert_lasterr_has("marin_map_options_create");

    marin_runtime_t *rt = SENTINEL;
    marin__test_fail_alloc_after(0);
    rc = marin_runtime_open(RT, &rt);
    marin__test_fail_alloc_after(-1);
    ck_assert_marin(rc, MARIN_ENOMEM);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("memory");

    /* submit: n allocations allowed, for n = 0, 1, ... until it works. The
     * counter is process-wide, so the task allocates nothing (api_noop) and
     * the dependency has finished: no runtime thread allocates meanwhile. */
    rt = open_rt(RT);
    int fails = 0;
    for (long n = 0; n < 100; n++) {
        marin_future_t *f = SENTINEL;
        marin__test_fail_alloc_after(n);
        rc = marin_submit(rt, "api_noop", "x", 1, NULL, &f);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK) {
            ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
            marin_future_release(f);
            break;
        }
        ck_assert_marin(rc, MARIN_ENOMEM);
        ck_assert_msg(f == NULL, "marin_submit, n=%ld: *out not NULL", n);
        ck_assert_lasterr_has("memory");
        fails++;
    }
    ck_assert_int_gt(fails, 0);

    marin_future_t *dep = submit_opts(rt, "api_noop", NULL, 0, NULL);
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    fails = 0;
    for (long n = 0; n < 100; n++) {
        marin_future_t *f = SENTINEL;
        marin__test_fail_alloc_after(n);
        rc = marin_submit_after(rt, "api_noop", "x", 1, NULL, &dep, 1, &f);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK) {
            ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
            marin_future_release(f);
            break;
        }
        ck_assert_marin(rc, MARIN_ENOMEM);
        ck_assert_msg(f == NULL, "marin_submit_after, n=%ld: *out not NULL",
                      n);
        ck_assert_lasterr_has("memory");
        fails++;
    }
    ck_assert_int_gt(fails, 0);
    marin_future_release(dep);
    marin_runtime_close(rt);
#endif
}
END_TEST

/* ---- calls that cannot fail ---- */

START_TEST(test_api_getters_on_null)
{
    ck_assert_double_eq(marin_resources_get(NULL, "cpus"), 0.0);
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=2", &r), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(r, NULL), 0.0);
    ck_assert_double_eq(marin_resources_get(r, ""), 0.0);
    ck_assert_double_eq(marin_resources_get(r, "absent"), 0.0);
    marin_resources_destroy(r);

    ck_assert_int_eq(marin_future_state(NULL), MARIN_FUTURE_FAILED);
    ck_assert_ptr_nonnull(marin_future_error(NULL));
    ck_assert_ptr_null(marin_runtime_backend(NULL));

    ck_assert_uint_eq(marin_task_ndeps(NULL), 0);
    ck_assert_ptr_null(marin_task_runtime(NULL));
    ck_assert_int_eq(marin_task_attempt(NULL), 0);
    ck_assert_ptr_nonnull(marin_task_id(NULL));
    ck_assert_str_eq(marin_task_id(NULL), "");
    ck_assert_ptr_null(marin_task_env(NULL, "K"));
    ck_assert_ptr_null(marin_task_env(NULL, NULL));
    ck_assert_int_eq(marin_task_cancelled(NULL), 0);

    for (int code = 0; code >= MARIN_ETOOBIG; code--) {
        const char *s = marin_strerror(code);
        ck_assert_msg(s != NULL && s[0] != '\0', "code %d: no text", code);
        ck_assert_msg(strcmp(s, "unknown error") != 0,
                      "code %d has no text of its own", code);
    }
    static const int unknown[] = {1, MARIN_ETOOBIG - 1, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(marin_strerror(unknown[i]), "unknown error");
    ck_assert_ptr_nonnull(marin_last_error());
    ck_assert_uint_eq(marin_version(), MARIN_VERSION_HEX);

    marin_runtime_t *rt = open_rt(RT);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_runtime_close(rt);
}
END_TEST

/* docs/errors.md: calls that cannot fail leave the last error alone. */
START_TEST(test_api_getters_keep_last_error)
{
    ck_assert_marin(marin_task_options_set_max_retries(NULL, 1), MARIN_EINVAL);
    char before[1024];
    snprintf(before, sizeof before, "%s", marin_last_error());
    ck_assert_str_ne(before, "");
    (void)marin_strerror(MARIN_EINVAL);
    (void)marin_future_state(NULL);
    (void)marin_future_error(NULL);
    (void)marin_resources_get(NULL, "cpus");
    (void)marin_runtime_backend(NULL);
    (void)marin_task_id(NULL);
    (void)marin_task_env(NULL, "K");
    (void)marin_task_ndeps(NULL);
    (void)marin_task_attempt(NULL);
    (void)marin_task_cancelled(NULL);
    (void)marin_task_runtime(NULL);
    (void)marin_version();
    marin_future_retain(NULL);
    marin_future_release(NULL);
    marin_resources_destroy(NULL);
    marin_task_options_destroy(NULL);
    marin_map_options_destroy(NULL);
    marin_runtime_close(NULL);
    ck_assert_str_eq(marin_last_error(), before);
}
END_TEST

START_TEST(test_api_destroy_accepts_null)
{
    marin_resources_destroy(NULL);
    marin_task_options_destroy(NULL);
    marin_map_options_destroy(NULL);
    marin_runtime_close(NULL);
    marin_future_retain(NULL);
    marin_future_release(NULL);
}
END_TEST

/* Constructors that refuse their input leave *out NULL. */
START_TEST(test_api_constructors_null_on_failure)
{
    marin_resources_t *r = SENTINEL;
    EXPECT_ERR(marin_resources_parse("cpus=-1", &r), MARIN_EINVAL, "cpus=-1");
    ck_assert_ptr_null(r);
    marin_runtime_t *rt = SENTINEL;
    EXPECT_ERR(marin_runtime_open("nosuch", &rt), MARIN_ENOBACKEND, "nosuch");
    ck_assert_ptr_null(rt);
    rt = SENTINEL;
    EXPECT_ERR(marin_runtime_open("local://?resources=cpus=x", &rt),
               MARIN_EINVAL, "marin_runtime_open");
    ck_assert_ptr_null(rt);
    /* submit and submit_after: covered per code above; one of each here */
    rt = open_rt(RT);
    marin_future_t *f = SENTINEL;
    EXPECT_ERR(marin_submit(rt, "api_nope", NULL, 0, NULL, &f),
               MARIN_ENOTFOUND, "'api_nope'");
    ck_assert_ptr_null(f);
    marin_future_t *dep = submit_opts(rt, "api_echo", "d", 1, NULL);
    f = SENTINEL;
    EXPECT_ERR(marin_submit_after(rt, "api_nope", NULL, 0, NULL, &dep, 1, &f),
               MARIN_ENOTFOUND, "'api_nope'");
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(dep);
    marin_runtime_close(rt);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("errors");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_api_null_resources);
    tcase_add_test(tc, test_api_null_runtime);
    tcase_add_test(tc, test_api_null_task_options);
    tcase_add_test(tc, test_api_null_map);
    tcase_add_test(tc, test_api_null_submit);
    tcase_add_test(tc, test_api_null_future);
    tcase_add_test(tc, test_api_null_task_ctx);
    tcase_add_test(tc, test_api_ctx_misuse_in_task);
    tcase_add_test(tc, test_api_zero_lengths);
    tcase_add_test(tc, test_api_names_over_255);
    tcase_add_test(tc, test_api_unknown_task_names);
    tcase_add_test(tc, test_api_resource_typos);
    tcase_add_test(tc, test_api_max_in_flight_zero);
    tcase_add_test(tc, test_api_negative_timeouts);
    tcase_add_test(tc, test_api_register_duplicate);
    tcase_add_test(tc, test_api_runtime_open_errors);
    tcase_add_test(tc, test_api_logger_bad_level);
    tcase_add_test(tc, test_api_options_bad_values);
    tcase_add_test(tc, test_api_submit_infeasible);
    tcase_add_test(tc, test_api_future_get_timeout);
    tcase_add_test(tc, test_api_future_get_task_codes);
    tcase_add_test(tc, test_api_future_estate);
    tcase_add_test(tc, test_api_closing_runtime_estate);
    tcase_add_test(tc, test_api_gpu_ids_toobig);
    tcase_add_test(tc, test_api_task_return_oom);
    tcase_add_test(tc, test_api_map_set_task_options_oom);
    tcase_add_test(tc, test_api_constructors_null_on_oom);
    tcase_add_test(tc, test_api_getters_on_null);
    tcase_add_test(tc, test_api_getters_keep_last_error);
    tcase_add_test(tc, test_api_destroy_accepts_null);
    tcase_add_test(tc, test_api_constructors_null_on_failure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } tasks[] = {
        {"api_echo", api_echo},
        {"api_noop", noop_task},
        {"api_gate", api_gate},
        {"api_fail", api_fail},
        {"api_kill", api_kill},
        {"api_ctx_probe", api_ctx_probe},
        {"api_gpu_probe", api_gpu_probe},
        {"api_return_oom", api_return_oom},
        {"api_on_close", api_on_close},
    };
    /* the URI decides the capacity; nothing from this machine's env */
    unsetenv("MARIN_BACKEND");
    unsetenv("CUDA_VISIBLE_DEVICES");
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (marin_register_task(tasks[i].name, tasks[i].fn, NULL) != MARIN_OK) {
            fprintf(stderr, "register %s: %s\n", tasks[i].name,
                    marin_last_error());
            return EXIT_FAILURE;
        }
    return marin_test_run(api_suite());
}
