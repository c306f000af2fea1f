/* Allocation through one door; see alloc.h. The fault-injection counter is
 * one of the few process-wide mutable values STYLE.md allows. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "marin_config.h"

#if MARIN_FAULT_INJECTION
static atomic_long fail_after = -1;

void marin__test_fail_alloc_after(long n) { atomic_store(&fail_after, n); }

static int should_fail(void)
{
    long cur = atomic_load(&fail_after);
    while (cur >= 0) {
        if (cur == 0)
            return 1;
        if (atomic_compare_exchange_weak(&fail_after, &cur, cur - 1))
            return 0;
    }
    return 0;
}
#else
void marin__test_fail_alloc_after(long n) { (void)n; }
static int should_fail(void) { return 0; }
#endif

void *marin__malloc(size_t n)
{
    void *p = should_fail() ? NULL : malloc(n ? n : 1);
    if (!p)
        marin__note_oom();
    return p;
}

void *marin__calloc(size_t count, size_t size)
{
    void *p = should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
    if (!p)
        marin__note_oom();
    return p;
}

void *marin__realloc(void *p, size_t n)
{
    void *q = should_fail() ? NULL : realloc(p, n ? n : 1);
    if (!q)
        marin__note_oom();
    return q;
}

void marin__free(void *p) { free(p); }

void *marin__memdup(const void *p, size_t n)
{
    void *q = marin__malloc(n);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

char *marin__strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *q = marin__malloc(len + 1);
    if (q) {
        memcpy(q, s, len);
        q[len] = '\0';
    }
    return q;
}

char *marin__strdup(const char *s)
{
    return s ? marin__strndup(s, strlen(s)) : NULL;
}
