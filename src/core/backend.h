/* Private core structures shared with backends, and the backend ops table.
 * Never installed. Backends include this and the public headers only. */
#ifndef MARIN_CORE_BACKEND_H
#define MARIN_CORE_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "marin/marin.h"
#include "resources_internal.h"
#include "sync.h"
#include "uri.h"

struct marin__task;

/* ---- registry (process-wide; entries are never freed) ---- */
typedef struct marin__task_entry {
    char *name;
    marin_task_fn fn;
    void *userdata;
} marin__task_entry;

/* Entry for @p name or NULL. Lock-free readers are not needed: rwlock. */
const marin__task_entry *marin__registry_find_task(const char *name);
/* Call fn for every registered task name / actor class name (under the
 * registry's read lock: fn must not register). */
void marin__registry_each_task(void (*fn)(const char *name, void *ud), void *ud);
void marin__registry_each_actor_class(void (*fn)(const char *name, void *ud), void *ud);

/* ---- immutable snapshot of task options, shared by the tasks using it ---- */
typedef struct marin__topts {
    atomic_int refs;
    marin_resources_t res;   /* requested resources (default cpus=1) */
    int max_retries;         /* -1 unlimited */
    int retry_exceptions;
    int64_t timeout_ms;      /* 0: none */
    size_t nenv;
    char **env_keys, **env_values;
    char *label;
} marin__topts;

void marin__topts_retain(marin__topts *o);
void marin__topts_release(marin__topts *o);
/* The snapshot a submit with @p o (not NULL) uses, retained. */
marin__topts *marin__task_options_snapshot(const marin_task_options_t *o);
/* A new options object sharing @p src's current snapshot (MARIN_ENOMEM). */
int marin__task_options_clone(const marin_task_options_t *src,
                              marin_task_options_t **out);
/* Shared default snapshot (cpus=1, 3 retries). Retained. */
int marin__topts_default(marin__topts **out);

/* ---- futures; a task lives inside its future ---- */
typedef struct marin__listener {
    struct marin__listener *next;
    /* Called once when the future finishes. under_lock listeners run while
     * the future's lock is held and must only do lock-free work. */
    void (*fire)(struct marin__listener *l, marin_future_t *f);
    int under_lock;
} marin__listener;

struct marin__task {
    const char *name;             /* registry name or owned copy */
    int name_owned;
    const marin__task_entry *entry; /* local backends: resolved at submit */
    marin__topts *opts;
    void *arg;
    size_t arg_len;
    marin_future_t **deps;        /* retained; NULL when ndeps == 0 */
    size_t ndeps;
    atomic_size_t deps_left;
    atomic_int attempt;           /* attempts started (the timeout timer reads it) */
    atomic_int cancel;            /* cooperative stop asked */
    /* backend private */
    struct marin__task *next;     /* queue link */
    void *shape;                  /* local: resource shape */
    uint64_t seq;
    struct marin__timer *timeout_timer; /* marin__task_attempt_begin's */
};

struct marin_future {
    atomic_int refs;
    atomic_uint state;            /* MARIN_FUTURE_*: futex word */
    atomic_uint sleepers;         /* threads in futex wait on state */
    int status;                   /* final code, valid once finished */
    marin__lock_t lock;           /* guards listeners and completion */
    void *result;
    size_t result_len;
    char *error;
    marin__listener *listeners;
    marin_runtime_t *rt;          /* holds a reference on rt's memory */
    struct marin__future_slab *slab; /* the chunk it was carved from */
    struct marin__task task;
};

static inline int marin__state_done(unsigned s)
{
    return s >= MARIN_FUTURE_SUCCEEDED;
}

/* Finish f once (first call wins; returns 1 when it won). @p result is
 * taken over (freed if this call loses). @p error is copied. */
int marin__future_finish(marin_future_t *f, unsigned state, int status,
                         void *result, size_t len, const char *error);
/* Allocate a pending future for rt with one reference for the caller and
 * one for the system side. NULL when out of memory. */
marin_future_t *marin__future_new(marin_runtime_t *rt);
/* Add @p l; returns 0 if added, 1 if f had already finished (not added). */
int marin__future_listen(marin_future_t *f, marin__listener *l);
/* Remove @p l if still registered; 1 when removed. */
int marin__future_unlisten(marin_future_t *f, marin__listener *l);

/* ---- running a task (backends call these) ---- */

/* What a backend gives one attempt. */
typedef struct marin__exec_env {
    const int *gpu_ids;
    size_t ngpus;
    /* Run the attempt elsewhere (a worker process) instead of calling the
     * function on this thread: return what the function would have returned,
     * with its result given through marin_task_return/marin_task_fail on
     * @p ctx; set *died when the place it ran died (the attempt then counts
     * as a system failure, MARIN_EWORKER). NULL: run it here. */
    int (*run)(void *run_ud, marin_task_ctx_t *ctx, struct marin__task *t, int *died);
    void *run_ud;
    const char *task_id;   /* marin_task_id's answer (NULL: this runtime's) */
    int lend;              /* a blocked call lends the task's resources back
                              through the backend's blocking op */
} marin__exec_env;

/* What a worker process gets of a task to run (marin__task_run_here). */
typedef struct marin__detached_task {
    const char *name;
    const char *label;          /* NULL: none */
    const void *arg;
    size_t arg_len;
    int attempt;
    size_t nenv;
    const char *const *env_keys, *const *env_values;
    size_t ndeps;
    const void *const *dep_data;
    const size_t *dep_len;
    const int *gpu_ids;
    size_t ngpus;
    const char *task_id;        /* the id the driver gave it; NULL: local */
    int lend;                   /* see marin__exec_env.lend */
    /* Called on the running thread just before the function, with the
     * task the context refers to (its cancel flag stops it cooperatively;
     * the backend's blocking op receives it), and again with NULL once the
     * function returned, before the task is freed. NULL: none. */
    void (*on_start)(void *ud, struct marin__task *t);
    void *on_start_ud;
} marin__detached_task;

/* Run one attempt of a registered task on this thread, outside any
 * scheduler (a worker process serving its driver): the function sees a
 * context with @p d's argument, attempt, env, dependency results and GPU
 * ids, and @p rt as marin_task_runtime (nested work; may be NULL). Returns
 * the function's code: MARIN_OK with *result and *len (caller frees), or a
 * failure with *msg (caller frees); *died when it called
 * marin_test_kill_worker. MARIN_ENOTFOUND when no task has that name. */
int marin__task_run_here(marin_runtime_t *rt, const marin__detached_task *d,
                         void **result, size_t *len, char **msg, int *died);

/* Run one attempt of @p t's function on this thread. The caller must hold
 * no backend lock. Returns 1 when the task is settled (its future finished:
 * the backend drops its reference), 0 when it is to be retried: the backend
 * first lets go of this run (nothing of it may still point at the task),
 * then queues it again with its own submit, and calls
 * marin__task_retry_refused() if that fails. */
int marin__task_execute(marin_runtime_t *rt, struct marin__task *t,
                        const marin__exec_env *env);
/* Attempts that run elsewhere, asynchronously (a cluster backend):
 * begin counts the attempt (attempt + 1; the future stays PENDING, since
 * the driver does not see the worker start it) and arms its timeout (which,
 * when it fires, finishes the future and calls the backend's cancel op).
 * Returns 1 when the task had already been settled (cancelled): the backend
 * drops its reference; 0 when the attempt is on. */
int marin__task_attempt_begin(marin_runtime_t *rt, struct marin__task *t);
/* The outcome of the attempt arrived: @p attempt (the attempt number the
 * outcome is for; 0 keeps t->attempt), @p rc the function's code (or
 * MARIN_EWORKER / @p died when the place it ran died), @p result taken
 * over, @p why the failure's own words (NULL: the code's text), @p no_retry
 * (an actor call: its outcome is final, as on local). Returns 1
 * when settled (the backend drops its reference) or 0 when it is to be
 * retried (the backend queues it again, and on failure calls
 * marin__task_retry_refused). */
int marin__task_attempt_end(marin_runtime_t *rt, struct marin__task *t, int attempt, int rc,
                            void *result, size_t len, const char *why, int died, int no_retry);
/* The backend lets go of an attempt that will never report (the runtime
 * closes): disarm its timeout and free what it holds. */
void marin__task_attempt_abandon(marin_runtime_t *rt, struct marin__task *t);
/* The runtime's id prefix (task ids are "<prefix>-<seq>"): a cluster
 * backend sets one unique across the namespace at init (at most 31
 * bytes). */
void marin__runtime_set_id_prefix(marin_runtime_t *rt, const char *prefix);
const char *marin__runtime_id_prefix(const marin_runtime_t *rt);

/* Fail a task whose retry could not be queued (rc, with the thread's last
 * error as detail); the backend then drops its reference. */
void marin__task_retry_refused(struct marin__task *t, int rc);
/* Free what a settled task no longer needs (argument, dependencies).
 * Idempotent. */
void marin__task_cleanup(struct marin__task *t);
/* The future that holds @p t. */
static inline marin_future_t *marin__task_future(struct marin__task *t)
{
    return (marin_future_t *)((char *)t - offsetof(marin_future_t, task));
}
/* Format the task id into buf (snprintf-style). */
int marin__task_format_id(marin_runtime_t *rt, const struct marin__task *t,
                          char *buf, size_t cap);

/* ---- KV and leases (kv.h): a backend's store; core checks arguments ---- */
typedef struct marin__kv_ops {
    int (*put)(void *state, const char *key, const void *val, size_t len);
    int (*get)(void *state, const char *key, void **val, size_t *len);
    int (*cas)(void *state, const char *key, const void *expect, size_t elen,
               const void *val, size_t len);
    int (*del)(void *state, const char *key);
    int (*lease_acquire)(void *state, const char *key, const char *owner,
                         int64_t ttl_ms, uint64_t *token);
    int (*lease_renew)(void *state, const char *key, const char *owner, int64_t ttl_ms);
    int (*lease_release)(void *state, const char *key, const char *owner);
    int (*put_fenced)(void *state, const char *key, const void *val, size_t len,
                      const char *lease_key, uint64_t token);
} marin__kv_ops;

/* ---- actors (actor.h) ---- */

/* A registered class (process-wide registry; entries never freed). */
typedef struct marin__actor_method {
    char *name;
    marin_method_fn fn;
    unsigned flags;
} marin__actor_method;

typedef struct marin__actor_class_entry {
    char *name;
    marin_actor_init_fn init;
    marin_actor_fini_fn fini;
    marin_checkpoint_fn save;
    marin_restore_fn restore;
    size_t nmethods;
    marin__actor_method *methods;
} marin__actor_class_entry;

const marin__actor_class_entry *marin__registry_find_actor_class(const char *name);
const marin__actor_method *marin__actor_class_method(const marin__actor_class_entry *c,
                                                     const char *name);

/* Immutable copy of the actor options a create used. */
typedef struct marin__actor_spec {
    char *name;                 /* NULL: anonymous */
    marin_resources_t res;      /* held for the actor's lifetime */
    int max_restarts;           /* -1 unlimited */
    int max_concurrency;
    int get_if_exists;
    int detached;
    int64_t checkpoint_every;
} marin__actor_spec;

/* A handle. Core owns refs and rt; the backend fills id and impl. */
struct marin_actor {
    atomic_int refs;
    marin_runtime_t *rt;
    void *impl;                 /* backend's object */
    char id[64];
};

/* An actor call travels as a task inside its future: name = method (owned
 * copy), arg = argument, opts = the runtime's defaults. Running one uses
 * marin__method_execute. */
typedef struct marin__actor_ops {
    /* Make (or with get_if_exists, find) an actor; fill a->impl and a->id. */
    int (*create)(void *state, const marin__actor_class_entry *cls,
                  const marin__actor_spec *spec, const void *arg, size_t len,
                  marin_actor_t *a);
    int (*lookup)(void *state, const char *name, marin_actor_t *a);
    int (*from_id)(void *state, const char *id, marin_actor_t *a);
    int (*ready)(void *state, marin_actor_t *a, int64_t timeout_ms);
    /* Take a call (the backend owns one future reference until settled). */
    int (*call)(void *state, marin_actor_t *a, struct marin__task *call);
    int (*checkpoint)(void *state, marin_actor_t *a);
    int (*kill)(void *state, marin_actor_t *a, int no_restart);
    /* The handle's last reference went: drop the backend's part. */
    void (*release)(void *state, marin_actor_t *a);
} marin__actor_ops;

/* Run one method call on this thread with a task context (so nested
 * submits and marin_task_return work). Returns the method's code; on
 * success *result and *len hold what it returned (caller frees); on failure
 * *msg holds the method's own words (caller frees) or NULL. *died is set
 * when the method called marin_test_kill_worker. The future is not
 * touched. */
int marin__method_execute(marin_runtime_t *rt, struct marin__task *call,
                          const marin__exec_env *env, marin_method_fn fn, void *self,
                          void **result, size_t *len, char **msg, int *died);
/* The same for a constructor (init), restore or checkpoint hook: @p kind
 * picks which; self is in/out. */
enum { MARIN__HOOK_INIT, MARIN__HOOK_RESTORE, MARIN__HOOK_SAVE };
int marin__hook_execute(marin_runtime_t *rt, const marin__exec_env *env,
                        const marin__actor_class_entry *cls,
                        int kind, const void *arg, size_t len, void **self,
                        void **result, size_t *rlen, char **msg,
                        marin_future_t **running, pthread_mutex_t *running_mu);
/* (running, running_mu: when not NULL, the hook's carrier future is stored
 * in *running, under running_mu, while the hook runs, so a kill or a close
 * can finish it (ECANCELED) and the hook sees marin_task_cancelled.) */

/* Around a blocking wait in a backend: a task running on this thread lends
 * its resources back (no-ops outside tasks). */
void marin__block_begin(void);
void marin__block_end(void);

/* ---- serving as a worker (worker.h) ---- */
typedef struct marin__worker_opts {
    const marin_resources_t *res;  /* NULL: what the machine has */
    const char *name;              /* NULL: generated */
    int64_t drain_ms;
} marin__worker_opts;

/* ---- the backend ops table ---- */
typedef struct marin__backend {
    const char *name;      /* "local", "redis", "k8s": also the URI scheme */
    size_t state_size;     /* core allocates this per runtime (zeroed) */
    int (*init)(void *state, marin_runtime_t *rt, const marin__uri *uri);
    /* Stop: refuse new work, finish every queued task with MARIN_ECANCELED,
     * ask running ones to stop, wait for them to return. */
    void (*shutdown)(void *state);
    void (*fini)(void *state);
    /* Check a new task before it is accepted: name known, request feasible
     * (MARIN_ENOTFOUND / MARIN_EINFEASIBLE with a message). NULL: accept. */
    int (*admit)(void *state, struct marin__task *t);
    /* Take a task (the backend owns one future reference until settled). */
    int (*submit)(void *state, struct marin__task *t);
    int (*cancel)(void *state, struct marin__task *t);   /* NULL: nothing */
    /* A task on this thread is about to block (begin=1) / resumes (0). */
    void (*blocking)(void *state, struct marin__task *t, int begin); /* NULL ok */
    int (*capacity)(void *state, marin_resources_t *out); /* NULL: unsupported */
    const marin__kv_ops *kv;       /* NULL: MARIN_EUNSUPPORTED */
    const marin__actor_ops *actor; /* NULL: MARIN_EUNSUPPORTED */
    /* Serve as a worker on this runtime (NULL: MARIN_EUNSUPPORTED). stop is
     * async-signal-safe; join waits for the drain and frees. */
    int (*worker_start)(void *state, const marin__worker_opts *o, void **out);
    void (*worker_stop)(void *w);
    int (*worker_join)(void *w);
    const char *(*worker_id)(const void *w);
    /* A task running on this thread logged a line (marin_task_log): send it
     * where its driver reads it. NULL: the local log only. */
    void (*task_log)(void *state, const char *task_id, int level, const char *message);
} marin__backend;

/* NULL-terminated, generated by meson from the `backends` option. */
extern const marin__backend *const marin__backends[];

/* ---- runtime services for backends ---- */
void marin__log(marin_runtime_t *rt, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int marin__log_enabled(marin_runtime_t *rt, int level);

/* Run fn(arg) on the runtime's reactor (libuv) thread. MARIN_ESTATE when
 * the reactor has stopped. */
typedef struct marin__job {
    struct marin__job *next;
    void (*run)(struct marin__job *job);
} marin__job;
int marin__reactor_post(marin_runtime_t *rt, marin__job *job);
/* The reactor's libuv loop, for backends that put their own handles on it
 * (only touched on the reactor thread). NULL before start. */
struct uv_loop_s *marin__reactor_loop(marin_runtime_t *rt);
/* 1 when called on rt's reactor thread. */
int marin__reactor_on_thread(marin_runtime_t *rt);
/* Timers on the reactor: fire(arg) after delay_ms unless cancelled first.
 * Both start and cancel may be called from any thread. */
typedef struct marin__timer marin__timer;
int marin__timer_start(marin_runtime_t *rt, int64_t delay_ms,
                       void (*fire)(void *arg), void *arg,
                       void (*dispose)(void *arg), marin__timer **out);
/* Cancel (if not fired) and dispose; the handle is invalid afterwards. */
void marin__timer_cancel(marin_runtime_t *rt, marin__timer *t);

#endif
