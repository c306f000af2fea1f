/* Error codes (pinned values), marin_strerror, the per-thread last error and
 * the version. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h" /* marin__test_fail_alloc_after */
#include "marin_config.h"
#include "testutil.h"

/* The pinned table of DESIGN.md: name, expected value. */
static const struct {
    const char *name;
    int code;
    int want;
} codes[] = {
    {"MARIN_OK", MARIN_OK, 0},
    {"MARIN_EINVAL", MARIN_EINVAL, -1},
    {"MARIN_ENOMEM", MARIN_ENOMEM, -2},
    {"MARIN_EBUSY", MARIN_EBUSY, -3},
    {"MARIN_ESTATE", MARIN_ESTATE, -4},
    {"MARIN_ECANCELED", MARIN_ECANCELED, -5},
    {"MARIN_ETIMEDOUT", MARIN_ETIMEDOUT, -6},
    {"MARIN_ENOBACKEND", MARIN_ENOBACKEND, -7},
    {"MARIN_EUNAVAILABLE", MARIN_EUNAVAILABLE, -8},
    {"MARIN_ENOTFOUND", MARIN_ENOTFOUND, -9},
    {"MARIN_EEXIST", MARIN_EEXIST, -10},
    {"MARIN_ECONFLICT", MARIN_ECONFLICT, -11},
    {"MARIN_EINFEASIBLE", MARIN_EINFEASIBLE, -12},
    {"MARIN_ETASK", MARIN_ETASK, -13},
    {"MARIN_EWORKER", MARIN_EWORKER, -14},
    {"MARIN_EPREEMPTED", MARIN_EPREEMPTED, -15},
    {"MARIN_ETASKTIMEOUT", MARIN_ETASKTIMEOUT, -16},
    {"MARIN_EPROTO", MARIN_EPROTO, -17},
    {"MARIN_EAUTH", MARIN_EAUTH, -18},
    {"MARIN_EUNSUPPORTED", MARIN_EUNSUPPORTED, -19},
    {"MARIN_ETOOBIG", MARIN_ETOOBIG, -20},
};
#define NCODES (sizeof codes / sizeof codes[0])

START_TEST(test_error_codes_pinned)
{
    for (size_t i = 0; i < NCODES; i++)
        ck_assert_msg(codes[i].code == codes[i].want, "%s is %d, pinned at %d",
                      codes[i].name, codes[i].code, codes[i].want);
    /* the table is dense: 0 down to -20, each exactly once */
    ck_assert_int_eq((int)NCODES, 21);
}
END_TEST

START_TEST(test_error_strerror_distinct)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = marin_strerror(codes[i].code);
        ck_assert_msg(s != NULL, "%s: NULL text", codes[i].name);
        ck_assert_msg(s[0] != '\0', "%s: empty text", codes[i].name);
        ck_assert_msg(strcmp(s, "unknown error") != 0,
                      "%s has no message of its own", codes[i].name);
        /* static text: the same pointer each time */
        ck_assert_ptr_eq(s, marin_strerror(codes[i].code));
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(s, marin_strerror(codes[j].code)) != 0,
                          "%s and %s share the text '%s'", codes[i].name,
                          codes[j].name, s);
    }
}
END_TEST

START_TEST(test_error_strerror_unknown)
{
    const int unknown[] = {1, 2, 100, -21, -22, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = marin_strerror(unknown[i]);
        ck_assert_msg(s != NULL, "code %d: NULL", unknown[i]);
        ck_assert_msg(strcmp(s, "unknown error") == 0,
                      "code %d: '%s', wanted 'unknown error'", unknown[i], s);
    }
}
END_TEST

START_TEST(test_error_last_error_initially_empty)
{
    ck_assert_ptr_nonnull(marin_last_error());
    ck_assert_str_eq(marin_last_error(), "");
}
END_TEST

START_TEST(test_error_last_error_what_where_why)
{
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_max_retries(o, -7), MARIN_EINVAL);
    /* where: the function; what: the bad value; why: what is accepted */
    ck_assert_lasterr_has("marin_task_options_set_max_retries");
    ck_assert_lasterr_has("-7");
    ck_assert_lasterr_has("-1");
    marin_task_options_destroy(o);

    /* a second sample: an unknown backend names the scheme */
    static char sentinel;
    marin_runtime_t *rt = (marin_runtime_t *)(void *)&sentinel; /* reset to NULL */
    ck_assert_marin(marin_runtime_open("nosuch://x", &rt), MARIN_ENOBACKEND);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has("marin_runtime_open");
    ck_assert_lasterr_has("nosuch");
}
END_TEST

START_TEST(test_error_last_error_cleared_on_success)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=-1", &r), MARIN_EINVAL);
    ck_assert_str_ne(marin_last_error(), "");
    ck_assert_marin(marin_resources_parse("cpus=1", &r), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");

    ck_assert_marin(marin_register_task(NULL, noop_task, NULL), MARIN_EINVAL);
    ck_assert_str_ne(marin_last_error(), "");
    ck_assert_marin(marin_register_task("err_noop", noop_task, NULL), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");

    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(NULL), MARIN_EINVAL);
    ck_assert_str_ne(marin_last_error(), "");
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    ck_assert_marin(marin_task_options_set_label(o, ""), MARIN_EINVAL);
    ck_assert_str_ne(marin_last_error(), "");
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");

    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("nosuch", &rt), MARIN_ENOBACKEND);
    ck_assert_str_ne(marin_last_error(), "");
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");

    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "err_no_such_task", NULL, 0, NULL, &f),
                    MARIN_ENOTFOUND);
    ck_assert_lasterr_has("err_no_such_task");
    ck_assert_marin(marin_submit(rt, "err_noop", NULL, 0, o, &f), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    ck_assert_marin(marin_future_get(f, -2, NULL, NULL), MARIN_EINVAL);
    ck_assert_str_ne(marin_last_error(), "");
    ck_assert_marin(marin_future_get(f, -1, NULL, NULL), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");

    marin_future_release(f);
    marin_runtime_close(rt);
    marin_task_options_destroy(o);
    marin_resources_destroy(r);
}
END_TEST

/* ---- per-thread last error ---- */

typedef struct {
    char seen_at_start[1024];
    char own_error[1024];
    int rc;
    const char *ptr_other; /* the main thread's pointer, read here */
    const char *ptr_own;
} thread_probe;

static void *other_thread(void *arg)
{
    thread_probe *p = arg;
    snprintf(p->seen_at_start, sizeof p->seen_at_start, "%s", marin_last_error());
    p->ptr_own = marin_last_error();
    p->rc = marin_register_task("", noop_task, NULL);
    snprintf(p->own_error, sizeof p->own_error, "%s", marin_last_error());
    return NULL;
}

START_TEST(test_error_last_error_per_thread)
{
    /* thread A (this one) fails */
    ck_assert_marin(marin_task_options_set_max_retries(NULL, 1), MARIN_EINVAL);
    char mine[1024];
    snprintf(mine, sizeof mine, "%s", marin_last_error());
    ck_assert_str_ne(mine, "");
    ck_assert_ptr_nonnull(strstr(mine, "marin_task_options_set_max_retries"));

    /* thread B sees nothing of A's failure, and its own failure is its own */
    thread_probe p;
    memset(&p, 0, sizeof p);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, other_thread, &p), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_str_eq(p.seen_at_start, "");
    ck_assert_int_eq(p.rc, MARIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(p.own_error, "marin_register_task"));
    ck_assert_ptr_ne(p.ptr_own, marin_last_error());

    /* A's message survived B's failure */
    ck_assert_str_eq(marin_last_error(), mine);
}
END_TEST

typedef struct {
    pthread_barrier_t *bar;
    int id;
    int bad;
} race_arg;

/* Many threads fail and succeed at once; each only ever sees its own text. */
static void *racer(void *arg)
{
    race_arg *a = arg;
    char want[64];
    snprintf(want, sizeof want, "%d is not a retry count", -2 - a->id);
    marin_task_options_t *o = NULL;
    if (marin_task_options_create(&o) != MARIN_OK) {
        a->bad = 1;
        return NULL;
    }
    pthread_barrier_wait(a->bar);
    for (int i = 0; i < 2000; i++) {
        if (marin_task_options_set_max_retries(o, -2 - a->id) != MARIN_EINVAL ||
            !strstr(marin_last_error(), want))
            a->bad++;
        if (marin_task_options_set_max_retries(o, 1) != MARIN_OK ||
            marin_last_error()[0] != '\0')
            a->bad++;
    }
    marin_task_options_destroy(o);
    return NULL;
}

START_TEST(test_error_last_error_threads_race)
{
    enum { N = 8 };
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    pthread_t th[N];
    race_arg a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (race_arg){&bar, i, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, racer, &a[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(a[i].bad == 0, "thread %d saw %d foreign or missing messages",
                      i, a[i].bad);
    }
    pthread_barrier_destroy(&bar);
}
END_TEST

/* ---- the exit funnel's pending-OOM flag ---- */

static int unrelated_rc = 1;
static char unrelated_msg[1024];

/* marin_task_fail copies its message; make that copy fail, then make an
 * unrelated call fail for its own reason on the same thread. */
static int fail_oom_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    marin__test_fail_alloc_after(0);
    int rc = marin_task_fail(ctx, "the message that cannot be copied");
    marin__test_fail_alloc_after(-1);
    unrelated_rc = marin_task_options_set_max_retries(NULL, 1);
    snprintf(unrelated_msg, sizeof unrelated_msg, "%s", marin_last_error());
    return rc;
}

/* STYLE §3: the funnel turns "a pending allocation failure" of the call
 * into MARIN_ENOMEM. An allocation failure that an earlier call absorbed
 * (marin_task_fail returns MARIN_ETASK, not through the funnel) must not
 * turn a later, unrelated EINVAL on that thread into MARIN_ENOMEM. */
START_TEST(test_error_stale_oom_not_blamed_on_next_call)
{
#if MARIN_FAULT_INJECTION
    ck_assert_marin(marin_register_task("err_fail_oom", fail_oom_task, NULL), MARIN_OK);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?max_threads=1", &rt), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "err_fail_oom", NULL, 0, NULL, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_ETASK);
    ck_assert_msg(unrelated_rc == MARIN_EINVAL,
                  "set_max_retries(NULL) after an absorbed allocation failure returned "
                  "%d (%s): '%s'", unrelated_rc, marin_strerror(unrelated_rc),
                  unrelated_msg);
    ck_assert_msg(strstr(unrelated_msg, "marin_task_options_set_max_retries"),
                  "message: '%s'", unrelated_msg);
    marin_future_release(f);
    marin_runtime_close(rt);
#endif
}
END_TEST

START_TEST(test_error_version)
{
    ck_assert_uint_eq(marin_version(), (unsigned)MARIN_VERSION_HEX);
    ck_assert_uint_eq((unsigned)MARIN_VERSION_HEX,
                      ((unsigned)MARIN_VERSION_MAJOR << 16) |
                          ((unsigned)MARIN_VERSION_MINOR << 8) |
                          (unsigned)MARIN_VERSION_PATCH);
    ck_assert_int_ge(MARIN_VERSION_MAJOR, 0);
    ck_assert_int_ge(MARIN_VERSION_MINOR, 0);
    ck_assert_int_ge(MARIN_VERSION_PATCH, 0);
    ck_assert_int_lt(MARIN_VERSION_MINOR, 256);
    ck_assert_int_lt(MARIN_VERSION_PATCH, 256);
    char s[64];
    snprintf(s, sizeof s, "%d.%d.%d", MARIN_VERSION_MAJOR, MARIN_VERSION_MINOR,
             MARIN_VERSION_PATCH);
    ck_assert_str_eq(s, MARIN_VERSION_STRING);
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("error");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_error_codes_pinned);
    tcase_add_test(tc, test_error_strerror_distinct);
    tcase_add_test(tc, test_error_strerror_unknown);
    tcase_add_test(tc, test_error_last_error_initially_empty);
    tcase_add_test(tc, test_error_last_error_what_where_why);
    tcase_add_test(tc, test_error_last_error_cleared_on_success);
    tcase_add_test(tc, test_error_last_error_per_thread);
    tcase_add_test(tc, test_error_last_error_threads_race);
    tcase_add_test(tc, test_error_stale_oom_not_blamed_on_next_call);
    tcase_add_test(tc, test_error_version);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return marin_test_run(error_suite()); }
