/* marin — task functions, task options and submission.
 *
 * A task function is registered by name in every process that may run it,
 * then submitted by name with an argument (bytes, copied at submit).
 *
 * Return values of a task function:
 *   0                        success; the result is the bytes last given to
 *                            marin_task_return() (empty if none);
 *   marin_task_fail(ctx, m)  application error, MARIN_ETASK: retried only
 *                            when retry_exceptions is on;
 *   any other negative code  system failure: retried within max_retries.
 *
 * Thread safety: registration, options (one thread per options object at a
 * time) and submission may be called from any thread; the ctx accessors only
 * from the thread running the task, during the call. Since 0.1. */
#ifndef MARIN_TASK_H
#define MARIN_TASK_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @p arg and dependency pointers are valid until the function returns. */
typedef int (*marin_task_fn)(marin_task_ctx_t *ctx, const void *arg,
                             size_t len, void *userdata);

/** Register @p fn under @p name for this whole process (the registry is
 *  process-wide and lives until exit). @return MARIN_OK; MARIN_EEXIST when
 *  the name is taken; MARIN_EINVAL for NULL, "" or a name over
 *  MARIN_NAME_MAX bytes; MARIN_ENOMEM. */
MARIN_API int marin_register_task(const char *name, marin_task_fn fn,
                                  void *userdata);

/* ---- inside a task (ctx is valid only during the task function) ---- */

/** Set the result to a copy of @p data (replaces an earlier one).
 *  @return MARIN_OK, MARIN_EINVAL, MARIN_ENOMEM. */
MARIN_API int marin_task_return(marin_task_ctx_t *ctx, const void *data,
                                size_t len);
/** Record an application error with @p message (copied) and return
 *  MARIN_ETASK, for `return marin_task_fail(ctx, "...")` (MARIN_EINVAL for a
 *  NULL ctx). */
MARIN_API int marin_task_fail(marin_task_ctx_t *ctx, const char *message);
/** Result of dependency @p i (see marin_submit_after), valid until the task
 *  function returns. @return MARIN_OK, MARIN_EINVAL (NULL, i out of range). */
MARIN_API int marin_task_dep(marin_task_ctx_t *ctx, size_t i,
                             const void **data, size_t *len);
/** Number of dependencies; 0 for a NULL ctx. */
MARIN_API size_t marin_task_ndeps(const marin_task_ctx_t *ctx);
/** The runtime running this task: submit nested work, call actors (NULL for
 *  a NULL ctx). */
MARIN_API marin_runtime_t *marin_task_runtime(marin_task_ctx_t *ctx);
/** 1 for the first run, 2 for the first retry, ... (0 for NULL). */
MARIN_API int marin_task_attempt(const marin_task_ctx_t *ctx);
/** The task's id, valid during the call ("" for NULL). */
MARIN_API const char *marin_task_id(const marin_task_ctx_t *ctx);
/** The task's env option @p key (marin_task_options_set_env), or NULL when
 *  unset. Threads share one process environment: read env options here,
 *  never with getenv(). */
MARIN_API const char *marin_task_env(const marin_task_ctx_t *ctx,
                                     const char *key);
/** GPU ids given to this task (as CUDA_VISIBLE_DEVICES would list them):
 *  writes up to @p cap ids and the count into *n.
 *  @return MARIN_OK, MARIN_EINVAL (NULL), MARIN_ETOOBIG (cap too small; *n
 *  says how many there are). */
MARIN_API int marin_task_gpu_ids(const marin_task_ctx_t *ctx, int *ids,
                                 size_t cap, size_t *n);
/** Nonzero once the task was cancelled, timed out or its runtime is
 *  closing: a long task should check it and return (0 for a NULL ctx). */
MARIN_API int marin_task_cancelled(const marin_task_ctx_t *ctx);
/** Log a line from inside a task through the runtime's logger, tagged with
 *  the task id. @return MARIN_OK, MARIN_EINVAL. */
MARIN_API int marin_task_log(marin_task_ctx_t *ctx, int level,
                             const char *message);

/* ---- task options: made once, reused for many submissions ---- */

/** Make an options object with the defaults (cpus=1, 3 retries, no timeout).
 *  @return MARIN_OK, MARIN_EINVAL (NULL out), MARIN_ENOMEM; *out is NULL on
 *  failure. Every setter below also returns MARIN_ENOMEM when it cannot copy
 *  the options (they are copy-on-write). */
MARIN_API int marin_task_options_create(marin_task_options_t **out);
/** Resources the task needs (default cpus=1); copied.
 *  @return MARIN_OK, MARIN_EINVAL, MARIN_ENOMEM. */
MARIN_API int marin_task_options_set_resources(marin_task_options_t *o,
                                               const marin_resources_t *r);
/** Retries of system failures (default 3; -1 unlimited).
 *  @return MARIN_OK, MARIN_EINVAL (NULL, n < -1). */
MARIN_API int marin_task_options_set_max_retries(marin_task_options_t *o,
                                                 int n);
/** Also retry application errors (MARIN_ETASK), within max_retries.
 *  @return MARIN_OK, MARIN_EINVAL (NULL), MARIN_ENOMEM. */
MARIN_API int marin_task_options_set_retry_exceptions(marin_task_options_t *o,
                                                      int on);
/** Fail the task with MARIN_ETASKTIMEOUT @p ms after an attempt starts
 *  (0: no timeout, the default). Not retried. @return MARIN_OK,
 *  MARIN_EINVAL (NULL, negative). */
MARIN_API int marin_task_options_set_timeout_ms(marin_task_options_t *o,
                                                int64_t ms);
/** Set env option @p key to @p value (NULL removes it); read in the task with
 *  marin_task_env(). @return MARIN_OK, MARIN_EINVAL, MARIN_ENOMEM. */
MARIN_API int marin_task_options_set_env(marin_task_options_t *o,
                                         const char *key, const char *value);
/** A label shown in logs and status instead of the task name (NULL clears).
 *  @return MARIN_OK, MARIN_EINVAL, MARIN_ENOMEM. */
MARIN_API int marin_task_options_set_label(marin_task_options_t *o,
                                           const char *label);
/** Free @p o; NULL is accepted. Submissions made with it are unaffected. */
MARIN_API void marin_task_options_destroy(marin_task_options_t *o);

/* ---- submission ---- */

/** Submit task @p task with a copy of @p arg (NULL with len 0 allowed);
 *  @p opts may be NULL (defaults) and is not kept.
 *  @return MARIN_OK with a new future in *out (the caller releases it);
 *  MARIN_EINVAL; MARIN_ENOTFOUND (local backend: no task of that name,
 *  named in the message); MARIN_EINFEASIBLE (no capacity can ever fit: the
 *  message names the resource, the request and the capacity); MARIN_ESTATE
 *  (runtime closing); MARIN_ENOMEM. */
MARIN_API int marin_submit(marin_runtime_t *rt, const char *task,
                           const void *arg, size_t len,
                           const marin_task_options_t *opts,
                           marin_future_t **out);

/** Like marin_submit(), but the task starts only after every future of
 *  @p deps has succeeded; it reads their results with marin_task_dep(). If a
 *  dependency fails or is cancelled, the task never runs and its future fails
 *  with that dependency's code and a message naming it. @p deps are retained
 *  as needed; the caller keeps its own references. */
MARIN_API int marin_submit_after(marin_runtime_t *rt, const char *task,
                                 const void *arg, size_t len,
                                 const marin_task_options_t *opts,
                                 marin_future_t *const *deps, size_t ndeps,
                                 marin_future_t **out);

#ifdef __cplusplus
}
#endif
#endif
