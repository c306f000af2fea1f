/* marin — futures: the result of a task, reference-counted.
 *
 * A future outlives its runtime: after marin_runtime_close() it is completed
 * (MARIN_ECANCELED if the work had not finished) and stays readable until its
 * last release.
 *
 * Thread safety: a future may be waited on, polled, cancelled and retained
 * from any thread; the last marin_future_release() must come after every
 * other use. Callbacks run on a runtime thread with no marin lock held and
 * must not block. Since 0.1. */
#ifndef MARIN_FUTURE_H
#define MARIN_FUTURE_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MARIN_FUTURE_PENDING,
    MARIN_FUTURE_RUNNING,
    MARIN_FUTURE_SUCCEEDED,
    MARIN_FUTURE_FAILED,
    MARIN_FUTURE_CANCELLED
};

/** Wait up to @p timeout_ms (-1: forever; 0: poll) for @p f.
 *  @return MARIN_OK with *data and *len set to the result (borrowed until the
 *  last release; data/len may be NULL); MARIN_ETIMEDOUT (still running);
 *  the task's code (MARIN_ETASK, MARIN_EWORKER, MARIN_ECANCELED,
 *  MARIN_ETASKTIMEOUT, ...) with marin_last_error() set to its error;
 *  MARIN_EINVAL (NULL, timeout < -1). Called inside a task, the task lends
 *  its cpus back while it blocks. */
MARIN_API int marin_future_get(marin_future_t *f, int64_t timeout_ms,
                               const void **data, size_t *len);

/** One of MARIN_FUTURE_*; MARIN_FUTURE_FAILED for NULL. */
MARIN_API int marin_future_state(const marin_future_t *f);

/** The failure of a finished future ("" when it succeeded or is still
 *  running), remote detail included; valid until the last release. For a
 *  NULL @p f, a static sentence saying so. */
MARIN_API const char *marin_future_error(const marin_future_t *f);

/** Write the task id into @p buf, snprintf-style. @return the length needed,
 *  or MARIN_EINVAL. */
MARIN_API int marin_future_id(const marin_future_t *f, char *buf, size_t cap);

/** Like ray.wait: wait until @p num_returns of the @p n futures have
 *  finished (any finished state counts) or @p timeout_ms passes (-1: forever,
 *  0: poll). @p ready_idx has room for @p num_returns and receives at most
 *  @p num_returns indices into @p futs in input order (the first ready ones
 *  in input order); *nready is their count.
 *  @return MARIN_OK (on timeout too, with *nready < num_returns);
 *  MARIN_EINVAL for NULL arrays or entries, num_returns outside 1..n, or a
 *  timeout < -1. Inside a task, lends the task's cpus back while blocked. */
MARIN_API int marin_wait(marin_future_t *const *futs, size_t n,
                         size_t num_returns, int64_t timeout_ms,
                         size_t *ready_idx, size_t *nready);

typedef void (*marin_done_fn)(marin_future_t *f, int status, void *userdata);

/** Call @p fn(f, status, userdata) once @p f finishes. Never runs inline in
 *  this call; runs on a runtime thread, in registration order; it may release
 *  @p f. @p free_userdata (may be NULL) runs exactly once after @p fn.
 *  @return MARIN_OK; MARIN_EINVAL (NULL f or fn); MARIN_ESTATE (the future
 *  finished after its runtime closed: no thread is left to run it);
 *  MARIN_ENOMEM. If registration fails, neither fn nor free_userdata ever
 *  runs and the caller keeps @p userdata. */
MARIN_API int marin_future_on_done(marin_future_t *f, marin_done_fn fn,
                                   void *userdata,
                                   void (*free_userdata)(void *));

/** Cancel @p f: a pending task never runs; a running one is asked to stop
 *  (marin_task_cancelled) and keeps its resources until it returns. The
 *  future completes at once with MARIN_ECANCELED.
 *  @return MARIN_OK; MARIN_ESTATE when it had already finished;
 *  MARIN_EINVAL (NULL). */
MARIN_API int marin_future_cancel(marin_future_t *f);

/** Take another reference. NULL is accepted. */
MARIN_API void marin_future_retain(marin_future_t *f);
/** Drop a reference; the last one frees the future and its result. A
 *  registered callback holds its own reference until it has run, so it
 *  still runs after the caller's release. NULL is accepted. */
MARIN_API void marin_future_release(marin_future_t *f);

#ifdef __cplusplus
}
#endif
#endif
