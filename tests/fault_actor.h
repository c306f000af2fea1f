/* Actor classes of the redis fault suite, registered both by the
 * marin-worker plugin (tests/fault_plugin.c, the hosts) and by the driver
 * (tests/test_redis_fault.c: marin_actor_create needs the class registered
 * in the creating process). Static, so each includer has its own copy.
 *
 *   f_counter   a long; constructor arg: its start value (text, default 0);
 *               checkpoint = the value as text.
 *     add   arg N (text, default 1): value += N, returns the new value
 *     get   returns the value
 *     pid   returns getpid() of the host
 *     nap   arg "PATH|MS": appends "nap <pid>\n" to PATH, sleeps MS ms,
 *           returns "" (does not touch the value)
 *   f_order     per-caller sequence check (max_concurrency 1)
 *     step  arg "CALLER SEQ": fails unless SEQ is CALLER's last + 1 (the
 *           first is 1); returns "CALLER SEQ"
 *     total returns the number of steps accepted, over all callers */
#ifndef MARIN_FAULT_ACTOR_H
#define MARIN_FAULT_ACTOR_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "marin/marin.h"

static void fa_nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* @p arg as a NUL-terminated string in buf; 0 when it does not fit. */
static int fa_text(char *buf, size_t cap, const void *arg, size_t len)
{
    if (len >= cap)
        return 0;
    if (len)
        memcpy(buf, arg, len);
    buf[len] = '\0';
    return 1;
}

static int fa_return_long(marin_task_ctx_t *ctx, long v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%ld", v);
    return marin_task_return(ctx, b, (size_t)n);
}

/* ---- f_counter ---- */

static int fa_counter_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    char b[32];
    if (!fa_text(b, sizeof b, arg, len))
        return marin_task_fail(ctx, "f_counter: start value too long");
    long *v = calloc(1, sizeof *v);
    if (!v)
        return MARIN_ENOMEM;
    *v = strtol(b, NULL, 10);
    *self = v;
    return 0;
}

static void fa_counter_fini(void *self)
{
    free(self);
}

static int fa_counter_add(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    char b[32];
    if (!fa_text(b, sizeof b, arg, len))
        return marin_task_fail(ctx, "f_counter.add: argument too long");
    long *v = self;
    *v += len ? strtol(b, NULL, 10) : 1;
    return fa_return_long(ctx, *v);
}

static int fa_counter_get(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)arg, (void)len;
    return fa_return_long(ctx, *(long *)self);
}

static int fa_counter_pid(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self, (void)arg, (void)len;
    return fa_return_long(ctx, (long)getpid());
}

static int fa_counter_nap(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)self;
    char a[512];
    if (!fa_text(a, sizeof a, arg, len))
        return marin_task_fail(ctx, "f_counter.nap: argument too long");
    char *bar = strchr(a, '|');
    if (!bar)
        return marin_task_fail(ctx, "f_counter.nap: argument is not PATH|MS");
    *bar = '\0';
    char line[64];
    int n = snprintf(line, sizeof line, "nap %ld\n", (long)getpid());
    int fd = open(a, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return marin_task_fail(ctx, "f_counter.nap: cannot open the file");
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    if (w != n)
        return marin_task_fail(ctx, "f_counter.nap: cannot append to the file");
    fa_nap(strtol(bar + 1, NULL, 10));
    return marin_task_return(ctx, "", 0);
}

static int fa_counter_save(marin_task_ctx_t *ctx, void *self)
{
    return fa_return_long(ctx, *(long *)self);
}

static int fa_counter_restore(marin_task_ctx_t *ctx, const void *data, size_t len,
                              void **self)
{
    return fa_counter_init(ctx, data, len, self);
}

/* ---- f_order ---- */

#define FA_CALLERS 16
typedef struct {
    char caller[FA_CALLERS][32];
    long last[FA_CALLERS];
    int n;
    long total;
} fa_order;

static int fa_order_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    (void)ctx, (void)arg, (void)len;
    fa_order *o = calloc(1, sizeof *o);
    if (!o)
        return MARIN_ENOMEM;
    *self = o;
    return 0;
}

static void fa_order_fini(void *self)
{
    free(self);
}

static int fa_order_step(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    fa_order *o = self;
    char a[64], who[32];
    long seq = 0;
    if (!fa_text(a, sizeof a, arg, len) || sscanf(a, "%31s %ld", who, &seq) != 2)
        return marin_task_fail(ctx, "f_order.step: argument is not 'CALLER SEQ'");
    int i = 0;
    while (i < o->n && strcmp(o->caller[i], who) != 0)
        i++;
    if (i == o->n) {
        if (o->n == FA_CALLERS)
            return marin_task_fail(ctx, "f_order.step: too many callers");
        snprintf(o->caller[o->n++], sizeof o->caller[0], "%s", who);
    }
    if (seq != o->last[i] + 1) {
        char m[160];
        snprintf(m, sizeof m, "f_order.step: caller %s sent seq %ld after %ld (out of order)",
                 who, seq, o->last[i]);
        return marin_task_fail(ctx, m);
    }
    o->last[i] = seq;
    o->total++;
    return marin_task_return(ctx, a, strlen(a));
}

static int fa_order_total(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)arg, (void)len;
    return fa_return_long(ctx, ((fa_order *)self)->total);
}

/* Register both classes in this process. */
static int fault_actor_register(void)
{
    marin_actor_class_t *c = NULL;
    int rc;
    if ((rc = marin_actor_class_create("f_counter", fa_counter_init, fa_counter_fini, &c)) ||
        (rc = marin_actor_class_add_method(c, "add", fa_counter_add, 0)) ||
        (rc = marin_actor_class_add_method(c, "get", fa_counter_get, 0)) ||
        (rc = marin_actor_class_add_method(c, "pid", fa_counter_pid, 0)) ||
        (rc = marin_actor_class_add_method(c, "nap", fa_counter_nap, 0)) ||
        (rc = marin_actor_class_set_checkpoint(c, fa_counter_save, fa_counter_restore)) ||
        (rc = marin_register_actor_class(c))) {
        marin_actor_class_destroy(c);
        return rc;
    }
    marin_actor_class_destroy(c);
    c = NULL;
    if ((rc = marin_actor_class_create("f_order", fa_order_init, fa_order_fini, &c)) ||
        (rc = marin_actor_class_add_method(c, "step", fa_order_step, 0)) ||
        (rc = marin_actor_class_add_method(c, "total", fa_order_total, 0)) ||
        (rc = marin_register_actor_class(c))) {
        marin_actor_class_destroy(c);
        return rc;
    }
    marin_actor_class_destroy(c);
    return MARIN_OK;
}

#endif
