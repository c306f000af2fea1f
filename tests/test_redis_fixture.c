/* The redis-server fixture (tests/redis_fixture.h) and the backend
 * mapping of testutil (MARIN_TEST_BACKEND=redis): start, commands and
 * their replies as text, kill -9 and restart with the AOF kept, a
 * password, stop leaving neither process nor directory, no server left
 * behind by a process that dies, and local URIs mapped to redis ones.
 * Skipped (exit 77) when redis-server is not installed. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redis_fixture.h"
#include "testutil.h"

int redis_fixture__find_server(char *buf, size_t cap); /* redis_fixture.c */

/* Running (a zombie waiting for a reaper that is not us counts as gone). */
static int alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return 0;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

static int dir_exists(const char *d)
{
    struct stat st;
    return d[0] && stat(d, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Wait up to @p ms for @p pid (not our child) to disappear. */
static int gone_within(pid_t pid, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (!alive(pid))
            return 1;
        sleep_ms(1);
    }
    return !alive(pid);
}

static void cmd_is(const redis_fixture *fx, const char *want, const char *fmt, const char *a,
                   const char *b)
{
    char buf[512];
    ck_assert_int_eq(redis_fixture_cmd(fx, buf, sizeof buf, fmt, a, b), 0);
    ck_assert_str_eq(buf, want);
}

START_TEST(test_fixture_start_cmd_stop)
{
    redis_fixture fx;
    ck_assert_int_eq(redis_fixture_start(&fx, NULL), 0);
    ck_assert(alive(fx.pid));
    ck_assert_int_gt(fx.port, 0);
    ck_assert(dir_exists(fx.dir));
    char want[64];
    snprintf(want, sizeof want, "redis://127.0.0.1:%d", fx.port);
    ck_assert_str_eq(fx.uri_base, want);

    char buf[512];
    cmd_is(&fx, "PONG", "PING", NULL, NULL);
    cmd_is(&fx, "OK", "SET %s %s", "k", "hello world");
    cmd_is(&fx, "hello world", "GET %s", "k", NULL);
    cmd_is(&fx, "(nil)", "GET %s", "missing", NULL);
    cmd_is(&fx, "1", "INCR %s", "n", NULL);
    cmd_is(&fx, "2", "RPUSH %s %s b", "l", "a");
    cmd_is(&fx, "a\nb", "LRANGE %s 0 %s", "l", "-1");
    /* binary-safe arguments through %b */
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "SET bin %b", "a\0b", (size_t)3), 0);
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "STRLEN bin"), 0);
    ck_assert_str_eq(buf, "3");
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "NOSUCHCOMMAND x"), 0);
    ck_assert_msg(strncmp(buf, "(error) ", 8) == 0, "got '%s'", buf);
    /* a small buffer truncates, NUL-terminated */
    char small[4];
    ck_assert_int_eq(redis_fixture_cmd(&fx, small, sizeof small, "GET k"), 0);
    ck_assert_str_eq(small, "hel");
    /* the configuration the header promises */
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "CONFIG GET appendfsync"), 0);
    ck_assert_str_eq(buf, "appendfsync\nalways");
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "CONFIG GET save"), 0);
    ck_assert_str_eq(buf, "save\n");

    pid_t pid = fx.pid;
    char dir[sizeof fx.dir];
    memcpy(dir, fx.dir, sizeof dir);
    redis_fixture_stop(&fx);
    ck_assert_int_eq(fx.pid, 0);
    ck_assert(!alive(pid)); /* reaped, not a zombie */
    ck_assert(!dir_exists(dir));
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "PING"), -1);
    redis_fixture_stop(&fx); /* twice is harmless */
}
END_TEST

START_TEST(test_fixture_kill_restart_keeps_aof)
{
    redis_fixture fx;
    ck_assert_int_eq(redis_fixture_start(&fx, NULL), 0);
    int port = fx.port;
    cmd_is(&fx, "OK", "SET %s %s", "durable", "yes");
    cmd_is(&fx, "3", "RPUSH %s a b %s", "q", "c");
    pid_t old = fx.pid;
    redis_fixture_kill(&fx);
    ck_assert_int_eq(fx.pid, 0);
    ck_assert(!alive(old));
    char buf[128];
    ck_assert_int_eq(redis_fixture_cmd(&fx, buf, sizeof buf, "PING"), -1);
    ck_assert(dir_exists(fx.dir)); /* its files stay */

    ck_assert_int_eq(redis_fixture_restart(&fx), 0);
    ck_assert(alive(fx.pid));
    ck_assert_int_ne(fx.pid, old);
    ck_assert_int_eq(fx.port, port);
    /* appendfsync always: every acknowledged write survived the kill */
    cmd_is(&fx, "yes", "GET %s", "durable", NULL);
    cmd_is(&fx, "a\nb\nc", "LRANGE %s 0 %s", "q", "-1");

    /* and again, right away: the port may still linger */
    for (int i = 0; i < 3; i++) {
        cmd_is(&fx, "OK", "SET %s %s", "round", i == 0 ? "0" : i == 1 ? "1" : "2");
        redis_fixture_kill(&fx);
        ck_assert_int_eq(redis_fixture_restart(&fx), 0);
    }
    cmd_is(&fx, "2", "GET %s", "round", NULL);
    redis_fixture_stop(&fx);
}
END_TEST

START_TEST(test_fixture_password)
{
    redis_fixture fx;
    ck_assert_int_eq(redis_fixture_start(&fx, "s3cret-pw"), 0);
    ck_assert_str_eq(fx.password, "s3cret-pw");
    cmd_is(&fx, "PONG", "PING", NULL, NULL); /* the fixture authenticates */
    cmd_is(&fx, "OK", "SET %s %s", "k", "v");
    /* without the password: refused */
    redis_fixture anon = fx;
    anon.password[0] = '\0';
    char buf[256];
    ck_assert_int_eq(redis_fixture_cmd(&anon, buf, sizeof buf, "GET k"), 0);
    ck_assert_msg(strstr(buf, "NOAUTH") != NULL, "got '%s'", buf);
    /* a wrong one too */
    redis_fixture wrong = fx;
    snprintf(wrong.password, sizeof wrong.password, "nope");
    ck_assert_int_eq(redis_fixture_cmd(&wrong, buf, sizeof buf, "GET k"), 0);
    ck_assert_msg(strncmp(buf, "(error) ", 8) == 0, "got '%s'", buf);
    /* the URI carries the credentials */
    char uri[256];
    redis_fixture_uri(&fx, uri, sizeof uri, "ns1", NULL);
    char want[256];
    snprintf(want, sizeof want, "redis://default:s3cret-pw@127.0.0.1:%d?namespace=ns1",
             fx.port);
    ck_assert_str_eq(uri, want);
    /* restart keeps the password */
    redis_fixture_kill(&fx);
    ck_assert_int_eq(redis_fixture_restart(&fx), 0);
    cmd_is(&fx, "v", "GET %s", "k", NULL);
    ck_assert_int_eq(redis_fixture_cmd(&anon, buf, sizeof buf, "GET k"), 0);
    ck_assert_msg(strstr(buf, "NOAUTH") != NULL, "got '%s'", buf);
    redis_fixture_stop(&fx);
}
END_TEST

START_TEST(test_fixture_uri)
{
    redis_fixture fx;
    ck_assert_int_eq(redis_fixture_start(&fx, NULL), 0);
    char a[256], b[256], want[256];
    redis_fixture_uri(&fx, a, sizeof a, "given", "x=1&y=2");
    snprintf(want, sizeof want, "redis://127.0.0.1:%d?namespace=given&x=1&y=2", fx.port);
    ck_assert_str_eq(a, want);
    redis_fixture_uri(&fx, a, sizeof a, "given", "");
    snprintf(want, sizeof want, "redis://127.0.0.1:%d?namespace=given", fx.port);
    ck_assert_str_eq(a, want);
    /* unique namespaces */
    redis_fixture_uri(&fx, a, sizeof a, NULL, NULL);
    redis_fixture_uri(&fx, b, sizeof b, NULL, NULL);
    ck_assert_str_ne(a, b);
    snprintf(want, sizeof want, "redis://127.0.0.1:%d?namespace=t%ld-", fx.port,
             (long)getpid());
    ck_assert_msg(strncmp(a, want, strlen(want)) == 0, "'%s' lacks '%s'", a, want);
    ck_assert_ptr_null(strchr(a + strlen(want), '&'));
    redis_fixture_stop(&fx);
}
END_TEST

/* Two fixtures at once get different ports and directories. */
START_TEST(test_fixture_two_at_once)
{
    redis_fixture x, y;
    ck_assert_int_eq(redis_fixture_start(&x, NULL), 0);
    ck_assert_int_eq(redis_fixture_start(&y, NULL), 0);
    ck_assert_int_ne(x.port, y.port);
    ck_assert_str_ne(x.dir, y.dir);
    cmd_is(&x, "OK", "SET %s %s", "who", "x");
    cmd_is(&y, "(nil)", "GET %s", "who", NULL);
    redis_fixture_stop(&y);
    cmd_is(&x, "x", "GET %s", "who", NULL);
    redis_fixture_stop(&x);
}
END_TEST

/* A process that starts a server and dies without stopping it (a failed
 * or crashed test) takes the server with it. */
START_TEST(test_fixture_dies_with_its_process)
{
    /* orphans come to us (not to an init that may never reap them) */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(p[0]);
        redis_fixture fx;
        if (redis_fixture_start(&fx, NULL) != 0)
            _exit(1);
        if (write(p[1], &fx, sizeof fx) != (ssize_t)sizeof fx)
            _exit(2);
        kill(getpid(), SIGKILL); /* no atexit, no stop */
        _exit(3);
    }
    close(p[1]);
    redis_fixture fx;
    ssize_t n = read(p[0], &fx, sizeof fx);
    close(p[0]);
    int st = 0;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert_int_eq(n, (ssize_t)sizeof fx);
    ck_assert(WIFSIGNALED(st));
    ck_assert_msg(gone_within(fx.pid, 3000), "redis-server %ld outlived its parent",
                  (long)fx.pid);
    ck_assert_int_eq(waitpid(fx.pid, &st, 0), fx.pid); /* reparented to us */
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* its directory is left; clean it as its owner would have */
    fx.pid = 0;
    ck_assert(dir_exists(fx.dir));
    redis_fixture_stop(&fx);
    ck_assert(!dir_exists(fx.dir));
}
END_TEST

/* ---- the backend mapping of testutil (MARIN_TEST_BACKEND) ---- */

START_TEST(test_map_uri_local_unchanged)
{
    unsetenv("MARIN_TEST_BACKEND");
    char buf[1024];
    ck_assert_int_eq(marin_test_map_uri("local://?resources=cpus=2", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "local://?resources=cpus=2");
    ck_assert_int_eq(marin_test_map_uri("local://?max_threads=2", buf, sizeof buf), 0);
    ck_assert_int_eq(marin_test_map_uri(NULL, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(marin_test_backend_is_redis(), 0);
}
END_TEST

START_TEST(test_map_uri_redis)
{
    setenv("MARIN_TEST_BACKEND", "redis", 1);
    ck_assert_int_eq(marin_test_backend_is_redis(), 1);
    char buf[1024], buf2[1024];
    ck_assert_int_eq(marin_test_map_uri("local://?resources=cpus=2,TPU=4", buf, sizeof buf),
                     1);
    ck_assert_msg(strncmp(buf, "redis://127.0.0.1:", 18) == 0, "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "?namespace=t"));
    ck_assert_ptr_nonnull(strstr(buf, "&worker_resources=cpus=2,TPU=4&"));
    ck_assert_ptr_nonnull(strstr(buf, "&" MARIN_TEST_REDIS_TIMINGS));
    /* the server is up (started on first use) and answers on that port */
    ck_assert_int_eq(marin_test_map_uri("local", buf2, sizeof buf2), 1);
    ck_assert_str_ne(buf, buf2); /* a namespace of its own */
    ck_assert_ptr_nonnull(strstr(buf2, "&worker_resources=cpus="));
    /* state=DIR: one namespace per directory */
    ck_assert_int_eq(marin_test_map_uri("local://?state=/tmp/a", buf, sizeof buf), 1);
    ck_assert_int_eq(marin_test_map_uri("local://?state=/tmp/a&resources=cpus=1", buf2,
                                        sizeof buf2), 1);
    ck_assert_ptr_nonnull(strstr(buf, "?namespace=st-"));
    ck_assert_int_eq(strncmp(buf, buf2, (size_t)(strchr(buf, '&') - buf)), 0);
    ck_assert_ptr_nonnull(strstr(buf2, "&worker_resources=cpus=1&"));
    ck_assert_int_eq(marin_test_map_uri("local://?state=/tmp/b", buf2, sizeof buf2), 1);
    ck_assert_int_ne(strncmp(buf, buf2, (size_t)(strchr(buf, '&') - buf)), 0);
    /* what has no redis equivalent */
    ck_assert_int_eq(marin_test_map_uri("local://?resources=cpus=1&max_threads=2", buf,
                                        sizeof buf), -1);
    ck_assert_ptr_nonnull(strstr(buf, "max_threads"));
    ck_assert_int_eq(marin_test_map_uri("local://?processes=2", buf, sizeof buf), -1);
    ck_assert_int_eq(marin_test_map_uri("local://host", buf, sizeof buf), -1);
    /* others pass */
    ck_assert_int_eq(marin_test_map_uri("nosuch://x", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "nosuch://x");
    ck_assert_int_eq(marin_test_map_uri("localhost://x", buf, sizeof buf), 0);
    /* an unmappable URI does not open */
    marin_runtime_t *rt = (marin_runtime_t *)1;
    ck_assert_int_eq(marin_test_runtime_open("local://?max_threads=2", &rt), MARIN_EINVAL);
    ck_assert_ptr_null(rt);
}
END_TEST

/* Until libmarin has the redis backend, a mapped open fails cleanly. */
START_TEST(test_map_open_without_backend)
{
    setenv("MARIN_TEST_BACKEND", "redis", 1);
    marin_runtime_t *rt = NULL;
    int rc = marin_test_runtime_open("local://?resources=cpus=2", &rt);
    if (rc == MARIN_OK) { /* the backend exists now: it must work */
        ck_assert_ptr_nonnull(rt);
        ck_assert_str_eq(marin_runtime_backend(rt), "redis");
        marin_runtime_close(rt);
    } else {
        ck_assert_int_eq(rc, MARIN_ENOBACKEND);
        ck_assert_ptr_null(rt);
        ck_assert_lasterr_has("redis");
    }
}
END_TEST

static Suite *fixture_suite(void)
{
    Suite *s = suite_create("redis_fixture");
    TCase *tc = tcase_create("fixture");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fixture_start_cmd_stop);
    tcase_add_test(tc, test_fixture_kill_restart_keeps_aof);
    tcase_add_test(tc, test_fixture_password);
    tcase_add_test(tc, test_fixture_uri);
    tcase_add_test(tc, test_fixture_two_at_once);
    tcase_add_test(tc, test_fixture_dies_with_its_process);
    suite_add_tcase(s, tc);
    TCase *map = tcase_create("mapping");
    tcase_set_timeout(map, 60);
    tcase_add_test(map, test_map_uri_local_unchanged);
    tcase_add_test(map, test_map_uri_redis);
    tcase_add_test(map, test_map_open_without_backend);
    suite_add_tcase(s, map);
    return s;
}

int main(void)
{
    char bin[512];
    if (redis_fixture__find_server(bin, sizeof bin) != 0) {
        fprintf(stderr, "SKIP: redis-server not found ($MARIN_REDIS_SERVER, "
                        "/usr/bin/redis-server, PATH)\n");
        return 77;
    }
#if !MARIN_TEST_HIREDIS
    fprintf(stderr, "SKIP: built without hiredis\n");
    return 77;
#endif
    /* the cases set MARIN_TEST_BACKEND themselves */
    unsetenv("MARIN_TEST_BACKEND");
    return marin_test_run(fixture_suite());
}
