/* Actors on the redis backend: not built yet. */
#include "alloc.h"
#include "fail.h"
#include "redis_actor.h"

int marin__ractors_init(marin__redis *s)
{
    (void)s;
    return MARIN_OK;
}

void marin__ractors_shutdown(marin__redis *s)
{
    (void)s;
}

void marin__ractors_fini(marin__redis *s)
{
    (void)s;
}
