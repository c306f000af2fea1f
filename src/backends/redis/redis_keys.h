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
 *  queues                    SET     the queue keys (full names) ever used
 *  q:<task>:<shape>          STREAM  tasks of one name and resource shape;
 *                                    consumer group "w"; one consumer per
 *                                    worker id. Entry fields:
 *                                      d  driver id (whose done stream)
 *                                      s  task sequence number (decimal)
 *                                      a  attempt (decimal, 1 = first)
 *                                      f  codec frame MARIN__FRAME_RTASK
 *                                    <shape> is the canonical resource
 *                                    string ("cpus=1", "cpus=2,gpus=1").
 *  done:<driver>             STREAM  outcomes for one driver. Fields:
 *                                      s  sequence, a attempt,
 *                                      c  code (decimal marin code),
 *                                      w  worker id,
 *                                      f  codec frame MARIN__FRAME_RRESULT
 *                                    Expires with the driver (PEXPIRE
 *                                    refreshed by its heartbeat).
 *  drivers                   HASH    driver id -> JSON {host,pid,started_ms,
 *                                    hb_ms,submitted,succeeded,failed,
 *                                    running}
 *  d:<driver>                STRING  driver heartbeat, PX driver_ttl
 *  workers                   HASH    worker id -> JSON {name,host,pid,
 *                                    resources,free,tasks:[..],classes:[..],
 *                                    started_ms,hb_ms,running,draining}
 *  w:<worker>                STRING  worker heartbeat, PX worker_ttl
 *  cancel:<driver>:<seq>     STRING  "1", PX result_ttl: a cancelled task
 *  dead                      STREAM  dead letters: fields queue, id, reason,
 *                                    worker, and the entry's raw fields;
 *                                    MAXLEN ~ 10000
 *  logs:<driver>             STREAM  task log lines: s seq, t task id,
 *                                    l level, m line; MAXLEN ~ 100000;
 *                                    expires with the driver
 *  actors                    HASH    actor name -> actor id (HSETNX)
 *  actor:<id>                HASH    class, name, spec (frame), arg,
 *                                    host (worker id), restarts, state
 *                                    (pending|alive|restarting|dead),
 *                                    ckpt (bytes), ckpt_calls, error
 *  ac:<id>                   STREAM  calls to one actor, in order; consumer
 *                                    group "h"; fields as a task entry
 *                                    (d, s, a, f) with f an RTASK frame
 *                                    whose name is the method
 *  kv:<key>                  STRING  KV values
 *  lease:<key>               STRING  "<token> <owner>", PX ttl
 *  fence:<key>               STRING  last fencing token (INCR; never expires)
 *
 * Every stream id, sequence and attempt travels as decimal text so the Lua
 * scripts (redis_scripts.h) can read them; payloads are codec frames. */
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
