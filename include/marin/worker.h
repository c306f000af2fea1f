/* marin — serving a cluster backend as a worker.
 *
 * A worker process (tools/marin-worker, Python's `-m marin.worker`, or any
 * program) registers task functions and actor classes, then serves a
 * cluster backend's URI: it advertises its capacity and the names it can
 * run, takes the work that fits, runs it on threads and reports results,
 * until asked to stop. On SIGTERM the caller asks marin_worker_stop(): the
 * worker stops taking work, lets running work finish within the drain
 * grace period (hands back what has not finished by then, so another
 * worker runs it) and marin_worker_run returns MARIN_OK.
 *
 * Backends: redis://. On local:// there is nothing to serve
 * (MARIN_EUNSUPPORTED).
 *
 * Thread safety: options are not shared while being set; marin_worker_stop
 * may be called from any thread and from a signal handler.
 * Ownership: the worker copies the options and the URI. Since 0.3. */
#ifndef MARIN_WORKER_H
#define MARIN_WORKER_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct marin_worker marin_worker_t;
typedef struct marin_worker_options marin_worker_options_t;

/** @return MARIN_OK; MARIN_EINVAL (out NULL); MARIN_ENOMEM. */
MARIN_API int marin_worker_options_create(marin_worker_options_t **out);
/** What this worker offers (copied). Default: what the machine has
 *  (cgroups, /proc, CUDA_VISIBLE_DEVICES), as the local backend detects it. */
MARIN_API int marin_worker_options_set_resources(marin_worker_options_t *o,
                                                 const marin_resources_t *r);
/** The worker's id in the namespace (1 to 64 bytes of [A-Za-z0-9._-]).
 *  Default: "<hostname>-<pid>-<random>". Two live workers with one id:
 *  the second gets MARIN_EEXIST from marin_worker_start. */
MARIN_API int marin_worker_options_set_name(marin_worker_options_t *o, const char *name);
/** How long a stop waits for running work before handing it back
 *  (default 30000 ms; 0 hands back at once). */
MARIN_API int marin_worker_options_set_drain_ms(marin_worker_options_t *o, int64_t ms);
/** Send the worker's log lines at @p level or more severe to @p fn (as
 *  marin_runtime_set_logger does for a runtime; @p userdata is not copied
 *  and must outlive the worker). Default: stderr, as MARIN_LOG asks. */
MARIN_API int marin_worker_options_set_logger(marin_worker_options_t *o, marin_log_fn fn,
                                              int level, void *userdata);
MARIN_API void marin_worker_options_destroy(marin_worker_options_t *o);

/** Connect to @p uri (NULL: $MARIN_BACKEND) and start serving on threads of
 *  this process. Registrations made before the start are advertised.
 *  @return MARIN_OK; MARIN_EUNSUPPORTED (a backend without workers);
 *  MARIN_EUNAVAILABLE / MARIN_EAUTH (the backend cannot be reached);
 *  MARIN_EEXIST (the name is taken by a live worker); MARIN_EINVAL. */
MARIN_API int marin_worker_start(const char *uri, const marin_worker_options_t *o,
                                 marin_worker_t **out);
/** Ask the worker to drain and stop. Async-signal-safe; idempotent. */
MARIN_API void marin_worker_stop(marin_worker_t *w);
/** Wait until the worker has stopped (after marin_worker_stop, or a fatal
 *  error), then free it. @return MARIN_OK after a clean drain; the fatal
 *  error's code otherwise. */
MARIN_API int marin_worker_join(marin_worker_t *w);
/** The worker's id (valid until join). */
MARIN_API const char *marin_worker_id(const marin_worker_t *w);

#ifdef __cplusplus
}
#endif
#endif
