/* marin — actors: long-lived stateful workers called by method name.
 *
 * A class is built by name (constructor, destructor, methods, optional
 * checkpoint/restore hooks) and registered in every process that may host
 * it. marin_actor_create() places an instance; calls return futures.
 *
 * Semantics: calls through one handle run in the order made; with
 * max_concurrency 1 (the default) the actor is fully serial, above 1 up to
 * that many methods overlap (started in call order). By default an actor
 * holds no resources and runs its methods on its own thread(s), so actors
 * never starve tasks; resources it asks for are held for its lifetime. A
 * method that dies (marin_test_kill_worker, or a host that dies on remote
 * backends) restarts the actor from its last checkpoint, up to
 * max_restarts; calls in flight fail with MARIN_EWORKER unless the method is
 * MARIN_METHOD_IDEMPOTENT, then they are replayed; calls made while it
 * restarts wait for it. A method returning an error (marin_task_fail or a
 * code) fails only that call. With max_concurrency above 1, a call that
 * failed with MARIN_EWORKER may still have changed the state that a
 * checkpoint taken after a call beside it captured: callers that retry such
 * calls should make them safe to repeat (e.g. carry a request id). A non-detached actor lives until killed or
 * until the runtime that created it closes; a detached one until killed or
 * its namespace is purged (on local: until the runtime closes).
 *
 * A kill or a close also cancels a running constructor or checkpoint hook
 * (marin_task_cancelled turns true); close waits for hooks and methods to
 * return.
 *
 * Inside methods, hooks and the constructor, the ctx accessors of task.h
 * work (marin_task_return, marin_task_fail, marin_task_runtime,
 * marin_task_log...). marin_task_return in a checkpoint hook gives the
 * checkpoint bytes.
 *
 * Thread safety: class builders are used by one thread; registered classes,
 * actor handles and every marin_actor_* call may be used from any thread.
 * Ownership: inputs are copied; handles are reference-counted (retain /
 * release; NULL is fine); a handle may outlive its runtime but then every
 * call on it fails with MARIN_ESTATE. Since 0.2. */
#ifndef MARIN_ACTOR_H
#define MARIN_ACTOR_H

#include "marin/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct marin_actor marin_actor_t;
typedef struct marin_actor_class marin_actor_class_t;
typedef struct marin_actor_options marin_actor_options_t;

/** Constructor: build the instance from @p arg and store it in *self.
 *  Return 0, or fail (marin_task_fail / a negative code). */
typedef int (*marin_actor_init_fn)(marin_task_ctx_t *ctx, const void *arg, size_t len,
                                   void **self);
/** Destructor: free the instance (called once per successful init/restore). */
typedef void (*marin_actor_fini_fn)(void *self);
/** A method: result through marin_task_return; 0 or a failure as tasks do. */
typedef int (*marin_method_fn)(marin_task_ctx_t *ctx, void *self, const void *arg,
                               size_t len);
/** Checkpoint: give the state's bytes with marin_task_return. */
typedef int (*marin_checkpoint_fn)(marin_task_ctx_t *ctx, void *self);
/** Restore: rebuild *self from checkpoint bytes. */
typedef int (*marin_restore_fn)(marin_task_ctx_t *ctx, const void *data, size_t len,
                                void **self);

/** Method flags. Idempotent methods are replayed after a restart instead of
 *  failing with MARIN_EWORKER. */
enum { MARIN_METHOD_IDEMPOTENT = 1 };

/** A class builder for @p name (1 to MARIN_NAME_MAX bytes). @p init must not
 *  be NULL; @p fini may be. @return MARIN_OK; MARIN_EINVAL; MARIN_ENOMEM. */
MARIN_API int marin_actor_class_create(const char *name, marin_actor_init_fn init,
                                       marin_actor_fini_fn fini,
                                       marin_actor_class_t **out);
/** Add a method. @return MARIN_OK; MARIN_EEXIST (same name twice);
 *  MARIN_EINVAL (NULL, bad name, unknown flags); MARIN_ENOMEM. */
MARIN_API int marin_actor_class_add_method(marin_actor_class_t *c, const char *name,
                                           marin_method_fn fn, unsigned flags);
/** Checkpoint and restore hooks (both or neither: MARIN_EINVAL). Without
 *  them a restart runs the constructor again with the creation argument. */
MARIN_API int marin_actor_class_set_checkpoint(marin_actor_class_t *c,
                                               marin_checkpoint_fn save,
                                               marin_restore_fn restore);
/** Register a copy of @p c in this process.
 *  @return MARIN_OK; MARIN_EEXIST (a class of that name is registered);
 *  MARIN_EINVAL; MARIN_ENOMEM. */
MARIN_API int marin_register_actor_class(const marin_actor_class_t *c);
MARIN_API void marin_actor_class_destroy(marin_actor_class_t *c);

/* ---- options ---- */
MARIN_API int marin_actor_options_create(marin_actor_options_t **out);
/** Name it (unique per namespace; on local, per runtime). NULL: anonymous. */
MARIN_API int marin_actor_options_set_name(marin_actor_options_t *o, const char *name);
/** Resources held for the actor's lifetime (default none: cpus=0). Copied. */
MARIN_API int marin_actor_options_set_resources(marin_actor_options_t *o,
                                                const marin_resources_t *r);
/** Restarts allowed after crashes: -1 unlimited, default 0. */
MARIN_API int marin_actor_options_set_max_restarts(marin_actor_options_t *o, int n);
/** Methods running at once, >= 1 (default 1). */
MARIN_API int marin_actor_options_set_max_concurrency(marin_actor_options_t *o, int n);
/** With a name: hand back the existing actor of that name instead of
 *  failing with MARIN_EEXIST. */
MARIN_API int marin_actor_options_set_get_if_exists(marin_actor_options_t *o, int on);
/** Live until killed, not until the creating runtime/driver goes. */
MARIN_API int marin_actor_options_set_detached(marin_actor_options_t *o, int on);
/** Checkpoint automatically after every @p n successful calls (0: only on
 *  request, the default). Needs checkpoint hooks. The checkpoint is stored
 *  before the call that triggers it completes, so with n = 1 every
 *  acknowledged call survives a restart; if that checkpoint fails, the call
 *  fails with the hook's error. Checkpoints of one actor never overlap. */
MARIN_API int marin_actor_options_set_checkpoint_every(marin_actor_options_t *o,
                                                       int64_t n);
MARIN_API void marin_actor_options_destroy(marin_actor_options_t *o);

/* ---- instances ---- */

/** Create an actor of registered class @p cls with constructor argument
 *  @p arg. Returns once the actor is placed (its resources held); the
 *  constructor runs on the actor's thread, and a failing constructor
 *  surfaces on marin_actor_ready() and on every call. @p opts may be NULL.
 *  @return MARIN_OK; MARIN_ENOTFOUND (class not registered); MARIN_EEXIST
 *  (name taken, without get_if_exists); MARIN_EINFEASIBLE (resources can
 *  never fit); MARIN_EINVAL; MARIN_ESTATE (runtime closing);
 *  MARIN_EUNSUPPORTED (backend without actors); MARIN_ENOMEM. */
MARIN_API int marin_actor_create(marin_runtime_t *rt, const char *cls, const void *arg,
                                 size_t len, const marin_actor_options_t *opts,
                                 marin_actor_t **out);
/** Wait up to @p timeout_ms (-1 forever) for the constructor.
 *  @return MARIN_OK; MARIN_ETIMEDOUT; the constructor's failure; MARIN_EWORKER
 *  / MARIN_ECANCELED when the actor died or was killed. */
MARIN_API int marin_actor_ready(marin_actor_t *a, int64_t timeout_ms);
/** A new handle to the live actor named @p name. @return MARIN_OK;
 *  MARIN_ENOTFOUND; MARIN_EINVAL. */
MARIN_API int marin_actor_lookup(marin_runtime_t *rt, const char *name,
                                 marin_actor_t **out);
/** Call @p method with @p arg; *out is a future of the method's result.
 *  @return MARIN_OK; MARIN_ENOTFOUND (no such method: names class and
 *  method); MARIN_ESTATE (actor killed or dead for good: its reason);
 *  MARIN_EINVAL; MARIN_ENOMEM. When the constructor failed, or a restart
 *  could not rebuild the instance, the call is accepted and its future fails
 *  with that error. */
MARIN_API int marin_actor_call(marin_actor_t *a, const char *method, const void *arg,
                               size_t len, marin_future_t **out);
/** Take a checkpoint now (after the calls made before it). Blocks until it is
 *  stored. Not from a method of the same actor with max_concurrency 1 (it
 *  would wait for itself). @return MARIN_OK; MARIN_EUNSUPPORTED (class
 *  without hooks); MARIN_ESTATE (actor gone); MARIN_ECANCELED (killed or
 *  closed before the checkpoint ran); MARIN_EWORKER (the actor crashed or was
 *  killed while the hook ran: nothing was stored); the hook's failure, or the
 *  constructor's when it had failed. */
MARIN_API int marin_actor_checkpoint(marin_actor_t *a);
/** Kill the actor: pending and running calls fail with MARIN_ECANCELED
 *  (running methods see marin_task_cancelled). With @p no_restart 0 and
 *  restarts left, it restarts (as after a crash); otherwise it is gone and
 *  its name free. @return MARIN_OK; MARIN_ESTATE (already dead). */
MARIN_API int marin_actor_kill(marin_actor_t *a, int no_restart);
/** The actor's id: "actor-..." text, valid as long as the handle. */
MARIN_API const char *marin_actor_id(const marin_actor_t *a);
/** A handle from an id (e.g. passed to a task as bytes).
 *  @return MARIN_OK; MARIN_ENOTFOUND (no such actor, or dead for good). */
MARIN_API int marin_actor_from_id(marin_runtime_t *rt, const char *id,
                                  marin_actor_t **out);
MARIN_API void marin_actor_retain(marin_actor_t *a);
MARIN_API void marin_actor_release(marin_actor_t *a);

#ifdef __cplusplus
}
#endif
#endif
