/* marin — resource sets: one syntax everywhere, "name=amount,...".
 *
 * Names: cpus, memory, gpus, or any custom name ([A-Za-z_][A-Za-z0-9_.-]*,
 * at most 63 bytes, e.g. TPU). Amounts are non-negative decimals; cpus and
 * custom resources are kept to 0.01, memory in whole bytes. A unit suffix
 * (KiB MiB GiB TiB, KB MB GB TB, B) multiplies the amount; it is meant for
 * memory but accepted on any resource. At most 32 names per set.
 *
 * Thread safety: a marin_resources_t is used by one thread at a time.
 * Ownership: the caller owns what marin_resources_parse() returns and frees
 * it with marin_resources_destroy(). Since 0.1. */
#ifndef MARIN_RESOURCES_H
#define MARIN_RESOURCES_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Parse @p spec ("cpus=2,memory=4GiB,TPU=4"; "" gives an empty set).
 *  @return MARIN_OK; MARIN_EINVAL for NULL, a negative/NaN/overflowing
 *  amount, an unknown unit, a duplicate or malformed name (the message names
 *  the token and its position); MARIN_ENOMEM. *out is NULL on failure. */
MARIN_API int marin_resources_parse(const char *spec, marin_resources_t **out);

/** Make an empty set. @return MARIN_OK, MARIN_EINVAL (NULL), MARIN_ENOMEM. */
MARIN_API int marin_resources_create(marin_resources_t **out);

/** Set @p name to @p amount (0 removes it). @return MARIN_OK; MARIN_EINVAL
 *  for NULL, a bad name, a negative, NaN or infinite amount; MARIN_ENOMEM. */
MARIN_API int marin_resources_set(marin_resources_t *r, const char *name,
                                  double amount);

/** Amount of @p name; 0 when absent or when @p r or @p name is NULL. */
MARIN_API double marin_resources_get(const marin_resources_t *r,
                                     const char *name);

/** Write the canonical spec (cpus, memory, gpus first, then custom names
 *  sorted; memory with the largest exact binary unit) into @p buf.
 *  @return the length needed without the NUL (snprintf-style), or
 *  MARIN_EINVAL for a NULL @p r, or a NULL @p buf with @p cap > 0. */
MARIN_API int marin_resources_format(const marin_resources_t *r, char *buf,
                                     size_t cap);

/** Free @p r; NULL is accepted. */
MARIN_API void marin_resources_destroy(marin_resources_t *r);

#ifdef __cplusplus
}
#endif
#endif
