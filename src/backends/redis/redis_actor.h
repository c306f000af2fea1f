/* Actors on the redis backend (redis_actor.c). */
#ifndef MARIN_REDIS_ACTOR_H
#define MARIN_REDIS_ACTOR_H

#include "redis_internal.h"

extern const marin__actor_ops marin__redis_actor_ops;
int marin__ractors_init(marin__redis *s);
void marin__ractors_shutdown(marin__redis *s);
void marin__ractors_fini(marin__redis *s);

#endif
