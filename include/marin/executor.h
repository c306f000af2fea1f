/* marin — the workflow executor: steps with output paths, persisted status,
 * and leases so two drivers never run the same step.
 *
 * A step is a name, a registered task (run with the step's config bytes as
 * its argument), a version string and its dependencies. Its output path is
 * PREFIX/NAME-HASH8: HASH8 is the first 8 lowercase hex digits of XXH3-64
 * (seed 0) over the canonical encoding documented in docs/executor.md —
 * name, config, version and the dependencies' output paths — so changing
 * anything upstream changes every path below it.
 *
 * The step's task sees marin_task_env(ctx, "MARIN_OUTPUT_PATH") (its output
 * directory, created before it runs), "MARIN_PREFIX", "MARIN_STEP_NAME" and
 * "MARIN_DEP_PATHS" (its dependencies' output paths, one per line, in the
 * order given). Steps run as ordinary tasks on the runtime, so the executor
 * works unchanged on every backend; PREFIX must then be storage every worker
 * shares.
 *
 * Status lives in <output>/.executor_status as JSON lines (state, attempt,
 * time, owner), rewritten by atomic rename; the last line is the current
 * state. SUCCESS steps are skipped on rerun; a FAILED step stops the run
 * unless forced. Each running step holds the lease "executor:<output path>"
 * (marin_lease_acquire), renewed by a heartbeat; a crashed driver's step is
 * taken over once its lease expires; SUCCESS is committed at most once, by
 * marin_kv_put_fenced of the key "executor-success:<output path>".
 *
 * Thread safety: an executor and its steps are used by one thread at a time.
 * Ownership: the executor owns its steps (borrowed handles, valid until
 * marin_executor_destroy); inputs are copied. Since 0.2. */
#ifndef MARIN_EXECUTOR_H
#define MARIN_EXECUTOR_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct marin_executor marin_executor_t;
typedef struct marin_step marin_step_t;
typedef struct marin_executor_options marin_executor_options_t;

/** Persisted states of a step (the "state" field of its status lines). */
enum {
    MARIN_STEP_NONE,     /* no status yet */
    MARIN_STEP_WAITING,
    MARIN_STEP_RUNNING,
    MARIN_STEP_SUCCESS,
    MARIN_STEP_FAILED
};

/** A new executor writing under @p prefix (a directory, created when
 *  missing); @p prefix NULL uses $MARIN_PREFIX as read at runtime open.
 *  @return MARIN_OK; MARIN_EINVAL (NULL rt/out, no prefix at all);
 *  MARIN_ENOMEM. */
MARIN_API int marin_executor_create(marin_runtime_t *rt, const char *prefix,
                                    marin_executor_t **out);
/** Free the executor and its steps. NULL is fine. Not while it runs. */
MARIN_API void marin_executor_destroy(marin_executor_t *ex);

/** Add a step. @p name: 1 to MARIN_NAME_MAX bytes of [A-Za-z0-9._-/], not
 *  starting with '/' or '.', no "..", unique in @p ex (MARIN_EEXIST).
 *  @p task: a registered task name. @p config: bytes given to the task
 *  (NULL when @p config_len is 0). @p version: any string (NULL = "").
 *  @p deps: steps of the same executor (MARIN_EINVAL otherwise), so the
 *  graph is acyclic by construction. @p opts: task options (NULL: default;
 *  copied; its env is kept and the MARIN_* variables above are added).
 *  *out is borrowed from @p ex.
 *  @return MARIN_OK; MARIN_EINVAL; MARIN_EEXIST; MARIN_ENOMEM. */
MARIN_API int marin_executor_add_step(marin_executor_t *ex, const char *name,
                                      const char *task, const void *config,
                                      size_t config_len, const char *version,
                                      marin_step_t *const *deps, size_t ndeps,
                                      const marin_task_options_t *opts,
                                      marin_step_t **out);

/** The step's output path (PREFIX/NAME-HASH8); borrowed from the executor. */
MARIN_API const char *marin_step_output_path(const marin_step_t *s);
/** The step's name; borrowed from the executor. */
MARIN_API const char *marin_step_name(const marin_step_t *s);

/** Read the step's persisted status: *state (MARIN_STEP_*), and, when not
 *  NULL, *attempt (0 with no status).
 *  @return MARIN_OK; MARIN_EPROTO when the status file has a corrupt line
 *  (the message names the file and the line); MARIN_EUNAVAILABLE when it
 *  cannot be read. */
MARIN_API int marin_step_status(const marin_step_t *s, int *state, int *attempt);

/* ---- run options ---- */
MARIN_API int marin_executor_options_create(marin_executor_options_t **out);
/** Only print the plan (stdout): what would run, be skipped or wait. */
MARIN_API int marin_executor_options_set_dry_run(marin_executor_options_t *o, int on);
/** Run FAILED steps again instead of stopping at them. */
MARIN_API int marin_executor_options_set_force(marin_executor_options_t *o, int on);
/** Lease time to live (default 30000 ms); the heartbeat renews it every
 *  third of it. */
MARIN_API int marin_executor_options_set_lease_ttl_ms(marin_executor_options_t *o,
                                                      int64_t ms);
/** How often to look again at a step another driver holds (default 500 ms). */
MARIN_API int marin_executor_options_set_poll_ms(marin_executor_options_t *o, int64_t ms);
/** The owner name written in status lines and leases (default
 *  "HOST:PID:RANDOM"); 1 to MARIN_NAME_MAX bytes. */
MARIN_API int marin_executor_options_set_owner(marin_executor_options_t *o,
                                               const char *owner);
/** Most steps running at once (default 0: no limit beyond the runtime's). */
MARIN_API int marin_executor_options_set_max_parallel(marin_executor_options_t *o,
                                                      size_t n);
MARIN_API void marin_executor_options_destroy(marin_executor_options_t *o);

/** Run every step not yet SUCCESS, dependencies first, independent steps
 *  in parallel; blocks until done. @p opts may be NULL.
 *  @return MARIN_OK when every step is SUCCESS (ran now or skipped);
 *  MARIN_ESTATE when a step is FAILED from an earlier run and force is off
 *  (the message names the step and its status file); otherwise the first
 *  failing step's code, with a message naming the step. Steps already
 *  running finish before it returns; steps below a failure do not start. */
MARIN_API int marin_executor_run(marin_executor_t *ex, const marin_executor_options_t *opts);

/** The plan (one line per step: RUN, SKIP (SUCCESS) or STOP (FAILED), name,
 *  output path, dependencies), snprintf-style: returns the length needed,
 *  or a negative code (MARIN_EPROTO for a corrupt status file). */
MARIN_API int marin_executor_plan(marin_executor_t *ex, char *buf, size_t cap);
/** The DAG as Graphviz DOT / as a Mermaid flowchart, snprintf-style. */
MARIN_API int marin_executor_format_dot(const marin_executor_t *ex, char *buf, size_t cap);
MARIN_API int marin_executor_format_mermaid(const marin_executor_t *ex, char *buf,
                                            size_t cap);

#ifdef __cplusplus
}
#endif
#endif
