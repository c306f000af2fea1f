/* The redis backend's KV store and leases (kv.h) over one connection:
 * keys kv:<key>, lease:<key> ("<token> <owner>", PX ttl) and fence:<key>
 * (the last token, INCR, never expires) of the namespace (redis_keys.h).
 * Every check-and-write is one Lua script, so it is atomic in Redis.
 * Private to the redis backend. */
#ifndef MARIN_REDIS_KV_H
#define MARIN_REDIS_KV_H

#include "backend.h"
#include "redis_conn.h"

typedef struct marin__redis_kv {
    marin__rconn *conn; /* commands go here (synchronous calls) */
    const char *ns;     /* the namespace (borrowed) */
} marin__redis_kv;

/* The KV part of the backend's state (redis.c implements it). */
marin__redis_kv *marin__redis_kv_of(void *backend_state);

/* The backend's table: each op finds its store with marin__redis_kv_of. */
extern const marin__kv_ops marin__redis_kv_ops;
/* The same ops taking a marin__redis_kv * as the state (tests, the CLI). */
extern const marin__kv_ops marin__redis_kv_conn_ops;

#endif
