/* Tests for task functions, task options and submission
 * (include/marin/task.h): results, application and system failures,
 * retries, timeouts, dependencies, env options, names and arguments. */
#define _GNU_SOURCE
#define MARIN_EXPERIMENTAL
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#include "marin/experimental.h"

#define RT2 "local://?resources=cpus=2"
#define RT1 "local://?resources=cpus=1"

/* ---- shared state (each case runs in its own forked process) ---- */

static atomic_int g_gate;         /* opens gated tasks */
static atomic_int g_started;      /* gated tasks entered */
static atomic_int g_runs;         /* runs of t_echo */
static atomic_int g_concat_runs;  /* runs of t_concat */
static atomic_int g_attempts[16]; /* attempt numbers seen, in order */
static atomic_int g_nattempts;
static atomic_int g_saw_cancel;
static atomic_int_fast64_t g_cancel_seen_ms;
static atomic_int_fast64_t g_returned_ms;
static atomic_int g_returned;     /* the timed-out task has returned */
static atomic_int g_probe_saw_returned = -1;
static atomic_int g_close_rc = 1;
static marin_future_t *_Atomic g_close_child;
static atomic_int g_log_has_label;

static void note_attempt(marin_task_ctx_t *ctx)
{
    int k = atomic_fetch_add(&g_nattempts, 1);
    if (k < 16)
        atomic_store(&g_attempts[k], marin_task_attempt(ctx));
}

/* Waits for g_gate (or cancellation), at most 3 s. */
static void gate(marin_task_ctx_t *ctx)
{
    atomic_fetch_add(&g_started, 1);
    for (int i = 0; i < 3000 && !atomic_load(&g_gate); i++) {
        if (marin_task_cancelled(ctx)) {
            atomic_store(&g_saw_cancel, 1);
            return;
        }
        sleep_ms(1);
    }
}

/* ---- tasks ---- */

static int t_echo(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_runs, 1);
    return marin_task_return(ctx, arg, len);
}

/* Returns 0 without a result. */
static int t_nothing(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *ud)
{
    (void)ctx;
    (void)arg;
    (void)len;
    (void)ud;
    return 0;
}

/* Replaces its result: the last marin_task_return wins. */
static int t_twice(marin_task_ctx_t *ctx, const void *arg, size_t len,
                   void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    marin_task_return(ctx, "first", 5);
    return marin_task_return(ctx, "second", 6);
}

/* Gated echo: the result is the argument as seen after the gate. */
static int t_gated_echo(marin_task_ctx_t *ctx, const void *arg, size_t len,
                        void *ud)
{
    (void)ud;
    gate(ctx);
    return marin_task_return(ctx, arg, len);
}

/* Application error, message "bad input 42"; counts attempts. */
static int t_appfail(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    note_attempt(ctx);
    return marin_task_fail(ctx, "bad input 42");
}

/* Application error until the attempt given as argument, then success
 * with the attempt number. */
static int t_appfail_until(marin_task_ctx_t *ctx, const void *arg, size_t len,
                           void *ud)
{
    (void)ud;
    note_attempt(ctx);
    int a = marin_task_attempt(ctx);
    if (a < arg_int(arg, len))
        return marin_task_fail(ctx, "not yet");
    return marin_task_return(ctx, &a, sizeof a);
}

/* System failure with the code given as argument, every time. */
static int t_sysfail(marin_task_ctx_t *ctx, const void *arg, size_t len,
                     void *ud)
{
    (void)ud;
    note_attempt(ctx);
    return arg_int(arg, len);
}

/* System failure (MARIN_EUNAVAILABLE) until the attempt given as argument,
 * then success with the attempt number. */
static int t_sysfail_until(marin_task_ctx_t *ctx, const void *arg, size_t len,
                           void *ud)
{
    (void)ud;
    note_attempt(ctx);
    int a = marin_task_attempt(ctx);
    if (a < arg_int(arg, len))
        return MARIN_EUNAVAILABLE;
    return marin_task_return(ctx, &a, sizeof a);
}

/* The worker dies on every attempt (after setting a result). */
static int t_kill(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    note_attempt(ctx);
    marin_task_return(ctx, "lost", 4);
    int rc = marin_test_kill_worker(ctx);
    return rc == MARIN_EWORKER ? 0 : rc; /* discarded: the worker "died" */
}

/* Runs past its timeout: waits to be told to stop, then takes 400 ms more. */
static int t_slow(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    note_attempt(ctx);
    for (int i = 0; i < 3000 && !marin_task_cancelled(ctx); i++)
        sleep_ms(1);
    if (marin_task_cancelled(ctx)) {
        atomic_store(&g_cancel_seen_ms, now_ms());
        atomic_store(&g_saw_cancel, 1);
    }
    sleep_ms(400);
    atomic_store(&g_returned_ms, now_ms());
    atomic_store(&g_returned, 1);
    return marin_task_return(ctx, "late", 4);
}

/* Records whether the timed-out task had returned when this one started. */
static int t_probe(marin_task_ctx_t *ctx, const void *arg, size_t len,
                   void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_store(&g_probe_saw_returned, atomic_load(&g_returned));
    return marin_task_return(ctx, "probe", 5);
}

/* Concatenates its dependencies' results in order. */
static int t_concat(marin_task_ctx_t *ctx, const void *arg, size_t len,
                    void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_concat_runs, 1);
    char buf[256];
    size_t used = 0;
    size_t n = marin_task_ndeps(ctx);
    for (size_t i = 0; i < n; i++) {
        const void *d = NULL;
        size_t dl = 0;
        int rc = marin_task_dep(ctx, i, &d, &dl);
        if (rc != MARIN_OK)
            return marin_task_fail(ctx, "marin_task_dep failed");
        if (used + dl > sizeof buf)
            return marin_task_fail(ctx, "too long");
        memcpy(buf + used, d, dl);
        used += dl;
    }
    return marin_task_return(ctx, buf, used);
}

/* Result: four ints, the codes of marin_task_dep out of range and with
 * NULL outputs, and of marin_task_ndeps. */
static int t_dep_misuse(marin_task_ctx_t *ctx, const void *arg, size_t len,
                        void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    int r[4];
    const void *d = (const void *)1;
    size_t dl = 9;
    size_t n = marin_task_ndeps(ctx);
    r[0] = marin_task_dep(ctx, n, &d, &dl);
    r[1] = d == NULL && dl == 0;
    r[2] = marin_task_dep(ctx, 0, NULL, &dl);
    r[3] = (int)n;
    return marin_task_return(ctx, r, sizeof r);
}

/* Result: "K1=<v>;K2=<v>" with "<unset>" for NULL. Waits for the gate. */
static int t_env(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    gate(ctx);
    const char *k1 = marin_task_env(ctx, "K1");
    const char *k2 = marin_task_env(ctx, "K2");
    const char *nk = marin_task_env(ctx, NULL);
    char buf[256];
    int n = snprintf(buf, sizeof buf, "K1=%s;K2=%s;N=%s", k1 ? k1 : "<unset>",
                     k2 ? k2 : "<unset>", nk ? nk : "<unset>");
    return marin_task_return(ctx, buf, (size_t)n);
}

/* Result: its task id. */
static int t_id(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    const char *id = marin_task_id(ctx);
    return marin_task_return(ctx, id, strlen(id));
}

/* Result: the length and NULL-ness of its argument. */
static int t_len(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    size_t r[2] = {len, arg == NULL};
    return marin_task_return(ctx, r, sizeof r);
}

/* Result: marin_task_gpu_ids with cap 0, 1 and 8: {rc, n} each, then the
 * ids from the big call. */
static int t_gpus(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    int r[16] = {0};
    int ids[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    size_t n = 99;
    r[0] = marin_task_gpu_ids(ctx, NULL, 0, &n);
    r[1] = (int)n;
    n = 99;
    r[2] = marin_task_gpu_ids(ctx, ids, 1, &n);
    r[3] = (int)n;
    n = 99;
    r[4] = marin_task_gpu_ids(ctx, ids, 8, &n);
    r[5] = (int)n;
    for (int i = 0; i < 8; i++)
        r[6 + i] = ids[i];
    r[14] = marin_task_gpu_ids(ctx, ids, 8, NULL);
    return marin_task_return(ctx, r, sizeof r);
}

/* Waits for the runtime to close, then submits a child. */
static int t_submit_on_close(marin_task_ctx_t *ctx, const void *arg,
                             size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_started, 1);
    for (int i = 0; i < 3000 && !marin_task_cancelled(ctx); i++)
        sleep_ms(1);
    marin_future_t *child = NULL;
    int rc = marin_submit(marin_task_runtime(ctx), "t_echo", "c", 1, NULL,
                          &child);
    atomic_store(&g_close_child, child);
    atomic_store(&g_close_rc, rc);
    return 0;
}

/* Logs a line through marin_task_log. */
static int t_log(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    return marin_task_log(ctx, MARIN_LOG_WARN, "hello from the task");
}

static void capture_log(int level, const char *msg, void *ud)
{
    (void)level;
    if (strstr(msg, (const char *)ud))
        atomic_store(&g_log_has_label, 1);
}

/* ---- helpers ---- */

static marin_future_t *submit(marin_runtime_t *rt, const char *task,
                              const void *arg, size_t len)
{
    return submit_opts(rt, task, arg, len, NULL);
}

static marin_task_options_t *make_opts(void)
{
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_ptr_nonnull(o);
    return o;
}

static void check_attempts(int n)
{
    ck_assert_int_eq(atomic_load(&g_nattempts), n);
    for (int i = 0; i < n && i < 16; i++)
        ck_assert_int_eq(atomic_load(&g_attempts[i]), i + 1);
}

static void assert_has(const char *text, const char *needle)
{
    ck_assert_msg(strstr(text, needle) != NULL, "'%s' lacks '%s'", text,
                  needle);
}

/* ---- results ---- */

START_TEST(test_task_success_result)
{
    marin_runtime_t *rt = open_rt(RT2);
    static const unsigned char bin[] = {0, 1, 2, 0xff, 0, 7};
    marin_future_t *f = submit(rt, "t_echo", bin, sizeof bin);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, sizeof bin);
    ck_assert_mem_eq(data, bin, sizeof bin);
    marin_future_release(f);

    f = submit(rt, "t_nothing", NULL, 0);
    len = 99;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0);
    marin_future_release(f);

    f = submit(rt, "t_twice", NULL, 0);
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 6);
    ck_assert_mem_eq(data, "second", 6);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_fail_message)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "t_appfail", NULL, 0);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_ETASK);
    ck_assert_lasterr_has("bad input 42");
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_FAILED);
    assert_has(marin_future_error(f), "bad input 42");
    assert_has(marin_future_error(f), "t_appfail");
    /* application errors are not retried by default */
    check_attempts(1);
    assert_has(marin_future_error(f), "attempt 1");
    marin_future_release(f);
    marin_runtime_close(rt);
    check_attempts(1);
}
END_TEST

START_TEST(test_task_retry_exceptions)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_retry_exceptions(o, 1), MARIN_OK);
    marin_future_t *f = submit_opts(rt, "t_appfail", NULL, 0, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_ETASK);
    check_attempts(4);
    assert_has(marin_future_error(f), "attempt 4 of 4");
    assert_has(marin_future_error(f), "bad input 42");
    marin_future_release(f);

    /* succeeds on the third attempt */
    atomic_store(&g_nattempts, 0);
    int until = 3;
    f = submit_opts(rt, "t_appfail_until", &until, sizeof until, o);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, sizeof(int));
    ck_assert_int_eq(arg_int(data, len), 3);
    check_attempts(3);
    marin_future_release(f);

    /* retry_exceptions off again: one attempt */
    atomic_store(&g_nattempts, 0);
    ck_assert_marin(marin_task_options_set_retry_exceptions(o, 0), MARIN_OK);
    f = submit_opts(rt, "t_appfail_until", &until, sizeof until, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_ETASK);
    check_attempts(1);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_system_failure_retried)
{
    marin_runtime_t *rt = open_rt(RT2);
    int code = MARIN_EUNAVAILABLE;
    marin_future_t *f = submit(rt, "t_sysfail", &code, sizeof code);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_EUNAVAILABLE);
    check_attempts(4);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_FAILED);
    assert_has(marin_future_error(f), "attempt 4 of 4");
    assert_has(marin_future_error(f), marin_strerror(MARIN_EUNAVAILABLE));
    assert_has(marin_last_error(), "attempt 4 of 4");
    marin_future_release(f);

    /* succeeds on the third attempt, within the default budget */
    atomic_store(&g_nattempts, 0);
    int until = 3;
    f = submit(rt, "t_sysfail_until", &until, sizeof until);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_int_eq(arg_int(data, len), 3);
    check_attempts(3);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_kill_worker_retried)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "t_kill", NULL, 0);
    const void *data = (const void *)1;
    ck_assert_marin(marin_future_get(f, -1, &data, NULL), MARIN_EWORKER);
    ck_assert_ptr_null(data);
    check_attempts(4);
    assert_has(marin_future_error(f), "attempt 4 of 4");
    assert_has(marin_future_error(f), marin_strerror(MARIN_EWORKER));
    marin_future_release(f);
    ck_assert_int_eq(marin_test_kill_worker(NULL), MARIN_EINVAL);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_max_retries_zero)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    int code = MARIN_EUNAVAILABLE;
    marin_future_t *f = submit_opts(rt, "t_sysfail", &code, sizeof code, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_EUNAVAILABLE);
    check_attempts(1);
    assert_has(marin_future_error(f), "attempt 1 of 1");
    marin_future_release(f);

    atomic_store(&g_nattempts, 0);
    f = submit_opts(rt, "t_kill", NULL, 0, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_EWORKER);
    check_attempts(1);
    assert_has(marin_future_error(f), "attempt 1 of 1");
    marin_future_release(f);

    /* a budget of 2 retries */
    atomic_store(&g_nattempts, 0);
    ck_assert_marin(marin_task_options_set_max_retries(o, 2), MARIN_OK);
    f = submit_opts(rt, "t_sysfail", &code, sizeof code, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_EUNAVAILABLE);
    check_attempts(3);
    assert_has(marin_future_error(f), "attempt 3 of 3");
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_unlimited_retries)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    int until = 6;
    marin_future_t *f = submit_opts(rt, "t_sysfail_until", &until,
                                    sizeof until, o);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 5000, &data, &len), MARIN_OK);
    ck_assert_int_eq(arg_int(data, len), 6);
    check_attempts(6);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_attempt_values)
{
    ck_assert_int_eq(marin_task_attempt(NULL), 0);
    ck_assert_str_eq(marin_task_id(NULL), "");
    ck_assert_ptr_null(marin_task_env(NULL, "K1"));
    ck_assert_ptr_null(marin_task_runtime(NULL));
    ck_assert_uint_eq(marin_task_ndeps(NULL), 0);
    ck_assert_int_eq(marin_task_cancelled(NULL), 0);
    marin_runtime_t *rt = open_rt(RT2);
    int until = 4;
    marin_future_t *f = submit(rt, "t_sysfail_until", &until, sizeof until);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    check_attempts(4); /* 1, 2, 3, 4 */
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- timeouts ---- */

START_TEST(test_task_timeout)
{
    SKIP_UNLESS_LOCAL("on redis each task name and shape has its own queue: tasks of different names start in no guaranteed order");
    marin_runtime_t *rt = open_rt(RT1);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 30), MARIN_OK);
    int64_t t0 = now_ms();
    marin_future_t *slow = submit_opts(rt, "t_slow", NULL, 0, o);
    marin_future_t *probe = submit(rt, "t_probe", NULL, 0); /* needs the cpu */
    ck_assert_marin(marin_future_get(slow, 2000, NULL, NULL),
                    MARIN_ETASKTIMEOUT);
    int64_t took = now_ms() - t0;
    /* at the deadline, well before the function returns (>= 400 ms later) */
    ck_assert_int_ge(took, 29);
    ck_assert_int_lt(took, 300);
    ck_assert_int_eq(atomic_load(&g_returned), 0);
    ck_assert_int_eq(marin_future_state(slow), MARIN_FUTURE_FAILED);
    assert_has(marin_future_error(slow), "timeout");
    /* the slot stays held: the probe has not started */
    ck_assert_int_eq(marin_future_state(probe), MARIN_FUTURE_PENDING);
    ck_assert_marin(marin_future_get(probe, 3000, NULL, NULL), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_probe_saw_returned), 1);
    ck_assert_int_eq(atomic_load(&g_saw_cancel), 1);
    ck_assert_int_ge(atomic_load(&g_cancel_seen_ms) - t0, 29);
    /* the late result is discarded, and a timeout is not retried */
    ck_assert_marin(marin_future_get(slow, 0, NULL, NULL), MARIN_ETASKTIMEOUT);
    check_attempts(1);
    marin_future_release(slow);
    marin_future_release(probe);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
    check_attempts(1);
}
END_TEST

START_TEST(test_task_timeout_not_hit)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 2000), MARIN_OK);
    marin_future_t *f = submit_opts(rt, "t_echo", "fast", 4, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    /* 0: no timeout */
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 0), MARIN_OK);
    f = submit_opts(rt, "t_echo", "x", 1, o);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- dependencies ---- */

START_TEST(test_task_after_runs_after_deps)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *deps[3];
    deps[0] = submit(rt, "t_gated_echo", "a", 1);
    deps[1] = submit(rt, "t_echo", "bb", 2);
    ck_assert_marin(marin_future_get(deps[1], -1, NULL, NULL), MARIN_OK);
    deps[2] = submit(rt, "t_echo", "ccc", 3);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, deps, 3,
                                       &f),
                    MARIN_OK);
    ck_assert_ptr_nonnull(f);
    ck_assert(wait_for(&g_started, 1, 2000));
    sleep_ms(20);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_PENDING);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ETIMEDOUT);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);
    atomic_store(&g_gate, 1);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 6);
    ck_assert_mem_eq(data, "abbccc", 6);
    /* the caller keeps its own references */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(marin_future_state(deps[i]), MARIN_FUTURE_SUCCEEDED);
        marin_future_release(deps[i]);
    }
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_after_deps_released_early)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *deps[2];
    deps[0] = submit(rt, "t_gated_echo", "x", 1);
    deps[1] = submit(rt, "t_gated_echo", "y", 1);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, deps, 2,
                                       &f),
                    MARIN_OK);
    marin_future_release(deps[0]);
    marin_future_release(deps[1]);
    atomic_store(&g_gate, 1);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(data, "xy", 2);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_after_failed_dep)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *deps[2];
    deps[0] = submit(rt, "t_echo", "ok", 2);
    deps[1] = submit(rt, "t_appfail", NULL, 0);
    char did[128];
    ck_assert_int_gt(marin_future_id(deps[1], did, sizeof did), 0);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, deps, 2,
                                       &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_ETASK);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_FAILED);
    const char *err = marin_future_error(f);
    assert_has(err, did);
    assert_has(err, "t_appfail");
    assert_has(marin_last_error(), did);
    sleep_ms(10);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);

    /* a system failure code passes through too */
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    int code = MARIN_EUNAVAILABLE;
    marin_future_t *sys = submit_opts(rt, "t_sysfail", &code, sizeof code, o);
    marin_future_t *g = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, &sys, 1,
                                       &g),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(g, 2000, NULL, NULL), MARIN_EUNAVAILABLE);
    ck_assert_int_gt(marin_future_id(sys, did, sizeof did), 0);
    assert_has(marin_future_error(g), did);
    assert_has(marin_future_error(g), "t_sysfail");
    sleep_ms(10);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);
    marin_future_release(g);
    marin_future_release(sys);
    marin_task_options_destroy(o);
    marin_future_release(f);
    marin_future_release(deps[0]);
    marin_future_release(deps[1]);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);
}
END_TEST

START_TEST(test_task_after_cancelled_dep)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *dep = submit(rt, "t_gated_echo", "d", 1);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, &dep, 1,
                                       &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_cancel(dep), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_ECANCELED);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_CANCELLED);
    char did[128];
    ck_assert_int_gt(marin_future_id(dep, did, sizeof did), 0);
    assert_has(marin_future_error(f), did);
    sleep_ms(10);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);
    marin_future_release(f);
    marin_future_release(dep);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);
}
END_TEST

START_TEST(test_task_after_cancel_dependent)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *dep = submit(rt, "t_gated_echo", "d", 1);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, &dep, 1,
                                       &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_cancel(f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(dep, 2000, NULL, NULL), MARIN_OK);
    sleep_ms(20);
    ck_assert_int_eq(atomic_load(&g_concat_runs), 0);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_CANCELLED);
    marin_future_release(f);
    marin_future_release(dep);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_after_finished_deps)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *deps[2];
    deps[0] = submit(rt, "t_echo", "12", 2);
    deps[1] = submit(rt, "t_echo", "345", 3);
    size_t idx[2], nready = 0;
    ck_assert_marin(marin_wait(deps, 2, 2, -1, idx, &nready), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, deps, 2,
                                       &f),
                    MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(data, "12345", 5);
    marin_future_release(f);
    /* the same dependency twice */
    marin_future_t *twice[2] = {deps[1], deps[1]};
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, twice, 2,
                                       &f),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 6);
    ck_assert_mem_eq(data, "345345", 6);
    marin_future_release(f);
    marin_future_release(deps[0]);
    marin_future_release(deps[1]);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_after_invalid)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *dep = submit(rt, "t_echo", "d", 1);
    marin_future_t *f = (marin_future_t *)1;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, NULL, 1,
                                       &f),
                    MARIN_EINVAL);
    ck_assert_ptr_null(f);
    marin_future_t *withnull[2] = {dep, NULL};
    f = (marin_future_t *)1;
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, withnull,
                                       2, &f),
                    MARIN_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_submit_after(NULL, "t_concat", NULL, 0, NULL, &dep, 1,
                                       &f),
                    MARIN_EINVAL);
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, &dep, 1,
                                       NULL),
                    MARIN_EINVAL);
    ck_assert_marin(marin_submit_after(rt, "no_such_task", NULL, 0, NULL, &dep,
                                       1, &f),
                    MARIN_ENOTFOUND);
    ck_assert_lasterr_has("no_such_task");
    /* no deps: like marin_submit */
    ck_assert_marin(marin_submit_after(rt, "t_concat", NULL, 0, NULL, NULL, 0,
                                       &f),
                    MARIN_OK);
    size_t len = 99;
    ck_assert_marin(marin_future_get(f, 2000, NULL, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0);
    marin_future_release(f);
    marin_future_release(dep);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_dep_out_of_range)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *dep = submit(rt, "t_echo", "d", 1);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit_after(rt, "t_dep_misuse", NULL, 0, NULL, &dep,
                                       1, &f),
                    MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 4 * sizeof(int));
    int r[4];
    memcpy(r, data, sizeof r);
    ck_assert_int_eq(r[0], MARIN_EINVAL);
    ck_assert_int_eq(r[1], 1);
    ck_assert_int_eq(r[2], MARIN_EINVAL);
    ck_assert_int_eq(r[3], 1);
    marin_future_release(f);
    /* no dependencies at all: index 0 is out of range */
    f = submit(rt, "t_dep_misuse", NULL, 0);
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    memcpy(r, data, sizeof r);
    ck_assert_int_eq(r[0], MARIN_EINVAL);
    ck_assert_int_eq(r[3], 0);
    marin_future_release(f);
    marin_future_release(dep);
    const void *d = NULL;
    size_t dl = 0;
    ck_assert_marin(marin_task_dep(NULL, 0, &d, &dl), MARIN_EINVAL);
    marin_runtime_close(rt);
}
END_TEST

/* ---- options ---- */

START_TEST(test_task_env_options)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_env(o, "K1", "v1"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "K2", "v2"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "K2", NULL), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "GONE", NULL), MARIN_OK);
    marin_future_t *f = submit_opts(rt, "t_env", NULL, 0, o);
    /* changing or destroying the options does not affect the submission */
    ck_assert_marin(marin_task_options_set_env(o, "K1", "changed"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "K2", "new"), MARIN_OK);
    marin_future_t *g = submit_opts(rt, "t_env", NULL, 0, o);
    marin_task_options_destroy(o);
    atomic_store(&g_gate, 1);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    const char *want = "K1=v1;K2=<unset>;N=<unset>";
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(data, want, len);
    ck_assert_marin(marin_future_get(g, 2000, &data, &len), MARIN_OK);
    want = "K1=changed;K2=new;N=<unset>";
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(data, want, len);
    marin_future_release(g);
    /* defaults: nothing set */
    marin_future_release(f);
    f = submit(rt, "t_env", NULL, 0);
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    want = "K1=<unset>;K2=<unset>;N=<unset>";
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(data, want, len);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_options_invalid)
{
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_create(NULL), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_max_retries(o, -2), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_max_retries(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, -1), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_timeout_ms(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_retry_exceptions(NULL, 1),
                    MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, NULL, "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, "", "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(NULL, "K", "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_resources(o, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_label(NULL, "x"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_label(o, ""), MARIN_EINVAL);
    char longname[MARIN_NAME_MAX + 2];
    memset(longname, 'l', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_marin(marin_task_options_set_label(o, longname), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 0), MARIN_OK);
    marin_task_options_destroy(o);
    marin_task_options_destroy(NULL);
}
END_TEST

START_TEST(test_task_label)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_label(o, "shard-7-of-9"), MARIN_OK);
    ck_assert_marin(marin_runtime_set_logger(rt, capture_log, MARIN_LOG_DEBUG,
                                             (void *)"shard-7-of-9"),
                    MARIN_OK);
    marin_future_t *f = submit_opts(rt, "t_log", NULL, 0, o);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    /* the label is what logs show for the task */
    ck_assert_int_eq(atomic_load(&g_log_has_label), 1);
    ck_assert_marin(marin_task_options_set_label(o, NULL), MARIN_OK);
    f = submit_opts(rt, "t_echo", "x", 1, o);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- names and arguments ---- */

START_TEST(test_task_unknown_name)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = (marin_future_t *)1;
    ck_assert_marin(marin_submit(rt, "never_registered_xyz", NULL, 0, NULL, &f),
                    MARIN_ENOTFOUND);
    ck_assert_lasterr_has("never_registered_xyz");
    ck_assert_ptr_null(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_name_invalid)
{
    SKIP_UNLESS_LOCAL("on redis a task's name and capacity live in the workers: an unknown name or a request no worker fits fails on its future after grace_ms (MARIN_ENOTFOUND / MARIN_EINFEASIBLE), not at submit (tests/test_redis_fault.c)");
    marin_runtime_t *rt = open_rt(RT2);
    char name[MARIN_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* 256 bytes */
    marin_future_t *f = (marin_future_t *)1;
    ck_assert_marin(marin_submit(rt, name, NULL, 0, NULL, &f), MARIN_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_register_task(name, t_echo, NULL), MARIN_EINVAL);
    /* 255 bytes is a valid name: unknown, then registered and run */
    name[MARIN_NAME_MAX] = '\0';
    ck_assert_marin(marin_submit(rt, name, NULL, 0, NULL, &f), MARIN_ENOTFOUND);
    ck_assert_marin(marin_register_task(name, t_echo, NULL), MARIN_OK);
    f = submit(rt, name, "long", 4);
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    ck_assert_marin(marin_submit(rt, "", NULL, 0, NULL, &f), MARIN_EINVAL);
    ck_assert_marin(marin_submit(rt, NULL, NULL, 0, NULL, &f), MARIN_EINVAL);
    ck_assert_marin(marin_submit(NULL, "t_echo", NULL, 0, NULL, &f),
                    MARIN_EINVAL);
    ck_assert_marin(marin_submit(rt, "t_echo", NULL, 0, NULL, NULL),
                    MARIN_EINVAL);
    ck_assert_marin(marin_register_task("", t_echo, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_register_task(NULL, t_echo, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_register_task("t_null_fn", NULL, NULL), MARIN_EINVAL);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_register_twice)
{
    ck_assert_marin(marin_register_task("t_echo", t_echo, NULL), MARIN_EEXIST);
    ck_assert_lasterr_has("t_echo");
    ck_assert_marin(marin_register_task("t_echo", t_nothing, NULL),
                    MARIN_EEXIST);
    /* the first registration still holds */
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "t_echo", "same", 4);
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, NULL, &len), MARIN_OK);
    ck_assert_uint_eq(len, 4);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_arg_null_len)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = (marin_future_t *)1;
    ck_assert_marin(marin_submit(rt, "t_len", NULL, 3, NULL, &f), MARIN_EINVAL);
    ck_assert_ptr_null(f);
    f = submit(rt, "t_len", NULL, 0);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    size_t r[2];
    ck_assert_uint_eq(len, sizeof r);
    memcpy(r, data, sizeof r);
    ck_assert_uint_eq(r[0], 0);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_arg_copied)
{
    marin_runtime_t *rt = open_rt(RT2);
    char *buf = malloc(8);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, "original", 8);
    marin_future_t *f = submit(rt, "t_gated_echo", buf, 8);
    memcpy(buf, "XXXXXXXX", 8);
    free(buf);
    atomic_store(&g_gate, 1);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 8);
    ck_assert_mem_eq(data, "original", 8);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_id_matches_future)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "t_id", NULL, 0);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_gt(len, 0);
    char id[128];
    int n = marin_future_id(f, id, sizeof id);
    ck_assert_int_eq(n, (int)len);
    ck_assert_mem_eq(data, id, len);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_task_gpu_ids_toobig)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=2,gpus=2");
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=1,gpus=2", &r), MARIN_OK);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    marin_resources_destroy(r);
    marin_future_t *f = submit_opts(rt, "t_gpus", NULL, 0, o);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    int v[16];
    ck_assert_uint_eq(len, sizeof v);
    memcpy(v, data, sizeof v);
    ck_assert_int_eq(v[0], MARIN_ETOOBIG);
    ck_assert_int_eq(v[1], 2);
    ck_assert_int_eq(v[2], MARIN_ETOOBIG);
    ck_assert_int_eq(v[3], 2);
    ck_assert_int_eq(v[4], MARIN_OK);
    ck_assert_int_eq(v[5], 2);
    ck_assert((v[6] == 0 && v[7] == 1) || (v[6] == 1 && v[7] == 0));
    ck_assert_int_eq(v[8], -1);
    ck_assert_int_eq(v[14], MARIN_EINVAL);
    marin_future_release(f);
    /* without GPUs: none, and cap 0 is enough */
    f = submit(rt, "t_gpus", NULL, 0);
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    memcpy(v, data, sizeof v);
    ck_assert_int_eq(v[0], MARIN_OK);
    ck_assert_int_eq(v[1], 0);
    ck_assert_int_eq(v[4], MARIN_OK);
    ck_assert_int_eq(v[5], 0);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- close ---- */

/* A runtime cannot be used after marin_runtime_close (it is freed), so
 * "submit after close" is not testable as such; what is testable is a task
 * that submits while its runtime is closing. */
START_TEST(test_task_submit_during_close)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "t_submit_on_close", NULL, 0);
    ck_assert(wait_for(&g_started, 1, 2000));
    marin_runtime_close(rt);
    int rc = atomic_load(&g_close_rc);
    marin_future_t *child = atomic_load(&g_close_child);
    ck_assert_msg(rc == MARIN_ESTATE || rc == MARIN_OK,
                  "submit during close returned %d", rc);
    if (rc == MARIN_ESTATE) {
        ck_assert_ptr_null(child);
    } else {
        ck_assert_ptr_nonnull(child);
        ck_assert_marin(marin_future_get(child, 1000, NULL, NULL),
                        MARIN_ECANCELED);
        marin_future_release(child);
    }
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    marin_future_release(f);
}
END_TEST

START_TEST(test_task_close_during_retry)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_task_options_t *o = make_opts();
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    int code = MARIN_EUNAVAILABLE;
    marin_future_t *f = submit_opts(rt, "t_sysfail", &code, sizeof code, o);
    ck_assert(wait_for(&g_nattempts, 3, 2000));
    marin_runtime_close(rt);
    int rc = marin_future_get(f, 0, NULL, NULL);
    ck_assert_msg(rc == MARIN_ECANCELED || rc == MARIN_EUNAVAILABLE,
                  "got %d", rc);
    ck_assert_int_ne(marin_future_state(f), MARIN_FUTURE_RUNNING);
    ck_assert_int_ne(marin_future_state(f), MARIN_FUTURE_PENDING);
    int n = atomic_load(&g_nattempts);
    sleep_ms(10);
    ck_assert_int_eq(atomic_load(&g_nattempts), n);
    marin_future_release(f);
    marin_task_options_destroy(o);
}
END_TEST

/* A retried task completes on another worker while the worker of the
 * failed attempt may still list it as running; closing right after must
 * not touch the freed future (run under ASan to see it). */
START_TEST(test_task_retry_then_close)
{
    SKIP_UNLESS_LOCAL("500 runtime open/close cycles: on redis each opens four Redis "
                      "connections and starts and drains an in-process worker, about "
                      "100 ms here, past the case's timeout");
    for (int i = 0; i < 500; i++) {
        marin_runtime_t *rt = open_rt(RT2);
        int until = 2;
        marin_future_t *f = submit(rt, "t_sysfail_until", &until,
                                   sizeof until);
        ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
        marin_future_release(f);
        marin_runtime_close(rt);
    }
}
END_TEST

static Suite *task_suite(void)
{
    Suite *s = suite_create("task");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_task_success_result);
    tcase_add_test(tc, test_task_fail_message);
    tcase_add_test(tc, test_task_retry_exceptions);
    tcase_add_test(tc, test_task_system_failure_retried);
    tcase_add_test(tc, test_task_kill_worker_retried);
    tcase_add_test(tc, test_task_max_retries_zero);
    tcase_add_test(tc, test_task_unlimited_retries);
    tcase_add_test(tc, test_task_attempt_values);
    tcase_add_test(tc, test_task_timeout);
    tcase_add_test(tc, test_task_timeout_not_hit);
    tcase_add_test(tc, test_task_after_runs_after_deps);
    tcase_add_test(tc, test_task_after_deps_released_early);
    tcase_add_test(tc, test_task_after_failed_dep);
    tcase_add_test(tc, test_task_after_cancelled_dep);
    tcase_add_test(tc, test_task_after_cancel_dependent);
    tcase_add_test(tc, test_task_after_finished_deps);
    tcase_add_test(tc, test_task_after_invalid);
    tcase_add_test(tc, test_task_dep_out_of_range);
    tcase_add_test(tc, test_task_env_options);
    tcase_add_test(tc, test_task_options_invalid);
    tcase_add_test(tc, test_task_label);
    tcase_add_test(tc, test_task_unknown_name);
    tcase_add_test(tc, test_task_name_invalid);
    tcase_add_test(tc, test_task_register_twice);
    tcase_add_test(tc, test_task_arg_null_len);
    tcase_add_test(tc, test_task_arg_copied);
    tcase_add_test(tc, test_task_id_matches_future);
    tcase_add_test(tc, test_task_gpu_ids_toobig);
    tcase_add_test(tc, test_task_submit_during_close);
    tcase_add_test(tc, test_task_close_during_retry);
    suite_add_tcase(s, tc);
    /* a short limit: the bug it looks for shows as a hang without ASan */
    TCase *stress = tcase_create("stress");
    tcase_set_timeout(stress, 10);
    tcase_add_test(stress, test_task_retry_then_close);
    suite_add_tcase(s, stress);
    return s;
}

int main(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } tasks[] = {
        {"t_echo", t_echo},
        {"t_nothing", t_nothing},
        {"t_twice", t_twice},
        {"t_gated_echo", t_gated_echo},
        {"t_appfail", t_appfail},
        {"t_appfail_until", t_appfail_until},
        {"t_sysfail", t_sysfail},
        {"t_sysfail_until", t_sysfail_until},
        {"t_kill", t_kill},
        {"t_slow", t_slow},
        {"t_probe", t_probe},
        {"t_concat", t_concat},
        {"t_dep_misuse", t_dep_misuse},
        {"t_env", t_env},
        {"t_id", t_id},
        {"t_len", t_len},
        {"t_gpus", t_gpus},
        {"t_submit_on_close", t_submit_on_close},
        {"t_log", t_log},
    };
    /* GPU ids must come from the URI, not from this machine */
    unsetenv("CUDA_VISIBLE_DEVICES");
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (marin_register_task(tasks[i].name, tasks[i].fn, NULL) != MARIN_OK) {
            fprintf(stderr, "register %s: %s\n", tasks[i].name,
                    marin_last_error());
            return EXIT_FAILURE;
        }
    return marin_test_run(task_suite());
}
