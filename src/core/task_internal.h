/* Core-internal task helpers (task.c). */
#ifndef MARIN_CORE_TASK_INTERNAL_H
#define MARIN_CORE_TASK_INTERNAL_H

#include "backend.h"

/* The runtime of the task running on this thread, or NULL. */
marin_runtime_t *marin__current_task_runtime(void);
/* marin_future_cancel finished the future: tell the backend. */
void marin__task_cancelled_notify(marin_runtime_t *rt, struct marin__task *t);

#endif
