/* One Redis connection on the reactor loop (redis_conn.h).
 *
 * hiredis's async context is driven by our own glue: its event hooks
 * start and stop one uv_poll_t on the socket, and a poll error (which
 * libuv reports as UV_EBADF after stopping the handle) drops the
 * connection instead of being ignored.
 *
 * Threads: commands are queued on a mutex-protected list by any thread;
 * one reactor job drains the whole list, so a burst of submits costs one
 * wakeup. Everything else (the hiredis context, the poll and timer handles,
 * the in-flight and waiting queues) is touched on the reactor thread only.
 *
 * States: DOWN (no socket; the timer waits out the backoff), CONNECTING
 * (TCP connect in progress), HANDSHAKE (AUTH, SELECT, CLIENT SETNAME,
 * PING in flight), UP, CLOSED. The one timer is the connect deadline while
 * connecting or in the handshake, the reconnect delay while down, and the
 * deadline of the oldest command in flight while up: a command's clock
 * starts when it becomes the oldest (when it is sent, or when the reply
 * before it arrives), since nothing behind it can be answered earlier.
 *
 * Losing the socket: hiredis runs the pending callbacks with a NULL reply
 * (ignored here) and calls the cleanup hook, which marks the loss; the
 * code that called into hiredis then settles it (handle_lost) once hiredis
 * has returned: RETRY commands go back to the front of the waiting queue,
 * the others fail with MARIN_EUNAVAILABLE, and a reconnect is scheduled. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "alloc.h"
#include "fail.h"
#include "redis_conn.h"

#define WHY_MAX 512   /* the cause of a loss */
#define MSG_MAX 1024  /* a message built around it */

enum { S_DOWN, S_CONNECTING, S_HANDSHAKE, S_UP, S_CLOSED };
enum { HS_AUTH = 1, HS_SELECT, HS_NAME, HS_PING };

typedef struct qcmd {
    struct qcmd *next;
    marin__rconn_cb cb;
    void *ud;
    unsigned flags;
    uint64_t timeout_ms; /* 0: none */
    size_t len;
    char buf[];          /* the command in RESP */
} qcmd;

typedef struct cmdq {
    qcmd *head, *tail;
} cmdq;

/* The poll handle of one socket (one per hiredis context: a closing handle
 * outlives its context, and the next connection gets a fresh one). */
typedef struct rpoll {
    uv_poll_t h;
    struct marin__rconn *conn;
    redisAsyncContext *ac; /* NULL once hiredis let go */
    int events;            /* what the handle watches now */
} rpoll;

struct marin__rconn {
    marin_runtime_t *rt;
    uv_loop_t *loop;
    char *host, *user, *password, *setname;
    char *addr;  /* "host:port" */
    char *label; /* for logs */
    int port, db;
    int64_t connect_timeout_ms, command_timeout_ms, backoff_min_ms, backoff_max_ms;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmdq pending;   /* mu: issued, not yet seen by the reactor */
    int job_posted; /* mu: dispatch_job is queued */
    int closing;    /* mu: close began */
    int open_done, open_rc, close_done; /* mu */
    char open_msg[MSG_MAX];             /* mu */
    marin__job dispatch_job, start_job, close_job;

    /* reactor thread only */
    int state;
    int opening;          /* the first connect, which open waits for */
    redisAsyncContext *ac;
    uv_timer_t timer;
    uint64_t timer_due;   /* loop time the timer fires at */
    int handles;          /* uv handles not yet closed */
    cmdq inflight;        /* sent, in order */
    cmdq waiting;         /* RETRY commands waiting for the connection */
    uint64_t head_since;  /* when inflight.head became the oldest */
    int lost;             /* hiredis let go of the context: settle it */
    int fail_rc;          /* the handshake's verdict (0: none) */
    char why[WHY_MAX];    /* the cause of the last loss */
    int64_t backoff;
    int outage;           /* a lost connection not yet back */
    uint64_t outage_since;
    int auth_logged;

    _Atomic uint64_t epoch;
    atomic_int up;
};

/* ---- queues ---- */

static void q_push(cmdq *q, qcmd *c)
{
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
}

static qcmd *q_pop(cmdq *q)
{
    qcmd *c = q->head;
    if (c && !(q->head = c->next))
        q->tail = NULL;
    return c;
}

/* Put @p front before @p q's commands. */
static void q_prepend(cmdq *q, cmdq *front)
{
    if (!front->head)
        return;
    front->tail->next = q->head;
    if (!q->tail)
        q->tail = front->tail;
    q->head = front->head;
    front->head = front->tail = NULL;
}

/* Run each command's callback with a failure and free it. */
static void q_fail(marin__rconn *c, cmdq *q, int rc, const char *msg)
{
    qcmd *cmd;
    while ((cmd = q_pop(q))) {
        if (cmd->cb)
            cmd->cb(c, NULL, rc, msg, cmd->ud);
        marin__free(cmd);
    }
}

/* ---- timer ---- */

static void timer_cb(uv_timer_t *t);

static void arm(marin__rconn *c, uint64_t ms)
{
    c->timer_due = uv_now(c->loop) + ms;
    uv_timer_start(&c->timer, timer_cb, ms, 0);
}

/* ---- handles closing ---- */

static void handle_closed(marin__rconn *c)
{
    if (--c->handles == 0 && c->state == S_CLOSED) {
        pthread_mutex_lock(&c->mu);
        c->close_done = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu); /* c may be freed from here on */
    }
}

static void poll_closed(uv_handle_t *h)
{
    rpoll *p = h->data;
    marin__rconn *c = p->conn;
    marin__free(p);
    handle_closed(c);
}

static void timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

/* ---- hiredis event hooks ---- */

static void on_poll(uv_poll_t *h, int status, int events);

static void poll_set(rpoll *p, int events)
{
    if (events == p->events)
        return;
    p->events = events;
    if (events)
        uv_poll_start(&p->h, events, on_poll);
    else
        uv_poll_stop(&p->h);
}

static void ev_add_read(void *d)
{
    rpoll *p = d;
    poll_set(p, p->events | UV_READABLE);
}

static void ev_del_read(void *d)
{
    rpoll *p = d;
    poll_set(p, p->events & ~UV_READABLE);
}

static void ev_add_write(void *d)
{
    rpoll *p = d;
    poll_set(p, p->events | UV_WRITABLE);
}

static void ev_del_write(void *d)
{
    rpoll *p = d;
    poll_set(p, p->events & ~UV_WRITABLE);
}

/* hiredis is freeing the context (its pending callbacks have run with
 * NULL replies); the socket closes right after. */
static void ev_cleanup(void *d)
{
    rpoll *p = d;
    marin__rconn *c = p->conn;
    if (!c->why[0])
        snprintf(c->why, sizeof c->why, "%s",
                 p->ac && p->ac->c.err ? p->ac->c.errstr : "the connection closed");
    p->ac = NULL;
    c->ac = NULL;
    c->lost = 1;
    uv_close((uv_handle_t *)&p->h, poll_closed);
}

/* ---- connection life ---- */

static void handle_lost(marin__rconn *c);

static void after_hiredis(marin__rconn *c)
{
    if (c->lost)
        handle_lost(c);
}

/* Drop the connection now (not from inside a hiredis callback). */
static void drop(marin__rconn *c)
{
    if (c->ac)
        redisAsyncFree(c->ac);
    after_hiredis(c);
}

static void finish_open(marin__rconn *c, int rc, const char *msg)
{
    c->opening = 0;
    pthread_mutex_lock(&c->mu);
    c->open_rc = rc;
    snprintf(c->open_msg, sizeof c->open_msg, "%s", msg ? msg : "");
    c->open_done = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *priv);

/* Send one command on the connection that is up. */
static void send_cmd(marin__rconn *c, qcmd *cmd)
{
    if (!c->ac ||
        redisAsyncFormattedCommand(c->ac, reply_cb, c, cmd->buf, cmd->len) != REDIS_OK) {
        /* the context is going away: the loss is settled after */
        if (cmd->flags & MARIN__RC_RETRY) {
            q_push(&c->waiting, cmd);
        } else {
            char msg[MSG_MAX];
            snprintf(msg, sizeof msg, "lost the connection to Redis at %s: %s",
                     c->addr, c->why[0] ? c->why : "disconnecting");
            if (cmd->cb)
                cmd->cb(c, NULL, MARIN_EUNAVAILABLE, msg, cmd->ud);
            marin__free(cmd);
        }
        return;
    }
    int first = !c->inflight.head;
    q_push(&c->inflight, cmd);
    if (first) {
        c->head_since = uv_now(c->loop);
        if (cmd->timeout_ms)
            arm(c, cmd->timeout_ms);
        else
            uv_timer_stop(&c->timer);
    }
}

static void become_up(marin__rconn *c)
{
    c->state = S_UP;
    c->why[0] = '\0';
    c->backoff = c->backoff_min_ms;
    c->auth_logged = 0;
    uv_timer_stop(&c->timer);
    atomic_fetch_add(&c->epoch, 1);
    atomic_store(&c->up, 1);
    if (c->outage) {
        c->outage = 0;
        marin__log(c->rt, MARIN_LOG_INFO, "redis [%s]: reconnected to Redis at %s after "
                   "%" PRIu64 " ms", c->label, c->addr,
                   uv_now(c->loop) - c->outage_since);
    }
    if (c->opening)
        finish_open(c, MARIN_OK, NULL);
    qcmd *cmd;
    while (c->state == S_UP && (cmd = q_pop(&c->waiting)))
        send_cmd(c, cmd);
}

/* The handshake's replies (AUTH, SELECT, CLIENT SETNAME, PING). */
static void hs_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    marin__rconn *c = ac->data;
    redisReply *r = reply;
    if (!r || c->fail_rc || c->state != S_HANDSHAKE)
        return;
    int step = (int)(intptr_t)priv;
    int err = r->type == REDIS_REPLY_ERROR;
    const char *words = err && r->str ? r->str : "";
    switch (step) {
    case HS_AUTH:
        if (err) {
            c->fail_rc = MARIN_EAUTH;
            snprintf(c->why, sizeof c->why, "authentication was refused by %s for user "
                     "'%s': %s", c->addr, c->user ? c->user : "default", words);
        }
        break;
    case HS_SELECT:
        if (err) {
            c->fail_rc = MARIN_EINVAL;
            snprintf(c->why, sizeof c->why, "Redis at %s refused SELECT %d: %s",
                     c->addr, c->db, words);
        }
        break;
    case HS_NAME:
        break; /* a name is a courtesy */
    case HS_PING:
        if (!err) {
            become_up(c);
        } else if (!strncmp(words, "NOAUTH", 6)) {
            c->fail_rc = MARIN_EAUTH;
            snprintf(c->why, sizeof c->why, "Redis at %s requires authentication and "
                     "no password was given: %s", c->addr, words);
        } else {
            c->fail_rc = MARIN_EUNAVAILABLE;
            snprintf(c->why, sizeof c->why, "Redis at %s is not ready: %s", c->addr,
                     words);
        }
        break;
    default:
        break;
    }
    if (c->fail_rc)
        redisAsyncFree(ac); /* deferred by hiredis until this returns */
}

static void send_handshake(marin__rconn *c)
{
    redisAsyncContext *ac = c->ac;
    if (c->password) {
        const char *argv[3] = {"AUTH", c->user, c->password};
        if (c->user)
            redisAsyncCommandArgv(ac, hs_cb, (void *)(intptr_t)HS_AUTH, 3, argv, NULL);
        else {
            argv[1] = c->password;
            redisAsyncCommandArgv(ac, hs_cb, (void *)(intptr_t)HS_AUTH, 2, argv, NULL);
        }
    }
    if (c->db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", c->db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(ac, hs_cb, (void *)(intptr_t)HS_SELECT, 2, argv, NULL);
    }
    if (c->setname) {
        const char *argv[3] = {"CLIENT", "SETNAME", c->setname};
        redisAsyncCommandArgv(ac, hs_cb, (void *)(intptr_t)HS_NAME, 3, argv, NULL);
    }
    const char *ping[1] = {"PING"};
    redisAsyncCommandArgv(ac, hs_cb, (void *)(intptr_t)HS_PING, 1, ping, NULL);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    marin__rconn *c = ac->data;
    if (status != REDIS_OK)
        return; /* hiredis frees the context: ev_cleanup has the reason */
    c->state = S_HANDSHAKE;
    send_handshake(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    rpoll *p = h->data;
    marin__rconn *c = p->conn;
    redisAsyncContext *ac = p->ac;
    if (!ac)
        return;
    if (status < 0) {
        /* libuv stopped the handle (POLLERR): find the socket's error */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (!(ac->c.flags & REDIS_CONNECTED)) {
            redisAsyncHandleWrite(ac); /* the connect's own error */
        }
        if (p->ac) {
            if (getsockopt(ac->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                soerr = errno;
            if (!c->why[0])
                snprintf(c->why, sizeof c->why, "%s",
                         soerr ? strerror(soerr) : uv_strerror(status));
            redisAsyncFree(ac);
        }
    } else {
        if (events & UV_READABLE)
            redisAsyncHandleRead(ac);
        if (p->ac && (events & UV_WRITABLE))
            redisAsyncHandleWrite(ac);
    }
    after_hiredis(c);
}

/* Start a connection attempt (state DOWN). */
static void begin_connect(marin__rconn *c)
{
    c->why[0] = '\0';
    c->fail_rc = 0;
    c->state = S_CONNECTING;
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (!ac) {
        c->fail_rc = MARIN_ENOMEM;
        snprintf(c->why, sizeof c->why, "out of memory connecting to Redis at %s",
                 c->addr);
        handle_lost(c);
        return;
    }
    if (ac->err) {
        snprintf(c->why, sizeof c->why, "%s", ac->errstr);
        redisAsyncFree(ac);
        handle_lost(c);
        return;
    }
    rpoll *p = marin__calloc(1, sizeof *p);
    int uvrc = p ? uv_poll_init(c->loop, &p->h, ac->c.fd) : UV_ENOMEM;
    if (uvrc != 0) {
        if (!p)
            c->fail_rc = MARIN_ENOMEM;
        snprintf(c->why, sizeof c->why, "cannot watch the socket of Redis at %s: %s",
                 c->addr, uv_strerror(uvrc));
        marin__free(p);
        redisAsyncFree(ac);
        handle_lost(c);
        return;
    }
    p->h.data = p;
    p->conn = c;
    p->ac = ac;
    c->handles++;
    ac->data = c;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    c->ac = ac;
    arm(c, (uint64_t)c->connect_timeout_ms);
    redisAsyncSetConnectCallback(ac, on_connect); /* watches for writable */
}

/* The context is gone (or never came): settle what it carried. */
static void handle_lost(marin__rconn *c)
{
    int was = c->state;
    c->lost = 0;
    atomic_store(&c->up, 0);
    if (was == S_CLOSED)
        return; /* close fails everything itself */
    c->state = S_DOWN;
    uv_timer_stop(&c->timer);
    int rc = c->fail_rc ? c->fail_rc : MARIN_EUNAVAILABLE;
    if (c->opening) {
        char msg[MSG_MAX];
        if (c->fail_rc)
            snprintf(msg, sizeof msg, "%s", c->why);
        else
            snprintf(msg, sizeof msg, "cannot reach Redis at %s: %s (within %lld ms)",
                     c->addr, c->why, (long long)c->connect_timeout_ms);
        finish_open(c, rc, msg);
        return;
    }
    cmdq keep = {0}, fail = {0};
    qcmd *cmd;
    while ((cmd = q_pop(&c->inflight)))
        q_push(cmd->flags & MARIN__RC_RETRY ? &keep : &fail, cmd);
    q_prepend(&c->waiting, &keep);
    uint64_t delay;
    if (was == S_UP) {
        if (!c->outage) {
            c->outage = 1;
            c->outage_since = uv_now(c->loop);
            marin__log(c->rt, MARIN_LOG_WARN, "redis [%s]: lost the connection to Redis "
                       "at %s: %s; reconnecting in the background", c->label, c->addr,
                       c->why);
        }
        c->backoff = c->backoff_min_ms;
        delay = 0;
    } else {
        if (c->fail_rc == MARIN_EAUTH && !c->auth_logged) {
            c->auth_logged = 1;
            marin__log(c->rt, MARIN_LOG_WARN, "redis [%s]: %s; retrying", c->label,
                       c->why);
        }
        delay = (uint64_t)c->backoff;
        c->backoff = c->backoff * 2 > c->backoff_max_ms ? c->backoff_max_ms
                                                        : c->backoff * 2;
    }
    arm(c, delay);
    if (fail.head) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof msg, "lost the connection to Redis at %s: %s", c->addr,
                 c->why);
        q_fail(c, &fail, MARIN_EUNAVAILABLE, msg);
    }
}

static void reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    marin__rconn *c = priv;
    if (!r)
        return; /* the context is going away: handle_lost settles */
    qcmd *cmd = q_pop(&c->inflight);
    if (!cmd)
        return;
    qcmd *next = c->inflight.head;
    if (next) {
        uint64_t now = uv_now(c->loop);
        c->head_since = now;
        int armed = uv_is_active((uv_handle_t *)&c->timer);
        if (next->timeout_ms && (!armed || now + next->timeout_ms < c->timer_due))
            arm(c, next->timeout_ms);
    }
    if (cmd->cb)
        cmd->cb(c, r, MARIN_OK, NULL, cmd->ud);
    marin__free(cmd);
}

static void timer_cb(uv_timer_t *t)
{
    marin__rconn *c = t->data;
    switch (c->state) {
    case S_DOWN:
        begin_connect(c);
        break;
    case S_CONNECTING:
    case S_HANDSHAKE:
        snprintf(c->why, sizeof c->why, "%s",
                 c->state == S_CONNECTING
                     ? "timed out connecting"
                     : "no answer to the handshake (AUTH, SELECT, PING)");
        drop(c);
        break;
    case S_UP: {
        qcmd *head = c->inflight.head;
        if (!head || !head->timeout_ms)
            break;
        uint64_t now = uv_now(c->loop), due = c->head_since + head->timeout_ms;
        if (now < due) {
            arm(c, due - now);
            break;
        }
        snprintf(c->why, sizeof c->why, "no reply within %" PRIu64 " ms",
                 head->timeout_ms);
        drop(c);
        break;
    }
    default:
        break;
    }
}

/* ---- jobs ---- */

static void dispatch_job(marin__job *job)
{
    marin__rconn *c =
        (marin__rconn *)((char *)job - offsetof(marin__rconn, dispatch_job));
    pthread_mutex_lock(&c->mu);
    cmdq list = c->pending;
    c->pending.head = c->pending.tail = NULL;
    c->job_posted = 0;
    pthread_mutex_unlock(&c->mu);
    cmdq fail = {0};
    qcmd *cmd;
    while ((cmd = q_pop(&list))) {
        if (c->state == S_UP)
            send_cmd(c, cmd);
        else if (c->state != S_CLOSED && (cmd->flags & MARIN__RC_RETRY))
            q_push(&c->waiting, cmd);
        else
            q_push(&fail, cmd);
    }
    if (c->state == S_UP && c->ac) {
        redisAsyncHandleWrite(c->ac); /* write now, not on the next turn */
        after_hiredis(c);
    }
    if (fail.head) {
        char msg[MSG_MAX];
        snprintf(msg, sizeof msg, "Redis at %s is unreachable: reconnecting%s%s%s",
                 c->addr, c->why[0] ? " (" : "", c->why, c->why[0] ? ")" : "");
        q_fail(c, &fail, MARIN_EUNAVAILABLE, msg);
    }
}

static void start_job(marin__job *job)
{
    marin__rconn *c = (marin__rconn *)((char *)job - offsetof(marin__rconn, start_job));
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    c->opening = 1;
    begin_connect(c);
}

static void close_job(marin__job *job)
{
    marin__rconn *c = (marin__rconn *)((char *)job - offsetof(marin__rconn, close_job));
    c->state = S_CLOSED;
    if (c->ac)
        redisAsyncFree(c->ac); /* ev_cleanup: handle_lost sees CLOSED */
    c->lost = 0;
    atomic_store(&c->up, 0);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    pthread_mutex_lock(&c->mu);
    cmdq pend = c->pending;
    c->pending.head = c->pending.tail = NULL;
    pthread_mutex_unlock(&c->mu);
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "the connection to Redis at %s was closed before the "
             "reply came", c->addr);
    q_fail(c, &c->inflight, MARIN_ECANCELED, msg);
    q_fail(c, &c->waiting, MARIN_ECANCELED, msg);
    q_fail(c, &pend, MARIN_ECANCELED, msg);
}

/* ---- API ---- */

static void conn_free(marin__rconn *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    marin__free(c->host);
    marin__free(c->user);
    marin__free(c->password);
    marin__free(c->setname);
    marin__free(c->addr);
    marin__free(c->label);
    marin__free(c);
}

/* Post the close job and wait until every handle is closed. */
static void conn_close(marin__rconn *c)
{
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    pthread_mutex_unlock(&c->mu);
    c->close_job.run = close_job;
    if (marin__reactor_post(c->rt, &c->close_job) != MARIN_OK) {
        /* The reactor stopped first: its loop closed our handles under us,
         * and freeing what hiredis holds is no longer safe. Leak it. */
        marin__log(c->rt, MARIN_LOG_ERROR, "redis [%s]: connection to %s closed after "
                   "the runtime's reactor stopped; its memory is leaked", c->label,
                   c->addr);
        return;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->close_done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    conn_free(c);
}

static char *name_for_redis(const char *label)
{
    size_t n = strlen(label);
    char *s = marin__malloc(n + 7);
    if (!s)
        return NULL;
    memcpy(s, "marin-", 6);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)label[i];
        s[6 + i] = ch > ' ' && ch < 127 ? (char)ch : '-';
    }
    s[6 + n] = '\0';
    return s;
}

int marin__rconn_open(marin_runtime_t *rt, const marin__rconf *conf, marin__rconn **out)
{
    static const char fn[] = "marin__rconn_open";
    if (out)
        *out = NULL;
    if (!rt || !conf || !out || !conf->host || !conf->host[0])
        return marin__err(MARIN_EINVAL, "%s: no runtime, configuration or host", fn);
    if (conf->port <= 0 || conf->port > 65535)
        return marin__err(MARIN_EINVAL, "%s: Redis port %d is out of range (1-65535)",
                          fn, conf->port);
    if (conf->db < 0)
        return marin__err(MARIN_EINVAL, "%s: Redis database %d is negative", fn,
                          conf->db);
    if (conf->user && !conf->password)
        return marin__err(MARIN_EINVAL, "%s: Redis user '%s' has no password", fn,
                          conf->user);
    uv_loop_t *loop = marin__reactor_loop(rt);
    if (!loop)
        return marin__err(MARIN_ESTATE, "%s: the runtime's reactor is not running", fn);
    if (marin__reactor_on_thread(rt))
        return marin__err(MARIN_ESTATE, "%s: called on the reactor thread, where "
                          "waiting for the connection would deadlock", fn);
    marin__rconn *c = marin__calloc(1, sizeof *c);
    if (!c)
        return marin__err(MARIN_ENOMEM, "%s: out of memory", fn);
    c->rt = rt;
    c->loop = loop;
    c->port = conf->port;
    c->db = conf->db;
    c->connect_timeout_ms =
        conf->connect_timeout_ms > 0 ? conf->connect_timeout_ms : 5000;
    c->command_timeout_ms = conf->command_timeout_ms > 0 ? conf->command_timeout_ms : 0;
    c->backoff_min_ms = conf->backoff_min_ms > 0 ? conf->backoff_min_ms : 100;
    c->backoff_max_ms = conf->backoff_max_ms > c->backoff_min_ms ? conf->backoff_max_ms
                                                                 : c->backoff_min_ms;
    c->backoff = c->backoff_min_ms;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->dispatch_job.run = dispatch_job;
    c->start_job.run = start_job;
    const char *label = conf->label && conf->label[0] ? conf->label : "conn";
    size_t alen = strlen(conf->host) + 16;
    c->host = marin__strdup(conf->host);
    c->label = marin__strdup(label);
    c->addr = marin__malloc(alen);
    int oom = !c->host || !c->label || !c->addr;
    if (!oom && conf->user)
        oom = !(c->user = marin__strdup(conf->user));
    if (!oom && conf->password)
        oom = !(c->password = marin__strdup(conf->password));
    if (!oom && conf->label && conf->label[0])
        oom = !(c->setname = name_for_redis(conf->label));
    if (oom) {
        conn_free(c);
        return marin__err(MARIN_ENOMEM, "%s: out of memory", fn);
    }
    snprintf(c->addr, alen, strchr(c->host, ':') ? "[%s]:%d" : "%s:%d", c->host, c->port);
    if (marin__reactor_post(rt, &c->start_job) != MARIN_OK) {
        conn_free(c);
        return marin__err(MARIN_ESTATE, "%s: the runtime is closing", fn);
    }
    pthread_mutex_lock(&c->mu);
    while (!c->open_done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (c->open_rc != MARIN_OK) {
        char msg[MSG_MAX];
        int rc = c->open_rc;
        snprintf(msg, sizeof msg, "%s", c->open_msg);
        conn_close(c);
        return marin__err(rc, "%s", msg);
    }
    *out = c;
    return MARIN_OK;
}

void marin__rconn_close(marin__rconn *c)
{
    if (!c)
        return;
    if (marin__reactor_on_thread(c->rt)) {
        marin__log(c->rt, MARIN_LOG_ERROR, "redis [%s]: marin__rconn_close called on the "
                   "reactor thread (it would deadlock); the connection stays open",
                   c->label);
        return;
    }
    conn_close(c);
}

/* Decimal digits of @p v at @p p; returns the end. */
static char *put_dec(char *p, size_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

int marin__rconn_cmd(marin__rconn *c, unsigned flags, int64_t block_ms,
                     marin__rconn_cb cb, void *ud, int argc, const char *const *argv,
                     const size_t *lens)
{
    if (!c || argc <= 0 || !argv)
        return marin__err(MARIN_EINVAL, "marin__rconn_cmd: no connection or command");
    size_t size = 1 + 20 + 2;
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        size += 1 + 20 + 2 + n + 2;
    }
    qcmd *cmd = marin__malloc(sizeof *cmd + size);
    if (!cmd)
        return marin__err(MARIN_ENOMEM, "marin__rconn_cmd: out of memory for a command "
                          "of %zu bytes", size);
    char *p = cmd->buf;
    *p++ = '*';
    p = put_dec(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        *p++ = '$';
        p = put_dec(p, n);
        *p++ = '\r';
        *p++ = '\n';
        if (n)
            memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    cmd->len = (size_t)(p - cmd->buf);
    cmd->cb = cb;
    cmd->ud = ud;
    cmd->flags = flags;
    cmd->timeout_ms = 0;
    if (c->command_timeout_ms > 0) {
        cmd->timeout_ms = (uint64_t)c->command_timeout_ms;
        if ((flags & MARIN__RC_BLOCKING) && block_ms > 0)
            cmd->timeout_ms += (uint64_t)block_ms;
    }
    cmd->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        marin__free(cmd);
        return marin__err(MARIN_ESTATE, "the connection to Redis at %s is closing",
                          c->addr);
    }
    q_push(&c->pending, cmd);
    if (!c->job_posted) {
        /* posted under mu, so it is queued ahead of any close job */
        if (marin__reactor_post(c->rt, &c->dispatch_job) != MARIN_OK) {
            c->pending.head = c->pending.tail = NULL; /* it held only cmd */
            pthread_mutex_unlock(&c->mu);
            marin__free(cmd);
            return marin__err(MARIN_ESTATE, "the runtime is closing: cannot send a "
                              "command to Redis at %s", c->addr);
        }
        c->job_posted = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return MARIN_OK;
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc;
    redisReply *reply;
    char err[MSG_MAX + 128];
} waiter;

/* Take @p r's contents into a new shell that freeReplyObject can free,
 * leaving @p r empty for hiredis to free (no deep copy). */
static redisReply *steal_reply(redisReply *r)
{
    redisReply *copy = malloc(sizeof *copy); /* freeReplyObject uses free() */
    if (!copy)
        return NULL;
    *copy = *r;
    r->type = REDIS_REPLY_NIL;
    r->str = NULL;
    r->len = 0;
    r->element = NULL;
    r->elements = 0;
    return copy;
}

static void call_cb(marin__rconn *c, redisReply *reply, int rc, const char *err, void *ud)
{
    (void)c;
    waiter *w = ud;
    redisReply *mine = NULL;
    if (rc == MARIN_OK && !(mine = steal_reply(reply))) {
        rc = MARIN_ENOMEM;
        err = "out of memory keeping a Redis reply";
    }
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->reply = mine;
    snprintf(w->err, sizeof w->err, "%s", err ? err : "");
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int marin__rconn_call(marin__rconn *c, unsigned flags, struct redisReply **out, int argc,
                      const char *const *argv, const size_t *lens)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return marin__err(MARIN_EINVAL, "marin__rconn_call: no connection or output");
    if (marin__reactor_on_thread(c->rt))
        return marin__err(MARIN_ESTATE, "marin__rconn_call: called on the reactor "
                          "thread, where waiting for the reply would deadlock");
    waiter w = {.done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = marin__rconn_cmd(c, flags, 0, call_cb, &w, argc, argv, lens);
    if (rc == MARIN_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = w.rc;
        if (rc == MARIN_OK)
            *out = w.reply;
        else
            marin__err(rc, "%s", w.err);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

uint64_t marin__rconn_epoch(const marin__rconn *c)
{
    return atomic_load(&c->epoch);
}

const char *marin__rconn_addr(const marin__rconn *c)
{
    return c->addr;
}

int marin__rconn_up(const marin__rconn *c)
{
    return atomic_load(&c->up);
}
