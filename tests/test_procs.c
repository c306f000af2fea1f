/* The local backend's process pool: local://?processes=N.
 *
 * The workers are this test program started again (the default worker
 * command): main() sees MARIN_LOCAL_WORKER_FD, registers the tasks and
 * opens the runtime, which serves the driver instead of returning — the
 * pattern a C program uses. */
#define MARIN_EXPERIMENTAL 1
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "marin/marin.h"
#include "testutil.h"

#define POOL2 "local://?processes=2&resources=cpus=2"

/* ---- tasks (registered in the driver and in every worker) ---- */

static int t_pid(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    if (len == sizeof(int)) { /* hold the worker a while, so both are used */
        int ms;
        memcpy(&ms, arg, sizeof ms);
        sleep_ms(ms);
    }
    int p = getpid();
    return marin_task_return(ctx, &p, sizeof p);
}

/* Dies (SIGKILL, as the OOM killer would) on its first attempt. */
static int t_die_once(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg, (void)len, (void)ud;
    if (marin_task_attempt(ctx) == 1)
        raise(SIGKILL);
    return t_pid(ctx, NULL, 0, NULL);
}

static int t_die(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ctx, (void)arg, (void)len, (void)ud;
    raise(SIGKILL);
    return 0;
}

static int t_fail(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg, (void)len, (void)ud;
    return marin_task_fail(ctx, "bad input in the worker");
}

/* Sum of the dependencies' ints, the argument's int and env X. */
static int t_sum(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    int s = 0;
    if (len == sizeof(int))
        memcpy(&s, arg, sizeof s);
    for (size_t i = 0; i < marin_task_ndeps(ctx); i++) {
        const void *d;
        size_t n;
        int rc = marin_task_dep(ctx, i, &d, &n);
        if (rc != MARIN_OK || n != sizeof(int))
            return marin_task_fail(ctx, "bad dependency");
        int v;
        memcpy(&v, d, sizeof v);
        s += v;
    }
    const char *x = marin_task_env(ctx, "X");
    if (x)
        s += atoi(x);
    return marin_task_return(ctx, &s, sizeof s);
}

static int t_sleep(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg, (void)len, (void)ud;
    for (int i = 0; i < 1000; i++) /* ignores cancellation, as foreign code may */
        sleep_ms(10);
    return t_pid(ctx, NULL, 0, NULL);
}

static void register_tasks(void)
{
    marin_register_task("p_pid", t_pid, NULL);
    marin_register_task("p_die_once", t_die_once, NULL);
    marin_register_task("p_die", t_die, NULL);
    marin_register_task("p_fail", t_fail, NULL);
    marin_register_task("p_sum", t_sum, NULL);
    marin_register_task("p_sleep", t_sleep, NULL);
}

static int get_int(marin_future_t *f, int *out)
{
    const void *d;
    size_t n;
    int rc = marin_future_get(f, 30000, &d, &n);
    if (rc == MARIN_OK) {
        ck_assert_uint_eq(n, sizeof(int));
        memcpy(out, d, sizeof *out);
    }
    return rc;
}

START_TEST(test_procs_tasks_run_in_worker_processes)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    int pids[16], seen_other = 0, ms = 50;
    marin_future_t *f[16];
    for (int i = 0; i < 16; i++)
        ck_assert_marin(marin_submit(rt, "p_pid", &ms, sizeof ms, NULL, &f[i]), MARIN_OK);
    for (int i = 0; i < 16; i++) {
        ck_assert_marin(get_int(f[i], &pids[i]), MARIN_OK);
        ck_assert_int_ne(pids[i], getpid());
        if (pids[i] != pids[0])
            seen_other = 1;
        marin_future_release(f[i]);
    }
    ck_assert_msg(seen_other, "16 tasks on 2 cpus all ran in one worker process");
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_procs_arguments_dependencies_env)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    int one = 1, two = 2, ten = 10;
    marin_future_t *a, *b, *c;
    ck_assert_marin(marin_submit(rt, "p_sum", &one, sizeof one, NULL, &a), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "p_sum", &two, sizeof two, NULL, &b), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "X", "100"), MARIN_OK);
    marin_future_t *deps[2] = {a, b};
    ck_assert_marin(marin_submit_after(rt, "p_sum", &ten, sizeof ten, o, deps, 2, &c),
                    MARIN_OK);
    int v = 0;
    ck_assert_marin(get_int(c, &v), MARIN_OK);
    ck_assert_int_eq(v, 113);
    marin_task_options_destroy(o);
    marin_future_release(a);
    marin_future_release(b);
    marin_future_release(c);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_procs_killed_worker_retried_exactly_once)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    marin_future_t *f;
    ck_assert_marin(marin_submit(rt, "p_die_once", NULL, 0, NULL, &f), MARIN_OK);
    int pid = 0;
    ck_assert_marin(get_int(f, &pid), MARIN_OK);
    ck_assert_int_ne(pid, getpid());
    marin_future_release(f);
    /* the pool is whole again: two tasks at once still run */
    marin_future_t *g[4];
    for (int i = 0; i < 4; i++)
        ck_assert_marin(marin_submit(rt, "p_pid", NULL, 0, NULL, &g[i]), MARIN_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_marin(get_int(g[i], &pid), MARIN_OK);
        marin_future_release(g[i]);
    }
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_procs_worker_death_spends_retries)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 1), MARIN_OK);
    marin_future_t *f;
    ck_assert_marin(marin_submit(rt, "p_die", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_EWORKER);
    const char *err = marin_future_error(f);
    ck_assert_msg(strstr(err, "attempt 2 of 2") && strstr(err, "signal 9"),
                  "error was: %s", err);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_procs_application_error)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    marin_future_t *f;
    ck_assert_marin(marin_submit(rt, "p_fail", NULL, 0, NULL, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_ETASK);
    ck_assert_ptr_nonnull(strstr(marin_future_error(f), "bad input in the worker"));
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_procs_timeout_kills_the_worker)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 200), MARIN_OK);
    int64_t t0 = now_ms();
    marin_future_t *f;
    ck_assert_marin(marin_submit(rt, "p_sleep", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_ETASKTIMEOUT);
    marin_future_release(f);
    /* the worker running it was killed and replaced: the pool still works,
     * long before the task would have ended by itself (10 s) */
    marin_future_t *g[4];
    int pid;
    for (int i = 0; i < 4; i++)
        ck_assert_marin(marin_submit(rt, "p_pid", NULL, 0, NULL, &g[i]), MARIN_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_marin(get_int(g[i], &pid), MARIN_OK);
        marin_future_release(g[i]);
    }
    ck_assert_int_lt(now_ms() - t0, 8000);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_procs_close_with_running_task)
{
    register_tasks();
    marin_runtime_t *rt = open_rt(POOL2);
    marin_future_t *f;
    ck_assert_marin(marin_submit(rt, "p_sleep", NULL, 0, NULL, &f), MARIN_OK);
    for (int i = 0; i < 1000 && marin_future_state(f) != MARIN_FUTURE_RUNNING; i++)
        sleep_ms(10);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_RUNNING);
    int64_t t0 = now_ms();
    marin_runtime_close(rt);
    ck_assert_int_lt(now_ms() - t0, 5000);
    ck_assert_marin(marin_future_get(f, 0, NULL, NULL), MARIN_ECANCELED);
    marin_future_release(f);
}
END_TEST

START_TEST(test_procs_bad_parameters)
{
    register_tasks();
    marin_runtime_t *rt = (marin_runtime_t *)&rt;
    ck_assert_marin(marin_runtime_open("local://?processes=0", &rt), MARIN_EINVAL);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("processes=0");
    ck_assert_marin(marin_runtime_open("local://?processes=x", &rt), MARIN_EINVAL);
    ck_assert_marin(marin_runtime_open("local://?processes=1&worker=/nonexistent/worker",
                                       &rt),
                    MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has("/nonexistent/worker");
    /* a command that starts but does not speak the protocol */
    ck_assert_marin(marin_runtime_open("local://?processes=1&worker=/bin/true", &rt),
                    MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has("did not start");
}
END_TEST

START_TEST(test_procs_idle_worker_death_costs_no_attempt)
{
    register_tasks();
    marin_runtime_t *rt = open_rt("local://?processes=1&resources=cpus=1");
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    marin_future_t *f;
    int pid = 0, pid2 = 0;
    ck_assert_marin(marin_submit(rt, "p_pid", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(get_int(f, &pid), MARIN_OK);
    marin_future_release(f);
    /* the idle worker dies (the OOM killer, an operator): the next task,
     * with no retries at all, still runs, on its replacement */
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    sleep_ms(100);
    ck_assert_marin(marin_submit(rt, "p_pid", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(get_int(f, &pid2), MARIN_OK);
    ck_assert_int_ne(pid2, pid);
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* Workers must outlive the thread that opened the runtime (and the worker
 * threads that replace them come and go). */
static void *open_on_thread(void *out)
{
    *(marin_runtime_t **)out = open_rt("local://?processes=2&resources=cpus=2&idle_ms=50");
    return NULL;
}

START_TEST(test_procs_workers_outlive_the_opening_thread)
{
    register_tasks();
    marin_runtime_t *rt = NULL;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, open_on_thread, &rt), 0);
    pthread_join(th, NULL);
    ck_assert_ptr_nonnull(rt);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    for (int round = 0; round < 3; round++) {
        sleep_ms(150); /* idle task threads exit (idle_ms=50) */
        marin_future_t *f[4];
        int pid;
        for (int i = 0; i < 4; i++)
            ck_assert_marin(marin_submit(rt, "p_pid", NULL, 0, o, &f[i]), MARIN_OK);
        for (int i = 0; i < 4; i++) {
            ck_assert_marin(get_int(f[i], &pid), MARIN_OK);
            marin_future_release(f[i]);
        }
    }
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

int main(void)
{
    if (getenv("MARIN_LOCAL_WORKER_FD")) {
        /* started as a worker of one of the tests below */
        register_tasks();
        marin_runtime_t *rt = NULL;
        marin_runtime_open(POOL2, &rt); /* serves, then ends the process */
        fprintf(stderr, "test_procs: worker mode did not take over: %s\n",
                marin_last_error());
        return 1;
    }
    Suite *s = suite_create("procs");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_procs_tasks_run_in_worker_processes);
    tcase_add_test(tc, test_procs_arguments_dependencies_env);
    tcase_add_test(tc, test_procs_killed_worker_retried_exactly_once);
    tcase_add_test(tc, test_procs_worker_death_spends_retries);
    tcase_add_test(tc, test_procs_application_error);
    tcase_add_test(tc, test_procs_timeout_kills_the_worker);
    tcase_add_test(tc, test_procs_close_with_running_task);
    tcase_add_test(tc, test_procs_bad_parameters);
    tcase_add_test(tc, test_procs_idle_worker_death_costs_no_attempt);
    tcase_add_test(tc, test_procs_workers_outlive_the_opening_thread);
    suite_add_tcase(s, tc);
    return marin_test_run(s);
}
