/* Small synchronisation primitives on Linux futexes: a 4-byte lock and
 * wait/wake on a 32-bit word. Futures use them so a pending task costs
 * bytes, not a pthread mutex and condvar each. */
#ifndef MARIN_CORE_SYNC_H
#define MARIN_CORE_SYNC_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct { atomic_uint word; } marin__lock_t; /* 0 free, 1 held, 2 contended */

void marin__lock_acquire_slow(marin__lock_t *l);
void marin__lock_release_slow(marin__lock_t *l);

static inline void marin__lock(marin__lock_t *l)
{
    unsigned expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->word, &expected, 1,
                                                 memory_order_acquire,
                                                 memory_order_relaxed))
        marin__lock_acquire_slow(l);
}

static inline void marin__unlock(marin__lock_t *l)
{
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) == 2)
        marin__lock_release_slow(l);
}

/* Sleep while *word == expected, at most timeout_ms (-1 forever).
 * Returns 0 when woken or the value changed, MARIN_ETIMEDOUT on timeout.
 * Spurious wakeups happen: callers re-check. */
int marin__futex_wait(atomic_uint *word, unsigned expected, int64_t timeout_ms);
void marin__futex_wake_all(atomic_uint *word);

/* Tell the CPU we are spinning. */
static inline void marin__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Monotonic milliseconds and nanoseconds. */
int64_t marin__now_ms(void);
int64_t marin__now_ns(void);

/* The CLOCK_REALTIME instant @p ms milliseconds from now, for
 * pthread_cond_timedwait. */
struct timespec;
void marin__realtime_after_ms(int64_t ms, struct timespec *ts);

#endif
