/* The process-wide task registry: marin_register_task. Check forks each
 * case, so every case starts from an empty registry. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h" /* marin__registry_find_task */
#include "testutil.h"

/* Returns its userdata (an index) as 8 bytes, so the test sees which
 * registration ran. */
static int index_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    uint64_t v = (uint64_t)(uintptr_t)ud;
    return marin_task_return(ctx, &v, sizeof v);
}

static int other_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ctx;
    (void)arg;
    (void)len;
    (void)ud;
    return 0;
}

/* Run @p name on @p rt and return the index it reports. */
static uint64_t run_index(marin_runtime_t *rt, const char *name)
{
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, name, NULL, 0, NULL, &f), MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, 30000, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, sizeof(uint64_t));
    uint64_t v;
    memcpy(&v, data, sizeof v);
    marin_future_release(f);
    return v;
}

static void *idx(size_t i) { return (void *)(uintptr_t)i; }

START_TEST(test_registry_register_and_submit)
{
    ck_assert_marin(marin_register_task("reg_one", index_task, idx(7)), MARIN_OK);
    ck_assert_str_eq(marin_last_error(), "");
    ck_assert_marin(marin_register_task("reg_two", index_task, idx(8)), MARIN_OK);
    const marin__task_entry *e = marin__registry_find_task("reg_one");
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->name, "reg_one");
    ck_assert(e->fn == index_task);
    ck_assert_ptr_eq(e->userdata, idx(7));
    ck_assert_ptr_null(marin__registry_find_task("reg_three"));
    ck_assert_ptr_null(marin__registry_find_task("reg_on"));

    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_uint_eq(run_index(rt, "reg_one"), 7);
    ck_assert_uint_eq(run_index(rt, "reg_two"), 8);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "reg_three", NULL, 0, NULL, &f), MARIN_ENOTFOUND);
    ck_assert_lasterr_has("reg_three");
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_registry_name_is_copied)
{
    char name[32];
    snprintf(name, sizeof name, "reg_copied");
    ck_assert_marin(marin_register_task(name, index_task, idx(3)), MARIN_OK);
    memset(name, 'x', sizeof name - 1); /* the caller's buffer changes */
    ck_assert_ptr_nonnull(marin__registry_find_task("reg_copied"));
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_uint_eq(run_index(rt, "reg_copied"), 3);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_registry_duplicate)
{
    ck_assert_marin(marin_register_task("reg_dup", index_task, idx(1)), MARIN_OK);
    ck_assert_marin(marin_register_task("reg_dup", index_task, idx(2)), MARIN_EEXIST);
    ck_assert_lasterr_has("'reg_dup'");
    ck_assert_lasterr_has("marin_register_task");
    /* a different function or userdata makes no difference */
    ck_assert_marin(marin_register_task("reg_dup", other_task, NULL), MARIN_EEXIST);
    ck_assert_lasterr_has("reg_dup");
    /* the first registration is kept */
    const marin__task_entry *e = marin__registry_find_task("reg_dup");
    ck_assert_ptr_nonnull(e);
    ck_assert(e->fn == index_task);
    ck_assert_ptr_eq(e->userdata, idx(1));
    /* names differ by case and by prefix */
    ck_assert_marin(marin_register_task("REG_DUP", other_task, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("reg_du", other_task, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("reg_dup ", other_task, NULL), MARIN_OK);
}
END_TEST

START_TEST(test_registry_bad_names)
{
    char n255[MARIN_NAME_MAX + 1], n256[MARIN_NAME_MAX + 2], n1000[1001];
    memset(n255, 'a', MARIN_NAME_MAX);
    n255[MARIN_NAME_MAX] = '\0';
    memset(n256, 'b', MARIN_NAME_MAX + 1);
    n256[MARIN_NAME_MAX + 1] = '\0';
    memset(n1000, 'c', 1000);
    n1000[1000] = '\0';

    ck_assert_marin(marin_register_task(NULL, index_task, NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_register_task");
    ck_assert_marin(marin_register_task("reg_nofn", NULL, NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_register_task");
    ck_assert_ptr_null(marin__registry_find_task("reg_nofn"));
    ck_assert_marin(marin_register_task("", index_task, NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_register_task");
    ck_assert_marin(marin_register_task(n256, index_task, NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("255");
    ck_assert_marin(marin_register_task(n1000, index_task, NULL), MARIN_EINVAL);
    ck_assert_ptr_null(marin__registry_find_task(n256));

    /* exactly MARIN_NAME_MAX bytes is fine, and can be submitted */
    ck_assert_marin(marin_register_task(n255, index_task, idx(255)), MARIN_OK);
    ck_assert_marin(marin_register_task(n255, index_task, idx(0)), MARIN_EEXIST);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_uint_eq(run_index(rt, n255), 255);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_registry_thousands)
{
    enum { N = 5000 };
    char name[64];
    for (size_t i = 0; i < N; i++) {
        snprintf(name, sizeof name, "reg_many_%zu", i);
        ck_assert_marin(marin_register_task(name, index_task, idx(i)), MARIN_OK);
    }
    /* every one is found with its own userdata, through every growth */
    for (size_t i = 0; i < N; i++) {
        snprintf(name, sizeof name, "reg_many_%zu", i);
        const marin__task_entry *e = marin__registry_find_task(name);
        ck_assert_msg(e != NULL, "%s lost", name);
        ck_assert_str_eq(e->name, name);
        ck_assert_ptr_eq(e->userdata, idx(i));
    }
    ck_assert_ptr_null(marin__registry_find_task("reg_many_5000"));
    /* duplicates are still caught after growth */
    ck_assert_marin(marin_register_task("reg_many_0", index_task, NULL), MARIN_EEXIST);
    ck_assert_marin(marin_register_task("reg_many_4999", index_task, NULL), MARIN_EEXIST);

    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    const size_t pick[] = {0, 1, 63, 64, 65, 127, 128, 1023, 1024, 2500, 4095, 4999};
    for (size_t k = 0; k < sizeof pick / sizeof pick[0]; k++) {
        snprintf(name, sizeof name, "reg_many_%zu", pick[k]);
        ck_assert_uint_eq(run_index(rt, name), pick[k]);
    }
    marin_runtime_close(rt);
}
END_TEST

/* ---- concurrent registration ---- */

enum { NTHREADS = 8, PER_THREAD = 600, SHARED = 200 };

typedef struct {
    pthread_barrier_t *bar;
    size_t id;
    int won[SHARED];   /* 1 where this thread's registration of shared i won */
    int bad;           /* unexpected return codes */
} reg_arg;

static void *registrar(void *p)
{
    reg_arg *a = p;
    char name[64];
    pthread_barrier_wait(a->bar);
    for (size_t i = 0; i < PER_THREAD; i++) {
        /* own names, interleaved with racing for the shared ones */
        snprintf(name, sizeof name, "reg_t%zu_%zu", a->id, i);
        if (marin_register_task(name, index_task, idx(a->id * 100000 + i)) != MARIN_OK)
            a->bad++;
        if (i < SHARED) {
            size_t s = (i + a->id * 7) % SHARED;
            snprintf(name, sizeof name, "reg_shared_%zu", s);
            int rc = marin_register_task(name, index_task, idx(1000000 + a->id));
            if (rc == MARIN_OK)
                a->won[s] = 1;
            else if (rc != MARIN_EEXIST || !strstr(marin_last_error(), name))
                a->bad++;
        }
    }
    return NULL;
}

START_TEST(test_registry_concurrent)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NTHREADS);
    static reg_arg a[NTHREADS];
    pthread_t th[NTHREADS];
    for (size_t t = 0; t < NTHREADS; t++) {
        memset(&a[t], 0, sizeof a[t]);
        a[t].bar = &bar;
        a[t].id = t;
        ck_assert_int_eq(pthread_create(&th[t], NULL, registrar, &a[t]), 0);
    }
    for (size_t t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&bar);

    char name[64];
    for (size_t t = 0; t < NTHREADS; t++) {
        ck_assert_msg(a[t].bad == 0, "thread %zu: %d unexpected results", t, a[t].bad);
        for (size_t i = 0; i < PER_THREAD; i++) {
            snprintf(name, sizeof name, "reg_t%zu_%zu", t, i);
            const marin__task_entry *e = marin__registry_find_task(name);
            ck_assert_msg(e != NULL, "%s lost", name);
            ck_assert_ptr_eq(e->userdata, idx(t * 100000 + i));
        }
    }
    /* each shared name: exactly one winner, and the entry is the winner's */
    for (size_t s = 0; s < SHARED; s++) {
        int winners = 0;
        size_t who = 0;
        for (size_t t = 0; t < NTHREADS; t++)
            if (a[t].won[s]) {
                winners++;
                who = t;
            }
        ck_assert_msg(winners == 1, "reg_shared_%zu has %d winners", s, winners);
        snprintf(name, sizeof name, "reg_shared_%zu", s);
        const marin__task_entry *e = marin__registry_find_task(name);
        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_eq(e->userdata, idx(1000000 + who));
    }

    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    ck_assert_uint_eq(run_index(rt, "reg_t3_599"), 3 * 100000 + 599);
    ck_assert_uint_eq(run_index(rt, "reg_t0_0"), 0);
    marin_runtime_close(rt);
}
END_TEST

/* Registration while tasks are being submitted and run on another thread. */
typedef struct {
    marin_runtime_t *rt;
    atomic_int stop;
    int bad;
} submitter_arg;

static void *submitter(void *p)
{
    submitter_arg *a = p;
    while (!atomic_load(&a->stop)) {
        marin_future_t *f = NULL;
        if (marin_submit(a->rt, "reg_live", NULL, 0, NULL, &f) != MARIN_OK) {
            a->bad++;
            continue;
        }
        if (marin_future_get(f, 30000, NULL, NULL) != MARIN_OK)
            a->bad++;
        marin_future_release(f);
    }
    return NULL;
}

START_TEST(test_registry_register_while_running)
{
    ck_assert_marin(marin_register_task("reg_live", index_task, idx(1)), MARIN_OK);
    submitter_arg a = {0};
    ck_assert_marin(marin_runtime_open("local", &a.rt), MARIN_OK);
    atomic_init(&a.stop, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, submitter, &a), 0);
    char name[64];
    for (size_t i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "reg_during_%zu", i);
        ck_assert_marin(marin_register_task(name, index_task, idx(i)), MARIN_OK);
    }
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.bad, 0);
    ck_assert_uint_eq(run_index(a.rt, "reg_during_2999"), 2999);
    marin_runtime_close(a.rt);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_registry_register_and_submit);
    tcase_add_test(tc, test_registry_name_is_copied);
    tcase_add_test(tc, test_registry_duplicate);
    tcase_add_test(tc, test_registry_bad_names);
    tcase_add_test(tc, test_registry_thousands);
    tcase_add_test(tc, test_registry_concurrent);
    tcase_add_test(tc, test_registry_register_while_running);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return marin_test_run(registry_suite()); }
