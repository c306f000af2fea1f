/* The redis backend's connection (src/backends/redis/redis_conn.h) and
 * KV store (redis_kv.h), against a real redis-server (tests/redis_fixture.h):
 * open and close, the handshake (AUTH refused, NOAUTH, SELECT, the client
 * name), pipelined commands from several threads answered in order, the
 * synchronous call, an unreachable address and a server that never
 * answers, kill -9 and restart (RETRY commands survive, the others fail
 * fast), the per-command deadline (a blocked server, a stopped server),
 * close with commands in flight; then the KV ops table, called directly:
 * values, compare-and-swap, leases with expiry, takeover and fencing,
 * tokens across a restart, corrupt keys, Redis down.
 *
 * Each case starts its own server (Check's fork mode) on a runtime whose
 * reactor drives the connection. Without redis-server the suite skips. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/redis/redis_conn.h"
#include "backends/redis/redis_keys.h"
#include "backends/redis/redis_kv.h"
#include "alloc.h"
#include "fail.h"
#include "marin_config.h"
#include "redis_fixture.h"
#include "testutil.h"

/* Only for linking without the backend (redis.c defines the real one);
 * the cases use marin__redis_kv_conn_ops, which never call it. */
__attribute__((weak)) marin__redis_kv *marin__redis_kv_of(void *backend_state);
__attribute__((weak)) marin__redis_kv *marin__redis_kv_of(void *backend_state)
{
    return backend_state;
}

/* ---- helpers ---- */

typedef struct env {
    redis_fixture fx;
    marin_runtime_t *rt;
    marin__rconn *c;
} env;

static marin__rconf conf_for(const redis_fixture *fx)
{
    marin__rconf cf = {.host = "127.0.0.1",
                       .port = fx->port,
                       .connect_timeout_ms = 2000,
                       .command_timeout_ms = 2000,
                       .backoff_min_ms = 20,
                       .backoff_max_ms = 200,
                       .label = "test conn"};
    return cf;
}

static void env_start(env *e, const char *password)
{
    memset(e, 0, sizeof *e);
    ck_assert_msg(redis_fixture_start(&e->fx, password) == 0,
                  "redis-server did not start");
    ck_assert_marin(marin_runtime_open("local://", &e->rt), MARIN_OK);
}

static void env_open(env *e)
{
    marin__rconf cf = conf_for(&e->fx);
    cf.password = e->fx.password[0] ? e->fx.password : NULL;
    ck_assert_marin(marin__rconn_open(e->rt, &cf, &e->c), MARIN_OK);
}

static void env_stop(env *e)
{
    marin__rconn_close(e->c);
    e->c = NULL;
    marin_runtime_close(e->rt);
    redis_fixture_stop(&e->fx);
}

/* A synchronous command from a printf-free argv list; the reply, which the
 * caller frees. */
static redisReply *call_ok(marin__rconn *c, unsigned flags, int argc,
                           const char *const *argv)
{
    redisReply *r = NULL;
    ck_assert_marin(marin__rconn_call(c, flags, &r, argc, argv, NULL), MARIN_OK);
    ck_assert_ptr_nonnull(r);
    return r;
}

static void expect_status(marin__rconn *c, const char *want, int argc,
                          const char *const *argv)
{
    redisReply *r = call_ok(c, 0, argc, argv);
    ck_assert_msg(r->type != REDIS_REPLY_ERROR, "Redis error: %s", r->str);
    if (want)
        ck_assert_str_eq(r->str, want);
    freeReplyObject(r);
}

/* A loopback port nothing listens on. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* A callback that counts and remembers the last outcome. */
typedef struct outcome {
    atomic_int n, ok, fails;
    _Atomic int last_rc;
    char last_err[512];
    int64_t at_ms;
} outcome;

static void outcome_cb(marin__rconn *c, redisReply *r, int rc, const char *err, void *ud)
{
    (void)c;
    outcome *o = ud;
    if (rc == MARIN_OK && r && r->type != REDIS_REPLY_ERROR) {
        atomic_fetch_add(&o->ok, 1);
    } else {
        if (err)
            snprintf(o->last_err, sizeof o->last_err, "%s", err);
        atomic_fetch_add(&o->fails, 1);
    }
    atomic_store(&o->last_rc, rc);
    o->at_ms = now_ms();
    atomic_fetch_add(&o->n, 1);
}

/* ---- connection ---- */

START_TEST(test_redis_conn_open_close)
{
    env e;
    env_start(&e, NULL);
    env_open(&e);
    ck_assert_int_eq(marin__rconn_up(e.c), 1);
    ck_assert_uint_eq(marin__rconn_epoch(e.c), 1);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", e.fx.port);
    ck_assert_str_eq(marin__rconn_addr(e.c), addr);

    const char *ping[] = {"PING"};
    expect_status(e.c, "PONG", 1, ping);
    /* binary-safe arguments */
    const char *set[] = {"SET", "bin", "a\0b\r\nc"};
    size_t lens[] = {3, 3, 6};
    redisReply *r = NULL;
    ck_assert_marin(marin__rconn_call(e.c, 0, &r, 3, set, lens), MARIN_OK);
    freeReplyObject(r);
    const char *get[] = {"GET", "bin"};
    r = call_ok(e.c, 0, 2, get);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(r->len, 6);
    ck_assert_int_eq(memcmp(r->str, "a\0b\r\nc", 6), 0);
    freeReplyObject(r);
    /* an array reply, and an error reply given as is */
    const char *rpush[] = {"RPUSH", "l", "x", "y", "z"};
    freeReplyObject(call_ok(e.c, 0, 5, rpush));
    const char *lrange[] = {"LRANGE", "l", "0", "-1"};
    r = call_ok(e.c, 0, 4, lrange);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 3);
    ck_assert_str_eq(r->element[2]->str, "z");
    freeReplyObject(r);
    const char *bad[] = {"NOSUCHCOMMAND"};
    r = call_ok(e.c, 0, 1, bad);
    ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    /* the client name: the label without spaces */
    const char *getname[] = {"CLIENT", "GETNAME"};
    r = call_ok(e.c, 0, 2, getname);
    ck_assert_str_eq(r->str, "marin-test-conn");
    freeReplyObject(r);
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_select_db)
{
    env e;
    env_start(&e, NULL);
    marin__rconf cf = conf_for(&e.fx);
    cf.db = 3;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &e.c), MARIN_OK);
    const char *set[] = {"SET", "in3", "1"};
    freeReplyObject(call_ok(e.c, 0, 3, set));
    char buf[64];
    ck_assert_int_eq(redis_fixture_cmd(&e.fx, buf, sizeof buf, "EXISTS in3"), 0);
    ck_assert_str_eq(buf, "0"); /* not in db 0 */
    ck_assert_int_eq(redis_fixture_cmd(&e.fx, buf, sizeof buf, "SELECT 3"), 0);
    marin__rconn_close(e.c);
    /* a database Redis does not have */
    cf.db = 100000;
    marin__rconn *c = (marin__rconn *)1;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_lasterr_has("SELECT 100000");
    cf.db = -1;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_EINVAL);
    e.c = NULL;
    env_stop(&e);
}
END_TEST

typedef struct pipe_thread {
    marin__rconn *c;
    int id, n;
    long long last;       /* reactor thread only */
    atomic_int answered, bad;
    pthread_t th;
} pipe_thread;

static void incr_cb(marin__rconn *c, redisReply *r, int rc, const char *err, void *ud)
{
    (void)c;
    (void)err;
    pipe_thread *t = ud;
    if (rc != MARIN_OK || !r || r->type != REDIS_REPLY_INTEGER ||
        r->integer != t->last + 1)
        atomic_fetch_add(&t->bad, 1);
    else
        t->last = r->integer;
    atomic_fetch_add(&t->answered, 1);
}

static void *pipe_main(void *arg)
{
    pipe_thread *t = arg;
    char key[32];
    snprintf(key, sizeof key, "ctr:%d", t->id);
    const char *argv[] = {"INCR", key};
    for (int i = 0; i < t->n; i++)
        if (marin__rconn_cmd(t->c, 0, 0, incr_cb, t, 2, argv, NULL) != MARIN_OK)
            atomic_fetch_add(&t->bad, 1);
    return NULL;
}

/* @p nthreads threads each issue @p n INCRs of their own counter; every
 * reply must be the one after the previous. Returns commands per second. */
static double run_pipeline(marin__rconn *c, int nthreads, int n)
{
    pipe_thread t[8];
    ck_assert_int_le(nthreads, 8);
    memset(t, 0, sizeof t);
    int64_t t0 = now_ms();
    for (int i = 0; i < nthreads; i++) {
        t[i].c = c;
        t[i].id = i;
        t[i].n = n;
        pthread_create(&t[i].th, NULL, pipe_main, &t[i]);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i].th, NULL);
    for (int i = 0; i < nthreads; i++) {
        ck_assert_msg(wait_for(&t[i].answered, n, 30000), "thread %d: %d of %d answered",
                      i, atomic_load(&t[i].answered), n);
        ck_assert_int_eq(atomic_load(&t[i].bad), 0);
        ck_assert_int_eq(t[i].last, n);
    }
    int64_t dt = now_ms() - t0;
    return (double)nthreads * n * 1000.0 / (double)(dt ? dt : 1);
}

START_TEST(test_redis_conn_pipeline_threads)
{
    env e;
    env_start(&e, NULL);
    env_open(&e);
    double rate = run_pipeline(e.c, 4, 10000);
    fprintf(stderr, "redis_conn: 4 threads x 10000 INCR: %.0f commands/s\n", rate);
    char buf[64];
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(redis_fixture_cmd(&e.fx, buf, sizeof buf, "GET ctr:%d", i), 0);
        ck_assert_str_eq(buf, "10000");
    }
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_throughput)
{
    env e;
    env_start(&e, NULL);
    env_open(&e);
    double one = run_pipeline(e.c, 1, 200000);
    const char *del[] = {"DEL", "ctr:0", "ctr:1", "ctr:2", "ctr:3"};
    freeReplyObject(call_ok(e.c, 0, 5, del));
    double four = run_pipeline(e.c, 4, 50000);
    fprintf(stderr, "redis_conn: pipelined INCR on one connection: %.0f/s from 1 thread "
            "(200k), %.0f/s from 4 threads (4 x 50k)\n", one, four);
    ck_assert_msg(one > 50000 || getenv("MARIN_SLOW_TEST"), "only %.0f commands/s", one);
    env_stop(&e);
}
END_TEST

typedef struct nested {
    atomic_int done;
    _Atomic int rc;
} nested;

static void nested_cb(marin__rconn *c, redisReply *r, int rc, const char *err, void *ud)
{
    (void)r;
    (void)rc;
    (void)err;
    nested *n = ud;
    redisReply *out = (redisReply *)1;
    const char *ping[] = {"PING"};
    atomic_store(&n->rc, marin__rconn_call(c, 0, &out, 1, ping, NULL));
    if (out)
        atomic_store(&n->rc, 12345);
    atomic_store(&n->done, 1);
}

START_TEST(test_redis_conn_call_on_reactor)
{
    env e;
    env_start(&e, NULL);
    env_open(&e);
    nested n = {0};
    const char *ping[] = {"PING"};
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, nested_cb, &n, 1, ping, NULL), MARIN_OK);
    ck_assert(wait_for(&n.done, 1, 5000));
    ck_assert_int_eq(atomic_load(&n.rc), MARIN_ESTATE);
    /* a NULL callback: the reply is dropped */
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, NULL, NULL, 1, ping, NULL), MARIN_OK);
    expect_status(e.c, "PONG", 1, ping);
    /* misuse */
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, NULL, NULL, 0, ping, NULL), MARIN_EINVAL);
    ck_assert_marin(marin__rconn_call(e.c, 0, NULL, 1, ping, NULL), MARIN_EINVAL);
    marin__rconn_close(NULL);
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_auth)
{
    env e;
    env_start(&e, "sekrit");
    marin__rconf cf = conf_for(&e.fx);
    char where[64];
    snprintf(where, sizeof where, "refused by 127.0.0.1:%d", e.fx.port);
    /* wrong password */
    cf.password = "wrong";
    marin__rconn *c = NULL;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_EAUTH);
    ck_assert_ptr_null(c);
    ck_assert_lasterr_has("authentication was refused");
    ck_assert_lasterr_has(where);
    ck_assert_lasterr_has("user 'default'");
    ck_assert_lasterr_has("WRONGPASS");
    /* an ACL user that does not exist */
    cf.user = "alice";
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_EAUTH);
    ck_assert_lasterr_has("user 'alice'");
    /* no password at all */
    cf.user = NULL;
    cf.password = NULL;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_EAUTH);
    ck_assert_lasterr_has("requires authentication");
    ck_assert_lasterr_has("NOAUTH");
    /* user without a password is a misuse */
    cf.user = "alice";
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_EINVAL);
    /* the right one, alone and with the default user */
    cf.user = NULL;
    cf.password = "sekrit";
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_OK);
    const char *ping[] = {"PING"};
    expect_status(c, "PONG", 1, ping);
    marin__rconn_close(c);
    cf.user = "default";
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &c), MARIN_OK);
    expect_status(c, "PONG", 1, ping);
    marin__rconn_close(c);
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_unreachable)
{
    marin_runtime_t *rt = NULL;
    ck_assert_marin(marin_runtime_open("local://", &rt), MARIN_OK);
    int port = dead_port();
    marin__rconf cf = {.host = "127.0.0.1", .port = port, .connect_timeout_ms = 500,
                       .command_timeout_ms = 500, .backoff_min_ms = 10,
                       .backoff_max_ms = 100};
    marin__rconn *c = (marin__rconn *)1;
    int64_t t0 = now_ms();
    ck_assert_marin(marin__rconn_open(rt, &cf, &c), MARIN_EUNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 1000);
    ck_assert_ptr_null(c);
    char want[96];
    snprintf(want, sizeof want, "cannot reach Redis at 127.0.0.1:%d: ", port);
    ck_assert_lasterr_has(want);
    ck_assert_lasterr_has("(within 500 ms)");
    fprintf(stderr, "redis_conn: refused: %s\n", marin_last_error());

    /* a port that accepts but never answers: the handshake times out */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    socklen_t l = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &l);
    cf.port = ntohs(a.sin_port);
    cf.connect_timeout_ms = 300;
    t0 = now_ms();
    ck_assert_marin(marin__rconn_open(rt, &cf, &c), MARIN_EUNAVAILABLE);
    int64_t dt = now_ms() - t0;
    ck_assert_msg(dt >= 280 && dt < 1500, "took %lld ms", (long long)dt);
    snprintf(want, sizeof want, "cannot reach Redis at 127.0.0.1:%d: ", cf.port);
    ck_assert_lasterr_has(want);
    ck_assert_lasterr_has("(within 300 ms)");
    fprintf(stderr, "redis_conn: silent: %s\n", marin_last_error());
    close(lfd);

    /* bad arguments */
    cf.port = 0;
    ck_assert_marin(marin__rconn_open(rt, &cf, &c), MARIN_EINVAL);
    cf.port = 6379;
    cf.host = "";
    ck_assert_marin(marin__rconn_open(rt, &cf, &c), MARIN_EINVAL);
    ck_assert_marin(marin__rconn_open(rt, NULL, &c), MARIN_EINVAL);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_redis_conn_restart)
{
    env e;
    env_start(&e, NULL);
    marin__rconf cf = conf_for(&e.fx);
    cf.backoff_min_ms = 20;
    cf.backoff_max_ms = 100;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &e.c), MARIN_OK);
    const char *ping[] = {"PING"};
    expect_status(e.c, "PONG", 1, ping);

    redis_fixture_kill(&e.fx);
    int64_t t0 = now_ms();
    while (marin__rconn_up(e.c) && now_ms() - t0 < 5000)
        sleep_ms(5);
    ck_assert_int_eq(marin__rconn_up(e.c), 0);

    /* RETRY commands wait, in order; the others fail at once */
    enum { N = 200 };
    outcome retry = {0}, fast = {0};
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *argv[] = {"RPUSH", "order", v};
        ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_RETRY, 0, outcome_cb, &retry, 3,
                                         argv, NULL), MARIN_OK);
    }
    t0 = now_ms();
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, outcome_cb, &fast, 1, ping, NULL),
                    MARIN_OK);
    ck_assert(wait_for(&fast.n, 1, 2000));
    ck_assert_int_lt(fast.at_ms - t0, 500);
    ck_assert_int_eq(atomic_load(&fast.last_rc), MARIN_EUNAVAILABLE);
    char want[96];
    snprintf(want, sizeof want, "Redis at 127.0.0.1:%d is unreachable: reconnecting",
             e.fx.port);
    ck_assert_msg(strstr(fast.last_err, want), "message: %s", fast.last_err);
    redisReply *r = NULL;
    ck_assert_marin(marin__rconn_call(e.c, 0, &r, 1, ping, NULL), MARIN_EUNAVAILABLE);
    ck_assert_ptr_null(r);
    ck_assert_lasterr_has("unreachable");
    sleep_ms(300); /* a few reconnect attempts fail */
    ck_assert_int_eq(atomic_load(&retry.n), 0);
    ck_assert_uint_eq(marin__rconn_epoch(e.c), 1);

    ck_assert_int_eq(redis_fixture_restart(&e.fx), 0);
    ck_assert_msg(wait_for(&retry.n, N, 10000), "%d of %d retried",
                  atomic_load(&retry.n), N);
    ck_assert_int_eq(atomic_load(&retry.ok), N);
    ck_assert_int_eq(marin__rconn_up(e.c), 1);
    ck_assert_uint_eq(marin__rconn_epoch(e.c), 2);
    const char *lrange[] = {"LRANGE", "order", "0", "-1"};
    r = call_ok(e.c, 0, 4, lrange);
    ck_assert_uint_eq(r->elements, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(atoi(r->element[i]->str), i);
    freeReplyObject(r);

    /* a sync RETRY call issued during an outage completes after restart */
    redis_fixture_kill(&e.fx);
    t0 = now_ms();
    while (marin__rconn_up(e.c) && now_ms() - t0 < 5000)
        sleep_ms(5);
    outcome late = {0};
    ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_RETRY, 0, outcome_cb, &late, 1, ping,
                                     NULL), MARIN_OK);
    ck_assert_int_eq(redis_fixture_restart(&e.fx), 0);
    ck_assert(wait_for(&late.ok, 1, 10000));
    expect_status(e.c, "PONG", 1, ping);
    ck_assert_uint_eq(marin__rconn_epoch(e.c), 3);
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_command_timeout)
{
    env e;
    env_start(&e, NULL);
    marin__rconf cf = conf_for(&e.fx);
    cf.command_timeout_ms = 200;
    ck_assert_marin(marin__rconn_open(e.rt, &cf, &e.c), MARIN_OK);
    const char *ping[] = {"PING"};

    /* a blocking read declared as such waits its block time */
    const char *blpop[] = {"BLPOP", "nothing", "1"};
    int64_t t0 = now_ms();
    outcome blk = {0};
    ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_BLOCKING, 1000, outcome_cb, &blk, 3,
                                     blpop, NULL), MARIN_OK);
    ck_assert(wait_for(&blk.n, 1, 5000));
    ck_assert_int_eq(atomic_load(&blk.last_rc), MARIN_OK);
    ck_assert_int_ge(blk.at_ms - t0, 900);
    ck_assert_uint_eq(marin__rconn_epoch(e.c), 1);

    /* the same read not declared blocking misses its 200 ms deadline; the
     * commands behind it fail too, except RETRY ones */
    outcome late = {0}, behind = {0}, kept = {0};
    t0 = now_ms();
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, outcome_cb, &late, 3, blpop, NULL),
                    MARIN_OK);
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, outcome_cb, &behind, 1, ping, NULL),
                    MARIN_OK);
    ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_RETRY, 0, outcome_cb, &kept, 1, ping,
                                     NULL), MARIN_OK);
    ck_assert(wait_for(&late.n, 1, 5000));
    int64_t dt = late.at_ms - t0;
    ck_assert_msg(dt >= 190 && dt < 700, "failed after %lld ms", (long long)dt);
    ck_assert_int_eq(atomic_load(&late.last_rc), MARIN_EUNAVAILABLE);
    ck_assert_msg(strstr(late.last_err, "no reply within 200 ms"), "%s", late.last_err);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", e.fx.port);
    ck_assert_msg(strstr(late.last_err, where), "%s", late.last_err);
    ck_assert(wait_for(&behind.n, 1, 1000));
    ck_assert_int_eq(atomic_load(&behind.last_rc), MARIN_EUNAVAILABLE);
    ck_assert(wait_for(&kept.ok, 1, 5000)); /* resent after the reconnect */
    expect_status(e.c, "PONG", 1, ping);
    ck_assert_uint_eq(marin__rconn_epoch(e.c), 2);

    /* a server that stops (SIGSTOP): commands time out, reconnects time out
     * in the handshake, and all is well after SIGCONT */
    outcome stopped = {0}, waits = {0};
    kill(e.fx.pid, SIGSTOP);
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, outcome_cb, &stopped, 1, ping, NULL),
                    MARIN_OK);
    ck_assert(wait_for(&stopped.n, 1, 2000));
    ck_assert_int_eq(atomic_load(&stopped.last_rc), MARIN_EUNAVAILABLE);
    ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_RETRY, 0, outcome_cb, &waits, 1, ping,
                                     NULL), MARIN_OK);
    sleep_ms(500);
    ck_assert_int_eq(atomic_load(&waits.n), 0);
    kill(e.fx.pid, SIGCONT);
    ck_assert(wait_for(&waits.ok, 1, 10000));
    expect_status(e.c, "PONG", 1, ping);
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_close_inflight)
{
    env e;
    env_start(&e, NULL);
    env_open(&e);
    enum { N = 500 };
    outcome o = {0};
    const char *blpop[] = {"BLPOP", "nothing", "5"};
    const char *ping[] = {"PING"};
    ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_BLOCKING, 5000, outcome_cb, &o, 3,
                                     blpop, NULL), MARIN_OK);
    for (int i = 0; i < N; i++)
        ck_assert_marin(marin__rconn_cmd(e.c, i % 2 ? MARIN__RC_RETRY : 0, 0, outcome_cb,
                                         &o, 1, ping, NULL), MARIN_OK);
    sleep_ms(100);
    int64_t t0 = now_ms();
    marin__rconn_close(e.c);
    e.c = NULL;
    ck_assert_int_lt(now_ms() - t0, 1000);
    ck_assert_int_eq(atomic_load(&o.n), N + 1); /* all before close returned */
    ck_assert_int_eq(atomic_load(&o.fails), N + 1);
    ck_assert_int_eq(atomic_load(&o.last_rc), MARIN_ECANCELED);
    ck_assert_msg(strstr(o.last_err, "was closed"), "%s", o.last_err);

    /* and while Redis is down, with RETRY commands waiting */
    env_open(&e);
    redis_fixture_kill(&e.fx);
    while (marin__rconn_up(e.c))
        sleep_ms(5);
    outcome w = {0};
    for (int i = 0; i < 10; i++)
        ck_assert_marin(marin__rconn_cmd(e.c, MARIN__RC_RETRY, 0, outcome_cb, &w, 1, ping,
                                         NULL), MARIN_OK);
    marin__rconn_close(e.c);
    e.c = NULL;
    ck_assert_int_eq(atomic_load(&w.n), 10);
    ck_assert_int_eq(atomic_load(&w.last_rc), MARIN_ECANCELED);
    env_stop(&e);
}
END_TEST

START_TEST(test_redis_conn_oom)
{
#if MARIN_FAULT_INJECTION
    env e;
    env_start(&e, NULL);
    marin__rconf cf = conf_for(&e.fx);
    int rc = MARIN_ENOMEM, n;
    for (n = 0; n < 100; n++) {
        marin__test_fail_alloc_after(n);
        rc = marin__rconn_open(e.rt, &cf, &e.c);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            break;
        ck_assert_msg(rc == MARIN_ENOMEM, "n=%d: %d %s", n, rc, marin_last_error());
        ck_assert_ptr_null(e.c);
    }
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert_int_gt(n, 0);
    const char *ping[] = {"PING"};
    redisReply *r = (redisReply *)1;
    marin__test_fail_alloc_after(0);
    ck_assert_marin(marin__rconn_cmd(e.c, 0, 0, NULL, NULL, 1, ping, NULL), MARIN_ENOMEM);
    ck_assert_marin(marin__rconn_call(e.c, 0, &r, 1, ping, NULL), MARIN_ENOMEM);
    marin__test_fail_alloc_after(-1);
    ck_assert_ptr_null(r);
    expect_status(e.c, "PONG", 1, ping);
    env_stop(&e);
#endif
}
END_TEST

START_TEST(test_redis_conn_keys)
{
    char buf[MARIN__RKEY_MAX];
    ck_assert_int_eq(marin__rkey(buf, sizeof buf, "ns", "kv:%s", "a"), 15);
    ck_assert_str_eq(buf, "marin:{ns}:kv:a");
    ck_assert_int_eq(marin__rkey(buf, 8, "ns", "kv:%s", "abc"), 17);
    ck_assert_str_eq(buf, "marin:{");
    ck_assert_int_eq(marin__rkey(buf, 13, "ns", "q:%d", 5), 14);
    ck_assert_str_eq(buf, "marin:{ns}:q");
    ck_assert_int_eq(marin__rkey(NULL, 0, "default", "workers"), 23);
}
END_TEST

/* ---- KV ---- */

typedef struct kvenv {
    env e;
    marin__redis_kv kv;
    const marin__kv_ops *ops;
} kvenv;

static void kv_start(kvenv *k)
{
    env_start(&k->e, NULL);
    env_open(&k->e);
    k->kv.conn = k->e.c;
    k->kv.ns = "t";
    k->ops = &marin__redis_kv_conn_ops;
}

START_TEST(test_redis_conn_kv_values)
{
    kvenv k;
    kv_start(&k);
    const marin__kv_ops *o = k.ops;
    void *s = &k.kv;
    void *v = NULL;
    size_t len = 0;
    ck_assert_marin(o->get(s, "a", &v, &len), MARIN_ENOTFOUND);
    ck_assert_lasterr_has("marin_kv_get: no key 'a' in the store");
    ck_assert_ptr_null(v);
    ck_assert_marin(o->put(s, "a", "hello", 5), MARIN_OK);
    ck_assert_marin(o->get(s, "a", &v, &len), MARIN_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(v, "hello", 5), 0);
    free(v);
    /* in the namespace's layout */
    char buf[64];
    ck_assert_int_eq(redis_fixture_cmd(&k.e.fx, buf, sizeof buf, "GET marin:{t}:kv:a"),
                     0);
    ck_assert_str_eq(buf, "hello");
    /* empty value: a non-NULL buffer of length 0 */
    ck_assert_marin(o->put(s, "empty", NULL, 0), MARIN_OK);
    ck_assert_marin(o->get(s, "empty", &v, &len), MARIN_OK);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(len, 0);
    free(v);
    /* binary, large */
    size_t big = (size_t)8 << 20;
    unsigned char *b = malloc(big);
    for (size_t i = 0; i < big; i++)
        b[i] = (unsigned char)(i * 131 + (i >> 9));
    ck_assert_marin(o->put(s, "big", b, big), MARIN_OK);
    ck_assert_marin(o->get(s, "big", &v, &len), MARIN_OK);
    ck_assert_uint_eq(len, big);
    ck_assert_int_eq(memcmp(v, b, big), 0);
    free(v);
    /* cas */
    ck_assert_marin(o->cas(s, "c", NULL, 0, "1", 1), MARIN_OK);
    ck_assert_marin(o->cas(s, "c", NULL, 0, "2", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("marin_kv_cas: key 'c' exists (1 bytes), expected it absent");
    ck_assert_marin(o->cas(s, "c", "9", 1, "2", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("the value of 'c' differs from the expected one (1 bytes now, "
                          "1 expected)");
    ck_assert_marin(o->cas(s, "c", "1", 1, "22", 2), MARIN_OK);
    ck_assert_marin(o->cas(s, "nope", "1", 1, "2", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("key 'nope' does not exist, expected a value of 1 bytes");
    ck_assert_marin(o->cas(s, "c", "22", 2, b, big), MARIN_OK);
    ck_assert_marin(o->cas(s, "c", b, big, "", 0), MARIN_OK);
    ck_assert_marin(o->cas(s, "c", "", 0, "x", 1), MARIN_OK);
    ck_assert_marin(o->get(s, "c", &v, &len), MARIN_OK);
    ck_assert_uint_eq(len, 1);
    free(v);
    free(b);
    /* delete */
    ck_assert_marin(o->del(s, "c"), MARIN_OK);
    ck_assert_marin(o->del(s, "c"), MARIN_ENOTFOUND);
    ck_assert_lasterr_has("marin_kv_delete: no key 'c' in the store");
    /* a key holding something else */
    ck_assert_int_eq(
        redis_fixture_cmd(&k.e.fx, buf, sizeof buf, "LPUSH marin:{t}:kv:l x"), 0);
    ck_assert_marin(o->get(s, "l", &v, &len), MARIN_EPROTO);
    ck_assert_lasterr_has("WRONGTYPE");
    ck_assert_marin(o->cas(s, "l", "x", 1, "y", 1), MARIN_EPROTO);
    env_stop(&k.e);
}
END_TEST

START_TEST(test_redis_conn_kv_leases)
{
    kvenv k;
    kv_start(&k);
    const marin__kv_ops *o = k.ops;
    void *s = &k.kv;
    uint64_t t1 = 0, t2 = 0, t;
    /* never acquired */
    ck_assert_marin(o->lease_renew(s, "L", "A", 1000), MARIN_EBUSY);
    ck_assert_lasterr_has("marin_lease_renew: nobody holds lease 'L' (never acquired)");
    ck_assert_marin(o->lease_release(s, "L", "A"), MARIN_EBUSY);
    ck_assert_lasterr_has("marin_lease_release: nobody holds lease 'L'");
    ck_assert_marin(o->put_fenced(s, "x", "v", 1, "L", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("refused to write 'x': lease 'L' was never acquired (current "
                          "token 0, given 1)");
    /* take it; another owner is refused; the holder extends, same token */
    ck_assert_marin(o->lease_acquire(s, "L", "A", 300, &t1), MARIN_OK);
    ck_assert_uint_ge(t1, 1);
    ck_assert_marin(o->lease_acquire(s, "L", "B", 300, &t), MARIN_EBUSY);
    ck_assert_lasterr_has("marin_lease_acquire: lease 'L' is held by 'A' (expires in ");
    ck_assert_lasterr_has("'B' cannot take it");
    ck_assert_marin(o->lease_acquire(s, "L", "A", 300, &t), MARIN_OK);
    ck_assert_uint_eq(t, t1);
    ck_assert_marin(o->lease_renew(s, "L", "A", 300), MARIN_OK);
    ck_assert_marin(o->lease_renew(s, "L", "B", 300), MARIN_EBUSY);
    ck_assert_lasterr_has("lease 'L' is held by 'A' (expires in ");
    ck_assert_lasterr_has("not by 'B'");
    ck_assert_marin(o->lease_release(s, "L", "B"), MARIN_EBUSY);
    ck_assert_marin(o->put_fenced(s, "x", "v1", 2, "L", t1), MARIN_OK);
    ck_assert_marin(o->put_fenced(s, "x", "v1", 2, "L", t1 + 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("is held by 'A' under another token");
    /* it expires; renew is refused; B takes it with a greater token */
    sleep_ms(450);
    ck_assert_marin(o->lease_renew(s, "L", "A", 300), MARIN_EBUSY);
    ck_assert_lasterr_has("lease 'L' expired or was released and nobody holds it now; "
                          "'A' must acquire it again");
    ck_assert_marin(o->put_fenced(s, "x", "v2", 2, "L", t1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("expired or was released");
    ck_assert_marin(o->lease_acquire(s, "L", "B", 5000, &t2), MARIN_OK);
    ck_assert_uint_gt(t2, t1);
    char want[128];
    snprintf(want, sizeof want, "(current token %llu, given %llu)",
             (unsigned long long)t2, (unsigned long long)t1);
    ck_assert_marin(o->put_fenced(s, "x", "v2", 2, "L", t1), MARIN_ECONFLICT);
    ck_assert_lasterr_has(want);
    ck_assert_lasterr_has("marin_kv_put_fenced: refused to write 'x': lease 'L' is held "
                          "by 'B' under another token");
    ck_assert_marin(o->put_fenced(s, "x", "v3", 2, "L", t2), MARIN_OK);
    void *v;
    size_t len;
    ck_assert_marin(o->get(s, "x", &v, &len), MARIN_OK);
    ck_assert_int_eq(memcmp(v, "v3", 2), 0);
    free(v);
    /* release keeps the counter */
    ck_assert_marin(o->lease_release(s, "L", "A"), MARIN_EBUSY);
    ck_assert_marin(o->lease_release(s, "L", "B"), MARIN_OK);
    ck_assert_marin(o->lease_release(s, "L", "B"), MARIN_EBUSY);
    ck_assert_marin(o->put_fenced(s, "x", "v4", 2, "L", t2), MARIN_ECONFLICT);
    ck_assert_marin(o->lease_acquire(s, "L", "A", 5000, &t), MARIN_OK);
    ck_assert_uint_gt(t, t2);
    /* lease keys and plain keys are separate spaces */
    ck_assert_marin(o->get(s, "L", &v, &len), MARIN_ENOTFOUND);
    /* tokens survive a Redis restart (AOF) */
    uint64_t before = t;
    redis_fixture_kill(&k.e.fx);
    ck_assert_int_eq(redis_fixture_restart(&k.e.fx), 0);
    int64_t t0 = now_ms();
    int rc;
    while ((rc = o->lease_acquire(s, "L2", "A", 100, &t)) == MARIN_EUNAVAILABLE &&
           now_ms() - t0 < 10000)
        sleep_ms(20);
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert_marin(o->lease_acquire(s, "L", "A", 100, &t), MARIN_OK);
    ck_assert_uint_eq(t, before); /* still held: the expiry survived too */
    sleep_ms(250);
    ck_assert_marin(o->lease_acquire(s, "L", "C", 100, &t), MARIN_OK);
    ck_assert_uint_gt(t, before);
    /* a corrupt lease */
    char buf[64];
    ck_assert_int_eq(redis_fixture_cmd(&k.e.fx, buf, sizeof buf,
                                       "SET marin:{t}:lease:bad garbage"), 0);
    ck_assert_marin(o->lease_acquire(s, "bad", "A", 100, &t), MARIN_EPROTO);
    ck_assert_lasterr_has("'garbage'");
    ck_assert_marin(o->lease_renew(s, "bad", "A", 100), MARIN_EPROTO);
    ck_assert_marin(o->put_fenced(s, "x", "v", 1, "bad", 1), MARIN_EPROTO);
    /* Redis down: fail at once */
    redis_fixture_kill(&k.e.fx);
    while (marin__rconn_up(k.e.c))
        sleep_ms(5);
    t0 = now_ms();
    ck_assert_marin(o->put(s, "a", "b", 1), MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has("marin_kv_put: 'a': Redis at ");
    ck_assert_marin(o->lease_acquire(s, "L", "A", 100, &t), MARIN_EUNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 500);
    env_stop(&k.e);
}
END_TEST

/* Many threads race for one lease: at most one holds it at a time, and the
 * fenced writes of the winners land in token order. */
typedef struct racer {
    kvenv *k;
    int id;
    atomic_int *wins;
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    char owner[16];
    snprintf(owner, sizeof owner, "o%d", r->id);
    for (int i = 0; i < 50; i++) {
        uint64_t t;
        if (r->k->ops->lease_acquire(&r->k->kv, "R", owner, 5000, &t) == MARIN_OK) {
            char v[32];
            int n = snprintf(v, sizeof v, "%llu", (unsigned long long)t);
            if (r->k->ops->put_fenced(&r->k->kv, "rv", v, (size_t)n, "R", t) == MARIN_OK)
                atomic_fetch_add(r->wins, 1);
            r->k->ops->lease_release(&r->k->kv, "R", owner);
        }
    }
    return NULL;
}

START_TEST(test_redis_conn_kv_race)
{
    kvenv k;
    kv_start(&k);
    atomic_int wins = 0;
    racer r[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        r[i] = (racer){&k, i, &wins};
        pthread_create(&th[i], NULL, race_main, &r[i]);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_gt(atomic_load(&wins), 0);
    char buf[64];
    ck_assert_int_eq(
        redis_fixture_cmd(&k.e.fx, buf, sizeof buf, "GET marin:{t}:fence:R"), 0);
    ck_assert_int_ge(atoi(buf), atomic_load(&wins));
    env_stop(&k.e);
}
END_TEST

static Suite *redis_conn_suite(void)
{
    Suite *s = suite_create("redis_conn");
    TCase *tc = tcase_create("conn");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_redis_conn_keys);
    tcase_add_test(tc, test_redis_conn_open_close);
    tcase_add_test(tc, test_redis_conn_select_db);
    tcase_add_test(tc, test_redis_conn_pipeline_threads);
    tcase_add_test(tc, test_redis_conn_throughput);
    tcase_add_test(tc, test_redis_conn_call_on_reactor);
    tcase_add_test(tc, test_redis_conn_auth);
    tcase_add_test(tc, test_redis_conn_unreachable);
    tcase_add_test(tc, test_redis_conn_restart);
    tcase_add_test(tc, test_redis_conn_command_timeout);
    tcase_add_test(tc, test_redis_conn_close_inflight);
    tcase_add_test(tc, test_redis_conn_oom);
    suite_add_tcase(s, tc);
    TCase *kv = tcase_create("kv");
    tcase_set_timeout(kv, 120);
    tcase_add_test(kv, test_redis_conn_kv_values);
    tcase_add_test(kv, test_redis_conn_kv_leases);
    tcase_add_test(kv, test_redis_conn_kv_race);
    suite_add_tcase(s, kv);
    return s;
}

/* In redis_fixture.c: the redis-server binary the fixture would run. */
int redis_fixture__find_server(char *buf, size_t cap);

int main(void)
{
    unsetenv("MARIN_BACKEND");
    char bin[512];
    if (redis_fixture__find_server(bin, sizeof bin) != 0) {
        fprintf(stderr, "SKIP: no redis-server (set MARIN_REDIS_SERVER)\n");
        return 77;
    }
    return marin_test_run(redis_conn_suite());
}
