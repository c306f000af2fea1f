/* A marin-worker plugin for tests/test_redis_fault.c.
 *
 *   f_sleep   arg "MS": sleeps MS ms, returns its arg
 *   f_noop    does nothing
 *   f_pid     returns getpid() as text
 *   f_attempt arg "PATH|MS": appends "start <tag> <pid> <attempt>" to PATH,
 *             sleeps MS ms, appends "end <tag> <pid> <attempt>", returns
 *             the attempt (marin_task_attempt) as text. <tag> is the part of
 *             PATH's argument after a second '|' ("PATH|MS|TAG"), or "-".
 *
 * and the actor classes f_counter and f_order (tests/fault_actor.h, which the
 * test registers in the driver too).
 *
 * FAULT_PLUGIN_FAIL=1 in the environment makes marin_plugin_init fail (it
 * registers an invalid name and returns that error). */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "marin/marin.h"
#include "fault_actor.h"

int marin_plugin_init(void);

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static long parse_ms(const char *s, size_t n)
{
    char buf[32];
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

static int f_sleep(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    nap(parse_ms(arg, len));
    return marin_task_return(ctx, arg, len);
}

static int f_noop(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ctx;
    (void)arg;
    (void)len;
    (void)ud;
    return MARIN_OK;
}

static int f_pid(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld", (long)getpid());
    return marin_task_return(ctx, buf, (size_t)n);
}

/* One line, written with a single write(2) on an O_APPEND descriptor. */
static int append_line(const char *path, const char *what, const char *tag, int attempt)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%s %s %ld %d\n", what, tag, (long)getpid(), attempt);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    return w == n ? 0 : -1;
}

static int f_attempt(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    char a[1024];
    if (len >= sizeof a)
        return marin_task_fail(ctx, "f_attempt: argument too long");
    memcpy(a, arg, len);
    a[len] = '\0';
    char *bar = strchr(a, '|');
    if (!bar)
        return marin_task_fail(ctx, "f_attempt: argument is not PATH|MS[|TAG]");
    *bar = '\0';
    char *ms = bar + 1, *tag = strchr(ms, '|');
    if (tag)
        *tag++ = '\0';
    else
        tag = "-";
    int attempt = marin_task_attempt(ctx);
    if (append_line(a, "start", tag, attempt) != 0)
        return marin_task_fail(ctx, "f_attempt: cannot append to the file");
    nap(strtol(ms, NULL, 10));
    if (append_line(a, "end", tag, attempt) != 0)
        return marin_task_fail(ctx, "f_attempt: cannot append to the file");
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d", attempt);
    return marin_task_return(ctx, buf, (size_t)n);
}

int marin_plugin_init(void)
{
    const char *fail = getenv("FAULT_PLUGIN_FAIL");
    if (fail && strcmp(fail, "1") == 0)
        return marin_register_task("", f_noop, NULL); /* MARIN_EINVAL, named */
    int rc;
    if ((rc = marin_register_task("f_sleep", f_sleep, NULL)) != MARIN_OK ||
        (rc = marin_register_task("f_noop", f_noop, NULL)) != MARIN_OK ||
        (rc = marin_register_task("f_pid", f_pid, NULL)) != MARIN_OK ||
        (rc = marin_register_task("f_attempt", f_attempt, NULL)) != MARIN_OK ||
        (rc = fault_actor_register()) != MARIN_OK)
        return rc;
    return MARIN_OK;
}
