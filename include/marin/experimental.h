/* marin — unstable API: visible only with #define MARIN_EXPERIMENTAL.
 * Names and meanings here may change in any minor release. Since 0.1. */
#ifndef MARIN_EXPERIMENTAL_H
#define MARIN_EXPERIMENTAL_H

#include "marin/common.h"

#ifdef MARIN_EXPERIMENTAL
#ifdef __cplusplus
extern "C" {
#endif

/** Test hook: end the current attempt as if the worker running it had died
 *  (a system failure: retried within max_retries, else MARIN_EWORKER).
 *  Whatever the task function returns afterwards is discarded.
 *  @return MARIN_EWORKER, for `return marin_test_kill_worker(ctx)`. */
MARIN_API int marin_test_kill_worker(marin_task_ctx_t *ctx);

/** Serve the driver of a `local://?processes=N` runtime on socket @p fd:
 *  run the tasks it sends (registered in this process by name) until it
 *  closes the socket. For worker programs (Python's `-m marin.worker`); a C
 *  program started as a worker reaches it through marin_runtime_open.
 *  @return MARIN_OK when the driver closed; MARIN_EPROTO on a bad frame. */
MARIN_API int marin_worker_serve_fd(int fd);

#ifdef __cplusplus
}
#endif
#endif
#endif
