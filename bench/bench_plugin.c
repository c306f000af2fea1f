/* The marin-bench worker plugin: what the `redis` group's marin-worker
 * processes load (`marin-worker --load build/bench/bench_plugin.so`).
 *
 * It registers the no-op task "bench_noop" and the actor class
 * "bench_counter" (methods "add" and the no-op "noop"), the same names bench_redis.c uses on
 * the driver side. */
#include <stdlib.h>

#include <marin/marin.h>

int marin_plugin_init(void);

static int noop(marin_task_ctx_t *ctx, const void *arg, size_t len, void *userdata)
{
    (void)ctx, (void)arg, (void)len, (void)userdata;
    return 0;
}

static int counter_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    (void)ctx, (void)arg, (void)len;
    long *n = calloc(1, sizeof *n);
    if (!n)
        return MARIN_ENOMEM;
    *self = n;
    return 0;
}

static void counter_fini(void *self)
{
    free(self);
}

static int counter_add(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)ctx, (void)arg, (void)len;
    ++*(long *)self;
    return 0;
}

static int counter_noop(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)ctx, (void)self, (void)arg, (void)len;
    return 0;
}

__attribute__((visibility("default"))) int marin_plugin_init(void)
{
    int rc = marin_register_task("bench_noop", noop, NULL);
    if (rc != MARIN_OK)
        return rc;
    marin_actor_class_t *c = NULL;
    if ((rc = marin_actor_class_create("bench_counter", counter_init, counter_fini, &c)) ||
        (rc = marin_actor_class_add_method(c, "add", counter_add, 0)) ||
        (rc = marin_actor_class_add_method(c, "noop", counter_noop, 0)) ||
        (rc = marin_register_actor_class(c))) {
        marin_actor_class_destroy(c);
        return rc;
    }
    marin_actor_class_destroy(c);
    return MARIN_OK;
}
