/* Faults on the redis backend with real processes: marin-worker processes
 * (tools/marin_worker.c) loading tests/fault_plugin.c serve a real
 * redis-server (tests/redis_fixture.h); the test process is the driver
 * (a runtime without worker_resources, so no in-process worker).
 *
 *   a worker killed with -9 mid-task: the task runs again elsewhere, one
 *     result; a long task on a live worker is never run twice; SIGTERM
 *     drains (running work finishes, queued work moves on, exit 0); Redis
 *     killed -9 and restarted mid-run; Redis unreachable or refusing the
 *     password at open; a foreign entry in a queue goes to the dead-letter
 *     stream; namespaces are apart; marin-worker refuses broken plugins.
 *   actors (tests/fault_actor.h, registered here and in the plugin): a
 *     host killed with -9 under a checkpointed actor: the call running there
 *     fails with MARIN_EWORKER, the actor restarts on another worker from
 *     its checkpoint and no acknowledged call is lost; a host dying with
 *     max_restarts spent: calls and marin_actor_ready fail, the name is
 *     free; two driver processes calling one named actor (get_if_exists):
 *     each caller's calls run in its order; two processes creating one
 *     name with get_if_exists at once both get the one actor.
 *
 * Environment: MARIN_WORKER_BIN (the marin-worker executable) and
 * MARIN_FAULT_PLUGIN (fault_plugin.so), set by tests/meson.build. Skipped
 * (exit 77) without redis-server or hiredis. On a failed assertion the
 * worker and redis logs are printed on stderr (MARIN_TEST_VERBOSE=1: after
 * every case). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if MARIN_TEST_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "fault_actor.h"
#include "redis_fixture.h"
#include "testutil.h"

int redis_fixture__find_server(char *buf, size_t cap); /* redis_fixture.c */

#define TIMINGS                                                                \
    "heartbeat_ms=100&worker_ttl_ms=600&reclaim_ms=200&grace_ms=3000&"       \
    "block_ms=100&backoff_min_ms=20&backoff_max_ms=200&"                      \
    "connect_timeout_ms=1000&command_timeout_ms=2000"
#define GRACE_MS 3000

#if MARIN_TEST_HIREDIS

/* ---- per-case state (each case is a forked child) ---- */

typedef struct {
    pid_t pid;      /* 0: not running (reaped) */
    char name[32];
    char log[512];
    int status;     /* wait status once reaped */
} worker;

static redis_fixture g_fx;
static int g_fx_up;
static char g_dir[256];
static worker g_workers[8];
static size_t g_nworkers;
static char g_ns[64];

static void dump_file(const char *label, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > 6000 ? end - 6000 : 0;
    char buf[6001];
    ssize_t n = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    fprintf(stderr, "---- %s (%s)%s ----\n%s---- end of %s ----\n", label, path,
            from ? ", last 6000 bytes" : "", buf, label);
}

static void dump_logs(void)
{
    for (size_t i = 0; i < g_nworkers; i++) {
        char label[64];
        snprintf(label, sizeof label, "worker %s log", g_workers[i].name);
        dump_file(label, g_workers[i].log);
    }
    if (g_fx_up && g_fx.dir[0]) {
        char p[300];
        snprintf(p, sizeof p, "%s/redis.log", g_fx.dir);
        dump_file("redis.log", p);
    }
}

/* Like ck_assert_msg, but print the worker and redis logs first. */
#define fassert(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            dump_logs();                                                       \
            ck_abort_msg(__VA_ARGS__);                                         \
        }                                                                      \
    } while (0)

#define fassert_marin(call, want)                                              \
    do {                                                                       \
        int rc_ = (call);                                                      \
        fassert(rc_ == (want), "%s returned %d (%s), wanted %d: %s", #call,    \
                rc_, marin_strerror(rc_), (int)(want), marin_last_error());    \
    } while (0)

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/marin-fault-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_msg(mkdtemp(g_dir) != NULL, "mkdtemp: %s", strerror(errno));
    static unsigned n;
    snprintf(g_ns, sizeof g_ns, "fault-%ld-%u", (long)getpid(), ++n);
}

static void teardown(void)
{
    const char *v = getenv("MARIN_TEST_VERBOSE");
    if (v && strcmp(v, "1") == 0)
        dump_logs();
    for (size_t i = 0; i < g_nworkers; i++)
        if (g_workers[i].pid > 0) {
            kill(g_workers[i].pid, SIGKILL);
            waitpid(g_workers[i].pid, NULL, 0);
            g_workers[i].pid = 0;
        }
    g_nworkers = 0;
    if (g_fx_up) {
        redis_fixture_stop(&g_fx);
        g_fx_up = 0;
    }
    if (g_dir[0]) {
        nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        g_dir[0] = '\0';
    }
}

static void start_redis(const char *password)
{
    ck_assert_msg(redis_fixture_start(&g_fx, password) == 0, "redis-server did not start");
    g_fx_up = 1;
}

static void uri_ns(char *buf, size_t cap, const char *ns)
{
    redis_fixture_uri(&g_fx, buf, cap, ns, TIMINGS);
}

static const char *env_path(const char *var)
{
    const char *v = getenv(var);
    ck_assert_msg(v && *v, "%s is not set (tests/meson.build sets it)", var);
    ck_assert_msg(access(v, R_OK) == 0, "%s=%s: %s", var, v, strerror(errno));
    return v;
}

/* Start marin-worker with @p nargs extra arguments; stderr (and stdout) to
 * a log in the case's directory. @p extra_env: "K=V" or NULL. */
static worker *spawn_worker_argv(const char *name, const char *extra_env, int nargs,
                                 const char *const *args)
{
    ck_assert(g_nworkers < sizeof g_workers / sizeof g_workers[0]);
    const char *bin = env_path("MARIN_WORKER_BIN");
    worker *w = &g_workers[g_nworkers++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->log, sizeof w->log, "%s/worker-%s-%zu.log", g_dir, name, g_nworkers);
    const char *argv[32];
    int k = 0;
    argv[k++] = bin;
    for (int i = 0; i < nargs && k < 31; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || null < 0)
            _exit(125);
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("MARIN_LOG", "info", 1);
        unsetenv("MARIN_BACKEND");
        if (extra_env)
            putenv((char *)extra_env);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    w->pid = pid;
    return w;
}

/* A worker on the case's namespace (or @p ns) with the fault plugin. */
static worker *spawn_worker(const char *ns, const char *name, const char *resources,
                            const char *drain_ms)
{
    static char uri[8][512];
    char *u = uri[g_nworkers % 8];
    uri_ns(u, 512, ns ? ns : g_ns);
    const char *args[12];
    int k = 0;
    args[k++] = "--backend";
    args[k++] = u;
    args[k++] = "--load";
    args[k++] = env_path("MARIN_FAULT_PLUGIN");
    args[k++] = "--resources";
    args[k++] = resources;
    args[k++] = "--name";
    args[k++] = name;
    if (drain_ms) {
        args[k++] = "--drain-ms";
        args[k++] = drain_ms;
    }
    return spawn_worker_argv(name, NULL, k, args);
}

/* Reap @p w if it exited; 1 when it has (w->status set). */
static int reaped(worker *w)
{
    if (w->pid <= 0)
        return 1;
    pid_t r = waitpid(w->pid, &w->status, WNOHANG);
    if (r == w->pid) {
        w->pid = 0;
        return 1;
    }
    return 0;
}

/* Wait up to @p ms for @p w to exit; 1 when it did. */
static int wait_exit(worker *w, int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (!reaped(w)) {
        if (now_ms() > end)
            return 0;
        sleep_ms(5);
    }
    return 1;
}

static char *read_file(const char *path)
{
    static char buf[65536];
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return buf;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static int file_has(const char *path, const char *needle)
{
    return strstr(read_file(path), needle) != NULL;
}

/* Wait until @p w's log contains @p needle; fails the case if @p w exits
 * first or the time runs out. */
static void wait_log(worker *w, const char *needle, int64_t ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        if (file_has(w->log, needle))
            return;
        fassert(!reaped(w), "worker %s exited (status 0x%x) before its log said '%s'",
                w->name, w->status, needle);
        fassert(now_ms() < end, "worker %s: no '%s' in its log within %lld ms", w->name,
                needle, (long long)ms);
        sleep_ms(10);
    }
}

static void wait_ready(worker *w)
{
    wait_log(w, "ready", 10000);
}

/* Lines of @p path starting with @p prefix (e.g. "start 3 "). */
static int count_lines(const char *path, const char *prefix)
{
    const char *p = read_file(path);
    int n = 0;
    size_t len = strlen(prefix);
    while (*p) {
        if (strncmp(p, prefix, len) == 0)
            n++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

static int wait_lines(const char *path, const char *prefix, int want, int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (count_lines(path, prefix) < want) {
        if (now_ms() > end)
            return 0;
        sleep_ms(5);
    }
    return 1;
}

static marin_runtime_t *open_driver(const char *ns)
{
    char uri[512];
    uri_ns(uri, sizeof uri, ns ? ns : g_ns);
    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open(uri, &rt);
    fassert(rc == MARIN_OK, "marin_runtime_open(%s): %d (%s): %s", uri, rc,
            marin_strerror(rc), marin_last_error());
    return rt;
}

static marin_future_t *submit(marin_runtime_t *rt, const char *task, const char *arg)
{
    marin_future_t *f = NULL;
    int rc = marin_submit(rt, task, arg, arg ? strlen(arg) : 0, NULL, &f);
    fassert(rc == MARIN_OK, "marin_submit(%s): %d (%s): %s", task, rc, marin_strerror(rc),
            marin_last_error());
    return f;
}

/* Wait for @p f and check it succeeded with @p want (NULL: any bytes). */
static void expect_ok(marin_future_t *f, int64_t ms, const char *want, const char *what)
{
    const void *data = NULL;
    size_t len = 0;
    int rc = marin_future_get(f, ms, &data, &len);
    fassert(rc == MARIN_OK, "%s: marin_future_get returned %d (%s): %s", what, rc,
            marin_strerror(rc), rc == MARIN_ETIMEDOUT ? "still running" : marin_last_error());
    if (want)
        fassert(len == strlen(want) && (len == 0 || memcmp(data, want, len) == 0),
                "%s: result '%.*s', wanted '%s'", what, (int)len, (const char *)data, want);
}

/* ---- Redis, structured ---- */

static redisContext *rconnect(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_fx.port, tv);
    fassert(c && !c->err, "cannot connect to redis on port %d", g_fx.port);
    redisSetTimeout(c, tv);
    if (g_fx.password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", g_fx.password);
        if (r)
            freeReplyObject(r);
    }
    return c;
}

static redisReply *rcmd(const char *fmt, ...)
{
    redisContext *c = rconnect();
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    fassert(r != NULL, "redis command '%s' failed: %s", fmt, c->errstr);
    redisFree(c);
    fassert(r->type != REDIS_REPLY_ERROR, "redis command '%s': %s", fmt, r->str);
    return r;
}

static long long rint_(const char *fmt, const char *a)
{
    redisReply *r = rcmd(fmt, a);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* The value of field @p name in a stream entry's field array, or NULL. */
static const redisReply *sfield(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            fields->element[i]->len == strlen(name) &&
            memcmp(fields->element[i]->str, name, fields->element[i]->len) == 0)
            return fields->element[i + 1];
    return NULL;
}

static int sfield_is(const redisReply *fields, const char *name, const char *want)
{
    const redisReply *v = sfield(fields, name);
    return v && v->type == REDIS_REPLY_STRING && v->len == strlen(want) &&
           memcmp(v->str, want, v->len) == 0;
}

/* ---- 1. kill -9 a worker mid-task ---- */

START_TEST(test_kill9_worker_mid_task)
{
    start_redis(NULL);
    worker *a = spawn_worker(NULL, "A", "cpus=1", NULL);
    wait_ready(a);
    marin_runtime_t *rt = open_driver(NULL);
    char path[300], arg[400];
    snprintf(path, sizeof path, "%s/runs", g_dir);
    snprintf(arg, sizeof arg, "%s|1500|t1", path);
    marin_future_t *f = submit(rt, "f_attempt", arg);
    fassert(wait_lines(path, "start ", 1, 10000), "the task never started on A: '%s'",
            read_file(path));
    char want[64];
    snprintf(want, sizeof want, "start t1 %ld 1\n", (long)a->pid);
    fassert(strcmp(read_file(path), want) == 0, "runs: '%s', wanted '%s'",
            read_file(path), want);
    worker *b = spawn_worker(NULL, "B", "cpus=1", NULL);
    wait_ready(b);
    kill(a->pid, SIGKILL);
    fassert(wait_exit(a, 5000), "A survived kill -9");
    int64_t t0 = now_ms();
    expect_ok(f, 15000, "2", "the task after its worker died");
    int64_t took = now_ms() - t0;
    /* nothing runs it a third time */
    sleep_ms(1000);
    char runs[512];
    snprintf(runs, sizeof runs, "%s", read_file(path));
    fassert(count_lines(path, "start ") == 2 && count_lines(path, "end ") == 1,
            "runs (wanted two starts, one end) after %lld ms:\n%s", (long long)took, runs);
    char line[64];
    snprintf(line, sizeof line, "start t1 %ld 2\n", (long)b->pid);
    fassert(strstr(runs, line), "no '%s' in runs:\n%s", line, runs);
    snprintf(line, sizeof line, "end t1 %ld 2\n", (long)b->pid);
    fassert(strstr(runs, line), "no '%s' in runs:\n%s", line, runs);
    /* Outcomes ever written to the driver's done stream (it deletes what it
     * has read): A's death (MARIN_EWORKER, by the reclaim) and B's result;
     * a second result would make three. entries-added: Redis >= 7.0. */
    char pat[128];
    snprintf(pat, sizeof pat, "marin:{%s}:done:*", g_ns);
    redisReply *keys = rcmd("KEYS %s", pat);
    fassert(keys->type == REDIS_REPLY_ARRAY && keys->elements == 1,
            "%zu done streams, wanted 1", keys->elements);
    redisReply *info = rcmd("XINFO STREAM %s", keys->element[0]->str);
    const redisReply *added = sfield(info, "entries-added");
    if (added && added->type == REDIS_REPLY_INTEGER)
        fassert(added->integer == 2, "%lld outcomes were written to the done stream, "
                "wanted 2 (A's death, B's result)", (long long)added->integer);
    else
        fprintf(stderr, "note: Redis before 7.0 has no entries-added; outcome count not "
                "checked\n");
    freeReplyObject(info);
    freeReplyObject(keys);
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 2. a long task on a live worker runs once ---- */

START_TEST(test_long_task_not_reclaimed)
{
    start_redis(NULL);
    /* B stands idle beside A: if A's entry looked dead, B would take it. */
    worker *a = spawn_worker(NULL, "A", "cpus=1", NULL);
    worker *b = spawn_worker(NULL, "B", "cpus=1", NULL);
    wait_ready(a);
    wait_ready(b);
    marin_runtime_t *rt = open_driver(NULL);
    char path[300], arg[400];
    snprintf(path, sizeof path, "%s/runs", g_dir);
    snprintf(arg, sizeof arg, "%s|2000|long", path);
    marin_future_t *f = submit(rt, "f_attempt", arg);
    expect_ok(f, 15000, "1", "a 2000 ms task (worker_ttl_ms=600, reclaim_ms=200)");
    sleep_ms(500);
    const char *runs = read_file(path);
    fassert(count_lines(path, "start ") == 1 && count_lines(path, "end ") == 1,
            "the task ran more than once (or not at all):\n%s", runs);
    fassert(count_lines(path, "start long ") == 1 && strstr(runs, " 1\nend long "),
            "unexpected runs:\n%s", runs);
    fassert(!reaped(a) && !reaped(b), "a worker exited");
    marin_future_release(f);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 3. SIGTERM drains ---- */

START_TEST(test_sigterm_drain)
{
    start_redis(NULL);
    worker *a = spawn_worker(NULL, "A", "cpus=3", "3000");
    wait_ready(a);
    pid_t pid_a = a->pid;
    marin_runtime_t *rt = open_driver(NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/runs", g_dir);
    enum { N = 7 };
    marin_future_t *f[N];
    for (int i = 0; i < N; i++) {
        char arg[400];
        snprintf(arg, sizeof arg, "%s|500|d%d", path, i);
        f[i] = submit(rt, "f_attempt", arg);
    }
    fassert(wait_lines(path, "start ", 3, 10000), "3 tasks did not start on A:\n%s",
            read_file(path));
    sleep_ms(50);
    fassert(count_lines(path, "start ") == 3, "A (cpus=3) runs more than 3 tasks:\n%s",
            read_file(path));
    char running[3][8];
    {
        const char *p = read_file(path);
        for (int i = 0; i < 3; i++) {
            fassert(sscanf(p, "start %7s", running[i]) == 1, "bad line in runs: %s", p);
            p = strchr(p, '\n') + 1;
        }
    }
    int64_t t0 = now_ms();
    kill(a->pid, SIGTERM);
    worker *b = spawn_worker(NULL, "B", "cpus=3", NULL);
    fassert(wait_exit(a, 6000), "A did not exit within 6 s of SIGTERM");
    int64_t took = now_ms() - t0;
    fassert(WIFEXITED(a->status) && WEXITSTATUS(a->status) == 0,
            "A exited with status 0x%x after SIGTERM, wanted exit 0", a->status);
    fassert(took < 3000, "A took %lld ms to drain (drain period 3000 ms, tasks of 500 ms)",
            (long long)took);
    wait_ready(b);
    for (int i = 0; i < N; i++) {
        char what[32];
        snprintf(what, sizeof what, "task d%d", i);
        expect_ok(f[i], 15000, NULL, what);
    }
    sleep_ms(300);
    const char *runs = read_file(path);
    char copy[8192];
    snprintf(copy, sizeof copy, "%s", runs);
    for (int i = 0; i < N; i++) {
        char s[32], e[32];
        snprintf(s, sizeof s, "start d%d ", i);
        snprintf(e, sizeof e, "end d%d ", i);
        fassert(count_lines(path, s) == 1 && count_lines(path, e) == 1,
                "task d%d ran %d times (ended %d):\n%s", i, count_lines(path, s),
                count_lines(path, e), copy);
    }
    /* the three running on A finished there, during the drain */
    for (int i = 0; i < 3; i++) {
        char e[64];
        snprintf(e, sizeof e, "end %s %ld ", running[i], (long)pid_a);
        fassert(count_lines(path, e) == 1, "task %s, running on A at SIGTERM, did not "
                "finish on A:\n%s", running[i], copy);
    }
    /* the queued ones ran on B */
    int on_b = 0;
    for (int i = 0; i < N; i++) {
        char e[64];
        snprintf(e, sizeof e, "end d%d %ld ", i, (long)b->pid);
        on_b += count_lines(path, e);
    }
    fassert(on_b == N - 3, "%d of the %d queued tasks ran on B:\n%s", on_b, N - 3, copy);
    for (int i = 0; i < N; i++)
        marin_future_release(f[i]);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 4. Redis kill -9 and restart mid-run ---- */

START_TEST(test_redis_restart_mid_run)
{
    start_redis(NULL);
    worker *a = spawn_worker(NULL, "A", "cpus=2", NULL);
    worker *b = spawn_worker(NULL, "B", "cpus=2", NULL);
    wait_ready(a);
    wait_ready(b);
    marin_runtime_t *rt = open_driver(NULL);
    enum { N = 200 };
    marin_future_t *f[N];
    for (int i = 0; i < N; i++)
        f[i] = submit(rt, "f_sleep", "20");
    sleep_ms(100);
    int done = 0;
    for (int i = 0; i < N; i++)
        done += marin_future_state(f[i]) == MARIN_FUTURE_SUCCEEDED;
    fassert(done < N, "all %d tasks finished before Redis was killed: nothing tested", N);
    redis_fixture_kill(&g_fx);
    sleep_ms(500);
    fassert(redis_fixture_restart(&g_fx) == 0, "redis-server did not restart");
    int64_t end = now_ms() + 40000;
    for (int i = 0; i < N; i++) {
        char what[32];
        snprintf(what, sizeof what, "task %d of %d", i, N);
        int64_t left = end - now_ms();
        expect_ok(f[i], left > 0 ? left : 0, "20", what);
    }
    fassert(!reaped(a) && !reaped(b), "a worker exited across the Redis restart");
    for (int i = 0; i < N; i++)
        marin_future_release(f[i]);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 5. Redis unreachable at open ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

START_TEST(test_unreachable_at_open)
{
    int port = free_port();
    ck_assert_int_gt(port, 0);
    char uri[512], addr[64];
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d?namespace=%s&%s", port, g_ns, TIMINGS);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    marin_runtime_t *rt = (marin_runtime_t *)1;
    int64_t t0 = now_ms();
    int rc = marin_runtime_open(uri, &rt);
    int64_t took = now_ms() - t0;
    ck_assert_msg(rc == MARIN_EUNAVAILABLE, "open returned %d (%s), wanted EUNAVAILABLE: %s",
                  rc, marin_strerror(rc), marin_last_error());
    ck_assert_msg(rt == NULL, "*out is not NULL after a failed open");
    ck_assert_lasterr_has(addr);
    ck_assert_msg(took < 10000, "open took %lld ms to give up (connect_timeout_ms=1000)",
                  (long long)took);
}
END_TEST

/* ---- 6. wrong password ---- */

START_TEST(test_wrong_password)
{
    start_redis("right-pass");
    char uri[512];
    snprintf(uri, sizeof uri, "redis://default:wrong-pass@127.0.0.1:%d?namespace=%s&%s",
             g_fx.port, g_ns, TIMINGS);
    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open(uri, &rt);
    fassert(rc == MARIN_EAUTH, "open with a wrong password returned %d (%s): %s", rc,
            marin_strerror(rc), marin_last_error());
    fassert(rt == NULL, "*out is not NULL after a failed open");
    const char *m = marin_last_error();
    fassert((strcasestr(m, "authentication") || strcasestr(m, "password")) &&
                strcasestr(m, "refused"),
            "the message does not say the authentication was refused: '%s'", m);
    fassert(strstr(m, "wrong-pass") == NULL, "the message shows the password: '%s'", m);
    /* no password at all */
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d?namespace=%s&%s", g_fx.port, g_ns,
             TIMINGS);
    rc = marin_runtime_open(uri, &rt);
    fassert(rc == MARIN_EAUTH, "open without a password returned %d (%s): %s", rc,
            marin_strerror(rc), marin_last_error());
    /* the right one opens */
    rt = open_driver(NULL);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 7. a foreign entry goes to the dead-letter stream ---- */

/* Wait until the dead-letter stream holds @p n entries; returns XRANGE. */
static redisReply *wait_dead(const char *dead, size_t n)
{
    int64_t end = now_ms() + 10000;
    for (;;) {
        redisReply *r = rcmd("XRANGE %s - +", dead);
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= n)
            return r;
        size_t have = r->elements;
        freeReplyObject(r);
        fassert(now_ms() < end, "%s holds %zu entries after 10 s, wanted %zu", dead, have, n);
        sleep_ms(20);
    }
}

static void check_dead(const redisReply *e, const char *queue, const char *id,
                       const char *reason_has, const char *raw_field)
{
    const redisReply *fl = e->element[1];
    fassert(sfield_is(fl, "queue", queue), "dead entry's queue is not %s", queue);
    fassert(sfield_is(fl, "id", id), "dead entry's id is not %s", id);
    const redisReply *why = sfield(fl, "reason");
    fassert(why && why->type == REDIS_REPLY_STRING && why->len > 0,
            "dead entry has no reason");
    fassert(strstr(why->str, reason_has), "dead entry's reason '%s' lacks '%s'", why->str,
            reason_has);
    fassert(sfield_is(fl, "worker", "A"), "dead entry's worker is not A");
    fassert(sfield(fl, raw_field) != NULL, "dead entry lost the raw field '%s'", raw_field);
}

START_TEST(test_foreign_entry_dead_letter)
{
    start_redis(NULL);
    worker *a = spawn_worker(NULL, "A", "cpus=1", NULL);
    wait_ready(a);
    marin_runtime_t *rt = open_driver(NULL);
    marin_future_t *f = submit(rt, "f_noop", NULL);
    expect_ok(f, 10000, "", "the first f_noop");
    marin_future_release(f);
    char queue[256], dead[256];
    snprintf(queue, sizeof queue, "marin:{%s}:q:f_noop:cpus=1", g_ns);
    snprintf(dead, sizeof dead, "marin:{%s}:dead", g_ns);
    fassert(rint_("EXISTS %s", queue) == 1, "no queue %s after a task ran", queue);

    /* garbage fields */
    redisReply *r = rcmd("XADD %s * garbage xyz junk 1", queue);
    char id1[64];
    snprintf(id1, sizeof id1, "%s", r->str);
    freeReplyObject(r);
    redisReply *d = wait_dead(dead, 1);
    fassert(d->elements == 1, "%zu dead entries, wanted 1", d->elements);
    check_dead(d->element[0], queue, id1, "not a marin task entry", "field:garbage");
    freeReplyObject(d);

    /* the right fields around a frame that is not one */
    r = rcmd("XADD %s * d r0123456789ab s 7 a 1 f %b", queue, "\x01\x02garbage\xff", 10);
    char id2[64];
    snprintf(id2, sizeof id2, "%s", r->str);
    freeReplyObject(r);
    d = wait_dead(dead, 2);
    fassert(d->elements == 2, "%zu dead entries, wanted 2", d->elements);
    check_dead(d->element[1], queue, id2, "corrupt", "field:f");
    freeReplyObject(d);

    /* the worker goes on */
    f = submit(rt, "f_noop", NULL);
    expect_ok(f, 10000, "", "f_noop after the foreign entries");
    marin_future_release(f);
    fassert(!reaped(a), "A exited after a foreign entry (status 0x%x)", a->status);
    /* nothing left pending or in the queue */
    r = rcmd("XPENDING %s w", queue);
    fassert(r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 0,
            "entries still pending in %s", queue);
    freeReplyObject(r);
    fassert(rint_("XLEN %s", queue) == 0, "entries left in %s", queue);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 8. namespaces are apart ---- */

START_TEST(test_namespaces_apart)
{
    start_redis(NULL);
    char ns_a[80], ns_b[80];
    snprintf(ns_a, sizeof ns_a, "%s-a", g_ns);
    snprintf(ns_b, sizeof ns_b, "%s-b", g_ns);
    worker *a = spawn_worker(ns_a, "A", "cpus=1", NULL);
    wait_ready(a);
    marin_runtime_t *rt_a = open_driver(ns_a);
    marin_runtime_t *rt_b = open_driver(ns_b);
    char path[300], arg[400];
    snprintf(path, sizeof path, "%s/runs", g_dir);
    snprintf(arg, sizeof arg, "%s|0|b", path);
    int64_t t0 = now_ms();
    marin_future_t *fb = submit(rt_b, "f_noop", NULL);
    marin_future_t *fb2 = submit(rt_b, "f_attempt", arg);
    marin_future_t *fa = submit(rt_a, "f_noop", NULL);
    expect_ok(fa, 10000, "", "f_noop in namespace A");

    const char *names[] = {"f_noop", "f_attempt"};
    marin_future_t *fbs[] = {fb, fb2};
    for (int i = 0; i < 2; i++) {
        int rc = marin_future_get(fbs[i], GRACE_MS + 10000, NULL, NULL);
        int64_t took = now_ms() - t0;
        fassert(rc == MARIN_ENOTFOUND, "%s in namespace B returned %d (%s), wanted "
                "ENOTFOUND: %s", names[i], rc, marin_strerror(rc), marin_last_error());
        fassert(strstr(marin_future_error(fbs[i]), names[i]),
                "the error does not name the task %s: '%s'", names[i],
                marin_future_error(fbs[i]));
        fassert(took >= GRACE_MS - 200, "%s failed after %lld ms, before grace_ms=%d",
                names[i], (long long)took, GRACE_MS);
    }
    fassert(access(path, F_OK) != 0, "namespace A's worker ran B's task:\n%s",
            read_file(path));
    char key[200];
    snprintf(key, sizeof key, "marin:{%s}:workers", ns_b);
    fassert(rint_("HLEN %s", key) == 0, "a worker is registered in namespace B");
    fassert(!reaped(a), "A exited");
    marin_future_release(fa);
    marin_future_release(fb);
    marin_future_release(fb2);
    marin_runtime_close(rt_b);
    marin_runtime_close(rt_a);
}
END_TEST

/* ---- 9. marin-worker refuses broken plugins ---- */

static void expect_refused(worker *w, const char *needle1, const char *needle2)
{
    fassert(wait_exit(w, 10000), "marin-worker %s still runs", w->name);
    fassert(WIFEXITED(w->status) && WEXITSTATUS(w->status) != 0,
            "marin-worker %s: status 0x%x, wanted a non-zero exit", w->name, w->status);
    const char *log = read_file(w->log);
    fassert(strstr(log, needle1) && strstr(log, needle2), "marin-worker %s: log lacks "
            "'%s' and '%s':\n%s", w->name, needle1, needle2, log);
}

START_TEST(test_worker_bad_plugins)
{
    start_redis(NULL); /* a live backend: a worker that ignored the fault would serve */
    char uri[512], missing[300];
    uri_ns(uri, sizeof uri, g_ns);
    snprintf(missing, sizeof missing, "%s/no-such-plugin.so", g_dir);
    const char *plugin = env_path("MARIN_FAULT_PLUGIN");

    const char *a1[] = {"--backend", uri, "--load", missing, "--resources", "cpus=1"};
    expect_refused(spawn_worker_argv("missing", NULL, 6, a1), "cannot load plugin", missing);

    const char *a2[] = {"--backend", uri, "--load", plugin, "--resources", "cpus=1"};
    expect_refused(spawn_worker_argv("initfail", "FAULT_PLUGIN_FAIL=1", 6, a2),
                   "marin_plugin_init", "failed");

    /* a library that is not a plugin */
    const char *a3[] = {"--backend", uri, "--load", "libm.so.6", "--resources", "cpus=1"};
    expect_refused(spawn_worker_argv("noinit", NULL, 6, a3), "marin_plugin_init",
                   "libm.so.6");

    /* no worker registered in the namespace */
    char key[200];
    snprintf(key, sizeof key, "marin:{%s}:workers", g_ns);
    fassert(rint_("HLEN %s", key) == 0, "a refused worker registered itself");
}
END_TEST

/* ---- 10. actors: a host killed under them ---- */

static marin_actor_options_t *actor_opts(const char *name, int max_restarts,
                                         int64_t ckpt_every, int detached, int get_if_exists)
{
    marin_actor_options_t *o = NULL;
    fassert_marin(marin_actor_options_create(&o), MARIN_OK);
    if (name)
        fassert_marin(marin_actor_options_set_name(o, name), MARIN_OK);
    fassert_marin(marin_actor_options_set_max_restarts(o, max_restarts), MARIN_OK);
    if (ckpt_every)
        fassert_marin(marin_actor_options_set_checkpoint_every(o, ckpt_every), MARIN_OK);
    if (detached)
        fassert_marin(marin_actor_options_set_detached(o, 1), MARIN_OK);
    if (get_if_exists)
        fassert_marin(marin_actor_options_set_get_if_exists(o, 1), MARIN_OK);
    return o;
}

static marin_actor_t *create_actor(marin_runtime_t *rt, const char *cls,
                                   const marin_actor_options_t *o)
{
    marin_actor_t *a = NULL;
    int rc = marin_actor_create(rt, cls, NULL, 0, o, &a);
    fassert(rc == MARIN_OK, "marin_actor_create(%s): %d (%s): %s", cls, rc,
            marin_strerror(rc), marin_last_error());
    return a;
}

static marin_future_t *acall(marin_actor_t *a, const char *method, const char *arg)
{
    marin_future_t *f = NULL;
    int rc = marin_actor_call(a, method, arg, arg ? strlen(arg) : 0, &f);
    fassert(rc == MARIN_OK, "marin_actor_call(%s, %s): %d (%s): %s", marin_actor_id(a),
            method, rc, marin_strerror(rc), marin_last_error());
    return f;
}

/* Call and wait for a result equal to @p want. */
static void expect_call(marin_actor_t *a, const char *method, const char *arg,
                        const char *want)
{
    char what[128];
    snprintf(what, sizeof what, "%s(%s) on actor %s", method, arg ? arg : "",
             marin_actor_id(a));
    marin_future_t *f = acall(a, method, arg);
    expect_ok(f, 10000, want, what);
    marin_future_release(f);
}

/* A field of the actor's hash, as redis_fixture_cmd gives it. */
static const char *actor_field(marin_actor_t *a, const char *field)
{
    static char buf[1024];
    char key[256];
    snprintf(key, sizeof key, "marin:{%s}:actor:%s", g_ns, marin_actor_id(a));
    fassert(redis_fixture_cmd(&g_fx, buf, sizeof buf, "HGET %s %s", key, field) == 0,
            "HGET %s %s: %s", key, field, buf);
    return buf;
}

static const char *ltext(long v)
{
    static char b[8][32];
    static unsigned i;
    char *p = b[i++ % 8];
    snprintf(p, 32, "%ld", v);
    return p;
}

START_TEST(test_actor_host_killed_restarts_elsewhere)
{
    start_redis(NULL);
    worker *a = spawn_worker(NULL, "A", "cpus=1", NULL);
    wait_ready(a);
    marin_runtime_t *rt = open_driver(NULL);
    marin_actor_options_t *o = actor_opts(NULL, 2, 1, 0, 0);
    marin_actor_t *act = create_actor(rt, "f_counter", o);
    marin_actor_options_destroy(o);
    fassert_marin(marin_actor_ready(act, 10000), MARIN_OK);
    expect_call(act, "pid", NULL, ltext((long)a->pid));
    for (long i = 1; i <= 10; i++)
        expect_call(act, "add", "1", ltext(i));
    fassert(strcmp(actor_field(act, "host"), "A") == 0, "host is '%s', wanted A",
            actor_field(act, "host"));

    worker *b = spawn_worker(NULL, "B", "cpus=1", NULL);
    wait_ready(b);
    /* A call running on A when it dies. */
    char path[300], arg[400];
    snprintf(path, sizeof path, "%s/naps", g_dir);
    snprintf(arg, sizeof arg, "%s|20000", path);
    marin_future_t *nap = acall(act, "nap", arg);
    fassert(wait_lines(path, "nap ", 1, 10000), "the nap never started on A");
    kill(a->pid, SIGKILL);
    fassert(wait_exit(a, 5000), "A survived kill -9");
    int64_t t0 = now_ms();

    /* The next add: retried while it fails with MARIN_EWORKER (a call the
     * dead host had taken); the first that succeeds continues from 10. */
    int tries = 0, rc;
    for (;;) {
        marin_future_t *f = acall(act, "add", "1");
        const void *data = NULL;
        size_t len = 0;
        tries++;
        rc = marin_future_get(f, 10000, &data, &len);
        int64_t took = now_ms() - t0;
        if (rc == MARIN_EWORKER && took < 5000) {
            marin_future_release(f);
            continue;
        }
        fassert(rc == MARIN_OK, "add after A died (try %d, %lld ms after the kill): %d (%s): "
                "%s", tries, (long long)took, rc, marin_strerror(rc),
                rc == MARIN_ETIMEDOUT ? "still waiting" : marin_future_error(f));
        fassert(len == 2 && memcmp(data, "11", 2) == 0, "the first add after the restart "
                "returned '%.*s', wanted 11 (the checkpoint held 10)", (int)len,
                (const char *)data);
        fassert(took < 5000, "the actor took %lld ms to serve again after A died "
                "(worker_ttl_ms=600)", (long long)took);
        marin_future_release(f);
        break;
    }
    /* The call A was running failed with MARIN_EWORKER (not replayed: nap
     * is not idempotent). */
    rc = marin_future_get(nap, 5000, NULL, NULL);
    fassert(rc == MARIN_EWORKER, "the call running on A returned %d (%s), wanted EWORKER: %s",
            rc, marin_strerror(rc),
            rc == MARIN_ETIMEDOUT ? "still waiting" : marin_future_error(nap));
    marin_future_release(nap);

    for (long i = 12; i <= 20; i++)
        expect_call(act, "add", "1", ltext(i));
    expect_call(act, "get", NULL, "20");
    expect_call(act, "pid", NULL, ltext((long)b->pid));
    fassert_marin(marin_actor_ready(act, 5000), MARIN_OK);
    fassert(strcmp(actor_field(act, "host"), "B") == 0, "host is '%s' after the restart, "
            "wanted B", actor_field(act, "host"));
    fassert(strcmp(actor_field(act, "state"), "alive") == 0, "state is '%s', wanted alive",
            actor_field(act, "state"));
    fassert(strcmp(actor_field(act, "restarts"), "1") == 0, "restarts is '%s', wanted 1",
            actor_field(act, "restarts"));
    fassert(count_lines(path, "nap ") == 1, "the nap ran again:\n%s", read_file(path));
    fassert(!reaped(b), "B exited (status 0x%x)", b->status);
    fassert_marin(marin_actor_kill(act, 1), MARIN_OK);
    marin_actor_release(act);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 11. actors: a host dies with max_restarts spent ---- */

START_TEST(test_actor_host_killed_no_restarts)
{
    start_redis(NULL);
    worker *a = spawn_worker(NULL, "A", "cpus=1", NULL);
    wait_ready(a);
    marin_runtime_t *rt = open_driver(NULL);
    marin_actor_options_t *o = actor_opts("doomed", 0, 1, 0, 0);
    marin_actor_t *act = create_actor(rt, "f_counter", o);
    fassert_marin(marin_actor_ready(act, 10000), MARIN_OK);
    expect_call(act, "add", "1", "1");
    worker *b = spawn_worker(NULL, "B", "cpus=1", NULL); /* its reaper notices */
    wait_ready(b);
    kill(a->pid, SIGKILL);
    fassert(wait_exit(a, 5000), "A survived kill -9");
    int64_t t0 = now_ms();

    /* A call made now fails: at once (MARIN_ESTATE) or on its future
     * (MARIN_EWORKER). */
    marin_future_t *f = NULL;
    int rc = marin_actor_call(act, "add", "1", 1, &f);
    if (rc == MARIN_OK) {
        rc = marin_future_get(f, 5000, NULL, NULL);
        fassert(rc == MARIN_EWORKER, "a call after its host died (max_restarts 0) returned "
                "%d (%s) after %lld ms, wanted EWORKER: %s", rc, marin_strerror(rc),
                (long long)(now_ms() - t0),
                rc == MARIN_ETIMEDOUT ? "still waiting" : marin_future_error(f));
        marin_future_release(f);
    } else {
        fassert(rc == MARIN_ESTATE, "marin_actor_call after its host died returned %d (%s), "
                "wanted ESTATE: %s", rc, marin_strerror(rc), marin_last_error());
    }
    rc = marin_actor_ready(act, 5000);
    int64_t took = now_ms() - t0;
    fassert(rc == MARIN_EWORKER, "marin_actor_ready after its host died (max_restarts 0) "
            "returned %d (%s) after %lld ms, wanted EWORKER: %s", rc, marin_strerror(rc),
            (long long)took, marin_last_error());
    fassert(took < 5000, "it took %lld ms to learn the actor is dead", (long long)took);
    fassert(strcmp(actor_field(act, "state"), "dead") == 0, "state is '%s', wanted dead",
            actor_field(act, "state"));
    /* Later calls fail too. */
    f = NULL;
    rc = marin_actor_call(act, "get", NULL, 0, &f);
    if (rc == MARIN_OK) {
        rc = marin_future_get(f, 5000, NULL, NULL);
        fassert(rc == MARIN_EWORKER, "a call to the dead actor returned %d (%s), wanted "
                "EWORKER: %s", rc, marin_strerror(rc),
                rc == MARIN_ETIMEDOUT ? "still waiting" : marin_future_error(f));
        marin_future_release(f);
    } else {
        fassert(rc == MARIN_ESTATE, "marin_actor_call on the dead actor returned %d (%s), "
                "wanted ESTATE: %s", rc, marin_strerror(rc), marin_last_error());
    }
    /* Its name is free, and a new actor takes it. */
    marin_actor_t *other = NULL;
    fassert_marin(marin_actor_lookup(rt, "doomed", &other), MARIN_ENOTFOUND);
    fassert_marin(marin_actor_from_id(rt, marin_actor_id(act), &other), MARIN_ENOTFOUND);
    marin_actor_t *again = create_actor(rt, "f_counter", o);
    marin_actor_options_destroy(o);
    fassert(strcmp(marin_actor_id(again), marin_actor_id(act)) != 0,
            "the new actor has the dead one's id");
    fassert_marin(marin_actor_ready(again, 10000), MARIN_OK);
    expect_call(again, "add", "1", "1");
    expect_call(again, "pid", NULL, ltext((long)b->pid));
    fassert_marin(marin_actor_kill(again, 1), MARIN_OK);
    marin_actor_release(again);
    marin_actor_release(act);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 12. actors: two driver processes, one named actor ---- */

#define ORDER_CALLS 400
#define ORDER_BATCH 50

/* A driver process: get (or create) the actor named "ordered", then
 * ORDER_CALLS steps in batches (all of a batch made, then gotten); writes
 * the actor id into DIR/id-CALLER. Exit 0, or 1 with the reason on
 * stderr. */
static int order_driver(const char *caller, int go_fd)
{
    char uri[512];
    uri_ns(uri, sizeof uri, g_ns);
    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open(uri, &rt);
    if (rc != MARIN_OK) {
        fprintf(stderr, "caller %s: marin_runtime_open: %s: %s\n", caller, marin_strerror(rc),
                marin_last_error());
        return 1;
    }
    marin_actor_options_t *o = NULL;
    marin_actor_options_create(&o);
    marin_actor_options_set_name(o, "ordered");
    marin_actor_options_set_get_if_exists(o, 1);
    marin_actor_options_set_detached(o, 1);
    char go;
    if (read(go_fd, &go, 1) != 1) {
        fprintf(stderr, "caller %s: no go\n", caller);
        return 1;
    }
    marin_actor_t *a = NULL;
    int bad = 0;
    rc = marin_actor_create(rt, "f_order", NULL, 0, o, &a);
    marin_actor_options_destroy(o);
    if (rc != MARIN_OK) {
        fprintf(stderr, "caller %s: marin_actor_create(ordered, get_if_exists): %d (%s): %s\n",
                caller, rc, marin_strerror(rc), marin_last_error());
        bad = 1;
        goto out;
    }
    if ((rc = marin_actor_ready(a, 10000)) != MARIN_OK) {
        fprintf(stderr, "caller %s: marin_actor_ready: %d (%s): %s\n", caller, rc,
                marin_strerror(rc), marin_last_error());
        bad = 1;
        goto out;
    }
    char idp[400];
    snprintf(idp, sizeof idp, "%s/id-%s", g_dir, caller);
    FILE *fp = fopen(idp, "w");
    if (fp) {
        fputs(marin_actor_id(a), fp);
        fclose(fp);
    }
    for (int b = 0; b < ORDER_CALLS / ORDER_BATCH && !bad; b++) {
        marin_future_t *f[ORDER_BATCH] = {0};
        char args[ORDER_BATCH][48];
        for (int i = 0; i < ORDER_BATCH; i++) {
            snprintf(args[i], sizeof args[i], "%s %d", caller, b * ORDER_BATCH + i + 1);
            if ((rc = marin_actor_call(a, "step", args[i], strlen(args[i]), &f[i])) !=
                MARIN_OK) {
                fprintf(stderr, "caller %s: marin_actor_call(step %s): %d (%s): %s\n", caller,
                        args[i], rc, marin_strerror(rc), marin_last_error());
                bad = 1;
                break;
            }
        }
        for (int i = 0; i < ORDER_BATCH; i++) {
            if (!f[i])
                continue;
            const void *d = NULL;
            size_t len = 0;
            rc = marin_future_get(f[i], 20000, &d, &len);
            if (!bad && rc != MARIN_OK) {
                fprintf(stderr, "caller %s: step '%s': %d (%s): %s\n", caller, args[i], rc,
                        marin_strerror(rc), rc == MARIN_ETIMEDOUT ? "still waiting"
                                                                 : marin_future_error(f[i]));
                bad = 1;
            } else if (!bad && (len != strlen(args[i]) || memcmp(d, args[i], len) != 0)) {
                fprintf(stderr, "caller %s: step '%s' returned '%.*s'\n", caller, args[i],
                        (int)len, (const char *)d);
                bad = 1;
            }
            marin_future_release(f[i]);
        }
    }
out:
    marin_actor_release(a);
    marin_runtime_close(rt);
    return bad;
}

START_TEST(test_actor_two_drivers_order)
{
    start_redis(NULL);
    worker *w = spawn_worker(NULL, "A", "cpus=1", NULL);
    wait_ready(w);
    int go[2];
    fassert(pipe(go) == 0, "pipe: %s", strerror(errno));
    const char *callers[2] = {"c1", "c2"};
    pid_t pids[2];
    pid_t parent = getpid();
    for (int i = 0; i < 2; i++) {
        fflush(NULL);
        pids[i] = fork();
        fassert(pids[i] >= 0, "fork: %s", strerror(errno));
        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(126);
            close(go[1]);
            _exit(order_driver(callers[i], go[0]));
        }
    }
    close(go[0]);
    /* Both create (get_if_exists) at once. */
    fassert(write(go[1], "gg", 2) == 2, "write: %s", strerror(errno));
    close(go[1]);
    int64_t end = now_ms() + 40000;
    int status[2] = {0, 0}, done[2] = {0, 0};
    while (!(done[0] && done[1])) {
        for (int i = 0; i < 2; i++)
            if (!done[i] && waitpid(pids[i], &status[i], WNOHANG) == pids[i])
                done[i] = 1;
        if (now_ms() > end) {
            for (int i = 0; i < 2; i++)
                if (!done[i]) {
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], &status[i], 0);
                }
            fassert(0, "the callers did not finish within 40 s (%s%s)",
                    done[0] ? "" : "c1 ", done[1] ? "" : "c2");
        }
        sleep_ms(10);
    }
    for (int i = 0; i < 2; i++)
        fassert(WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0,
                "caller %s failed (status 0x%x; its reason is on stderr)", callers[i],
                status[i]);
    char id1[128], id2[128], p[400];
    snprintf(p, sizeof p, "%s/id-c1", g_dir);
    snprintf(id1, sizeof id1, "%s", read_file(p));
    snprintf(p, sizeof p, "%s/id-c2", g_dir);
    snprintf(id2, sizeof id2, "%s", read_file(p));
    fassert(id1[0] && strcmp(id1, id2) == 0, "the two callers got different actors: '%s' "
            "and '%s'", id1, id2);
    marin_runtime_t *rt = open_driver(NULL);
    marin_actor_t *a = NULL;
    fassert_marin(marin_actor_lookup(rt, "ordered", &a), MARIN_OK);
    fassert(strcmp(marin_actor_id(a), id1) == 0, "lookup gives %s, the callers had %s",
            marin_actor_id(a), id1);
    expect_call(a, "total", NULL, ltext(2L * ORDER_CALLS));
    fassert_marin(marin_actor_kill(a, 1), MARIN_OK);
    marin_actor_release(a);
    marin_runtime_close(rt);
}
END_TEST

/* ---- 13. actors: get_if_exists from two processes at once ---- */

#define RACE_ROUNDS 200

typedef struct {
    pthread_barrier_t bar; /* process-shared */
    int rc[2][RACE_ROUNDS];
    char id[2][RACE_ROUNDS][40];
    char why[2][512];      /* the first failure's message */
} race_shm;

static int race_driver(race_shm *m, int k)
{
    char uri[512];
    uri_ns(uri, sizeof uri, g_ns);
    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open(uri, &rt);
    if (rc != MARIN_OK) {
        fprintf(stderr, "racer %d: marin_runtime_open: %s: %s\n", k, marin_strerror(rc),
                marin_last_error());
        return 1;
    }
    for (int i = 0; i < RACE_ROUNDS; i++) {
        char name[32];
        snprintf(name, sizeof name, "race-%d", i);
        marin_actor_options_t *o = NULL;
        marin_actor_options_create(&o);
        marin_actor_options_set_name(o, name);
        marin_actor_options_set_get_if_exists(o, 1);
        marin_actor_options_set_detached(o, 1);
        pthread_barrier_wait(&m->bar);
        marin_actor_t *a = NULL;
        rc = marin_actor_create(rt, "f_order", NULL, 0, o, &a);
        marin_actor_options_destroy(o);
        m->rc[k][i] = rc;
        if (rc == MARIN_OK)
            snprintf(m->id[k][i], sizeof m->id[k][i], "%s", marin_actor_id(a));
        else if (!m->why[k][0])
            snprintf(m->why[k], sizeof m->why[k], "%s", marin_last_error());
        marin_actor_release(a);
    }
    marin_runtime_close(rt);
    return 0;
}

START_TEST(test_actor_get_if_exists_race)
{
    start_redis(NULL); /* no worker: marin_actor_create returns once queued */
    race_shm *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
    fassert(m != MAP_FAILED, "mmap: %s", strerror(errno));
    memset(m, 0, sizeof *m);
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    fassert(pthread_barrier_init(&m->bar, &ba, 2) == 0, "pthread_barrier_init");
    pthread_barrierattr_destroy(&ba);
    pid_t pids[2], parent = getpid();
    for (int k = 0; k < 2; k++) {
        fflush(NULL);
        pids[k] = fork();
        fassert(pids[k] >= 0, "fork: %s", strerror(errno));
        if (pids[k] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(126);
            _exit(race_driver(m, k));
        }
    }
    int64_t end = now_ms() + 60000;
    int status[2] = {0, 0}, done[2] = {0, 0};
    while (!(done[0] && done[1])) {
        for (int k = 0; k < 2; k++)
            if (!done[k] && waitpid(pids[k], &status[k], WNOHANG) == pids[k])
                done[k] = 1;
        if (now_ms() > end)
            for (int k = 0; k < 2; k++)
                if (!done[k]) {
                    kill(pids[k], SIGKILL);
                    waitpid(pids[k], &status[k], 0);
                    done[k] = 1;
                }
        sleep_ms(10);
    }
    for (int k = 0; k < 2; k++)
        fassert(WIFEXITED(status[k]) && WEXITSTATUS(status[k]) == 0,
                "racer %d failed or hung (status 0x%x)", k, status[k]);
    int failed[2] = {0, 0}, differ = 0, first = -1;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        for (int k = 0; k < 2; k++)
            if (m->rc[k][i] != MARIN_OK) {
                failed[k]++;
                if (first < 0)
                    first = i;
            }
        if (m->rc[0][i] == MARIN_OK && m->rc[1][i] == MARIN_OK &&
            strcmp(m->id[0][i], m->id[1][i]) != 0)
            differ++;
    }
    fassert(failed[0] + failed[1] == 0 && differ == 0,
            "%d rounds of two processes creating one name with get_if_exists at once: "
            "%d + %d creations failed, %d rounds gave two different actors; first failure: "
            "round %d, codes %d / %d: '%s' / '%s'",
            RACE_ROUNDS, failed[0], failed[1], differ, first,
            first >= 0 ? m->rc[0][first] : 0, first >= 0 ? m->rc[1][first] : 0, m->why[0],
            m->why[1]);
    pthread_barrier_destroy(&m->bar);
    munmap(m, sizeof *m);
}
END_TEST

#define ADD_CASE(s, name, fn)                                                  \
    do {                                                                       \
        TCase *tc_ = tcase_create(name);                                       \
        tcase_add_checked_fixture(tc_, setup, teardown);                       \
        tcase_set_timeout(tc_, 60);                                            \
        tcase_add_test(tc_, fn);                                               \
        suite_add_tcase(s, tc_);                                               \
    } while (0)

static Suite *fault_suite(void)
{
    Suite *s = suite_create("redis_fault");
    ADD_CASE(s, "kill9_worker", test_kill9_worker_mid_task);
    ADD_CASE(s, "long_task", test_long_task_not_reclaimed);
    ADD_CASE(s, "sigterm_drain", test_sigterm_drain);
    ADD_CASE(s, "redis_restart", test_redis_restart_mid_run);
    ADD_CASE(s, "unreachable", test_unreachable_at_open);
    ADD_CASE(s, "wrong_password", test_wrong_password);
    ADD_CASE(s, "dead_letter", test_foreign_entry_dead_letter);
    ADD_CASE(s, "namespaces", test_namespaces_apart);
    ADD_CASE(s, "bad_plugins", test_worker_bad_plugins);
    ADD_CASE(s, "actor_host_killed", test_actor_host_killed_restarts_elsewhere);
    ADD_CASE(s, "actor_no_restarts", test_actor_host_killed_no_restarts);
    ADD_CASE(s, "actor_two_drivers", test_actor_two_drivers_order);
    ADD_CASE(s, "actor_get_if_exists_race", test_actor_get_if_exists_race);
    return s;
}

#endif /* MARIN_TEST_HIREDIS */

int main(void)
{
#if !MARIN_TEST_HIREDIS
    fprintf(stderr, "SKIP: built without hiredis\n");
    return 77;
#else
    char bin[512];
    if (redis_fixture__find_server(bin, sizeof bin) != 0) {
        fprintf(stderr, "SKIP: redis-server not found ($MARIN_REDIS_SERVER, "
                        "/usr/bin/redis-server, PATH)\n");
        return 77;
    }
    unsetenv("MARIN_TEST_BACKEND");
    unsetenv("MARIN_BACKEND");
    /* libmarin without the redis backend: nothing to test */
    marin_runtime_t *rt = NULL;
    if (marin_runtime_open("redis://127.0.0.1:1?connect_timeout_ms=50", &rt) ==
        MARIN_ENOBACKEND) {
        fprintf(stderr, "SKIP: libmarin was built without the redis backend\n");
        return 77;
    }
    marin_runtime_close(rt);
    /* The driver's side of the actor classes the workers host. */
    int reg = fault_actor_register();
    if (reg != MARIN_OK) {
        fprintf(stderr, "registering the fault actor classes: %s: %s\n", marin_strerror(reg),
                marin_last_error());
        return 1;
    }
    return marin_test_run(fault_suite());
#endif
}
