/* The redis backend: a driver and any number of workers sharing one Redis
 * namespace. This file reads the URI, opens the connections and holds the
 * ops table; the driver's task path is redis_driver.c, the worker's
 * redis_worker.c, actors redis_actor.c, KV and leases redis_kv.c. The data
 * layout is in redis_keys.h. */
#define _GNU_SOURCE 1
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

#include "alloc.h"
#include "fail.h"
#include "redis_actor.h"
#include "redis_internal.h"
#include "redis_worker.h"

static const char *const known_params[] = {
    "namespace", "connect_timeout_ms", "command_timeout_ms", "backoff_min_ms",
    "backoff_max_ms", "heartbeat_ms", "worker_ttl_ms", "driver_ttl_ms", "reclaim_ms",
    "grace_ms", "block_ms", "result_ttl_ms", "drain_ms", "max_payload", "worker_resources",
    NULL};

void marin__redis_free_cfg(marin__rcfg *cfg)
{
    marin__free(cfg->ns);
    marin__free((char *)cfg->conn.host);
    marin__free((char *)cfg->conn.user);
    marin__free((char *)cfg->conn.password);
    marin_resources_destroy(cfg->worker_res);
    memset(cfg, 0, sizeof *cfg);
}

static int ns_ok(const char *ns)
{
    size_t n = strlen(ns);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = ns[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int param_ms(const marin__uri *u, const char *key, int64_t *out, int64_t min)
{
    long long v = *out;
    int rc = marin__uri_param_i64(u, key, &v);
    if (rc != MARIN_OK)
        return rc;
    if (v < min)
        return marin__err(MARIN_EINVAL, "marin_runtime_open: %s=%lld is below its "
                          "minimum of %lld", key, v, (long long)min);
    *out = v;
    return MARIN_OK;
}

int marin__redis_parse_cfg(const marin__uri *u, marin__rcfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = marin__uri_check_params(u, known_params);
    if (rc != MARIN_OK)
        return rc;
    const char *ns = marin__uri_param(u, "namespace");
    if (!ns)
        ns = "default";
    if (!ns_ok(ns))
        return marin__err(MARIN_EINVAL, "marin_runtime_open: namespace '%.80s' must be 1 to "
                          "64 bytes of A-Z a-z 0-9 . _ -", ns);
    int db = 0;
    if (u->path && u->path[0] && strcmp(u->path, "/") != 0) {
        char *end = NULL;
        long v = strtol(u->path + 1, &end, 10);
        if (u->path[0] != '/' || !end || *end || end == u->path + 1 || v < 0 || v > 1000000)
            return marin__err(MARIN_EINVAL, "marin_runtime_open: the redis URI's path "
                              "'%.80s' must be /DB, a database number", u->path);
        db = (int)v;
    }
    cfg->conn.port = u->port > 0 ? u->port : 6379;
    cfg->conn.db = db;
    cfg->conn.connect_timeout_ms = 2000;
    cfg->conn.command_timeout_ms = 10000;
    cfg->conn.backoff_min_ms = 50;
    cfg->conn.backoff_max_ms = 2000;
    cfg->heartbeat_ms = 1000;
    cfg->worker_ttl_ms = 5000;
    cfg->driver_ttl_ms = 30000;
    cfg->reclaim_ms = 1000;
    cfg->grace_ms = 30000;
    cfg->block_ms = 1000;
    cfg->result_ttl_ms = 3600000;
    cfg->drain_ms = 5000;
    cfg->max_payload = 64LL << 20;
    if ((rc = param_ms(u, "connect_timeout_ms", &cfg->conn.connect_timeout_ms, 1)) ||
        (rc = param_ms(u, "command_timeout_ms", &cfg->conn.command_timeout_ms, 1)) ||
        (rc = param_ms(u, "backoff_min_ms", &cfg->conn.backoff_min_ms, 1)) ||
        (rc = param_ms(u, "backoff_max_ms", &cfg->conn.backoff_max_ms, 1)) ||
        (rc = param_ms(u, "heartbeat_ms", &cfg->heartbeat_ms, 10)) ||
        (rc = param_ms(u, "worker_ttl_ms", &cfg->worker_ttl_ms, 30)) ||
        (rc = param_ms(u, "driver_ttl_ms", &cfg->driver_ttl_ms, 30)) ||
        (rc = param_ms(u, "reclaim_ms", &cfg->reclaim_ms, 10)) ||
        (rc = param_ms(u, "grace_ms", &cfg->grace_ms, 0)) ||
        (rc = param_ms(u, "block_ms", &cfg->block_ms, 1)) ||
        (rc = param_ms(u, "result_ttl_ms", &cfg->result_ttl_ms, 1000)) ||
        (rc = param_ms(u, "drain_ms", &cfg->drain_ms, 0)) ||
        (rc = param_ms(u, "max_payload", &cfg->max_payload, 1024)))
        return rc;
    if (cfg->worker_ttl_ms < 2 * cfg->heartbeat_ms)
        return marin__err(MARIN_EINVAL, "marin_runtime_open: worker_ttl_ms=%lld must be at "
                          "least twice heartbeat_ms=%lld, or live workers would look dead",
                          (long long)cfg->worker_ttl_ms, (long long)cfg->heartbeat_ms);
    if (cfg->driver_ttl_ms < 2 * cfg->heartbeat_ms)
        return marin__err(MARIN_EINVAL, "marin_runtime_open: driver_ttl_ms=%lld must be at "
                          "least twice heartbeat_ms=%lld", (long long)cfg->driver_ttl_ms,
                          (long long)cfg->heartbeat_ms);
    const char *wres = marin__uri_param(u, "worker_resources");
    if (wres) {
        if ((rc = marin_resources_parse(wres, &cfg->worker_res)) != MARIN_OK) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", marin_last_error());
            return marin__err(MARIN_EINVAL, "marin_runtime_open: worker_resources: %s",
                              detail);
        }
    }
    if (!(cfg->ns = marin__strdup(ns)) ||
        !(cfg->conn.host = marin__strdup(u->host && u->host[0] ? u->host : "127.0.0.1")) ||
        (u->user && u->user[0] && !(cfg->conn.user = marin__strdup(u->user))) ||
        (u->password && !(cfg->conn.password = marin__strdup(u->password)))) {
        marin__redis_free_cfg(cfg);
        return marin__err(MARIN_ENOMEM, "marin_runtime_open: out of memory");
    }
    /* "redis://:pass@host" and "redis://pass@host" both mean a password. */
    if (cfg->conn.user && !cfg->conn.password) {
        cfg->conn.password = cfg->conn.user;
        cfg->conn.user = NULL;
    }
    return MARIN_OK;
}

int marin__redis_shape(const marin_resources_t *r, char *buf, size_t cap)
{
    int n = marin_resources_format(r, buf, cap);
    if (n == 0 && cap > 0)
        n = snprintf(buf, cap, "none");
    return n;
}

int marin__redis_fits(const marin_resources_t *need, const marin_resources_t *have)
{
    for (size_t i = 0; i < need->n; i++)
        if (need->e[i].amount > marin__res_amount(have, need->e[i].name))
            return 0;
    return 1;
}

int64_t marin__redis_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t marin__redis_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const redisReply *marin__redis_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == n && memcmp(k->str, name, n) == 0)
            return fields->element[i + 1];
    }
    return NULL;
}

void marin__redis_reclaim_dead(marin__redis *s, marin__rconn *c, const char *stream,
                               const redisReply *consumers, const char *self, int tidy_idle)
{
    if (!consumers || consumers->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < consumers->elements; i++) {
        const redisReply *cons = consumers->element[i];
        const redisReply *name = marin__redis_field(cons, "name"),
                         *pending = marin__redis_field(cons, "pending"),
                         *idle = marin__redis_field(cons, "idle");
        if (!name || name->type != REDIS_REPLY_STRING || !pending ||
            pending->type != REDIS_REPLY_INTEGER)
            continue;
        /* A consumer with nothing pending is looked at only when idle long
         * enough to be dead: the script then deletes it, so the group does
         * not grow with every worker process ever started. */
        if (pending->integer == 0 &&
            (!tidy_idle || !idle || idle->type != REDIS_REPLY_INTEGER ||
             idle->integer < 2 * s->cfg.worker_ttl_ms))
            continue;
        if (self && strlen(self) == name->len && memcmp(self, name->str, name->len) == 0)
            continue;
        char dead[128], ttl[24], msg[256];
        snprintf(dead, sizeof dead, "%.*s", (int)(name->len < 100 ? name->len : 100),
                 name->str);
        snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.result_ttl_ms);
        snprintf(msg, sizeof msg, "worker %s died (its heartbeat expired after "
                 "worker_ttl_ms=%lld ms) while running the task", dead,
                 (long long)s->cfg.worker_ttl_ms);
        /* The script checks the heartbeat itself: a live consumer is left. */
        const char *args[] = {stream, MARIN__RGROUP_WORKERS, dead, s->prefix, "100", ttl, msg,
                              "0"};
        marin__redis_eval(c, 0, MARIN__RS_RECLAIM, NULL, NULL, 1, 7, args, NULL);
    }
}

int64_t marin__reply_i64(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        char buf[32];
        size_t n = r->len < sizeof buf - 1 ? r->len : sizeof buf - 1;
        memcpy(buf, r->str, n);
        buf[n] = 0;
        return strtoll(buf, NULL, 10);
    }
    return 0;
}

#define EVAL_MAX_ARGS 24

static int eval_argv(int script, int nkeys, int nargs, const char *const *argv,
                     const size_t *lens, const char **av, size_t *al, char *nk)
{
    if (nkeys + nargs + 3 > EVAL_MAX_ARGS)
        return marin__err(MARIN_EINVAL, "internal: too many script arguments");
    snprintf(nk, 16, "%d", nkeys);
    av[0] = "EVAL";
    al[0] = 4;
    av[1] = marin__redis_script(script);
    al[1] = strlen(av[1]);
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < nkeys + nargs; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    return MARIN_OK;
}

int marin__redis_eval(marin__rconn *c, unsigned flags, int script, marin__rconn_cb cb, void *ud,
                      int nkeys, int nargs, const char *const *argv, const size_t *lens)
{
    const char *av[EVAL_MAX_ARGS];
    size_t al[EVAL_MAX_ARGS];
    char nk[16];
    int rc = eval_argv(script, nkeys, nargs, argv, lens, av, al, nk);
    if (rc != MARIN_OK)
        return rc;
    return marin__rconn_cmd(c, flags, 0, cb, ud, 3 + nkeys + nargs, av, al);
}

int marin__redis_eval_sync(marin__rconn *c, int script, redisReply **out, int nkeys,
                           int nargs, const char *const *argv, const size_t *lens)
{
    const char *av[EVAL_MAX_ARGS];
    size_t al[EVAL_MAX_ARGS];
    char nk[16];
    *out = NULL;
    int rc = eval_argv(script, nkeys, nargs, argv, lens, av, al, nk);
    if (rc != MARIN_OK)
        return rc;
    return marin__rconn_call(c, 0, out, 3 + nkeys + nargs, av, al);
}

marin__redis_kv *marin__redis_kv_of(void *state)
{
    return &((marin__redis *)state)->kv;
}

/* ---- the ops ---- */

static int open_conn(marin__redis *s, const char *label, marin__rconn **out)
{
    marin__rconf c = s->cfg.conn;
    c.label = label;
    return marin__rconn_open(s->rt, &c, out);
}

static void redis_shutdown(void *state);
static void redis_fini(void *state);

static int redis_init_steps(void *state, marin_runtime_t *rt, const marin__uri *uri);

/* On failure, undo what was done (core calls neither shutdown nor fini). */
static int redis_init(void *state, marin_runtime_t *rt, const marin__uri *uri)
{
    int rc = redis_init_steps(state, rt, uri);
    if (rc != MARIN_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", marin__err_msg());
        redis_shutdown(state);
        redis_fini(state);
        rc = marin__err(rc, "%s", msg);
    }
    return rc;
}

static int redis_init_steps(void *state, marin_runtime_t *rt, const marin__uri *uri)
{
    marin__redis *s = state;
    s->rt = rt;
    pthread_mutex_init(&s->mu, NULL);
    int rc = marin__redis_parse_cfg(uri, &s->cfg);
    if (rc != MARIN_OK)
        return rc;
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)s;
    snprintf(s->driver_id, sizeof s->driver_id, "r%012llx",
             (unsigned long long)(rnd & 0xffffffffffffULL));
    marin__runtime_set_id_prefix(rt, s->driver_id);
    snprintf(s->prefix, sizeof s->prefix, "marin:{%s}:", s->cfg.ns);
    if ((rc = open_conn(s, "driver", &s->cmd)) != MARIN_OK)
        return rc;
    if ((rc = open_conn(s, "driver-done", &s->done)) != MARIN_OK)
        return rc;
    /* Redis Cluster is not claimed yet: say so rather than misbehave. */
    const char *info[] = {"INFO", "cluster"};
    redisReply *r = NULL;
    if (marin__rconn_call(s->cmd, 0, &r, 2, info, NULL) == MARIN_OK) {
        int cluster = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1");
        freeReplyObject(r);
        if (cluster)
            return marin__err(MARIN_EUNSUPPORTED, "marin_runtime_open: Redis at %s runs in "
                              "cluster mode, which the redis backend does not support yet "
                              "(its keys share one hash tag per namespace, but it is untested "
                              "there); use a standalone Redis or a primary with replicas",
                              marin__rconn_addr(s->cmd));
    }
    s->kv.conn = s->cmd;
    s->kv.ns = s->cfg.ns;
    if ((rc = marin__rdriver_start(s)) != MARIN_OK)
        return rc;
    if ((rc = marin__ractors_init(s)) != MARIN_OK)
        return rc;
    if (s->cfg.worker_res) {
        marin__worker_opts o = {.res = s->cfg.worker_res, .name = NULL,
                                .drain_ms = s->cfg.drain_ms};
        void *w = NULL;
        if ((rc = marin__rworker_start(s, &o, &w)) != MARIN_OK)
            return rc;
        s->inproc = w;
        pthread_mutex_lock(&s->mu);
        if (s->nwake < 64)
            s->wake_ids[s->nwake++] = ((marin__rworker *)w)->rd_client_id;
        pthread_mutex_unlock(&s->mu);
    }
    return MARIN_OK;
}

static void redis_shutdown(void *state)
{
    marin__redis *s = state;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    /* Our own outstanding work ends first (ECANCELED), so tasks of the
     * in-process worker blocked on it wake up; then that worker stops. */
    marin__rdriver_stop(s);
    if (s->inproc) {
        marin__rworker_stop(s->inproc);
        marin__rworker_join(s->inproc);
        s->inproc = NULL;
    }
    marin__ractors_shutdown(s);
    /* The connections live on the reactor, which stops after shutdown. */
    marin__rconn_close(s->done);
    marin__rconn_close(s->cmd);
    s->done = s->cmd = NULL;
    s->kv.conn = NULL;
}

static void redis_fini(void *state)
{
    marin__redis *s = state;
    if (!s->rt)
        return;
    marin__ractors_fini(s);
    marin__rdriver_free(s);
    marin__redis_free_cfg(&s->cfg);
    pthread_mutex_destroy(&s->mu);
}

static int redis_admit(void *state, struct marin__task *t)
{
    (void)state;
    (void)t;
    return MARIN_OK; /* names and capacity live in the workers: see grace_ms */
}

const marin__backend marin__backend_redis = {
    .name = "redis",
    .state_size = sizeof(marin__redis),
    .init = redis_init,
    .shutdown = redis_shutdown,
    .fini = redis_fini,
    .admit = redis_admit,
    .submit = marin__rdriver_submit,
    .cancel = marin__rdriver_cancel,
    .blocking = marin__rworker_blocking,
    .capacity = NULL,
    .kv = &marin__redis_kv_ops,
    .actor = &marin__redis_actor_ops,
    .worker_start = marin__rworker_start,
    .worker_stop = marin__rworker_stop,
    .worker_join = marin__rworker_join,
    .worker_id = marin__rworker_id,
    .task_log = marin__rworker_task_log,
};

/* rediss:// (TLS) is refused by name, so the user is told why. */
static int rediss_init(void *state, marin_runtime_t *rt, const marin__uri *uri)
{
    (void)state;
    (void)rt;
    (void)uri;
    return marin__err(MARIN_EUNSUPPORTED, "marin_runtime_open: rediss:// (Redis over TLS) is "
                      "not supported yet; use redis:// on a trusted network, or a TLS "
                      "tunnel such as stunnel to Redis");
}

static void rediss_nop(void *state)
{
    (void)state;
}

const marin__backend marin__backend_rediss = {
    .name = "rediss",
    .state_size = 0,
    .init = rediss_init,
    .shutdown = rediss_nop,
    .fini = rediss_nop,
};
