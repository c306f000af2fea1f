/* Per-thread error detail and the API exit funnel.
 *
 * Every public function leaves through marin__api_exit(rc). Failures record
 * a sentence with marin__err(code, fmt, ...), which returns code, so:
 *     return marin__api_exit(marin__err(MARIN_EINVAL, "..."));          */
#ifndef MARIN_CORE_FAIL_H
#define MARIN_CORE_FAIL_H

#include "marin/error.h"

/* Record this thread's last error (printf-style) and return @p code. */
int marin__err(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Clear the message on success; give MARIN_ENOMEM a message when none was
 * set; forget absorbed allocation failures; return rc. */
int marin__api_exit(int rc);
/* Mark that an allocation failed on this thread (alloc.c calls it). */
void marin__note_oom(void);
/* The current message, for copying into a future's error. */
const char *marin__err_msg(void);

/* Shorthand for the common argument checks. */
#define MARIN__CHECK_ARG(cond, fn, what)                                      \
    do {                                                                      \
        if (!(cond))                                                          \
            return marin__api_exit(                                           \
                marin__err(MARIN_EINVAL, "%s: %s", fn, what));                \
    } while (0)

#endif
