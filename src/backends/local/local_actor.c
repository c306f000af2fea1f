/* placeholder: being written */
#include "local_internal.h"
int marin__local_actors_init(local_state *s) { (void)s; return 0; }
void marin__local_actors_stop(local_state *s) { (void)s; }
void marin__local_actors_join(local_state *s) { (void)s; }
void marin__local_actors_fini(local_state *s) { (void)s; }
const marin__actor_ops marin__local_actor_ops = {0};
