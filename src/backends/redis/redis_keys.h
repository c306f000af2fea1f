/* The Redis data layout of one namespace: every key, what it holds, who
 * writes it and how long it lives. Private to the redis backend and the
 * `marin` CLI; docs/backends/redis.md tells the same story for people.
 *
 * Every key starts with "marin:{NS}:" — the braces are a Redis Cluster
 * hash tag, so one namespace lives in one slot (Cluster itself is not
 * claimed yet). NS is the URI's namespace= (default "default").
 *
 *  key (after marin:{NS}:)   type    contents
 *  ------------------------  ------  -------------------------------------
 *  queues                    SET     the queue keys (full names) ever used;
 *                                    drivers SADD, workers SMEMBERS it
 *  q:<task>:<shape>          STREAM  tasks of one name and resource shape;
 *                                    consumer group "w"; one consumer per
 *                                    worker id. Entry fields:
 *                                      d  driver id (whose done stream)
 *                                      s  task sequence number (decimal)
 *                                      a  attempt (decimal, 1 = first)
 *                                      f  codec frame MARIN__FRAME_RTASK
 *                                    <shape> is the canonical resource
 *                                    string ("cpus=1", "cpus=2,gpus=1";
 *                                    "none" for an empty request).
 *  q:@actor:<class>:<shape>  STREAM  actor creations (a queue like the
 *                                    others, task name "@actor:<class>",
 *                                    <shape> the actor's resources): the
 *                                    RTASK's argument is the actor id. A
 *                                    restart by ACTOR_REAP re-adds the
 *                                    actor's cframe with d = creator,
 *                                    s = 0 (no driver waits on it) and
 *                                    a = restarts + 1 (after the bump).
 *  wake                      STREAM  field q: the queue key a driver just
 *                                    created (XADD MAXLEN ~ 100 with the
 *                                    XGROUP CREATE and SADD). A worker with
 *                                    no queue it can run blocks on it
 *                                    (XREAD from the last id it saw) and
 *                                    re-reads `queues` when it moves.
 *  done:<driver>             STREAM  outcomes for one driver. Fields:
 *                                      s  sequence, a attempt,
 *                                      c  code (decimal marin code),
 *                                      w  worker id ("" from ACTOR_REAP),
 *                                      f  codec frame MARIN__FRAME_RRESULT
 *                                         (from a worker's ACK), or
 *                                      m  a plain message instead of f
 *                                         (RECLAIM, DEADLETTER, ACTOR_REAP)
 *                                    RRESULT's died byte: 0; 1 = the place
 *                                    it ran died (MARIN_EWORKER); 2 = the
 *                                    called actor is dead (the driver then
 *                                    refuses later calls to it at once).
 *                                    The driver XDELs what it read; the
 *                                    stream expires with the driver
 *                                    (PEXPIRE result_ttl, refreshed by
 *                                    every outcome and its heartbeat) or
 *                                    is deleted by JANITOR once d:<driver>
 *                                    is gone, or at close.
 *  drivers                   HASH    driver id -> JSON {host,pid,hb_ms,
 *                                    submitted,succeeded,failed,
 *                                    outstanding}; HDEL at close, or by
 *                                    JANITOR once d:<driver> is gone
 *  d:<driver>                STRING  driver heartbeat (wall ms), PX
 *                                    driver_ttl
 *  workers                   HASH    worker id -> JSON {name,host,pid,
 *                                    resources,free,tasks:[..],classes:[..],
 *                                    started_ms,hb_ms,running,draining,
 *                                    rd_client}. tasks: the task names it
 *                                    registers plus "@actor:<class>" for
 *                                    each actor class (what the driver's
 *                                    grace check matches queue names
 *                                    against); classes: the class names;
 *                                    rd_client: CLIENT ID of its reading
 *                                    connection (drivers CLIENT UNBLOCK it
 *                                    when they create a queue). HDEL on a
 *                                    clean stop, or by JANITOR once
 *                                    w:<worker> is gone.
 *  w:<worker>                STRING  worker heartbeat, PX worker_ttl (SET
 *                                    NX at start: one live worker per id)
 *  cancel:<driver>:<seq>     STRING  "1", PX result_ttl: a cancelled task
 *                                    or actor call
 *  dead                      STREAM  dead letters: fields queue, id, reason,
 *                                    worker, and each of the entry's raw
 *                                    fields as "field:<name>";
 *                                    MAXLEN ~ 10000
 *  logs:<driver>             STREAM  task log lines: s seq, t task id,
 *                                    l level, m line; MAXLEN ~ 100000;
 *                                    expires with the driver
 *  actors                    HASH    actor name -> actor id (HSETNX at
 *                                    create; HDEL when the actor dies)
 *  actor_ids                 SET     every actor id (SADD at create); the
 *                                    reaper samples it (SRANDMEMBER) and
 *                                    SREMs ids whose hash is gone; marin
 *                                    status lists them
 *  actor:<id>                HASH    the actor's record:
 *                                      class, name ("" anonymous),
 *                                      arg (constructor argument),
 *                                      state pending|alive|restarting|dead,
 *                                      host (worker id; "" while unhosted),
 *                                      restarts, max_restarts (-1 no cap),
 *                                      max_concurrency, checkpoint_every,
 *                                      creator (driver id), cq (creation
 *                                      queue key), cframe (the creation's
 *                                      RTASK frame, re-queued on restart),
 *                                      ckpt (last checkpoint bytes; absent
 *                                      until the first), code and error
 *                                      (why it died; code is decimal),
 *                                      killing ("1", HSETNX: the one
 *                                      no-restart kill that wins), reaped
 *                                      ("1": dead and drained)
 *                                    Lives until a reaper finds it dead
 *                                    with no calls left: then it and its
 *                                    call stream expire after result_ttl_ms
 *                                    (calls until then are still answered);
 *                                    the id leaves actor_ids once it is
 *                                    gone.
 *  ac:<id>                   STREAM  calls to one actor, in order; consumer
 *                                    group "w" (the hosting worker reads it
 *                                    as consumer <worker id>, in the same
 *                                    XREADGROUP as its queues); fields as a
 *                                    task entry (d, s, a, f) with f an
 *                                    RTASK frame whose name is the method,
 *                                    or "@checkpoint" / "@kill" (arg "1":
 *                                    no restart, "0": restart)
 *  kv:<key>                  STRING  KV values
 *  lease:<key>               STRING  "<token> <owner>", PX ttl
 *  fence:<key>               STRING  last fencing token (INCR; never expires)
 *
 * Every stream id, sequence and attempt travels as decimal text so the Lua
 * scripts (redis_scripts.c) can read them; payloads are codec frames. */
#ifndef MARIN_REDIS_KEYS_H
#define MARIN_REDIS_KEYS_H

#include <stddef.h>

#define MARIN__RKEY_MAX 1024
#define MARIN__RGROUP_WORKERS "w"
#define MARIN__RGROUP_HOST "h"

/* Write "marin:{NS}:<suffix>" into buf (snprintf-style; returns the length
 * needed). */
int marin__rkey(char *buf, size_t cap, const char *ns, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
