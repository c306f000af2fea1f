/* Tests for futures (include/marin/future.h): get, state, error, id,
 * marin_wait, on_done, cancel, retain/release and lifetime after close. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#define RT2 "local://?resources=cpus=2"
#define RT1 "local://?resources=cpus=1"

/* ---- shared state (each case runs in its own forked process) ---- */

static atomic_int g_gate;        /* opens every gated task */
static atomic_int g_started;     /* gated tasks entered */
static atomic_int g_finished;    /* gated tasks returned */
static atomic_int g_saw_cancel;  /* a gated task saw marin_task_cancelled */
static atomic_int g_counted;     /* f_count runs */

/* ---- tasks ---- */

/* Result: the argument bytes. */
static int f_echo(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    return marin_task_return(ctx, arg, len);
}

/* Application error with the argument (a string) as its message. */
static int f_fail(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    char msg[128];
    snprintf(msg, sizeof msg, "%.*s", (int)len, (const char *)arg);
    return marin_task_fail(ctx, msg);
}

/* Runs until g_gate opens or it is cancelled (at most 5 s). */
static int f_gate(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    (void)arg;
    (void)len;
    atomic_fetch_add(&g_started, 1);
    for (int i = 0; i < 5000 && !atomic_load(&g_gate); i++) {
        if (marin_task_cancelled(ctx)) {
            atomic_store(&g_saw_cancel, 1);
            break;
        }
        sleep_ms(1);
    }
    atomic_fetch_add(&g_finished, 1);
    return marin_task_return(ctx, "gate", 4);
}

/* Counts its runs. */
static int f_count(marin_task_ctx_t *ctx, const void *arg, size_t len,
                   void *ud)
{
    (void)ud;
    (void)arg;
    (void)len;
    atomic_fetch_add(&g_counted, 1);
    return marin_task_return(ctx, "n", 1);
}

/* Spins until told to stop, then returns at once with a result. */
static int f_spin(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    (void)arg;
    (void)len;
    atomic_fetch_add(&g_started, 1);
    for (int64_t end = now_ms() + 3000; now_ms() < end;)
        if (marin_task_cancelled(ctx))
            break;
    return marin_task_return(ctx, "spun", 4);
}

/* Sleeps the number of ms given as an int argument. */
static int f_sleep(marin_task_ctx_t *ctx, const void *arg, size_t len,
                   void *ud)
{
    (void)ud;
    int ms = 0;
    if (arg && len == sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    sleep_ms(ms);
    return marin_task_return(ctx, "slept", 5);
}

static marin_future_t *submit(marin_runtime_t *rt, const char *task,
                              const void *arg, size_t len)
{
    return submit_opts(rt, task, arg, len, NULL);
}

static marin_future_t *submit_sleep(marin_runtime_t *rt, int ms)
{
    return submit(rt, "f_sleep", &ms, sizeof ms);
}

/* A running gated task (waits until it has started). */
static marin_future_t *running_gate(marin_runtime_t *rt)
{
    int before = atomic_load(&g_started);
    marin_future_t *f = submit(rt, "f_gate", NULL, 0);
    ck_assert_msg(wait_for(&g_started, before + 1, 2000),
                  "gated task did not start");
    return f;
}

/* ---- get ---- */

START_TEST(test_future_get_success)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", "hello", 5);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(data, "hello", 5);
    ck_assert_str_eq(marin_last_error(), "");
    /* again, and with NULL data/len */
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 10, &data, NULL), MARIN_OK);
    ck_assert_mem_eq(data, "hello", 5);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_get_empty_result)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", NULL, 0);
    const void *data = (const void *)1;
    size_t len = 99;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_get_poll_running)
{
    SKIP_UNLESS_LOCAL("on redis the driver is not told when a worker starts a task: a future is PENDING until its outcome arrives, never RUNNING");
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    const void *data = (const void *)1;
    size_t len = 7;
    int64_t t0 = now_ms();
    ck_assert_marin(marin_future_get(f, 0, &data, &len), MARIN_ETIMEDOUT);
    ck_assert_int_lt(now_ms() - t0, 100); /* a poll does not sleep */
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    ck_assert_lasterr_has("running");
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_RUNNING);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_mem_eq(data, "gate", 4);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_get_positive_timeout)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    int64_t t0 = now_ms();
    ck_assert_marin(marin_future_get(f, 30, NULL, NULL), MARIN_ETIMEDOUT);
    int64_t took = now_ms() - t0;
    ck_assert_int_ge(took, 29);
    ck_assert_int_lt(took, 1000);
    atomic_store(&g_gate, 1);
    /* a positive timeout long enough succeeds */
    ck_assert_marin(marin_future_get(f, 2000, NULL, NULL), MARIN_OK);
    marin_future_release(f);

    /* a positive timeout that the task finishes within */
    f = submit_sleep(rt, 20);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 2000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(data, "slept", 5);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_get_invalid)
{
    const void *data = (const void *)1;
    size_t len = 3;
    ck_assert_marin(marin_future_get(NULL, -1, &data, &len), MARIN_EINVAL);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", "x", 1);
    ck_assert_marin(marin_future_get(f, -2, NULL, NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("-2");
    ck_assert_marin(marin_future_get(f, INT64_MIN, NULL, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(f, -5, NULL, NULL), MARIN_EINVAL);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_get_failed_sets_last_error)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_fail", "disk full", 9);
    const void *data = (const void *)1;
    ck_assert_marin(marin_future_get(f, -1, &data, NULL), MARIN_ETASK);
    ck_assert_ptr_null(data);
    ck_assert_lasterr_has("disk full");
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- state and error ---- */

START_TEST(test_future_state_transitions)
{
    SKIP_UNLESS_LOCAL("on redis the driver is not told when a worker starts a task: a future is PENDING until its outcome arrives, never RUNNING");
    marin_runtime_t *rt = open_rt(RT1);
    marin_future_t *run = running_gate(rt);
    marin_future_t *pend = submit(rt, "f_count", NULL, 0);
    marin_future_t *canc = submit(rt, "f_count", NULL, 0);
    ck_assert_int_eq(marin_future_state(run), MARIN_FUTURE_RUNNING);
    ck_assert_int_eq(marin_future_state(pend), MARIN_FUTURE_PENDING);
    ck_assert_int_eq(marin_future_state(canc), MARIN_FUTURE_PENDING);
    ck_assert_marin(marin_future_cancel(canc), MARIN_OK);
    ck_assert_int_eq(marin_future_state(canc), MARIN_FUTURE_CANCELLED);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(run, -1, NULL, NULL), MARIN_OK);
    ck_assert_int_eq(marin_future_state(run), MARIN_FUTURE_SUCCEEDED);
    ck_assert_marin(marin_future_get(pend, -1, NULL, NULL), MARIN_OK);
    ck_assert_int_eq(marin_future_state(pend), MARIN_FUTURE_SUCCEEDED);
    marin_future_t *fail = submit(rt, "f_fail", "nope", 4);
    ck_assert_marin(marin_future_get(fail, -1, NULL, NULL), MARIN_ETASK);
    ck_assert_int_eq(marin_future_state(fail), MARIN_FUTURE_FAILED);
    ck_assert_int_eq(marin_future_state(NULL), MARIN_FUTURE_FAILED);
    ck_assert_int_eq(atomic_load(&g_counted), 1);
    marin_future_release(run);
    marin_future_release(pend);
    marin_future_release(canc);
    marin_future_release(fail);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_error_text)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *run = running_gate(rt);
    ck_assert_str_eq(marin_future_error(run), "");
    marin_future_t *ok = submit(rt, "f_echo", "a", 1);
    ck_assert_marin(marin_future_get(ok, -1, NULL, NULL), MARIN_OK);
    ck_assert_str_eq(marin_future_error(ok), "");
    marin_future_t *bad = submit(rt, "f_fail", "the sky fell", 12);
    ck_assert_marin(marin_future_get(bad, -1, NULL, NULL), MARIN_ETASK);
    ck_assert_ptr_nonnull(strstr(marin_future_error(bad), "the sky fell"));
    ck_assert_ptr_nonnull(strstr(marin_future_error(bad), "f_fail"));
    ck_assert_ptr_nonnull(marin_future_error(NULL));
    ck_assert_marin(marin_future_cancel(run), MARIN_OK);
    ck_assert_str_ne(marin_future_error(run), "");
    marin_future_release(run);
    marin_future_release(ok);
    marin_future_release(bad);
    marin_runtime_close(rt);
}
END_TEST

/* ---- id ---- */

START_TEST(test_future_id)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *a = submit(rt, "f_echo", "a", 1);
    marin_future_t *b = submit(rt, "f_echo", "b", 1);
    int n = marin_future_id(a, NULL, 0);
    ck_assert_int_gt(n, 0);
    char full[128];
    ck_assert_int_lt(n, (int)sizeof full);
    ck_assert_int_eq(marin_future_id(a, full, sizeof full), n);
    ck_assert_uint_eq(strlen(full), (size_t)n);
    /* truncation: snprintf semantics */
    char small[4];
    memset(small, 'X', sizeof small);
    ck_assert_int_eq(marin_future_id(a, small, sizeof small), n);
    ck_assert_uint_eq(strlen(small), 3);
    ck_assert_int_eq(strncmp(small, full, 3), 0);
    char one[1] = {'X'};
    ck_assert_int_eq(marin_future_id(a, one, 1), n);
    ck_assert_int_eq(one[0], '\0');
    /* exact fit */
    char *exact = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(exact);
    ck_assert_int_eq(marin_future_id(a, exact, (size_t)n + 1), n);
    ck_assert_str_eq(exact, full);
    free(exact);
    /* distinct */
    char other[128];
    ck_assert_int_gt(marin_future_id(b, other, sizeof other), 0);
    ck_assert_str_ne(full, other);
    /* errors */
    ck_assert_marin(marin_future_id(NULL, full, sizeof full), MARIN_EINVAL);
    ck_assert_marin(marin_future_id(a, NULL, 8), MARIN_EINVAL);
    /* stable after completion */
    ck_assert_marin(marin_future_get(a, -1, NULL, NULL), MARIN_OK);
    char again[128];
    ck_assert_int_eq(marin_future_id(a, again, sizeof again), n);
    ck_assert_str_eq(again, full);
    marin_future_release(a);
    marin_future_release(b);
    marin_runtime_close(rt);
}
END_TEST

/* ---- marin_wait ---- */

START_TEST(test_future_wait_invalid)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *fs[2];
    fs[0] = submit(rt, "f_echo", "a", 1);
    fs[1] = submit(rt, "f_echo", "b", 1);
    size_t idx[3] = {0}, nready = 77;
    ck_assert_marin(marin_wait(fs, 2, 0, -1, idx, &nready), MARIN_EINVAL);
    ck_assert_uint_eq(nready, 0);
    ck_assert_marin(marin_wait(fs, 2, 3, -1, idx, &nready), MARIN_EINVAL);
    ck_assert_marin(marin_wait(NULL, 2, 1, -1, idx, &nready), MARIN_EINVAL);
    ck_assert_marin(marin_wait(fs, 2, 1, -1, NULL, &nready), MARIN_EINVAL);
    ck_assert_marin(marin_wait(fs, 2, 1, -1, idx, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_wait(fs, 2, 1, -2, idx, &nready), MARIN_EINVAL);
    ck_assert_marin(marin_wait(fs, 0, 1, -1, idx, &nready), MARIN_EINVAL);
    marin_future_t *withnull[3] = {fs[0], NULL, fs[1]};
    ck_assert_marin(marin_wait(withnull, 3, 1, -1, idx, &nready),
                    MARIN_EINVAL);
    ck_assert_lasterr_has("1");
    ck_assert_marin(marin_wait(fs, 2, 2, -1, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 2);
    marin_future_release(fs[0]);
    marin_future_release(fs[1]);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_wait_input_order)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *fs[5];
    fs[0] = running_gate(rt);
    fs[1] = submit(rt, "f_echo", "1", 1);
    fs[2] = submit(rt, "f_echo", "2", 1);
    fs[3] = submit(rt, "f_echo", "3", 1);
    fs[4] = submit(rt, "f_echo", "4", 1);
    /* finish them in reverse order */
    for (int i = 4; i >= 1; i--)
        ck_assert_marin(marin_future_get(fs[i], -1, NULL, NULL), MARIN_OK);
    size_t idx[5] = {99, 99, 99, 99, 99}, nready = 0;
    ck_assert_marin(marin_wait(fs, 5, 2, -1, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 2);
    ck_assert_uint_eq(idx[0], 1);
    ck_assert_uint_eq(idx[1], 2);
    ck_assert_uint_eq(idx[2], 99); /* at most num_returns written */
    ck_assert_marin(marin_wait(fs, 5, 4, 0, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(idx[i], i + 1);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_wait(fs, 5, 5, -1, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_uint_eq(idx[i], i);
    for (int i = 0; i < 5; i++)
        marin_future_release(fs[i]);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_wait_any_finished_state)
{
    SKIP_UNLESS_LOCAL("on redis the driver is not told when a worker starts a task: a future is PENDING until its outcome arrives, never RUNNING");
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *fs[4];
    fs[0] = running_gate(rt);
    fs[1] = submit(rt, "f_fail", "x", 1);
    fs[2] = running_gate(rt);
    fs[3] = submit(rt, "f_gate", NULL, 0); /* two cpus: this one waits */
    ck_assert_marin(marin_future_get(fs[1], -1, NULL, NULL), MARIN_ETASK);
    ck_assert_marin(marin_future_cancel(fs[2]), MARIN_OK);
    size_t idx[3] = {0}, nready = 0;
    ck_assert_marin(marin_wait(fs, 4, 2, 1000, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 2);
    ck_assert_uint_eq(idx[0], 1);
    ck_assert_uint_eq(idx[1], 2);
    /* a cancel while waiting wakes the waiter */
    ck_assert_marin(marin_future_cancel(fs[0]), MARIN_OK);
    ck_assert_marin(marin_wait(fs, 4, 3, 1000, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 3);
    ck_assert_uint_eq(idx[0], 0);
    ck_assert_uint_eq(idx[1], 1);
    ck_assert_uint_eq(idx[2], 2);
    atomic_store(&g_gate, 1);
    for (int i = 0; i < 4; i++)
        marin_future_release(fs[i]);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_wait_timeout)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *fs[3];
    fs[0] = running_gate(rt);
    fs[1] = submit(rt, "f_echo", "1", 1);
    ck_assert_marin(marin_future_get(fs[1], -1, NULL, NULL), MARIN_OK);
    fs[2] = running_gate(rt);
    size_t idx[2] = {99, 99}, nready = 99;
    int64_t t0 = now_ms();
    ck_assert_marin(marin_wait(fs, 3, 2, 30, idx, &nready), MARIN_OK);
    int64_t took = now_ms() - t0;
    ck_assert_int_ge(took, 29);
    ck_assert_int_lt(took, 1000);
    ck_assert_uint_eq(nready, 1);
    ck_assert_uint_eq(idx[0], 1);
    /* poll */
    nready = 99;
    t0 = now_ms();
    ck_assert_marin(marin_wait(fs, 3, 2, 0, idx, &nready), MARIN_OK);
    ck_assert_int_lt(now_ms() - t0, 100);
    ck_assert_uint_eq(nready, 1);
    ck_assert_uint_eq(idx[0], 1);
    /* nothing ready */
    ck_assert_marin(marin_wait(fs, 1, 1, 0, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 0);
    ck_assert_marin(marin_wait(fs, 1, 1, 10, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 0);
    atomic_store(&g_gate, 1);
    for (int i = 0; i < 3; i++)
        marin_future_release(fs[i]);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_wait_blocks_until_ready)
{
    SKIP_UNLESS_LOCAL("on redis the driver is not told when a worker starts a task: a future is PENDING until its outcome arrives, never RUNNING");
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *fs[2];
    fs[0] = running_gate(rt);
    fs[1] = submit_sleep(rt, 20);
    size_t idx[2] = {99, 99}, nready = 0;
    ck_assert_marin(marin_wait(fs, 2, 1, -1, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 1);
    ck_assert_uint_eq(idx[0], 1);
    ck_assert_int_eq(marin_future_state(fs[1]), MARIN_FUTURE_SUCCEEDED);
    ck_assert_int_eq(marin_future_state(fs[0]), MARIN_FUTURE_RUNNING);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_wait(fs, 2, 2, 2000, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 2);
    marin_future_release(fs[0]);
    marin_future_release(fs[1]);
    marin_runtime_close(rt);
}
END_TEST

/* ---- on_done ---- */

#define MAXCB 16

typedef struct cb_rec {
    int index;
    atomic_int ran;     /* fn ran (count) */
    atomic_int freed;   /* free_userdata ran (count) */
    int free_after_fn;  /* fn had run when free_userdata ran */
} cb_rec;

static cb_rec g_cbs[MAXCB];
static atomic_int g_cb_order[MAXCB]; /* indices in call order */
static atomic_int g_cb_calls;
static atomic_int g_cb_frees;
static atomic_int g_cb_status;
static atomic_int g_cb_on_caller;    /* a callback ran on the caller thread */
static pthread_t g_caller;
static atomic_int g_reactor_gate;    /* releases cb_block */
static atomic_int g_block_running;

static void cb_record(marin_future_t *f, int status, void *ud)
{
    (void)f;
    cb_rec *r = ud;
    if (pthread_equal(pthread_self(), g_caller))
        atomic_store(&g_cb_on_caller, 1);
    atomic_store(&g_cb_status, status);
    int k = atomic_fetch_add(&g_cb_calls, 1);
    if (k < MAXCB)
        atomic_store(&g_cb_order[k], r->index);
    atomic_fetch_add(&r->ran, 1);
}

static void cb_free(void *ud)
{
    cb_rec *r = ud;
    r->free_after_fn = atomic_load(&r->ran) == 1;
    atomic_fetch_add(&r->freed, 1);
    atomic_fetch_add(&g_cb_frees, 1);
}

/* Holds the runtime's callback thread until g_reactor_gate (at most 3 s). */
static void cb_block(marin_future_t *f, int status, void *ud)
{
    (void)f;
    (void)status;
    (void)ud;
    atomic_store(&g_block_running, 1);
    for (int i = 0; i < 3000 && !atomic_load(&g_reactor_gate); i++)
        sleep_ms(1);
}

static void cb_release(marin_future_t *f, int status, void *ud)
{
    (void)status;
    (void)ud;
    marin_future_release(f); /* the reference the test handed over */
    atomic_fetch_add(&g_cb_calls, 1);
}

static void cb_read(marin_future_t *f, int status, void *ud)
{
    (void)ud;
    /* the future is readable inside its callback */
    const void *data = NULL;
    size_t len = 0;
    int rc = marin_future_get(f, 0, &data, &len);
    if (rc == status && status == MARIN_OK && len == 4 &&
        memcmp(data, "gate", 4) == 0)
        atomic_fetch_add(&g_cb_frees, 1);
    atomic_fetch_add(&g_cb_calls, 1);
}

static void init_cbs(void)
{
    g_caller = pthread_self();
    for (int i = 0; i < MAXCB; i++)
        g_cbs[i].index = i;
}

START_TEST(test_future_on_done_never_inline_pending)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[0], cb_free),
                    MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 0);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    ck_assert(wait_for(&g_cb_frees, 1, 2000));
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 1);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 1);
    ck_assert_int_eq(g_cbs[0].free_after_fn, 1);
    ck_assert_int_eq(atomic_load(&g_cb_status), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_cb_on_caller), 0);
    marin_future_release(f);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 1);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 1);
}
END_TEST

START_TEST(test_future_on_done_never_inline_finished)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", "z", 1);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    /* Keep the runtime's callback thread busy so that a callback queued
     * behind it cannot have run when on_done returns, unless inline. */
    ck_assert_marin(marin_future_on_done(f, cb_block, NULL, NULL), MARIN_OK);
    ck_assert(wait_for(&g_block_running, 1, 2000));
    ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[0], cb_free),
                    MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 0);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 0);
    atomic_store(&g_reactor_gate, 1);
    ck_assert(wait_for(&g_cb_frees, 1, 2000));
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 1);
    ck_assert_int_eq(g_cbs[0].free_after_fn, 1);
    ck_assert_int_eq(atomic_load(&g_cb_on_caller), 0);
    ck_assert_int_eq(atomic_load(&g_cb_status), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 1);
}
END_TEST

START_TEST(test_future_on_done_registration_order)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    for (int i = 0; i < 6; i++)
        ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[i], cb_free),
                        MARIN_OK);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    /* more, on the finished future */
    for (int i = 6; i < 10; i++)
        ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[i], cb_free),
                        MARIN_OK);
    ck_assert(wait_for(&g_cb_frees, 10, 2000));
    ck_assert_int_eq(atomic_load(&g_cb_calls), 10);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(atomic_load(&g_cb_order[i]), i);
        ck_assert_int_eq(atomic_load(&g_cbs[i].ran), 1);
        ck_assert_int_eq(atomic_load(&g_cbs[i].freed), 1);
        ck_assert_int_eq(g_cbs[i].free_after_fn, 1);
    }
    ck_assert_int_eq(atomic_load(&g_cb_on_caller), 0);
    marin_future_release(f);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_cb_calls), 10);
    ck_assert_int_eq(atomic_load(&g_cb_frees), 10);
}
END_TEST

static void reset_cbs(void)
{
    for (int i = 0; i < MAXCB; i++) {
        atomic_store(&g_cbs[i].ran, 0);
        atomic_store(&g_cbs[i].freed, 0);
        g_cbs[i].free_after_fn = 0;
        atomic_store(&g_cb_order[i], -1);
    }
    atomic_store(&g_cb_calls, 0);
    atomic_store(&g_cb_frees, 0);
}

/* Callbacks registered before completion run before those registered
 * after it, even when the registration races with the completion.
 * Repeated, since the window is short. */
START_TEST(test_future_on_done_order_across_completion)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    for (int round = 0; round < 100; round++) {
        reset_cbs();
        marin_future_t *f = submit_sleep(rt, 2);
        for (int i = 0; i < 8; i++)
            ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[i],
                                                 cb_free),
                            MARIN_OK);
        ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
        for (int i = 8; i < 12; i++)
            ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[i],
                                                 cb_free),
                            MARIN_OK);
        ck_assert(wait_for(&g_cb_frees, 12, 2000));
        for (int i = 0; i < 12; i++)
            ck_assert_msg(atomic_load(&g_cb_order[i]) == i,
                          "round %d: callback #%d to run was registered "
                          "#%d", round, i, atomic_load(&g_cb_order[i]));
        marin_future_release(f);
    }
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_on_done_status_failed)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_fail", "boom", 4);
    ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[0], NULL),
                    MARIN_OK);
    ck_assert(wait_for(&g_cb_calls, 1, 2000));
    ck_assert_int_eq(atomic_load(&g_cb_status), MARIN_ETASK);
    marin_future_release(f);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_cb_calls), 1);
}
END_TEST

START_TEST(test_future_on_done_callback_releases)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    ck_assert_marin(marin_future_on_done(f, cb_read, NULL, NULL), MARIN_OK);
    /* hand our reference to the callback */
    ck_assert_marin(marin_future_on_done(f, cb_release, NULL, NULL), MARIN_OK);
    f = NULL;
    atomic_store(&g_gate, 1);
    ck_assert(wait_for(&g_cb_calls, 2, 2000));
    ck_assert_int_eq(atomic_load(&g_cb_frees), 1); /* cb_read saw the result */
    /* a callback still runs after the caller's early release */
    marin_future_t *g = running_gate(rt);
    ck_assert_marin(marin_future_on_done(g, cb_record, &g_cbs[0], cb_free),
                    MARIN_OK);
    marin_future_release(g);
    ck_assert(wait_for(&g_cb_frees, 2, 2000));
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 1);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_on_done_invalid)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", "z", 1);
    ck_assert_marin(marin_future_on_done(NULL, cb_record, &g_cbs[0], cb_free),
                    MARIN_EINVAL);
    ck_assert_marin(marin_future_on_done(f, NULL, &g_cbs[0], cb_free),
                    MARIN_EINVAL);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 0);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 0);
}
END_TEST

START_TEST(test_future_on_done_after_close)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", "z", 1);
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    marin_runtime_close(rt);
    ck_assert_marin(marin_future_on_done(f, cb_record, &g_cbs[0], cb_free),
                    MARIN_ESTATE);
    sleep_ms(20);
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 0);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 0);
    /* still readable */
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 0);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 0);
}
END_TEST

START_TEST(test_future_on_done_runs_on_close)
{
    init_cbs();
    marin_runtime_t *rt = open_rt(RT1);
    marin_future_t *run = running_gate(rt);
    marin_future_t *pend = submit(rt, "f_count", NULL, 0);
    ck_assert_marin(marin_future_on_done(run, cb_record, &g_cbs[0], cb_free),
                    MARIN_OK);
    ck_assert_marin(marin_future_on_done(pend, cb_record, &g_cbs[1], cb_free),
                    MARIN_OK);
    marin_runtime_close(rt);
    /* close waits for running callbacks: both have run, exactly once */
    ck_assert_int_eq(atomic_load(&g_cbs[0].ran), 1);
    ck_assert_int_eq(atomic_load(&g_cbs[1].ran), 1);
    ck_assert_int_eq(atomic_load(&g_cbs[0].freed), 1);
    ck_assert_int_eq(atomic_load(&g_cbs[1].freed), 1);
    ck_assert_int_eq(atomic_load(&g_cb_status), MARIN_ECANCELED);
    ck_assert_int_eq(atomic_load(&g_cb_on_caller), 0);
    ck_assert_int_eq(atomic_load(&g_counted), 0);
    marin_future_release(run);
    marin_future_release(pend);
}
END_TEST

/* ---- cancel ---- */

START_TEST(test_future_cancel_pending)
{
    SKIP_UNLESS_LOCAL("on redis cancelling a queued task is best effort: a worker that already took the entry may still run it (its result is dropped)");
    marin_runtime_t *rt = open_rt(RT1);
    marin_future_t *blocker = running_gate(rt);
    marin_future_t *f = submit(rt, "f_count", NULL, 0);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_PENDING);
    ck_assert_marin(marin_future_cancel(f), MARIN_OK);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_CANCELLED);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    ck_assert_str_ne(marin_future_error(f), "");
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(blocker, -1, NULL, NULL), MARIN_OK);
    /* a later task of the same shape runs; the cancelled one never did */
    marin_future_t *after = submit(rt, "f_echo", "q", 1);
    ck_assert_marin(marin_future_get(after, 2000, NULL, NULL), MARIN_OK);
    sleep_ms(10);
    ck_assert_int_eq(atomic_load(&g_counted), 0);
    ck_assert_marin(marin_future_cancel(f), MARIN_ESTATE);
    marin_future_release(f);
    marin_future_release(blocker);
    marin_future_release(after);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_counted), 0);
}
END_TEST

START_TEST(test_future_cancel_running)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    ck_assert_marin(marin_future_cancel(f), MARIN_OK);
    /* complete at once, before the task returns */
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_CANCELLED);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    ck_assert(wait_for(&g_saw_cancel, 1, 2000));
    ck_assert(wait_for(&g_finished, 1, 2000));
    sleep_ms(5);
    /* whatever it returned afterwards is discarded */
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_CANCELLED);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_cancel_finished)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *ok = submit(rt, "f_echo", "a", 1);
    ck_assert_marin(marin_future_get(ok, -1, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_cancel(ok), MARIN_ESTATE);
    ck_assert_int_eq(marin_future_state(ok), MARIN_FUTURE_SUCCEEDED);
    ck_assert_marin(marin_future_get(ok, 0, NULL, NULL), MARIN_OK);
    marin_future_t *bad = submit(rt, "f_fail", "b", 1);
    ck_assert_marin(marin_future_get(bad, -1, NULL, NULL), MARIN_ETASK);
    ck_assert_marin(marin_future_cancel(bad), MARIN_ESTATE);
    ck_assert_int_eq(marin_future_state(bad), MARIN_FUTURE_FAILED);
    ck_assert_marin(marin_future_get(bad, 0, NULL, NULL), MARIN_ETASK);
    ck_assert_marin(marin_future_cancel(NULL), MARIN_EINVAL);
    marin_future_release(ok);
    marin_future_release(bad);
    marin_runtime_close(rt);
}
END_TEST

/* ---- references and lifetime ---- */

START_TEST(test_future_retain_release)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = submit(rt, "f_echo", "keep", 4);
    marin_future_retain(f);
    marin_future_retain(f);
    marin_future_release(f);
    marin_future_release(f);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, -1, &data, &len), MARIN_OK);
    ck_assert_mem_eq(data, "keep", 4);
    marin_future_retain(NULL);
    marin_future_release(NULL);
    /* released before completion: the task still runs to its end */
    marin_future_t *g = submit_sleep(rt, 10);
    marin_future_release(g);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_future_readable_after_close)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *ok = submit(rt, "f_echo", "persist", 7);
    marin_future_t *bad = submit(rt, "f_fail", "kaput", 5);
    ck_assert_marin(marin_future_get(ok, -1, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(bad, -1, NULL, NULL), MARIN_ETASK);
    char id[128];
    int n = marin_future_id(ok, id, sizeof id);
    marin_runtime_close(rt);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(ok, -1, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 7);
    ck_assert_mem_eq(data, "persist", 7);
    ck_assert_int_eq(marin_future_state(ok), MARIN_FUTURE_SUCCEEDED);
    ck_assert_marin(marin_future_get(bad, 10, NULL, NULL), MARIN_ETASK);
    ck_assert_ptr_nonnull(strstr(marin_future_error(bad), "kaput"));
    char id2[128];
    ck_assert_int_eq(marin_future_id(ok, id2, sizeof id2), n);
    ck_assert_str_eq(id, id2);
    size_t idx[2], nready = 0;
    marin_future_t *fs[2] = {ok, bad};
    ck_assert_marin(marin_wait(fs, 2, 2, 0, idx, &nready), MARIN_OK);
    ck_assert_uint_eq(nready, 2);
    ck_assert_marin(marin_future_cancel(ok), MARIN_ESTATE);
    marin_future_release(ok);
    marin_future_release(bad);
}
END_TEST

START_TEST(test_future_close_cancels_pending_and_running)
{
    marin_runtime_t *rt = open_rt(RT1);
    marin_future_t *run = running_gate(rt);
    marin_future_t *pend[3];
    for (int i = 0; i < 3; i++)
        pend[i] = submit(rt, "f_count", NULL, 0);
    marin_runtime_close(rt);
    /* the running task was asked to stop and has returned */
    ck_assert_int_eq(atomic_load(&g_saw_cancel), 1);
    ck_assert_int_eq(atomic_load(&g_finished), 1);
    ck_assert_int_eq(marin_future_state(run), MARIN_FUTURE_CANCELLED);
    ck_assert_marin(marin_future_get(run, -1, NULL, NULL), MARIN_ECANCELED);
    ck_assert_str_ne(marin_future_error(run), "");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(marin_future_state(pend[i]), MARIN_FUTURE_CANCELLED);
        ck_assert_marin(marin_future_get(pend[i], -1, NULL, NULL),
                        MARIN_ECANCELED);
        ck_assert_str_ne(marin_future_error(pend[i]), "");
        marin_future_release(pend[i]);
    }
    ck_assert_int_eq(atomic_load(&g_counted), 0);
    marin_future_release(run);
}
END_TEST

/* A task still running when close starts is asked to stop; its future
 * completes with MARIN_ECANCELED even when the task returns quickly after
 * seeing marin_task_cancelled. Repeated, since the window is short. */
START_TEST(test_future_close_running_quick_return)
{
    int succeeded = 0;
    for (int i = 0; i < 40; i++) {
        marin_runtime_t *rt = open_rt(RT1);
        int before = atomic_load(&g_started);
        marin_future_t *f = submit(rt, "f_spin", NULL, 0);
        ck_assert(wait_for(&g_started, before + 1, 2000));
        marin_runtime_close(rt);
        int rc = marin_future_get(f, 0, NULL, NULL);
        ck_assert_msg(rc == MARIN_OK || rc == MARIN_ECANCELED, "rc %d", rc);
        if (rc == MARIN_OK)
            succeeded++;
        marin_future_release(f);
    }
    ck_assert_msg(succeeded == 0,
                  "%d of 40 running tasks completed SUCCEEDED instead of "
                  "MARIN_ECANCELED after marin_runtime_close", succeeded);
}
END_TEST

START_TEST(test_future_close_null)
{
    marin_runtime_close(NULL);
    marin_runtime_t *rt = open_rt(RT2);
    marin_runtime_close(rt); /* nothing submitted */
}
END_TEST

/* ---- threads ---- */

#define NWAITERS 8

typedef struct waiter_arg {
    marin_future_t *f;
    int rc;
    int ok_data;
} waiter_arg;

static void *waiter_main(void *p)
{
    waiter_arg *a = p;
    const void *data = NULL;
    size_t len = 0;
    a->rc = marin_future_get(a->f, -1, &data, &len);
    a->ok_data = len == 4 && data && memcmp(data, "gate", 4) == 0;
    return NULL;
}

START_TEST(test_future_many_waiters)
{
    marin_runtime_t *rt = open_rt(RT2);
    marin_future_t *f = running_gate(rt);
    pthread_t th[NWAITERS];
    waiter_arg args[NWAITERS];
    for (int i = 0; i < NWAITERS; i++) {
        args[i].f = f;
        args[i].rc = 12345;
        args[i].ok_data = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, waiter_main, &args[i]), 0);
    }
    sleep_ms(20); /* let them block */
    atomic_store(&g_gate, 1);
    for (int i = 0; i < NWAITERS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(args[i].rc, MARIN_OK);
        ck_assert_int_eq(args[i].ok_data, 1);
    }
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

#define NSUBMITTERS 6
#define NPER 60

typedef struct submitter_arg {
    marin_runtime_t *rt;
    int id;
    int errors;
} submitter_arg;

static void *submitter_main(void *p)
{
    submitter_arg *a = p;
    for (int i = 0; i < NPER; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "t%d-%d", a->id, i);
        marin_future_t *f = NULL;
        if (marin_submit(a->rt, "f_echo", buf, (size_t)n, NULL, &f) != MARIN_OK) {
            a->errors++;
            continue;
        }
        const void *data = NULL;
        size_t len = 0;
        if (marin_future_get(f, 5000, &data, &len) != MARIN_OK ||
            len != (size_t)n || memcmp(data, buf, len) != 0)
            a->errors++;
        if (marin_future_state(f) != MARIN_FUTURE_SUCCEEDED)
            a->errors++;
        marin_future_release(f);
    }
    return NULL;
}

START_TEST(test_future_threads_submit_get)
{
    marin_runtime_t *rt = open_rt(RT2);
    pthread_t th[NSUBMITTERS];
    submitter_arg args[NSUBMITTERS];
    for (int i = 0; i < NSUBMITTERS; i++) {
        args[i].rt = rt;
        args[i].id = i;
        args[i].errors = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, submitter_main, &args[i]),
                         0);
    }
    for (int i = 0; i < NSUBMITTERS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(args[i].errors, 0);
    }
    marin_runtime_close(rt);
}
END_TEST

static Suite *future_suite(void)
{
    Suite *s = suite_create("future");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_future_get_success);
    tcase_add_test(tc, test_future_get_empty_result);
    tcase_add_test(tc, test_future_get_poll_running);
    tcase_add_test(tc, test_future_get_positive_timeout);
    tcase_add_test(tc, test_future_get_invalid);
    tcase_add_test(tc, test_future_get_failed_sets_last_error);
    tcase_add_test(tc, test_future_state_transitions);
    tcase_add_test(tc, test_future_error_text);
    tcase_add_test(tc, test_future_id);
    tcase_add_test(tc, test_future_wait_invalid);
    tcase_add_test(tc, test_future_wait_input_order);
    tcase_add_test(tc, test_future_wait_any_finished_state);
    tcase_add_test(tc, test_future_wait_timeout);
    tcase_add_test(tc, test_future_wait_blocks_until_ready);
    tcase_add_test(tc, test_future_on_done_never_inline_pending);
    tcase_add_test(tc, test_future_on_done_never_inline_finished);
    tcase_add_test(tc, test_future_on_done_registration_order);
    tcase_add_test(tc, test_future_on_done_order_across_completion);
    tcase_add_test(tc, test_future_on_done_status_failed);
    tcase_add_test(tc, test_future_on_done_callback_releases);
    tcase_add_test(tc, test_future_on_done_invalid);
    tcase_add_test(tc, test_future_on_done_after_close);
    tcase_add_test(tc, test_future_on_done_runs_on_close);
    tcase_add_test(tc, test_future_cancel_pending);
    tcase_add_test(tc, test_future_cancel_running);
    tcase_add_test(tc, test_future_cancel_finished);
    tcase_add_test(tc, test_future_retain_release);
    tcase_add_test(tc, test_future_readable_after_close);
    tcase_add_test(tc, test_future_close_cancels_pending_and_running);
    tcase_add_test(tc, test_future_close_running_quick_return);
    tcase_add_test(tc, test_future_close_null);
    tcase_add_test(tc, test_future_many_waiters);
    tcase_add_test(tc, test_future_threads_submit_get);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } tasks[] = {
        {"f_echo", f_echo},   {"f_fail", f_fail},   {"f_gate", f_gate},
        {"f_count", f_count}, {"f_sleep", f_sleep},   {"f_spin", f_spin},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (marin_register_task(tasks[i].name, tasks[i].fn, NULL) != MARIN_OK) {
            fprintf(stderr, "register %s: %s\n", tasks[i].name,
                    marin_last_error());
            return EXIT_FAILURE;
        }
    return marin_test_run(future_suite());
}
