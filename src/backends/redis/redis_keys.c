/* marin__rkey: the "marin:{NS}:" prefix of every key (redis_keys.h). */
#include <stdarg.h>
#include <stdio.h>

#include "redis_keys.h"

int marin__rkey(char *buf, size_t cap, const char *ns, const char *fmt, ...)
{
    int n = snprintf(buf, cap, "marin:{%s}:", ns);
    if (n < 0)
        return n;
    size_t used = (size_t)n < cap ? (size_t)n : cap;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(cap ? buf + used : buf, cap - used, fmt, ap);
    va_end(ap);
    return m < 0 ? m : n + m;
}
