/* The `marin` command-line tool: shared pieces (connection, replies,
 * key names, errors). The tool talks to Redis directly through hiredis's
 * synchronous API and reads the layout of src/backends/redis/redis_keys.h.
 *
 * Exit codes: 0 done, 1 a failure (Redis unreachable, refused, a command
 * failed), 2 a usage error (bad arguments or backend URI). */
#ifndef MARIN_TOOLS_CLI_H
#define MARIN_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define MARIN__CLI_EXIT_FAIL 1
#define MARIN__CLI_EXIT_USAGE 2
#define MARIN__CLI_TIMEOUT_MS 5000

typedef struct marin__cli {
    char *host; /* without brackets for IPv6 */
    int port;
    char *user;     /* NULL: AUTH with the password alone */
    char *password; /* NULL: no AUTH */
    int db;
    char *ns;           /* namespace */
    char addr[300];     /* "host:port" for messages */
    char prefix[512];   /* "marin:{NS}:" */
    char pattern[1100]; /* "marin:{NS}:" with glob characters escaped */
    redisContext *rc;
} marin__cli;

/* Print "marin: <what>: <why>" on stderr and exit with @p code. */
void marin__cli_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void marin__cli_warn(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

void *marin__cli_xmalloc(size_t n);
char *marin__cli_xstrdup(const char *s);

/* Full key name "marin:{NS}:<suffix>" in a fresh string (free it). */
char *marin__cli_key(const marin__cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Run a command (redisCommand format). A lost connection or a timeout
 * exits 1 naming host:port. An error reply exits 1 too, unless @p soft:
 * then it is freed and NULL comes back. The caller frees the reply. */
redisReply *marin__cli_cmd(marin__cli *c, int soft, const char *fmt, ...);
redisReply *marin__cli_cmdargv(marin__cli *c, int soft, int argc,
                               const char **argv, const size_t *lens);

/* Redis TIME in milliseconds. */
int64_t marin__cli_now_ms(marin__cli *c);

/* Collect every key matching "marin:{NS}:<glob>" with SCAN; @p glob is used
 * as given (escape it yourself). Returns a NULL-terminated array of strings;
 * free with marin__cli_free_strv. */
char **marin__cli_scan(marin__cli *c, const char *glob, size_t *count);
void marin__cli_free_strv(char **v);

/* Parse a task id "<driver>:<seq>": 0 and a fresh driver string in *driver,
 * or -1 when it is malformed. */
int marin__cli_task_id(const char *id, char **driver, long long *seq);

int marin__cli_status(marin__cli *c, int json);

#endif
