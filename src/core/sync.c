/* Futex-based lock and wait; see sync.h. */
#include "sync.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "marin/error.h"

static long futex(atomic_uint *addr, int op, unsigned val,
                  const struct timespec *ts)
{
    return syscall(SYS_futex, (unsigned *)addr, op, val, ts, NULL, 0);
}

void marin__lock_acquire_slow(marin__lock_t *l)
{
    /* Drepper, "Futexes are tricky", mutex 2. */
    unsigned c = atomic_exchange_explicit(&l->word, 2, memory_order_acquire);
    while (c != 0) {
        futex(&l->word, FUTEX_WAIT_PRIVATE, 2, NULL);
        c = atomic_exchange_explicit(&l->word, 2, memory_order_acquire);
    }
}

void marin__lock_release_slow(marin__lock_t *l)
{
    futex(&l->word, FUTEX_WAKE_PRIVATE, 1, NULL);
}

int marin__futex_wait(atomic_uint *word, unsigned expected, int64_t timeout_ms)
{
    if (timeout_ms < 0) {
        futex(word, FUTEX_WAIT_PRIVATE, expected, NULL);
        return 0;
    }
    struct timespec ts = {(time_t)(timeout_ms / 1000),
                          (long)(timeout_ms % 1000) * 1000000L};
    if (futex(word, FUTEX_WAIT_PRIVATE, expected, &ts) == -1 &&
        errno == ETIMEDOUT)
        return MARIN_ETIMEDOUT;
    return 0;
}

void marin__futex_wake_all(atomic_uint *word)
{
    futex(word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

int64_t marin__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t marin__now_ms(void) { return marin__now_ns() / 1000000LL; }

void marin__realtime_after_ms(int64_t ms, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
