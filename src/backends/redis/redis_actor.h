/* Actors on the redis backend (redis_actor.c). */
#ifndef MARIN_REDIS_ACTOR_H
#define MARIN_REDIS_ACTOR_H

#include "redis_internal.h"

extern const marin__actor_ops marin__redis_actor_ops;
int marin__ractors_init(marin__redis *s);
/* A call to the actor of @p stream found it dead (@p why). */
void marin__ractors_note_dead(marin__redis *s, const char *stream, const char *why);
void marin__ractors_shutdown(marin__redis *s);
void marin__ractors_fini(marin__redis *s);

/* ---- the host's side (redis_actor_host.c), used by redis_worker.c ---- */
struct marin__rworker;
struct marin__wtask;
/* 1 when @p task_name is an actor creation ("@actor:<class>"). */
int marin__rhost_is_creation(const char *task_name);
/* 1 when it is one this process can host (its class is registered). */
int marin__rhost_runnable(const char *task_name);
/* On a task thread: host the actor the creation entry @p wt names; the
 * outcome goes in wt (wt->keep_res: its resources stay held). */
void marin__rhost_create(struct marin__rworker *w, struct marin__wtask *wt);
/* A call read from @p stream: into its actor's mailbox (1), or 0 when no
 * actor of this worker has that stream. */
int marin__rhost_take_call(struct marin__rworker *w, const char *stream, struct marin__wtask *wt);
/* The call streams to read (under w->mu). */
size_t marin__rhost_streams(struct marin__rworker *w, const char **av, size_t max);
/* Free killed actors (not on the reactor thread). */
void marin__rhost_sweep(struct marin__rworker *w);
/* Stop and free every hosted actor (the worker stops). */
void marin__rhost_stop_all(struct marin__rworker *w);
/* Under w->mu: fn for every call waiting in a hosted actor's mailbox. */
void marin__rhost_each_queued(struct marin__rworker *w,
                              void (*fn)(struct marin__wtask *wt, void *ud), void *ud);
/* Reactor: end hosted actors whose record says dead. */
void marin__rhost_check_states(struct marin__rworker *w);
/* Reactor: restart or fail the actors of dead hosts. */
void marin__rhost_reap(struct marin__rworker *w);

#endif
