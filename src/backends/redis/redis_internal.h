/* The redis backend's shared state: configuration from the URI, the
 * driver side (redis.c, redis_driver.c), the worker side (redis_worker.c),
 * frames (redis_frame.c) and the Lua scripts (redis_scripts.c). */
#ifndef MARIN_REDIS_INTERNAL_H
#define MARIN_REDIS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "backend.h"
#include "redis_conn.h"
#include "redis_keys.h"
#include "redis_kv.h"

struct redisReply;

/* Everything a URI sets; the defaults suit a production cluster, tests
 * shrink them. */
typedef struct marin__rcfg {
    char *ns;
    marin__rconf conn;          /* host, port, auth, db, timeouts, backoff */
    int64_t heartbeat_ms;       /* worker and driver heartbeats */
    int64_t worker_ttl_ms;      /* a worker silent this long is dead */
    int64_t driver_ttl_ms;      /* a driver silent this long is dead */
    int64_t reclaim_ms;         /* how often workers look for dead peers */
    int64_t grace_ms;           /* unrunnable tasks wait this long, then fail */
    int64_t block_ms;           /* blocking reads' BLOCK */
    int64_t result_ttl_ms;      /* done streams, cancel marks, logs */
    int64_t drain_ms;           /* in-process worker's drain at close */
    int64_t max_payload;        /* frame cap, bytes */
    marin_resources_t *worker_res; /* worker_resources=: serve in-process too */
} marin__rcfg;

/* A queue (task name + resource shape) as the driver knows it. */
typedef struct marin__rqueue {
    struct marin__rqueue *next;
    char *key;                  /* full key */
    char *task;                 /* task name (or "@actor:<class>") */
    marin_resources_t *res;     /* the shape */
    int created;                /* XGROUP CREATE + SADD sent */
    size_t pending;             /* this driver's unfinished tasks in it */
    int64_t unrunnable_since;   /* monotonic ms; 0 while some worker fits */
    int unrunnable_code;        /* MARIN_ENOTFOUND / MARIN_EINFEASIBLE */
} marin__rqueue;

/* One outstanding task or call of this driver. */
typedef struct marin__rtask {
    struct marin__rtask *next;  /* hash chain */
    uint64_t seq;
    struct marin__task *t;      /* the backend's future reference */
    marin__rqueue *q;           /* NULL for actor calls */
    char stream[MARIN__RKEY_MAX]; /* where its entry is */
    char entry_id[48];          /* its stream entry id, once XADD answered */
    int attempt;
    int is_call;                /* an actor call */
} marin__rtask;

struct marin__rworker;
struct marin__ractors;

typedef struct marin__redis {
    marin_runtime_t *rt;
    marin__rcfg cfg;
    char driver_id[32];
    char prefix[96];            /* "marin:{NS}:" (NS at most 64 bytes) */
    marin__rconn *cmd;          /* commands */
    marin__rconn *done;         /* the blocking read of the done stream */
    marin__redis_kv kv;

    pthread_mutex_t mu;         /* guards the table, queues, counters */
    marin__rtask **buckets;
    size_t nbuckets, ntasks;
    marin__rqueue *queues;
    int stopping;

    /* reactor-only */
    char last_done[48];
    int reading;
    struct marin__rdriver_loop *loop;

    atomic_ullong submitted, succeeded, failed;
    long long wake_ids[64];     /* live workers' read clients (under mu) */
    size_t nwake;

    struct marin__rworker *inproc; /* worker_resources= */
    struct marin__ractors *actors;
} marin__redis;

/* ---- redis.c ---- */
int marin__redis_parse_cfg(const marin__uri *uri, marin__rcfg *cfg);
void marin__redis_free_cfg(marin__rcfg *cfg);
/* Canonical shape text of @p r ("cpus=1"). */
int marin__redis_shape(const marin_resources_t *r, char *buf, size_t cap);
/* 1 when every amount of @p need is at most @p have's. */
int marin__redis_fits(const marin_resources_t *need, const marin_resources_t *have);
/* Run one of the scripts with EVAL, asynchronously. */
int marin__redis_eval(marin__rconn *c, unsigned flags, int script, marin__rconn_cb cb, void *ud,
                      int nkeys, int nargs, const char *const *argv, const size_t *lens);
/* The same, synchronously. */
int marin__redis_eval_sync(marin__rconn *c, int script, struct redisReply **out, int nkeys,
                           int nargs, const char *const *argv, const size_t *lens);
/* Clocks in ms: monotonic (intervals) and wall (what heartbeats record). */
int64_t marin__redis_mono_ms(void);
int64_t marin__redis_wall_ms(void);
/* The value of field @p name in a stream entry's [f, v, f, v...] array, or
 * NULL (entries from Redis are not trusted: missing is an answer). */
const struct redisReply *marin__redis_field(const struct redisReply *fields, const char *name);
/* From @p consumers (an XINFO CONSUMERS reply of @p stream's group "w"),
 * hand back the entries of every consumer whose heartbeat expired (the
 * RECLAIM script, on @p c); @p self (NULL: none) is skipped; @p tidy_idle
 * also lets the script delete long-idle consumers with nothing pending. */
void marin__redis_reclaim_dead(marin__redis *s, marin__rconn *c, const char *stream,
                               const struct redisReply *consumers, const char *self,
                               int tidy_idle);
/* Decimal text of a reply (integer or string) as int64; 0 on mismatch. */
int64_t marin__reply_i64(const struct redisReply *r);

/* ---- redis_driver.c ---- */
int marin__rdriver_start(marin__redis *s);
void marin__rdriver_stop(marin__redis *s);
void marin__rdriver_free(marin__redis *s);
int marin__rdriver_submit(void *state, struct marin__task *t);
int marin__rdriver_cancel(void *state, struct marin__task *t);
/* Queue @p t with its encoded @p frame: to @p stream (an actor's calls,
 * @p is_call: outcomes are final, never retried here), or with stream NULL
 * to the queue of its name and shape. Takes the backend's reference. */
int marin__rdriver_submit_to(marin__redis *s, struct marin__task *t, const char *stream,
                             const void *frame, size_t flen, int is_call);

/* redis_driver.c <-> redis_driver_upkeep.c */
struct marin__rdriver_loop {
    marin__timer *hb;           /* heartbeat + grace check */
    marin__timer *retry;        /* re-issue the read after a failure */
    int stopped;                /* reactor: no more reads or timers */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop_done;
    marin__job stop_job;
    marin__job start_job;
    marin__redis *s;
    int grace_inflight;
    int64_t last_reap;
};
/* Under s->mu: take the record of @p seq out of the table (NULL: none). */
marin__rtask *marin__rdriver_table_take(marin__redis *s, uint64_t seq);
/* Settle a taken record with a failure of our own; releases it. */
void marin__rdriver_fail_taken(marin__redis *s, marin__rtask *r, unsigned state, int code,
                               const char *msg);
void marin__rdriver_read_done(marin__redis *s);
/* Send every outstanding task's entry again (reactor); returns how many. */
size_t marin__rdriver_resend_all(marin__redis *s);
void marin__rdriver_hb_fire(void *arg);
void marin__rdriver_heartbeat(marin__redis *s);
void marin__rdriver_grace_reply(marin__rconn *c, struct redisReply *reply, int rc,
                                const char *err, void *ud);

/* ---- redis_worker.c ---- */
int marin__rworker_start(void *state, const marin__worker_opts *o, void **out);
void marin__rworker_stop(void *w);
int marin__rworker_join(void *w);
const char *marin__rworker_id(const void *w);
/* The backend's blocking op: a task of a worker of this runtime lends its
 * resources while it waits. */
void marin__rworker_blocking(void *state, struct marin__task *t, int begin);
/* The backend's task_log op: a worker's task line to logs:<driver>. */
void marin__rworker_task_log(void *state, const char *task_id, int level, const char *message);

/* ---- redis_frame.c: payloads of the stream entries ----
 *
 *  RTASK    str task id, str name, str label, bytes arg, u32 nenv,
 *           nenv x (str key, str value), u32 ndeps, ndeps x bytes,
 *           str resources (canonical), i32 max_retries, u8 retry_exceptions,
 *           u64 timeout_ms
 *  RRESULT  bytes (result when the code is 0, else the failure's message),
 *           u8 died
 */
typedef struct marin__rtask_msg {
    char *task_id, *name, *label;
    const void *arg;
    size_t arg_len;
    size_t nenv;
    char **env_keys, **env_values;
    size_t ndeps;
    const void **dep_data;
    size_t *dep_len;
    marin_resources_t *res;
    int32_t max_retries;
    uint8_t retry_exceptions;
    uint64_t timeout_ms;
    void *payload;              /* owns the bytes arg and deps point into */
} marin__rtask_msg;

/* Encode @p t (attempt-independent) into a frame (*out, *len; marin__free).
 * MARIN_ETOOBIG over @p cap, naming task, size and cap. */
int marin__rtask_encode(marin_runtime_t *rt, const struct marin__task *t, int64_t cap,
                        void **out, size_t *len);
/* Decode a frame; MARIN_EPROTO / MARIN_ETOOBIG with a message. */
int marin__rtask_decode(const void *frame, size_t len, int64_t cap, marin__rtask_msg *m);
void marin__rtask_msg_free(marin__rtask_msg *m);
/* A control call ("@kill") with no task behind it. */
int marin__rtask_encode_raw(const char *name, const void *arg, size_t len, void **out,
                            size_t *olen);
int marin__rresult_encode(const void *data, size_t len, int died, void **out, size_t *olen);
/* *data borrowed from *payload (marin__free the payload). */
int marin__rresult_decode(const void *frame, size_t len, int64_t cap, void **payload,
                          const void **data, size_t *dlen, int *died);

/* ---- redis_scripts.c ---- */
enum {
    MARIN__RS_ACK,        /* a worker's outcome: check owner, ack, notify */
    MARIN__RS_RECLAIM,    /* a dead consumer's entries: hand back as EWORKER */
    MARIN__RS_DEADLETTER, /* a bad entry: to the dead stream, ack, tell */
    MARIN__RS_LIVE,       /* live workers' JSON */
    MARIN__RS_HANDBACK,   /* a draining worker gives an entry back */
    MARIN__RS_ACTOR_REAP, /* actors of dead hosts: restart or fail */
    MARIN__RS_JANITOR,    /* what dead drivers and workers left */
    MARIN__RS_COUNT
};
const char *marin__redis_script(int which);


#endif
