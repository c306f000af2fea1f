/* The local backend's state, shared by its files (local.c: tasks and
 * threads; local_kv*.c: KV and leases; local_actor*.c: actors). Private. */
#ifndef MARIN_LOCAL_INTERNAL_H
#define MARIN_LOCAL_INTERNAL_H

#include <pthread.h>

#include "backend.h"
#include "capacity.h"

typedef struct shape {
    struct shape *next;
    marin__topts *cached_opts;  /* retained: fast pointer match */
    marin_resources_t req;
    int64_t *demand;            /* per capacity slot */
    int64_t cpus;               /* the lendable part (fixed point) */
    size_t whole_gpus;          /* exclusive GPUs to assign */
    int64_t gpu_fraction;       /* plus this share (hundredths) of one GPU */
    size_t max_running;         /* most of these the capacity can run at once */
    struct marin__task *head, *tail;
} shape;

typedef struct worker {
    struct worker *prev, *next;
    struct marin__task *running;
    int gpu_ids[MARIN__MAX_GPUS];
    size_t gpu_index[MARIN__MAX_GPUS]; /* into local_state.gpu_ids */
    int64_t gpu_share[MARIN__MAX_GPUS];
    size_t ngpus;
} worker;

/* One per worker thread, made at spawn: the thread files it under
 * `exited` when it leaves, and whoever comes next joins it. */
typedef struct thread_node {
    struct thread_node *next;
    struct local_state *s;
    pthread_t th;
} thread_node;

typedef struct local_state {
    marin_runtime_t *rt;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;     /* idle workers wait here */
    pthread_cond_t exit_cv;     /* shutdown waits for threads to leave */
    marin_resources_t capacity; /* immutable after init */
    int64_t *free_amt;          /* per capacity slot */
    size_t cpu_slot, gpu_slot;  /* index into capacity, or SIZE_MAX */
    int gpu_ids[MARIN__MAX_GPUS];
    int64_t gpu_used[MARIN__MAX_GPUS]; /* hundredths of each GPU in use */
    size_t ngpu_ids;
    shape *shapes;
    size_t nthreads, nidle, nblocked, max_active;
    size_t nwaking;             /* idle workers signalled, not yet awake */
    int64_t idle_ms;
    worker *workers;            /* threads running a task */
    thread_node *exited;        /* threads that left, to be joined */
    int stopping;
    int signal_pending;         /* a wake-up to send once mu is released */
    pthread_cond_t hold_cv;     /* actor holds waiting for capacity */
    size_t nhold_waiting;
    struct local_hold *holds_head, *holds_tail; /* waiting holds, oldest first */
    struct local_kv *kv;        /* local_kv.c: the KV store and leases */
    struct local_actors *actors; /* local_actor.c: actors of this runtime */
    struct local_procs *procs;  /* local_procs.c: processes=N, else NULL */
} local_state;

/* ---- local_kv.c ---- */
/* Open the store: in memory when @p state_dir is NULL, else file-backed in
 * that directory (created when missing). MARIN_* with a message. */
int marin__local_kv_open(local_state *s, const char *state_dir);
/* Free the store (NULL-safe on a state that never opened one). */
void marin__local_kv_close(local_state *s);
extern const marin__kv_ops marin__local_kv_ops;

/* ---- local_procs.c: processes=N ---- */
/* Start @p n worker processes running @p cmd (NULL: this program again).
 * On failure the caller still calls marin__local_procs_free. */
int marin__local_procs_start(local_state *s, long long n, const char *cmd);
/* Ask the workers to exit (closing their sockets), then kill what is left. */
void marin__local_procs_stop(local_state *s);
void marin__local_procs_free(local_state *s);
/* The exec env's run hook: run @p t's attempt in a worker process. */
int marin__local_procs_run(void *ud, marin_task_ctx_t *ctx, struct marin__task *t,
                           int *died);

/* ---- local_actor.c ---- */
int marin__local_actors_init(local_state *s);
/* At close, before tasks stop: refuse new calls, finish pending and running
 * calls with MARIN_ECANCELED, ask actor threads to leave. */
void marin__local_actors_stop(local_state *s);
/* After tasks stopped: join the actor threads, run destructors. */
void marin__local_actors_join(local_state *s);
/* Free the rest (NULL-safe on a state whose init failed). */
void marin__local_actors_fini(local_state *s);
extern const marin__actor_ops marin__local_actor_ops;

/* An actor's lifetime hold on resources (local.c). */
typedef struct local_hold {
    shape sh;       /* the demand (sh.demand owned) */
    worker w;       /* the GPUs it was given */
    int held;
    struct local_hold *next; /* in local_state.holds_* while waiting */
} local_hold;
/* MARIN_EINFEASIBLE (naming @what and @who) when @req exceeds the
 * runtime's total capacity, else MARIN_OK. */
int marin__local_check_feasible(const local_state *s, const marin_resources_t *req,
                                const char *what, const char *who);
/* Hold @p req, waiting up to @p timeout_ms (-1 forever) for it to be free.
 * MARIN_EINFEASIBLE when it can never fit, MARIN_ETIMEDOUT, MARIN_ESTATE when
 * the runtime closes meanwhile, MARIN_ENOMEM; messages name @p who. */
int marin__local_hold(local_state *s, const marin_resources_t *req, int64_t timeout_ms,
                      const char *who, local_hold *h);
/* Give it back (idempotent) and free what the hold owns. */
void marin__local_unhold(local_state *s, local_hold *h);

#endif
