/* marin — the command-line tool for one Redis namespace.
 *
 *   marin [--backend URI] status [--json]
 *   marin [--backend URI] cancel TASK_ID...
 *   marin [--backend URI] purge [--yes] [--force]
 *   marin [--backend URI] logs TASK_ID [--follow]
 *
 * URI (default $MARIN_BACKEND): redis://[user:pass@]host[:port][/db]
 * [?namespace=NS]. docs/cli.md has the details and example output. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "marin_cli.h"

#define CANCEL_TTL_MS "3600000"
#define SCAN_COUNT "1000"
#define LOG_PAGE "1000"
#define FOLLOW_BLOCK_MS "1000"

static const char usage_text[] =
    "usage: marin [--backend URI] <command> [options]\n"
    "\n"
    "commands:\n"
    "  status [--json]           workers, queues, tasks, actors, leases\n"
    "  cancel TASK_ID...         request cancellation (TASK_ID is DRIVER-SEQ)\n"
    "  purge [--yes] [--force]   delete every key of the namespace\n"
    "  logs TASK_ID [--follow]   print a task's log lines\n"
    "\n"
    "URI defaults to $MARIN_BACKEND:\n"
    "  redis://[user:pass@]host[:port][/db][?namespace=NS]\n";

/* ---- errors and small helpers ---------------------------------------- */

void marin__cli_die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("marin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

void marin__cli_warn(const char *fmt, ...)
{
    va_list ap;
    fputs("marin: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("marin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(marin --help shows the usage)\n", stderr);
    exit(MARIN__CLI_EXIT_USAGE);
}

void *marin__cli_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
    return p;
}

char *marin__cli_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = marin__cli_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char *marin__cli_key(const marin__cli *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "key name: cannot format");
    size_t plen = strlen(c->prefix);
    char *k = marin__cli_xmalloc(plen + (size_t)n + 1);
    memcpy(k, c->prefix, plen);
    va_start(ap, fmt);
    vsnprintf(k + plen, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return k;
}

void marin__cli_free_strv(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* ---- the backend URI --------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode [s, s+n) into a fresh string; NULL on a bad escape or an
 * embedded NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = marin__cli_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                return NULL;
            }
            int v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            if (v == 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)v;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static void bad_uri(const char *uri, const char *why) __attribute__((noreturn));
static void bad_uri(const char *uri, const char *why)
{
    fprintf(stderr,
            "marin: backend URI \"%s\": %s\n"
            "(want redis://[user:pass@]host[:port][/db][?namespace=NS])\n",
            uri, why);
    exit(MARIN__CLI_EXIT_USAGE);
}

static void parse_uri(const char *uri, marin__cli *c)
{
    const char *sep = strstr(uri, "://");
    if (!sep) {
        char why[160];
        snprintf(why, sizeof why,
                 "backend \"%.60s\" is not supported by the marin CLI, "
                 "which reads a Redis namespace",
                 uri);
        bad_uri(uri, why);
    }
    if ((size_t)(sep - uri) != 5 || strncasecmp(uri, "redis", 5) != 0) {
        char why[160];
        snprintf(
            why, sizeof why,
            "scheme \"%.*s\" is not supported by the marin CLI (only redis://)",
            (int)(sep - uri > 40 ? 40 : sep - uri), uri);
        bad_uri(uri, why);
    }
    const char *p = sep + 3;
    const char *auth_end = p + strcspn(p, "/?#");
    if (*auth_end == '#')
        bad_uri(uri, "a fragment (#) is not allowed");

    /* userinfo: the last '@' in the authority */
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(c->user = pct_decode(p, (size_t)(colon - p))))
                bad_uri(uri, "bad percent-escape in the user name");
            if (!(c->password =
                      pct_decode(colon + 1, (size_t)(at - colon - 1))))
                bad_uri(uri, "bad percent-escape in the password");
        } else if (!(c->password = pct_decode(p, (size_t)(at - p)))) {
            bad_uri(uri, "bad percent-escape in the password");
        }
        if (c->password && !*c->password) {
            free(c->password);
            c->password = NULL;
            if (c->user)
                bad_uri(uri, "a user name needs a password");
        }
        p = at + 1;
    }

    /* host[:port], host may be [v6] */
    const char *host_end, *port_start = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(auth_end - p));
        if (!rb)
            bad_uri(uri, "unclosed '[' in the host");
        c->host = pct_decode(p + 1, (size_t)(rb - p - 1));
        host_end = rb + 1;
        if (host_end < auth_end) {
            if (*host_end != ':')
                bad_uri(uri, "junk after ']' in the host");
            port_start = host_end + 1;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        host_end = colon ? colon : auth_end;
        c->host = pct_decode(p, (size_t)(host_end - p));
        if (colon)
            port_start = colon + 1;
    }
    if (!c->host || !*c->host)
        bad_uri(uri, "no host");
    c->port = 6379;
    if (port_start) {
        long v = 0;
        if (port_start == auth_end)
            bad_uri(uri, "empty port");
        for (const char *q = port_start; q < auth_end; q++) {
            if (!isdigit((unsigned char)*q) ||
                (v = v * 10 + (*q - '0')) > 65535)
                bad_uri(uri, "the port must be a number from 1 to 65535");
        }
        if (v == 0)
            bad_uri(uri, "the port must be a number from 1 to 65535");
        c->port = (int)v;
    }

    /* /db */
    p = auth_end;
    c->db = 0;
    if (*p == '/') {
        long v = 0;
        p++;
        while (*p && *p != '?') {
            if (!isdigit((unsigned char)*p) ||
                (v = v * 10 + (*p - '0')) > 1000000)
                bad_uri(uri,
                        "the path must be a database number (/0, /1, ...)");
            p++;
        }
        c->db = (int)v;
    }

    /* ?k=v&k=v: namespace= is ours; other parameters belong to the library
     * (ttls and the like) and are ignored here. */
    c->ns = NULL;
    if (*p == '?') {
        p++;
        while (*p) {
            size_t n = strcspn(p, "&");
            const char *eq = memchr(p, '=', n);
            size_t klen = eq ? (size_t)(eq - p) : n;
            if (klen == 9 && strncmp(p, "namespace", 9) == 0) {
                free(c->ns);
                c->ns = eq ? pct_decode(eq + 1, n - klen - 1) : NULL;
                if (!c->ns || !*c->ns)
                    bad_uri(uri, "namespace= needs a value");
            }
            p += n;
            if (*p == '&')
                p++;
        }
    }
    if (!c->ns)
        c->ns = marin__cli_xstrdup("default");

    if (strlen(c->ns) > 200)
        bad_uri(uri, "the namespace is longer than 200 characters");
    if (strlen(c->host) > 255)
        bad_uri(uri, "the host is longer than 255 characters");
    if (strchr(c->host, ':'))
        snprintf(c->addr, sizeof c->addr, "[%s]:%d", c->host, c->port);
    else
        snprintf(c->addr, sizeof c->addr, "%s:%d", c->host, c->port);
    snprintf(c->prefix, sizeof c->prefix, "marin:{%s}:", c->ns);
    /* escape glob characters for SCAN MATCH */
    char *o = c->pattern;
    for (const char *q = c->prefix; *q; q++) {
        if (strchr("*?[]\\", *q))
            *o++ = '\\';
        *o++ = *q;
    }
    *o = '\0';
}

/* ---- the connection ------------------------------------------------------ */

static struct timeval tv_ms(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static void conn_lost(marin__cli *c) __attribute__((noreturn));
static void conn_lost(marin__cli *c)
{
    const char *why = c->rc->errstr[0] ? c->rc->errstr : "connection lost";
    if (c->rc->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        why = "no reply within 5 s";
    marin__cli_die(MARIN__CLI_EXIT_FAIL, "redis at %s: %s", c->addr, why);
}

static redisReply *check_reply(marin__cli *c, int soft, redisReply *r,
                               const char *cmdname)
{
    if (!r)
        conn_lost(c);
    if (r->type == REDIS_REPLY_ERROR) {
        if (soft) {
            freeReplyObject(r);
            return NULL;
        }
        char msg[512];
        snprintf(msg, sizeof msg, "%s", r->str);
        freeReplyObject(r);
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "%s at %s: %s", cmdname, c->addr,
                       msg);
    }
    return r;
}

redisReply *marin__cli_cmd(marin__cli *c, int soft, const char *fmt, ...)
{
    va_list ap;
    char name[32];
    size_t n = strcspn(fmt, " ");
    snprintf(name, sizeof name, "%.*s", (int)(n < 31 ? n : 31), fmt);
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c->rc, fmt, ap);
    va_end(ap);
    return check_reply(c, soft, r, name);
}

redisReply *marin__cli_cmdargv(marin__cli *c, int soft, int argc,
                               const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c->rc, argc, argv, lens);
    return check_reply(c, soft, r, argv[0]);
}

static void connect_redis(marin__cli *c)
{
    c->rc =
        redisConnectWithTimeout(c->host, c->port, tv_ms(MARIN__CLI_TIMEOUT_MS));
    if (!c->rc)
        marin__cli_die(MARIN__CLI_EXIT_FAIL,
                       "cannot connect to redis at %s: out of memory", c->addr);
    if (c->rc->err)
        marin__cli_die(MARIN__CLI_EXIT_FAIL,
                       "cannot connect to redis at %s: %s", c->addr,
                       c->rc->errstr);
    if (redisSetTimeout(c->rc, tv_ms(MARIN__CLI_TIMEOUT_MS)) != REDIS_OK)
        marin__cli_die(MARIN__CLI_EXIT_FAIL,
                       "redis at %s: cannot set a timeout", c->addr);
    redisReply *r;
    if (c->password) {
        if (c->user)
            r = redisCommand(c->rc, "AUTH %s %s", c->user, c->password);
        else
            r = redisCommand(c->rc, "AUTH %s", c->password);
        if (!r)
            conn_lost(c);
        if (r->type == REDIS_REPLY_ERROR) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", r->str);
            freeReplyObject(r);
            marin__cli_die(MARIN__CLI_EXIT_FAIL, "AUTH at %s%s%s: %s", c->addr,
                           c->user ? " as user " : "", c->user ? c->user : "",
                           msg);
        }
        freeReplyObject(r);
    }
    if (c->db > 0) {
        r = marin__cli_cmd(c, 0, "SELECT %d", c->db);
        freeReplyObject(r);
    }
}

/* ---- shared helpers ------------------------------------------------------ */

int64_t marin__cli_now_ms(marin__cli *c)
{
    redisReply *r = marin__cli_cmd(c, 0, "TIME");
    int64_t ms = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->str && r->element[1]->str)
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms;
}

char **marin__cli_scan(marin__cli *c, const char *glob, size_t *count)
{
    size_t n = 0, cap = 16;
    char **v = marin__cli_xmalloc(cap * sizeof *v);
    char cursor[32] = "0";
    char *match = marin__cli_xmalloc(strlen(c->pattern) + strlen(glob) + 1);
    strcpy(match, c->pattern);
    strcat(match, glob);
    do {
        redisReply *r = marin__cli_cmd(
            c, 0, "SCAN %s MATCH %s COUNT " SCAN_COUNT, cursor, match);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY)
            marin__cli_die(MARIN__CLI_EXIT_FAIL, "SCAN at %s: unexpected reply",
                           c->addr);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            if (keys->element[i]->type != REDIS_REPLY_STRING)
                continue;
            if (n + 1 >= cap) {
                cap *= 2;
                char **nv = realloc(v, cap * sizeof *v);
                if (!nv)
                    marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
                v = nv;
            }
            v[n++] = marin__cli_xstrdup(keys->element[i]->str);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    free(match);
    /* SCAN may return a key more than once; drop duplicates */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t j = 0; j < m && !dup; j++)
            dup = strcmp(v[j], v[i]) == 0;
        if (dup)
            free(v[i]);
        else
            v[m++] = v[i];
    }
    v[m] = NULL;
    if (count)
        *count = m;
    return v;
}

int marin__cli_task_id(const char *id, char **driver, long long *seq)
{
    /* Task ids are what marin_task_id gives: "<driver>-<seq>". */
    const char *colon = strrchr(id, '-');
    if (!colon || colon == id || !colon[1])
        return -1;
    long long v = 0;
    for (const char *q = colon + 1; *q; q++) {
        if (!isdigit((unsigned char)*q) || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*q - '0');
    }
    for (const char *q = id; q < colon; q++)
        if (isspace((unsigned char)*q) || iscntrl((unsigned char)*q))
            return -1;
    size_t dlen = (size_t)(colon - id);
    *driver = marin__cli_xmalloc(dlen + 1);
    memcpy(*driver, id, dlen);
    (*driver)[dlen] = '\0';
    *seq = v;
    return 0;
}

static void bad_task_id(const char *id) __attribute__((noreturn));
static void bad_task_id(const char *id)
{
    usage_error("task id \"%s\": want DRIVER-SEQ, as marin_task_id prints it (a "
                "driver id and a decimal sequence number)",
                id);
}

/* ---- cancel -------------------------------------------------------------- */

static int cmd_cancel(marin__cli *c, int argc, char **argv)
{
    if (argc == 0)
        usage_error("cancel: name at least one TASK_ID");
    for (int i = 0; i < argc; i++) {
        char *drv;
        long long seq;
        if (argv[i][0] == '-')
            usage_error("cancel: unknown option %s", argv[i]);
        if (marin__cli_task_id(argv[i], &drv, &seq) != 0)
            bad_task_id(argv[i]);
        free(drv);
    }
    connect_redis(c);
    char *drivers = marin__cli_key(c, "drivers");
    for (int i = 0; i < argc; i++) {
        char *drv;
        long long seq;
        marin__cli_task_id(argv[i], &drv, &seq);
        redisReply *r = marin__cli_cmd(c, 0, "HEXISTS %s %s", drivers, drv);
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
            marin__cli_warn("driver \"%s\" is not registered in namespace %s; "
                            "setting the cancel key anyway",
                            drv, c->ns);
        freeReplyObject(r);
        char *key = marin__cli_key(c, "cancel:%s:%lld", drv, seq);
        r = marin__cli_cmd(c, 0, "SET %s 1 PX " CANCEL_TTL_MS, key);
        freeReplyObject(r);
        printf("cancel requested for %s\n", argv[i]);
        free(key);
        free(drv);
    }
    free(drivers);
    return 0;
}

/* ---- purge --------------------------------------------------------------- */

static size_t live_workers(marin__cli *c)
{
    char *workers = marin__cli_key(c, "workers");
    redisReply *r = marin__cli_cmd(c, 1, "HKEYS %s", workers);
    size_t live = 0;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i]->type != REDIS_REPLY_STRING)
                continue;
            char *hb = marin__cli_key(c, "w:%s", r->element[i]->str);
            redisReply *e = marin__cli_cmd(c, 0, "EXISTS %s", hb);
            if (e->type == REDIS_REPLY_INTEGER && e->integer > 0)
                live++;
            freeReplyObject(e);
            free(hb);
        }
    }
    if (r)
        freeReplyObject(r);
    free(workers);
    return live;
}

static int cmd_purge(marin__cli *c, int argc, char **argv)
{
    int yes = 0, force = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--yes") || !strcmp(argv[i], "-y"))
            yes = 1;
        else if (!strcmp(argv[i], "--force"))
            force = 1;
        else
            usage_error("purge: unexpected argument %s", argv[i]);
    }
    connect_redis(c);
    size_t live = live_workers(c);
    if (live && !force)
        marin__cli_die(
            MARIN__CLI_EXIT_FAIL,
            "purge: %zu live worker%s in namespace %s at %s; stop %s first "
            "or pass --force",
            live, live == 1 ? "" : "s", c->ns, c->addr,
            live == 1 ? "it" : "them");
    size_t n;
    char **keys = marin__cli_scan(c, "*", &n);
    marin__cli_free_strv(keys);
    if (n == 0) {
        printf("namespace %s at %s has no keys; nothing to delete\n", c->ns,
               c->addr);
        return 0;
    }
    if (!yes) {
        if (!isatty(STDIN_FILENO))
            marin__cli_die(
                MARIN__CLI_EXIT_FAIL,
                "purge: would delete %zu keys of namespace %s at %s, but stdin "
                "is not a terminal to confirm; pass --yes",
                n, c->ns, c->addr);
        fprintf(stderr, "Delete %zu keys of namespace %s at %s? [y/N] ", n,
                c->ns, c->addr);
        fflush(stderr);
        char line[64];
        if (!fgets(line, sizeof line, stdin))
            line[0] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        if (strcasecmp(line, "y") != 0 && strcasecmp(line, "yes") != 0) {
            fprintf(stderr, "marin: purge: not confirmed; nothing deleted\n");
            return MARIN__CLI_EXIT_FAIL;
        }
    }
    /* SCAN + UNLINK a batch at a time (deleting during SCAN is safe: keys
     * present for the whole scan are still returned). */
    long long deleted = 0;
    char cursor[32] = "0";
    char *match = marin__cli_xmalloc(strlen(c->pattern) + 2);
    strcpy(match, c->pattern);
    strcat(match, "*");
    do {
        redisReply *r = marin__cli_cmd(
            c, 0, "SCAN %s MATCH %s COUNT " SCAN_COUNT, cursor, match);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY)
            marin__cli_die(MARIN__CLI_EXIT_FAIL, "SCAN at %s: unexpected reply",
                           c->addr);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *ks = r->element[1];
        if (ks->elements) {
            const char **av =
                marin__cli_xmalloc((ks->elements + 1) * sizeof *av);
            size_t *lens =
                marin__cli_xmalloc((ks->elements + 1) * sizeof *lens);
            av[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < ks->elements; i++) {
                av[i + 1] = ks->element[i]->str;
                lens[i + 1] = ks->element[i]->len;
            }
            redisReply *u =
                marin__cli_cmdargv(c, 0, (int)ks->elements + 1, av, lens);
            if (u->type == REDIS_REPLY_INTEGER)
                deleted += u->integer;
            freeReplyObject(u);
            free(av);
            free(lens);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    free(match);
    printf("deleted %lld keys of namespace %s at %s\n", deleted, c->ns,
           c->addr);
    return 0;
}

/* ---- logs ---------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static const char *level_name(const char *l)
{
    /* the library's levels: MARIN_LOG_ERROR (1) .. MARIN_LOG_DEBUG (4) */
    if (!strcmp(l, "1"))
        return "ERROR";
    if (!strcmp(l, "2"))
        return "WARN";
    if (!strcmp(l, "3"))
        return "INFO";
    if (!strcmp(l, "4"))
        return "DEBUG";
    return l;
}

/* Print the entries of @p arr (an XRANGE-style array of [id, [f, v...]])
 * whose t field is @p task; remember the last id in @p last. */
static size_t print_entries(const redisReply *arr, const char *task, char *last,
                            size_t cap)
{
    size_t printed = 0;
    for (size_t i = 0; i < arr->elements; i++) {
        const redisReply *e = arr->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(last, cap, "%s", e->element[0]->str);
        const redisReply *f = e->element[1];
        if (f->type != REDIS_REPLY_ARRAY)
            continue;
        const char *t = NULL, *l = "", *m = "";
        size_t mlen = 0;
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            const redisReply *k = f->element[j], *v = f->element[j + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (!strcmp(k->str, "t"))
                t = v->str;
            else if (!strcmp(k->str, "l"))
                l = v->str;
            else if (!strcmp(k->str, "m")) {
                m = v->str;
                mlen = v->len;
            }
        }
        if (!t || strcmp(t, task) != 0)
            continue;
        fputs(level_name(l), stdout);
        fputc(' ', stdout);
        fwrite(m, 1, mlen, stdout);
        if (mlen == 0 || m[mlen - 1] != '\n')
            fputc('\n', stdout);
        printed++;
    }
    fflush(stdout);
    return printed;
}

/* The id right after @p id ("ms-seq" -> "ms-(seq+1)"), for paging XRANGE
 * on any Redis version. */
static void next_id(const char *id, char *out, size_t cap)
{
    unsigned long long ms = 0, seq = 0;
    if (sscanf(id, "%llu-%llu", &ms, &seq) != 2) {
        snprintf(out, cap, "%s", id);
        return;
    }
    if (seq == UINT64_MAX) {
        ms++;
        seq = 0;
    } else {
        seq++;
    }
    snprintf(out, cap, "%llu-%llu", ms, seq);
}

static int cmd_logs(marin__cli *c, int argc, char **argv)
{
    int follow = 0;
    const char *task = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--follow") || !strcmp(argv[i], "-f"))
            follow = 1;
        else if (argv[i][0] == '-')
            usage_error("logs: unknown option %s", argv[i]);
        else if (task)
            usage_error("logs: one TASK_ID at a time");
        else
            task = argv[i];
    }
    if (!task)
        usage_error("logs: name a TASK_ID");
    char *drv;
    long long seq;
    if (marin__cli_task_id(task, &drv, &seq) != 0)
        bad_task_id(task);
    connect_redis(c);
    char *key = marin__cli_key(c, "logs:%s", drv);
    char last[64] = "0-0", start[64] = "-";
    size_t printed = 0;
    for (;;) {
        redisReply *r =
            marin__cli_cmd(c, 0, "XRANGE %s %s + COUNT " LOG_PAGE, key, start);
        if (r->type != REDIS_REPLY_ARRAY)
            marin__cli_die(MARIN__CLI_EXIT_FAIL,
                           "XRANGE at %s: unexpected reply", c->addr);
        size_t n = r->elements;
        printed += print_entries(r, task, last, sizeof last);
        freeReplyObject(r);
        if (n < (size_t)atoi(LOG_PAGE))
            break;
        next_id(last, start, sizeof start);
    }
    if (!follow) {
        if (printed == 0)
            fprintf(stderr,
                    "marin: logs: no log lines for %s in namespace %s\n", task,
                    c->ns);
        free(key);
        free(drv);
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: the blocking read returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!interrupted) {
        /* BLOCK stays well under the 5 s command timeout */
        redisReply *r = redisCommand(c->rc,
                                     "XREAD COUNT " LOG_PAGE
                                     " BLOCK " FOLLOW_BLOCK_MS " STREAMS %s %s",
                                     key, last);
        if (!r && interrupted)
            break;
        r = check_reply(c, 0, r, "XREAD");
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY &&
            r->element[0]->elements == 2)
            print_entries(r->element[0]->element[1], task, last, sizeof last);
        freeReplyObject(r);
    }
    free(key);
    free(drv);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *uri = NULL;
    const char *cmd = NULL;
    char **rest = marin__cli_xmalloc((size_t)argc * sizeof *rest);
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--backend") || !strcmp(a, "-b")) {
            if (i + 1 >= argc)
                usage_error("%s needs a URI", a);
            uri = argv[++i];
        } else if (!strncmp(a, "--backend=", 10)) {
            uri = a + 10;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h") ||
                   (!cmd && !strcmp(a, "help"))) {
            fputs(usage_text, stdout);
            free(rest);
            return 0;
        } else if (!cmd && a[0] == '-') {
            usage_error("unknown option %s", a);
        } else if (!cmd) {
            cmd = a;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (!cmd) {
        fputs(usage_text, stderr);
        free(rest);
        return MARIN__CLI_EXIT_USAGE;
    }
    int (*fn)(marin__cli *, int, char **) = NULL;
    if (!strcmp(cmd, "cancel"))
        fn = cmd_cancel;
    else if (!strcmp(cmd, "purge"))
        fn = cmd_purge;
    else if (!strcmp(cmd, "logs"))
        fn = cmd_logs;
    else if (strcmp(cmd, "status") != 0)
        usage_error("unknown command \"%s\"", cmd);

    if (!uri || !*uri)
        uri = getenv("MARIN_BACKEND");
    if (!uri || !*uri)
        usage_error("no backend: pass --backend URI or set MARIN_BACKEND");

    marin__cli c;
    memset(&c, 0, sizeof c);
    parse_uri(uri, &c);

    int rc;
    if (fn) {
        rc = fn(&c, nrest, rest);
    } else {
        int json = 0;
        for (int i = 0; i < nrest; i++) {
            if (!strcmp(rest[i], "--json"))
                json = 1;
            else
                usage_error("status: unexpected argument %s", rest[i]);
        }
        connect_redis(&c);
        rc = marin__cli_status(&c, json);
    }
    if (c.rc)
        redisFree(c.rc);
    free(c.host);
    free(c.user);
    free(c.password);
    free(c.ns);
    free(rest);
    if (fflush(stdout) != 0 && rc == 0)
        rc = MARIN__CLI_EXIT_FAIL;
    return rc;
}
