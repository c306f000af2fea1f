/* placeholder: being written */
#include "local_internal.h"
int marin__local_kv_open(local_state *s, const char *state_dir) { (void)s; (void)state_dir; return 0; }
void marin__local_kv_close(local_state *s) { (void)s; }
const marin__kv_ops marin__local_kv_ops = {0};
