/* marin — ordered map: bounded in-flight work, results in submission order.
 *
 * Thread safety: marin_map_ordered() may run on several threads at once
 * (each with its own callbacks); a marin_map_options_t is used by one thread
 * at a time and may be reused. Since 0.1. */
#ifndef MARIN_MAP_H
#define MARIN_MAP_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Produce the next argument: return 1 with *arg and *len set (copied before
 *  next is called again), 0 at the end, or a negative code to abort. */
typedef int (*marin_next_fn)(const void **arg, size_t *len, void *userdata);
/** Receive input @p index's outcome: @p status is 0 (data/len the result,
 *  valid during the call) or the task's code. Nonzero return aborts. */
typedef int (*marin_result_fn)(size_t index, int status, const void *data,
                               size_t len, void *userdata);
/** done: delivered so far; submitted: taken from next; failed: delivered
 *  with a nonzero status. */
typedef void (*marin_progress_fn)(size_t done, size_t submitted, size_t failed,
                                  void *userdata);

/** Make map options with the defaults. @return MARIN_OK, MARIN_EINVAL (NULL
 *  out), MARIN_ENOMEM; *out is NULL on failure. The setters below return
 *  MARIN_EINVAL for a NULL @p o. */
MARIN_API int marin_map_options_create(marin_map_options_t **out);
/** Most tasks submitted and not yet delivered (default 1000).
 *  @return MARIN_OK; MARIN_EINVAL for NULL or 0. */
MARIN_API int marin_map_options_set_max_in_flight(marin_map_options_t *o,
                                                  size_t n);
/** Deliver every index even after failures (default off). */
MARIN_API int marin_map_options_set_continue_on_error(marin_map_options_t *o,
                                                      int on);
/** Options of every task (copied; NULL: defaults). @return MARIN_OK,
 *  MARIN_EINVAL, MARIN_ENOMEM. */
MARIN_API int marin_map_options_set_task_options(marin_map_options_t *o,
                                                 const marin_task_options_t *t);
/** Call @p fn on the calling thread after each delivery (NULL: none). */
MARIN_API int marin_map_options_set_progress(marin_map_options_t *o,
                                             marin_progress_fn fn,
                                             void *userdata);
/** Draw a progress bar (count, rate, ETA) on stderr when it is a terminal.
 *  Also switched on by MARIN_PROGRESS=1. */
MARIN_API int marin_map_options_set_progress_bar(marin_map_options_t *o,
                                                 int on);
/** Free @p o; NULL is accepted. */
MARIN_API void marin_map_options_destroy(marin_map_options_t *o);

/** Run @p task on every argument @p next yields, at most max_in_flight at a
 *  time (window = submitted - delivered), and call @p on_result for index
 *  0, 1, 2, ... in order, even when later tasks finish first. Blocks; next
 *  and on_result run on the calling thread. @p opts may be NULL.
 *  Default: at the first failure, stop submitting, cancel what is in flight,
 *  deliver the failed index with its status and return that status (earlier
 *  indices delivered normally, later ones not at all). continue_on_error:
 *  every index is delivered once; returns 0 or the first failure's code. A
 *  nonzero return from on_result (or < 0 from next) aborts the same way and
 *  is returned.
 *  @return MARIN_OK, the first failure's code, the abort code, MARIN_EINVAL
 *  (NULL rt/task/next/on_result), or a submit error. The task name is
 *  checked by the first submit: with an empty input nothing is checked. */
MARIN_API int marin_map_ordered(marin_runtime_t *rt, const char *task,
                                marin_next_fn next, marin_result_fn on_result,
                                const marin_map_options_t *opts,
                                void *userdata);

#ifdef __cplusplus
}
#endif
#endif
