/* Task options (marin_task_options_*) and map options (marin_map_options_*):
 * setters, validation, and snapshot semantics across reuse. */
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ---- tasks ---- */

static atomic_int gate_open;

static int gate_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    while (!atomic_load(&gate_open) && !marin_task_cancelled(ctx))
        sleep_ms(1);
    return 0;
}

/* Fails (system failure) while attempt <= env FAILS, then returns
 * "MODE=<env MODE>;attempt=<n>". */
static int probe_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    const char *fails = marin_task_env(ctx, "FAILS");
    int attempt = marin_task_attempt(ctx);
    if (fails && attempt <= atoi(fails))
        return MARIN_EUNAVAILABLE;
    const char *mode = marin_task_env(ctx, "MODE");
    char out[300];
    int n = snprintf(out, sizeof out, "MODE=%s;attempt=%d", mode ? mode : "(null)",
                     attempt);
    return marin_task_return(ctx, out, (size_t)n + 1);
}

/* Returns the env option named by arg (a NUL-terminated key), or "(null)". */
static int env_echo_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    if (!arg || len == 0 || ((const char *)arg)[len - 1] != '\0')
        return marin_task_fail(ctx, "bad argument");
    const char *v = marin_task_env(ctx, arg);
    if (!v)
        v = "(null)";
    return marin_task_return(ctx, v, strlen(v) + 1);
}

/* Application error on the first attempt, then success. */
static int appfail_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    if (marin_task_attempt(ctx) == 1)
        return marin_task_fail(ctx, "first attempt fails on purpose");
    return 0;
}

static int appfail_always_task(marin_task_ctx_t *ctx, const void *arg, size_t len,
                               void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    return marin_task_fail(ctx, "always fails");
}

/* Sleeps the milliseconds in arg (an int), returning early when cancelled. */
static int sleepy_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    int ms = 0;
    if (len == sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    for (int i = 0; i < ms && !marin_task_cancelled(ctx); i++)
        sleep_ms(1);
    return 0;
}

/* Spins until asked to stop, then returns success at once. */
static int prompt_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    while (!marin_task_cancelled(ctx))
        ;
    return 0;
}

/* Sleeps until cancelled (its timeout), then reports a system failure. */
static int late_fail_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    for (int i = 0; i < 5000 && !marin_task_cancelled(ctx); i++)
        sleep_ms(1);
    return MARIN_EUNAVAILABLE;
}

static void register_tasks(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } t[] = {
        {"opt_gate", gate_task},         {"opt_probe", probe_task},
        {"opt_env_echo", env_echo_task}, {"opt_appfail", appfail_task},
        {"opt_sleepy", sleepy_task},     {"opt_appfail_always", appfail_always_task},
        {"opt_late_fail", late_fail_task}, {"opt_prompt", prompt_task},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (marin_register_task(t[i].name, t[i].fn, NULL) != MARIN_OK) {
            fprintf(stderr, "register %s: %s\n", t[i].name, marin_last_error());
            exit(EXIT_FAILURE);
        }
}

/* ---- helpers ---- */

static void fill(char *buf, size_t n, char ch)
{
    memset(buf, ch, n);
    buf[n] = '\0';
}

/* Result of @p f as a string, or NULL on failure (code in *rc). */
static const char *result_str(marin_future_t *f, int *rc)
{
    const void *data = NULL;
    size_t len = 0;
    *rc = marin_future_get(f, 30000, &data, &len);
    if (*rc != MARIN_OK)
        return NULL;
    ck_assert_msg(len > 0 && ((const char *)data)[len - 1] == '\0',
                  "result is not a string");
    return data;
}

static void assert_result(marin_future_t *f, const char *want)
{
    int rc;
    const char *got = result_str(f, &rc);
    ck_assert_msg(rc == MARIN_OK, "task failed: %d (%s): %s", rc, marin_strerror(rc),
                  marin_future_error(f));
    ck_assert_str_eq(got, want);
}

static marin_future_t *submit_echo(marin_runtime_t *rt, const char *key,
                                   const marin_task_options_t *o)
{
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "opt_env_echo", key, strlen(key) + 1, o, &f),
                    MARIN_OK);
    return f;
}

/* Open a one-cpu runtime and occupy its cpu with a gate task, so everything
 * submitted next waits in the queue until open_gate(). */
static marin_runtime_t *open_gated(marin_future_t **gate)
{
    atomic_store(&gate_open, 0);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=1", &rt), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_gate", NULL, 0, NULL, gate), MARIN_OK);
    for (int i = 0; i < 5000 && marin_future_state(*gate) != MARIN_FUTURE_RUNNING; i++)
        sleep_ms(1);
    ck_assert_int_eq(marin_future_state(*gate), MARIN_FUTURE_RUNNING);
    return rt;
}

static void open_gate(marin_future_t *gate)
{
    atomic_store(&gate_open, 1);
    ck_assert_marin(marin_future_get(gate, 30000, NULL, NULL), MARIN_OK);
    marin_future_release(gate);
}

/* ---- task options: create, setters, validation ---- */

START_TEST(test_options_create_destroy)
{
    ck_assert_marin(marin_task_options_create(NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_create");
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_ptr_nonnull(o);
    marin_task_options_destroy(o);
    marin_task_options_destroy(NULL);
}
END_TEST

START_TEST(test_options_setters_success)
{
    marin_task_options_t *o = NULL;
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_resources_parse("cpus=0.5,memory=1MiB", &r), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, INT_MAX), MARIN_OK);
    ck_assert_marin(marin_task_options_set_retry_exceptions(o, 1), MARIN_OK);
    ck_assert_marin(marin_task_options_set_retry_exceptions(o, 0), MARIN_OK);
    ck_assert_marin(marin_task_options_set_retry_exceptions(o, 42), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 0), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 1), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, INT64_MAX), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "KEY", "value"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "KEY", ""), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "KEY", NULL), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "NEVER_SET", NULL), MARIN_OK);
    ck_assert_marin(marin_task_options_set_label(o, "my label"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_label(o, NULL), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    marin_resources_destroy(r);
    marin_task_options_destroy(o);
}
END_TEST

START_TEST(test_options_setters_null)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=1", &r), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(NULL, r), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_resources");
    ck_assert_marin(marin_task_options_set_max_retries(NULL, 1), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_max_retries");
    ck_assert_marin(marin_task_options_set_retry_exceptions(NULL, 1), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_retry_exceptions");
    ck_assert_marin(marin_task_options_set_timeout_ms(NULL, 1), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_timeout_ms");
    ck_assert_marin(marin_task_options_set_env(NULL, "K", "V"), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_env");
    ck_assert_marin(marin_task_options_set_label(NULL, "x"), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_label");

    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(o, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, NULL, "V"), MARIN_EINVAL);
    marin_task_options_destroy(o);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_options_max_retries_range)
{
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, -2), MARIN_EINVAL);
    ck_assert_lasterr_has("-2");
    ck_assert_marin(marin_task_options_set_max_retries(o, -100), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_max_retries(o, INT_MIN), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    marin_task_options_destroy(o);
}
END_TEST

/* INT_MAX retries is accepted and counted without overflow: the final
 * message of a task that cannot be retried (application error; timed out)
 * never says "of -2147483648", and nothing is printed on stderr (where
 * UBSan would report a signed overflow in max_retries + 1). */
START_TEST(test_options_max_retries_int_max)
{
    unsetenv("MARIN_LOG");
    char path[] = "/tmp/marin_opt_stderr_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    ck_assert(dup2(fd, 2) == 2);
    close(fd);

    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, INT_MAX), MARIN_OK);
    marin_future_t *f = NULL, *g = NULL;
    ck_assert_marin(marin_submit(rt, "opt_appfail_always", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 20), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_late_fail", NULL, 0, o, &g), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_ETASK);
    ck_assert_marin(marin_future_get(g, 30000, NULL, NULL), MARIN_ETASKTIMEOUT);
    marin_runtime_close(rt); /* the attempt has been settled */

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char err[4096];
    FILE *fp = fopen(path, "r");
    ck_assert(fp != NULL);
    size_t n = fread(err, 1, sizeof err - 1, fp);
    err[n] = '\0';
    fclose(fp);
    unlink(path);

    const char *e = marin_future_error(f);
    ck_assert_msg(strstr(e, "always fails"), "error: %s", e);
    ck_assert_msg(strstr(e, "attempt 1"), "error: %s", e);
    ck_assert_msg(!strstr(e, "of -"), "negative attempt count: %s", e);
    ck_assert_msg(!strstr(marin_future_error(g), "of -"), "negative attempt count: %s",
                  marin_future_error(g));
    ck_assert_msg(n == 0, "stderr: %s", err);
    marin_future_release(f);
    marin_future_release(g);
    marin_task_options_destroy(o);
}
END_TEST

START_TEST(test_options_timeout_negative)
{
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, -1), MARIN_EINVAL);
    ck_assert_lasterr_has("-1");
    ck_assert_marin(marin_task_options_set_timeout_ms(o, INT64_MIN), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 0), MARIN_OK);
    marin_task_options_destroy(o);
}
END_TEST

START_TEST(test_options_env_key_validation)
{
    char k255[MARIN_NAME_MAX + 1], k256[MARIN_NAME_MAX + 2];
    fill(k255, MARIN_NAME_MAX, 'k');
    fill(k256, MARIN_NAME_MAX + 1, 'k');
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "", "v"), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_env");
    ck_assert_marin(marin_task_options_set_env(o, "A=B", "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, "=", "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, "A=", "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, "=A", NULL), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, k256, "v"), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, k256, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, "", NULL), MARIN_EINVAL);
    ck_assert_marin(marin_task_options_set_env(o, k255, "v255"), MARIN_OK);

    /* the accepted ones reach the task; the refused ones left nothing */
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_future_t *f1 = submit_echo(rt, k255, o);
    marin_future_t *f2 = submit_echo(rt, "A", o);
    assert_result(f1, "v255");
    assert_result(f2, "(null)");
    marin_future_release(f1);
    marin_future_release(f2);
    marin_runtime_close(rt);
    marin_task_options_destroy(o);
}
END_TEST

START_TEST(test_options_label_validation)
{
    char l255[MARIN_NAME_MAX + 1], l256[MARIN_NAME_MAX + 2];
    fill(l255, MARIN_NAME_MAX, 'l');
    fill(l256, MARIN_NAME_MAX + 1, 'l');
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_label(o, l256), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_task_options_set_label");
    ck_assert_marin(marin_task_options_set_label(o, l255), MARIN_OK);
    ck_assert_marin(marin_task_options_set_label(o, NULL), MARIN_OK);

    /* a labelled task runs like any other */
    ck_assert_marin(marin_task_options_set_label(o, "labelled"), MARIN_OK);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_future_t *f = submit_echo(rt, "X", o);
    assert_result(f, "(null)");
    marin_future_release(f);
    marin_runtime_close(rt);
    marin_task_options_destroy(o);
}
END_TEST

START_TEST(test_options_env_set_replace_remove)
{
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "A", "1"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "B", "2"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "C", "3"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "E", ""), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "B", NULL), MARIN_OK);   /* remove */
    ck_assert_marin(marin_task_options_set_env(o, "D", NULL), MARIN_OK);   /* absent */
    ck_assert_marin(marin_task_options_set_env(o, "A", "one"), MARIN_OK);  /* replace */
    ck_assert_marin(marin_task_options_set_env(o, "PATH", "/nowhere"), MARIN_OK);

    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    const char *keys[] = {"A", "B", "C", "D", "E", "PATH", "a"};
    const char *want[] = {"one", "(null)", "3", "(null)", "", "/nowhere", "(null)"};
    marin_future_t *f[7];
    for (int i = 0; i < 7; i++)
        f[i] = submit_echo(rt, keys[i], o);
    for (int i = 0; i < 7; i++) {
        assert_result(f[i], want[i]);
        marin_future_release(f[i]);
    }
    /* without options: no env at all */
    marin_future_t *g = submit_echo(rt, "A", NULL);
    assert_result(g, "(null)");
    marin_future_release(g);
    marin_runtime_close(rt);
    marin_task_options_destroy(o);
}
END_TEST

/* Tasks submitted before a change keep the values they were submitted with,
 * even while they still wait in the queue. */
START_TEST(test_options_reuse_keeps_submitted_values)
{
    marin_future_t *gate = NULL;
    marin_runtime_t *rt = open_gated(&gate);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "MODE", "a"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "FAILS", "2"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    marin_future_t *t1, *t2, *t3, *t4, *t5;
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &t1), MARIN_OK);

    ck_assert_marin(marin_task_options_set_env(o, "MODE", "b"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 3), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &t2), MARIN_OK);

    ck_assert_marin(marin_task_options_set_env(o, "MODE", NULL), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &t3), MARIN_OK);

    ck_assert_marin(marin_task_options_set_env(o, "MODE", "c"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "FAILS", "5"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, -1), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &t4), MARIN_OK);

    ck_assert_marin(marin_task_options_set_max_retries(o, 1), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &t5), MARIN_OK);

    /* change everything once more, after the last submit */
    ck_assert_marin(marin_task_options_set_env(o, "MODE", "zzz"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "FAILS", "0"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);

    for (marin_future_t **p = (marin_future_t *[]){t1, t2, t3, t4, t5, NULL}; *p; p++)
        ck_assert_int_eq(marin_future_state(*p), MARIN_FUTURE_PENDING);
    open_gate(gate);

    int rc;
    /* t1: MODE=a, no retries: the first failure is final */
    ck_assert_ptr_null(result_str(t1, &rc));
    ck_assert_int_eq(rc, MARIN_EUNAVAILABLE);
    ck_assert_msg(strstr(marin_future_error(t1), "attempt 1 of 1"),
                  "t1 error: %s", marin_future_error(t1));
    assert_result(t2, "MODE=b;attempt=3");
    assert_result(t3, "MODE=(null);attempt=3");
    assert_result(t4, "MODE=c;attempt=6");
    /* t5: FAILS=5 but one retry */
    ck_assert_ptr_null(result_str(t5, &rc));
    ck_assert_int_eq(rc, MARIN_EUNAVAILABLE);
    ck_assert_msg(strstr(marin_future_error(t5), "attempt 2 of 2"),
                  "t5 error: %s", marin_future_error(t5));

    /* and the latest values apply to the next submit */
    marin_future_t *t6 = NULL;
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &t6), MARIN_OK);
    assert_result(t6, "MODE=zzz;attempt=1");

    marin_future_t *all[] = {t1, t2, t3, t4, t5, t6};
    for (int i = 0; i < 6; i++)
        marin_future_release(all[i]);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_options_reuse_many_submits)
{
    enum { N = 300 };
    marin_future_t *gate = NULL;
    marin_runtime_t *rt = open_gated(&gate);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    marin_future_t *f[N];
    for (int i = 0; i < N; i++) {
        if (i % 7 == 0) {
            char v[32];
            snprintf(v, sizeof v, "v%d", i / 7);
            ck_assert_marin(marin_task_options_set_env(o, "MODE", v), MARIN_OK);
        }
        if (i % 50 == 0) /* unrelated changes in between */
            ck_assert_marin(marin_task_options_set_label(o, i % 100 ? "x" : NULL),
                            MARIN_OK);
        f[i] = submit_echo(rt, "MODE", o);
    }
    marin_task_options_destroy(o);
    open_gate(gate);
    for (int i = 0; i < N; i++) {
        char v[32];
        snprintf(v, sizeof v, "v%d", i / 7);
        assert_result(f[i], v);
        marin_future_release(f[i]);
    }
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_options_destroy_right_after_submit)
{
    marin_future_t *gate = NULL;
    marin_runtime_t *rt = open_gated(&gate);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "MODE", "kept"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "FAILS", "2"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 2), MARIN_OK);
    ck_assert_marin(marin_task_options_set_label(o, "short-lived"), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &f), MARIN_OK);
    marin_task_options_destroy(o);
    open_gate(gate);
    assert_result(f, "MODE=kept;attempt=3");
    marin_future_release(f);

    /* the same while the task is already running */
    marin_future_t *g = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "MODE", "running"), MARIN_OK);
    int ms = 100;
    ck_assert_marin(marin_submit(rt, "opt_sleepy", &ms, sizeof ms, o, &g), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_probe", NULL, 0, o, &f), MARIN_OK);
    marin_task_options_destroy(o);
    ck_assert_marin(marin_future_get(g, 30000, NULL, NULL), MARIN_OK);
    assert_result(f, "MODE=running;attempt=1");
    marin_future_release(f);
    marin_future_release(g);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_options_retry_exceptions)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    marin_future_t *f = NULL, *g = NULL, *h = NULL;
    /* default: application errors are not retried */
    ck_assert_marin(marin_submit(rt, "opt_appfail", NULL, 0, o, &f), MARIN_OK);
    ck_assert_marin(marin_task_options_set_retry_exceptions(o, 1), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_appfail", NULL, 0, o, &g), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, 0), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "opt_appfail", NULL, 0, o, &h), MARIN_OK);

    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_ETASK);
    ck_assert_msg(strstr(marin_future_error(f), "first attempt fails on purpose"),
                  "error: %s", marin_future_error(f));
    ck_assert_marin(marin_future_get(g, 30000, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(h, 30000, NULL, NULL), MARIN_ETASK); /* no budget */
    marin_future_release(f);
    marin_future_release(g);
    marin_future_release(h);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_options_timeout_applied)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 50), MARIN_OK);
    int ms = 3000;
    marin_future_t *f = NULL, *g = NULL;
    ck_assert_marin(marin_submit(rt, "opt_sleepy", &ms, sizeof ms, o, &f), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 0), MARIN_OK);
    int short_ms = 100;
    ck_assert_marin(marin_submit(rt, "opt_sleepy", &short_ms, sizeof short_ms, o, &g),
                    MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_ETASKTIMEOUT);
    ck_assert_msg(strstr(marin_future_error(f), "50 ms"), "error: %s",
                  marin_future_error(f));
    ck_assert_marin(marin_future_get(g, 30000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_future_release(g);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* task.h: "Fail the task with MARIN_ETASKTIMEOUT @p ms after an attempt
 * starts". A task that returns 0 as soon as marin_task_cancelled() turns
 * true (as task.h asks long tasks to do) must still read
 * MARIN_ETASKTIMEOUT: the timeout has to be recorded before the task is
 * asked to stop. Three such tasks at once on two cores make the race show. */
START_TEST(test_options_timeout_prompt_return_still_times_out)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=3", &rt), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_timeout_ms(o, 5), MARIN_OK);
    int bad = 0;
    char first[1024] = "";
    for (int round = 0; round < 60; round++) {
        marin_future_t *f[3];
        for (int i = 0; i < 3; i++)
            ck_assert_marin(marin_submit(rt, "opt_prompt", NULL, 0, o, &f[i]), MARIN_OK);
        for (int i = 0; i < 3; i++) {
            int rc = marin_future_get(f[i], 30000, NULL, NULL);
            if (rc != MARIN_ETASKTIMEOUT && bad++ == 0)
                snprintf(first, sizeof first, "round %d: %d (%s), state %d", round, rc,
                         marin_strerror(rc), marin_future_state(f[i]));
            marin_future_release(f[i]);
        }
    }
    ck_assert_msg(bad == 0, "%d of 180 timed-out tasks did not read MARIN_ETASKTIMEOUT; "
                  "first: %s", bad, first);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_options_resources_copied)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=1", &rt), MARIN_OK);
    marin_task_options_t *o = NULL;
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_resources_parse("cpus=2", &r), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    /* changing or freeing the caller's set afterwards changes nothing */
    ck_assert_marin(marin_resources_set(r, "cpus", 0.5), MARIN_OK);
    marin_resources_destroy(r);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "opt_env_echo", "K", 2, o, &f), MARIN_EINFEASIBLE);
    ck_assert_ptr_null(f);
    ck_assert_lasterr_has("cpus");

    ck_assert_marin(marin_resources_parse("cpus=0.5", &r), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    marin_resources_destroy(r);
    f = submit_echo(rt, "K", o);
    assert_result(f, "(null)");
    marin_future_release(f);
    marin_task_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- map options ---- */

START_TEST(test_options_map_create_destroy)
{
    ck_assert_marin(marin_map_options_create(NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_map_options_create");
    marin_map_options_t *m = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(marin_last_error(), "");
    marin_map_options_destroy(m);
    marin_map_options_destroy(NULL);
}
END_TEST

static void progress_fn(size_t done, size_t submitted, size_t failed, void *ud)
{
    (void)done;
    (void)submitted;
    (void)failed;
    (void)ud;
}

START_TEST(test_options_map_setters)
{
    marin_map_options_t *m = NULL;
    marin_task_options_t *t = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_marin(marin_task_options_create(&t), MARIN_OK);

    ck_assert_marin(marin_map_options_set_max_in_flight(m, 0), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_map_options_set_max_in_flight");
    ck_assert_marin(marin_map_options_set_max_in_flight(m, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_max_in_flight(m, SIZE_MAX), MARIN_OK);
    ck_assert_marin(marin_map_options_set_continue_on_error(m, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_continue_on_error(m, 0), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(m, t), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(m, NULL), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress(m, progress_fn, m), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress(m, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress_bar(m, 1), MARIN_OK);
    ck_assert_marin(marin_map_options_set_progress_bar(m, 0), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");

    ck_assert_marin(marin_map_options_set_max_in_flight(NULL, 5), MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_max_in_flight(NULL, 0), MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_continue_on_error(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_task_options(NULL, t), MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_progress(NULL, progress_fn, NULL),
                    MARIN_EINVAL);
    ck_assert_marin(marin_map_options_set_progress_bar(NULL, 1), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_map_options_set_progress_bar");
    marin_task_options_destroy(t);
    marin_map_options_destroy(m);
}
END_TEST

typedef struct {
    int next_i, n;
    char results[8][64];
    int statuses[8];
} map_state;

static int map_next(const void **arg, size_t *len, void *ud)
{
    map_state *s = ud;
    if (s->next_i >= s->n)
        return 0;
    s->next_i++;
    *arg = "MODE";
    *len = 5;
    return 1;
}

static int map_result(size_t index, int status, const void *data, size_t len, void *ud)
{
    map_state *s = ud;
    if (index < 8) {
        s->statuses[index] = status;
        if (status == 0 && len > 0)
            snprintf(s->results[index], sizeof s->results[index], "%.*s", (int)len,
                     (const char *)data);
    }
    return 0;
}

static void run_echo_map(marin_runtime_t *rt, marin_map_options_t *m, const char *want)
{
    map_state s;
    memset(&s, 0, sizeof s);
    s.n = 4;
    ck_assert_marin(marin_map_ordered(rt, "opt_env_echo", map_next, map_result, m, &s),
                    MARIN_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(s.statuses[i], 0);
        ck_assert_str_eq(s.results[i], want);
    }
}

/* map.h: "Options of every task (copied; NULL: defaults)": a change to the
 * task options after the setter returns does not reach the map. */
START_TEST(test_options_map_task_options_copied)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_map_options_t *m = NULL;
    marin_task_options_t *t = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_marin(marin_task_options_create(&t), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(t, "MODE", "copied"), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(m, t), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(t, "MODE", "changed later"), MARIN_OK);
    run_echo_map(rt, m, "copied");
    marin_task_options_destroy(t);
    marin_map_options_destroy(m);
    marin_runtime_close(rt);
}
END_TEST

/* ... and, being copied, the task options may be destroyed before the map
 * runs (ASan reports a use after free otherwise). */
START_TEST(test_options_map_task_options_destroyed_before_map)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_map_options_t *m = NULL;
    marin_task_options_t *t = NULL;
    ck_assert_marin(marin_map_options_create(&m), MARIN_OK);
    ck_assert_marin(marin_task_options_create(&t), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(t, "MODE", "copied"), MARIN_OK);
    ck_assert_marin(marin_map_options_set_task_options(m, t), MARIN_OK);
    marin_task_options_destroy(t);
    run_echo_map(rt, m, "copied");
    marin_map_options_destroy(m);
    marin_runtime_close(rt);
}
END_TEST

static Suite *options_suite(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("options");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_options_create_destroy);
    tcase_add_test(tc, test_options_setters_success);
    tcase_add_test(tc, test_options_setters_null);
    tcase_add_test(tc, test_options_max_retries_range);
    tcase_add_test(tc, test_options_max_retries_int_max);
    tcase_add_test(tc, test_options_timeout_negative);
    tcase_add_test(tc, test_options_env_key_validation);
    tcase_add_test(tc, test_options_label_validation);
    tcase_add_test(tc, test_options_env_set_replace_remove);
    tcase_add_test(tc, test_options_reuse_keeps_submitted_values);
    tcase_add_test(tc, test_options_reuse_many_submits);
    tcase_add_test(tc, test_options_destroy_right_after_submit);
    tcase_add_test(tc, test_options_retry_exceptions);
    tcase_add_test(tc, test_options_timeout_applied);
    tcase_add_test(tc, test_options_timeout_prompt_return_still_times_out);
    tcase_add_test(tc, test_options_resources_copied);
    tcase_add_test(tc, test_options_map_create_destroy);
    tcase_add_test(tc, test_options_map_setters);
    tcase_add_test(tc, test_options_map_task_options_copied);
    tcase_add_test(tc, test_options_map_task_options_destroyed_before_map);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    register_tasks();
    return marin_test_run(options_suite());
}
