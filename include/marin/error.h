/* marin — error codes and the per-thread last error.
 *
 * Thread safety: every function here may be called from any thread.
 * marin_last_error() reads this thread's slot only. Since 0.1. */
#ifndef MARIN_ERROR_H
#define MARIN_ERROR_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values are pinned: new codes are appended, never renumbered or reused. */
enum {
    MARIN_OK = 0,
    MARIN_EINVAL = -1,
    MARIN_ENOMEM = -2,
    MARIN_EBUSY = -3,
    MARIN_ESTATE = -4,
    MARIN_ECANCELED = -5,
    MARIN_ETIMEDOUT = -6,     /* a wait/get ran out */
    MARIN_ENOBACKEND = -7,
    MARIN_EUNAVAILABLE = -8,  /* backend unreachable */
    MARIN_ENOTFOUND = -9,
    MARIN_EEXIST = -10,
    MARIN_ECONFLICT = -11,    /* CAS mismatch */
    MARIN_EINFEASIBLE = -12,  /* no capacity can ever fit the request */
    MARIN_ETASK = -13,        /* the task reported an application error */
    MARIN_EWORKER = -14,      /* the worker died and the retries are spent */
    MARIN_EPREEMPTED = -15,
    MARIN_ETASKTIMEOUT = -16, /* the task ran past its own timeout */
    MARIN_EPROTO = -17,       /* corrupt or foreign frame */
    MARIN_EAUTH = -18,
    MARIN_EUNSUPPORTED = -19,
    MARIN_ETOOBIG = -20       /* payload over a cap */
};

/** Static description of @p code; never NULL ("unknown error" for codes
 *  not in the table). */
MARIN_API const char *marin_strerror(int code);

/** This thread's last failure as a sentence (what, where, why). Valid until
 *  the next marin call on this thread; "" when the last call succeeded. */
MARIN_API const char *marin_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
