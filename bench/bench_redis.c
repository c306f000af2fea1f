/* marin-bench group `redis`: the Redis backend end to end, against a
 * redis-server this file starts itself.
 *
 *   marin-bench redis [--quick]        (also: marin-bench local --only redis)
 *
 * 1. A redis-server on a free loopback port, in a temporary directory,
 *    without persistence (--save "" --appendonly no). The binary is
 *    $MARIN_REDIS_SERVER, else /usr/bin/redis-server, else redis-server on
 *    PATH; when none exists the group is skipped with a `#` line saying so.
 * 2. Two marin-worker processes (--resources cpus=8) loading
 *    bench_plugin.so ("bench_noop", actor class "bench_counter"). marin-worker is $MARIN_WORKER_BIN, else
 *    ../tools/marin-worker next to this binary; the plugin is
 *    $MARIN_BENCH_PLUGIN, else bench_plugin.so next to this binary.
 * 3. This process is the driver (redis://127.0.0.1:PORT?namespace=bench):
 *    redis.tasks_per_s       N no-op tasks submitted, then all gotten;
 *                            median of 3 runs
 *    redis.latency_p50_us,   submit -> marin_future_get return of one task
 *    redis.latency_p99_us    at a time
 *    redis.ops_per_task      INFO stats total_commands_processed delta
 *                            over the 3 throughput runs / 3N
 *    redis.actor_calls_per_s one actor (bench_counter, hosted by a worker):
 *                            20000 no-op calls made, then all gotten
 *                            (2/5 N when smaller); median of 3 runs
 *    redis.actor_call_latency_p50_us  call -> marin_future_get return, one
 *                            call at a time
 * 4. With the workers stopped: redis-benchmark's XADD rate on the same
 *    server (ref.redis_xadd_per_s, ratio_vs_redis_xadd), and Celery's
 *    no-op rate through the same server when `python3 -c "import celery"`
 *    works (bench/bench_celery.py; ref.celery_tasks_per_s,
 *    ratio_vs_celery).
 * Every process and the server are stopped, and the directory removed, at
 * the end, on failure too. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
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

#include <marin/marin.h>

#include "bench_groups.h"
#include "bench_util.h"

#if MARIN_BENCH_HIREDIS
#include <hiredis/hiredis.h>
#endif

#define NOOP "bench_noop"
#define COUNTER "bench_counter"
#define NWORKERS 2
#define WORKER_CPUS "cpus=8"
#define GET_TIMEOUT_MS 120000 /* a get that waits longer: something is stuck */

static int report(const char *what, int rc)
{
    fprintf(stderr, "marin-bench: %s: %s: %s\n", what, marin_strerror(rc),
            marin_last_error());
    return rc;
}

#if !MARIN_BENCH_HIREDIS

int bench_redis(size_t n, size_t lat_samples)
{
    (void)n, (void)lat_samples;
    note("redis: marin-bench was built without hiredis: redis group skipped");
    return 0;
}

#else

typedef struct bench_redis_env {
    char dir[PATH_MAX];
    char exe_dir[PATH_MAX];
    char server[PATH_MAX];
    int port;
    char uri[256];
    pid_t server_pid;
    pid_t workers[NWORKERS];
    redisContext *rc;
} bench_redis_env;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int executable(const char *p)
{
    return p && *p && access(p, X_OK) == 0;
}

static int find_server(char *buf, size_t cap)
{
    const char *env = getenv("MARIN_REDIS_SERVER");
    if (executable(env)) {
        snprintf(buf, cap, "%s", env);
        return 0;
    }
    if (executable("/usr/bin/redis-server")) {
        snprintf(buf, cap, "/usr/bin/redis-server");
        return 0;
    }
    const char *path = getenv("PATH");
    for (const char *p = path; p && *p;) {
        const char *e = strchr(p, ':');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0 && len + 14 < cap) {
            snprintf(buf, cap, "%.*s/redis-server", (int)len, p);
            if (executable(buf))
                return 0;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return -1;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The last bytes of a file of the temporary directory, as a `#` note. */
static void note_tail(const bench_redis_env *e, const char *file)
{
    char path[PATH_MAX + 64], buf[1500];
    snprintf(path, sizeof path, "%s/%s", e->dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t got = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    buf[got > 0 ? got : 0] = '\0';
    note("%s ends:\n%s", file, buf);
}

/* fork + exec @p argv with stdin from /dev/null and stdout+stderr into
 * @p log (a file of the temporary directory; NULL: /dev/null). The child
 * gets SIGKILL when this process dies, so nothing outlives the bench. */
static pid_t spawn(const bench_redis_env *e, const char *const *argv, const char *log)
{
    char path[PATH_MAX + 64];
    if (log)
        snprintf(path, sizeof path, "%s/%s", e->dir, log);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int in = open("/dev/null", O_RDONLY);
    int out = open(log ? path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0)
        _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* SIGTERM, wait up to @p grace_ms, then SIGKILL. The exit status, or -1. */
static int stop_child(pid_t pid, long grace_ms)
{
    if (pid <= 0)
        return 0;
    int st = 0;
    kill(pid, SIGTERM);
    for (long waited = 0; waited < grace_ms; waited += 10) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -1;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* A reply of the bench's own connection, as text; NULL on error. */
static redisReply *cmd(bench_redis_env *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(e->rc, fmt, ap);
    va_end(ap);
    if (r && r->type == REDIS_REPLY_ERROR) {
        note("redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int start_server(bench_redis_env *e)
{
    char port[16], logfile[PATH_MAX + 16];
    for (int tries = 0; tries < 5; tries++) {
        e->port = free_port();
        if (e->port <= 0)
            break;
        snprintf(port, sizeof port, "%d", e->port);
        snprintf(logfile, sizeof logfile, "%s/redis.log", e->dir);
        const char *argv[] = {e->server, "--bind", "127.0.0.1", "--port", port, "--dir", e->dir,
                              "--save", "", "--appendonly", "no", "--daemonize", "no",
                              "--logfile", logfile, "--protected-mode", "no", NULL};
        e->server_pid = spawn(e, argv, NULL);
        if (e->server_pid < 0)
            break;
        for (int waited = 0; waited < 5000; waited += 20) {
            int st;
            if (waitpid(e->server_pid, &st, WNOHANG) == e->server_pid) {
                e->server_pid = 0;
                break; /* exited: the port was taken meanwhile? try another */
            }
            struct timeval tv = {1, 0};
            redisContext *c = redisConnectWithTimeout("127.0.0.1", e->port, tv);
            if (c && !c->err) {
                redisReply *r = redisCommand(c, "PING");
                int ok = r && r->type == REDIS_REPLY_STATUS;
                freeReplyObject(r);
                if (ok) {
                    e->rc = c;
                    return 0;
                }
            }
            if (c)
                redisFree(c);
            sleep_ms(20);
        }
        if (e->server_pid > 0) {
            stop_child(e->server_pid, 1000);
            e->server_pid = 0;
        }
    }
    fprintf(stderr, "marin-bench: redis: %s did not come up\n", e->server);
    note_tail(e, "redis.log");
    return -1;
}

static long long info_field(bench_redis_env *e, const char *section, const char *name)
{
    redisReply *r = cmd(e, "INFO %s", section);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        char key[128];
        snprintf(key, sizeof key, "\n%s:", name);
        const char *p = strstr(r->str, key);
        if (p)
            v = strtoll(p + strlen(key), NULL, 10);
    }
    freeReplyObject(r);
    return v;
}

/* INFO commandstats as (command, calls) pairs. */
typedef struct cmdstat {
    char name[48];
    long long calls;
} cmdstat;

static size_t commandstats(bench_redis_env *e, cmdstat *out, size_t cap)
{
    redisReply *r = cmd(e, "INFO commandstats");
    size_t n = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        for (const char *p = strstr(r->str, "cmdstat_"); p && n < cap;
             p = strstr(p + 1, "cmdstat_")) {
            const char *colon = strchr(p, ':');
            const char *calls = colon ? strstr(colon, "calls=") : NULL;
            if (!colon || !calls)
                break;
            size_t len = (size_t)(colon - p - 8);
            if (len >= sizeof out[n].name)
                len = sizeof out[n].name - 1;
            memcpy(out[n].name, p + 8, len);
            out[n].name[len] = '\0';
            out[n].calls = strtoll(calls + 6, NULL, 10);
            n++;
        }
    }
    freeReplyObject(r);
    return n;
}

/* `# commands per task: xadd 2.00, eval 1.00, ...` from two snapshots. */
static void note_cmd_delta(const cmdstat *a, size_t na, const cmdstat *b, size_t nb,
                           double tasks)
{
    char line[2048];
    size_t used = 0;
    double total = 0;
    line[0] = '\0';
    for (size_t i = 0; i < nb; i++) {
        long long before = 0;
        for (size_t k = 0; k < na; k++)
            if (strcmp(a[k].name, b[i].name) == 0)
                before = a[k].calls;
        double per = (double)(b[i].calls - before) / tasks;
        if (per < 0.005)
            continue;
        total += per;
        int w = snprintf(line + used, sizeof line - used, "%s%s %.2f", used ? ", " : "",
                         b[i].name, per);
        if (w < 0 || (size_t)w >= sizeof line - used)
            break;
        used += (size_t)w;
    }
    note("redis commands per task by INFO commandstats (Lua's redis.call included): %s; "
         "sum %.2f", line, total);
}

static int start_workers(bench_redis_env *e)
{
    char worker[PATH_MAX + 32], plugin[PATH_MAX + 32];
    const char *wenv = getenv("MARIN_WORKER_BIN"), *penv = getenv("MARIN_BENCH_PLUGIN");
    if (wenv && *wenv)
        snprintf(worker, sizeof worker, "%s", wenv);
    else
        snprintf(worker, sizeof worker, "%s/../tools/marin-worker", e->exe_dir);
    if (penv && *penv)
        snprintf(plugin, sizeof plugin, "%s", penv);
    else
        snprintf(plugin, sizeof plugin, "%s/bench_plugin.so", e->exe_dir);
    if (!executable(worker)) {
        fprintf(stderr, "marin-bench: redis: no marin-worker at %s (build tools/, or set "
                "MARIN_WORKER_BIN)\n", worker);
        return -1;
    }
    if (access(plugin, R_OK) != 0) {
        fprintf(stderr, "marin-bench: redis: no plugin at %s (build bench/, or set "
                "MARIN_BENCH_PLUGIN)\n", plugin);
        return -1;
    }
    note("redis: %d x %s --resources %s --load %s", NWORKERS, worker, WORKER_CPUS, plugin);
    /* The workers log warnings and errors only (marin-worker defaults to
     * info when MARIN_LOG is unset). */
    const char *old_log = getenv("MARIN_LOG");
    char *saved = old_log ? strdup(old_log) : NULL;
    setenv("MARIN_LOG", "warn", 1);
    for (int i = 0; i < NWORKERS; i++) {
        char name[32], log[32];
        snprintf(name, sizeof name, "bench-w%d", i);
        snprintf(log, sizeof log, "worker-%d.log", i);
        const char *argv[] = {worker, "--backend", e->uri, "--load", plugin, "--resources",
                              WORKER_CPUS, "--name", name, "--drain-ms", "2000", NULL};
        e->workers[i] = spawn(e, argv, log);
    }
    if (saved) {
        setenv("MARIN_LOG", saved, 1);
        free(saved);
    } else {
        unsetenv("MARIN_LOG");
    }
    /* Ready when both heartbeat keys exist. */
    for (int waited = 0; waited < 15000; waited += 20) {
        for (int i = 0; i < NWORKERS; i++) {
            int st;
            if (e->workers[i] > 0 && waitpid(e->workers[i], &st, WNOHANG) == e->workers[i]) {
                char log[32];
                fprintf(stderr, "marin-bench: redis: marin-worker %d exited at start "
                        "(status %d)\n", i, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                e->workers[i] = 0;
                snprintf(log, sizeof log, "worker-%d.log", i);
                note_tail(e, log);
                return -1;
            }
        }
        redisReply *r = cmd(e, "EXISTS marin:{bench}:w:bench-w0 marin:{bench}:w:bench-w1");
        long long live = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
        if (live == NWORKERS)
            return 0;
        sleep_ms(20);
    }
    fprintf(stderr, "marin-bench: redis: the workers did not register within 15 s\n");
    note_tail(e, "worker-0.log");
    return -1;
}

static void stop_workers(bench_redis_env *e)
{
    for (int i = 0; i < NWORKERS; i++)
        if (e->workers[i] > 0)
            kill(e->workers[i], SIGTERM);
    for (int i = 0; i < NWORKERS; i++) {
        if (e->workers[i] <= 0)
            continue;
        int st = stop_child(e->workers[i], 10000);
        if (st != 0) {
            char log[32];
            note("redis: marin-worker %d stopped with status %d", i, st);
            snprintf(log, sizeof log, "worker-%d.log", i);
            note_tail(e, log);
        }
        e->workers[i] = 0;
    }
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static void teardown(bench_redis_env *e)
{
    stop_workers(e);
    if (e->rc) {
        redisFree(e->rc);
        e->rc = NULL;
    }
    if (e->server_pid > 0)
        stop_child(e->server_pid, 3000);
    e->server_pid = 0;
    if (e->dir[0])
        nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the driver's figures ---- */

/* N no-op tasks: submit all, then get and release each in order. */
static int throughput(marin_runtime_t *rt, marin_future_t **futs, size_t n, double *rate,
                      double *submit_rate)
{
    int rc = MARIN_OK;
    double t0 = now_s();
    size_t made = 0;
    for (; made < n; made++)
        if ((rc = marin_submit(rt, NOOP, NULL, 0, NULL, &futs[made])) != MARIN_OK) {
            report("marin_submit", rc);
            break;
        }
    double t1 = now_s();
    for (size_t i = 0; i < made; i++) {
        int g = rc == MARIN_OK ? marin_future_get(futs[i], GET_TIMEOUT_MS, NULL, NULL) : rc;
        if (g != MARIN_OK && rc == MARIN_OK)
            rc = report("marin_future_get", g);
        marin_future_release(futs[i]);
    }
    double t2 = now_s();
    *rate = (double)n / (t2 - t0);
    if (submit_rate)
        *submit_rate = (double)n / (t1 - t0);
    return rc;
}

static int latency(marin_runtime_t *rt, size_t samples)
{
    int64_t *ns = malloc(samples * sizeof *ns);
    if (!ns)
        return MARIN_ENOMEM;
    int rc = MARIN_OK;
    size_t warm = samples / 10;
    for (size_t i = 0; i < warm + samples; i++) {
        marin_future_t *f = NULL;
        int64_t t0 = now_ns();
        rc = marin_submit(rt, NOOP, NULL, 0, NULL, &f);
        if (rc == MARIN_OK)
            rc = marin_future_get(f, GET_TIMEOUT_MS, NULL, NULL);
        int64_t t1 = now_ns();
        marin_future_release(f);
        if (rc != MARIN_OK) {
            report("latency: submit + get", rc);
            break;
        }
        if (i >= warm)
            ns[i - warm] = t1 - t0;
    }
    if (rc == MARIN_OK) {
        qsort(ns, samples, sizeof *ns, cmp_i64);
        note("redis.latency samples=%zu min %.0f us, p99.9 %.0f us, max %.0f us", samples,
             (double)ns[0] / 1e3, (double)ns[samples * 999 / 1000] / 1e3,
             (double)ns[samples - 1] / 1e3);
        figure("redis.latency_p50_us", (double)ns[samples / 2] / 1e3, 0, "us");
        figure("redis.latency_p99_us", (double)ns[samples * 99 / 100] / 1e3, 0, "us");
    }
    free(ns);
    return rc;
}

static int counter_init(marin_task_ctx_t *ctx, const void *arg, size_t len, void **self)
{
    (void)ctx, (void)arg, (void)len;
    *self = calloc(1, sizeof(long));
    return *self ? 0 : MARIN_ENOMEM;
}

static void counter_fini(void *self)
{
    free(self);
}

static int counter_add(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)ctx, (void)arg, (void)len;
    ++*(long *)self;
    return 0;
}

static int counter_noop(marin_task_ctx_t *ctx, void *self, const void *arg, size_t len)
{
    (void)ctx, (void)self, (void)arg, (void)len;
    return 0;
}

/* One pipelined run: @p n "noop" calls made back to back through one
 * handle, then each gotten and released in order. */
static int actor_pipelined(marin_actor_t *a, marin_future_t **futs, size_t n, double *rate)
{
    int rc = MARIN_OK;
    double t0 = now_s();
    size_t made = 0;
    for (; made < n; made++)
        if ((rc = marin_actor_call(a, "noop", NULL, 0, &futs[made])) != MARIN_OK) {
            report("pipelined actor call", rc);
            break;
        }
    for (size_t i = 0; i < made; i++) {
        int g = rc == MARIN_OK ? marin_future_get(futs[i], GET_TIMEOUT_MS, NULL, NULL) : rc;
        if (g != MARIN_OK && rc == MARIN_OK)
            rc = report("pipelined actor call: get", g);
        marin_future_release(futs[i]);
    }
    *rate = (double)n / (now_s() - t0);
    return rc;
}

/* Actor calls through a marin-worker: one actor of bench_counter (the
 * workers' plugin registers it too), hosted by whichever worker takes its
 * creation; the driver has no worker of its own. */
static int actors(marin_runtime_t *rt, marin_future_t **futs, size_t n_pipe, size_t samples)
{
    static int registered;
    int rc;
    if (!registered) {
        marin_actor_class_t *c = NULL;
        if ((rc = marin_actor_class_create(COUNTER, counter_init, counter_fini, &c)) ||
            (rc = marin_actor_class_add_method(c, "add", counter_add, 0)) ||
            (rc = marin_actor_class_add_method(c, "noop", counter_noop, 0)) ||
            (rc = marin_register_actor_class(c))) {
            marin_actor_class_destroy(c);
            return report("registering " COUNTER, rc);
        }
        marin_actor_class_destroy(c);
        registered = 1;
    }
    marin_actor_t *a = NULL;
    if ((rc = marin_actor_create(rt, COUNTER, NULL, 0, NULL, &a)) != MARIN_OK)
        return report("marin_actor_create", rc);
    int64_t *ns = malloc(samples * sizeof *ns);
    if (!ns) {
        rc = report("actor latency", MARIN_ENOMEM);
        goto out;
    }
    if ((rc = marin_actor_ready(a, GET_TIMEOUT_MS)) != MARIN_OK) {
        report("marin_actor_ready", rc);
        goto out;
    }
    /* Latency: one call at a time, after a tenth as many to warm up. */
    size_t warm = samples / 10;
    for (size_t i = 0; i < warm + samples; i++) {
        marin_future_t *f = NULL;
        int64_t t0 = now_ns();
        rc = marin_actor_call(a, "noop", NULL, 0, &f);
        if (rc == MARIN_OK)
            rc = marin_future_get(f, GET_TIMEOUT_MS, NULL, NULL);
        int64_t t1 = now_ns();
        marin_future_release(f);
        if (rc != MARIN_OK) {
            report("sequential actor call", rc);
            goto out;
        }
        if (i >= warm)
            ns[i - warm] = t1 - t0;
    }
    qsort(ns, samples, sizeof *ns, cmp_i64);
    note("redis.actor_call_latency samples=%zu min %.0f us, p99 %.0f us, max %.0f us",
         samples, (double)ns[0] / 1e3, (double)ns[samples * 99 / 100] / 1e3,
         (double)ns[samples - 1] / 1e3);
    figure("redis.actor_call_latency_p50_us", (double)ns[samples / 2] / 1e3, 0, "us");
    /* Throughput: n_pipe calls made, then all gotten; median of 3. */
    double r[RUNS];
    for (int i = 0; i < RUNS; i++)
        if ((rc = actor_pipelined(a, futs, n_pipe, &r[i])) != MARIN_OK)
            goto out;
    note("redis.actor_calls_per_s: %zu noop calls to one actor hosted by a marin-worker, "
         "all made then all gotten", n_pipe);
    figure("redis.actor_calls_per_s", median3(r, "redis.actor_calls_per_s"), 0, "calls/s");
out:
    free(ns);
    marin_actor_kill(a, 1);
    marin_actor_release(a);
    return rc;
}

static int driver(bench_redis_env *e, size_t n, size_t lat_samples, double *tasks_per_s)
{
    marin_runtime_t *rt = NULL;
    marin_future_t **futs = calloc(n, sizeof *futs);
    int rc;
    if (!futs)
        return MARIN_ENOMEM;
    if ((rc = marin_runtime_open(e->uri, &rt)) != MARIN_OK) {
        report("marin_runtime_open", rc);
        goto out;
    }
    /* Warm-up: the first tasks wait until the workers see the new queue
     * (they look every heartbeat_ms). */
    double warm, sub;
    if ((rc = throughput(rt, futs, n / 10 ? n / 10 : 1, &warm, NULL)) != MARIN_OK)
        goto out;

    cmdstat before[256], after[256];
    size_t nbefore = commandstats(e, before, 256);
    long long c0 = info_field(e, "stats", "total_commands_processed");
    double r[RUNS];
    for (int i = 0; i < RUNS; i++) {
        if ((rc = throughput(rt, futs, n, &r[i], &sub)) != MARIN_OK)
            goto out;
        note("redis run %d: submit phase %.0f tasks/s", i + 1, sub);
    }
    long long c1 = info_field(e, "stats", "total_commands_processed");
    size_t nafter = commandstats(e, after, 256);
    *tasks_per_s = median3(r, "redis.tasks_per_s");
    figure("redis.tasks_per_s", *tasks_per_s, 0, "tasks/s");
    if (c0 >= 0 && c1 >= 0)
        figure("redis.ops_per_task", (double)(c1 - c0) / (double)(n * RUNS), 2, "ops/task");
    note_cmd_delta(before, nbefore, after, nafter, (double)(n * RUNS));

    if ((rc = latency(rt, lat_samples)) != MARIN_OK)
        goto out;
    /* 20000 pipelined actor calls per run (fewer with --quick). */
    rc = actors(rt, futs, n * 2 / 5 < 20000 ? n * 2 / 5 : 20000, lat_samples);
out:
    marin_runtime_close(rt);
    free(futs);
    return rc;
}

/* ---- references ---- */

/* Run @p argv, its stdout (and stderr when @p with_stderr, else
 * /dev/null) into buf, keeping the end when it is longer. Exit status. */
static int run_capture(const char *const *argv, int with_stderr, char *buf, size_t cap)
{
    int p[2];
    buf[0] = '\0';
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]), close(p[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(p[1], 1);
        dup2(with_stderr ? p[1] : devnull, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t used = 0;
    for (;;) {
        ssize_t k = read(p[0], buf + used, cap - 1 - used);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        used += (size_t)k;
        if (used == cap - 1) { /* keep the end: drop the first half */
            memmove(buf, buf + cap / 2, used - cap / 2);
            used -= cap / 2;
        }
    }
    buf[used] = '\0';
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* redis-benchmark's XADD rate (pipelined 64) against the same server. */
static double xadd_reference(bench_redis_env *e)
{
    char bin[PATH_MAX + 32], port[16], out[8192];
    const char *slash = strrchr(e->server, '/');
    snprintf(bin, sizeof bin, "%.*s/redis-benchmark",
             slash ? (int)(slash - e->server) : 1, slash ? e->server : ".");
    if (!executable(bin))
        snprintf(bin, sizeof bin, "redis-benchmark");
    snprintf(port, sizeof port, "%d", e->port);
    /* -t has no xadd test: the command is given as is. */
    const char *argv[] = {bin, "-h", "127.0.0.1", "-p", port, "-q", "-n", "200000", "-P", "64",
                          "XADD", "marin-bench-xadd", "*", "f", "v", NULL};
    int st = run_capture(argv, 0, out, sizeof out);
    redisReply *r = cmd(e, "DEL marin-bench-xadd");
    freeReplyObject(r);
    const char *p = NULL;
    for (const char *q = strstr(out, " requests per second"); q;
         q = strstr(q + 1, " requests per second"))
        p = q;
    if (st != 0 || !p) {
        note("redis-benchmark (%s) gave no rate (exit %d): ref.redis_xadd_per_s skipped", bin,
             st);
        return 0;
    }
    const char *start = p;
    while (start > out && start[-1] != ' ' && start[-1] != '\r' && start[-1] != '\n')
        start--;
    double v = strtod(start, NULL);
    note("redis-benchmark -P 64 -n 200000 XADD marin-bench-xadd * f v: %.0f requests/s", v);
    return v;
}

/* Celery's no-op rate with this server as broker and result backend. */
static double celery_reference(bench_redis_env *e, size_t n)
{
    const char *probe[] = {"python3", "-c", "import celery", NULL};
    char out[4096];
    if (run_capture(probe, 0, out, sizeof out) != 0) {
        note("celery not installed: ratio_vs_celery skipped");
        return 0;
    }
    char script[PATH_MAX + 64], url[64], count[32];
    snprintf(script, sizeof script, "%s/bench_celery.py", MARIN_BENCH_SRCDIR);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/1", e->port);
    snprintf(count, sizeof count, "%zu", n);
    const char *argv[] = {"python3", script, "--redis", url, "-n", count, NULL};
    int st = run_capture(argv, 1, out, sizeof out);
    const char *p = strstr(out, "celery.tasks_per_s ");
    if (st != 0 || !p) {
        note("%s failed (exit %d): ratio_vs_celery skipped; its output:\n%s", script, st, out);
        return 0;
    }
    for (const char *q = out; *q;) { /* its `#` lines, as ours */
        const char *nl = strchr(q, '\n');
        size_t len = nl ? (size_t)(nl - q) : strlen(q);
        if (len > 2 && q[0] == '#')
            note("%.*s", (int)(len - 2), q + 2);
        q += len + (nl != NULL);
    }
    return strtod(p + strlen("celery.tasks_per_s "), NULL);
}

int bench_redis(size_t n, size_t lat_samples)
{
    bench_redis_env e;
    memset(&e, 0, sizeof e);
    if (find_server(e.server, sizeof e.server) != 0) {
        note("redis-server not found ($MARIN_REDIS_SERVER, /usr/bin/redis-server, PATH): "
             "redis group skipped");
        return 0;
    }
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) {
        fprintf(stderr, "marin-bench: redis: cannot read /proc/self/exe\n");
        return MARIN_ENOTFOUND;
    }
    self[k] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(e.exe_dir, sizeof e.exe_dir, "%s", self);
    const char *tmp = getenv("TMPDIR");
    snprintf(e.dir, sizeof e.dir, "%s/marin-bench-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(e.dir)) {
        fprintf(stderr, "marin-bench: redis: mkdtemp %s: %s\n", e.dir, strerror(errno));
        return MARIN_EUNAVAILABLE;
    }
    int rc = MARIN_OK;
    double tasks = 0;
    if (start_server(&e) != 0) {
        rc = MARIN_EUNAVAILABLE;
        goto out;
    }
    snprintf(e.uri, sizeof e.uri, "redis://127.0.0.1:%d?namespace=bench", e.port);
    redisReply *ver = cmd(&e, "INFO server");
    const char *v = ver && ver->type == REDIS_REPLY_STRING ? strstr(ver->str, "redis_version:")
                                                           : NULL;
    note("marin-bench redis: n=%zu latency samples=%zu, %d workers x %s, %s (%.*s), "
         "--save \"\" --appendonly no; marin %s", n, lat_samples, NWORKERS, WORKER_CPUS, e.uri,
         v ? (int)strcspn(v + 14, "\r\n") : 1, v ? v + 14 : "?", MARIN_VERSION_STRING);
    freeReplyObject(ver);
    if (start_workers(&e) != 0) {
        rc = MARIN_EUNAVAILABLE;
        goto out;
    }
    if ((rc = driver(&e, n, lat_samples, &tasks)) != MARIN_OK)
        goto out;
    stop_workers(&e);

    double xadd = xadd_reference(&e);
    if (xadd > 0) {
        figure("ref.redis_xadd_per_s", xadd, 0, "ops/s");
        figure("ratio_vs_redis_xadd", tasks / xadd, 4, "x");
    }
    double celery = celery_reference(&e, n / 10 ? n / 10 : 1);
    if (celery > 0) {
        figure("ref.celery_tasks_per_s", celery, 0, "tasks/s");
        figure("ratio_vs_celery", tasks / celery, 2, "x");
    }
out:
    teardown(&e);
    return rc;
}

#endif /* MARIN_BENCH_HIREDIS */
