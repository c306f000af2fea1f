/* Actors on the local backend, shared by local_actor.c (the ops and the
 * runtime's list of actors) and local_actor_host.c (one actor's mailbox
 * threads, restarts and checkpoints). Private. */
#ifndef MARIN_LOCAL_ACTOR_INTERNAL_H
#define MARIN_LOCAL_ACTOR_INTERNAL_H

#include "local_internal.h"

enum { A_STARTING, A_READY, A_RESTARTING, A_DYING, A_FAILED, A_DEAD };

/* t->shape of a queued checkpoint request (calls carry their method). */
extern const char marin__la_checkpoint_mark;
#define CHECKPOINT_MARK ((void *)&marin__la_checkpoint_mark)

typedef struct lactor {
    struct lactor *next;          /* the runtime's list, under actors->mu */
    atomic_int refs;              /* the list, each handle, a create in progress */
    local_state *s;
    const marin__actor_class_entry *cls;
    marin__actor_spec spec;       /* name owned */
    void *ctor_arg;
    size_t ctor_len;
    char id[64];

    pthread_mutex_t mu;
    pthread_cond_t work_cv;       /* actor threads wait for calls and states */
    pthread_cond_t state_cv;      /* ready() and thread exits wait here */
    int state;
    int code;                     /* why FAILED / DYING / DEAD */
    char *why;
    void *self;
    int has_self;
    int busy;                     /* a thread is rebuilding or retiring it */
    int saving;                   /* a checkpoint hook runs (one at a time) */
    marin_future_t *hook_fut;     /* carrier of the running hook, if any */
    struct marin__task *head, *tail; /* pending calls */
    struct marin__task **inflight;   /* per thread slot */
    size_t running;
    uint64_t epoch;
    void *ckpt;
    size_t ckpt_len;
    int has_ckpt;
    int64_t since_ckpt;
    int restarts;
    int named;                    /* its name is still taken */
    int stop;                     /* threads leave */
    pthread_t *threads;
    size_t nthreads, nlive;
    local_hold hold;
    /* The GPUs of the hold, copied before the threads start: the threads
     * read these, and a failed create gives the hold back beside them. */
    int gpu_ids[MARIN__MAX_GPUS];
    size_t ngpus;
} lactor;

struct local_actors {
    pthread_mutex_t mu;
    lactor *list;
    uint64_t next_id;
    int stopping;
};

typedef struct thread_arg {
    lactor *a;
    size_t slot;
} thread_arg;

void marin__la_lactor_unref(lactor *a);
const char *marin__la_shown(const lactor *a);
void marin__la_call_fail(struct marin__task *t, int code, const char *msg);
struct marin__task *marin__la_take_pending_locked(lactor *a);
void marin__la_fail_list(struct marin__task *list, int code, const char *msg);
void marin__la_set_reason_locked(lactor *a, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *marin__la_reason(const lactor *a);
void marin__la_unname(lactor *a);
int marin__la_restarts_left(const lactor *a);
void marin__la_destroy_instance(lactor *a);
int marin__la_can_take_locked(const lactor *a);
void *marin__la_actor_main(void *p);
marin_future_t **marin__la_grab_inflight_locked(lactor *a, const char *why, size_t *n);
void marin__la_cancel_grabbed(marin_future_t **running, size_t n, const char *why);

#endif
