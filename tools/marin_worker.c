/* marin-worker — serve a cluster backend with the task functions and actor
 * classes of plugin libraries.
 *
 *   marin-worker --backend URI --load ./libtasks.so [--load ...]
 *                [--resources cpus=4,memory=8GiB,gpus=1,TPU=4] [--name ID]
 *                [--drain-ms MS]
 *
 * Each plugin is dlopen'ed and its exported `int marin_plugin_init(void)`
 * is called; it registers tasks and actor classes in the one registry of
 * the shared libmarin. SIGTERM or SIGINT: stop taking work, finish (or,
 * after the drain period, hand back) what runs, exit 0. Log lines go to
 * stderr as `ts=... level=... worker=... msg="..."`. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "marin/marin.h"

static marin_worker_t *the_worker;

static void on_signal(int sig)
{
    /* The first signal drains; a second one ends the process at once (the
     * default action), and the worker is never touched after join freed
     * it. */
    signal(sig == SIGINT ? SIGTERM : SIGINT, SIG_DFL);
    signal(sig, SIG_DFL);
    if (the_worker)
        marin_worker_stop(the_worker); /* async-signal-safe */
}

static void log_line(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void log_line(const char *level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n')
            *p = *p == '"' ? '\'' : ' ';
    fprintf(stderr, "ts=%s.%03ldZ level=%s pid=%d msg=\"%s\"\n", when, ts.tv_nsec / 1000000,
            level, (int)getpid(), msg);
}

/* The library's lines, in the same structured form. */
static void log_hook(int level, const char *message, void *ud)
{
    (void)ud;
    log_line(level <= MARIN_LOG_ERROR ? "error"
             : level == MARIN_LOG_WARN ? "warn"
             : level == MARIN_LOG_INFO ? "info"
                                       : "debug",
             "%s", message);
}

static void usage(FILE *to)
{
    fprintf(to, "usage: marin-worker --backend URI --load LIB.so [--load LIB.so ...]\n"
                "                    [--resources SPEC] [--name ID] [--drain-ms MS]\n"
                "  --backend URI      the cluster to serve (default $MARIN_BACKEND)\n"
                "  --load LIB.so      a plugin exporting int marin_plugin_init(void)\n"
                "  --resources SPEC   what this worker offers (default: the machine's)\n"
                "  --name ID          its id in the namespace (default host-pid-random)\n"
                "  --drain-ms MS      on SIGTERM, how long running work may finish\n");
}

int main(int argc, char **argv)
{
    const char *uri = getenv("MARIN_BACKEND"), *res = NULL, *name = NULL;
    const char *loads[64];
    size_t nloads = 0;
    long long drain = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "marin-worker: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--backend") == 0)
            uri = v;
        else if (strcmp(a, "--load") == 0 && nloads < 64)
            loads[nloads++] = v;
        else if (strcmp(a, "--resources") == 0)
            res = v;
        else if (strcmp(a, "--name") == 0)
            name = v;
        else if (strcmp(a, "--drain-ms") == 0) {
            char *end = NULL;
            drain = strtoll(v, &end, 10);
            if (!end || *end || drain < 0) {
                fprintf(stderr, "marin-worker: --drain-ms '%s' is not a number of ms\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "marin-worker: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!uri) {
        fprintf(stderr, "marin-worker: no backend: pass --backend URI or set MARIN_BACKEND\n");
        return 2;
    }
    for (size_t i = 0; i < nloads; i++) {
        void *h = dlopen(loads[i], RTLD_NOW | RTLD_GLOBAL);
        if (!h) {
            log_line("error", "cannot load plugin %s: %s", loads[i], dlerror());
            return 1;
        }
        int (*init)(void) = (int (*)(void))dlsym(h, "marin_plugin_init");
        if (!init) {
            log_line("error", "plugin %s exports no marin_plugin_init", loads[i]);
            return 1;
        }
        int rc = init();
        if (rc != MARIN_OK) {
            log_line("error", "marin_plugin_init of %s failed: %s: %s", loads[i],
                     marin_strerror(rc), marin_last_error());
            return 1;
        }
        log_line("info", "loaded plugin %s", loads[i]);
    }
    marin_worker_options_t *o = NULL;
    int rc = marin_worker_options_create(&o);
    marin_resources_t *r = NULL;
    if (rc == MARIN_OK && res && (rc = marin_resources_parse(res, &r)) == MARIN_OK)
        rc = marin_worker_options_set_resources(o, r);
    if (rc == MARIN_OK && name)
        rc = marin_worker_options_set_name(o, name);
    if (rc == MARIN_OK && drain >= 0)
        rc = marin_worker_options_set_drain_ms(o, drain);
    const char *lv = getenv("MARIN_LOG");
    int level = !lv || !*lv ? MARIN_LOG_INFO
                : strcmp(lv, "debug") == 0 ? MARIN_LOG_DEBUG
                : strcmp(lv, "warn") == 0  ? MARIN_LOG_WARN
                : strcmp(lv, "error") == 0 ? MARIN_LOG_ERROR
                : strcmp(lv, "off") == 0 || strcmp(lv, "none") == 0 || strcmp(lv, "0") == 0
                    ? 0
                    : MARIN_LOG_INFO;
    if (rc == MARIN_OK)
        rc = marin_worker_options_set_logger(o, log_hook, level, NULL);
    marin_resources_destroy(r);
    if (rc != MARIN_OK) {
        log_line("error", "%s: %s", marin_strerror(rc), marin_last_error());
        marin_worker_options_destroy(o);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* Block the signals until the worker exists, so an early SIGTERM is
     * not lost and does not kill us half-started. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    rc = marin_worker_start(uri, o, &the_worker);
    marin_worker_options_destroy(o);
    if (rc != MARIN_OK) {
        log_line("error", "cannot start: %s: %s", marin_strerror(rc), marin_last_error());
        return 1;
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    log_line("info", "worker %s ready", marin_worker_id(the_worker));
    rc = marin_worker_join(the_worker);
    the_worker = NULL;
    if (rc != MARIN_OK) {
        log_line("error", "worker stopped: %s: %s", marin_strerror(rc), marin_last_error());
        return 1;
    }
    log_line("info", "drained; exiting");
    return 0;
}
