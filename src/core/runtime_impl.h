/* The runtime's body: core-only (backends see it through backend.h's
 * functions). */
#ifndef MARIN_CORE_RUNTIME_IMPL_H
#define MARIN_CORE_RUNTIME_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend.h"

struct marin__reactor;

struct marin_runtime {
    /* Memory references: one for the open runtime, one per live future, so
     * a future can still find its reactor state after close. */
    atomic_int refs;
    atomic_int closing;
    const marin__backend *backend;
    void *bstate;
    char id_prefix[32];
    atomic_ullong next_seq;
    marin__topts *default_opts;

    /* logging: set rarely, read on every log call */
    pthread_mutex_t log_mu;
    marin_log_fn log_fn;
    void *log_userdata;
    atomic_int log_level;
    int env_log_level;  /* from MARIN_LOG at open */
    int progress_env;   /* MARIN_PROGRESS=1 at open */
    char *prefix_env;   /* MARIN_PREFIX at open (executor), or NULL */

    struct marin__reactor *reactor;

    /* where new futures are carved from (future.c) */
    marin__lock_t slab_lock;
    struct marin__future_slab *slab;

    /* tasks waiting for dependencies (not yet given to the backend) */
    pthread_mutex_t deps_mu;
    struct marin__dep_wait *deps_waiting;
};

void marin__runtime_retain(marin_runtime_t *rt);
void marin__runtime_release(marin_runtime_t *rt);

/* log.c: MARIN_LOG value -> level (0 = silent). */
int marin__log_level_from_env(const char *value);

/* reactor.c */
int marin__reactor_start(marin_runtime_t *rt);
/* Run every queued job, then stop and join the thread. */
void marin__reactor_stop(marin_runtime_t *rt);
/* Free what stop left for late posters (with the runtime's memory). */
void marin__reactor_free(marin_runtime_t *rt);



/* task.c: complete every dependency-waiting task with MARIN_ECANCELED. */
void marin__cancel_dep_waiters(marin_runtime_t *rt);
/* future.c: give up the current slab (at close; its futures live on). */
void marin__future_slab_retire(marin_runtime_t *rt);

#endif
