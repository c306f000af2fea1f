/* The worker's state (redis_worker.c; the actor host in redis_actor.c
 * shares it). */
#ifndef MARIN_REDIS_WORKER_H
#define MARIN_REDIS_WORKER_H

#include <uv.h>

#include "redis_internal.h"

#define MARIN__RWORKER_QUEUES 1024 /* streams one worker reads (queues + hosted actors) */
#define MARIN__RWORKER_GPUS 64

typedef struct marin__rworker marin__rworker;

#define MARIN__RWORKER_TOMBS 16
/* An actor that died on this worker: calls still arriving get its reason. */
typedef struct marin__rtomb {
    char stream[MARIN__RKEY_MAX];
    int code;
    char why[1024];
} marin__rtomb;

/* One entry taken from a queue. */
typedef struct marin__wtask {
    struct marin__wtask *next, *prev;
    marin__rworker *w;
    char *stream;
    char entry_id[48];
    unsigned long long id_ms, id_seq; /* the entry id, for ordering */
    char driver[40];
    uint64_t seq;
    int attempt;
    marin__rtask_msg msg;
    int gpu_ids[MARIN__RWORKER_GPUS];
    size_t gpu_slot[MARIN__RWORKER_GPUS];
    size_t ngpus;
    struct marin__task *t;      /* while running (under w->mu) */
    int cancel_seen;
    int lent;                   /* resources lent while blocked */
    int keep_res;               /* an actor now holds them */
    int actor_dead;             /* the call's actor is dead: the driver remembers */
    /* the outcome */
    int rc;
    void *result;
    size_t len;
    char *why;
    int died;
} marin__wtask;

typedef struct marin__rwqueue {
    char *key;
    char *task;
    marin_resources_t *res;
    int runnable;               /* registered here and fits the capacity */
} marin__rwqueue;

struct marin__rworker {
    marin__redis *s;
    marin_runtime_t *rt;
    char id[72];
    marin__rconn *cmd, *rd;
    marin_resources_t *cap;
    int gpu_ids[MARIN__RWORKER_GPUS];
    size_t ngpus;
    int64_t drain_ms;
    int prefetch;
    long long rd_client_id;     /* CLIENT ID of rd, to unblock its read (reactor) */
    uint64_t rd_epoch;          /* rd's connection epoch that id belongs to */
    int64_t started_ms;
    atomic_int stop_asked;
    uv_async_t async;
    marin__job start_job;

    pthread_mutex_t mu;
    pthread_cond_t cv;          /* task threads wait for work */
    pthread_cond_t idle_cv;     /* start, stop and join wait here */
    marin_resources_t *free;
    unsigned char gpu_busy[MARIN__RWORKER_GPUS];
    marin__wtask *backlog_head, *backlog_tail;
    size_t nbacklog;
    marin__wtask *ready_head, *ready_tail;
    marin__wtask *running;
    marin__wtask *done_head, *done_tail;
    pthread_t threads[256];
    size_t nthreads, idle, live_threads, nready;
    int threads_exit;
    int acks_inflight;
    int reactor_started, reactor_done;
    int handed_back_running;
    int async_closed;
    int kicked;                 /* unblock the read: a new stream */
    struct marin__rhosted *hosted; /* actors hosted here */
    int sweepers;               /* threads freeing killed actors */
    marin__rtomb tombs[MARIN__RWORKER_TOMBS];
    size_t ntombs;

    /* reactor only */
    marin__rwqueue queues[MARIN__RWORKER_QUEUES];
    size_t nqueues, nrunnable;
    char wake_last[48];         /* last id seen on the wake stream */
    int self_reclaimed;         /* the first queue listing reclaimed our old entries */
    unsigned janitor_round;
    char dead_drivers[64][40];  /* recently found dead: their tasks are dropped */
    size_t ndead_drivers;
    int reading, draining, stopped;
    int64_t last_reclaim;
    marin__timer *hb, *read_retry, *drain_timer;
};

void marin__rworker_handback_backlog(marin__rworker *w);
/* Under w->mu: put @p wt in (on) or take it out of the running list that
 * cancellation polls and the drain look at. */
void marin__rworker_running_locked(marin__rworker *w, marin__wtask *wt, int on);
/* A finished call or task: to the reactor, which reports its outcome. */
void marin__rworker_finish(marin__rworker *w, marin__wtask *wt);
/* Free an entry that will not be reported (left pending: reclaimed if we
 * die). */
void marin__rworker_drop(marin__rworker *w, marin__wtask *wt);
/* Under w->mu: give back resources and GPU slots. */
void marin__rworker_release_res(marin__rworker *w, const marin_resources_t *res,
                                const size_t *gpu_slot, size_t ngpus);
/* redis_worker.c <-> redis_worker_upkeep.c (reactor thread). */
void marin__rworker_read_queues(marin__rworker *w);
void marin__rworker_refresh_queues(marin__rworker *w);
void marin__rworker_heartbeat(marin__rworker *w);
void marin__rworker_hb_fire(void *arg);
/* 1 when the janitor found @p driver dead (its tasks are dropped unrun). */
int marin__rworker_driver_dead(marin__rworker *w, const char *driver);
/* Drain: stop reading, hand back the backlog, finish or hand back what
 * runs within drain_ms; drain_check ends it once nothing is left. */
void marin__rworker_drain_begin(marin__rworker *w);
void marin__rworker_drain_check(marin__rworker *w);
void marin__rworker_wtask_free(marin__wtask *wt);

/* The call this thread runs (task logs find their driver through it). */
void marin__rworker_set_current(marin__wtask *wt);
/* Make the reader look again (a new stream to read). */
void marin__rworker_kick(marin__rworker *w);

#endif
