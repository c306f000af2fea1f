/* Allocation through one door, so out-of-memory paths can be tested.
 *
 * Every allocation in the library goes through these. With
 * -Dfault_injection=true, marin__test_fail_alloc_after(n) lets n more
 * allocations succeed and fails every one after (n < 0 turns it off). A
 * failed allocation sets this thread's sticky OOM flag, which the API exit
 * funnel turns into MARIN_ENOMEM. */
#ifndef MARIN_CORE_ALLOC_H
#define MARIN_CORE_ALLOC_H

#include <stddef.h>

void *marin__malloc(size_t n);
void *marin__calloc(size_t count, size_t size);
void *marin__realloc(void *p, size_t n);
void marin__free(void *p);
/* Copy of s (NULL for NULL s or out of memory). */
char *marin__strdup(const char *s);
char *marin__strndup(const char *s, size_t n);
void *marin__memdup(const void *p, size_t n);

/* Test hook: allow n more allocations, then fail all (n < 0: never fail).
 * Counted across all threads. Only fails when built with fault_injection. */
void marin__test_fail_alloc_after(long n);

#endif
