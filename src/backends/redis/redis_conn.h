/* One Redis connection driven by hiredis's async API on the runtime's libuv
 * reactor loop, through our own glue (hiredis 0.14's libuv adapter drops
 * socket errors, so a dead Redis would hang it).
 *
 * What it gives:
 *  - connect with a timeout, then AUTH (password, or ACL user + password)
 *    and SELECT db, before any queued command goes out;
 *  - a per-command timeout: a command with no reply by its deadline fails
 *    the connection (every command in flight fails with MARIN_EUNAVAILABLE
 *    naming the address), and the connection reconnects with exponential
 *    backoff (backoff_min_ms doubling to backoff_max_ms);
 *  - commands may be issued from any thread; replies are delivered on the
 *    reactor thread, in the order the commands were issued;
 *  - "retry" commands (MARIN__RC_RETRY) are kept until they get a reply:
 *    when the connection drops they are sent again, in order, once it is
 *    back, so a Redis restart does not lose them (they may then apply
 *    twice: callers use them only where that is harmless);
 *  - a synchronous call for threads other than the reactor's.
 *
 * Ownership: the connection copies the command's bytes before
 * marin__rconn_cmd returns. A reply passed to a callback is freed by the
 * connection after the callback returns (the callback must not keep it).
 * Private to the redis backend. */
#ifndef MARIN_REDIS_CONN_H
#define MARIN_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

struct redisReply;

typedef struct marin__rconf {
    const char *host;          /* copied */
    int port;
    const char *user;          /* NULL: AUTH with the password alone */
    const char *password;      /* NULL: no AUTH */
    int db;                    /* SELECT when > 0 */
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms; /* default deadline of a command */
    int64_t backoff_min_ms, backoff_max_ms;
    const char *label;         /* names the connection in logs ("driver cmd") */
} marin__rconf;

typedef struct marin__rconn marin__rconn;

/* Called once per command on the reactor thread. On success @p rc is
 * MARIN_OK and @p reply is the reply (which may be a Redis error reply:
 * REDIS_REPLY_ERROR is given as is). On failure reply is NULL, rc is
 * MARIN_EUNAVAILABLE (connection lost or command timed out), MARIN_EAUTH,
 * or MARIN_ECANCELED (the connection closed first), and @p err says what. */
typedef void (*marin__rconn_cb)(marin__rconn *c, struct redisReply *reply, int rc,
                                const char *err, void *ud);

enum {
    MARIN__RC_RETRY = 1,   /* resend after a reconnect until a reply comes */
    MARIN__RC_BLOCKING = 2 /* a blocking read: its deadline is timeout_ms given
                              plus command_timeout_ms */
};

/* Open: connect synchronously (waits up to connect_timeout_ms on the
 * caller's thread, which must not be the reactor thread). MARIN_EUNAVAILABLE
 * naming host:port and the reason when Redis cannot be reached;
 * MARIN_EAUTH when AUTH is refused (the message says which user);
 * MARIN_EINVAL for a bad db. After open, a lost connection is re-established
 * in the background forever (until close). */
int marin__rconn_open(marin_runtime_t *rt, const marin__rconf *conf, marin__rconn **out);

/* Close: fail every command not yet answered with MARIN_ECANCELED (their
 * callbacks run on the reactor thread before this returns), disconnect and
 * free. Any thread but the reactor's. NULL is accepted. */
void marin__rconn_close(marin__rconn *c);

/* Issue a command (argv form; binary-safe). Any thread. @p flags:
 * MARIN__RC_*; @p block_ms: for MARIN__RC_BLOCKING the BLOCK time in the
 * command. @p cb may be NULL (reply ignored). MARIN_ESTATE after close
 * began, MARIN_ENOMEM. */
int marin__rconn_cmd(marin__rconn *c, unsigned flags, int64_t block_ms,
                     marin__rconn_cb cb, void *ud, int argc, const char *const *argv,
                     const size_t *lens);

/* Synchronous: issue and wait for the reply (a thread other than the
 * reactor's). *out is the reply, to be freed with freeReplyObject (a Redis
 * error reply is returned as MARIN_OK with the reply: callers look). On
 * failure *out is NULL and the code is the callback's rc, with the thread's
 * last error set. */
int marin__rconn_call(marin__rconn *c, unsigned flags, struct redisReply **out, int argc,
                      const char *const *argv, const size_t *lens);

/* Monotonic count of successful (re)connections: a reader that must
 * re-create something after Redis restarted compares it. */
uint64_t marin__rconn_epoch(const marin__rconn *c);
/* "host:port", for messages. */
const char *marin__rconn_addr(const marin__rconn *c);
/* 1 while connected and authenticated. */
int marin__rconn_up(const marin__rconn *c);

#endif
