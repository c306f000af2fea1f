/* marin — the workflow executor: steps with output paths, persisted status,
 * and leases so two drivers never run the same step.
 *
 * A step is a name, a registered task (run with the step's config bytes as
 * its argument), a version string and its dependencies. Its output path is
 * PREFIX/NAME-HASH8: HASH8 is the first 8 lowercase hex digits of XXH3-64
 * (seed 0) over the canonical encoding documented in docs/executor.md —
 * name, config, version and the dependencies' output paths relative to
 * PREFIX (their NAME-HASH8) — so changing anything upstream changes every
 * path below it, while a whole PREFIX can move and keep its hashes.
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
 * state. WAITING: a driver queued the step behind dependencies that had to
 * run; RUNNING: a driver holding its lease started attempt N; SUCCESS and
 * FAILED: attempt N ended so. SUCCESS steps are skipped on rerun; a FAILED
 * step stops the run unless forced. Each running step holds the lease
 * "executor:<output path>" (marin_lease_acquire), renewed by a heartbeat;
 * a crashed driver's step is taken over once its lease expires; SUCCESS is
 * committed at most once, by marin_kv_put_fenced of the key
 * "executor-success:<output path>" (keys too long for the KV store use a
 * hash of the path instead: docs/executor.md).
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
 *  missing); @p prefix NULL (or "") uses $MARIN_PREFIX as read at runtime
 *  open. A relative prefix is made absolute against the working directory
 *  now; "." parts and repeated or trailing '/' are dropped.
 *  @return MARIN_OK; MARIN_EINVAL (NULL rt/out, no prefix at all, a prefix
 *  too long for a path); MARIN_ENOMEM. */
MARIN_API int marin_executor_create(marin_runtime_t *rt, const char *prefix,
                                    marin_executor_t **out);
/** Free the executor and its steps. NULL is fine. Not while it runs. */
MARIN_API void marin_executor_destroy(marin_executor_t *ex);

/** Add a step. @p name: 1 to MARIN_NAME_MAX bytes of [A-Za-z0-9._-/], not
 *  starting with '/' or '.', no "..", no empty '/'-separated part and none
 *  starting with '.' ('/' makes nested directories), unique in @p ex
 *  (MARIN_EEXIST).
 *  @p task: a registered task name. @p config: bytes given to the task
 *  (NULL when @p config_len is 0). @p version: any string (NULL = "").
 *  @p deps: steps of the same executor, each once (MARIN_EINVAL otherwise),
 *  so the graph is acyclic by construction; their order is hashed and is
 *  the order of MARIN_DEP_PATHS. The task name is looked up when the step
 *  runs (MARIN_ENOTFOUND then, on local). @p opts: task options (NULL: default;
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
 *  NULL, *attempt (0 with no status). It reads the file only: a SUCCESS
 *  committed in the KV store but missing from the file shows here after
 *  the next run repairs it.
 *  @return MARIN_OK; MARIN_EPROTO when the status file has a corrupt line
 *  (the message names the file and the line: "FILE:LINE: why");
 *  MARIN_EUNAVAILABLE when it cannot be read; MARIN_EINVAL (NULL s or
 *  state). On failure *state is MARIN_STEP_NONE. */
MARIN_API int marin_step_status(const marin_step_t *s, int *state, int *attempt);

/* ---- run options ---- */
MARIN_API int marin_executor_options_create(marin_executor_options_t **out);
/** Only print the plan (stdout, the text of marin_executor_plan, with
 *  FAILED steps shown as RUN when force is on) and return MARIN_OK (or the
 *  plan's error) without running anything or writing any file. */
MARIN_API int marin_executor_options_set_dry_run(marin_executor_options_t *o, int on);
/** Run FAILED steps again instead of stopping at them (SUCCESS steps are
 *  never run again). */
MARIN_API int marin_executor_options_set_force(marin_executor_options_t *o, int on);
/** Lease time to live (default 30000 ms; > 0, else MARIN_EINVAL); the
 *  heartbeat renews it every third of it. A crashed driver's step is taken
 *  over at most this long after the crash. */
MARIN_API int marin_executor_options_set_lease_ttl_ms(marin_executor_options_t *o,
                                                      int64_t ms);
/** How often to look again at a step another driver holds (default 500 ms;
 *  > 0, else MARIN_EINVAL). */
MARIN_API int marin_executor_options_set_poll_ms(marin_executor_options_t *o, int64_t ms);
/** The owner name written in status lines and leases (default
 *  "HOST:PID:RANDOM"); 1 to MARIN_NAME_MAX bytes. It must be unique per
 *  driver: two drivers given the same owner share its leases, so both would
 *  run a step. */
MARIN_API int marin_executor_options_set_owner(marin_executor_options_t *o,
                                               const char *owner);
/** Most steps running at once (default 0: no limit beyond the runtime's). */
MARIN_API int marin_executor_options_set_max_parallel(marin_executor_options_t *o,
                                                      size_t n);
MARIN_API void marin_executor_options_destroy(marin_executor_options_t *o);

/** Run every step not yet SUCCESS, dependencies first, independent steps
 *  in parallel (one thread per running step); blocks until done. @p opts
 *  may be NULL. Every status file is read before anything starts. A step
 *  another driver holds is waited for (polled every poll_ms) and then
 *  skipped when it ended SUCCESS. Called from inside a task, the task lends
 *  its resources back while it waits.
 *  @return MARIN_OK when every step is SUCCESS (ran now or skipped);
 *  MARIN_ESTATE when a step is FAILED from an earlier run (or another
 *  driver's, meanwhile) and force is off (the message names the step and
 *  its status file); MARIN_EPROTO for a corrupt status file, before
 *  anything runs; otherwise the first failing step's code, with a message
 *  naming the step and its output path: the task's code (MARIN_ETASK,
 *  MARIN_ENOTFOUND, ...), MARIN_ECONFLICT when the step lost its lease
 *  (its task is cancelled, nothing is committed), MARIN_EUNAVAILABLE when a
 *  status file or the KV store cannot be written. After the first failure
 *  no step starts; steps already running finish before it returns. */
MARIN_API int marin_executor_run(marin_executor_t *ex, const marin_executor_options_t *opts);

/** The plan, one line per step in the order added:
 *  "ACTION NAME PATH[ after DEP,DEP...]\n" with ACTION RUN (not SUCCESS
 *  yet: run here, or waited for when another driver holds it), SKIP
 *  (SUCCESS, in the file or committed in the KV store) or STOP (FAILED:
 *  a run stops before anything starts). snprintf-style: returns the length
 *  needed, or a negative code (MARIN_EINVAL; MARIN_EPROTO for a corrupt
 *  status file, MARIN_EUNAVAILABLE for an unreadable one, with "" in
 *  @p buf). */
MARIN_API int marin_executor_plan(marin_executor_t *ex, char *buf, size_t cap);
/** The DAG as Graphviz DOT / as a Mermaid flowchart, snprintf-style
 *  (MARIN_EINVAL for NULL @p ex, or NULL @p buf with @p cap > 0). Nodes
 *  are labelled with the name and NAME-HASH8, in the order added; edges
 *  run from a dependency to its dependent. docs/executor.md shows both. */
MARIN_API int marin_executor_format_dot(const marin_executor_t *ex, char *buf, size_t cap);
MARIN_API int marin_executor_format_mermaid(const marin_executor_t *ex, char *buf,
                                            size_t cap);

#ifdef __cplusplus
}
#endif
#endif
