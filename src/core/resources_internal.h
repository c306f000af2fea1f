/* Resource sets, internal view.
 *
 * Entries are kept in canonical order: cpus, memory, gpus, then custom
 * names sorted by strcmp. Amounts are fixed-point int64: memory in bytes,
 * every other resource in hundredths (cpus=0.5 -> 50). Zero amounts are
 * never stored. */
#ifndef MARIN_CORE_RESOURCES_INTERNAL_H
#define MARIN_CORE_RESOURCES_INTERNAL_H

#include <stdint.h>
#include "marin/resources.h"

#define MARIN__RES_NAME_MAX 63
#define MARIN__RES_MAX 32
#define MARIN__RES_SCALE 100 /* hundredths for everything but memory */

struct marin__res_entry {
    char name[MARIN__RES_NAME_MAX + 1];
    int64_t amount; /* fixed point, see above */
};

struct marin_resources {
    size_t n;
    struct marin__res_entry e[MARIN__RES_MAX];
};

/* Fixed-point amount of name (0 when absent). */
int64_t marin__res_amount(const marin_resources_t *r, const char *name);
/* Set name to a fixed-point amount (0 removes). MARIN_OK / MARIN_EINVAL
 * (bad name, negative, more than MARIN__RES_MAX names) with message. */
int marin__res_set_fixed(marin_resources_t *r, const char *name,
                         int64_t amount);
/* Convert between double and fixed point for @p name. */
int64_t marin__res_to_fixed(const char *name, double amount);
double marin__res_from_fixed(const char *name, int64_t amount);
/* 1 when equal (same names and amounts). */
int marin__res_equal(const marin_resources_t *a, const marin_resources_t *b);
/* Format one amount of name the way marin_resources_format does
 * ("2", "0.5", "4GiB"); returns snprintf-style length. */
int marin__res_format_amount(const char *name, int64_t amount, char *buf,
                             size_t cap);
/* Deep copy into a new set (MARIN_ENOMEM). */
int marin__res_copy(const marin_resources_t *src, marin_resources_t **out);
/* 1 when name is a valid resource name. */
int marin__res_name_ok(const char *name);

#endif
