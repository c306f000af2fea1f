/* marin — runtimes: one per backend connection.
 *
 * Thread safety: any marin_runtime_t function may be called concurrently
 * from any thread, except marin_runtime_close(), which must be the last call
 * on that runtime. Since 0.1. */
#ifndef MARIN_RUNTIME_H
#define MARIN_RUNTIME_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Open a runtime on the backend named by @p uri ("local",
 *  "local://?resources=cpus=8,memory=16GiB,gpus=2,TPU=4"). NULL or "": the
 *  value of MARIN_BACKEND, else "local". Environment read here: MARIN_BACKEND,
 *  MARIN_LOG, MARIN_PROGRESS.
 *  @return MARIN_OK; MARIN_ENOBACKEND for an unknown scheme (the message names
 *  the built-in backends); MARIN_EINVAL for a malformed URI or parameter;
 *  MARIN_ENOMEM. *out is NULL on failure. The caller closes the runtime. */
MARIN_API int marin_runtime_open(const char *uri, marin_runtime_t **out);

/** Cancel the work @p rt still owns (pending tasks complete with
 *  MARIN_ECANCELED, running ones are asked to stop and see
 *  marin_task_cancelled()), wait for running task functions to return and
 *  for running callbacks, then free the runtime. Futures stay readable until
 *  their last release. NULL is accepted. Called from a task or callback of
 *  @p rt itself, it would wait for its own thread: it logs an error and
 *  leaves the runtime open instead. */
MARIN_API void marin_runtime_close(marin_runtime_t *rt);

/** Name of the backend: "local", "redis", "k8s". NULL for a NULL @p rt. */
MARIN_API const char *marin_runtime_backend(const marin_runtime_t *rt);

/** Capacity of the runtime's backend (local: what was detected or given in
 *  the URI), written into @p out, which the caller made. @return MARIN_OK,
 *  MARIN_EINVAL (NULL), MARIN_EUNSUPPORTED, MARIN_ENOMEM. */
MARIN_API int marin_runtime_capacity(marin_runtime_t *rt,
                                     marin_resources_t *out);

/* ---- logging ---- */
enum {
    MARIN_LOG_ERROR = 1,
    MARIN_LOG_WARN = 2,
    MARIN_LOG_INFO = 3,
    MARIN_LOG_DEBUG = 4
};
/** Receives one formatted line (no newline); @p msg lives only for the
 *  call. May run on several threads at once; must not call into the
 *  runtime that logs. */
typedef void (*marin_log_fn)(int level, const char *msg, void *userdata);

/** Send @p rt's log lines at @p level or more severe to @p fn (NULL: back to
 *  the default, which writes to stderr only what MARIN_LOG asks for:
 *  error, warn, info or debug; 0/off/none: nothing). @p level 0 sends
 *  nothing. @return MARIN_OK, MARIN_EINVAL (NULL rt, level outside 0..4). */
MARIN_API int marin_runtime_set_logger(marin_runtime_t *rt, marin_log_fn fn,
                                       int level, void *userdata);

#ifdef __cplusplus
}
#endif
#endif
