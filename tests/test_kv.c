/* Tests for the KV store and leases (kv.h) on the local backend, in memory
 * and file-backed (`local://?state=DIR`): values, compare-and-swap, every
 * argument error, leases with expiry, takeover and fencing, tokens across
 * restarts, mutual exclusion between processes, threads racing on one key,
 * corrupt and unwritable state, and the OOM loop.
 *
 * Cases that run on both stores are loop tests: _i == 0 in memory, 1 on
 * files. File-backed cases work in a fresh directory under one base
 * directory that the (unchecked, parent-side) fixture removes afterwards,
 * even when a case fails. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"
#include "marin_config.h"
#include "testutil.h"

#define OOM_MAX 10000

/* ---- state directories ---- */

/* Sizes that keep every derived path under PATH_MAX. */
#define BASE_MAX 256
#define DIR_MAX 512

static char base_dir[BASE_MAX];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void base_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base_dir, sizeof base_dir, "%s/marin-test-kv-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
}

static void base_teardown(void) { rm_tree(base_dir); }

/* A new empty directory under the base, into @p dir (DIR_MAX). */
static void new_dir(char *dir)
{
    snprintf(dir, DIR_MAX, "%s/s-XXXXXX", base_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void state_uri(char *uri, size_t cap, const char *dir)
{
    snprintf(uri, cap, "local://?state=%s", dir);
}

/* Open the store of loop index @p i: 0 memory, 1 files (in a new dir,
 * written to @p dir when not NULL). */
static marin_runtime_t *open_store(int i, char *dir)
{
    if (i == 0)
        return open_rt("local");
    char d[DIR_MAX], uri[DIR_MAX + 32];
    new_dir(d);
    if (dir)
        snprintf(dir, DIR_MAX, "%s", d);
    state_uri(uri, sizeof uri, d);
    return open_rt(uri);
}

static marin_runtime_t *open_dir(const char *dir)
{
    char uri[PATH_MAX + 32];
    state_uri(uri, sizeof uri, dir);
    return open_rt(uri);
}

/* Fetch @p key and compare with the string @p want. */
static void expect_value(marin_runtime_t *rt, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 99;
    ck_assert_marin(marin_kv_get(rt, key, &v, &n), MARIN_OK);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert(memcmp(v, want, n) == 0);
    marin_free(v);
}

static void put_str(marin_runtime_t *rt, const char *key, const char *val)
{
    ck_assert_marin(marin_kv_put(rt, key, val, strlen(val)), MARIN_OK);
}

/* ---- values ---- */

START_TEST(test_kv_put_get_delete)
{
    marin_runtime_t *rt = open_store(_i, NULL);
    put_str(rt, "a", "hello");
    expect_value(rt, "a", "hello");
    put_str(rt, "a", "a longer value");
    expect_value(rt, "a", "a longer value");

    /* empty value: a non-NULL buffer of length 0 */
    ck_assert_marin(marin_kv_put(rt, "empty", NULL, 0), MARIN_OK);
    void *v = NULL;
    size_t n = 99;
    ck_assert_marin(marin_kv_get(rt, "empty", &v, &n), MARIN_OK);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(n, 0);
    marin_free(v);

    /* longest key, and keys of arbitrary bytes */
    char longkey[MARIN_NAME_MAX + 1];
    memset(longkey, 'k', MARIN_NAME_MAX);
    longkey[MARIN_NAME_MAX] = '\0';
    put_str(rt, longkey, "long");
    expect_value(rt, longkey, "long");
    const char odd[] = "\x01\xff/../ key\n";
    put_str(rt, odd, "odd");
    expect_value(rt, odd, "odd");

    /* many keys (grows the in-memory table) */
    char key[32], val[32];
    for (int k = 0; k < 100; k++) {
        snprintf(key, sizeof key, "many-%d", k);
        snprintf(val, sizeof val, "v%d", k * 7);
        put_str(rt, key, val);
    }
    for (int k = 0; k < 100; k++) {
        snprintf(key, sizeof key, "many-%d", k);
        snprintf(val, sizeof val, "v%d", k * 7);
        expect_value(rt, key, val);
    }

    /* lease keys live apart from value keys */
    uint64_t tok = 0;
    ck_assert_marin(marin_lease_acquire(rt, "a", "me", 10000, &tok), MARIN_OK);
    expect_value(rt, "a", "a longer value");

    ck_assert_marin(marin_kv_delete(rt, "a"), MARIN_OK);
    v = (void *)1;
    n = 99;
    ck_assert_marin(marin_kv_get(rt, "a", &v, &n), MARIN_ENOTFOUND);
    ck_assert_ptr_null(v);
    ck_assert_uint_eq(n, 0);
    ck_assert_lasterr_has("'a'");
    ck_assert_marin(marin_kv_delete(rt, "a"), MARIN_ENOTFOUND);
    ck_assert_lasterr_has("marin_kv_delete");
    ck_assert_marin(marin_kv_get(rt, "never", &v, &n), MARIN_ENOTFOUND);
    expect_value(rt, "many-3", "v21");
    marin_runtime_close(rt);
    marin_free(NULL);
}
END_TEST

START_TEST(test_kv_cas)
{
    marin_runtime_t *rt = open_store(_i, NULL);
    /* absent */
    ck_assert_marin(marin_kv_cas(rt, "c", NULL, 0, "1", 1), MARIN_OK);
    expect_value(rt, "c", "1");
    ck_assert_marin(marin_kv_cas(rt, "c", NULL, 0, "2", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("exists");
    /* match */
    ck_assert_marin(marin_kv_cas(rt, "c", "1", 1, "22", 2), MARIN_OK);
    expect_value(rt, "c", "22");
    /* mismatch: other bytes, other length */
    ck_assert_marin(marin_kv_cas(rt, "c", "23", 2, "3", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("differs");
    ck_assert_marin(marin_kv_cas(rt, "c", "2", 1, "3", 1), MARIN_ECONFLICT);
    expect_value(rt, "c", "22");
    /* expected a value, key missing */
    ck_assert_marin(marin_kv_cas(rt, "missing", "x", 1, "y", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("does not exist");
    /* empty expected value matches an empty value only */
    ck_assert_marin(marin_kv_put(rt, "e", NULL, 0), MARIN_OK);
    ck_assert_marin(marin_kv_cas(rt, "e", "", 0, "full", 4), MARIN_OK);
    ck_assert_marin(marin_kv_cas(rt, "e", "", 0, "x", 1), MARIN_ECONFLICT);
    ck_assert_marin(marin_kv_cas(rt, "e", "full", 4, NULL, 0), MARIN_OK);
    void *v = NULL;
    size_t n = 9;
    ck_assert_marin(marin_kv_get(rt, "e", &v, &n), MARIN_OK);
    ck_assert_uint_eq(n, 0);
    marin_free(v);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_kv_invalid_args)
{
    marin_runtime_t *rt = open_store(_i, NULL);
    char longkey[MARIN_NAME_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    void *v = (void *)1;
    size_t n = 7;
    uint64_t tok = 5;

    ck_assert_marin(marin_kv_put(NULL, "k", "v", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_kv_put");
    ck_assert_marin(marin_kv_put(rt, NULL, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put(rt, "", "v", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("1 to 255");
    ck_assert_marin(marin_kv_put(rt, longkey, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put(rt, "k", NULL, 3), MARIN_EINVAL);
    ck_assert_lasterr_has("NULL");

    ck_assert_marin(marin_kv_get(NULL, "k", &v, &n), MARIN_EINVAL);
    ck_assert_ptr_null(v);
    ck_assert_uint_eq(n, 0);
    ck_assert_marin(marin_kv_get(rt, NULL, &v, &n), MARIN_EINVAL);
    ck_assert_marin(marin_kv_get(rt, "", &v, &n), MARIN_EINVAL);
    ck_assert_marin(marin_kv_get(rt, longkey, &v, &n), MARIN_EINVAL);
    ck_assert_marin(marin_kv_get(rt, "k", NULL, &n), MARIN_EINVAL);
    ck_assert_marin(marin_kv_get(rt, "k", &v, NULL), MARIN_EINVAL);

    ck_assert_marin(marin_kv_cas(NULL, "k", NULL, 0, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_cas(rt, NULL, NULL, 0, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_cas(rt, "", NULL, 0, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_cas(rt, longkey, NULL, 0, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_cas(rt, "k", NULL, 2, "v", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_cas(rt, "k", NULL, 0, NULL, 1), MARIN_EINVAL);

    ck_assert_marin(marin_kv_delete(NULL, "k"), MARIN_EINVAL);
    ck_assert_marin(marin_kv_delete(rt, NULL), MARIN_EINVAL);
    ck_assert_marin(marin_kv_delete(rt, ""), MARIN_EINVAL);
    ck_assert_marin(marin_kv_delete(rt, longkey), MARIN_EINVAL);

    ck_assert_marin(marin_lease_acquire(NULL, "l", "o", 100, &tok), MARIN_EINVAL);
    ck_assert_uint_eq(tok, 0);
    tok = 5;
    ck_assert_marin(marin_lease_acquire(rt, NULL, "o", 100, &tok), MARIN_EINVAL);
    ck_assert_uint_eq(tok, 0);
    ck_assert_marin(marin_lease_acquire(rt, "", "o", 100, &tok), MARIN_EINVAL);
    ck_assert_marin(marin_lease_acquire(rt, longkey, "o", 100, &tok), MARIN_EINVAL);
    ck_assert_marin(marin_lease_acquire(rt, "l", NULL, 100, &tok), MARIN_EINVAL);
    ck_assert_lasterr_has("owner");
    ck_assert_marin(marin_lease_acquire(rt, "l", "", 100, &tok), MARIN_EINVAL);
    ck_assert_marin(marin_lease_acquire(rt, "l", longkey, 100, &tok), MARIN_EINVAL);
    ck_assert_marin(marin_lease_acquire(rt, "l", "o", 0, &tok), MARIN_EINVAL);
    ck_assert_lasterr_has("ttl");
    ck_assert_marin(marin_lease_acquire(rt, "l", "o", -5, &tok), MARIN_EINVAL);
    ck_assert_marin(marin_lease_acquire(rt, "l", "o", 100, NULL), MARIN_EINVAL);

    ck_assert_marin(marin_lease_renew(NULL, "l", "o", 100), MARIN_EINVAL);
    ck_assert_marin(marin_lease_renew(rt, NULL, "o", 100), MARIN_EINVAL);
    ck_assert_marin(marin_lease_renew(rt, "", "o", 100), MARIN_EINVAL);
    ck_assert_marin(marin_lease_renew(rt, "l", NULL, 100), MARIN_EINVAL);
    ck_assert_marin(marin_lease_renew(rt, "l", "", 100), MARIN_EINVAL);
    ck_assert_marin(marin_lease_renew(rt, "l", "o", 0), MARIN_EINVAL);
    ck_assert_marin(marin_lease_renew(rt, "l", "o", -1), MARIN_EINVAL);

    ck_assert_marin(marin_lease_release(NULL, "l", "o"), MARIN_EINVAL);
    ck_assert_marin(marin_lease_release(rt, NULL, "o"), MARIN_EINVAL);
    ck_assert_marin(marin_lease_release(rt, longkey, "o"), MARIN_EINVAL);
    ck_assert_marin(marin_lease_release(rt, "l", NULL), MARIN_EINVAL);
    ck_assert_marin(marin_lease_release(rt, "l", longkey), MARIN_EINVAL);

    ck_assert_marin(marin_kv_put_fenced(NULL, "k", "v", 1, "l", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put_fenced(rt, NULL, "v", 1, "l", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put_fenced(rt, "", "v", 1, "l", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put_fenced(rt, "k", NULL, 1, "l", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "v", 1, NULL, 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "v", 1, "", 1), MARIN_EINVAL);
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "v", 1, longkey, 1), MARIN_EINVAL);

    /* nothing was stored by any of them */
    ck_assert_marin(marin_kv_get(rt, "k", &v, &n), MARIN_ENOTFOUND);
    ck_assert_marin(marin_lease_acquire(rt, "l", "o", 100, &tok), MARIN_OK);
    ck_assert_uint_eq(tok, 1);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_kv_too_big)
{
    marin_runtime_t *rt = open_store(_i, NULL);
    static const char byte = 'x';
    size_t big = MARIN_KV_VALUE_MAX + 1;
    /* the pointer is never read: the size is refused first */
    ck_assert_marin(marin_kv_put(rt, "big", &byte, big), MARIN_ETOOBIG);
    ck_assert_lasterr_has("67108864");
    ck_assert_lasterr_has("67108865");
    ck_assert_marin(marin_kv_cas(rt, "big", NULL, 0, &byte, big), MARIN_ETOOBIG);
    ck_assert_marin(marin_kv_cas(rt, "big", &byte, big, &byte, 1), MARIN_ETOOBIG);
    ck_assert_marin(marin_kv_put_fenced(rt, "big", &byte, big, "l", 1), MARIN_ETOOBIG);
    ck_assert_marin(marin_kv_put(rt, "big", &byte, SIZE_MAX), MARIN_ETOOBIG);
    void *v = NULL;
    size_t n = 0;
    ck_assert_marin(marin_kv_get(rt, "big", &v, &n), MARIN_ENOTFOUND);

    /* exactly the limit is fine */
    unsigned char *max = malloc(MARIN_KV_VALUE_MAX);
    ck_assert_ptr_nonnull(max);
    memset(max, 0xa5, MARIN_KV_VALUE_MAX);
    max[12345] = 1;
    ck_assert_marin(marin_kv_put(rt, "max", max, MARIN_KV_VALUE_MAX), MARIN_OK);
    ck_assert_marin(marin_kv_get(rt, "max", &v, &n), MARIN_OK);
    ck_assert_uint_eq(n, MARIN_KV_VALUE_MAX);
    ck_assert(memcmp(v, max, n) == 0);
    marin_free(v);
    free(max);
    marin_runtime_close(rt);
}
END_TEST

/* ---- leases ---- */

START_TEST(test_kv_lease_acquire_renew_release)
{
    marin_runtime_t *rt = open_store(_i, NULL);
    uint64_t t1 = 0, t2 = 0, t = 0;
    ck_assert_marin(marin_lease_acquire(rt, "L", "driver-1", 10000, &t1), MARIN_OK);
    ck_assert_uint_eq(t1, 1);

    t = 77;
    ck_assert_marin(marin_lease_acquire(rt, "L", "driver-2", 10000, &t), MARIN_EBUSY);
    ck_assert_uint_eq(t, 0);
    ck_assert_lasterr_has("'L'");
    ck_assert_lasterr_has("held by 'driver-1'");
    ck_assert_lasterr_has("expires in");

    /* same owner: extended, same token */
    ck_assert_marin(marin_lease_acquire(rt, "L", "driver-1", 10000, &t), MARIN_OK);
    ck_assert_uint_eq(t, t1);
    ck_assert_marin(marin_lease_renew(rt, "L", "driver-1", 10000), MARIN_OK);

    ck_assert_marin(marin_lease_renew(rt, "L", "driver-2", 10000), MARIN_EBUSY);
    ck_assert_lasterr_has("marin_lease_renew: lease 'L' is held by 'driver-1'");
    ck_assert_lasterr_has("not by 'driver-2'");
    ck_assert_marin(marin_lease_release(rt, "L", "driver-2"), MARIN_EBUSY);
    ck_assert_lasterr_has("held by 'driver-1'");

    /* fenced writes with the current token */
    ck_assert_marin(marin_kv_put_fenced(rt, "out", "one", 3, "L", t1), MARIN_OK);
    expect_value(rt, "out", "one");
    ck_assert_marin(marin_kv_put_fenced(rt, "out", "bad", 3, "L", t1 + 1),
                    MARIN_ECONFLICT);

    ck_assert_marin(marin_lease_release(rt, "L", "driver-1"), MARIN_OK);
    ck_assert_marin(marin_kv_put_fenced(rt, "out", "two", 3, "L", t1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("released");
    ck_assert_marin(marin_lease_release(rt, "L", "driver-1"), MARIN_EBUSY);
    ck_assert_lasterr_has("nobody holds");
    ck_assert_marin(marin_lease_renew(rt, "L", "driver-1", 100), MARIN_EBUSY);

    /* taken again: a larger token; the old one is stale */
    ck_assert_marin(marin_lease_acquire(rt, "L", "driver-2", 10000, &t2), MARIN_OK);
    ck_assert_uint_gt(t2, t1);
    ck_assert_marin(marin_kv_put_fenced(rt, "out", "stale", 5, "L", t1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("current token 2");
    ck_assert_lasterr_has("given 1");
    expect_value(rt, "out", "one");
    ck_assert_marin(marin_kv_put_fenced(rt, "out", "fresh", 5, "L", t2), MARIN_OK);
    expect_value(rt, "out", "fresh");

    /* the same owner after releasing also gets a new token */
    ck_assert_marin(marin_lease_release(rt, "L", "driver-2"), MARIN_OK);
    ck_assert_marin(marin_lease_acquire(rt, "L", "driver-2", 10000, &t), MARIN_OK);
    ck_assert_uint_eq(t, t2 + 1);

    /* never acquired */
    ck_assert_marin(marin_lease_renew(rt, "nope", "x", 100), MARIN_EBUSY);
    ck_assert_lasterr_has("never acquired");
    ck_assert_marin(marin_lease_release(rt, "nope", "x"), MARIN_EBUSY);
    ck_assert_marin(marin_kv_put_fenced(rt, "out", "x", 1, "nope", 1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("never acquired");

    /* leases are per key */
    ck_assert_marin(marin_lease_acquire(rt, "M", "driver-3", 10000, &t), MARIN_OK);
    ck_assert_uint_eq(t, 1);
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_kv_lease_expiry_takeover)
{
    marin_runtime_t *rt = open_store(_i, NULL);
    uint64_t t1 = 0, t2 = 0, t = 0;
    ck_assert_marin(marin_lease_acquire(rt, "step", "a", 100, &t1), MARIN_OK);
    ck_assert_marin(marin_lease_acquire(rt, "step", "b", 100, &t), MARIN_EBUSY);
    sleep_ms(150);

    /* expired, nobody took it yet */
    ck_assert_marin(marin_lease_renew(rt, "step", "a", 60), MARIN_EBUSY);
    ck_assert_lasterr_has("expired");
    ck_assert_lasterr_has("nobody holds it");
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "v", 1, "step", t1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("expired");

    /* b takes over with a larger token */
    ck_assert_marin(marin_lease_acquire(rt, "step", "b", 5000, &t2), MARIN_OK);
    ck_assert_uint_gt(t2, t1);
    ck_assert_marin(marin_lease_renew(rt, "step", "a", 60), MARIN_EBUSY);
    ck_assert_lasterr_has("held by 'b'");
    ck_assert_marin(marin_lease_release(rt, "step", "a"), MARIN_EBUSY);
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "old", 3, "step", t1), MARIN_ECONFLICT);
    ck_assert_lasterr_has("'step'");
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "new", 3, "step", t2), MARIN_OK);
    expect_value(rt, "k", "new");

    /* a renewal keeps the lease past its first ttl */
    ck_assert_marin(marin_lease_acquire(rt, "r", "a", 100, &t), MARIN_OK);
    for (int k = 0; k < 6; k++) {
        sleep_ms(25);
        ck_assert_marin(marin_lease_renew(rt, "r", "a", 100), MARIN_OK);
    }
    ck_assert_marin(marin_lease_acquire(rt, "r", "b", 100, &t2), MARIN_EBUSY);
    ck_assert_lasterr_has("held by 'a'");
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_kv_tokens_survive_reopen)
{
    char dir[DIR_MAX];
    marin_runtime_t *rt = open_store(1, dir);
    uint64_t t1 = 0, t2 = 0, t3 = 0, t = 0;
    ck_assert_marin(marin_lease_acquire(rt, "L", "a", 10000, &t1), MARIN_OK);
    ck_assert_marin(marin_lease_release(rt, "L", "a"), MARIN_OK);
    put_str(rt, "kept", "across restarts");
    marin_runtime_close(rt);

    rt = open_dir(dir);
    expect_value(rt, "kept", "across restarts");
    ck_assert_marin(marin_lease_acquire(rt, "L", "b", 300, &t2), MARIN_OK);
    ck_assert_uint_gt(t2, t1);
    marin_runtime_close(rt);

    rt = open_dir(dir);
    /* b's lease is still held after the restart */
    ck_assert_marin(marin_lease_acquire(rt, "L", "c", 80, &t), MARIN_EBUSY);
    ck_assert_lasterr_has("held by 'b'");
    sleep_ms(350);
    ck_assert_marin(marin_lease_acquire(rt, "L", "c", 80, &t3), MARIN_OK);
    ck_assert_uint_gt(t3, t2);
    marin_runtime_close(rt);
}
END_TEST

/* ---- processes and threads ---- */

#define PROCS 3
#define PROC_ROUNDS 25

/* A child: PROC_ROUNDS times, take the lease, check that nobody else is
 * inside (an O_EXCL marker file), increment the counter with a fenced
 * write, leave. Exit status 0 when all went well. */
static int child_main(const char *dir, int id)
{
    char uri[PATH_MAX + 32], inside[PATH_MAX + 16], owner[32];
    state_uri(uri, sizeof uri, dir);
    snprintf(inside, sizeof inside, "%s/inside", dir);
    snprintf(owner, sizeof owner, "proc-%d", id);
    marin_runtime_t *rt = NULL;
    if (marin_test_runtime_open(uri, &rt) != MARIN_OK) {
        fprintf(stderr, "child %d: open: %s\n", id, marin_last_error());
        return 1;
    }
    uint64_t last = 0;
    for (int r = 0; r < PROC_ROUNDS; r++) {
        uint64_t tok = 0;
        int rc;
        while ((rc = marin_lease_acquire(rt, "mutex", owner, 10000, &tok)) == MARIN_EBUSY)
            sleep_ms(1);
        if (rc != MARIN_OK || tok <= last) {
            fprintf(stderr, "child %d: acquire %d token %llu after %llu: %s\n", id, rc,
                    (unsigned long long)tok, (unsigned long long)last,
                    marin_last_error());
            return 1;
        }
        last = tok;
        int fd = open(inside, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) {
            fprintf(stderr, "child %d: someone else is inside\n", id);
            return 1;
        }
        close(fd);
        void *v = NULL;
        size_t n = 0;
        long count = 0;
        rc = marin_kv_get(rt, "count", &v, &n);
        if (rc == MARIN_OK && n == sizeof count)
            memcpy(&count, v, sizeof count);
        else if (rc != MARIN_ENOTFOUND) {
            fprintf(stderr, "child %d: get %d: %s\n", id, rc, marin_last_error());
            return 1;
        }
        marin_free(v);
        count++;
        if ((rc = marin_kv_put_fenced(rt, "count", &count, sizeof count, "mutex", tok)) !=
            MARIN_OK) {
            fprintf(stderr, "child %d: put_fenced %d: %s\n", id, rc, marin_last_error());
            return 1;
        }
        unlink(inside);
        if ((rc = marin_lease_release(rt, "mutex", owner)) != MARIN_OK) {
            fprintf(stderr, "child %d: release %d: %s\n", id, rc, marin_last_error());
            return 1;
        }
    }
    marin_runtime_close(rt);
    return 0;
}

START_TEST(test_kv_processes_mutual_exclusion)
{
    char dir[DIR_MAX];
    new_dir(dir);
    /* fork first: this process has no runtime (and no threads) yet */
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0)
            _exit(child_main(dir, p));
    }
    for (int p = 0; p < PROCS; p++) {
        int st = 0;
        ck_assert_int_eq(waitpid(pids[p], &st, 0), pids[p]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (%#x)", p,
                      st);
    }
    marin_runtime_t *rt = open_dir(dir);
    void *v = NULL;
    size_t n = 0;
    long count = 0;
    ck_assert_marin(marin_kv_get(rt, "count", &v, &n), MARIN_OK);
    ck_assert_uint_eq(n, sizeof count);
    memcpy(&count, v, sizeof count);
    marin_free(v);
    ck_assert_int_eq(count, PROCS * PROC_ROUNDS);
    uint64_t tok = 0;
    ck_assert_marin(marin_lease_acquire(rt, "mutex", "parent", 100, &tok), MARIN_OK);
    ck_assert_uint_eq(tok, PROCS * PROC_ROUNDS + 1);
    marin_runtime_close(rt);
}
END_TEST

#define THREADS 8

typedef struct {
    marin_runtime_t *rt;
    int rounds;
    int failed;
} cas_arg;

static void *cas_thread(void *p)
{
    cas_arg *a = p;
    for (int r = 0; r < a->rounds; r++) {
        for (;;) {
            void *v = NULL;
            size_t n = 0;
            long cur = 0, next;
            int rc = marin_kv_get(a->rt, "ctr", &v, &n);
            if (rc == MARIN_OK && n == sizeof cur)
                memcpy(&cur, v, sizeof cur);
            else if (rc != MARIN_ENOTFOUND) {
                a->failed = 1;
                return NULL;
            }
            next = cur + 1;
            rc = marin_kv_cas(a->rt, "ctr", rc == MARIN_OK ? v : NULL,
                              rc == MARIN_OK ? n : 0, &next, sizeof next);
            marin_free(v);
            if (rc == MARIN_OK)
                break;
            if (rc != MARIN_ECONFLICT) {
                a->failed = 1;
                return NULL;
            }
        }
    }
    return NULL;
}

START_TEST(test_kv_threads_cas_exact)
{
    char dir[DIR_MAX];
    marin_runtime_t *rt = open_store(_i, dir), *rt2 = rt;
    int rounds = _i == 0 ? 500 : 25;
    /* on files, half the threads use a second runtime on the same directory:
     * two runtimes of one process must exclude each other too */
    if (_i == 1)
        rt2 = open_dir(dir);
    pthread_t th[THREADS];
    cas_arg args[THREADS];
    for (int k = 0; k < THREADS; k++) {
        args[k] = (cas_arg){k % 2 ? rt2 : rt, rounds, 0};
        ck_assert_int_eq(pthread_create(&th[k], NULL, cas_thread, &args[k]), 0);
    }
    for (int k = 0; k < THREADS; k++) {
        pthread_join(th[k], NULL);
        ck_assert_msg(!args[k].failed, "thread %d failed", k);
    }
    void *v = NULL;
    size_t n = 0;
    long count = 0;
    ck_assert_marin(marin_kv_get(rt, "ctr", &v, &n), MARIN_OK);
    ck_assert_uint_eq(n, sizeof count);
    memcpy(&count, v, sizeof count);
    marin_free(v);
    ck_assert_int_eq(count, THREADS * rounds);
    if (rt2 != rt)
        marin_runtime_close(rt2);
    marin_runtime_close(rt);
}
END_TEST

/* ---- damaged and unusable state ---- */

/* The one bucket file in DIR/SUB, into @p path. */
static void only_file(const char *dir, const char *sub, char *path)
{
    char d[DIR_MAX + 16];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    DIR *dp = opendir(d);
    ck_assert_ptr_nonnull(dp);
    char name[256] = "";
    int found = 0;
    for (struct dirent *de; (de = readdir(dp));) {
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
            continue;
        snprintf(name, sizeof name, "%s", de->d_name);
        found++;
    }
    closedir(dp);
    ck_assert_int_eq(found, 1);
    snprintf(path, PATH_MAX, "%s/%s", d, name);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Every call on @p key must fail with EPROTO naming @p path. */
static void expect_corrupt(marin_runtime_t *rt, const char *key, const char *path)
{
    const char *name = strrchr(path, '/') + 1;
    void *v = NULL;
    size_t n = 0;
    ck_assert_marin(marin_kv_get(rt, key, &v, &n), MARIN_EPROTO);
    ck_assert_ptr_null(v);
    ck_assert_lasterr_has(name);
    ck_assert_lasterr_has("corrupt");
    ck_assert_marin(marin_kv_put(rt, key, "x", 1), MARIN_EPROTO);
    ck_assert_lasterr_has(name);
    ck_assert_marin(marin_kv_cas(rt, key, NULL, 0, "x", 1), MARIN_EPROTO);
    ck_assert_marin(marin_kv_delete(rt, key), MARIN_EPROTO);
}

static void store_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

START_TEST(test_kv_corrupt_file)
{
    SKIP_UNLESS_LOCAL("damages the files of the local:// state=DIR store");
    char dir[DIR_MAX], path[PATH_MAX];
    marin_runtime_t *rt = open_store(1, dir);
    put_str(rt, "k", "value");
    only_file(dir, "kv", path);
    unsigned char good[256], bad[256];
    size_t len = read_file(path, good, sizeof good);
    ck_assert_uint_eq(len, 16 + 4 + 1 + 8 + 5 + 8);

    /* garbage */
    write_file(path, "this is not a bucket at all, just text", 38);
    expect_corrupt(rt, "k", path);
    /* empty */
    write_file(path, "", 0);
    expect_corrupt(rt, "k", path);
    /* truncated */
    write_file(path, good, len - 3);
    expect_corrupt(rt, "k", path);
    ck_assert_lasterr_has("corrupt");
    /* a flipped byte in the value: checksum */
    memcpy(bad, good, len);
    bad[30] ^= 1;
    write_file(path, bad, len);
    expect_corrupt(rt, "k", path);
    /* a value length past the end, with a valid checksum */
    memcpy(bad, good, len);
    store_u64(bad + 21, (uint64_t)1 << 40);
    store_u64(bad + len - 8, XXH3_64bits(bad, len - 8));
    write_file(path, bad, len);
    expect_corrupt(rt, "k", path);
    /* a huge entry count, valid checksum */
    memcpy(bad, good, len);
    bad[8] = 0xff;
    bad[9] = 0xff;
    store_u64(bad + len - 8, XXH3_64bits(bad, len - 8));
    write_file(path, bad, len);
    expect_corrupt(rt, "k", path);
    /* another version */
    memcpy(bad, good, len);
    bad[4] = 9;
    store_u64(bad + len - 8, XXH3_64bits(bad, len - 8));
    write_file(path, bad, len);
    expect_corrupt(rt, "k", path);
    /* a directory in its place */
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    expect_corrupt(rt, "k", path);
    ck_assert_int_eq(rmdir(path), 0);

    /* the file of another key under this key's name */
    put_str(rt, "other", "value");
    char other[PATH_MAX];
    only_file(dir, "kv", other);
    ck_assert_int_eq(rename(other, path), 0);
    expect_corrupt(rt, "k", path);
    ck_assert_lasterr_has("another");
    void *v = NULL;
    size_t n = 0;
    ck_assert_marin(marin_kv_get(rt, "other", &v, &n), MARIN_ENOTFOUND);

    /* repaired by removing it */
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_marin(marin_kv_get(rt, "k", &v, &n), MARIN_ENOTFOUND);
    put_str(rt, "k", "again");
    expect_value(rt, "k", "again");

    /* a lease file */
    uint64_t tok = 0;
    ck_assert_marin(marin_lease_acquire(rt, "L", "me", 10000, &tok), MARIN_OK);
    only_file(dir, "lease", path);
    len = read_file(path, good, sizeof good);
    memcpy(bad, good, len);
    bad[len - 9] ^= 0x10; /* the token */
    write_file(path, bad, len);
    ck_assert_marin(marin_lease_acquire(rt, "L", "me", 10000, &tok), MARIN_EPROTO);
    ck_assert_lasterr_has(strrchr(path, '/') + 1);
    ck_assert_lasterr_has("lease");
    ck_assert_marin(marin_lease_renew(rt, "L", "me", 100), MARIN_EPROTO);
    ck_assert_marin(marin_lease_release(rt, "L", "me"), MARIN_EPROTO);
    ck_assert_marin(marin_kv_put_fenced(rt, "k", "x", 1, "L", tok), MARIN_EPROTO);
    expect_value(rt, "k", "again");
    /* token 0 with a valid checksum */
    memcpy(bad, good, len);
    store_u64(bad + len - 16, 0);
    store_u64(bad + len - 8, XXH3_64bits(bad, len - 8));
    write_file(path, bad, len);
    ck_assert_marin(marin_lease_acquire(rt, "L", "me", 10000, &tok), MARIN_EPROTO);
    write_file(path, good, len);
    ck_assert_marin(marin_lease_acquire(rt, "L", "me", 10000, &tok), MARIN_OK);
    ck_assert_uint_eq(tok, 1);
    marin_runtime_close(rt);
}
END_TEST

/* Random bytes in a bucket never crash the reader. */
START_TEST(test_kv_corrupt_fuzz)
{
    SKIP_UNLESS_LOCAL("damages the files of the local:// state=DIR store");
    char dir[DIR_MAX], path[PATH_MAX];
    marin_runtime_t *rt = open_store(1, dir);
    put_str(rt, "k", "some value");
    only_file(dir, "kv", path);
    unsigned char good[256], bad[256];
    size_t len = read_file(path, good, sizeof good);
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 300; round++) {
        memcpy(bad, good, len);
        size_t n = len;
        for (int e = 0; e < 3; e++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bad[s % n] = (unsigned char)(s >> 32);
        }
        if (round % 3 == 0)
            n = (size_t)(s >> 20) % len;
        if (round % 2 == 0 && n >= 8) /* keep the checksum right half the time */
            store_u64(bad + n - 8, XXH3_64bits(bad, n - 8));
        write_file(path, bad, n);
        void *v = NULL;
        size_t vn = 0;
        int rc = marin_kv_get(rt, "k", &v, &vn);
        ck_assert_msg(rc == MARIN_EPROTO || rc == MARIN_OK || rc == MARIN_ENOTFOUND,
                      "round %d: %d %s", round, rc, marin_last_error());
        marin_free(v);
    }
    marin_runtime_close(rt);
}
END_TEST

START_TEST(test_kv_unusable_state_dir)
{
    SKIP_UNLESS_LOCAL("unusable local:// state=DIR directories");
    char dir[DIR_MAX], uri[PATH_MAX], file[DIR_MAX + 16];
    new_dir(dir);
    snprintf(file, sizeof file, "%s/file", dir);
    write_file(file, "x", 1);
    /* a directory below a regular file cannot be made, even by root */
    snprintf(uri, sizeof uri, "local://?state=%s/sub/store", file);
    marin_runtime_t *rt = (marin_runtime_t *)1;
    ck_assert_marin(marin_runtime_open(uri, &rt), MARIN_EUNAVAILABLE);
    ck_assert_ptr_null(rt);
    ck_assert_lasterr_has(file);
    ck_assert_lasterr_has("Not a directory");
    /* the state directory is a file */
    state_uri(uri, sizeof uri, file);
    ck_assert_marin(marin_runtime_open(uri, &rt), MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has(file);
    /* kv/ is a file */
    char sub[DIR_MAX + 16];
    snprintf(sub, sizeof sub, "%s/bad", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    snprintf(file, sizeof file, "%s/bad/kv", dir);
    write_file(file, "x", 1);
    state_uri(uri, sizeof uri, sub);
    ck_assert_marin(marin_runtime_open(uri, &rt), MARIN_EUNAVAILABLE);
    ck_assert_lasterr_has(sub);
    /* without write permission (root ignores it) */
    if (geteuid() != 0) {
        snprintf(sub, sizeof sub, "%s/ro", dir);
        ck_assert_int_eq(mkdir(sub, 0500), 0);
        state_uri(uri, sizeof uri, sub);
        ck_assert_marin(marin_runtime_open(uri, &rt), MARIN_EUNAVAILABLE);
        ck_assert_lasterr_has(sub);
        chmod(sub, 0700);
    }
    /* state= with no value */
    ck_assert_marin(marin_runtime_open("local://?state=", &rt), MARIN_EINVAL);
    ck_assert_lasterr_has("state=");
    /* nested directories are made as needed */
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    state_uri(uri, sizeof uri, sub);
    rt = open_rt(uri);
    put_str(rt, "k", "v");
    marin_runtime_close(rt);
    rt = open_rt(uri);
    expect_value(rt, "k", "v");
    marin_runtime_close(rt);
}
END_TEST

/* ---- out of memory ---- */

typedef int (*oom_call_fn)(marin_runtime_t *rt);

static void oom_loop(const char *what, marin_runtime_t *rt, oom_call_fn call)
{
    for (long n = 0; n < OOM_MAX; n++) {
        marin__test_fail_alloc_after(n);
        int rc = call(rt);
        marin__test_fail_alloc_after(-1);
        if (rc == MARIN_OK)
            return;
        ck_assert_msg(rc == MARIN_ENOMEM, "%s, %ld allocations allowed: %d (%s): %s",
                      what, n, rc, marin_strerror(rc), marin_last_error());
        ck_assert_msg(marin_last_error()[0] != '\0',
                      "%s, %ld allocations allowed: ENOMEM without a message", what, n);
    }
    ck_abort_msg("%s never succeeded", what);
}

static int oom_counter;

static int call_put_new(marin_runtime_t *rt)
{
    char key[32];
    snprintf(key, sizeof key, "oom-%d", oom_counter);
    return marin_kv_put(rt, key, "value", 5);
}

static int call_put_over(marin_runtime_t *rt)
{
    return marin_kv_put(rt, "oom-0", "v2", 2);
}

static int call_get(marin_runtime_t *rt)
{
    void *v = (void *)1;
    size_t n = 9;
    int rc = marin_kv_get(rt, "oom-0", &v, &n);
    if (rc == MARIN_OK) {
        ck_assert_uint_eq(n, 2);
        marin_free(v);
    } else {
        ck_assert_ptr_null(v);
    }
    return rc;
}

static int call_cas(marin_runtime_t *rt)
{
    return marin_kv_cas(rt, "oom-0", "v2", 2, "v3", 2);
}

static int call_acquire(marin_runtime_t *rt)
{
    uint64_t tok = 9;
    char key[32];
    snprintf(key, sizeof key, "lease-%d", oom_counter);
    int rc = marin_lease_acquire(rt, key, "me", 10000, &tok);
    ck_assert_uint_eq(tok, rc == MARIN_OK ? 1 : 0);
    return rc;
}

static int call_fenced(marin_runtime_t *rt)
{
    return marin_kv_put_fenced(rt, "fenced", "v", 1, "lease-0", 1);
}

START_TEST(test_kv_oom)
{
    SKIP_UNLESS_LOCAL(SKIP_REASON_OOM);
    if (!MARIN_FAULT_INJECTION)
        return; /* built without fault injection: nothing to test */
    marin_runtime_t *rt = open_store(_i, NULL);
    oom_counter = 0;
    oom_loop("put (new key)", rt, call_put_new);
    expect_value(rt, "oom-0", "value");
    oom_loop("put (overwrite)", rt, call_put_over);
    oom_loop("get", rt, call_get);
    oom_loop("cas", rt, call_cas);
    oom_loop("lease_acquire", rt, call_acquire);
    oom_loop("put_fenced", rt, call_fenced);
    /* enough keys to make the in-memory table grow under the loop */
    for (oom_counter = 1; oom_counter < 40; oom_counter++) {
        oom_loop("put (growing)", rt, call_put_new);
        oom_loop("lease_acquire (growing)", rt, call_acquire);
    }
    for (int k = 0; k < 40; k++) {
        char key[32];
        snprintf(key, sizeof key, "oom-%d", k);
        expect_value(rt, key, k == 0 ? "v3" : "value");
    }
    marin_runtime_close(rt);
}
END_TEST

static Suite *kv_suite(void)
{
    Suite *s = suite_create("kv");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
    tcase_add_loop_test(tc, test_kv_put_get_delete, 0, 2);
    tcase_add_loop_test(tc, test_kv_cas, 0, 2);
    tcase_add_loop_test(tc, test_kv_invalid_args, 0, 2);
    tcase_add_loop_test(tc, test_kv_too_big, 0, 2);
    tcase_add_loop_test(tc, test_kv_lease_acquire_renew_release, 0, 2);
    tcase_add_loop_test(tc, test_kv_lease_expiry_takeover, 0, 2);
    tcase_add_test(tc, test_kv_tokens_survive_reopen);
    tcase_add_test(tc, test_kv_processes_mutual_exclusion);
    tcase_add_loop_test(tc, test_kv_threads_cas_exact, 0, 2);
    tcase_add_test(tc, test_kv_corrupt_file);
    tcase_add_test(tc, test_kv_corrupt_fuzz);
    tcase_add_test(tc, test_kv_unusable_state_dir);
    tcase_add_loop_test(tc, test_kv_oom, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    unsetenv("MARIN_BACKEND");
    return marin_test_run(kv_suite());
}
