/* Runtime open/close, backend selection, capacity and the logging hook. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

/* ---- tasks ---- */

static atomic_int gate_open;

/* Blocks until the test opens the gate or the task is cancelled. */
static int gate_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    while (!atomic_load(&gate_open) && !marin_task_cancelled(ctx))
        sleep_ms(1);
    return 0;
}

/* One line at each level. */
static int logging_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    int rc = 0;
    rc |= marin_task_log(ctx, MARIN_LOG_ERROR, "msg-error");
    rc |= marin_task_log(ctx, MARIN_LOG_WARN, "msg-warn");
    rc |= marin_task_log(ctx, MARIN_LOG_INFO, "msg-info");
    rc |= marin_task_log(ctx, MARIN_LOG_DEBUG, "msg-debug");
    if (rc != 0)
        return marin_task_fail(ctx, "marin_task_log failed");
    /* misuse from inside a task */
    if (marin_task_log(ctx, 0, "x") != MARIN_EINVAL ||
        marin_task_log(ctx, 5, "x") != MARIN_EINVAL ||
        marin_task_log(ctx, MARIN_LOG_WARN, NULL) != MARIN_EINVAL)
        return marin_task_fail(ctx, "marin_task_log accepted a bad argument");
    return 0;
}

/* A system failure on the first attempt, then success. */
static int flaky_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    return marin_task_attempt(ctx) == 1 ? MARIN_EUNAVAILABLE : 0;
}

/* Like flaky_task, but the failed first attempt had set a 64 MiB result. */
static int flaky_big_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    enum { BIG = 64 << 20 };
    static char big[BIG];
    if (marin_task_attempt(ctx) > 1)
        return 0;
    memset(big, 1, sizeof big);
    if (marin_task_return(ctx, big, sizeof big) != MARIN_OK)
        return marin_task_fail(ctx, "marin_task_return failed");
    return MARIN_EUNAVAILABLE;
}

static int always_fail_task(marin_task_ctx_t *ctx, const void *arg, size_t len,
                            void *ud)
{
    (void)ctx;
    (void)arg;
    (void)len;
    (void)ud;
    return MARIN_EUNAVAILABLE;
}

static atomic_int saw_cancel;

/* Spins until cancelled, then returns 0 at once. */
static int spin_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_store(&saw_cancel, 0);
    while (!marin_task_cancelled(ctx))
        ;
    atomic_store(&saw_cancel, 1);
    return 0;
}

/* Tries to close its own runtime: must be refused, not deadlock. */
static int self_close_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    marin_runtime_close(marin_task_runtime(ctx));
    return marin_task_return(ctx, "alive", 5);
}

static void register_tasks(void)
{
    static const struct {
        const char *name;
        marin_task_fn fn;
    } t[] = {
        {"rt_noop", noop_task},       {"rt_gate", gate_task},
        {"rt_logging", logging_task}, {"rt_flaky", flaky_task},
        {"rt_always_fail", always_fail_task}, {"rt_spin", spin_task},
        {"rt_flaky_big", flaky_big_task}, {"rt_self_close", self_close_task},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (marin_register_task(t[i].name, t[i].fn, NULL) != MARIN_OK) {
            fprintf(stderr, "register %s: %s\n", t[i].name, marin_last_error());
            exit(EXIT_FAILURE);
        }
}

/* Submit @p task and wait for it; return its code. */
static int run_task(marin_runtime_t *rt, const char *task)
{
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, task, NULL, 0, NULL, &f), MARIN_OK);
    int rc = marin_future_get(f, 20000, NULL, NULL);
    marin_future_release(f);
    return rc;
}

/* ---- log collector ---- */

#define MAX_LINES 64

typedef struct {
    pthread_mutex_t mu;
    int n;
    int levels[MAX_LINES];
    char lines[MAX_LINES][512];
    void *bad_userdata; /* set when a call got a foreign userdata */
} log_sink;

static void sink_init(log_sink *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void sink_fn(int level, const char *msg, void *userdata)
{
    log_sink *s = userdata;
    pthread_mutex_lock(&s->mu);
    if (s->n < MAX_LINES) {
        s->levels[s->n] = level;
        snprintf(s->lines[s->n], sizeof s->lines[s->n], "%s", msg);
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
}

static int sink_count(log_sink *s, const char *needle, int level)
{
    int k = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        if (strstr(s->lines[i], needle) && (level == 0 || s->levels[i] == level))
            k++;
    pthread_mutex_unlock(&s->mu);
    return k;
}

static int sink_total(log_sink *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void sink_dump(log_sink *s)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        fprintf(stderr, "  [%d] %s\n", s->levels[i], s->lines[i]);
    pthread_mutex_unlock(&s->mu);
}

/* ---- stderr capture ---- */

typedef struct {
    int saved;
    char path[64];
} capture;

static void capture_begin(capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/marin_rt_stderr_XXXXXX");
    int fd = mkstemp(c->path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    fflush(stderr);
    c->saved = dup(2);
    ck_assert(c->saved >= 0);
    ck_assert(dup2(fd, 2) == 2);
    close(fd);
}

/* Restore stderr; return what was written (static buffer). */
static const char *capture_end(capture *c)
{
    static char buf[16384];
    fflush(stderr);
    ck_assert(dup2(c->saved, 2) == 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    ck_assert(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(c->path);
    return buf;
}

/* ---- open / close ---- */

START_TEST(test_runtime_open_local)
{
    const char *uris[] = {"local", "local://", "local://?resources=cpus=2",
                          "local://?resources=cpus=2,memory=1GiB&max_threads=8"};
    for (size_t i = 0; i < sizeof uris / sizeof uris[0]; i++) {
        marin_runtime_t *rt = NULL;
        ck_assert_marin(marin_runtime_open(uris[i], &rt), MARIN_OK);
        ck_assert_ptr_nonnull(rt);
        ck_assert_str_eq(marin_last_error(), "");
        ck_assert_str_eq(marin_runtime_backend(rt), "local");
        ck_assert_marin(run_task(rt, "rt_noop"), MARIN_OK);
        marin_runtime_close(rt);
    }
}
END_TEST

START_TEST(test_runtime_open_null_uri_defaults_to_local)
{
    unsetenv("MARIN_BACKEND");
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open(NULL, &rt), MARIN_OK);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    ck_assert_marin(run_task(rt, "rt_noop"), MARIN_OK);
    marin_runtime_close(rt);

    setenv("MARIN_BACKEND", "", 1); /* set but empty: still local */
    ck_assert_marin(marin_runtime_open(NULL, &rt), MARIN_OK);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_runtime_open_null_uri_uses_env)
{
    setenv("MARIN_BACKEND", "local://?resources=cpus=3,memory=2GiB", 1);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open(NULL, &rt), MARIN_OK);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_resources_t *cap = NULL;
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(cap, "cpus"), 3.0);
    ck_assert_double_eq(marin_resources_get(cap, "memory"), 2 * GIB);
    marin_resources_destroy(cap);
    marin_runtime_close(rt);

    /* the variable is really used: an unknown scheme in it fails */
    setenv("MARIN_BACKEND", "nosuchbackend://host", 1);
    rt = NULL;
    ck_assert_marin(marin_runtime_open(NULL, &rt), MARIN_ENOBACKEND);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("nosuchbackend");

    /* an explicit URI wins over the variable */
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_str_eq(marin_runtime_backend(rt), "local");
    marin_runtime_close(rt);
    unsetenv("MARIN_BACKEND");
}
END_TEST

START_TEST(test_runtime_open_unknown_scheme)
{
    const char *uris[] = {"nosuch", "nosuch://", "mongodb://127.0.0.1:27017",
                          "k8s://?namespace=x", "ftp://user@host/x"};
    const char *schemes[] = {"nosuch", "nosuch", "mongodb", "k8s", "ftp"};
    for (size_t i = 0; i < sizeof uris / sizeof uris[0]; i++) {
        static char sentinel;
        marin_runtime_t *rt = (marin_runtime_t *)(void *)&sentinel;
        ck_assert_marin(marin_runtime_open(uris[i], &rt), MARIN_ENOBACKEND);
        ck_assert_ptr_null(rt);
        char want[64];
        snprintf(want, sizeof want, "'%s'", schemes[i]);
        ck_assert_lasterr_has(want);
        ck_assert_lasterr_has("built-in backends");
        ck_assert_lasterr_has("local");
    }
}
END_TEST

/* URIs carry credentials (redis://user:password@host); like the URI parser's
 * messages, the unknown-backend message must not quote the password. */
START_TEST(test_runtime_open_unknown_scheme_hides_password)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("ftp://user:s3cretpw@host:21/x", &rt),
                    MARIN_ENOBACKEND);
    ck_assert_lasterr_has("'ftp'");
    ck_assert_msg(strstr(marin_last_error(), "s3cretpw") == NULL,
                  "message shows the password: %s", marin_last_error());

    setenv("MARIN_BACKEND", "nosuch://admin:hunter2pw@db:6379/0", 1);
    ck_assert_marin(marin_runtime_open(NULL, &rt), MARIN_ENOBACKEND);
    ck_assert_lasterr_has("'nosuch'");
    ck_assert_msg(strstr(marin_last_error(), "hunter2pw") == NULL,
                  "message shows the password: %s", marin_last_error());
    unsetenv("MARIN_BACKEND");

    /* the parser's own messages hide it (for comparison) */
    ck_assert_marin(marin_runtime_open("local://user:s3cretpw@host:0", &rt),
                    MARIN_EINVAL);
    ck_assert_msg(strstr(marin_last_error(), "s3cretpw") == NULL,
                  "message shows the password: %s", marin_last_error());
}
END_TEST

START_TEST(test_runtime_open_malformed)
{
    const char *bad[] = {
        "://",                                 /* empty scheme */
        "1local",                              /* scheme starts with a digit */
        "lo cal",                              /* space in the scheme */
        "local:",                              /* ':' without '//' */
        "local:/x",
        "local\x01",                           /* control character */
        "local://?resources=cpus=-1",          /* bad resources */
        "local://?resources=cpus=two",
        "local://?resources=memory=4XB",
        "local://?bogus=1",                    /* unknown parameter */
        "local://?max_threads=abc",            /* not a number */
        "local://?max_threads=-3",
        "local://?idle_ms=",
        "local://?resources=cpus=1&resources=cpus=2", /* duplicate */
        "local://?=1",                         /* empty parameter name */
        "local://host:99999",                  /* port out of range */
        "local://?resources=cpus%ZZ",          /* bad percent escape */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static char sentinel;
        marin_runtime_t *rt = (marin_runtime_t *)(void *)&sentinel;
        int rc = marin_runtime_open(bad[i], &rt);
        ck_assert_msg(rc == MARIN_EINVAL, "'%s': got %d (%s), wanted EINVAL: %s",
                      bad[i], rc, marin_strerror(rc), marin_last_error());
        ck_assert_msg(rt == NULL, "'%s': *out not NULL on failure", bad[i]);
        ck_assert_msg(marin_last_error()[0] != '\0', "'%s': no message", bad[i]);
    }
}
END_TEST

START_TEST(test_runtime_open_null_out)
{
    ck_assert_marin(marin_runtime_open("local", NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_runtime_open");
}
END_TEST

START_TEST(test_runtime_close_null)
{
    marin_runtime_close(NULL);
    ck_assert_ptr_null(marin_runtime_backend(NULL));
}
END_TEST

START_TEST(test_runtime_open_close_cycles)
{
    for (int i = 0; i < 200; i++) {
        marin_runtime_t *rt = NULL;
        ck_assert_marin(marin_runtime_open(i % 2 ? "local" : "local://?resources=cpus=2",
                                           &rt), MARIN_OK);
        if (i % 10 == 0)
            ck_assert_marin(run_task(rt, "rt_noop"), MARIN_OK);
        if (i % 25 == 0) { /* close with work still queued */
            marin_future_t *f[4];
            for (int k = 0; k < 4; k++)
                ck_assert_marin(marin_submit(rt, "rt_noop", NULL, 0, NULL, &f[k]),
                                MARIN_OK);
            marin_runtime_close(rt);
            for (int k = 0; k < 4; k++) {
                int rc = marin_future_get(f[k], 0, NULL, NULL);
                ck_assert_msg(rc == MARIN_OK || rc == MARIN_ECANCELED,
                              "future %d after close: %d (%s)", k, rc, marin_strerror(rc));
                marin_future_release(f[k]);
            }
            continue;
        }
        marin_runtime_close(rt);
    }
}
END_TEST

START_TEST(test_runtime_close_cancels_pending_futures_stay_readable)
{
    atomic_store(&gate_open, 0);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=1", &rt), MARIN_OK);
    marin_future_t *gate = NULL, *pending[3];
    ck_assert_marin(marin_submit(rt, "rt_gate", NULL, 0, NULL, &gate), MARIN_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_marin(marin_submit(rt, "rt_noop", NULL, 0, NULL, &pending[i]),
                        MARIN_OK);
    /* the gate task runs and holds the only cpu */
    for (int i = 0; i < 5000 && marin_future_state(gate) != MARIN_FUTURE_RUNNING; i++)
        sleep_ms(1);
    ck_assert_int_eq(marin_future_state(gate), MARIN_FUTURE_RUNNING);
    marin_runtime_close(rt); /* the gate task sees marin_task_cancelled */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(marin_future_state(pending[i]), MARIN_FUTURE_CANCELLED);
        ck_assert_marin(marin_future_get(pending[i], -1, NULL, NULL), MARIN_ECANCELED);
        ck_assert_str_ne(marin_future_error(pending[i]), "");
        marin_future_release(pending[i]);
    }
    /* finished and readable (its final code: see the next case) */
    ck_assert_int_ge(marin_future_state(gate), MARIN_FUTURE_SUCCEEDED);
    marin_future_release(gate);
}
END_TEST

/* STYLE.md §4: closing "leaves every outstanding future completed with
 * MARIN_ECANCELED" (future.h: "MARIN_ECANCELED if the work had not
 * finished"). A task still running when close starts is outstanding work, so
 * its future must read MARIN_ECANCELED whatever the function returns after
 * being asked to stop. */
START_TEST(test_runtime_close_running_task_cancelled)
{
    for (int round = 0; round < 20; round++) {
        marin_runtime_t *rt = NULL;
        ck_assert_marin(marin_runtime_open("local://?resources=cpus=1", &rt), MARIN_OK);
        marin_future_t *f = NULL;
        ck_assert_marin(marin_submit(rt, "rt_spin", NULL, 0, NULL, &f), MARIN_OK);
        for (int i = 0; i < 5000 && marin_future_state(f) != MARIN_FUTURE_RUNNING; i++)
            sleep_ms(1);
        ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_RUNNING);
        marin_runtime_close(rt);
        ck_assert_int_eq(atomic_load(&saw_cancel), 1);
        int rc = marin_future_get(f, 0, NULL, NULL);
        ck_assert_msg(rc == MARIN_ECANCELED,
                      "round %d: a task running at close completed with %d (%s), "
                      "state %d, wanted MARIN_ECANCELED", round, rc, marin_strerror(rc),
                      marin_future_state(f));
        ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_CANCELLED);
        marin_future_release(f);
    }
}
END_TEST

/* A task retried once, its result read and released, then the runtime
 * closed at once: the worker that ran the failed attempt must not still
 * point at the task by then (close walks the running workers). The failed
 * attempt leaves a large partial result behind, so its worker spends a
 * while freeing it after handing the task back for the retry; ASan reports
 * the use after free, a plain build may abort on the double free. */
START_TEST(test_runtime_close_right_after_retry)
{
    for (int round = 0; round < 20; round++) {
        marin_runtime_t *rt = NULL;
        ck_assert_marin(marin_runtime_open("local://?resources=cpus=4", &rt), MARIN_OK);
        ck_assert_marin(run_task(rt, "rt_flaky_big"), MARIN_OK);
        marin_runtime_close(rt);
    }
}
END_TEST

/* ---- logging ---- */

START_TEST(test_runtime_close_from_own_task_refused)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=2", &rt), MARIN_OK);
    log_sink s;
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_ERROR, &s), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "rt_self_close", NULL, 0, NULL, &f), MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 5000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(data, "alive", 5), 0);
    marin_future_release(f);
    ck_assert_int_eq(sink_count(&s, "called from a task or callback", MARIN_LOG_ERROR), 1);
    /* the runtime still works, and closes normally from here */
    ck_assert_marin(run_task(rt, "rt_noop"), MARIN_OK);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_runtime_logger_receives_levels)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    log_sink s;
    sink_init(&s);

    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_WARN, &s), MARIN_OK);
    ck_assert_marin(run_task(rt, "rt_logging"), MARIN_OK);
    ck_assert_int_eq(sink_count(&s, "msg-error", MARIN_LOG_ERROR), 1);
    ck_assert_int_eq(sink_count(&s, "msg-warn", MARIN_LOG_WARN), 1);
    ck_assert_int_eq(sink_count(&s, "msg-info", 0), 0);
    ck_assert_int_eq(sink_count(&s, "msg-debug", 0), 0);
    /* tagged with the task */
    ck_assert_int_eq(sink_count(&s, "rt_logging", 0), 2);
    ck_assert_int_eq(sink_total(&s), 2);

    /* raise to debug: every level arrives */
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_DEBUG, &s),
                    MARIN_OK);
    ck_assert_marin(run_task(rt, "rt_logging"), MARIN_OK);
    ck_assert_int_eq(sink_count(&s, "msg-error", MARIN_LOG_ERROR), 1);
    ck_assert_int_eq(sink_count(&s, "msg-warn", MARIN_LOG_WARN), 1);
    ck_assert_int_eq(sink_count(&s, "msg-info", MARIN_LOG_INFO), 1);
    ck_assert_int_eq(sink_count(&s, "msg-debug", MARIN_LOG_DEBUG), 1);

    /* lower to error: only errors */
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_ERROR, &s),
                    MARIN_OK);
    ck_assert_marin(run_task(rt, "rt_logging"), MARIN_OK);
    if (sink_total(&s) != 1)
        sink_dump(&s);
    ck_assert_int_eq(sink_total(&s), 1);
    ck_assert_int_eq(sink_count(&s, "msg-error", MARIN_LOG_ERROR), 1);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_runtime_logger_retry_warning)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    log_sink s;
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_WARN, &s), MARIN_OK);
    ck_assert_marin(run_task(rt, "rt_flaky"), MARIN_OK);
    if (sink_count(&s, "retrying", MARIN_LOG_WARN) != 1)
        sink_dump(&s);
    ck_assert_int_eq(sink_count(&s, "retrying", MARIN_LOG_WARN), 1);
    ck_assert_int_eq(sink_count(&s, "rt_flaky", MARIN_LOG_WARN), 1);
    ck_assert_int_eq(sink_count(&s, "attempt 1", MARIN_LOG_WARN), 1);
    ck_assert_int_eq(sink_count(&s, marin_strerror(MARIN_EUNAVAILABLE), MARIN_LOG_WARN),
                     1);

    /* a task failing every attempt: one warning per retry (default 3) */
    sink_init(&s);
    ck_assert_marin(run_task(rt, "rt_always_fail"), MARIN_EUNAVAILABLE);
    ck_assert_int_eq(sink_count(&s, "retrying", MARIN_LOG_WARN), 3);

    /* filtered out at the error level */
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_ERROR, &s),
                    MARIN_OK);
    ck_assert_marin(run_task(rt, "rt_flaky"), MARIN_OK);
    ck_assert_int_eq(sink_total(&s), 0);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_runtime_logger_bad_args)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    log_sink s;
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(NULL, sink_fn, MARIN_LOG_WARN, &s),
                    MARIN_EINVAL);
    ck_assert_lasterr_has("marin_runtime_set_logger");
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, -1, &s), MARIN_EINVAL);
    ck_assert_lasterr_has("-1");
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_DEBUG + 1, &s),
                    MARIN_EINVAL);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, 1000, &s), MARIN_EINVAL);
    for (int lvl = MARIN_LOG_ERROR; lvl <= MARIN_LOG_DEBUG; lvl++)
        ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, lvl, &s), MARIN_OK);
    /* a refused call leaves the previous logger (debug) in place */
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, 9, NULL), MARIN_EINVAL);
    ck_assert_marin(run_task(rt, "rt_logging"), MARIN_OK);
    ck_assert_int_eq(sink_count(&s, "msg-debug", MARIN_LOG_DEBUG), 1);
    ck_assert_marin(marin_task_log(NULL, MARIN_LOG_WARN, "x"), MARIN_EINVAL);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_runtime_logger_null_restores_default)
{
    unsetenv("MARIN_LOG");
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    log_sink s;
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_DEBUG, &s),
                    MARIN_OK);
    ck_assert_marin(run_task(rt, "rt_logging"), MARIN_OK);
    ck_assert_int_eq(sink_total(&s), 4);

    ck_assert_marin(marin_runtime_set_logger(rt, NULL, MARIN_LOG_DEBUG, NULL), MARIN_OK);
    capture c;
    capture_begin(&c);
    int rc1 = run_task(rt, "rt_logging");
    int rc2 = run_task(rt, "rt_flaky");
    const char *err = capture_end(&c);
    ck_assert_marin(rc1, MARIN_OK);
    ck_assert_marin(rc2, MARIN_OK);
    ck_assert_int_eq(sink_total(&s), 4); /* the old logger got nothing more */
    ck_assert_msg(err[0] == '\0', "default logger printed with MARIN_LOG unset: '%s'",
                  err);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_runtime_default_is_silent)
{
    unsetenv("MARIN_LOG");
    capture c;
    capture_begin(&c);
    marin_runtime_t *rt = NULL;
    int rc_open = marin_runtime_open("local", &rt);
    int rc1 = -100, rc2 = -100, rc3 = -100;
    if (rc_open == MARIN_OK) {
        rc1 = run_task(rt, "rt_logging");
        rc2 = run_task(rt, "rt_flaky");
        rc3 = run_task(rt, "rt_always_fail");
        marin_runtime_close(rt);
    }
    const char *err = capture_end(&c);
    ck_assert_marin(rc_open, MARIN_OK);
    ck_assert_marin(rc1, MARIN_OK);
    ck_assert_marin(rc2, MARIN_OK);
    ck_assert_marin(rc3, MARIN_EUNAVAILABLE);
    ck_assert_msg(err[0] == '\0', "a library printed by default: '%s'", err);
}
END_TEST

/* MARIN_LOG asks for warnings: the default logger prints them (and errors),
 * and nothing below. Also shows the capture above can see output. */
START_TEST(test_runtime_marin_log_env_prints)
{
    setenv("MARIN_LOG", "warn", 1);
    capture c;
    capture_begin(&c);
    marin_runtime_t *rt = NULL;
    int rc_open = marin_runtime_open("local", &rt);
    int rc1 = -100, rc2 = -100;
    if (rc_open == MARIN_OK) {
        rc1 = run_task(rt, "rt_logging");
        rc2 = run_task(rt, "rt_flaky");
        marin_runtime_close(rt);
    }
    const char *err = capture_end(&c);
    unsetenv("MARIN_LOG");
    ck_assert_marin(rc_open, MARIN_OK);
    ck_assert_marin(rc1, MARIN_OK);
    ck_assert_marin(rc2, MARIN_OK);
    ck_assert_msg(strstr(err, "msg-error"), "no error line in '%s'", err);
    ck_assert_msg(strstr(err, "msg-warn"), "no warn line in '%s'", err);
    ck_assert_msg(strstr(err, "retrying"), "no retry warning in '%s'", err);
    ck_assert_msg(!strstr(err, "msg-info"), "info printed at MARIN_LOG=warn: '%s'", err);
    ck_assert_msg(!strstr(err, "msg-debug"), "debug printed at MARIN_LOG=warn: '%s'",
                  err);
}
END_TEST

/* With MARIN_LOG set, a logger takes the lines; NULL gives them back to
 * stderr at the MARIN_LOG level. */
START_TEST(test_runtime_logger_null_back_to_marin_log)
{
    setenv("MARIN_LOG", "error", 1);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    unsetenv("MARIN_LOG");
    log_sink s;
    sink_init(&s);
    ck_assert_marin(marin_runtime_set_logger(rt, sink_fn, MARIN_LOG_INFO, &s), MARIN_OK);
    capture c;
    capture_begin(&c);
    int rc1 = run_task(rt, "rt_logging");
    const char *err = capture_end(&c);
    ck_assert_marin(rc1, MARIN_OK);
    ck_assert_msg(err[0] == '\0', "stderr got lines while a logger is set: '%s'", err);
    ck_assert_int_eq(sink_total(&s), 3);

    ck_assert_marin(marin_runtime_set_logger(rt, NULL, MARIN_LOG_DEBUG, NULL), MARIN_OK);
    capture_begin(&c);
    rc1 = run_task(rt, "rt_logging");
    err = capture_end(&c);
    ck_assert_marin(rc1, MARIN_OK);
    ck_assert_int_eq(sink_total(&s), 3);
    ck_assert_msg(strstr(err, "msg-error"), "no error line on stderr: '%s'", err);
    ck_assert_msg(!strstr(err, "msg-warn"), "warn printed at MARIN_LOG=error: '%s'", err);
    marin_runtime_close(rt);
}
END_TEST

/* ---- capacity ---- */

START_TEST(test_runtime_capacity)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open(
                        "local://?resources=cpus=2,memory=1GiB,gpus=0,TPU=4", &rt),
                    MARIN_OK);
    marin_resources_t *cap = NULL;
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    ck_assert_double_eq(marin_resources_get(cap, "cpus"), 2.0);
    ck_assert_double_eq(marin_resources_get(cap, "memory"), GIB);
    ck_assert_double_eq(marin_resources_get(cap, "gpus"), 0.0);
    ck_assert_double_eq(marin_resources_get(cap, "TPU"), 4.0);

    ck_assert_marin(marin_runtime_capacity(NULL, cap), MARIN_EINVAL);
    ck_assert_marin(marin_runtime_capacity(rt, NULL), MARIN_EINVAL);
    marin_resources_destroy(cap);
    marin_runtime_close(rt);

    /* detected: something to run on */
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_marin(marin_resources_create(&cap), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, cap), MARIN_OK);
    ck_assert(marin_resources_get(cap, "cpus") > 0);
    ck_assert(marin_resources_get(cap, "memory") > 0);
    marin_resources_destroy(cap);
    marin_runtime_close(rt);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("runtime");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_open_local);
    tcase_add_test(tc, test_runtime_open_null_uri_defaults_to_local);
    tcase_add_test(tc, test_runtime_open_null_uri_uses_env);
    tcase_add_test(tc, test_runtime_open_unknown_scheme);
    tcase_add_test(tc, test_runtime_open_unknown_scheme_hides_password);
    tcase_add_test(tc, test_runtime_open_malformed);
    tcase_add_test(tc, test_runtime_open_null_out);
    tcase_add_test(tc, test_runtime_close_null);
    tcase_add_test(tc, test_runtime_open_close_cycles);
    tcase_add_test(tc, test_runtime_close_cancels_pending_futures_stay_readable);
    tcase_add_test(tc, test_runtime_close_running_task_cancelled);
    tcase_add_test(tc, test_runtime_close_right_after_retry);
    tcase_add_test(tc, test_runtime_close_from_own_task_refused);
    tcase_add_test(tc, test_runtime_logger_receives_levels);
    tcase_add_test(tc, test_runtime_logger_retry_warning);
    tcase_add_test(tc, test_runtime_logger_bad_args);
    tcase_add_test(tc, test_runtime_logger_null_restores_default);
    tcase_add_test(tc, test_runtime_default_is_silent);
    tcase_add_test(tc, test_runtime_marin_log_env_prints);
    tcase_add_test(tc, test_runtime_logger_null_back_to_marin_log);
    tcase_add_test(tc, test_runtime_capacity);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    register_tasks();
    return marin_test_run(runtime_suite());
}
