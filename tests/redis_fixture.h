/* A real redis-server for a test: started on a free loopback port with its
 * own temporary directory (appendonly yes, appendfsync always, no RDB
 * snapshots), killed with -9 and restarted on the same port and directory
 * to test recovery, stopped and cleaned up at the end.
 *
 * The binary is $MARIN_REDIS_SERVER, else /usr/bin/redis-server, else
 * redis-server on PATH. When none is found, redis_fixture_start returns -1
 * and prints why; suites then skip with that reason printed.
 *
 * Fork-mode Check suites: start the server in the test (or in an unchecked
 * fixture), not in main, so each forked test sees its own. */
#ifndef MARIN_REDIS_FIXTURE_H
#define MARIN_REDIS_FIXTURE_H

#include <sys/types.h>

typedef struct redis_fixture {
    pid_t pid;            /* 0 when not running */
    int port;
    char dir[256];        /* temporary directory (AOF, log) */
    char uri_base[128];   /* "redis://127.0.0.1:PORT" */
    char password[64];    /* requirepass when non-empty */
} redis_fixture;

/* Start a server (password NULL: none). 0 when it answers PING, -1 when
 * redis-server is missing or does not come up (the reason is printed on
 * stderr). */
int redis_fixture_start(redis_fixture *fx, const char *password);
/* kill -9 the server and wait for it to die (its files stay). */
void redis_fixture_kill(redis_fixture *fx);
/* Start it again on the same port and directory (after kill); 0 / -1. */
int redis_fixture_restart(redis_fixture *fx);
/* Stop (SIGTERM, then SIGKILL after 2 s) and remove the directory. */
void redis_fixture_stop(redis_fixture *fx);
/* Write "redis://127.0.0.1:PORT?namespace=NS&<extra>" into buf (extra may
 * be NULL or ""). A unique namespace per call when ns is NULL. */
void redis_fixture_uri(const redis_fixture *fx, char *buf, size_t cap, const char *ns,
                       const char *extra);
/* Run a redis-cli style command against it synchronously through hiredis
 * (for tests that inspect or corrupt keys); returns the reply as text in
 * buf ("(nil)", integers as decimal, arrays flattened with '\n'), or -1 on
 * a connection error. */
int redis_fixture_cmd(const redis_fixture *fx, char *buf, size_t cap, const char *fmt, ...);

#endif
