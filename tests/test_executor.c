/* The workflow executor (executor.h): output paths and their hash, status
 * files, skipping and forcing, dry run, DOT/Mermaid, leases between drivers
 * (threads and processes), take-over after a crash, fenced commits, and the
 * OOM loop. Every case gets its own directory under /tmp. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "alloc.h"
#include "executor_internal.h"
#include "marin_config.h"
#include "testutil.h"

/* ---- per-case directory ---- */

static char dir[64];       /* the case's scratch directory */
static char prefix[128];   /* dir/out: the executor's prefix */
static char state[128];    /* dir/state: file-backed KV */
static char state_uri[192];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/marin-ex-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(state_uri, sizeof state_uri, "local://?state=%s", state);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

static void teardown(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- file helpers ---- */

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Read a whole file into @p buf ("" when missing). */
static const char *read_into(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The same into a static buffer: for the test's own thread only. */
static const char *slurp(const char *path)
{
    static char buf[65536];
    return read_into(path, buf, sizeof buf);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void append_byte(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, "x", 1);
        (void)w;
        close(fd);
    }
}

static const char *in_step(const marin_step_t *s, const char *file)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", marin_step_output_path(s), file);
    return p;
}

/* How many times the step's task ran (the "runs" file, one byte a run). */
static long runs_of(const marin_step_t *s)
{
    long n = file_size(in_step(s, "runs"));
    return n < 0 ? 0 : n;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* ---- step tasks (registered in main, before Check forks the cases) ---- */

static atomic_int running_now, running_max;
static atomic_int hang_mode; /* ex_step: after counting, hang until cancelled */

/* The general step: counts its run in OUT/runs; config "fail..." fails,
 * "sleep:N..." sleeps N ms first; writes OUT/data = config + the data of
 * its dependencies (one per line of MARIN_DEP_PATHS). */
static int ex_step(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    const char *out = marin_task_env(ctx, "MARIN_OUTPUT_PATH");
    if (!out)
        return marin_task_fail(ctx, "no MARIN_OUTPUT_PATH");
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/runs", out);
    append_byte(p);
    int now = atomic_fetch_add(&running_now, 1) + 1;
    int mx = atomic_load(&running_max);
    while (now > mx && !atomic_compare_exchange_weak(&running_max, &mx, now))
        ;
    char cfg[256] = "";
    memcpy(cfg, arg, len < sizeof cfg - 1 ? len : sizeof cfg - 1);
    if (atomic_load(&hang_mode))
        while (!marin_task_cancelled(ctx))
            sleep_ms(5);
    if (strncmp(cfg, "sleep:", 6) == 0)
        sleep_ms(atol(cfg + 6));
    atomic_fetch_sub(&running_now, 1);
    if (strncmp(cfg, "fail", 4) == 0)
        return marin_task_fail(ctx, "asked to fail");
    char data[8192];
    size_t n = (size_t)snprintf(data, sizeof data, "%s", cfg);
    const char *deps = marin_task_env(ctx, "MARIN_DEP_PATHS");
    while (deps && *deps && n < sizeof data) {
        const char *e = strchr(deps, '\n');
        size_t k = e ? (size_t)(e - deps) : strlen(deps);
        char dp[PATH_MAX], dep_data[1024];
        snprintf(dp, sizeof dp, "%.*s/data", (int)k, deps);
        n += (size_t)snprintf(data + n, sizeof data - n, "|%s",
                              read_into(dp, dep_data, sizeof dep_data));
        deps = e ? e + 1 : "";
    }
    snprintf(p, sizeof p, "%s/data", out);
    FILE *f = fopen(p, "wb");
    if (!f)
        return marin_task_fail(ctx, "cannot write data");
    fputs(data, f);
    fclose(f);
    return 0;
}

/* Writes each MARIN_* env value into OUT/env. */
static int ex_env(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)arg;
    (void)len;
    (void)ud;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/env", marin_task_env(ctx, "MARIN_OUTPUT_PATH"));
    FILE *f = fopen(p, "wb");
    if (!f)
        return marin_task_fail(ctx, "cannot write env");
    static const char *const keys[] = {"MARIN_OUTPUT_PATH", "MARIN_PREFIX",
                                       "MARIN_STEP_NAME", "MARIN_DEP_PATHS",
                                       "USER_KEY"};
    for (size_t i = 0; i < 5; i++) {
        const char *v = marin_task_env(ctx, keys[i]);
        fprintf(f, "%s=%s\n", keys[i], v ? v : "(unset)");
    }
    fclose(f);
    return 0;
}

/* Takes the driver's lease away (owner "victim") for "thief", then, with
 * config "wait", waits to be cancelled (the driver notices at its next
 * renewal). */
static atomic_int saw_cancel;
static int ex_steal(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    marin_runtime_t *rt = marin_task_runtime(ctx);
    char key[PATH_MAX];
    snprintf(key, sizeof key, "executor:%s",
             marin_task_env(ctx, "MARIN_OUTPUT_PATH"));
    if (marin_lease_release(rt, key, "victim") != MARIN_OK)
        return marin_task_fail(ctx, "release failed");
    uint64_t tok;
    if (marin_lease_acquire(rt, key, "thief", 60000, &tok) != MARIN_OK)
        return marin_task_fail(ctx, "steal failed");
    if (len == 4 && memcmp(arg, "wait", 4) == 0) {
        int64_t end = now_ms() + 5000;
        while (!marin_task_cancelled(ctx) && now_ms() < end)
            sleep_ms(5);
        atomic_store(&saw_cancel, marin_task_cancelled(ctx));
    }
    return 0;
}

/* Runs a two-step executor from inside a task (config: the prefix). */
static int ex_nested(marin_task_ctx_t *ctx, const void *arg, size_t len, void *ud)
{
    (void)ud;
    char pre[256];
    snprintf(pre, sizeof pre, "%.*s", (int)len, (const char *)arg);
    marin_executor_t *ex = NULL;
    marin_step_t *a = NULL, *b = NULL;
    int rc = marin_executor_create(marin_task_runtime(ctx), pre, &ex);
    if (rc == MARIN_OK)
        rc = marin_executor_add_step(ex, "inner-a", "ex_step", "a", 1, NULL,
                                     NULL, 0, NULL, &a);
    if (rc == MARIN_OK)
        rc = marin_executor_add_step(ex, "inner-b", "ex_step", "b", 1, NULL,
                                     &a, 1, NULL, &b);
    if (rc == MARIN_OK)
        rc = marin_executor_run(ex, NULL);
    marin_executor_destroy(ex);
    return rc == MARIN_OK ? 0 : marin_task_fail(ctx, marin_last_error());
}

static void register_tasks(void)
{
    if (marin_register_task("ex_step", ex_step, NULL) != MARIN_OK ||
        marin_register_task("ex_env", ex_env, NULL) != MARIN_OK ||
        marin_register_task("ex_steal", ex_steal, NULL) != MARIN_OK ||
        marin_register_task("ex_nested", ex_nested, NULL) != MARIN_OK) {
        fprintf(stderr, "cannot register tasks: %s\n", marin_last_error());
        exit(1);
    }
}

/* ---- building executors ---- */

static marin_executor_t *make_ex(marin_runtime_t *rt)
{
    marin_executor_t *ex = NULL;
    ck_assert_marin(marin_executor_create(rt, prefix, &ex), MARIN_OK);
    return ex;
}

static marin_step_t *add(marin_executor_t *ex, const char *name,
                         const char *task, const char *config,
                         const char *version, marin_step_t *const *deps,
                         size_t ndeps)
{
    marin_step_t *s = NULL;
    ck_assert_marin(marin_executor_add_step(ex, name, task, config,
                                            config ? strlen(config) : 0,
                                            version, deps, ndeps, NULL, &s),
                    MARIN_OK);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* download -> tokenize -> count; configs given. */
static void chain(marin_executor_t *ex, const char *c1, const char *c2,
                  const char *c3, marin_step_t **s)
{
    s[0] = add(ex, "download", "ex_step", c1, "v1", NULL, 0);
    s[1] = add(ex, "tokenize", "ex_step", c2, "v1", &s[0], 1);
    s[2] = add(ex, "count", "ex_step", c3, "v1", &s[1], 1);
}

static marin_executor_options_t *fast_opts(const char *owner, int64_t ttl)
{
    marin_executor_options_t *o = NULL;
    ck_assert_marin(marin_executor_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_poll_ms(o, 20), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_lease_ttl_ms(o, ttl), MARIN_OK);
    if (owner)
        ck_assert_marin(marin_executor_options_set_owner(o, owner), MARIN_OK);
    return o;
}

static void assert_status(const marin_step_t *s, int want_state, int want_attempt)
{
    int st = -1, at = -1;
    ck_assert_marin(marin_step_status(s, &st, &at), MARIN_OK);
    ck_assert_msg(st == want_state && at == want_attempt,
                  "step %s: state %d attempt %d, wanted %d / %d",
                  marin_step_name(s), st, at, want_state, want_attempt);
}

/* ---- tests: creation and steps ---- */

START_TEST(test_executor_create_args)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = (marin_executor_t *)1;
    ck_assert_marin(marin_executor_create(NULL, prefix, &ex), MARIN_EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert_marin(marin_executor_create(rt, prefix, NULL), MARIN_EINVAL);
    /* no prefix and MARIN_PREFIX was unset at open */
    ck_assert_marin(marin_executor_create(rt, NULL, &ex), MARIN_EINVAL);
    ck_assert_lasterr_has("MARIN_PREFIX");
    ck_assert_marin(marin_executor_create(rt, "", &ex), MARIN_EINVAL);
    marin_executor_destroy(NULL);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_prefix_from_env_and_normalized)
{
    setenv("MARIN_PREFIX", prefix, 1);
    marin_runtime_t *rt = open_rt("local");
    unsetenv("MARIN_PREFIX");
    marin_executor_t *ex = NULL;
    ck_assert_marin(marin_executor_create(rt, NULL, &ex), MARIN_OK);
    marin_step_t *s = add(ex, "a", "ex_step", "x", NULL, NULL, 0);
    ck_assert_int_eq(strncmp(marin_step_output_path(s), prefix, strlen(prefix)), 0);
    ck_assert_str_eq(marin_step_output_path(s) + strlen(prefix) + 1,
                     strrchr(marin_step_output_path(s), '/') + 1);
    marin_executor_destroy(ex);

    /* relative, with "." parts, repeated and trailing slashes */
    char cwd[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_marin(marin_executor_create(rt, "./out//x/./", &ex), MARIN_OK);
    s = add(ex, "a", "ex_step", "x", NULL, NULL, 0);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/out/x/a-", dir);
    ck_assert_msg(strncmp(marin_step_output_path(s), want, strlen(want)) == 0,
                  "%s does not start with %s", marin_step_output_path(s), want);
    ck_assert_uint_eq(strlen(marin_step_output_path(s)), strlen(want) + 8);
    ck_assert_int_eq(chdir(cwd), 0);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_add_step_invalid)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt), *other = make_ex(rt);
    marin_step_t *s = (marin_step_t *)1;
    static const char *const bad[] = {"", "/a", ".a", "a/../b", "a..b", "a b",
                                      "a//b", "a/", "a/.b", "tab\t", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(marin_executor_add_step(ex, bad[i], "ex_step", NULL, 0,
                                              NULL, NULL, 0, NULL, &s) ==
                          MARIN_EINVAL,
                      "name '%s' accepted", bad[i]);
        ck_assert_ptr_null(s);
        ck_assert_lasterr_has("step name");
    }
    char longname[MARIN_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_marin(marin_executor_add_step(ex, longname, "ex_step", NULL, 0,
                                            NULL, NULL, 0, NULL, &s),
                    MARIN_EINVAL);
    longname[MARIN_NAME_MAX] = '\0'; /* exactly the maximum: fine */
    ck_assert_marin(marin_executor_add_step(ex, longname, "ex_step", NULL, 0,
                                            NULL, NULL, 0, NULL, &s),
                    MARIN_OK);
    /* a long path makes hashed KV keys; it still works (see run tests) */
    ck_assert_marin(marin_executor_add_step(ex, NULL, "ex_step", NULL, 0, NULL,
                                            NULL, 0, NULL, &s), MARIN_EINVAL);
    ck_assert_marin(marin_executor_add_step(ex, "a", NULL, NULL, 0, NULL, NULL,
                                            0, NULL, &s), MARIN_EINVAL);
    ck_assert_marin(marin_executor_add_step(ex, "a", "", NULL, 0, NULL, NULL,
                                            0, NULL, &s), MARIN_EINVAL);
    ck_assert_marin(marin_executor_add_step(ex, "a", "ex_step", NULL, 3, NULL,
                                            NULL, 0, NULL, &s), MARIN_EINVAL);
    ck_assert_marin(marin_executor_add_step(ex, "a", "ex_step", NULL, 0, NULL,
                                            NULL, 1, NULL, &s), MARIN_EINVAL);
    ck_assert_marin(marin_executor_add_step(NULL, "a", "ex_step", NULL, 0,
                                            NULL, NULL, 0, NULL, &s),
                    MARIN_EINVAL);
    ck_assert_marin(marin_executor_add_step(ex, "a", "ex_step", NULL, 0, NULL,
                                            NULL, 0, NULL, NULL), MARIN_EINVAL);
    marin_step_t *a = add(ex, "a", "ex_step", NULL, NULL, NULL, 0);
    marin_step_t *b = add(other, "b", "ex_step", NULL, NULL, NULL, 0);
    ck_assert_marin(marin_executor_add_step(ex, "a", "ex_step", "y", 1, NULL,
                                            NULL, 0, NULL, &s), MARIN_EEXIST);
    ck_assert_ptr_null(s);
    marin_step_t *deps[2] = {a, b};
    ck_assert_marin(marin_executor_add_step(ex, "c", "ex_step", NULL, 0, NULL,
                                            deps, 2, NULL, &s), MARIN_EINVAL);
    ck_assert_lasterr_has("another executor");
    deps[1] = NULL;
    ck_assert_marin(marin_executor_add_step(ex, "c", "ex_step", NULL, 0, NULL,
                                            deps, 2, NULL, &s), MARIN_EINVAL);
    deps[1] = a;
    ck_assert_marin(marin_executor_add_step(ex, "c", "ex_step", NULL, 0, NULL,
                                            deps, 2, NULL, &s), MARIN_EINVAL);
    ck_assert_lasterr_has("twice");
    /* names with '/' are nested directories */
    marin_step_t *n = add(ex, "tok/en-us_v1.2", "ex_step", NULL, NULL, &a, 1);
    ck_assert_str_eq(marin_step_name(n), "tok/en-us_v1.2");
    ck_assert_ptr_null(marin_step_name(NULL));
    ck_assert_ptr_null(marin_step_output_path(NULL));
    int st;
    ck_assert_marin(marin_step_status(NULL, &st, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_step_status(n, NULL, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_step_status(n, &st, NULL), MARIN_OK);
    ck_assert_int_eq(st, MARIN_STEP_NONE);
    marin_executor_destroy(ex);
    marin_executor_destroy(other);
    marin_runtime_close(rt);
}
END_TEST

/* The worked example of docs/executor.md, byte for byte. */
START_TEST(test_executor_worked_example_hash)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = NULL;
    ck_assert_marin(marin_executor_create(rt, "/data/marin", &ex), MARIN_OK);
    marin_step_t *d = add(ex, "download", "ex_step",
                          "https://example.com/corpus.txt", "v1", NULL, 0);
    marin_step_t *t = add(ex, "tokenize", "ex_step", "{\"lowercase\":true}",
                          "v2", &d, 1);
    ck_assert_str_eq(marin_step_output_path(d), "/data/marin/download-c1be9e5b");
    ck_assert_str_eq(marin_step_output_path(t), "/data/marin/tokenize-9228bdb9");

    /* the encoding, built by hand as the page spells it */
    static const unsigned char enc[] = {
        'm', 'a', 'r', 'i', 'n', '-', 's', 't', 'e', 'p', 0, /* magic */
        1, 0, 0, 0, 0, 0, 0, 0,                              /* version 1 */
        8, 0, 0, 0, 0, 0, 0, 0, 't', 'o', 'k', 'e', 'n', 'i', 'z', 'e',
        18, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'l', 'o', 'w', 'e', 'r', 'c', 'a',
        's', 'e', '"', ':', 't', 'r', 'u', 'e', '}',
        2, 0, 0, 0, 0, 0, 0, 0, 'v', '2',
        1, 0, 0, 0, 0, 0, 0, 0, /* one dependency */
        17, 0, 0, 0, 0, 0, 0, 0, 'd', 'o', 'w', 'n', 'l', 'o', 'a', 'd', '-',
        'c', '1', 'b', 'e', '9', 'e', '5', 'b'};
    ck_assert_uint_eq(sizeof enc, 104);
    ck_assert_uint_eq((unsigned long long)XXH3_64bits(enc, sizeof enc),
                      0x9228bdb9bf9cbe69ULL);
    const char *deps[] = {"download-c1be9e5b"};
    size_t len = 0;
    unsigned char *mine = marin__xstep_encode("tokenize", "{\"lowercase\":true}",
                                              18, "v2", deps, 1, &len);
    ck_assert_ptr_nonnull(mine);
    ck_assert_uint_eq(len, sizeof enc);
    ck_assert_int_eq(memcmp(mine, enc, len), 0);
    marin__free(mine);

    /* the prefix is not hashed: another prefix gives the same NAME-HASH8 */
    marin_executor_t *ex2 = NULL;
    ck_assert_marin(marin_executor_create(rt, "/elsewhere", &ex2), MARIN_OK);
    marin_step_t *d2 = add(ex2, "download", "ex_step",
                           "https://example.com/corpus.txt", "v1", NULL, 0);
    marin_step_t *t2 = add(ex2, "tokenize", "ex_step", "{\"lowercase\":true}",
                           "v2", &d2, 1);
    ck_assert_str_eq(marin_step_output_path(t2), "/elsewhere/tokenize-9228bdb9");
    marin_executor_destroy(ex2);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* Anything upstream changes every path below it; dependency order counts. */
START_TEST(test_executor_upstream_change_changes_paths)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *a = make_ex(rt), *b = make_ex(rt), *c = make_ex(rt);
    marin_step_t *sa[3], *sb[3], *sc[3];
    chain(a, "one", "two", "three", sa);
    chain(b, "ONE", "two", "three", sb);
    chain(c, "one", "two", "three", sc);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_ne(marin_step_output_path(sa[i]), marin_step_output_path(sb[i]));
        ck_assert_str_eq(marin_step_output_path(sa[i]), marin_step_output_path(sc[i]));
    }
    /* version and name count too; so does the order of the dependencies */
    marin_executor_t *d = make_ex(rt);
    marin_step_t *x = add(d, "x", "ex_step", "c", "v1", NULL, 0);
    marin_step_t *y = add(d, "y", "ex_step", "c", "v1", NULL, 0);
    marin_step_t *xy[2] = {x, y}, *yx[2] = {y, x};
    marin_step_t *p1 = add(d, "p1", "ex_step", "c", "v1", xy, 2);
    marin_step_t *p2 = add(d, "p2", "ex_step", "c", "v1", yx, 2);
    marin_step_t *v2 = add(d, "z", "ex_step", "c", "v2", NULL, 0);
    ck_assert_str_ne(marin_step_output_path(x) + strlen(prefix) + 3,
                     marin_step_output_path(y) + strlen(prefix) + 3);
    ck_assert_str_ne(marin_step_output_path(p1) + strlen(prefix) + 4,
                     marin_step_output_path(p2) + strlen(prefix) + 4);
    ck_assert_str_ne(marin_step_output_path(x) + strlen(prefix) + 3,
                     marin_step_output_path(v2) + strlen(prefix) + 3);
    marin_executor_destroy(a);
    marin_executor_destroy(b);
    marin_executor_destroy(c);
    marin_executor_destroy(d);
    marin_runtime_close(rt);
}
END_TEST

/* ---- tests: running ---- */

START_TEST(test_executor_chain_runs_then_skips)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *s[3];
    chain(ex, "d", "t", "c", s);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(runs_of(s[i]), 1);
        assert_status(s[i], MARIN_STEP_SUCCESS, 1);
    }
    /* each task saw its dependency's output */
    ck_assert_str_eq(slurp(in_step(s[2], "data")), "c|t|d");
    /* the downstream steps were WAITING, then RUNNING, then SUCCESS */
    const char *log = slurp(in_step(s[2], MARIN__XSTATUS_FILE));
    ck_assert_int_eq(count_lines(log), 3);
    ck_assert_ptr_nonnull(strstr(log, "\"state\":\"WAITING\",\"attempt\":0"));
    ck_assert_ptr_nonnull(strstr(log, "\"state\":\"RUNNING\",\"attempt\":1"));
    ck_assert_ptr_nonnull(strstr(log, "\"state\":\"SUCCESS\",\"attempt\":1"));
    ck_assert_int_eq(count_lines(slurp(in_step(s[0], MARIN__XSTATUS_FILE))), 2);

    /* again, from a new executor and runtime: everything is skipped */
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
    rt = open_rt("local");
    ex = make_ex(rt);
    chain(ex, "d", "t", "c", s);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(runs_of(s[i]), 1);
        assert_status(s[i], MARIN_STEP_SUCCESS, 1);
    }
    ck_assert_int_eq(count_lines(slurp(in_step(s[2], MARIN__XSTATUS_FILE))), 3);

    /* a changed middle step runs again with everything below it */
    marin_executor_t *ex2 = make_ex(rt);
    marin_step_t *s2[3];
    chain(ex2, "d", "T", "c", s2);
    ck_assert_marin(marin_executor_run(ex2, NULL), MARIN_OK);
    ck_assert_str_eq(marin_step_output_path(s2[0]), marin_step_output_path(s[0]));
    ck_assert_int_eq(runs_of(s2[0]), 1);
    ck_assert_int_eq(runs_of(s2[1]), 1);
    ck_assert_int_eq(runs_of(s2[2]), 1);
    ck_assert_str_eq(slurp(in_step(s2[2], "data")), "c|T|d");
    marin_executor_destroy(ex2);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_env_visible)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_step", "a", NULL, NULL, 0);
    marin_step_t *b = add(ex, "nested/b", "ex_step", "b", NULL, NULL, 0);
    marin_task_options_t *o = NULL;
    ck_assert_marin(marin_task_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "USER_KEY", "kept"), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(o, "MARIN_STEP_NAME", "mine"),
                    MARIN_OK);
    marin_step_t *deps[2] = {b, a}, *e = NULL;
    ck_assert_marin(marin_executor_add_step(ex, "e", "ex_env", NULL, 0, NULL,
                                            deps, 2, o, &e), MARIN_OK);
    marin_task_options_destroy(o); /* copied */
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    char want[4 * PATH_MAX];
    snprintf(want, sizeof want,
             "MARIN_OUTPUT_PATH=%s\nMARIN_PREFIX=%s\nMARIN_STEP_NAME=e\n"
             "MARIN_DEP_PATHS=%s\n%s\nUSER_KEY=kept\n",
             marin_step_output_path(e), prefix, marin_step_output_path(b),
             marin_step_output_path(a));
    ck_assert_str_eq(slurp(in_step(e, "env")), want);
    struct stat sb;
    ck_assert_int_eq(stat(marin_step_output_path(b), &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_failed_stops_rerun_and_force_reruns)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *s[3];
    chain(ex, "d", "fail", "c", s);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_ETASK);
    ck_assert_lasterr_has("tokenize");
    ck_assert_lasterr_has("asked to fail");
    assert_status(s[0], MARIN_STEP_SUCCESS, 1);
    assert_status(s[1], MARIN_STEP_FAILED, 1);
    ck_assert_int_eq(runs_of(s[2]), 0); /* below a failure: never started */
    assert_status(s[2], MARIN_STEP_WAITING, 0);
    ck_assert_ptr_nonnull(strstr(slurp(in_step(s[1], MARIN__XSTATUS_FILE)),
                                 "\"error\":\""));

    /* rerun: stops at the FAILED step before anything starts */
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_ESTATE);
    ck_assert_lasterr_has("tokenize");
    ck_assert_lasterr_has(MARIN__XSTATUS_FILE);
    ck_assert_int_eq(runs_of(s[1]), 1);
    ck_assert_int_eq(runs_of(s[0]), 1);

    /* force: the step runs again (and fails again: attempt 2) */
    marin_executor_options_t *o = fast_opts(NULL, 30000);
    ck_assert_marin(marin_executor_options_set_force(o, 1), MARIN_OK);
    ck_assert_marin(marin_executor_run(ex, o), MARIN_ETASK);
    assert_status(s[1], MARIN_STEP_FAILED, 2);
    ck_assert_int_eq(runs_of(s[1]), 2);
    ck_assert_int_eq(runs_of(s[0]), 1);
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_force_reruns_after_fix)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_step", "fail", NULL, NULL, 0);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_ETASK);
    assert_status(a, MARIN_STEP_FAILED, 1);
    /* "fix" the code: a task that succeeds, same step identity */
    marin_executor_t *ex2 = make_ex(rt);
    marin_step_t *a2 = NULL;
    ck_assert_marin(marin_executor_add_step(ex2, "a", "ex_env", "fail", 4, NULL,
                                            NULL, 0, NULL, &a2), MARIN_OK);
    ck_assert_str_eq(marin_step_output_path(a2), marin_step_output_path(a));
    ck_assert_marin(marin_executor_run(ex2, NULL), MARIN_ESTATE);
    marin_executor_options_t *o = fast_opts(NULL, 30000);
    ck_assert_marin(marin_executor_options_set_force(o, 1), MARIN_OK);
    ck_assert_marin(marin_executor_run(ex2, o), MARIN_OK);
    assert_status(a2, MARIN_STEP_SUCCESS, 2);
    /* SUCCESS is final: force does not rerun it */
    ck_assert_marin(marin_executor_run(ex2, o), MARIN_OK);
    assert_status(a2, MARIN_STEP_SUCCESS, 2);
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex2);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_unknown_task)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "no_such_task", NULL, NULL, NULL, 0);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_ENOTFOUND);
    ck_assert_lasterr_has("no_such_task");
    assert_status(a, MARIN_STEP_FAILED, 1);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_parallel_and_max_parallel)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=8");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *root = add(ex, "root", "ex_step", "r", NULL, NULL, 0);
    marin_step_t *mid[4];
    for (int i = 0; i < 4; i++) {
        char name[8], cfg[16];
        snprintf(name, sizeof name, "m%d", i);
        snprintf(cfg, sizeof cfg, "sleep:150#%d", i);
        mid[i] = add(ex, name, "ex_step", cfg, NULL, &root, 1);
    }
    marin_step_t *join = add(ex, "join", "ex_step", "j", NULL, mid, 4);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    ck_assert_int_ge(atomic_load(&running_max), 2); /* they overlapped */
    ck_assert_int_eq(runs_of(join), 1);

    /* one at a time */
    atomic_store(&running_max, 0);
    marin_executor_t *ex2 = make_ex(rt);
    marin_step_t *r2 = add(ex2, "root", "ex_step", "r2", NULL, NULL, 0);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof name, "m%d", i);
        add(ex2, name, "ex_step", "sleep:60", NULL, &r2, 1);
    }
    marin_executor_options_t *o = fast_opts(NULL, 30000);
    ck_assert_marin(marin_executor_options_set_max_parallel(o, 1), MARIN_OK);
    ck_assert_marin(marin_executor_run(ex2, o), MARIN_OK);
    ck_assert_int_eq(atomic_load(&running_max), 1);
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex2);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* An executor run inside a task of a 1-cpu runtime: the outer task lends
 * its cpu back while the steps run. */
START_TEST(test_executor_run_inside_task)
{
    marin_runtime_t *rt = open_rt("local://?resources=cpus=1");
    marin_executor_t *ex = make_ex(rt);
    char inner[256];
    snprintf(inner, sizeof inner, "%s/inner", prefix);
    marin_step_t *outer = add(ex, "outer", "ex_nested", inner, NULL, NULL, 0);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    assert_status(outer, MARIN_STEP_SUCCESS, 1);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_long_paths_use_hashed_keys)
{
    /* prefix + name over the 255-byte KV key limit */
    char deep[PATH_MAX];
    snprintf(deep, sizeof deep, "%s/", prefix);
    size_t n = strlen(deep);
    memset(deep + n, 'p', 200);
    deep[n + 200] = '\0';
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = NULL;
    ck_assert_marin(marin_executor_create(rt, deep, &ex), MARIN_OK);
    char name[MARIN_NAME_MAX + 1];
    memset(name, 'n', MARIN_NAME_MAX - 10);
    name[MARIN_NAME_MAX - 10] = '\0';
    marin_step_t *a = add(ex, name, "ex_step", "a", NULL, NULL, 0);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    assert_status(a, MARIN_STEP_SUCCESS, 1);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    ck_assert_int_eq(runs_of(a), 1);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* ---- tests: plan, dry run, DOT, Mermaid ---- */

/* The plan as marin_executor_plan gives it (static buffer). */
static const char *plan_of(marin_executor_t *ex)
{
    static char buf[8192];
    int n = marin_executor_plan(ex, NULL, 0);
    ck_assert_msg(n > 0, "plan: %d %s", n, marin_last_error());
    ck_assert_int_lt(n, (int)sizeof buf);
    ck_assert_int_eq(marin_executor_plan(ex, buf, sizeof buf), n);
    ck_assert_uint_eq(strlen(buf), (size_t)n);
    return buf;
}

START_TEST(test_executor_plan_and_dry_run)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *s[3];
    chain(ex, "d", "fail", "c", s);
    char want[4096];
    snprintf(want, sizeof want,
             "RUN download %s\nRUN tokenize %s after download\n"
             "RUN count %s after tokenize\n",
             marin_step_output_path(s[0]), marin_step_output_path(s[1]),
             marin_step_output_path(s[2]));
    ck_assert_str_eq(plan_of(ex), want);

    /* dry run: the same text on stdout, and nothing runs */
    fflush(stdout);
    char out[PATH_MAX];
    snprintf(out, sizeof out, "%s/stdout", dir);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    int saved = dup(1);
    dup2(fd, 1);
    marin_executor_options_t *o = NULL;
    ck_assert_marin(marin_executor_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_dry_run(o, 1), MARIN_OK);
    int rc = marin_executor_run(ex, o);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert_str_eq(slurp(out), want);
    ck_assert_int_eq(runs_of(s[0]), 0);
    ck_assert_int_eq(file_size(marin_step_output_path(s[0])), -1);

    /* after a failing run: SKIP, STOP, RUN */
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_ETASK);
    snprintf(want, sizeof want,
             "SKIP download %s\nSTOP tokenize %s after download\n"
             "RUN count %s after tokenize\n",
             marin_step_output_path(s[0]), marin_step_output_path(s[1]),
             marin_step_output_path(s[2]));
    ck_assert_str_eq(plan_of(ex), want);
    /* snprintf-style truncation */
    char small[8];
    ck_assert_int_eq(marin_executor_plan(ex, small, sizeof small), (int)strlen(want));
    ck_assert_str_eq(small, "SKIP do");
    ck_assert_marin(marin_executor_plan(NULL, small, 8), MARIN_EINVAL);
    ck_assert_marin(marin_executor_plan(ex, NULL, 8), MARIN_EINVAL);
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_dot_and_mermaid)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = NULL;
    ck_assert_marin(marin_executor_create(rt, "/data/marin", &ex), MARIN_OK);
    marin_step_t *d = add(ex, "download", "ex_step",
                          "https://example.com/corpus.txt", "v1", NULL, 0);
    marin_step_t *t = add(ex, "tokenize", "ex_step", "{\"lowercase\":true}",
                          "v2", &d, 1);
    marin_step_t *both[2] = {d, t};
    marin_step_t *c = add(ex, "stats/count", "ex_step", "", "v1", both, 2);
    char buf[2048];
    int n = marin_executor_format_dot(ex, buf, sizeof buf);
    /* the texts of docs/executor.md */
    const char *hash = "62d84a74";
    ck_assert_str_eq(marin_step_output_path(c), "/data/marin/stats/count-62d84a74");
    char want[2048];
    snprintf(want, sizeof want,
             "digraph executor {\n"
             "  rankdir=LR;\n"
             "  node [shape=box];\n"
             "  \"download\" [label=\"download\\ndownload-c1be9e5b\"];\n"
             "  \"tokenize\" [label=\"tokenize\\ntokenize-9228bdb9\"];\n"
             "  \"stats/count\" [label=\"stats/count\\nstats/count-%s\"];\n"
             "  \"download\" -> \"tokenize\";\n"
             "  \"download\" -> \"stats/count\";\n"
             "  \"tokenize\" -> \"stats/count\";\n"
             "}\n",
             hash);
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(n, (int)strlen(want));
    ck_assert_int_eq(marin_executor_format_dot(ex, NULL, 0), n);

    n = marin_executor_format_mermaid(ex, buf, sizeof buf);
    snprintf(want, sizeof want,
             "flowchart LR\n"
             "  s0[\"download<br/>download-c1be9e5b\"]\n"
             "  s1[\"tokenize<br/>tokenize-9228bdb9\"]\n"
             "  s2[\"stats/count<br/>stats/count-%s\"]\n"
             "  s0 --> s1\n"
             "  s0 --> s2\n"
             "  s1 --> s2\n",
             hash);
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(n, (int)strlen(want));
    char small[5];
    ck_assert_int_eq(marin_executor_format_mermaid(ex, small, sizeof small), n);
    ck_assert_str_eq(small, "flow");
    ck_assert_marin(marin_executor_format_dot(NULL, buf, 1), MARIN_EINVAL);
    ck_assert_marin(marin_executor_format_mermaid(ex, NULL, 1), MARIN_EINVAL);

    /* an empty executor */
    marin_executor_t *empty = make_ex(rt);
    ck_assert_int_eq(marin_executor_format_mermaid(empty, buf, sizeof buf), 13);
    ck_assert_marin(marin_executor_run(empty, NULL), MARIN_OK);
    ck_assert_int_eq(marin_executor_plan(empty, buf, sizeof buf), 0);
    marin_executor_destroy(empty);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* ---- tests: the status file ---- */

START_TEST(test_executor_corrupt_status_reported)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_step", "a", NULL, NULL, 0);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    const char *file = in_step(a, MARIN__XSTATUS_FILE);
    char good[1024];
    snprintf(good, sizeof good, "%s", slurp(file));
    ck_assert_int_eq(count_lines(good), 2);
    static const char *const bad[] = {
        "garbage\n",
        "{\"state\":\"RUNNING\"\n",
        "[1,2]\n",
        "\n",
        "{\"state\":\"DONE\",\"attempt\":1,\"time\":\"t\",\"owner\":\"o\"}\n",
        "{\"state\":1,\"attempt\":1,\"time\":\"t\",\"owner\":\"o\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":-1,\"time\":\"t\",\"owner\":\"o\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1.5,\"time\":\"t\",\"owner\":\"o\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":99999999999,\"time\":\"t\",\"owner\":\"o\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1,\"owner\":\"o\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1,\"time\":\"t\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1,\"time\":\"t\",\"owner\":\"o\",\"owner\":\"p\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1,\"time\":\"t\",\"owner\":\"o\\u0000x\"}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1,\"time\":\"t\",\"owner\":\"o\"} x\n",
    };
    char path_line[PATH_MAX + 8];
    snprintf(path_line, sizeof path_line, "%s:3:", file);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char data[2048];
        int n = snprintf(data, sizeof data, "%s%s", good, bad[i]);
        write_file(file, data, (size_t)n);
        int st = -1;
        ck_assert_msg(marin_step_status(a, &st, NULL) == MARIN_EPROTO,
                      "case %zu accepted", i);
        ck_assert_msg(strstr(marin_last_error(), path_line),
                      "case %zu: '%s' lacks '%s'", i, marin_last_error(), path_line);
        ck_assert_int_eq(st, MARIN_STEP_NONE);
        ck_assert_marin(marin_executor_plan(ex, NULL, 0), MARIN_EPROTO);
        ck_assert_marin(marin_executor_run(ex, NULL), MARIN_EPROTO);
        ck_assert_lasterr_has(path_line);
    }
    /* a NUL byte in the middle of a line */
    char nul[2048];
    int n = snprintf(nul, sizeof nul, "%s{\"state\"", good);
    nul[n++] = '\0';
    n += snprintf(nul + n, sizeof nul - (size_t)n, ":\"SUCCESS\"}\n");
    write_file(file, nul, (size_t)n);
    int st;
    ck_assert_marin(marin_step_status(a, &st, NULL), MARIN_EPROTO);
    ck_assert_lasterr_has(path_line);
    /* unknown fields and a missing final newline are fine */
    n = snprintf(nul, sizeof nul,
                 "%s{\"state\":\"FAILED\",\"attempt\":7,\"time\":\"t\","
                 "\"owner\":\"o\",\"extra\":[1,{}]}",
                 good);
    write_file(file, nul, (size_t)n);
    int at;
    ck_assert_marin(marin_step_status(a, &st, &at), MARIN_OK);
    ck_assert_int_eq(st, MARIN_STEP_FAILED);
    ck_assert_int_eq(at, 7);
    /* an unreadable status "file" */
    ck_assert_int_eq(unlink(file), 0);
    ck_assert_int_eq(mkdir(file, 0755), 0);
    ck_assert_marin(marin_step_status(a, &st, NULL), MARIN_EUNAVAILABLE);
    ck_assert_int_eq(rmdir(file), 0);
    ck_assert_marin(marin_step_status(a, &st, &at), MARIN_OK);
    ck_assert_int_eq(st, MARIN_STEP_NONE);
    ck_assert_int_eq(at, 0);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* Random and mutated bytes: the parser reports or accepts, never crashes
 * (ASan/UBSan watch it). */
START_TEST(test_executor_status_parser_any_bytes)
{
    static const char *const seeds[] = {
        "{\"state\":\"RUNNING\",\"attempt\":2,\"time\":\"2026-11-26T08:30:00.123Z\","
        "\"owner\":\"host:1:ab\",\"step\":\"x\",\"token\":3}\n",
        "{\"state\":\"SUCCESS\",\"attempt\":1,\"time\":\"t\",\"owner\":\"o\"}\n"
        "{\"state\":\"FAILED\",\"attempt\":1,\"time\":\"t\",\"owner\":\"o\","
        "\"error\":\"\\u00e9\\ud83d\\ude00\"}\n",
    };
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    char buf[512];
    int ok = 0, bad = 0;
    for (int i = 0; i < 20000; i++) {
        fuzz_input(buf, sizeof buf, seeds, 2, "{}[]\":,\\0123456789aeSTU\n ", &seed);
        marin__xstatus st;
        int rc = marin__xstatus_parse("f", buf, strlen(buf), &st);
        ck_assert(rc == MARIN_OK || rc == MARIN_EPROTO);
        if (rc == MARIN_OK) {
            ok++;
            ck_assert(st.state >= MARIN_STEP_NONE && st.state <= MARIN_STEP_FAILED);
        } else {
            bad++;
            ck_assert_int_eq(strncmp(marin_last_error(), "f:", 2), 0);
        }
    }
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(bad, 0);
}
END_TEST

/* A SUCCESS commit in the KV store without SUCCESS in the file (the driver
 * died between the two): skipped, and the file repaired. */
START_TEST(test_executor_commit_without_status_is_repaired)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_step", "a", NULL, NULL, 0);
    char key[PATH_MAX];
    snprintf(key, sizeof key, "executor-success:%s", marin_step_output_path(a));
    ck_assert_marin(marin_kv_put(rt, key, "x", 1), MARIN_OK);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "SKIP a %s\n", marin_step_output_path(a));
    ck_assert_str_eq(plan_of(ex), want);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    ck_assert_int_eq(runs_of(a), 0);
    assert_status(a, MARIN_STEP_SUCCESS, 0);
    ck_assert_ptr_nonnull(strstr(slurp(in_step(a, MARIN__XSTATUS_FILE)),
                                 "\"note\":\"repaired"));
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* ---- tests: leases ---- */

/* The driver loses its lease while the task runs: the commit is refused
 * (stale fencing token) and SUCCESS is never written. */
START_TEST(test_executor_stale_token_commit_refused)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_steal", NULL, NULL, NULL, 0);
    marin_executor_options_t *o = fast_opts("victim", 3000);
    ck_assert_marin(marin_executor_run(ex, o), MARIN_ECONFLICT);
    ck_assert_lasterr_has("lease");
    assert_status(a, MARIN_STEP_RUNNING, 1);
    char key[PATH_MAX];
    snprintf(key, sizeof key, "executor-success:%s", marin_step_output_path(a));
    void *v = NULL;
    size_t len;
    ck_assert_marin(marin_kv_get(rt, key, &v, &len), MARIN_ENOTFOUND);

    /* the fencing itself: an old token is refused once another took over */
    char lk[PATH_MAX];
    snprintf(lk, sizeof lk, "executor:%s/other", prefix);
    uint64_t t1, t2;
    ck_assert_marin(marin_lease_acquire(rt, lk, "one", 50, &t1), MARIN_OK);
    sleep_ms(80);
    ck_assert_marin(marin_lease_acquire(rt, lk, "two", 5000, &t2), MARIN_OK);
    ck_assert(t2 > t1);
    ck_assert_marin(marin_kv_put_fenced(rt, key, "x", 1, lk, t1), MARIN_ECONFLICT);
    ck_assert_marin(marin_kv_put_fenced(rt, key, "x", 1, lk, t2), MARIN_OK);
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* The heartbeat notices the lost lease while the task still runs, cancels
 * it and reports the step. */
START_TEST(test_executor_lost_lease_cancels_task)
{
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_steal", "wait", NULL, NULL, 0);
    marin_executor_options_t *o = fast_opts("victim", 300);
    int64_t t0 = now_ms();
    ck_assert_marin(marin_executor_run(ex, o), MARIN_ECONFLICT);
    ck_assert_lasterr_has("lost its lease");
    ck_assert_int_lt(now_ms() - t0, 3000);
    assert_status(a, MARIN_STEP_RUNNING, 1);
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt); /* waits for the task */
    ck_assert_int_eq(atomic_load(&saw_cancel), 1);
}
END_TEST

/* The heartbeat keeps a step longer than its ttl; a second driver (another
 * thread, another owner) waits and then skips it. */
typedef struct {
    marin_runtime_t *rt;
    const char *owner;
    int rc;
    char err[1024];
} driver_arg;

static void *driver_thread(void *p)
{
    driver_arg *d = p;
    marin_executor_t *ex = NULL;
    d->rc = marin_executor_create(d->rt, prefix, &ex);
    marin_step_t *s[3];
    if (d->rc == MARIN_OK) {
        marin_executor_add_step(ex, "slow", "ex_step", "sleep:500", 9, NULL,
                                NULL, 0, NULL, &s[0]);
        marin_executor_add_step(ex, "after", "ex_step", "x", 1, NULL, &s[0],
                                1, NULL, &s[1]);
        marin_executor_options_t *o = NULL;
        marin_executor_options_create(&o);
        marin_executor_options_set_owner(o, d->owner);
        marin_executor_options_set_lease_ttl_ms(o, 150);
        marin_executor_options_set_poll_ms(o, 10);
        d->rc = marin_executor_run(ex, o);
        snprintf(d->err, sizeof d->err, "%s", marin_last_error());
        marin_executor_options_destroy(o);
    }
    marin_executor_destroy(ex);
    return NULL;
}

START_TEST(test_executor_two_drivers_one_process)
{
    marin_runtime_t *rt = open_rt("local");
    driver_arg d[2] = {{rt, "driver-one", -99, ""}, {rt, "driver-two", -99, ""}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, driver_thread, &d[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(d[i].rc == MARIN_OK, "driver %d: %d %s", i, d[i].rc, d[i].err);
    }
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *slow = add(ex, "slow", "ex_step", "sleep:500", NULL, NULL, 0);
    marin_step_t *after = add(ex, "after", "ex_step", "x", NULL, &slow, 1);
    ck_assert_int_eq(runs_of(slow), 1);
    ck_assert_int_eq(runs_of(after), 1);
    assert_status(slow, MARIN_STEP_SUCCESS, 1);
    assert_status(after, MARIN_STEP_SUCCESS, 1);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* One driver in a child process: opens the file-backed KV and runs
 * slow -> after on the shared prefix. Exit code 0 on MARIN_OK. */
static void child_driver(int start_fd, const char *owner, int64_t ttl)
{
    char c;
    while (read(start_fd, &c, 1) > 0)
        ;
    marin_runtime_t *rt = NULL;
    marin_executor_t *ex = NULL;
    marin_executor_options_t *o = NULL;
    marin_step_t *s[2];
    int rc = marin_test_runtime_open(state_uri, &rt);
    if (rc == MARIN_OK)
        rc = marin_executor_create(rt, prefix, &ex);
    if (rc == MARIN_OK)
        rc = marin_executor_add_step(ex, "slow", "ex_step", "sleep:300", 9,
                                     NULL, NULL, 0, NULL, &s[0]);
    if (rc == MARIN_OK)
        rc = marin_executor_add_step(ex, "after", "ex_step", "x", 1, NULL,
                                     &s[0], 1, NULL, &s[1]);
    if (rc == MARIN_OK)
        rc = marin_executor_options_create(&o);
    if (rc == MARIN_OK)
        rc = marin_executor_options_set_poll_ms(o, 20);
    if (rc == MARIN_OK)
        rc = marin_executor_options_set_lease_ttl_ms(o, ttl);
    if (rc == MARIN_OK && owner)
        rc = marin_executor_options_set_owner(o, owner);
    if (rc == MARIN_OK)
        rc = marin_executor_run(ex, o);
    if (rc != MARIN_OK)
        fprintf(stderr, "child %ld: %s: %s\n", (long)getpid(),
                marin_strerror(rc), marin_last_error());
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
    _exit(rc == MARIN_OK ? 0 : 10 - rc);
}

START_TEST(test_executor_two_processes_race)
{
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            close(gate[1]);
            child_driver(gate[0], NULL, 2000);
        }
    }
    close(gate[0]);
    close(gate[1]); /* both start now */
    for (int i = 0; i < 2; i++) {
        int st;
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "driver %d: status %d", i, st);
    }
    marin_runtime_t *rt = open_rt(state_uri);
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *slow = add(ex, "slow", "ex_step", "sleep:300", NULL, NULL, 0);
    marin_step_t *after = add(ex, "after", "ex_step", "x", NULL, &slow, 1);
    ck_assert_int_eq(runs_of(slow), 1); /* exactly one ran each step */
    ck_assert_int_eq(runs_of(after), 1);
    assert_status(slow, MARIN_STEP_SUCCESS, 1);
    assert_status(after, MARIN_STEP_SUCCESS, 1);
    /* RUNNING and SUCCESS once each in the first step's file */
    ck_assert_int_eq(count_lines(slurp(in_step(slow, MARIN__XSTATUS_FILE))), 2);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* A driver dies (SIGKILL) in the middle of a step; after its lease expires
 * another driver takes the step over, as attempt 2, and commits it. */
START_TEST(test_executor_takeover_after_crash)
{
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(gate[1]);
        atomic_store(&hang_mode, 1);
        child_driver(gate[0], "crasher", 300);
    }
    close(gate[0]);
    close(gate[1]);
    marin_runtime_t *rt = open_rt(state_uri);
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *slow = add(ex, "slow", "ex_step", "sleep:300", NULL, NULL, 0);
    marin_step_t *after = add(ex, "after", "ex_step", "x", NULL, &slow, 1);
    /* wait until the child's task runs */
    int64_t end = now_ms() + 10000;
    while (runs_of(slow) < 1 && now_ms() < end)
        sleep_ms(5);
    ck_assert_int_eq(runs_of(slow), 1);
    assert_status(slow, MARIN_STEP_RUNNING, 1);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFSIGNALED(st));

    marin_executor_options_t *o = fast_opts("taker", 300);
    int64_t t0 = now_ms();
    ck_assert_marin(marin_executor_run(ex, o), MARIN_OK);
    ck_assert_int_lt(now_ms() - t0, 5000);
    ck_assert_int_eq(runs_of(slow), 2);
    ck_assert_int_eq(runs_of(after), 1);
    assert_status(slow, MARIN_STEP_SUCCESS, 2);
    assert_status(after, MARIN_STEP_SUCCESS, 1);
    const char *log = slurp(in_step(slow, MARIN__XSTATUS_FILE));
    ck_assert_ptr_nonnull(strstr(log, "\"owner\":\"crasher\""));
    ck_assert_ptr_nonnull(strstr(log, "\"state\":\"RUNNING\",\"attempt\":2"));
    ck_assert_ptr_nonnull(strstr(log, "\"owner\":\"taker\""));
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

/* ---- tests: options, OOM ---- */

START_TEST(test_executor_options)
{
    marin_executor_options_t *o = (marin_executor_options_t *)1;
    ck_assert_marin(marin_executor_options_create(NULL), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_create(&o), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_dry_run(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_force(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_lease_ttl_ms(o, 0), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_lease_ttl_ms(NULL, 5), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_poll_ms(o, -1), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_poll_ms(NULL, 5), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_owner(o, ""), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_owner(o, NULL), MARIN_EINVAL);
    char longo[MARIN_NAME_MAX + 2];
    memset(longo, 'o', sizeof longo - 1);
    longo[sizeof longo - 1] = '\0';
    ck_assert_marin(marin_executor_options_set_owner(o, longo), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_owner(o, "me"), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_owner(o, "me-again"), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_max_parallel(NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_executor_options_set_max_parallel(o, 0), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_dry_run(o, 7), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_force(o, 0), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_lease_ttl_ms(o, 1), MARIN_OK);
    ck_assert_marin(marin_executor_options_set_poll_ms(o, 1), MARIN_OK);
    ck_assert_marin(marin_executor_run(NULL, o), MARIN_EINVAL);
    marin_executor_options_destroy(o);
    marin_executor_options_destroy(NULL);

    /* the owner reaches the status file; the default is HOST:PID:RANDOM */
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = make_ex(rt);
    marin_step_t *a = add(ex, "a", "ex_step", "a", NULL, NULL, 0);
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    char host[256];
    gethostname(host, sizeof host);
    char want[512];
    snprintf(want, sizeof want, "\"owner\":\"%s:%ld:", host, (long)getpid());
    ck_assert_ptr_nonnull(strstr(slurp(in_step(a, MARIN__XSTATUS_FILE)), want));
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_executor_oom)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
#if MARIN_FAULT_INJECTION
    marin_runtime_t *rt = open_rt("local");
    marin_executor_t *ex = NULL;
    long n;
    for (n = 0; n < 1000; n++) {
        marin__test_fail_alloc_after(n);
        int rc = marin_executor_create(rt, prefix, &ex);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            break;
        ck_assert_marin(rc, MARIN_ENOMEM);
        ck_assert_ptr_null(ex);
    }
    ck_assert_ptr_nonnull(ex);
    marin_step_t *a = add(ex, "a", "ex_step", "a", NULL, NULL, 0);
    marin_task_options_t *to = NULL;
    ck_assert_marin(marin_task_options_create(&to), MARIN_OK);
    ck_assert_marin(marin_task_options_set_env(to, "K", "V"), MARIN_OK);
    marin_step_t *b = NULL;
    for (n = 0; n < 1000; n++) {
        marin__test_fail_alloc_after(n);
        int rc = marin_executor_add_step(ex, "b", "ex_step", "cfg", 3, "v",
                                         &a, 1, to, &b);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            break;
        ck_assert_marin(rc, MARIN_ENOMEM);
        ck_assert_lasterr_has("memory");
        ck_assert_ptr_null(b);
    }
    ck_assert_ptr_nonnull(b);
    ck_assert_int_gt(n, 5);
    marin_task_options_destroy(to);
    /* the executor is whole: it runs */
    ck_assert_marin(marin_executor_run(ex, NULL), MARIN_OK);
    ck_assert_int_eq(runs_of(b), 1);

    marin_executor_options_t *o = NULL;
    for (n = 0; n < 100; n++) {
        marin__test_fail_alloc_after(n);
        int rc = marin_executor_options_create(&o);
        if (rc == MARIN_OK)
            rc = marin_executor_options_set_owner(o, "me");
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            break;
        ck_assert_marin(rc, MARIN_ENOMEM);
        marin_executor_options_destroy(o);
        o = NULL;
    }
    marin_executor_options_destroy(o);
    marin_executor_destroy(ex);
    marin_runtime_close(rt);
#endif
}
END_TEST

static Suite *executor_suite(void)
{
    Suite *s = suite_create("executor");
    TCase *tc = tcase_create("executor");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_executor_create_args);
    tcase_add_test(tc, test_executor_prefix_from_env_and_normalized);
    tcase_add_test(tc, test_executor_add_step_invalid);
    tcase_add_test(tc, test_executor_worked_example_hash);
    tcase_add_test(tc, test_executor_upstream_change_changes_paths);
    tcase_add_test(tc, test_executor_chain_runs_then_skips);
    tcase_add_test(tc, test_executor_env_visible);
    tcase_add_test(tc, test_executor_failed_stops_rerun_and_force_reruns);
    tcase_add_test(tc, test_executor_force_reruns_after_fix);
    tcase_add_test(tc, test_executor_unknown_task);
    tcase_add_test(tc, test_executor_parallel_and_max_parallel);
    tcase_add_test(tc, test_executor_run_inside_task);
    tcase_add_test(tc, test_executor_long_paths_use_hashed_keys);
    tcase_add_test(tc, test_executor_plan_and_dry_run);
    tcase_add_test(tc, test_executor_dot_and_mermaid);
    tcase_add_test(tc, test_executor_corrupt_status_reported);
    tcase_add_test(tc, test_executor_status_parser_any_bytes);
    tcase_add_test(tc, test_executor_commit_without_status_is_repaired);
    tcase_add_test(tc, test_executor_stale_token_commit_refused);
    tcase_add_test(tc, test_executor_lost_lease_cancels_task);
    tcase_add_test(tc, test_executor_two_drivers_one_process);
    tcase_add_test(tc, test_executor_two_processes_race);
    tcase_add_test(tc, test_executor_takeover_after_crash);
    tcase_add_test(tc, test_executor_options);
    tcase_add_test(tc, test_executor_oom);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    register_tasks();
    return marin_test_run(executor_suite());
}
