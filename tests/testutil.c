#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"                 /* marin__backends */
#include "capacity.h" /* what "local" would detect */
#include "redis_fixture.h"

int marin_test_run(Suite *s)
{
    marin_test_backend_setup();
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int wait_for(atomic_int *v, int want, int64_t timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (atomic_load(v) < want) {
        if (now_ms() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

int arg_int(const void *arg, size_t len)
{
    int v = 0;
    if (arg && len == sizeof v)
        memcpy(&v, arg, sizeof v);
    return v;
}

int noop_task(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ctx;
    (void)arg;
    (void)len;
    (void)ud;
    return 0;
}

/* ---- the backend under test ---- */

/* In redis_fixture.c: the redis-server binary the fixture would run. */
int redis_fixture__find_server(char *buf, size_t cap);

static redis_fixture g_fx;       /* the server of this suite (pid 0: none) */
static pid_t g_fx_owner;         /* the process that started it */
static char g_last_uri[1024];    /* the last URI opened, as mapped */

int marin_test_backend_is_redis(void)
{
    const char *b = getenv("MARIN_TEST_BACKEND");
    return b && strcmp(b, "redis") == 0;
}

static int verbose(void)
{
    const char *v = getenv("MARIN_TEST_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* Only the process that started the server stops it: Check's forked cases
 * inherit this handler and exit through it too. */
static void stop_server_at_exit(void)
{
    if (g_fx_owner == getpid() && (g_fx.pid > 0 || g_fx.dir[0])) {
        if (verbose())
            fprintf(stderr, "marin-test: stopping redis-server on port %d\n", g_fx.port);
        redis_fixture_stop(&g_fx);
    }
}

static int start_server(void)
{
    if (g_fx.pid > 0)
        return 0;
    if (redis_fixture_start(&g_fx, NULL) != 0)
        return -1;
    /* The conformance runs test behaviour, not durability (the fault suite
     * does, with appendfsync always): an fsync per write would make every
     * runtime open and close cost tens of ms here. */
    char reply[64];
    redis_fixture_cmd(&g_fx, reply, sizeof reply, "CONFIG SET appendfsync no");
    g_fx_owner = getpid();
    static int registered;
    if (!registered) {
        registered = 1;
        atexit(stop_server_at_exit);
    }
    if (verbose())
        fprintf(stderr, "marin-test: redis-server pid %ld on port %d (dir %s)\n",
                (long)g_fx.pid, g_fx.port, g_fx.dir);
    return 0;
}

static int redis_backend_built(void)
{
    for (const marin__backend *const *b = marin__backends; *b; b++)
        if (strcmp((*b)->name, "redis") == 0)
            return 1;
    return 0;
}

static void skip_suite(const char *why)
{
    fprintf(stderr, "SKIP (MARIN_TEST_BACKEND=redis): %s\n", why);
    exit(77);
}

void marin_test_backend_setup(void)
{
    const char *b = getenv("MARIN_TEST_BACKEND");
    if (!b || !*b || strcmp(b, "local") == 0)
        return;
    if (strcmp(b, "redis") != 0) {
        fprintf(stderr, "MARIN_TEST_BACKEND=%s: unknown (local, redis)\n", b);
        exit(EXIT_FAILURE);
    }
    if (g_fx.pid > 0)
        return;
    const char *force = getenv("MARIN_TEST_REDIS_FORCE");
    if (!redis_backend_built() && !(force && strcmp(force, "1") == 0))
        skip_suite("libmarin was built without the redis backend "
                   "(MARIN_TEST_REDIS_FORCE=1 runs the cases anyway)");
#if !MARIN_TEST_HIREDIS
    skip_suite("the tests were built without hiredis");
#endif
    char bin[512];
    if (redis_fixture__find_server(bin, sizeof bin) != 0)
        skip_suite("redis-server not found ($MARIN_REDIS_SERVER, "
                   "/usr/bin/redis-server, PATH)");
    if (start_server() != 0) {
        fprintf(stderr, "MARIN_TEST_BACKEND=redis: %s did not start\n", bin);
        exit(EXIT_FAILURE);
    }
}

void marin_test_skip(const char *fn, const char *reason)
{
    size_t n = strlen(fn);
    if (n > 3 && strcmp(fn + n - 3, "_fn") == 0)
        n -= 3; /* Check's START_TEST(x) defines x_fn */
    fprintf(stderr, "SKIP %.*s: %s\n", (int)n, fn, reason);
}

/* What "local" with no resources= would offer on this machine. */
static void detected_spec(char *buf, size_t cap)
{
    marin_resources_t *r = NULL;
    int ids[MARIN__MAX_GPUS];
    size_t ngpus = 0;
    marin__capacity_sources src;
    memset(&src, 0, sizeof src);
    buf[0] = '\0';
    if (marin_resources_create(&r) == MARIN_OK &&
        marin__detect_capacity(&src, r, ids, &ngpus) == MARIN_OK) {
        int n = marin_resources_format(r, buf, cap);
        if (n < 0 || (size_t)n >= cap)
            buf[0] = '\0';
    }
    marin_resources_destroy(r);
    if (!buf[0]) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        snprintf(buf, cap, "cpus=%ld", cpus > 0 ? cpus : 1);
    }
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

int marin_test_map_uri(const char *uri, char *buf, size_t cap)
{
    if (!uri) {
        snprintf(buf, cap, "%s", "");
        return 0;
    }
    const char *query = NULL;
    int is_local = 0;
    if (strcmp(uri, "local") == 0) {
        is_local = 1;
    } else if (strncmp(uri, "local://", 8) == 0) {
        is_local = 1;
        const char *rest = uri + 8;
        if (*rest && *rest != '?') {
            snprintf(buf, cap, "cannot map '%s' to redis: a host or path in a local URI", uri);
            return -1;
        }
        query = *rest == '?' ? rest + 1 : NULL;
    }
    if (!is_local || !marin_test_backend_is_redis()) {
        snprintf(buf, cap, "%s", uri);
        return 0;
    }
    char spec[512] = "", ns[64] = "";
    int have_spec = 0;
    while (query && *query) {
        const char *amp = strchr(query, '&');
        size_t len = amp ? (size_t)(amp - query) : strlen(query);
        const char *eq = memchr(query, '=', len);
        size_t klen = eq ? (size_t)(eq - query) : len;
        const char *val = eq ? eq + 1 : query + len;
        size_t vlen = (size_t)(query + len - val);
        if (len == 0) {
            /* "&&" or a trailing '&' */
        } else if (klen == 9 && strncmp(query, "resources", 9) == 0 && vlen < sizeof spec) {
            memcpy(spec, val, vlen);
            spec[vlen] = '\0';
            have_spec = 1;
        } else if (klen == 5 && strncmp(query, "state", 5) == 0 && vlen > 0) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%.*s", (int)vlen, val);
            snprintf(ns, sizeof ns, "st-%016llx", (unsigned long long)fnv1a(dir));
        } else {
            snprintf(buf, cap,
                     "cannot map '%s' to redis: local:// parameter '%.*s' has no "
                     "redis equivalent (mark the case SKIP_UNLESS_LOCAL)",
                     uri, (int)klen, query);
            return -1;
        }
        query = amp ? amp + 1 : NULL;
    }
    if (!have_spec)
        detected_spec(spec, sizeof spec);
    if (g_fx.pid <= 0 && start_server() != 0) {
        snprintf(buf, cap, "cannot map '%s' to redis: no redis-server could be started", uri);
        return -1;
    }
    char extra[1024];
    snprintf(extra, sizeof extra, "worker_resources=%s&%s", spec, MARIN_TEST_REDIS_TIMINGS);
    redis_fixture_uri(&g_fx, buf, cap, ns[0] ? ns : NULL, extra);
    return 1;
}

int marin_test_runtime_open(const char *uri, marin_runtime_t **out)
{
    char mapped[sizeof g_last_uri];
    if (!marin_test_backend_is_redis()) {
        snprintf(g_last_uri, sizeof g_last_uri, "%s", uri ? uri : "(null)");
        return marin_runtime_open(uri, out);
    }
    int m = marin_test_map_uri(uri, mapped, sizeof mapped);
    if (m < 0) {
        fprintf(stderr, "marin-test: %s\n", mapped);
        snprintf(g_last_uri, sizeof g_last_uri, "%s", mapped);
        if (out)
            *out = NULL;
        return MARIN_EINVAL;
    }
    snprintf(g_last_uri, sizeof g_last_uri, "%s", uri ? mapped : "(null)");
    if (m > 0 && verbose())
        fprintf(stderr, "marin-test: %s -> %s\n", uri, mapped);
    return marin_runtime_open(uri ? mapped : NULL, out);
}

marin_runtime_t *open_rt(const char *uri)
{
    marin_runtime_t *rt = NULL;
    int rc = marin_test_runtime_open(uri, &rt);
    ck_assert_msg(rc == MARIN_OK, "open_rt(%s) on %s returned %d (%s), wanted 0: %s",
                  uri ? uri : "NULL", g_last_uri, rc, marin_strerror(rc),
                  marin_last_error());
    ck_assert_ptr_nonnull(rt);
    return rt;
}

marin_task_options_t *opts_with_resources(const char *spec)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse(spec, &r), MARIN_OK);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_resources(o, r), MARIN_OK);
    marin_resources_destroy(r);
    return o;
}

static uint32_t xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)(*state >> 16);
}

void fuzz_input(char *buf, size_t cap, const char *const *seeds, size_t nseeds,
                const char *alphabet, uint64_t *state)
{
    size_t nalpha = strlen(alphabet), n;
    if (xorshift(state) % 3 == 0) {
        n = xorshift(state) % (cap - 1);
        for (size_t i = 0; i < n; i++)
            buf[i] = xorshift(state) % 8 == 0 ? (char)(xorshift(state) % 255 + 1)
                                              : alphabet[xorshift(state) % nalpha];
        buf[n] = '\0';
        return;
    }
    const char *s = seeds[xorshift(state) % nseeds];
    n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    int edits = (int)(xorshift(state) % 6) + 1;
    for (int e = 0; e < edits; e++) {
        size_t at = n ? xorshift(state) % (n + 1) : 0;
        switch (xorshift(state) % 4) {
        case 0: /* insert */
            if (n + 2 < cap) {
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = alphabet[xorshift(state) % nalpha];
                n++;
            }
            break;
        case 1: /* delete */
            if (at < n) {
                memmove(buf + at, buf + at + 1, n - at);
                n--;
            }
            break;
        case 2: /* replace */
            if (at < n)
                buf[at] = (char)(xorshift(state) % 255 + 1);
            break;
        default: /* duplicate a tail */
            if (n + (n - at) + 1 < cap) {
                memcpy(buf + n, buf + at, n - at);
                n += n - at;
                buf[n] = '\0';
            }
            break;
        }
    }
}

marin_future_t *submit_opts(marin_runtime_t *rt, const char *task, const void *arg,
                            size_t len, const marin_task_options_t *o)
{
    marin_future_t *f = NULL;
    ck_assert_marin(marin_submit(rt, task, arg, len, o, &f), MARIN_OK);
    ck_assert_ptr_nonnull(f);
    return f;
}
