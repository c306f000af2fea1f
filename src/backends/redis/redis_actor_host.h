/* An actor hosted by a worker (redis_actor_host.c: creation, kills, the
 * hosted list, reapers; redis_actor_calls.c: its instance and the calls it
 * runs). Private to the redis backend. */
#ifndef MARIN_REDIS_ACTOR_HOST_H
#define MARIN_REDIS_ACTOR_HOST_H

#include "redis_actor.h"
#include "redis_worker.h"

#define HOST_THREADS_MAX 64

typedef struct marin__rhosted marin__rhosted;

struct marin__rhosted {
    struct marin__rhosted *next;
    marin__rworker *w;
    char id[40];
    char name[MARIN_NAME_MAX + 1];
    char key[MARIN__RKEY_MAX];
    char stream[MARIN__RKEY_MAX];
    const marin__actor_class_entry *cls;
    void *self;
    int max_concurrency, max_restarts, restarts;
    int64_t checkpoint_every, since_ckpt;
    marin_resources_t *res;      /* held for life */
    int gpu_ids[MARIN__RWORKER_GPUS];
    size_t gpu_slot[MARIN__RWORKER_GPUS];
    size_t ngpus;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    marin__wtask *head, *tail;   /* the mailbox, in stream order */
    pthread_t threads[HOST_THREADS_MAX];
    size_t nthreads, live;
    int stop, dead;
    int killed;                  /* by marin_actor_kill: calls end ECANCELED */
    int dead_code;
    char dead_why[2048];
    int running;                 /* calls running now */
    int restarting;              /* a crash: no call starts until rebuilt */
    unsigned epoch;              /* +1 per crash: calls of an older one are lost */
    marin_future_t *hook_running;
    pthread_mutex_t hook_mu;
};

/* Its name as messages show it. */
const char *marin__rh_shown(const marin__rhosted *h);
/* A synchronous command on the worker's connection (never on the reactor
 * thread); NULL on failure (logged). */
struct redisReply *marin__rh_cmd(marin__rworker *w, int argc, const char **argv,
                                 const size_t *lens);
void marin__rh_hset(marin__rworker *w, const char *key, const char *field, const char *value,
                    size_t vlen);
void marin__rh_set_outcome(marin__wtask *wt, int rc, const char *why);
/* Under h->mu: give every call in the mailbox its failure, and detach
 * them; the caller answers the list with marin__rh_finish_list once it
 * holds no actor lock (lock order: w->mu, then h->mu; never w->mu inside
 * h->mu). */
marin__wtask *marin__rh_fail_mailbox_locked(marin__rhosted *h, int rc, const char *lead,
                                            const char *tail);
void marin__rh_finish_list(marin__rworker *w, marin__wtask *list);
/* The record says dead, with @p code and @p reason; the name is freed. */
void marin__rh_die(marin__rhosted *h, int code, const char *reason);
/* Restore the last checkpoint, else construct. */
int marin__rh_instance_start(marin__rhosted *h, char *why, size_t cap);
/* Free killed actors on another thread (counted in w->sweepers). */
void marin__rh_start_sweep(marin__rworker *w);
/* A kill that lets the actor restart: rebuild on this thread. */
void *marin__rh_kill_restart_main(void *p);
/* One of the actor's threads. */
void *marin__rh_actor_thread(void *p);

#endif
