/* What marin-bench's marin figures and its pthread reference share: the
 * clock, the output lines and the median of the runs. */
#ifndef MARIN_BENCH_UTIL_H
#define MARIN_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

#define WINDOW 1000  /* tasks in flight: the ordered map, the reference ring */
#define RUNS 3       /* runs per throughput figure; the median is printed */

/* CLOCK_MONOTONIC in seconds and in nanoseconds. Inline: they bracket the
 * timed calls, and a call into another file would be timed too. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A qsort comparator over int64_t. */
int cmp_i64(const void *a, const void *b);

/* One figure on stdout: `name value unit`. */
void figure(const char *name, double value, int decimals, const char *unit);

/* A `# ...` line on stderr. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Note the RUNS values @p v of figure @p name; return their median. */
double median3(double *v, const char *name);

#endif
