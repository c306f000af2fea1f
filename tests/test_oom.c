/* The OOM loop (STYLE.md §7) over every constructor: for n = 0, 1, 2, ...
 * allow n allocations, call, and expect MARIN_ENOMEM with a message until
 * the call succeeds; nothing may leak (ASan) or crash.
 *
 * The fault-injection counter is process-wide and the runtime's threads
 * allocate too, so it is set immediately around the call under test and
 * reset right after, and the tasks used here allocate nothing. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "backend.h" /* marin__task_options_snapshot, registry lookup */
#include "marin_config.h"
#include "testutil.h"

#define OOM_MAX 10000

/* ---- tasks (registered per case: every case starts with an empty
 * registry, as Check forks each one) ---- */

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

static void register_tasks(void)
{
    ck_assert_marin(marin_register_task("oom_noop", noop_task, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("oom_gate", gate_task, NULL), MARIN_OK);
}

/* ---- the loop ---- */

typedef int (*oom_call_fn)(void *c);
typedef void (*oom_failed_fn)(void *c, long n);

/* Returns how many attempts failed before the call succeeded. */
static long oom_loop(const char *what, oom_call_fn call, oom_failed_fn failed, void *c)
{
    for (long n = 0; n < OOM_MAX; n++) {
        marin__test_fail_alloc_after(n);
        int rc = call(c);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            return n;
        ck_assert_msg(rc == MARIN_ENOMEM, "%s, %ld allocations allowed: %d (%s): %s",
                      what, n, rc, marin_strerror(rc), marin_last_error());
        ck_assert_msg(marin_last_error()[0] != '\0',
                      "%s, %ld allocations allowed: ENOMEM without a message", what, n);
        if (failed)
            failed(c, n);
    }
    ck_abort_msg("%s never succeeded", what);
    return -1;
}

/* ---- resources, options ---- */

typedef struct {
    marin_resources_t *r;
    marin_task_options_t *o;
    marin_map_options_t *m;
} objs;

static int call_resources_parse(void *c)
{
    return marin_resources_parse("cpus=2,memory=4GiB,TPU=4", &((objs *)c)->r);
}

static int call_resources_create(void *c)
{
    return marin_resources_create(&((objs *)c)->r);
}

static int call_task_options_create(void *c)
{
    return marin_task_options_create(&((objs *)c)->o);
}

static int call_map_options_create(void *c)
{
    return marin_map_options_create(&((objs *)c)->m);
}

static void objs_still_null(void *c, long n)
{
    objs *o = c;
    ck_assert_msg(o->r == NULL && o->o == NULL && o->m == NULL,
                  "n=%ld: *out not NULL after a failure", n);
}

START_TEST(test_oom_resources_parse)
{
    objs o = {0};
    ck_assert_int_gt(oom_loop("marin_resources_parse", call_resources_parse,
                              objs_still_null, &o), 0);
    ck_assert_double_eq(marin_resources_get(o.r, "cpus"), 2.0);
    ck_assert_double_eq(marin_resources_get(o.r, "TPU"), 4.0);
    ck_assert_double_eq(marin_resources_get(o.r, "memory"), 4.0 * 1024 * 1024 * 1024);
    marin_resources_destroy(o.r);
}
END_TEST

START_TEST(test_oom_resources_create)
{
    objs o = {0};
    ck_assert_int_gt(oom_loop("marin_resources_create", call_resources_create,
                              objs_still_null, &o), 0);
    ck_assert_ptr_nonnull(o.r);
    ck_assert_marin(marin_resources_set(o.r, "cpus", 1), MARIN_OK);
    marin_resources_destroy(o.r);
}
END_TEST

START_TEST(test_oom_task_options_create)
{
    objs o = {0};
    ck_assert_int_gt(oom_loop("marin_task_options_create", call_task_options_create,
                              objs_still_null, &o), 0);
    ck_assert_ptr_nonnull(o.o);
    ck_assert_marin(marin_task_options_set_max_retries(o.o, 1), MARIN_OK);
    marin_task_options_destroy(o.o);
}
END_TEST

START_TEST(test_oom_map_options_create)
{
    objs o = {0};
    ck_assert_int_gt(oom_loop("marin_map_options_create", call_map_options_create,
                              objs_still_null, &o), 0);
    ck_assert_ptr_nonnull(o.m);
    ck_assert_marin(marin_map_options_set_max_in_flight(o.m, 3), MARIN_OK);
    marin_map_options_destroy(o.m);
}
END_TEST

/* ---- task option setters ---- */

typedef struct {
    marin_task_options_t *o;
    marin_resources_t *r;
    int which;
    const marin__topts *before; /* snapshot before the loop */
} setter_ctx;

enum {
    SET_RESOURCES, SET_MAX_RETRIES, SET_RETRY_EXC, SET_TIMEOUT, SET_ENV_NEW,
    SET_ENV_REPLACE, SET_ENV_REMOVE, SET_ENV_REMOVE_ABSENT, SET_LABEL, SET_LABEL_CLEAR,
    NSETTERS
};
static const char *const setter_names[NSETTERS] = {
    "set_resources", "set_max_retries", "set_retry_exceptions", "set_timeout_ms",
    "set_env (new key)", "set_env (replace)", "set_env (remove)",
    "set_env (remove absent)", "set_label", "set_label (clear)",
};

static int call_setter(void *c)
{
    setter_ctx *s = c;
    switch (s->which) {
    case SET_RESOURCES: return marin_task_options_set_resources(s->o, s->r);
    case SET_MAX_RETRIES: return marin_task_options_set_max_retries(s->o, 7);
    case SET_RETRY_EXC: return marin_task_options_set_retry_exceptions(s->o, 1);
    case SET_TIMEOUT: return marin_task_options_set_timeout_ms(s->o, 1234);
    case SET_ENV_NEW: return marin_task_options_set_env(s->o, "NEW", "new-value");
    case SET_ENV_REPLACE: return marin_task_options_set_env(s->o, "B", "bee");
    case SET_ENV_REMOVE: return marin_task_options_set_env(s->o, "A", NULL);
    case SET_ENV_REMOVE_ABSENT: return marin_task_options_set_env(s->o, "ZZ", NULL);
    case SET_LABEL: return marin_task_options_set_label(s->o, "new label");
    case SET_LABEL_CLEAR: return marin_task_options_set_label(s->o, NULL);
    }
    return MARIN_EINVAL;
}

static const marin__topts *peek(marin_task_options_t *o)
{
    marin__topts *t = marin__task_options_snapshot(o);
    marin__topts_release(t); /* o still holds it */
    return t;
}

/* A failed setter changes nothing: the options keep the same snapshot. */
static void setter_unchanged(void *c, long n)
{
    setter_ctx *s = c;
    ck_assert_msg(peek(s->o) == s->before, "%s, n=%ld: options changed by a failed call",
                  setter_names[s->which], n);
}

static const char *env_of(const marin__topts *t, const char *key)
{
    for (size_t i = 0; i < t->nenv; i++)
        if (strcmp(t->env_keys[i], key) == 0)
            return t->env_values[i];
    return NULL;
}

START_TEST(test_oom_task_option_setters)
{
    for (int w = 0; w < NSETTERS; w++) {
        setter_ctx s = {0};
        s.which = w;
        ck_assert_marin(marin_task_options_create(&s.o), MARIN_OK);
        ck_assert_marin(marin_resources_parse("cpus=0.5,memory=1GiB", &s.r), MARIN_OK);
        /* state worth cloning: env and a label */
        ck_assert_marin(marin_task_options_set_env(s.o, "A", "1"), MARIN_OK);
        ck_assert_marin(marin_task_options_set_env(s.o, "B", "2"), MARIN_OK);
        ck_assert_marin(marin_task_options_set_env(s.o, "C", "3"), MARIN_OK);
        ck_assert_marin(marin_task_options_set_label(s.o, "old label"), MARIN_OK);
        s.before = peek(s.o);
        long fails = oom_loop(setter_names[w], call_setter, setter_unchanged, &s);
        ck_assert_msg(fails > 0, "%s allocates nothing?", setter_names[w]);

        const marin__topts *t = peek(s.o);
        ck_assert_ptr_ne(t, s.before);
        /* the change took effect; everything else survived the copy */
        const char *want_a = w == SET_ENV_REMOVE ? NULL : "1";
        const char *a = env_of(t, "A");
        ck_assert_msg((want_a == NULL && a == NULL) ||
                          (want_a && a && strcmp(a, want_a) == 0),
                      "%s: A is %s", setter_names[w], a ? a : "(null)");
        ck_assert_str_eq(env_of(t, "B"), w == SET_ENV_REPLACE ? "bee" : "2");
        ck_assert_str_eq(env_of(t, "C"), "3");
        if (w == SET_ENV_NEW)
            ck_assert_str_eq(env_of(t, "NEW"), "new-value");
        else
            ck_assert_ptr_null(env_of(t, "NEW"));
        ck_assert_uint_eq(t->nenv, w == SET_ENV_NEW ? 4 : w == SET_ENV_REMOVE ? 2 : 3);
        if (w == SET_LABEL_CLEAR)
            ck_assert_ptr_null(t->label);
        else
            ck_assert_str_eq(t->label, w == SET_LABEL ? "new label" : "old label");
        ck_assert_int_eq(t->max_retries, w == SET_MAX_RETRIES ? 7 : 3);
        ck_assert_int_eq(t->retry_exceptions, w == SET_RETRY_EXC);
        ck_assert_int_eq((int)t->timeout_ms, w == SET_TIMEOUT ? 1234 : 0);
        if (w == SET_RESOURCES)
            ck_assert_double_eq(marin_resources_get(&t->res, "cpus"), 0.5);
        else
            ck_assert_double_eq(marin_resources_get(&t->res, "cpus"), 1.0);
        marin_resources_destroy(s.r);
        marin_task_options_destroy(s.o);
    }
}
END_TEST

/* ---- runtime ---- */

typedef struct {
    const char *uri;
    marin_runtime_t *rt;
} open_ctx;

static int call_open(void *c)
{
    open_ctx *o = c;
    return marin_runtime_open(o->uri, &o->rt);
}

static void open_failed(void *c, long n)
{
    ck_assert_msg(((open_ctx *)c)->rt == NULL, "n=%ld: *out not NULL", n);
}

static void capacity_text(marin_runtime_t *rt, char *buf, size_t cap)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    ck_assert_marin(marin_runtime_capacity(rt, r), MARIN_OK);
    ck_assert_int_ge(marin_resources_format(r, buf, cap), 0);
    marin_resources_destroy(r);
}

START_TEST(test_oom_runtime_open)
{
    register_tasks();
    const char *uri = "local://?resources=cpus=2";
    /* reference: the same URI without fault injection */
    marin_runtime_t *ref = NULL;
    ck_assert_marin(marin_runtime_open(uri, &ref), MARIN_OK);
    char want[512], got[512];
    capacity_text(ref, want, sizeof want);
    marin_runtime_close(ref);

    open_ctx o = {uri, NULL};
    ck_assert_int_gt(oom_loop("marin_runtime_open", call_open, open_failed, &o), 0);
    ck_assert_ptr_nonnull(o.rt);
    /* an allocation failure was not papered over with other values */
    capacity_text(o.rt, got, sizeof got);
    ck_assert_str_eq(got, want);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(o.rt, "oom_noop", NULL, 0, NULL, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(o.rt);
}
END_TEST

/* ---- submission ---- */

typedef struct {
    marin_runtime_t *rt;
    const char *task;
    const void *arg;
    size_t len;
    marin_task_options_t *opts;
    marin_future_t *const *deps;
    size_t ndeps;
    marin_future_t *f;
} submit_ctx;

static int call_submit(void *c)
{
    submit_ctx *s = c;
    return marin_submit(s->rt, s->task, s->arg, s->len, s->opts, &s->f);
}

static int call_submit_after(void *c)
{
    submit_ctx *s = c;
    return marin_submit_after(s->rt, s->task, s->arg, s->len, s->opts, s->deps,
                              s->ndeps, &s->f);
}

static void submit_failed(void *c, long n)
{
    ck_assert_msg(((submit_ctx *)c)->f == NULL, "n=%ld: *out not NULL", n);
}

/* A one-cpu runtime whose cpu is held by a gate task until open_gate(). */
static marin_runtime_t *open_gated(marin_future_t **gate)
{
    atomic_store(&gate_open, 0);
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://?resources=cpus=1", &rt), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "oom_gate", NULL, 0, NULL, gate), MARIN_OK);
    for (int i = 0; i < 5000 && marin_future_state(*gate) != MARIN_FUTURE_RUNNING; i++)
        sleep_ms(1);
    ck_assert_int_eq(marin_future_state(*gate), MARIN_FUTURE_RUNNING);
    return rt;
}

START_TEST(test_oom_submit)
{
    register_tasks();
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    char arg[64];
    memset(arg, 'a', sizeof arg);
    /* a resource shape the backend has not seen: its queue is made here */
    submit_ctx s = {rt, "oom_noop", arg, sizeof arg, opts_with_resources("cpus=0.5"), NULL, 0, NULL};
    ck_assert_int_gt(oom_loop("marin_submit", call_submit, submit_failed, &s), 0);
    ck_assert_marin(marin_future_get(s.f, 30000, NULL, NULL), MARIN_OK);
    marin_future_release(s.f);

    /* default options, no argument */
    submit_ctx d = {rt, "oom_noop", NULL, 0, NULL, NULL, 0, NULL};
    ck_assert_int_gt(oom_loop("marin_submit (defaults)", call_submit, submit_failed, &d),
                     0);
    ck_assert_marin(marin_future_get(d.f, 30000, NULL, NULL), MARIN_OK);
    marin_future_release(d.f);
    marin_task_options_destroy(s.opts);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_oom_submit_after_pending_deps)
{
    register_tasks();
    marin_future_t *gate = NULL;
    marin_runtime_t *rt = open_gated(&gate);
    marin_future_t *queued = NULL;
    ck_assert_marin(marin_submit(rt, "oom_noop", NULL, 0, NULL, &queued), MARIN_OK);
    marin_future_t *deps[2] = {gate, queued};
    char arg[16] = "dependent";
    submit_ctx s = {rt, "oom_noop", arg, sizeof arg, opts_with_resources("cpus=0.5"), deps, 2, NULL};
    ck_assert_int_gt(oom_loop("marin_submit_after", call_submit_after, submit_failed, &s),
                     0);
    ck_assert_int_eq(marin_future_state(s.f), MARIN_FUTURE_PENDING);
    ck_assert_int_eq(marin_future_state(gate), MARIN_FUTURE_RUNNING);
    atomic_store(&gate_open, 1);
    ck_assert_marin(marin_future_get(s.f, 30000, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(gate, 0, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(queued, 0, NULL, NULL), MARIN_OK);
    marin_future_release(s.f);
    marin_future_release(gate);
    marin_future_release(queued);
    marin_task_options_destroy(s.opts);
    marin_runtime_close(rt);
}
END_TEST

/* Dependencies that already succeeded: the task is handed to the backend
 * inside the call, so an allocation failure there must surface as the
 * call's MARIN_ENOMEM, not as an OK whose future then fails. */
START_TEST(test_oom_submit_after_finished_deps)
{
    register_tasks();
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_future_t *dep = NULL;
    ck_assert_marin(marin_submit(rt, "oom_noop", NULL, 0, NULL, &dep), MARIN_OK);
    ck_assert_marin(marin_future_get(dep, 30000, NULL, NULL), MARIN_OK);
    marin_future_t *deps[1] = {dep};
    submit_ctx s = {rt, "oom_noop", NULL, 0, opts_with_resources("cpus=0.25"), deps, 1, NULL};
    ck_assert_int_gt(oom_loop("marin_submit_after (finished deps)", call_submit_after,
                              submit_failed, &s), 0);
    int rc = marin_future_get(s.f, 30000, NULL, NULL);
    ck_assert_msg(rc == MARIN_OK, "marin_submit_after returned OK but its task failed: "
                  "%d (%s): %s", rc, marin_strerror(rc), marin_future_error(s.f));
    marin_future_release(s.f);
    marin_future_release(dep);
    marin_task_options_destroy(s.opts);
    marin_runtime_close(rt);
}
END_TEST

/* ---- on_done ---- */

typedef struct {
    atomic_int calls;
    atomic_int frees;
    atomic_int bad_order; /* free before call */
} done_count;

static void done_fn(marin_future_t *f, int status, void *ud)
{
    (void)f;
    (void)status;
    done_count *d = ud;
    atomic_fetch_add(&d->calls, 1);
}

static void done_free(void *ud)
{
    done_count *d = ud;
    if (atomic_load(&d->calls) == 0)
        atomic_store(&d->bad_order, 1);
    atomic_fetch_add(&d->frees, 1);
}

typedef struct {
    marin_future_t *f;
    done_count *d;
} on_done_ctx;

static int call_on_done(void *c)
{
    on_done_ctx *o = c;
    return marin_future_on_done(o->f, done_fn, o->d, done_free);
}

static void wait_for_frees(done_count *d, int want)
{
    for (int i = 0; i < 10000 && atomic_load(&d->frees) < want; i++)
        sleep_ms(1);
}

START_TEST(test_oom_on_done_pending)
{
    register_tasks();
    marin_future_t *gate = NULL;
    marin_runtime_t *rt = open_gated(&gate);
    done_count d = {0};
    on_done_ctx o = {gate, &d};
    ck_assert_int_gt(oom_loop("marin_future_on_done", call_on_done, NULL, &o), 0);
    /* failed registrations never run fn nor free_userdata */
    ck_assert_int_eq(atomic_load(&d.calls), 0);
    ck_assert_int_eq(atomic_load(&d.frees), 0);
    atomic_store(&gate_open, 1);
    ck_assert_marin(marin_future_get(gate, 30000, NULL, NULL), MARIN_OK);
    wait_for_frees(&d, 1);
    sleep_ms(20); /* room for a stray extra call */
    ck_assert_int_eq(atomic_load(&d.calls), 1);
    ck_assert_int_eq(atomic_load(&d.frees), 1);
    ck_assert_int_eq(atomic_load(&d.bad_order), 0);
    marin_future_release(gate);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_oom_on_done_finished)
{
    register_tasks();
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "oom_noop", NULL, 0, NULL, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_OK);
    done_count d = {0};
    on_done_ctx o = {f, &d};
    ck_assert_int_gt(oom_loop("marin_future_on_done (finished)", call_on_done, NULL, &o),
                     0);
    wait_for_frees(&d, 1);
    sleep_ms(20);
    ck_assert_int_eq(atomic_load(&d.calls), 1);
    ck_assert_int_eq(atomic_load(&d.frees), 1);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- wait ---- */

typedef struct {
    marin_future_t *futs[3];
    size_t idx[3];
    size_t nready;
} wait_ctx;

static int call_wait(void *c)
{
    wait_ctx *w = c;
    w->nready = 99;
    return marin_wait(w->futs, 3, 2, 1, w->idx, &w->nready);
}

static void wait_failed(void *c, long n)
{
    ck_assert_msg(((wait_ctx *)c)->nready == 0, "n=%ld: nready %zu after a failure", n,
                  ((wait_ctx *)c)->nready);
}

START_TEST(test_oom_wait)
{
    register_tasks();
    marin_future_t *gate = NULL;
    marin_runtime_t *rt = open_gated(&gate);
    wait_ctx w;
    memset(&w, 0, sizeof w);
    w.futs[0] = gate;
    ck_assert_marin(marin_submit(rt, "oom_noop", NULL, 0, NULL, &w.futs[1]), MARIN_OK);
    ck_assert_marin(marin_submit(rt, "oom_noop", NULL, 0, NULL, &w.futs[2]), MARIN_OK);
    ck_assert_int_gt(oom_loop("marin_wait", call_wait, wait_failed, &w), 0);
    ck_assert_uint_eq(w.nready, 0); /* all pending behind the gate: timed out */

    atomic_store(&gate_open, 1);
    ck_assert_marin(marin_wait(w.futs, 3, 3, 30000, w.idx, &w.nready), MARIN_OK);
    ck_assert_uint_eq(w.nready, 3);
    for (int i = 0; i < 3; i++)
        marin_future_release(w.futs[i]);
    marin_runtime_close(rt);
}
END_TEST

/* ---- registration ---- */

typedef struct {
    const char *name;
} reg_ctx;

static int call_register(void *c)
{
    return marin_register_task(((reg_ctx *)c)->name, noop_task, NULL);
}

static void register_failed(void *c, long n)
{
    const char *name = ((reg_ctx *)c)->name;
    ck_assert_msg(marin__registry_find_task(name) == NULL,
                  "n=%ld: '%s' registered by a failed call", n, name);
}

START_TEST(test_oom_register_task)
{
    /* first registration (the table is made), then across several growths */
    int grew = 0;
    char name[64];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "oom_reg_%d", i);
        reg_ctx r = {name};
        long fails = oom_loop("marin_register_task", call_register, register_failed, &r);
        ck_assert_msg(fails >= 2, "%s: %ld failures", name, fails);
        if (fails > 2)
            grew++;
        ck_assert_ptr_nonnull(marin__registry_find_task(name));
        ck_assert_marin(marin_register_task(name, noop_task, NULL), MARIN_EEXIST);
    }
    ck_assert_int_ge(grew, 3); /* the first table, then 64 -> 128 -> 256 -> ... */
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "oom_reg_%d", i);
        ck_assert_msg(marin__registry_find_task(name) != NULL, "%s lost", name);
    }
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local", &rt), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, "oom_reg_299", NULL, 0, NULL, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, 30000, NULL, NULL), MARIN_OK);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

static Suite *oom_suite(void)
{
    Suite *s = suite_create("oom");
    TCase *tc = tcase_create("oom");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_oom_resources_parse);
    tcase_add_test(tc, test_oom_resources_create);
    tcase_add_test(tc, test_oom_task_options_create);
    tcase_add_test(tc, test_oom_task_option_setters);
    tcase_add_test(tc, test_oom_map_options_create);
    tcase_add_test(tc, test_oom_runtime_open);
    tcase_add_test(tc, test_oom_submit);
    tcase_add_test(tc, test_oom_submit_after_pending_deps);
    tcase_add_test(tc, test_oom_submit_after_finished_deps);
    tcase_add_test(tc, test_oom_on_done_pending);
    tcase_add_test(tc, test_oom_on_done_finished);
    tcase_add_test(tc, test_oom_wait);
    tcase_add_test(tc, test_oom_register_task);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
#if !MARIN_FAULT_INJECTION
    (void)oom_suite;
    fprintf(stderr, "skipped: built without -Dfault_injection=true\n");
    return 77;
#else
    return marin_test_run(oom_suite());
#endif
}
