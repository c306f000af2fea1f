/* A real redis-server for a test (tests/redis_fixture.h).
 *
 * The server is a child of the process that starts it, with
 * PR_SET_PDEATHSIG(SIGKILL): it dies with the thread that started it, so a
 * test that fails, crashes or is killed leaves no server behind. Start it
 * from the thread that lives longest (the main thread of main, or of a
 * forked Check test). Its stdin/stdout/stderr are /dev/null and it inherits
 * no other descriptor, so it never holds a pipe of the test harness open. */
#define _GNU_SOURCE
#include "redis_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#if MARIN_TEST_HIREDIS
#include <hiredis/hiredis.h>
#endif

#define START_TRIES 5        /* fresh ports tried when redis cannot bind */
#define READY_MS 5000        /* how long a start waits for PING */
#define RESTART_BIND_MS 10000 /* how long a restart retries the same port */
#define STOP_GRACE_MS 2000   /* SIGTERM, then SIGKILL */

static long long fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fx_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the binary ---- */

static int executable(const char *p) { return p && *p && access(p, X_OK) == 0; }

/* $MARIN_REDIS_SERVER, /usr/bin/redis-server, redis-server on PATH: the
 * first that is executable, into buf; 0, or -1 when none is. Not in the
 * header: testutil.c uses it to tell a missing server (a skip) from one
 * that fails to start (a failure). */
int redis_fixture__find_server(char *buf, size_t cap);
int redis_fixture__find_server(char *buf, size_t cap)
{
    const char *env = getenv("MARIN_REDIS_SERVER");
    if (executable(env)) {
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    if (env && *env)
        fprintf(stderr, "redis_fixture: MARIN_REDIS_SERVER=%s is not executable; "
                        "trying /usr/bin/redis-server and PATH\n", env);
    if (executable("/usr/bin/redis-server")) {
        snprintf(buf, cap, "/usr/bin/redis-server");
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path)
        return -1;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && n + 14 < cap) {
            snprintf(buf, cap, "%.*s/redis-server", (int)n, p);
            if (executable(buf))
                return 0;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return -1;
}

/* ---- ports, logs, directories ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void log_path(const redis_fixture *fx, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/redis.log", fx->dir);
}

/* The last @p cap - 1 bytes of the log into buf ("" when none). */
static void log_tail(const redis_fixture *fx, char *buf, size_t cap)
{
    char path[300];
    buf[0] = '\0';
    log_path(fx, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)(cap - 1) ? end - (off_t)(cap - 1) : 0;
    ssize_t n = pread(fd, buf, cap - 1, from);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
}

static void print_log_tail(const redis_fixture *fx, const char *why)
{
    char tail[2048];
    log_tail(fx, tail, sizeof tail);
    fprintf(stderr, "redis_fixture: %s (port %d, dir %s); redis.log ends:\n%s\n", why,
            fx->port, fx->dir, tail[0] ? tail : "(empty)");
}

/* Truncate the log, so that a retry reads only its own lines. */
static void log_reset(const redis_fixture *fx)
{
    char path[300];
    log_path(fx, path, sizeof path);
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

/* ---- the process ---- */

static pid_t spawn(const redis_fixture *fx, const char *bin)
{
    char port[16], logfile[300];
    snprintf(port, sizeof port, "%d", fx->port);
    log_path(fx, logfile, sizeof logfile);
    const char *argv[32];
    int k = 0;
    argv[k++] = bin;
    argv[k++] = "--bind";
    argv[k++] = "127.0.0.1";
    argv[k++] = "--port";
    argv[k++] = port;
    argv[k++] = "--dir";
    argv[k++] = fx->dir;
    argv[k++] = "--appendonly";
    argv[k++] = "yes";
    argv[k++] = "--appendfsync";
    argv[k++] = "always";
    argv[k++] = "--save";
    argv[k++] = "";
    argv[k++] = "--daemonize";
    argv[k++] = "no";
    argv[k++] = "--logfile";
    argv[k++] = logfile;
    argv[k++] = "--protected-mode";
    argv[k++] = "no";
    if (fx->password[0]) {
        argv[k++] = "--requirepass";
        argv[k++] = fx->password;
    }
    argv[k] = NULL;

    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid; /* -1 on failure */
    /* child: die with the thread that started us */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = 3; fd < max; fd++)
        close(fd);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(bin, (char *const *)argv);
    _exit(127);
}

/* Reap @p pid if it has exited; 1 when it is gone. */
static int exited(pid_t pid, int *status)
{
    pid_t r = waitpid(pid, status, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD);
}

/* ---- talking to it ---- */

#if MARIN_TEST_HIREDIS
static redisContext *connect_fx(const redis_fixture *fx, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", fx->port, tv);
    if (!c)
        return NULL;
    if (c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (fx->password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", fx->password);
        if (!r) {
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r); /* a refused AUTH shows in the next reply */
    }
    return c;
}

/* 1 when the server on fx->port answers PING with PONG and is our process
 * (INFO's process_id: not another server that took the port meanwhile). */
static int answers_ping(const redis_fixture *fx)
{
    redisContext *c = connect_fx(fx, 200);
    if (!c)
        return 0;
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r)
        freeReplyObject(r);
    if (ok) {
        r = redisCommand(c, "INFO server");
        const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "process_id:") : NULL;
        ok = p && strtol(p + strlen("process_id:"), NULL, 10) == (long)fx->pid;
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}
#else
static int answers_ping(const redis_fixture *fx)
{
    (void)fx;
    return 0;
}
#endif

enum { UP = 0, BIND_FAILED = 1, FAILED = 2 };

/* Start the process on fx->port and wait for PING. On BIND_FAILED and
 * FAILED the process is gone and fx->pid is 0. */
static int launch(redis_fixture *fx, const char *bin)
{
    log_reset(fx);
    pid_t pid = spawn(fx, bin);
    if (pid < 0) {
        fprintf(stderr, "redis_fixture: fork: %s\n", strerror(errno));
        return FAILED;
    }
    fx->pid = pid;
    long long end = fx_now_ms() + READY_MS;
    int status = 0;
    for (;;) {
        if (exited(pid, &status)) {
            fx->pid = 0;
            char tail[4096];
            log_tail(fx, tail, sizeof tail);
            if (strstr(tail, "Address already in use") || strstr(tail, "Could not create server TCP"))
                return BIND_FAILED;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                fprintf(stderr, "redis_fixture: could not exec %s\n", bin);
            print_log_tail(fx, "redis-server exited before answering PING");
            return FAILED;
        }
        if (answers_ping(fx))
            return UP;
        if (fx_now_ms() > end)
            break;
        fx_sleep_ms(10);
    }
    print_log_tail(fx, "redis-server did not answer PING within 5 s");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fx->pid = 0;
    return FAILED;
}

/* ---- the API ---- */

int redis_fixture_start(redis_fixture *fx, const char *password)
{
    memset(fx, 0, sizeof *fx);
#if !MARIN_TEST_HIREDIS
    (void)password;
    fprintf(stderr, "redis_fixture: built without hiredis: no redis-server fixture\n");
    return -1;
#else
    char bin[512];
    if (redis_fixture__find_server(bin, sizeof bin) != 0) {
        fprintf(stderr, "redis_fixture: redis-server not found ($MARIN_REDIS_SERVER, "
                        "/usr/bin/redis-server, PATH)\n");
        return -1;
    }
    if (password) {
        if (strlen(password) >= sizeof fx->password) {
            fprintf(stderr, "redis_fixture: password too long\n");
            return -1;
        }
        snprintf(fx->password, sizeof fx->password, "%s", password);
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/marin-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir)) {
        fprintf(stderr, "redis_fixture: mkdtemp %s: %s\n", fx->dir, strerror(errno));
        fx->dir[0] = '\0';
        return -1;
    }
    for (int tries = 0; tries < START_TRIES; tries++) {
        fx->port = free_port();
        if (fx->port <= 0) {
            fprintf(stderr, "redis_fixture: no free loopback port: %s\n", strerror(errno));
            break;
        }
        snprintf(fx->uri_base, sizeof fx->uri_base, "redis://127.0.0.1:%d", fx->port);
        int r = launch(fx, bin);
        if (r == UP)
            return 0;
        if (r == FAILED)
            break;
        /* someone took the port between our probe and redis's bind */
    }
    redis_fixture_stop(fx);
    return -1;
#endif
}

void redis_fixture_kill(redis_fixture *fx)
{
    if (!fx || fx->pid <= 0)
        return;
    kill(fx->pid, SIGKILL);
    while (waitpid(fx->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    fx->pid = 0;
}

int redis_fixture_restart(redis_fixture *fx)
{
#if !MARIN_TEST_HIREDIS
    (void)fx;
    return -1;
#else
    if (!fx || !fx->dir[0] || fx->port <= 0)
        return -1;
    if (fx->pid > 0)
        redis_fixture_kill(fx);
    char bin[512];
    if (redis_fixture__find_server(bin, sizeof bin) != 0) {
        fprintf(stderr, "redis_fixture: redis-server not found\n");
        return -1;
    }
    /* the old socket may linger a moment: retry the same port */
    long long end = fx_now_ms() + RESTART_BIND_MS;
    for (;;) {
        int r = launch(fx, bin);
        if (r == UP)
            return 0;
        if (r == FAILED)
            return -1;
        if (fx_now_ms() > end) {
            print_log_tail(fx, "port still taken after 10 s");
            return -1;
        }
        fx_sleep_ms(50);
    }
#endif
}

void redis_fixture_stop(redis_fixture *fx)
{
    if (!fx)
        return;
    if (fx->pid > 0) {
        kill(fx->pid, SIGTERM);
        long long end = fx_now_ms() + STOP_GRACE_MS;
        int gone = 0;
        while (!(gone = exited(fx->pid, NULL)) && fx_now_ms() < end)
            fx_sleep_ms(5);
        if (!gone) {
            kill(fx->pid, SIGKILL);
            while (waitpid(fx->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        fx->pid = 0;
    }
    if (fx->dir[0]) {
        nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        fx->dir[0] = '\0';
    }
}

void redis_fixture_uri(const redis_fixture *fx, char *buf, size_t cap, const char *ns,
                       const char *extra)
{
    static unsigned long counter;
    char own[96];
    if (!ns) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        snprintf(own, sizeof own, "t%ld-%lu-%llx", (long)getpid(), n,
                 (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000);
        ns = own;
    }
    /* with a password, the credentials go in the URI (user "default") */
    char auth[96] = "";
    if (fx->password[0])
        snprintf(auth, sizeof auth, "default:%s@", fx->password);
    snprintf(buf, cap, "redis://%s127.0.0.1:%d?namespace=%s%s%s", auth, fx->port, ns,
             extra && *extra ? "&" : "", extra ? extra : "");
}

/* ---- replies as text ---- */

typedef struct {
    char *buf;
    size_t cap, len;
} textbuf;

static void put(textbuf *t, const char *s, size_t n)
{
    if (t->cap == 0)
        return;
    size_t room = t->cap - 1 - t->len;
    if (n > room)
        n = room;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void puts_(textbuf *t, const char *s) { put(t, s, strlen(s)); }

#if MARIN_TEST_HIREDIS
static void flatten(textbuf *t, const redisReply *r)
{
    char num[32];
    switch (r->type) {
    case REDIS_REPLY_NIL:
        puts_(t, "(nil)");
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)r->integer);
        puts_(t, num);
        break;
    case REDIS_REPLY_ERROR:
        puts_(t, "(error) ");
        put(t, r->str, r->len);
        break;
    case REDIS_REPLY_ARRAY:
#ifdef REDIS_REPLY_MAP
    case REDIS_REPLY_MAP:
    case REDIS_REPLY_SET:
#endif
        for (size_t i = 0; i < r->elements; i++) {
            if (i)
                puts_(t, "\n");
            flatten(t, r->element[i]);
        }
        break;
    default: /* string, status, and RESP3's scalars */
        if (r->str)
            put(t, r->str, r->len);
        break;
    }
}
#endif

int redis_fixture_cmd(const redis_fixture *fx, char *buf, size_t cap, const char *fmt, ...)
{
    textbuf t = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
#if !MARIN_TEST_HIREDIS
    (void)fx;
    (void)fmt;
    puts_(&t, "built without hiredis");
    return -1;
#else
    if (!fx || fx->port <= 0) {
        puts_(&t, "no server");
        return -1;
    }
    redisContext *c = connect_fx(fx, 2000);
    if (!c) {
        puts_(&t, "cannot connect");
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) {
        puts_(&t, c->errstr[0] ? c->errstr : "connection error");
        redisFree(c);
        return -1;
    }
    flatten(&t, r);
    freeReplyObject(r);
    redisFree(c);
    return 0;
#endif
}
