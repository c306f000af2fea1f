/* Output lines, sort comparators and medians for marin-bench (bench_util.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

void figure(const char *name, double value, int decimals, const char *unit)
{
    printf("%s %.*f %s\n", name, decimals, value, unit);
    fflush(stdout);
}

void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

double median3(double *v, const char *name)
{
    note("%s runs: %.0f %.0f %.0f", name, v[0], v[1], v[2]);
    double s[RUNS];
    memcpy(s, v, sizeof s);
    qsort(s, RUNS, sizeof s[0], cmp_double);
    return s[RUNS / 2];
}
