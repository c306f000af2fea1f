/* Tests for actors (include/marin/actor.h) on the local backend: class
 * builders and registration, options, creation, calls and their order,
 * concurrency, tasks beside actors, resources, names, ids, restarts and
 * checkpoints, kill, lifetime at close, and the OOM loops. */
#define _GNU_SOURCE
#define MARIN_EXPERIMENTAL 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "backend.h" /* marin__registry_find_actor_class */
#include "marin_config.h"
#include "testutil.h"

#include "marin/experimental.h"

#define RT1 "local://?resources=cpus=1"
#define RT2 "local://?resources=cpus=2"
#define WAIT 10000 /* ms: generous bound on anything that must happen */

/* ---- shared state (each case runs in its own forked process) ---- */

static atomic_int g_init;          /* constructor runs that succeeded */
static atomic_int g_init_entered;  /* constructor runs begun */
static atomic_int g_restore;       /* restore hooks that succeeded */
static atomic_int g_fini;          /* destructor runs */
static atomic_int g_bad_fini;      /* fini on an instance not alive */
static atomic_int g_hold_init;     /* constructors wait while set */
static atomic_int g_ctor_fail;     /* constructors fail while set */
static atomic_int g_saves;         /* checkpoint hooks run */
static atomic_int g_save_fail;     /* checkpoint hooks fail while set */
static atomic_int g_save_block;    /* checkpoint hooks wait for g_gate while set */
static atomic_int g_in_save;       /* a checkpoint hook is running */
static atomic_int g_fini_in_save;  /* fini ran while a checkpoint hook ran */
static atomic_int g_gate;          /* opens gated methods */
static atomic_int g_started;       /* gated methods entered */
static atomic_int g_saw_cancel;    /* a method saw marin_task_cancelled */
static atomic_int g_crash_once;    /* attempts of crash_once */
static atomic_int g_order_bad;     /* "ordered" saw a call out of order */
static atomic_int g_in_method;     /* "serial" methods running now */
static atomic_int g_overlap;       /* "serial" ran beside itself */
static atomic_int g_serial_calls;
static atomic_int g_thread_last[8];
static atomic_int g_thread_bad;
static atomic_int g_barrier;
static atomic_int g_cur;
static atomic_int g_max;
static atomic_int g_task_gate;
static atomic_int g_task_started;

enum { LIVE = 0x11FE, DEAD = 0xDEAD };

typedef struct counter {
    char pad[64];     /* keeps the marker away from allocator metadata */
    atomic_int magic; /* LIVE while the instance exists */
    int64_t value;
    int last;         /* last "ordered" argument */
} counter;

static void track_enter(void)
{
    int now = atomic_fetch_add(&g_cur, 1) + 1;
    int max = atomic_load(&g_max);
    while (now > max && !atomic_compare_exchange_weak(&g_max, &max, now))
        ;
}

static void track_exit(void) { atomic_fetch_sub(&g_cur, 1); }

/* Wait for g_gate (or cancellation), at most WAIT ms; 1 if the gate opened. */
static int wait_gate(marin_task_ctx_t *ctx)
{
    int64_t end = now_ms() + WAIT;
    while (!atomic_load(&g_gate)) {
        if (ctx && marin_task_cancelled(ctx)) {
            atomic_store(&g_saw_cancel, 1);
            return 0;
        }
        if (now_ms() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

static counter *counter_new(int64_t v)
{
    counter *c = calloc(1, sizeof *c);
    if (c) {
        atomic_store(&c->magic, LIVE);
        c->value = v;
    }
    return c;
}

/* ---- the Counter class ---- */

static int c_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    atomic_fetch_add(&g_init_entered, 1);
    int64_t end = now_ms() + WAIT;
    while (atomic_load(&g_hold_init) && now_ms() < end)
        sleep_ms(1);
    if (atomic_load(&g_ctor_fail))
        return marin_task_fail(ctx, "ctor exploded on purpose");
    counter *c = counter_new(arg_int(arg, len));
    if (!c)
        return MARIN_ENOMEM;
    *self = c;
    atomic_fetch_add(&g_init, 1);
    return 0;
}

static void c_fini(void *self)
{
    counter *c = self;
    if (atomic_load(&g_in_save))
        atomic_store(&g_fini_in_save, 1);
    if (!c || atomic_exchange(&c->magic, DEAD) != LIVE)
        atomic_store(&g_bad_fini, 1);
    atomic_fetch_add(&g_fini, 1);
    free(c);
}

static int c_save(marin_task_ctx_t *ctx, void *self)
{
    counter *c = self;
    atomic_fetch_add(&g_saves, 1);
    atomic_store(&g_in_save, 1);
    if (atomic_load(&g_save_block)) {
        atomic_fetch_add(&g_started, 1);
        wait_gate(NULL);
    }
    int live = atomic_load(&c->magic) == LIVE;
    int64_t v = c->value;
    atomic_store(&g_in_save, 0);
    if (!live)
        return marin_task_fail(ctx, "save ran on a destroyed instance");
    if (atomic_load(&g_save_fail))
        return marin_task_fail(ctx, "save refused on purpose");
    return marin_task_return(ctx, &v, sizeof v);
}

static int c_restore(marin_task_ctx_t *ctx, const void *data, size_t len, void **self)
{
    int64_t v;
    if (len != sizeof v)
        return marin_task_fail(ctx, "restore: bad checkpoint length");
    memcpy(&v, data, sizeof v);
    counter *c = counter_new(v);
    if (!c)
        return MARIN_ENOMEM;
    *self = c;
    atomic_fetch_add(&g_restore, 1);
    return 0;
}

static int ret_value(marin_task_ctx_t *ctx, counter *c)
{
    int64_t v = c->value;
    return marin_task_return(ctx, &v, sizeof v);
}

static int m_add(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    counter *c = self;
    if (atomic_load(&c->magic) != LIVE)
        return marin_task_fail(ctx, "add on a destroyed instance");
    c->value += arg_int(arg, len);
    return ret_value(ctx, c);
}

static int m_get(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return ret_value(ctx, self);
}

static int m_echo(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    return marin_task_return(ctx, arg, len);
}

/* Argument k must be one more than the last one seen. */
static int m_ordered(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    counter *c = self;
    int k = arg_int(arg, len);
    if (k != c->last + 1)
        atomic_store(&g_order_bad, 1);
    c->last = k;
    return marin_task_return(ctx, &k, sizeof k);
}

static int m_crash(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    (void)arg;
    (void)len;
    return marin_test_kill_worker(ctx);
}

static int m_crash_gated(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    (void)arg;
    (void)len;
    atomic_fetch_add(&g_started, 1);
    wait_gate(NULL);
    return marin_test_kill_worker(ctx);
}

/* Idempotent: the first attempt dies, later ones add 1. */
static int m_crash_once(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    if (atomic_fetch_add(&g_crash_once, 1) == 0)
        return marin_test_kill_worker(ctx);
    counter *c = self;
    c->value += 1;
    return ret_value(ctx, c);
}

static int m_fail(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    (void)arg;
    (void)len;
    return marin_task_fail(ctx, "method failed on purpose");
}

/* Returns its argument as the method's code. */
static int m_code(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)ctx;
    (void)self;
    return arg_int(arg, len);
}

/* Waits for g_gate or cancellation; result "opened" when the gate opened. */
static int m_block(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    (void)arg;
    (void)len;
    atomic_fetch_add(&g_started, 1);
    if (wait_gate(ctx))
        return marin_task_return(ctx, "opened", 6);
    return marin_task_fail(ctx, "not opened");
}

/* Detects overlap and per-caller order: arg = {caller, seq}. */
static int m_serial(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    int v[2] = {0, 0};
    if (len == sizeof v)
        memcpy(v, arg, sizeof v);
    if (atomic_fetch_add(&g_in_method, 1) != 0)
        atomic_store(&g_overlap, 1);
    if (v[0] >= 0 && v[0] < 8) {
        if (atomic_load(&g_thread_last[v[0]]) != v[1] - 1)
            atomic_store(&g_thread_bad, 1);
        atomic_store(&g_thread_last[v[0]], v[1]);
    }
    for (int i = 0; i < 20; i++)
        sched_yield();
    counter *c = self;
    c->value++;
    atomic_fetch_add(&g_serial_calls, 1);
    atomic_fetch_sub(&g_in_method, 1);
    return marin_task_return(ctx, v, sizeof v);
}

/* arg = {target, timeout_ms}: waits until target calls entered at once. */
static int m_barrier(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    int v[2] = {1, 1000};
    if (len == sizeof v)
        memcpy(v, arg, sizeof v);
    track_enter();
    atomic_fetch_add(&g_barrier, 1);
    int64_t end = now_ms() + v[1];
    int ok = 1;
    while (atomic_load(&g_barrier) < v[0]) {
        if (now_ms() > end) {
            ok = 0;
            break;
        }
        sleep_ms(1);
    }
    track_exit();
    return ok ? 0 : marin_task_fail(ctx, "barrier timed out");
}

/* Submits t_echo from inside the method and waits for it. */
static int m_nested(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    marin_future_t *f = NULL;
    int rc = marin_submit(marin_task_runtime(ctx), "t_echo", arg, len, NULL, &f);
    if (rc != MARIN_OK)
        return rc;
    const void *data = NULL;
    size_t n = 0;
    rc = marin_future_get(f, WAIT, &data, &n);
    if (rc == MARIN_OK)
        rc = marin_task_return(ctx, data, n);
    marin_future_release(f);
    return rc;
}

typedef struct {
    const char *name;
    marin_method_fn fn;
    unsigned flags;
} method_def;

static const method_def k_methods[] = {
    {"add", m_add, 0},           {"get", m_get, 0},
    {"echo", m_echo, 0},         {"ordered", m_ordered, 0},
    {"crash", m_crash, 0},       {"crash_gated", m_crash_gated, 0},
    {"crash_once", m_crash_once, MARIN_METHOD_IDEMPOTENT},
    {"fail", m_fail, 0},         {"code", m_code, 0},
    {"block", m_block, 0},       {"serial", m_serial, 0},
    {"barrier", m_barrier, 0},   {"nested", m_nested, 0},
    {"block_idem", m_block, MARIN_METHOD_IDEMPOTENT},
};

/* Register the Counter class as @p name, with checkpoint hooks or not. */
static void register_counter(const char *name, int hooks)
{
    marin_actor_class_t *c = NULL;
    ck_assert_marin(marin_actor_class_create(name, c_init, c_fini, &c), MARIN_OK);
    for (size_t i = 0; i < sizeof k_methods / sizeof k_methods[0]; i++)
        ck_assert_marin(marin_actor_class_add_method(c, k_methods[i].name, k_methods[i].fn,
                                                     k_methods[i].flags),
                        MARIN_OK);
    if (hooks)
        ck_assert_marin(marin_actor_class_set_checkpoint(c, c_save, c_restore), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c), MARIN_OK);
    marin_actor_class_destroy(c);
}

/* ---- tasks ---- */

static int t_echo(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    return marin_task_return(ctx, arg, len);
}

/* Gets an actor from the id given as argument, calls "add" 1, returns the
 * value. */
static int t_call_actor(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    char id[256];
    if (len == 0 || len >= sizeof id)
        return marin_task_fail(ctx, "bad id argument");
    memcpy(id, arg, len);
    id[len] = '\0';
    marin_actor_t *a = NULL;
    int rc = marin_actor_from_id(marin_task_runtime(ctx), id, &a);
    if (rc != MARIN_OK)
        return rc;
    marin_future_t *f = NULL;
    int one = 1;
    rc = marin_actor_call(a, "add", &one, sizeof one, &f);
    if (rc == MARIN_OK) {
        const void *data = NULL;
        size_t n = 0;
        rc = marin_future_get(f, WAIT, &data, &n);
        if (rc == MARIN_OK)
            rc = marin_task_return(ctx, data, n);
        marin_future_release(f);
    }
    marin_actor_release(a);
    return rc;
}

/* Calls "nested" on the actor whose id is the argument (a task waiting on
 * an actor that waits on a task). */
static int t_call_nested(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    char id[256];
    if (len == 0 || len >= sizeof id)
        return marin_task_fail(ctx, "bad id argument");
    memcpy(id, arg, len);
    id[len] = '\0';
    marin_actor_t *a = NULL;
    int rc = marin_actor_from_id(marin_task_runtime(ctx), id, &a);
    if (rc != MARIN_OK)
        return rc;
    marin_future_t *f = NULL;
    rc = marin_actor_call(a, "nested", "deep", 4, &f);
    if (rc == MARIN_OK) {
        const void *data = NULL;
        size_t n = 0;
        rc = marin_future_get(f, WAIT, &data, &n);
        if (rc == MARIN_OK)
            rc = marin_task_return(ctx, data, n);
        marin_future_release(f);
    }
    marin_actor_release(a);
    return rc;
}

static int t_gate(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    atomic_fetch_add(&g_task_started, 1);
    int64_t end = now_ms() + WAIT;
    while (!atomic_load(&g_task_gate) && !marin_task_cancelled(ctx) && now_ms() < end)
        sleep_ms(1);
    return 0;
}

static void register_tasks(void)
{
    ck_assert_marin(marin_register_task("t_echo", t_echo, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("t_call_actor", t_call_actor, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("t_call_nested", t_call_nested, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("t_gate", t_gate, NULL), MARIN_OK);
    ck_assert_marin(marin_register_task("t_noop", noop_task, NULL), MARIN_OK);
}

/* Both classes and the tasks. */
static void setup_all(void)
{
    register_counter("Counter", 0);
    register_counter("CCounter", 1);
    register_tasks();
}

/* ---- helpers ---- */

static marin_actor_options_t *opts_new(void)
{
    marin_actor_options_t *o = NULL;
    ck_assert_marin(marin_actor_options_create(&o), MARIN_OK);
    ck_assert_ptr_nonnull(o);
    return o;
}

static marin_actor_t *create(marin_runtime_t *rt, const char *cls, int initial,
                             const marin_actor_options_t *o)
{
    marin_actor_t *a = NULL;
    ck_assert_marin(marin_actor_create(rt, cls, &initial, sizeof initial, o, &a), MARIN_OK);
    ck_assert_ptr_nonnull(a);
    return a;
}

static marin_future_t *call_int(marin_actor_t *a, const char *method, int arg)
{
    marin_future_t *f = NULL;
    ck_assert_marin(marin_actor_call(a, method, &arg, sizeof arg, &f), MARIN_OK);
    ck_assert_ptr_nonnull(f);
    return f;
}

/* The int64 result of a future (asserting success); releases it. */
static int64_t take_i64(marin_future_t *f)
{
    const void *data = NULL;
    size_t len = 0;
    int rc = marin_future_get(f, WAIT, &data, &len);
    ck_assert_msg(rc == MARIN_OK, "call failed: %d (%s): %s", rc, marin_strerror(rc),
                  marin_future_error(f));
    ck_assert_uint_eq(len, sizeof(int64_t));
    int64_t v;
    memcpy(&v, data, sizeof v);
    marin_future_release(f);
    return v;
}

static int64_t call_i64(marin_actor_t *a, const char *method, int arg)
{
    return take_i64(call_int(a, method, arg));
}

/* The future's code (it must finish within WAIT); releases it. */
static int take_rc(marin_future_t *f)
{
    int rc = marin_future_get(f, WAIT, NULL, NULL);
    ck_assert_msg(rc != MARIN_ETIMEDOUT, "future did not finish in %d ms", WAIT);
    marin_future_release(f);
    return rc;
}

/* The future's code, asserting it is @p want and its error mentions
 * @p needle (when not NULL); releases it. */
static void expect_fail(marin_future_t *f, int want, const char *needle)
{
    int rc = marin_future_get(f, WAIT, NULL, NULL);
    ck_assert_msg(rc == want, "future ended %d (%s), wanted %d (%s): %s", rc,
                  marin_strerror(rc), want, marin_strerror(want), marin_future_error(f));
    if (needle)
        ck_assert_msg(strstr(marin_future_error(f), needle) != NULL,
                      "future error '%s' lacks '%s'", marin_future_error(f), needle);
    marin_future_release(f);
}

/* ====================================================================== */
/* class builder                                                           */
/* ====================================================================== */

START_TEST(test_actor_class_create_errors)
{
    marin_actor_class_t *c = (marin_actor_class_t *)&c;
    ck_assert_marin(marin_actor_class_create(NULL, c_init, c_fini, &c), MARIN_EINVAL);
    ck_assert_ptr_null(c);
    c = (marin_actor_class_t *)&c;
    ck_assert_marin(marin_actor_class_create("", c_init, c_fini, &c), MARIN_EINVAL);
    ck_assert_ptr_null(c);
    char longname[MARIN_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0'; /* MARIN_NAME_MAX + 1 bytes */
    ck_assert_marin(marin_actor_class_create(longname, c_init, c_fini, &c), MARIN_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_marin(marin_actor_class_create("X", NULL, c_fini, &c), MARIN_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_marin(marin_actor_class_create("X", c_init, c_fini, NULL), MARIN_EINVAL);
    /* exactly MARIN_NAME_MAX is fine, and fini may be NULL */
    longname[MARIN_NAME_MAX] = '\0';
    ck_assert_marin(marin_actor_class_create(longname, c_init, NULL, &c), MARIN_OK);
    ck_assert_ptr_nonnull(c);
    marin_actor_class_destroy(c);
    marin_actor_class_destroy(NULL);
}
END_TEST

START_TEST(test_actor_class_add_method_errors)
{
    marin_actor_class_t *c = NULL;
    ck_assert_marin(marin_actor_class_create("K", c_init, c_fini, &c), MARIN_OK);
    ck_assert_marin(marin_actor_class_add_method(NULL, "m", m_get, 0), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_add_method(c, NULL, m_get, 0), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_add_method(c, "", m_get, 0), MARIN_EINVAL);
    char longname[MARIN_NAME_MAX + 2];
    memset(longname, 'm', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_marin(marin_actor_class_add_method(c, longname, m_get, 0), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_add_method(c, "m", NULL, 0), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_add_method(c, "m", m_get, 2), MARIN_EINVAL);
    ck_assert_lasterr_has("flags");
    ck_assert_marin(marin_actor_class_add_method(c, "m", m_get, ~0u), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_add_method(c, "m", m_get, 0), MARIN_OK);
    ck_assert_marin(marin_actor_class_add_method(c, "m", m_add, 0), MARIN_EEXIST);
    ck_assert_lasterr_has("'m'");
    ck_assert_marin(marin_actor_class_add_method(c, "m", m_add, MARIN_METHOD_IDEMPOTENT),
                    MARIN_EEXIST);
    ck_assert_marin(marin_actor_class_add_method(c, "i", m_add, MARIN_METHOD_IDEMPOTENT),
                    MARIN_OK);
    longname[MARIN_NAME_MAX] = '\0';
    ck_assert_marin(marin_actor_class_add_method(c, longname, m_get, 0), MARIN_OK);
    /* many methods (the table grows) */
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "m%d", i);
        ck_assert_marin(marin_actor_class_add_method(c, name, m_get, 0), MARIN_OK);
    }
    ck_assert_marin(marin_actor_class_add_method(c, "m57", m_get, 0), MARIN_EEXIST);
    marin_actor_class_destroy(c);
}
END_TEST

START_TEST(test_actor_class_set_checkpoint_errors)
{
    marin_actor_class_t *c = NULL;
    ck_assert_marin(marin_actor_class_create("K", c_init, c_fini, &c), MARIN_OK);
    ck_assert_marin(marin_actor_class_set_checkpoint(NULL, c_save, c_restore), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_set_checkpoint(c, c_save, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_set_checkpoint(c, NULL, c_restore), MARIN_EINVAL);
    ck_assert_marin(marin_actor_class_set_checkpoint(c, c_save, c_restore), MARIN_OK);
    ck_assert_marin(marin_actor_class_set_checkpoint(c, NULL, NULL), MARIN_OK);
    marin_actor_class_destroy(c);
}
END_TEST

START_TEST(test_actor_class_register)
{
    ck_assert_marin(marin_register_actor_class(NULL), MARIN_EINVAL);
    marin_actor_class_t *c = NULL, *c2 = NULL;
    ck_assert_marin(marin_actor_class_create("Reg", c_init, c_fini, &c), MARIN_OK);
    ck_assert_marin(marin_actor_class_add_method(c, "get", m_get, 0), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c), MARIN_EEXIST);
    ck_assert_lasterr_has("Reg");
    /* another builder of the same name */
    ck_assert_marin(marin_actor_class_create("Reg", c_init, NULL, &c2), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c2), MARIN_EEXIST);
    marin_actor_class_destroy(c2);
    /* a class without methods registers too */
    ck_assert_marin(marin_actor_class_create("Empty", c_init, c_fini, &c2), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c2), MARIN_OK);
    marin_actor_class_destroy(c2);
    /* the registration is a copy: a method added later is not in it */
    ck_assert_marin(marin_actor_class_add_method(c, "add", m_add, 0), MARIN_OK);
    marin_actor_class_destroy(c); /* and the builder may go */

    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Reg", 7, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 7);
    marin_future_t *f = (marin_future_t *)&f;
    ck_assert_marin(marin_actor_call(a, "add", NULL, 0, &f), MARIN_ENOTFOUND);
    ck_assert_ptr_null(f);
    marin_actor_t *e = create(rt, "Empty", 0, NULL);
    ck_assert_marin(marin_actor_ready(e, WAIT), MARIN_OK);
    ck_assert_marin(marin_actor_call(e, "get", NULL, 0, &f), MARIN_ENOTFOUND);
    marin_actor_release(a);
    marin_actor_release(e);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* options                                                                 */
/* ====================================================================== */

START_TEST(test_actor_options_setters)
{
    ck_assert_marin(marin_actor_options_create(NULL), MARIN_EINVAL);
    marin_actor_options_t *o = opts_new();
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse("cpus=0.5", &r), MARIN_OK);

    ck_assert_marin(marin_actor_options_set_name(o, "svc"), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_name(o, NULL), MARIN_OK); /* anonymous */
    ck_assert_marin(marin_actor_options_set_name(o, ""), MARIN_EINVAL);
    char longname[MARIN_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_marin(marin_actor_options_set_name(o, longname), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_name(NULL, "x"), MARIN_EINVAL);

    ck_assert_marin(marin_actor_options_set_resources(o, r), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_resources(o, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_resources(NULL, r), MARIN_EINVAL);

    ck_assert_marin(marin_actor_options_set_max_restarts(o, -2), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_max_restarts(o, -100), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_max_restarts(o, -1), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_restarts(o, 0), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_restarts(o, 5), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_restarts(NULL, 1), MARIN_EINVAL);

    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 0), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, -1), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 1), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 16), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_concurrency(NULL, 1), MARIN_EINVAL);

    ck_assert_marin(marin_actor_options_set_get_if_exists(o, 1), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_get_if_exists(o, 0), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_get_if_exists(NULL, 1), MARIN_EINVAL);

    ck_assert_marin(marin_actor_options_set_detached(o, 1), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_detached(o, 0), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_detached(NULL, 1), MARIN_EINVAL);

    ck_assert_marin(marin_actor_options_set_checkpoint_every(o, -1), MARIN_EINVAL);
    ck_assert_marin(marin_actor_options_set_checkpoint_every(o, 0), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_checkpoint_every(o, 3), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_checkpoint_every(NULL, 1), MARIN_EINVAL);

    marin_resources_destroy(r);
    marin_actor_options_destroy(o);
    marin_actor_options_destroy(NULL);
}
END_TEST

/* Options are copied at create: reused for several actors, destroyed
 * before the actor goes, and changing them later changes nothing. */
START_TEST(test_actor_options_copied_and_reused)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 2), MARIN_OK);
    marin_actor_t *a1 = create(rt, "Counter", 1, o);
    marin_actor_t *a2 = create(rt, "Counter", 2, o); /* anonymous: reusable */
    ck_assert_str_ne(marin_actor_id(a1), marin_actor_id(a2));
    ck_assert_marin(marin_actor_options_set_name(o, "named"), MARIN_OK);
    marin_actor_t *a3 = create(rt, "Counter", 3, o);
    ck_assert_marin(marin_actor_options_set_name(o, "renamed"), MARIN_OK);
    marin_actor_options_destroy(o);
    marin_actor_t *l = NULL;
    ck_assert_marin(marin_actor_lookup(rt, "named", &l), MARIN_OK);
    ck_assert_str_eq(marin_actor_id(l), marin_actor_id(a3));
    marin_actor_release(l);
    ck_assert_marin(marin_actor_lookup(rt, "renamed", &l), MARIN_ENOTFOUND);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(call_i64(a1, "get", 0), 1);
    ck_assert_int_eq(call_i64(a2, "get", 0), 2);
    ck_assert_int_eq(call_i64(a3, "get", 0), 3);
    marin_actor_release(a1);
    marin_actor_release(a2);
    marin_actor_release(a3);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_options_checkpoint_every_needs_hooks)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_checkpoint_every(o, 1), MARIN_OK);
    marin_actor_t *a = (marin_actor_t *)&a;
    ck_assert_marin(marin_actor_create(rt, "Counter", NULL, 0, o, &a), MARIN_EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_lasterr_has("Counter");
    ck_assert_int_eq(atomic_load(&g_init_entered), 0);
    /* with hooks it is fine */
    a = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 2), 2);
    ck_assert_int_ge(atomic_load(&g_saves), 1);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* create, ready, call                                                     */
/* ====================================================================== */

START_TEST(test_actor_create_call_results)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 5, NULL);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    ck_assert_int_eq(strncmp(marin_actor_id(a), "actor-", 6), 0);
    ck_assert_int_eq(call_i64(a, "add", 3), 8);
    ck_assert_int_eq(call_i64(a, "add", -10), -2);
    ck_assert_int_eq(call_i64(a, "get", 0), -2);

    /* bytes round-trip, including empty and NULL arguments */
    char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + 1);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_actor_call(a, "echo", big, sizeof big, &f), MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, WAIT, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, sizeof big);
    ck_assert_int_eq(memcmp(data, big, sizeof big), 0);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_SUCCEEDED);
    marin_future_release(f);
    ck_assert_marin(marin_actor_call(a, "echo", NULL, 0, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, WAIT, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 0);
    marin_future_release(f);

    /* the argument is copied at the call */
    ck_assert_ptr_nonnull(f = call_int(a, "block", 0)); /* holds the actor */
    ck_assert(wait_for(&g_started, 1, WAIT));
    char buf[8] = "before!";
    marin_future_t *e = NULL;
    ck_assert_marin(marin_actor_call(a, "echo", buf, sizeof buf, &e), MARIN_OK);
    memcpy(buf, "AFTER!!", 8);
    atomic_store(&g_gate, 1);
    ck_assert_marin(marin_future_get(f, WAIT, NULL, NULL), MARIN_OK);
    ck_assert_marin(marin_future_get(e, WAIT, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 8);
    ck_assert_str_eq((const char *)data, "before!");
    marin_future_release(f);
    marin_future_release(e);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_create_invalid_args)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = (marin_actor_t *)&a;
    ck_assert_marin(marin_actor_create(NULL, "Counter", NULL, 0, NULL, &a), MARIN_EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_marin(marin_actor_create(rt, "Counter", NULL, 0, NULL, NULL), MARIN_EINVAL);
    a = (marin_actor_t *)&a;
    ck_assert_marin(marin_actor_create(rt, NULL, NULL, 0, NULL, &a), MARIN_EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_marin(marin_actor_create(rt, "", NULL, 0, NULL, &a), MARIN_EINVAL);
    ck_assert_marin(marin_actor_create(rt, "Counter", NULL, 4, NULL, &a), MARIN_EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(atomic_load(&g_init_entered), 0);

    a = create(rt, "Counter", 0, NULL);
    marin_future_t *f = (marin_future_t *)&f;
    ck_assert_marin(marin_actor_call(NULL, "get", NULL, 0, &f), MARIN_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_actor_call(a, NULL, NULL, 0, &f), MARIN_EINVAL);
    ck_assert_marin(marin_actor_call(a, "", NULL, 0, &f), MARIN_EINVAL);
    ck_assert_marin(marin_actor_call(a, "get", NULL, 3, &f), MARIN_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_actor_ready(NULL, 0), MARIN_EINVAL);
    ck_assert_marin(marin_actor_kill(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_actor_checkpoint(NULL), MARIN_EINVAL);
    marin_actor_t *l = (marin_actor_t *)&l;
    ck_assert_marin(marin_actor_lookup(NULL, "x", &l), MARIN_EINVAL);
    ck_assert_ptr_null(l);
    ck_assert_marin(marin_actor_lookup(rt, NULL, &l), MARIN_EINVAL);
    ck_assert_marin(marin_actor_lookup(rt, "", &l), MARIN_EINVAL);
    ck_assert_marin(marin_actor_lookup(rt, "x", NULL), MARIN_EINVAL);
    ck_assert_marin(marin_actor_from_id(NULL, marin_actor_id(a), &l), MARIN_EINVAL);
    ck_assert_marin(marin_actor_from_id(rt, NULL, &l), MARIN_EINVAL);
    ck_assert_marin(marin_actor_from_id(rt, marin_actor_id(a), NULL), MARIN_EINVAL);
    ck_assert_ptr_null(l);
    /* the actor is unharmed */
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_unknown_class)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = (marin_actor_t *)&a;
    ck_assert_marin(marin_actor_create(rt, "NoSuchClass", NULL, 0, NULL, &a),
                    MARIN_ENOTFOUND);
    ck_assert_ptr_null(a);
    ck_assert_lasterr_has("NoSuchClass");
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_unknown_method)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    marin_future_t *f = (marin_future_t *)&f;
    ck_assert_marin(marin_actor_call(a, "frobnicate", NULL, 0, &f), MARIN_ENOTFOUND);
    ck_assert_ptr_null(f);
    ck_assert_lasterr_has("Counter");
    ck_assert_lasterr_has("frobnicate");
    /* a method of another class is not this one's */
    ck_assert_marin(marin_actor_call(a, "Get", NULL, 0, &f), MARIN_ENOTFOUND);
    ck_assert_int_eq(call_i64(a, "get", 0), 0);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* A failing method fails only that call. */
START_TEST(test_actor_method_failure_fails_only_call)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    ck_assert_int_eq(call_i64(a, "add", 4), 4);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_actor_call(a, "fail", NULL, 0, &f), MARIN_OK);
    ck_assert_marin(marin_future_get(f, WAIT, NULL, NULL), MARIN_ETASK);
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_FAILED);
    ck_assert_ptr_nonnull(strstr(marin_future_error(f), "method failed on purpose"));
    marin_future_release(f);
    /* a negative code */
    expect_fail(call_int(a, "code", MARIN_EUNAVAILABLE), MARIN_EUNAVAILABLE, NULL);
    /* a positive return is not a marin code: an application error */
    expect_fail(call_int(a, "code", 7), MARIN_ETASK, NULL);
    /* state intact, no restart */
    ck_assert_int_eq(call_i64(a, "add", 1), 5);
    ck_assert_int_eq(atomic_load(&g_init), 1);
    ck_assert_int_eq(atomic_load(&g_fini), 0);
    marin_actor_release(a);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

START_TEST(test_actor_ctor_failure)
{
    setup_all();
    atomic_store(&g_ctor_fail, 1);
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_max_restarts(o, 3), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_ETASK);
    ck_assert_lasterr_has("ctor exploded on purpose");
    ck_assert_marin(marin_actor_ready(a, 0), MARIN_ETASK);
    for (int i = 0; i < 5; i++) {
        marin_future_t *f = NULL;
        ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_OK);
        expect_fail(f, MARIN_ETASK, "ctor exploded on purpose");
    }
    /* constructor failures are not crashes: no restart */
    ck_assert_int_eq(atomic_load(&g_init_entered), 1);
    ck_assert_int_eq(atomic_load(&g_fini), 0); /* no successful init: no fini */
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 0);
}
END_TEST

/* Calls made while the constructor runs fail with its error once it fails. */
START_TEST(test_actor_ctor_failure_fails_queued_calls)
{
    setup_all();
    atomic_store(&g_ctor_fail, 1);
    atomic_store(&g_hold_init, 1);
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    ck_assert(wait_for(&g_init_entered, 1, WAIT));
    marin_future_t *f[10];
    for (int i = 0; i < 10; i++)
        f[i] = call_int(a, "add", 1);
    ck_assert_int_eq(marin_actor_ready(a, 0), MARIN_ETIMEDOUT);
    atomic_store(&g_hold_init, 0);
    for (int i = 0; i < 10; i++)
        expect_fail(f[i], MARIN_ETASK, "ctor exploded on purpose");
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_ETASK);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* ordering and concurrency                                                */
/* ====================================================================== */

START_TEST(test_actor_order_pipelined)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    enum { N = 10000 };
    marin_future_t **f = calloc(N, sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < N; i++)
        f[i] = call_int(a, "ordered", i + 1);
    for (int i = 0; i < N; i++) {
        const void *data = NULL;
        size_t len = 0;
        ck_assert_marin(marin_future_get(f[i], WAIT, &data, &len), MARIN_OK);
        ck_assert_uint_eq(len, sizeof(int));
        int k;
        memcpy(&k, data, sizeof k);
        ck_assert_int_eq(k, i + 1);
        marin_future_release(f[i]);
    }
    free(f);
    ck_assert_int_eq(atomic_load(&g_order_bad), 0);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

typedef struct {
    marin_runtime_t *rt;
    int idx;
    int ncalls;
    pthread_barrier_t *start;
    int failures;
} caller_arg;

static void *caller_main(void *p)
{
    caller_arg *c = p;
    marin_actor_t *a = NULL;
    if (marin_actor_lookup(c->rt, "serial", &a) != MARIN_OK) {
        c->failures = -1;
        return NULL;
    }
    marin_future_t **f = calloc((size_t)c->ncalls, sizeof *f);
    pthread_barrier_wait(c->start);
    for (int i = 0; i < c->ncalls; i++) {
        int v[2] = {c->idx, i + 1};
        if (marin_actor_call(a, "serial", v, sizeof v, &f[i]) != MARIN_OK)
            c->failures++;
    }
    for (int i = 0; i < c->ncalls; i++) {
        if (!f[i])
            continue;
        const void *data = NULL;
        size_t len = 0;
        int v[2];
        if (marin_future_get(f[i], WAIT, &data, &len) != MARIN_OK || len != sizeof v) {
            c->failures++;
        } else {
            memcpy(v, data, sizeof v);
            if (v[0] != c->idx || v[1] != i + 1)
                c->failures++;
        }
        marin_future_release(f[i]);
    }
    free(f);
    marin_actor_release(a);
    return NULL;
}

START_TEST(test_actor_order_many_threads)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "serial"), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 1), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    enum { T = 8, N = 500 };
    pthread_t th[T];
    caller_arg args[T];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, T);
    for (int i = 0; i < T; i++) {
        args[i] = (caller_arg){rt, i, N, &start, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, caller_main, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(args[i].failures == 0, "caller %d: %d failures", i, args[i].failures);
    }
    pthread_barrier_destroy(&start);
    ck_assert_int_eq(atomic_load(&g_overlap), 0);
    ck_assert_int_eq(atomic_load(&g_thread_bad), 0);
    ck_assert_int_eq(atomic_load(&g_serial_calls), T * N);
    ck_assert_int_eq(call_i64(a, "get", 0), T * N);
    for (int i = 0; i < T; i++)
        ck_assert_int_eq(atomic_load(&g_thread_last[i]), N);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* max_concurrency 4: four calls that each wait for all four complete. */
START_TEST(test_actor_concurrency_overlap)
{
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 4), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    int v[2] = {4, WAIT};
    marin_future_t *f[4];
    for (int i = 0; i < 4; i++)
        ck_assert_marin(marin_actor_call(a, "barrier", v, sizeof v, &f[i]), MARIN_OK);
    for (int i = 0; i < 4; i++) {
        int rc = marin_future_get(f[i], WAIT + 2000, NULL, NULL);
        ck_assert_msg(rc == MARIN_OK, "barrier call %d: %d: %s", i, rc,
                      marin_future_error(f[i]));
        marin_future_release(f[i]);
    }
    ck_assert_int_eq(atomic_load(&g_max), 4);
    /* never more than max_concurrency at once */
    atomic_store(&g_barrier, 0);
    atomic_store(&g_max, 0);
    int w[2] = {8, 200}; /* 8 can never meet: each times out */
    marin_future_t *g[8];
    for (int i = 0; i < 8; i++)
        ck_assert_marin(marin_actor_call(a, "barrier", w, sizeof w, &g[i]), MARIN_OK);
    for (int i = 0; i < 8; i++)
        take_rc(g[i]);
    ck_assert_int_le(atomic_load(&g_max), 4);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* max_concurrency 1: two calls waiting for each other cannot meet. */
START_TEST(test_actor_concurrency_one_is_serial)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    int v[2] = {2, 200};
    marin_future_t *f1 = NULL, *f2 = NULL;
    ck_assert_marin(marin_actor_call(a, "barrier", v, sizeof v, &f1), MARIN_OK);
    ck_assert_marin(marin_actor_call(a, "barrier", v, sizeof v, &f2), MARIN_OK);
    expect_fail(f1, MARIN_ETASK, "barrier timed out");
    ck_assert_marin(take_rc(f2), MARIN_OK); /* the second enters after the first */
    ck_assert_int_eq(atomic_load(&g_max), 1);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* actors and tasks                                                        */
/* ====================================================================== */

START_TEST(test_actor_nested_task_no_starve)
{
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    /* a method waiting on a task it submitted */
    marin_future_t *f = NULL;
    ck_assert_marin(marin_actor_call(a, "nested", "hello", 5, &f), MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(f, WAIT, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(data, "hello", 5), 0);
    marin_future_release(f);
    /* a task (holding the only cpu) waiting on the actor, whose method waits
     * on a task */
    const char *id = marin_actor_id(a);
    marin_future_t *t = submit_opts(rt, "t_call_nested", id, strlen(id), NULL);
    int rc = marin_future_get(t, WAIT, &data, &len);
    ck_assert_msg(rc == MARIN_OK, "t_call_nested: %d: %s", rc, marin_future_error(t));
    ck_assert_uint_eq(len, 4);
    ck_assert_int_eq(memcmp(data, "deep", 4), 0);
    marin_future_release(t);
    /* a method runs while a task holds the only cpu */
    marin_future_t *gate = submit_opts(rt, "t_gate", NULL, 0, NULL);
    ck_assert(wait_for(&g_task_started, 1, WAIT));
    ck_assert_int_eq(call_i64(a, "add", 2), 2);
    atomic_store(&g_task_gate, 1);
    ck_assert_marin(take_rc(gate), MARIN_OK);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_many_actors_tasks_run)
{
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    enum { NA = 64, NT = 50 };
    marin_actor_t *a[NA];
    for (int i = 0; i < NA; i++)
        a[i] = create(rt, "Counter", i, NULL);
    /* every actor is busy in a method */
    marin_future_t *blk[NA];
    for (int i = 0; i < NA; i++)
        blk[i] = call_int(a[i], "block", 0);
    ck_assert(wait_for(&g_started, NA, WAIT));
    marin_future_t *t[NT];
    for (int i = 0; i < NT; i++)
        t[i] = submit_opts(rt, "t_echo", &i, sizeof i, NULL);
    for (int i = 0; i < NT; i++)
        ck_assert_marin(take_rc(t[i]), MARIN_OK);
    atomic_store(&g_gate, 1);
    for (int i = 0; i < NA; i++) {
        ck_assert_marin(take_rc(blk[i]), MARIN_OK);
        ck_assert_int_eq(call_i64(a[i], "get", 0), i);
        marin_actor_release(a[i]);
    }
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* resources                                                               */
/* ====================================================================== */

static marin_actor_options_t *opts_res(const char *spec)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse(spec, &r), MARIN_OK);
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_resources(o, r), MARIN_OK);
    marin_resources_destroy(r); /* copied */
    return o;
}

START_TEST(test_actor_resources_held)
{
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_options_t *o = opts_res("cpus=1");
    ck_assert_marin(marin_actor_options_set_name(o, "holder"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    marin_future_t *t = submit_opts(rt, "t_noop", NULL, 0, NULL); /* cpus=1 */
    /* held for its lifetime: not while idle, nor when the handle goes */
    ck_assert_int_eq(marin_future_get(t, 200, NULL, NULL), MARIN_ETIMEDOUT);
    ck_assert_int_eq(marin_future_state(t), MARIN_FUTURE_PENDING);
    marin_actor_release(a);
    ck_assert_int_eq(marin_future_get(t, 100, NULL, NULL), MARIN_ETIMEDOUT);
    ck_assert_marin(marin_actor_lookup(rt, "holder", &a), MARIN_OK);
    ck_assert_int_eq(call_i64(a, "add", 1), 1); /* methods still run */
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_OK);
    ck_assert_marin(marin_future_get(t, WAIT, NULL, NULL), MARIN_OK);
    marin_future_release(t);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_resources_infeasible)
{
    SKIP_UNLESS_LOCAL("on redis a worker's capacity is not known at create: a request no live worker fits fails on the creation (ready()) after grace_ms with MARIN_EINFEASIBLE");
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_options_t *o = opts_res("cpus=2");
    marin_actor_t *a = (marin_actor_t *)&a;
    ck_assert_marin(marin_actor_create(rt, "Counter", NULL, 0, o, &a), MARIN_EINFEASIBLE);
    ck_assert_ptr_null(a);
    ck_assert_lasterr_has("cpus");
    marin_actor_options_destroy(o);
    o = opts_res("TPU=1");
    ck_assert_marin(marin_actor_create(rt, "Counter", NULL, 0, o, &a), MARIN_EINFEASIBLE);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(atomic_load(&g_init_entered), 0);
    marin_actor_options_destroy(o);
    /* nothing was held: a cpus=1 task runs */
    ck_assert_marin(take_rc(submit_opts(rt, "t_noop", NULL, 0, NULL)), MARIN_OK);
    marin_runtime_close(rt);
}
END_TEST

typedef struct {
    marin_runtime_t *rt;
    marin_actor_options_t *o;
    marin_actor_t *a;
    int rc;
    atomic_int done;
} create_arg;

static void *creator_main(void *p)
{
    create_arg *c = p;
    c->rc = marin_actor_create(c->rt, "Counter", NULL, 0, c->o, &c->a);
    atomic_store(&c->done, 1);
    return NULL;
}

/* create returns once the actor is placed (its resources held). */
START_TEST(test_actor_create_waits_for_resources)
{
    SKIP_UNLESS_LOCAL("on redis marin_actor_create returns once the creation is queued; a worker with free capacity hosts it and marin_actor_ready waits for that");
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_future_t *gate = submit_opts(rt, "t_gate", NULL, 0, NULL);
    ck_assert(wait_for(&g_task_started, 1, WAIT));
    create_arg c = {rt, opts_res("cpus=1"), NULL, 1, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, creator_main, &c), 0);
    ck_assert_int_eq(wait_for(&c.done, 1, 200), 0); /* still waiting */
    ck_assert_int_eq(atomic_load(&g_init_entered), 0);
    atomic_store(&g_task_gate, 1);
    ck_assert(wait_for(&c.done, 1, WAIT));
    pthread_join(th, NULL);
    ck_assert_marin(c.rc, MARIN_OK);
    ck_assert_int_eq(call_i64(c.a, "add", 3), 3);
    ck_assert_marin(take_rc(gate), MARIN_OK);
    marin_actor_release(c.a);
    marin_actor_options_destroy(c.o);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* names                                                                   */
/* ====================================================================== */

START_TEST(test_actor_name_taken)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "svc"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 1, o);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    marin_actor_t *b = (marin_actor_t *)&b;
    ck_assert_marin(marin_actor_create(rt, "Counter", NULL, 0, o, &b), MARIN_EEXIST);
    ck_assert_ptr_null(b);
    ck_assert_lasterr_has("svc");
    /* also across classes */
    ck_assert_marin(marin_actor_create(rt, "CCounter", NULL, 0, o, &b), MARIN_EEXIST);
    ck_assert_int_eq(atomic_load(&g_init_entered), 1);
    /* anonymous actors never clash */
    marin_actor_t *x = create(rt, "Counter", 0, NULL);
    marin_actor_t *y = create(rt, "Counter", 0, NULL);
    ck_assert_str_ne(marin_actor_id(x), marin_actor_id(y));
    ck_assert_int_eq(call_i64(a, "get", 0), 1);
    marin_actor_release(a);
    marin_actor_release(x);
    marin_actor_release(y);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_get_if_exists)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "shared"), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_get_if_exists(o, 1), MARIN_OK);
    /* the first creates it */
    marin_actor_t *a = create(rt, "Counter", 10, o);
    ck_assert_int_eq(call_i64(a, "add", 5), 15);
    /* the second gets the same actor: same id, same state, no constructor */
    marin_actor_t *b = create(rt, "Counter", 99, o);
    ck_assert_str_eq(marin_actor_id(a), marin_actor_id(b));
    ck_assert_int_eq(call_i64(b, "add", 1), 16);
    ck_assert_int_eq(call_i64(a, "get", 0), 16);
    ck_assert_int_eq(atomic_load(&g_init), 1);
    /* each handle is its own: releasing one leaves the other working */
    marin_actor_release(a);
    ck_assert_int_eq(call_i64(b, "get", 0), 16);
    /* get_if_exists without a name just creates */
    marin_actor_options_t *anon = opts_new();
    ck_assert_marin(marin_actor_options_set_get_if_exists(anon, 1), MARIN_OK);
    marin_actor_t *c = create(rt, "Counter", 0, anon);
    marin_actor_t *d = create(rt, "Counter", 0, anon);
    ck_assert_str_ne(marin_actor_id(c), marin_actor_id(d));
    marin_actor_release(b);
    marin_actor_release(c);
    marin_actor_release(d);
    marin_actor_options_destroy(o);
    marin_actor_options_destroy(anon);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_lookup)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "finder"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 3, o);
    marin_actor_t *l = NULL;
    ck_assert_marin(marin_actor_lookup(rt, "finder", &l), MARIN_OK);
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_ne(l, a);
    ck_assert_str_eq(marin_actor_id(l), marin_actor_id(a));
    ck_assert_int_eq(call_i64(l, "add", 1), 4);
    ck_assert_int_eq(call_i64(a, "get", 0), 4);
    marin_actor_t *m = (marin_actor_t *)&m;
    ck_assert_marin(marin_actor_lookup(rt, "nobody", &m), MARIN_ENOTFOUND);
    ck_assert_ptr_null(m);
    ck_assert_lasterr_has("nobody");
    ck_assert_marin(marin_actor_lookup(rt, "Finder", &m), MARIN_ENOTFOUND);
    /* names are per runtime on local */
    marin_runtime_t *rt2 = open_rt("local");
    ck_assert_marin(marin_actor_lookup(rt2, "finder", &m), MARIN_ENOTFOUND);
    marin_actor_t *other = create(rt2, "Counter", 50, o); /* same name, other runtime */
    ck_assert_int_eq(call_i64(other, "get", 0), 50);
    ck_assert_int_eq(call_i64(l, "get", 0), 4);
    marin_actor_release(other);
    marin_runtime_close(rt2);
    marin_actor_release(l);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_name_free_after_kill)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "once"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 1, o);
    char id[128];
    snprintf(id, sizeof id, "%s", marin_actor_id(a));
    ck_assert_int_eq(call_i64(a, "add", 1), 2);
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_OK);
    marin_actor_t *l = (marin_actor_t *)&l;
    ck_assert_marin(marin_actor_lookup(rt, "once", &l), MARIN_ENOTFOUND);
    ck_assert_ptr_null(l);
    ck_assert_marin(marin_actor_from_id(rt, id, &l), MARIN_ENOTFOUND);
    /* the name is free: a new actor, new id, fresh state */
    marin_actor_t *b = create(rt, "Counter", 100, o);
    ck_assert_str_ne(marin_actor_id(b), id);
    ck_assert_int_eq(call_i64(b, "get", 0), 100);
    ck_assert_marin(marin_actor_lookup(rt, "once", &l), MARIN_OK);
    ck_assert_str_eq(marin_actor_id(l), marin_actor_id(b));
    marin_actor_release(l);
    marin_actor_release(a);
    marin_actor_release(b);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* A non-detached actor lives until killed or its runtime closes, not until
 * its handles go; a detached one too (on local). */
START_TEST(test_actor_lives_without_handles)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "orphan"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 7), 7);
    marin_actor_release(a);
    ck_assert_marin(marin_actor_options_set_name(o, "detached"), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_detached(o, 1), MARIN_OK);
    a = create(rt, "Counter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 8), 8);
    marin_actor_release(a);
    /* creating more actors (which reaps dead ones) must not drop them */
    marin_actor_release(create(rt, "Counter", 0, NULL));
    ck_assert_int_eq(atomic_load(&g_fini), 0);
    ck_assert_marin(marin_actor_lookup(rt, "orphan", &a), MARIN_OK);
    ck_assert_int_eq(call_i64(a, "get", 0), 7);
    marin_actor_release(a);
    ck_assert_marin(marin_actor_lookup(rt, "detached", &a), MARIN_OK);
    ck_assert_int_eq(call_i64(a, "get", 0), 8);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 3);
}
END_TEST

/* ====================================================================== */
/* ids                                                                     */
/* ====================================================================== */

START_TEST(test_actor_id_round_trip)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    const char *id = marin_actor_id(a);
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(strncmp(id, "actor-", 6), 0);
    marin_actor_t *b = NULL;
    ck_assert_marin(marin_actor_from_id(rt, id, &b), MARIN_OK);
    ck_assert_str_eq(marin_actor_id(b), id);
    ck_assert_int_eq(call_i64(b, "add", 2), 2);
    ck_assert_int_eq(call_i64(a, "get", 0), 2);
    /* ids are unique */
    marin_actor_t *c = create(rt, "Counter", 0, NULL);
    ck_assert_str_ne(marin_actor_id(c), id);
    /* the id stays valid as long as the handle, whatever else goes */
    marin_actor_release(b);
    ck_assert_int_eq(strncmp(marin_actor_id(a), "actor-", 6), 0);
    marin_actor_release(a);
    marin_actor_release(c);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_id_passed_to_task)
{
    setup_all();
    marin_runtime_t *rt = open_rt(RT2);
    marin_actor_t *a = create(rt, "Counter", 40, NULL);
    const char *id = marin_actor_id(a);
    marin_future_t *t[2];
    for (int i = 0; i < 2; i++)
        t[i] = submit_opts(rt, "t_call_actor", id, strlen(id), NULL);
    int64_t got[2];
    for (int i = 0; i < 2; i++) {
        int rc = marin_future_get(t[i], WAIT, NULL, NULL);
        ck_assert_msg(rc == MARIN_OK, "t_call_actor: %d: %s", rc, marin_future_error(t[i]));
        got[i] = take_i64(t[i]);
    }
    ck_assert(got[0] != got[1]);
    ck_assert(got[0] == 41 || got[0] == 42);
    ck_assert(got[1] == 41 || got[1] == 42);
    ck_assert_int_eq(call_i64(a, "get", 0), 42);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_from_id_unknown)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *l = (marin_actor_t *)&l;
    ck_assert_marin(marin_actor_from_id(rt, "actor-nope", &l), MARIN_ENOTFOUND);
    ck_assert_ptr_null(l);
    ck_assert_lasterr_has("actor-nope");
    ck_assert_marin(marin_actor_from_id(rt, "garbage", &l), MARIN_ENOTFOUND);
    /* an id from another runtime is not in this one */
    marin_runtime_t *rt2 = open_rt("local");
    marin_actor_t *a = create(rt2, "Counter", 0, NULL);
    marin_actor_t *b = create(rt, "Counter", 0, NULL);
    if (strcmp(marin_actor_id(a), marin_actor_id(b)) != 0)
        ck_assert_marin(marin_actor_from_id(rt, marin_actor_id(a), &l), MARIN_ENOTFOUND);
    marin_actor_release(a);
    marin_actor_release(b);
    marin_runtime_close(rt2);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* restarts                                                                */
/* ====================================================================== */

static marin_actor_options_t *opts_restarts(int n, int64_t every)
{
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_max_restarts(o, n), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_checkpoint_every(o, every), MARIN_OK);
    return o;
}

START_TEST(test_actor_restart_checkpoint_every)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 1);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(call_i64(a, "add", 1), i);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 3); /* counter continues */
    ck_assert_int_eq(call_i64(a, "add", 1), 4);
    ck_assert_int_eq(atomic_load(&g_init), 1);
    ck_assert_int_eq(atomic_load(&g_restore), 1);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 2);
    ck_assert_int_eq(atomic_load(&g_bad_fini), 0);
}
END_TEST

/* checkpoint_every N: a crash goes back to the last multiple of N. */
START_TEST(test_actor_restart_checkpoint_every_n)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 3);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    for (int i = 1; i <= 5; i++) /* checkpoints after the 3rd call */
        ck_assert_int_eq(call_i64(a, "add", 1), i);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 3);
    marin_actor_release(a);
    marin_actor_options_destroy(o);

    /* only successful calls count: add, fail, fail, crash -> no checkpoint
     * yet (every 2), so the constructor rebuilds it from its argument */
    o = opts_restarts(1, 2);
    a = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    expect_fail(call_int(a, "fail", 0), MARIN_ETASK, NULL);
    expect_fail(call_int(a, "code", MARIN_EBUSY), MARIN_EBUSY, NULL);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 0);
    ck_assert_int_eq(atomic_load(&g_restore), 1); /* the first actor's only */
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_restart_runs_ctor_again)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    marin_actor_t *a = create(rt, "Counter", 10, o);
    ck_assert_int_eq(call_i64(a, "add", 5), 15);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, "crash");
    ck_assert_int_eq(call_i64(a, "get", 0), 10); /* constructor with its argument */
    ck_assert_int_eq(atomic_load(&g_init), 2);
    ck_assert_int_eq(atomic_load(&g_restore), 0);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 2);
}
END_TEST

/* A call running beside the crash is lost too (MARIN_EWORKER). */
START_TEST(test_actor_restart_inflight_fails)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 2), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    marin_future_t *blk = call_int(a, "block", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    atomic_store(&g_gate, 1);
    expect_fail(blk, MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    ck_assert_int_eq(atomic_load(&g_init), 2);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_restart_idempotent_replayed)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 5), 5);
    marin_future_t *f = call_int(a, "crash_once", 0);
    /* calls after it stay behind it, in order */
    marin_future_t *g[20];
    for (int i = 0; i < 20; i++)
        g[i] = call_int(a, "ordered", i + 1);
    ck_assert_int_eq(take_i64(f), 1); /* replayed on the rebuilt instance */
    for (int i = 0; i < 20; i++)
        ck_assert_marin(take_rc(g[i]), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_order_bad), 0);
    ck_assert_int_eq(atomic_load(&g_crash_once), 2);
    ck_assert_int_eq(atomic_load(&g_init), 2);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* Without restarts left even an idempotent call fails. */
START_TEST(test_actor_restart_idempotent_no_restarts_left)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL); /* max_restarts 0 */
    expect_fail(call_int(a, "crash_once", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(atomic_load(&g_crash_once), 1);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* Calls made while the actor restarts wait for it and run in order. */
START_TEST(test_actor_restart_calls_wait)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    atomic_store(&g_hold_init, 1); /* the rebuild waits */
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert(wait_for(&g_init_entered, 2, WAIT)); /* rebuilding now */
    enum { N = 100 };
    marin_future_t *f[N];
    for (int i = 0; i < N; i++)
        f[i] = call_int(a, "ordered", i + 1);
    ck_assert_int_eq(marin_actor_ready(a, 20), MARIN_ETIMEDOUT);
    ck_assert_int_eq(marin_future_state(f[0]), MARIN_FUTURE_PENDING);
    atomic_store(&g_hold_init, 0);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    for (int i = 0; i < N; i++) {
        const void *data = NULL;
        size_t len = 0;
        ck_assert_marin(marin_future_get(f[i], WAIT, &data, &len), MARIN_OK);
        int k;
        memcpy(&k, data, sizeof k);
        ck_assert_int_eq(k, i + 1);
        marin_future_release(f[i]);
    }
    ck_assert_int_eq(atomic_load(&g_order_bad), 0);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_max_restarts_exhausted)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(0, 0);
    ck_assert_marin(marin_actor_options_set_name(o, "fragile"), MARIN_OK);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    marin_future_t *crash = call_int(a, "crash_gated", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    marin_future_t *pending[5];
    for (int i = 0; i < 5; i++)
        pending[i] = call_int(a, "add", 1);
    atomic_store(&g_gate, 1);
    expect_fail(crash, MARIN_EWORKER, NULL);
    for (int i = 0; i < 5; i++)
        expect_fail(pending[i], MARIN_EWORKER, NULL);
    marin_future_t *f = (marin_future_t *)&f;
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_ESTATE);
    ck_assert_ptr_null(f);
    ck_assert_lasterr_has("restarts");
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_EWORKER);
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_ESTATE);
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_ESTATE);
    marin_actor_t *l = (marin_actor_t *)&l;
    ck_assert_marin(marin_actor_lookup(rt, "fragile", &l), MARIN_ENOTFOUND);
    ck_assert_ptr_null(l);
    ck_assert(wait_for(&g_fini, 1, WAIT));
    ck_assert_marin(marin_actor_from_id(rt, marin_actor_id(a), &l), MARIN_ENOTFOUND);
    ck_assert_int_eq(atomic_load(&g_init), 1);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

/* max_restarts 2: two crashes are survived, the third is the end. */
START_TEST(test_actor_max_restarts_budget)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(2, 0);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    for (int i = 0; i < 2; i++) {
        expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
        ck_assert_int_eq(call_i64(a, "add", 1), 1);
    }
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_EWORKER);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_ESTATE);
    ck_assert_int_eq(atomic_load(&g_init), 3);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 3);
}
END_TEST

START_TEST(test_actor_unlimited_restarts)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(-1, 1);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    enum { CRASHES = 30 };
    for (int i = 0; i < CRASHES; i++) {
        ck_assert_int_eq(call_i64(a, "add", 1), i + 1);
        expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    }
    ck_assert_int_eq(call_i64(a, "get", 0), CRASHES);
    ck_assert_int_eq(atomic_load(&g_restore), CRASHES);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), CRASHES + 1);
    ck_assert_int_eq(atomic_load(&g_bad_fini), 0);
}
END_TEST

/* An idempotent call running beside a crash in another call is replayed. */
START_TEST(test_actor_restart_idempotent_beside_crash)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 2), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    marin_future_t *idem = call_int(a, "block_idem", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    atomic_store(&g_gate, 1);
    const void *data = NULL;
    size_t len = 0;
    int rc = marin_future_get(idem, WAIT, &data, &len);
    ck_assert_msg(rc == MARIN_OK, "idempotent call beside a crash: %d: %s", rc,
                  marin_future_error(idem));
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(atomic_load(&g_started), 2); /* ran twice */
    marin_future_release(idem);
    ck_assert_int_eq(atomic_load(&g_init), 2);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* Resources come back when the actor is gone for good, whatever the way. */
START_TEST(test_actor_resources_released_when_dead)
{
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_options_t *o = opts_res("cpus=1");
    /* a crash with no restarts left */
    marin_actor_t *a = create(rt, "Counter", 0, o);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_marin(take_rc(submit_opts(rt, "t_noop", NULL, 0, NULL)), MARIN_OK);
    marin_actor_release(a);
    /* kill(0) with no restarts left */
    a = create(rt, "Counter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    ck_assert_marin(marin_actor_kill(a, 0), MARIN_OK);
    ck_assert_marin(take_rc(submit_opts(rt, "t_noop", NULL, 0, NULL)), MARIN_OK);
    marin_actor_release(a);
    /* restarts keep holding them (no task slips in between) */
    ck_assert_marin(marin_actor_options_set_max_restarts(o, 1), MARIN_OK);
    a = create(rt, "Counter", 0, o);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    marin_future_t *t = submit_opts(rt, "t_noop", NULL, 0, NULL);
    ck_assert_int_eq(marin_future_get(t, 100, NULL, NULL), MARIN_ETIMEDOUT);
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_OK);
    ck_assert_marin(take_rc(t), MARIN_OK);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* checkpoints                                                             */
/* ====================================================================== */

START_TEST(test_actor_checkpoint_on_request)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(2, 0);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 5), 5);
    ck_assert_int_eq(atomic_load(&g_saves), 0); /* only on request */
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_saves), 1);
    ck_assert_int_eq(call_i64(a, "add", 3), 8);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 5); /* exactly the checkpointed state */

    /* a checkpoint comes after the calls made before it */
    marin_future_t *f[10];
    for (int i = 0; i < 10; i++)
        f[i] = call_int(a, "add", 1);
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_OK);
    for (int i = 0; i < 10; i++)
        ck_assert_marin(take_rc(f[i]), MARIN_OK);
    ck_assert_int_eq(call_i64(a, "add", 100), 115);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 15);
    ck_assert_int_eq(atomic_load(&g_restore), 2);
    ck_assert_int_eq(atomic_load(&g_init), 1);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_checkpoint_unsupported)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_EUNSUPPORTED);
    ck_assert_lasterr_has("Counter");
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_checkpoint_hook_failure)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 2), 2);
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_OK);
    ck_assert_int_eq(call_i64(a, "add", 2), 4);
    atomic_store(&g_save_fail, 1);
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_ETASK);
    ck_assert_lasterr_has("save refused on purpose");
    atomic_store(&g_save_fail, 0);
    /* the failed checkpoint stored nothing: a crash goes back to 2 */
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 2);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

typedef struct {
    marin_actor_t *a;
    int rc;
} ckpt_arg;

static void *checkpointer_main(void *p)
{
    ckpt_arg *c = p;
    c->rc = marin_actor_checkpoint(c->a);
    return NULL;
}

/* With max_concurrency > 1, a kill while the checkpoint hook runs must not
 * destroy the instance under the hook. */
START_TEST(test_actor_kill_during_checkpoint)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 2), MARIN_OK);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    atomic_store(&g_save_block, 1);
    ckpt_arg c = {a, 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, checkpointer_main, &c), 0);
    ck_assert(wait_for(&g_started, 1, WAIT)); /* the hook runs */
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_OK);
    /* give a wrong destroy the chance to happen (then the hook reads freed
     * memory: ASan reports it) */
    wait_for(&g_fini, 1, 300);
    int early = atomic_load(&g_fini_in_save);
    atomic_store(&g_gate, 1);
    pthread_join(th, NULL);
    ck_assert_msg(early == 0, "fini destroyed the instance while its checkpoint hook "
                  "ran (checkpoint: %d)", c.rc);
    ck_assert(wait_for(&g_fini, 1, WAIT));
    ck_assert_int_eq(atomic_load(&g_fini_in_save), 0);
    ck_assert_int_eq(atomic_load(&g_bad_fini), 0);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

/* With max_concurrency > 1, a crash in one method while an automatic
 * checkpoint runs must not destroy the instance under the hook. */
START_TEST(test_actor_crash_during_auto_checkpoint)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 1);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 2), MARIN_OK);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    atomic_store(&g_save_block, 1);
    marin_future_t *add = call_int(a, "add", 1); /* its checkpoint blocks */
    ck_assert(wait_for(&g_started, 1, WAIT));
    marin_future_t *crash = call_int(a, "crash", 0);
    ck_assert_int_eq(marin_future_get(crash, WAIT, NULL, NULL), MARIN_EWORKER);
    wait_for(&g_fini, 1, 300);
    int early = atomic_load(&g_fini_in_save);
    atomic_store(&g_save_block, 0);
    atomic_store(&g_gate, 1);
    ck_assert_int_ne(marin_future_get(add, WAIT, NULL, NULL), MARIN_ETIMEDOUT);
    ck_assert_msg(early == 0, "fini destroyed the instance while its checkpoint hook "
                  "ran (the call that triggered it ended %d)",
                  marin_future_get(add, 0, NULL, NULL));
    marin_future_release(crash);
    ck_assert_int_eq(atomic_load(&g_bad_fini), 0);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    int add_rc = marin_future_get(add, 0, NULL, NULL);
    marin_future_release(add);
    int64_t v = call_i64(a, "get", 0);
    /* checkpoint_every 1: an acknowledged add is in the last checkpoint */
    if (add_rc == MARIN_OK)
        ck_assert_int_eq(v, 2);
    else
        ck_assert(v == 1 || v == 2);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* kill                                                                    */
/* ====================================================================== */

START_TEST(test_actor_kill_running_and_pending)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(3, 0); /* no_restart wins */
    marin_actor_t *a = create(rt, "Counter", 0, o);
    marin_future_t *blk = call_int(a, "block", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    marin_future_t *pending[5];
    for (int i = 0; i < 5; i++)
        pending[i] = call_int(a, "add", 1);
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_OK);
    ck_assert_int_eq(marin_future_get(blk, WAIT, NULL, NULL), MARIN_ECANCELED);
    ck_assert_int_eq(marin_future_state(blk), MARIN_FUTURE_CANCELLED);
    ck_assert_str_ne(marin_future_error(blk), "");
    ck_assert(wait_for(&g_saw_cancel, 1, WAIT)); /* the method saw it */
    /* the method's later return does not change the outcome */
    ck_assert(wait_for(&g_fini, 1, WAIT));
    ck_assert_int_eq(marin_future_get(blk, 0, NULL, NULL), MARIN_ECANCELED);
    marin_future_release(blk);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(marin_future_state(pending[i]), MARIN_FUTURE_CANCELLED);
        expect_fail(pending[i], MARIN_ECANCELED, NULL);
    }
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_ESTATE);
    ck_assert_marin(marin_actor_kill(a, 0), MARIN_ESTATE);
    marin_future_t *f = (marin_future_t *)&f;
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_ESTATE);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_ECANCELED);
    ck_assert_int_eq(atomic_load(&g_init), 1); /* no restart */
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

START_TEST(test_actor_kill_then_restart)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(1, 0);
    ck_assert_marin(marin_actor_options_set_name(o, "phoenix"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 20, o);
    ck_assert_int_eq(call_i64(a, "add", 1), 21);
    marin_future_t *blk = call_int(a, "block", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    marin_future_t *pend = call_int(a, "add", 1);
    ck_assert_marin(marin_actor_kill(a, 0), MARIN_OK);
    expect_fail(blk, MARIN_ECANCELED, NULL);
    expect_fail(pend, MARIN_ECANCELED, NULL);
    ck_assert(wait_for(&g_saw_cancel, 1, WAIT));
    /* it works again: rebuilt by its constructor, name kept */
    ck_assert_int_eq(call_i64(a, "add", 0), 20);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    ck_assert_int_eq(call_i64(a, "get", 0), 20);
    ck_assert_int_eq(atomic_load(&g_init), 2);
    marin_actor_t *l = NULL;
    ck_assert_marin(marin_actor_lookup(rt, "phoenix", &l), MARIN_OK);
    marin_actor_release(l);
    /* no restarts left: kill(0) ends it */
    ck_assert_marin(marin_actor_kill(a, 0), MARIN_OK);
    marin_future_t *f = NULL;
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_ESTATE);
    ck_assert_marin(marin_actor_lookup(rt, "phoenix", &l), MARIN_ENOTFOUND);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 2);
}
END_TEST

/* Killed while its constructor runs. */
START_TEST(test_actor_kill_while_starting)
{
    setup_all();
    atomic_store(&g_hold_init, 1);
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    ck_assert(wait_for(&g_init_entered, 1, WAIT));
    marin_future_t *f = call_int(a, "add", 1);
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_OK);
    expect_fail(f, MARIN_ECANCELED, NULL);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_ECANCELED);
    atomic_store(&g_hold_init, 0);
    /* the instance it finished building is destroyed, once */
    ck_assert(wait_for(&g_fini, 1, WAIT));
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_ESTATE);
    marin_actor_release(a);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
    ck_assert_int_eq(atomic_load(&g_init), 1);
}
END_TEST

/* Concurrent kills: exactly one wins. */
typedef struct {
    marin_actor_t *a;
    pthread_barrier_t *start;
    int rc;
} kill_arg;

static void *killer_main(void *p)
{
    kill_arg *k = p;
    pthread_barrier_wait(k->start);
    k->rc = marin_actor_kill(k->a, 1);
    return NULL;
}

START_TEST(test_actor_kill_race)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    enum { T = 8 };
    for (int round = 0; round < 20; round++) {
        marin_actor_t *a = create(rt, "Counter", 0, NULL);
        marin_future_t *f = call_int(a, "add", 1);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, T);
        pthread_t th[T];
        kill_arg k[T];
        for (int i = 0; i < T; i++) {
            k[i] = (kill_arg){a, &start, 1};
            ck_assert_int_eq(pthread_create(&th[i], NULL, killer_main, &k[i]), 0);
        }
        int ok = 0;
        for (int i = 0; i < T; i++) {
            pthread_join(th[i], NULL);
            if (k[i].rc == MARIN_OK)
                ok++;
            else
                ck_assert_int_eq(k[i].rc, MARIN_ESTATE);
        }
        pthread_barrier_destroy(&start);
        ck_assert_int_eq(ok, 1);
        int rc = take_rc(f);
        ck_assert(rc == MARIN_OK || rc == MARIN_ECANCELED);
        marin_actor_release(a);
    }
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), atomic_load(&g_init));
}
END_TEST

/* marin_future_cancel on a call: a pending one never runs, a running one is
 * asked to stop; the actor goes on. */
START_TEST(test_actor_call_cancel)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    marin_future_t *blk = call_int(a, "block", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    marin_future_t *add = call_int(a, "add", 5);
    ck_assert_marin(marin_future_cancel(add), MARIN_OK);
    ck_assert_int_eq(marin_future_get(add, 0, NULL, NULL), MARIN_ECANCELED);
    ck_assert_marin(marin_future_cancel(blk), MARIN_OK);
    ck_assert_int_eq(marin_future_get(blk, 0, NULL, NULL), MARIN_ECANCELED);
    ck_assert(wait_for(&g_saw_cancel, 1, WAIT));
    ck_assert_int_eq(call_i64(a, "get", 0), 0); /* the add never ran */
    ck_assert_int_eq(call_i64(a, "add", 2), 2);
    ck_assert_int_eq(atomic_load(&g_init), 1); /* no restart */
    marin_future_release(add);
    marin_future_release(blk);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* A constructor that fails leaves the actor dead for good: it must give
 * back its resources and its name whether or not calls were waiting. */
START_TEST(test_actor_ctor_failure_releases)
{
    setup_all();
    atomic_store(&g_ctor_fail, 1);
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_options_t *o = opts_res("cpus=1");
    ck_assert_marin(marin_actor_options_set_name(o, "doomed"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_ETASK);
    /* resources: a cpus=1 task runs */
    marin_future_t *t = submit_opts(rt, "t_noop", NULL, 0, NULL);
    int rc = marin_future_get(t, 2000, NULL, NULL);
    marin_future_release(t);
    /* dead for good: not found by id nor by name */
    marin_actor_t *l = NULL;
    int by_id = marin_actor_from_id(rt, marin_actor_id(a), &l);
    marin_actor_release(l);
    l = NULL;
    int by_name = marin_actor_lookup(rt, "doomed", &l);
    marin_actor_release(l);
    atomic_store(&g_ctor_fail, 0);
    marin_actor_options_t *n = opts_new(); /* the name again, no resources */
    ck_assert_marin(marin_actor_options_set_name(n, "doomed"), MARIN_OK);
    marin_actor_t *b = NULL;
    int by_create = marin_actor_create(rt, "Counter", NULL, 0, n, &b);
    marin_actor_release(b);
    marin_actor_options_destroy(n);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt); /* before asserting: no thread left behind */
    ck_assert_msg(rc == MARIN_OK, "a cpus=1 task did not run after the cpus=1 actor's "
                  "constructor failed (%d): the failed actor still holds its cpu "
                  "(from_id: %d, lookup: %d, create with its name: %d)", rc, by_id,
                  by_name, by_create);
    ck_assert_msg(by_id == MARIN_ENOTFOUND, "from_id of an actor whose constructor "
                  "failed: %d, wanted MARIN_ENOTFOUND (dead for good)", by_id);
    ck_assert_msg(by_name == MARIN_ENOTFOUND, "lookup of an actor whose constructor "
                  "failed: %d, wanted MARIN_ENOTFOUND (not live)", by_name);
    ck_assert_msg(by_create == MARIN_OK, "creating an actor with the name of one whose "
                  "constructor failed: %d, wanted MARIN_OK (name free)", by_create);
}
END_TEST

/* The constructor fails when run again for a restart: the actor is dead,
 * the calls that waited fail, nothing hangs. */
START_TEST(test_actor_rebuild_failure)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(3, 0);
    ck_assert_marin(marin_actor_options_set_name(o, "rebuild"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    atomic_store(&g_hold_init, 1);
    atomic_store(&g_ctor_fail, 1);
    expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
    ck_assert(wait_for(&g_init_entered, 2, WAIT));
    marin_future_t *f[3];
    for (int i = 0; i < 3; i++)
        f[i] = call_int(a, "add", 1);
    atomic_store(&g_hold_init, 0);
    for (int i = 0; i < 3; i++)
        expect_fail(f[i], MARIN_ETASK, "ctor exploded on purpose");
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_ETASK);
    ck_assert_lasterr_has("ctor exploded on purpose");
    marin_future_t *g = NULL;
    int rc = marin_actor_call(a, "get", NULL, 0, &g);
    if (rc == MARIN_OK)
        expect_fail(g, MARIN_ETASK, NULL);
    else
        ck_assert_int_eq(rc, MARIN_ESTATE);
    marin_actor_t *l = NULL;
    ck_assert_marin(marin_actor_lookup(rt, "rebuild", &l), MARIN_ENOTFOUND);
    ck_assert_int_eq(atomic_load(&g_init_entered), 2); /* not retried further */
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

/* Many threads create the same name at once. */
typedef struct {
    marin_runtime_t *rt;
    marin_actor_options_t *o;
    pthread_barrier_t *start;
    marin_actor_t *a;
    int rc;
} race_arg;

static void *racer_main(void *p)
{
    race_arg *r = p;
    pthread_barrier_wait(r->start);
    r->rc = marin_actor_create(r->rt, "Counter", NULL, 0, r->o, &r->a);
    return NULL;
}

START_TEST(test_actor_name_race)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    enum { T = 8 };
    for (int mode = 0; mode < 2; mode++) {
        marin_actor_options_t *o = opts_new();
        ck_assert_marin(marin_actor_options_set_name(o, mode ? "race-shared" : "race"),
                        MARIN_OK);
        ck_assert_marin(marin_actor_options_set_get_if_exists(o, mode), MARIN_OK);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, T);
        pthread_t th[T];
        race_arg r[T];
        for (int i = 0; i < T; i++) {
            r[i] = (race_arg){rt, o, &start, NULL, 1};
            ck_assert_int_eq(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
        }
        int ok = 0;
        const char *id = NULL;
        for (int i = 0; i < T; i++) {
            pthread_join(th[i], NULL);
            if (r[i].rc == MARIN_OK) {
                ok++;
                if (!id)
                    id = marin_actor_id(r[i].a);
                ck_assert_str_eq(marin_actor_id(r[i].a), id);
            } else {
                ck_assert_int_eq(r[i].rc, MARIN_EEXIST);
                ck_assert_ptr_null(r[i].a);
            }
        }
        ck_assert_int_eq(ok, mode ? T : 1);
        for (int i = 0; i < T; i++)
            if (r[i].a)
                ck_assert_marin(marin_actor_ready(r[i].a, WAIT), MARIN_OK);
        ck_assert_int_eq(atomic_load(&g_init), mode + 1); /* one actor per name */
        for (int i = 0; i < T; i++)
            marin_actor_release(r[i].a);
        pthread_barrier_destroy(&start);
        marin_actor_options_destroy(o);
    }
    marin_runtime_close(rt);
}
END_TEST

/* ====================================================================== */
/* lifetime                                                                */
/* ====================================================================== */

START_TEST(test_actor_close_cancels_calls)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    marin_actor_t *idle = create(rt, "CCounter", 0, NULL);
    ck_assert_int_eq(call_i64(idle, "add", 1), 1);
    marin_future_t *blk = call_int(a, "block", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    marin_future_t *pending[5];
    for (int i = 0; i < 5; i++)
        pending[i] = call_int(a, "add", 1);
    marin_runtime_close(rt);
    /* futures stay readable after close */
    ck_assert_int_eq(marin_future_get(blk, 0, NULL, NULL), MARIN_ECANCELED);
    ck_assert_int_eq(marin_future_state(blk), MARIN_FUTURE_CANCELLED);
    ck_assert_str_ne(marin_future_error(blk), "");
    ck_assert_int_eq(atomic_load(&g_saw_cancel), 1);
    marin_future_release(blk);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(marin_future_get(pending[i], 0, NULL, NULL), MARIN_ECANCELED);
        ck_assert_int_eq(marin_future_state(pending[i]), MARIN_FUTURE_CANCELLED);
        marin_future_release(pending[i]);
    }
    ck_assert_int_eq(atomic_load(&g_fini), 2);
    ck_assert_int_eq(atomic_load(&g_bad_fini), 0);
    marin_actor_release(a);
    marin_actor_release(idle);
}
END_TEST

START_TEST(test_actor_handle_after_close)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "late"), MARIN_OK);
    marin_actor_t *a = create(rt, "CCounter", 0, o);
    char id[128];
    snprintf(id, sizeof id, "%s", marin_actor_id(a));
    marin_actor_t *b = NULL;
    ck_assert_marin(marin_actor_lookup(rt, "late", &b), MARIN_OK);
    marin_actor_retain(b);
    ck_assert_int_eq(call_i64(a, "add", 1), 1);
    marin_runtime_close(rt);
    marin_future_t *f = (marin_future_t *)&f;
    ck_assert_marin(marin_actor_call(a, "get", NULL, 0, &f), MARIN_ESTATE);
    ck_assert_ptr_null(f);
    ck_assert_marin(marin_actor_ready(a, 0), MARIN_ESTATE);
    ck_assert_marin(marin_actor_ready(a, -1), MARIN_ESTATE);
    ck_assert_marin(marin_actor_checkpoint(a), MARIN_ESTATE);
    ck_assert_marin(marin_actor_kill(a, 1), MARIN_ESTATE);
    ck_assert_marin(marin_actor_call(b, "get", NULL, 0, &f), MARIN_ESTATE);
    ck_assert_str_eq(marin_actor_id(a), id); /* still valid */
    marin_actor_release(a);
    marin_actor_release(b);
    marin_actor_release(b);
    marin_actor_options_destroy(o);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

/* fini runs exactly once per successful init/restore: after crashes, kills
 * with restart, and at close. */
START_TEST(test_actor_fini_once)
{
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_restarts(5, 0);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    marin_actor_t *c = create(rt, "CCounter", 0, o);
    ck_assert_int_eq(call_i64(c, "add", 1), 1);
    ck_assert_marin(marin_actor_checkpoint(c), MARIN_OK);
    for (int i = 0; i < 2; i++) {
        expect_fail(call_int(a, "crash", 0), MARIN_EWORKER, NULL);
        ck_assert_int_eq(call_i64(a, "add", 1), 1);
        expect_fail(call_int(c, "crash", 0), MARIN_EWORKER, NULL);
        ck_assert_int_eq(call_i64(c, "get", 0), 1);
    }
    ck_assert_marin(marin_actor_kill(a, 0), MARIN_OK);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    ck_assert_marin(marin_actor_kill(c, 0), MARIN_OK);
    ck_assert_marin(marin_actor_ready(c, WAIT), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_init), 5);    /* a: 1 + 3, c: 1 */
    ck_assert_int_eq(atomic_load(&g_restore), 3); /* c */
    ck_assert_int_eq(atomic_load(&g_fini), 6);
    /* a killed-for-good actor is finished once, also at close */
    marin_actor_t *k = create(rt, "Counter", 0, NULL);
    ck_assert_marin(marin_actor_ready(k, WAIT), MARIN_OK);
    ck_assert_marin(marin_actor_kill(k, 1), MARIN_OK);
    ck_assert(wait_for(&g_fini, 7, WAIT));
    marin_actor_release(a);
    marin_actor_release(c);
    marin_actor_release(k);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 9);
    ck_assert_int_eq(atomic_load(&g_fini), atomic_load(&g_init) + atomic_load(&g_restore));
    ck_assert_int_eq(atomic_load(&g_bad_fini), 0);
}
END_TEST

START_TEST(test_actor_retain_release)
{
    setup_all();
    marin_actor_retain(NULL);
    marin_actor_release(NULL);
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    marin_actor_retain(a);
    marin_actor_retain(a);
    marin_actor_release(a);
    marin_actor_release(a);
    ck_assert_int_eq(call_i64(a, "add", 1), 1); /* one reference left */
    /* a future outlives the handle it came from */
    marin_future_t *f = call_int(a, "add", 1);
    marin_actor_release(a);
    ck_assert_int_eq(take_i64(f), 2);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_actor_ready_timeout)
{
    setup_all();
    atomic_store(&g_hold_init, 1);
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    ck_assert(wait_for(&g_init_entered, 1, WAIT));
    int64_t t0 = now_ms();
    ck_assert_marin(marin_actor_ready(a, 50), MARIN_ETIMEDOUT);
    int64_t took = now_ms() - t0;
    ck_assert_int_ge(took, 40);
    ck_assert_int_lt(took, 2000);
    ck_assert_marin(marin_actor_ready(a, 0), MARIN_ETIMEDOUT);
    marin_future_t *f = call_int(a, "add", 4); /* made before ready: waits */
    ck_assert_int_eq(marin_future_state(f), MARIN_FUTURE_PENDING);
    atomic_store(&g_hold_init, 0);
    ck_assert_marin(marin_actor_ready(a, -1), MARIN_OK);
    ck_assert_marin(marin_actor_ready(a, 0), MARIN_OK);
    ck_assert_int_eq(take_i64(f), 4);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* A constructor that takes 300 ms. */
static int slow_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    (void)ctx;
    (void)arg;
    (void)len;
    sleep_ms(300);
    *self = counter_new(0);
    atomic_fetch_add(&g_init, 1);
    return 0;
}

START_TEST(test_actor_ready_slow_ctor)
{
    marin_actor_class_t *c = NULL;
    ck_assert_marin(marin_actor_class_create("Slow", slow_init, c_fini, &c), MARIN_OK);
    ck_assert_marin(marin_actor_class_add_method(c, "get", m_get, 0), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c), MARIN_OK);
    marin_actor_class_destroy(c);
    marin_runtime_t *rt = open_rt("local");
    int64_t t0 = now_ms();
    marin_actor_t *a = NULL;
    ck_assert_marin(marin_actor_create(rt, "Slow", NULL, 0, NULL, &a), MARIN_OK);
    ck_assert_int_lt(now_ms() - t0, 250); /* create does not wait for it */
    ck_assert_marin(marin_actor_ready(a, 50), MARIN_ETIMEDOUT);
    ck_assert_marin(marin_actor_ready(a, -1), MARIN_OK);
    ck_assert_int_ge(now_ms() - t0, 290);
    ck_assert_int_eq(call_i64(a, "get", 0), 0);
    marin_actor_release(a);
    marin_runtime_close(rt);
    ck_assert_int_eq(atomic_load(&g_fini), 1);
}
END_TEST

/* ====================================================================== */
/* OOM loops                                                               */
/* ====================================================================== */

#define OOM_MAX 10000

typedef int (*oom_call_fn)(void *c);
typedef void (*oom_failed_fn)(void *c, long n);

static long oom_loop(const char *what, oom_call_fn call, oom_failed_fn failed, void *c)
{
    for (long n = 0; n < OOM_MAX; n++) {
        marin__test_fail_alloc_after(n);
        int rc = call(c);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            return n;
        ck_assert_msg(rc == MARIN_ENOMEM, "%s, %ld allocations allowed: %d (%s): %s", what,
                      n, rc, marin_strerror(rc), marin_last_error());
        ck_assert_msg(marin_last_error()[0] != '\0',
                      "%s, %ld allocations allowed: ENOMEM without a message", what, n);
        if (failed)
            failed(c, n);
    }
    ck_abort_msg("%s never succeeded", what);
    return -1;
}

typedef struct {
    const char *name;
    int nmethods;
} class_ctx;

/* create + add_method + set_checkpoint + register, as one step. */
static int call_build_class(void *p)
{
    class_ctx *k = p;
    marin_actor_class_t *c = NULL;
    int rc = marin_actor_class_create(k->name, c_init, c_fini, &c);
    if (rc != MARIN_OK) {
        ck_assert_ptr_null(c);
        return rc;
    }
    for (int i = 0; i < k->nmethods && rc == MARIN_OK; i++)
        rc = marin_actor_class_add_method(c, k_methods[i].name, k_methods[i].fn,
                                          k_methods[i].flags);
    if (rc == MARIN_OK)
        rc = marin_actor_class_set_checkpoint(c, c_save, c_restore);
    if (rc == MARIN_OK)
        rc = marin_register_actor_class(c);
    marin_actor_class_destroy(c);
    return rc;
}

static void class_failed(void *p, long n)
{
    class_ctx *k = p;
    ck_assert_msg(marin__registry_find_actor_class(k->name) == NULL,
                  "n=%ld: '%s' registered by a failed call", n, k->name);
}

START_TEST(test_actor_oom_class)
{
    /* several classes, so later ones join a non-empty registry; 13 methods
     * make the builder's table grow */
    char name[32];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "OomClass%d", i);
        class_ctx k = {name, (int)(sizeof k_methods / sizeof k_methods[0])};
        ck_assert_int_gt(oom_loop("class create/add_method/register", call_build_class,
                                  class_failed, &k), 0);
        ck_assert_ptr_nonnull(marin__registry_find_actor_class(name));
    }
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "OomClass3", 6, NULL);
    ck_assert_int_eq(call_i64(a, "add", 1), 7);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

typedef struct {
    marin_runtime_t *rt;
    const char *cls;
    marin_actor_options_t *o;
    marin_actor_t *a;
} create_ctx;

static int call_create(void *p)
{
    create_ctx *c = p;
    int arg = 9;
    return marin_actor_create(c->rt, c->cls, &arg, sizeof arg, c->o, &c->a);
}

static void create_failed(void *p, long n)
{
    ck_assert_msg(((create_ctx *)p)->a == NULL, "n=%ld: *out not NULL after a failure", n);
}

/* The actor's own thread allocates as soon as it starts (the
 * constructor's context), and the fault counter is process-wide: if it
 * starts before the loop turns injection off, the constructor may fail
 * with MARIN_ENOMEM. That is fine; anything else is not. */
static int check_created(marin_actor_t *a)
{
    int rc = marin_actor_ready(a, WAIT);
    ck_assert_msg(rc == MARIN_OK || rc == MARIN_ENOMEM, "ready: %d (%s): %s", rc,
                  marin_strerror(rc), marin_last_error());
    if (rc == MARIN_OK)
        ck_assert_int_eq(call_i64(a, "get", 0), 9);
    return rc;
}

START_TEST(test_actor_oom_create)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    /* defaults */
    create_ctx c = {rt, "Counter", NULL, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_create", call_create, create_failed, &c), 0);
    check_created(c.a);
    marin_actor_release(c.a);
    /* a name (a failed create must leave it free, or the next try clashes),
     * several threads */
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "oom-named"), MARIN_OK);
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 3), MARIN_OK);
    create_ctx d = {rt, "CCounter", o, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_create (named)", call_create, create_failed, &d),
                     0);
    marin_actor_t *l = NULL;
    if (check_created(d.a) == MARIN_OK) {
        ck_assert_marin(marin_actor_lookup(rt, "oom-named", &l), MARIN_OK);
        ck_assert_str_eq(marin_actor_id(l), marin_actor_id(d.a));
        marin_actor_release(l);
    } else { /* its constructor ran out of memory: failed actors free their name */
        ck_assert_marin(marin_actor_lookup(rt, "oom-named", &l), MARIN_ENOTFOUND);
    }
    marin_actor_release(d.a);
    marin_actor_options_destroy(o);
    /* a fresh actor works normally */
    marin_actor_t *a = create(rt, "Counter", 9, NULL);
    ck_assert_int_eq(call_i64(a, "get", 0), 9);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* A create that fails must not keep the resources it asked for. */
static void create_failed_resources_free(void *p, long n)
{
    create_ctx *c = p;
    ck_assert_msg(c->a == NULL, "n=%ld: *out not NULL after a failure", n);
    marin_future_t *t = submit_opts(c->rt, "t_noop", NULL, 0, NULL); /* cpus=1 */
    int rc = marin_future_get(t, 2000, NULL, NULL);
    ck_assert_msg(rc == MARIN_OK, "n=%ld: after a failed marin_actor_create asking "
                  "cpus=1, a cpus=1 task did not run (%d: %s): the failed actor still "
                  "holds its cpu", n, rc, marin_strerror(rc));
    marin_future_release(t);
}

START_TEST(test_actor_oom_create_releases_resources)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
    setup_all();
    marin_runtime_t *rt = open_rt(RT1);
    marin_actor_options_t *o = opts_res("cpus=1");
    ck_assert_marin(marin_actor_options_set_max_concurrency(o, 2), MARIN_OK);
    create_ctx c = {rt, "Counter", o, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_create (cpus=1)", call_create,
                              create_failed_resources_free, &c), 0);
    check_created(c.a);
    ck_assert_marin(marin_actor_kill(c.a, 1), MARIN_OK);
    ck_assert_marin(take_rc(submit_opts(rt, "t_noop", NULL, 0, NULL)), MARIN_OK);
    marin_actor_release(c.a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

typedef struct {
    marin_actor_t *a;
    const char *method;
    const void *arg;
    size_t len;
    marin_future_t *f;
} call_ctx;

static int call_call(void *p)
{
    call_ctx *c = p;
    return marin_actor_call(c->a, c->method, c->arg, c->len, &c->f);
}

static void call_failed(void *p, long n)
{
    ck_assert_msg(((call_ctx *)p)->f == NULL, "n=%ld: *out not NULL after a failure", n);
}

START_TEST(test_actor_oom_call)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_t *a = create(rt, "Counter", 0, NULL);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    /* keep the actor busy so the calls under test only queue (its thread
     * must not allocate while injection is on) */
    marin_future_t *blk = call_int(a, "block", 0);
    ck_assert(wait_for(&g_started, 1, WAIT));
    char arg[64];
    memset(arg, 'z', sizeof arg);
    call_ctx c = {a, "echo", arg, sizeof arg, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_call", call_call, call_failed, &c), 0);
    int one = 1;
    call_ctx d = {a, "add", &one, sizeof one, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_call (add)", call_call, call_failed, &d), 0);
    atomic_store(&g_gate, 1);
    ck_assert_marin(take_rc(blk), MARIN_OK);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_marin(marin_future_get(c.f, WAIT, &data, &len), MARIN_OK);
    ck_assert_uint_eq(len, sizeof arg);
    ck_assert_int_eq(memcmp(data, arg, sizeof arg), 0);
    marin_future_release(c.f);
    ck_assert_int_eq(take_i64(d.f), 1); /* failed calls never ran */
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

typedef struct {
    marin_runtime_t *rt;
    const char *key;
    int by_id;
    marin_actor_t *a;
} lookup_ctx;

static int call_lookup(void *p)
{
    lookup_ctx *c = p;
    return c->by_id ? marin_actor_from_id(c->rt, c->key, &c->a)
                    : marin_actor_lookup(c->rt, c->key, &c->a);
}

static void lookup_failed(void *p, long n)
{
    ck_assert_msg(((lookup_ctx *)p)->a == NULL, "n=%ld: *out not NULL after a failure", n);
}

START_TEST(test_actor_oom_lookup)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
    setup_all();
    marin_runtime_t *rt = open_rt("local");
    marin_actor_options_t *o = opts_new();
    ck_assert_marin(marin_actor_options_set_name(o, "found"), MARIN_OK);
    marin_actor_t *a = create(rt, "Counter", 0, o);
    ck_assert_marin(marin_actor_ready(a, WAIT), MARIN_OK);
    lookup_ctx l = {rt, "found", 0, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_lookup", call_lookup, lookup_failed, &l), 0);
    ck_assert_str_eq(marin_actor_id(l.a), marin_actor_id(a));
    lookup_ctx i = {rt, marin_actor_id(a), 1, NULL};
    ck_assert_int_gt(oom_loop("marin_actor_from_id", call_lookup, lookup_failed, &i), 0);
    ck_assert_str_eq(marin_actor_id(i.a), marin_actor_id(a));
    ck_assert_int_eq(call_i64(l.a, "add", 1), 1);
    ck_assert_int_eq(call_i64(i.a, "add", 1), 2);
    marin_actor_release(l.a);
    marin_actor_release(i.a);
    marin_actor_release(a);
    marin_actor_options_destroy(o);
    marin_runtime_close(rt);
}
END_TEST

/* ---- suite ---- */

/* An actor that holds GPUs sees their ids in its constructor and methods,
 * and two actors holding one whole GPU each get different ones. */
static atomic_int g_gpu_ctor_n = -1;

static int gpu_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    (void)arg, (void)len;
    int ids[4];
    size_t n = 0;
    if (marin_task_gpu_ids(ctx, ids, 4, &n) == MARIN_OK)
        atomic_store(&g_gpu_ctor_n, (int)n);
    *self = NULL;
    return 0;
}

static int gpu_ids_method(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self, (void)arg, (void)len;
    int ids[4];
    size_t n = 0;
    int rc = marin_task_gpu_ids(ctx, ids, 4, &n);
    if (rc != MARIN_OK)
        return rc;
    return marin_task_return(ctx, ids, n * sizeof(int));
}

START_TEST(test_actor_gpu_ids)
{
    marin_actor_class_t *c = NULL;
    ck_assert_marin(marin_actor_class_create("GpuActor", gpu_init, NULL, &c), MARIN_OK);
    ck_assert_marin(marin_actor_class_add_method(c, "ids", gpu_ids_method, 0), MARIN_OK);
    ck_assert_marin(marin_register_actor_class(c), MARIN_OK);
    marin_actor_class_destroy(c);
    marin_runtime_t *rt = open_rt("local://?resources=cpus=2,gpus=2");
    marin_actor_options_t *o = opts_res("gpus=1");
    marin_actor_t *a = NULL, *b = NULL;
    ck_assert_marin(marin_actor_create(rt, "GpuActor", NULL, 0, o, &a), MARIN_OK);
    ck_assert_marin(marin_actor_create(rt, "GpuActor", NULL, 0, o, &b), MARIN_OK);
    ck_assert_marin(marin_actor_ready(a, 5000), MARIN_OK);
    ck_assert_int_eq(atomic_load(&g_gpu_ctor_n), 1);
    int got[2];
    marin_actor_t *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        marin_future_t *f = NULL;
        ck_assert_marin(marin_actor_call(both[i], "ids", NULL, 0, &f), MARIN_OK);
        const void *data;
        size_t len;
        ck_assert_marin(marin_future_get(f, 5000, &data, &len), MARIN_OK);
        ck_assert_uint_eq(len, sizeof(int));
        memcpy(&got[i], data, sizeof(int));
        marin_future_release(f);
    }
    ck_assert_int_ne(got[0], got[1]);
    ck_assert(got[0] >= 0 && got[0] < 2 && got[1] >= 0 && got[1] < 2);
    marin_actor_options_destroy(o);
    marin_actor_release(a);
    marin_actor_release(b);
    marin_runtime_close(rt);
}
END_TEST

static Suite *actor_suite(void)
{
    Suite *s = suite_create("actor");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_actor_class_create_errors);
    tcase_add_test(tc, test_actor_class_add_method_errors);
    tcase_add_test(tc, test_actor_class_set_checkpoint_errors);
    tcase_add_test(tc, test_actor_class_register);
    tcase_add_test(tc, test_actor_options_setters);
    tcase_add_test(tc, test_actor_options_copied_and_reused);
    tcase_add_test(tc, test_actor_options_checkpoint_every_needs_hooks);
    tcase_add_test(tc, test_actor_create_call_results);
    tcase_add_test(tc, test_actor_create_invalid_args);
    tcase_add_test(tc, test_actor_unknown_class);
    tcase_add_test(tc, test_actor_unknown_method);
    tcase_add_test(tc, test_actor_method_failure_fails_only_call);
    tcase_add_test(tc, test_actor_ctor_failure);
    tcase_add_test(tc, test_actor_ctor_failure_fails_queued_calls);
    tcase_add_test(tc, test_actor_order_pipelined);
    tcase_add_test(tc, test_actor_order_many_threads);
    tcase_add_test(tc, test_actor_concurrency_overlap);
    tcase_add_test(tc, test_actor_concurrency_one_is_serial);
    tcase_add_test(tc, test_actor_nested_task_no_starve);
    tcase_add_test(tc, test_actor_many_actors_tasks_run);
    tcase_add_test(tc, test_actor_resources_held);
    tcase_add_test(tc, test_actor_resources_infeasible);
    tcase_add_test(tc, test_actor_gpu_ids);
    tcase_add_test(tc, test_actor_create_waits_for_resources);
    tcase_add_test(tc, test_actor_name_taken);
    tcase_add_test(tc, test_actor_get_if_exists);
    tcase_add_test(tc, test_actor_lookup);
    tcase_add_test(tc, test_actor_name_free_after_kill);
    tcase_add_test(tc, test_actor_lives_without_handles);
    tcase_add_test(tc, test_actor_id_round_trip);
    tcase_add_test(tc, test_actor_id_passed_to_task);
    tcase_add_test(tc, test_actor_from_id_unknown);
    tcase_add_test(tc, test_actor_restart_checkpoint_every);
    tcase_add_test(tc, test_actor_restart_checkpoint_every_n);
    tcase_add_test(tc, test_actor_restart_runs_ctor_again);
    tcase_add_test(tc, test_actor_restart_inflight_fails);
    tcase_add_test(tc, test_actor_restart_idempotent_replayed);
    tcase_add_test(tc, test_actor_restart_idempotent_no_restarts_left);
    tcase_add_test(tc, test_actor_restart_idempotent_beside_crash);
    tcase_add_test(tc, test_actor_resources_released_when_dead);
    tcase_add_test(tc, test_actor_restart_calls_wait);
    tcase_add_test(tc, test_actor_max_restarts_exhausted);
    tcase_add_test(tc, test_actor_max_restarts_budget);
    tcase_add_test(tc, test_actor_unlimited_restarts);
    tcase_add_test(tc, test_actor_checkpoint_on_request);
    tcase_add_test(tc, test_actor_checkpoint_unsupported);
    tcase_add_test(tc, test_actor_checkpoint_hook_failure);
    tcase_add_test(tc, test_actor_kill_during_checkpoint);
    tcase_add_test(tc, test_actor_crash_during_auto_checkpoint);
    tcase_add_test(tc, test_actor_kill_running_and_pending);
    tcase_add_test(tc, test_actor_kill_then_restart);
    tcase_add_test(tc, test_actor_kill_while_starting);
    tcase_add_test(tc, test_actor_kill_race);
    tcase_add_test(tc, test_actor_call_cancel);
    tcase_add_test(tc, test_actor_ctor_failure_releases);
    tcase_add_test(tc, test_actor_rebuild_failure);
    tcase_add_test(tc, test_actor_name_race);
    tcase_add_test(tc, test_actor_close_cancels_calls);
    tcase_add_test(tc, test_actor_handle_after_close);
    tcase_add_test(tc, test_actor_fini_once);
    tcase_add_test(tc, test_actor_retain_release);
    tcase_add_test(tc, test_actor_ready_timeout);
    tcase_add_test(tc, test_actor_ready_slow_ctor);
    suite_add_tcase(s, tc);

#if MARIN_FAULT_INJECTION
    TCase *oom = tcase_create("oom");
    tcase_set_timeout(oom, 60);
    tcase_add_test(oom, test_actor_oom_class);
    tcase_add_test(oom, test_actor_oom_create);
    tcase_add_test(oom, test_actor_oom_create_releases_resources);
    tcase_add_test(oom, test_actor_oom_call);
    tcase_add_test(oom, test_actor_oom_lookup);
    suite_add_tcase(s, oom);
#endif
    return s;
}

int main(void)
{
    return marin_test_run(actor_suite());
}
