/* Backend URIs: components, parameters, percent-decoding, errors, OOM,
 * fuzz. The uri functions are internal: like their callers, the tests pass
 * their codes through marin__api_exit where OOM matters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "uri.h"
#include "testutil.h"

/* Assert that every field of u is empty. */
static void assert_empty(const marin__uri *u)
{
    ck_assert_ptr_null(u->scheme);
    ck_assert_ptr_null(u->user);
    ck_assert_ptr_null(u->password);
    ck_assert_ptr_null(u->host);
    ck_assert_ptr_null(u->path);
    ck_assert_int_eq(u->port, -1);
    ck_assert_uint_eq(u->nparams, 0);
    for (size_t i = 0; i < MARIN__URI_MAX_PARAMS; i++) {
        ck_assert_ptr_null(u->keys[i]);
        ck_assert_ptr_null(u->values[i]);
    }
}

static void parse_ok(const char *text, marin__uri *u)
{
    int rc = marin__uri_parse(text, u);
    ck_assert_msg(rc == MARIN_OK, "parse \"%s\" returned %d: %s", text, rc,
                  marin_last_error());
}

/* Expect MARIN_EINVAL, an empty u, and each needle in the message. */
static void parse_bad(const char *text, const char *n1, const char *n2,
                      const char *n3)
{
    marin__uri u;
    memset(&u, 0x5a, sizeof u); /* garbage in: must come back empty */
    int rc = marin__uri_parse(text, &u);
    ck_assert_msg(rc == MARIN_EINVAL, "parse \"%s\" returned %d, wanted "
                  "EINVAL: %s", text, rc, marin_last_error());
    assert_empty(&u);
    const char *needles[] = {n1, n2, n3};
    for (size_t i = 0; i < 3; i++)
        if (needles[i])
            ck_assert_msg(strstr(marin_last_error(), needles[i]) != NULL,
                          "parse \"%s\": message '%s' lacks '%s'", text,
                          marin_last_error(), needles[i]);
}

START_TEST(test_uri_bare_scheme)
{
    marin__uri u;
    parse_ok("local", &u);
    ck_assert_str_eq(u.scheme, "local");
    ck_assert_ptr_null(u.user);
    ck_assert_ptr_null(u.password);
    ck_assert_ptr_null(u.host);
    ck_assert_ptr_null(u.path);
    ck_assert_int_eq(u.port, -1);
    ck_assert_uint_eq(u.nparams, 0);
    marin__uri_free(&u);
    assert_empty(&u);
    marin__uri_free(&u); /* twice is harmless */
    parse_ok("k8s", &u);
    ck_assert_str_eq(u.scheme, "k8s");
    marin__uri_free(&u);
    parse_ok("local://", &u);
    ck_assert_str_eq(u.scheme, "local");
    ck_assert_ptr_null(u.host);
    ck_assert_uint_eq(u.nparams, 0);
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_full)
{
    marin__uri u;
    parse_ok("redis://alice:s3cret@db.example.com:6390/2?namespace=ns1"
             "&timeout_ms=500",
             &u);
    ck_assert_str_eq(u.scheme, "redis");
    ck_assert_str_eq(u.user, "alice");
    ck_assert_str_eq(u.password, "s3cret");
    ck_assert_str_eq(u.host, "db.example.com");
    ck_assert_int_eq(u.port, 6390);
    ck_assert_str_eq(u.path, "/2");
    ck_assert_uint_eq(u.nparams, 2);
    ck_assert_str_eq(u.keys[0], "namespace");
    ck_assert_str_eq(u.values[0], "ns1");
    ck_assert_str_eq(marin__uri_param(&u, "timeout_ms"), "500");
    ck_assert_ptr_null(marin__uri_param(&u, "absent"));
    marin__uri_free(&u);
    assert_empty(&u);

    parse_ok("redis://127.0.0.1:6390", &u);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6390);
    ck_assert_ptr_null(u.user);
    ck_assert_ptr_null(u.path);
    marin__uri_free(&u);

    parse_ok("redis://host", &u);
    ck_assert_str_eq(u.host, "host");
    ck_assert_int_eq(u.port, -1);
    marin__uri_free(&u);

    parse_ok("redis://:pw@host:1/", &u); /* password only */
    ck_assert_ptr_null(u.user);
    ck_assert_str_eq(u.password, "pw");
    ck_assert_int_eq(u.port, 1);
    ck_assert_str_eq(u.path, "/");
    marin__uri_free(&u);

    parse_ok("redis://bob@host:65535/a/b/c", &u);
    ck_assert_str_eq(u.user, "bob");
    ck_assert_ptr_null(u.password);
    ck_assert_int_eq(u.port, 65535);
    ck_assert_str_eq(u.path, "/a/b/c");
    marin__uri_free(&u);

    parse_ok("redis://[::1]:6379", &u);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6379);
    marin__uri_free(&u);

    parse_ok("redis://[fe80::1:2]/0", &u);
    ck_assert_str_eq(u.host, "fe80::1:2");
    ck_assert_int_eq(u.port, -1);
    ck_assert_str_eq(u.path, "/0");
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_local_resources)
{
    marin__uri u;
    parse_ok("local://?resources=cpus=8,memory=16GiB", &u);
    ck_assert_str_eq(u.scheme, "local");
    ck_assert_ptr_null(u.host);
    ck_assert_uint_eq(u.nparams, 1);
    const char *v = marin__uri_param(&u, "resources");
    ck_assert_str_eq(v, "cpus=8,memory=16GiB");
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_parse(v, &r), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(r, "cpus"), 8.0);
    ck_assert_double_eq(marin_resources_get(r, "memory"), 17179869184.0);
    marin_resources_destroy(r);
    marin__uri_free(&u);

    parse_ok("local://?processes=4&resources=cpus=8,memory=16GiB,gpus=0", &u);
    ck_assert_str_eq(marin__uri_param(&u, "resources"),
                     "cpus=8,memory=16GiB,gpus=0");
    long long n = -1;
    ck_assert_int_eq(marin__uri_param_i64(&u, "processes", &n), MARIN_OK);
    ck_assert_int_eq(n, 4);
    marin__uri_free(&u);

    parse_ok("k8s://?namespace=ml&image=gcr.io/proj/img:v1.2", &u);
    ck_assert_ptr_null(u.host);
    ck_assert_ptr_null(u.path);
    ck_assert_str_eq(marin__uri_param(&u, "image"), "gcr.io/proj/img:v1.2");
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_params_empty_pieces)
{
    marin__uri u;
    parse_ok("local://?a=1&&b=&c&", &u);
    ck_assert_uint_eq(u.nparams, 3);
    ck_assert_str_eq(marin__uri_param(&u, "a"), "1");
    ck_assert_str_eq(marin__uri_param(&u, "b"), "");
    ck_assert_str_eq(marin__uri_param(&u, "c"), "");
    marin__uri_free(&u);
    parse_ok("local://?", &u);
    ck_assert_uint_eq(u.nparams, 0);
    marin__uri_free(&u);
    parse_ok("local://?x=a=b=c", &u);
    ck_assert_str_eq(marin__uri_param(&u, "x"), "a=b=c");
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_percent_decoding)
{
    marin__uri u;
    parse_ok("redis://us%65r:p%40ss%3Aw%2fd@ho%73t/d%20b"
             "?k%26=v%3D1%26x%2C&plus=a+b",
             &u);
    ck_assert_str_eq(u.user, "user");
    ck_assert_str_eq(u.password, "p@ss:w/d");
    ck_assert_str_eq(u.host, "host");
    ck_assert_str_eq(u.path, "/d b");
    ck_assert_uint_eq(u.nparams, 2);
    ck_assert_str_eq(u.keys[0], "k&");
    ck_assert_str_eq(u.values[0], "v=1&x,");
    ck_assert_str_eq(marin__uri_param(&u, "plus"), "a+b"); /* not a form */
    marin__uri_free(&u);
    /* a raw '@' in the password: the last '@' ends the user info */
    parse_ok("redis://u:p@ss@host", &u);
    ck_assert_str_eq(u.password, "p@ss");
    ck_assert_str_eq(u.host, "host");
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_err_scheme)
{
    parse_bad("", "empty scheme", "position 1", NULL);
    parse_bad("://host", "empty scheme", "position 1", NULL);
    parse_bad("lo cal", "invalid character ' ' in the scheme", "position 3",
              NULL);
    parse_bad("1redis://h", "start with a letter", "position 1", NULL);
    parse_bad("local?x=1", "unexpected '?'", "'local'", "position 6");
    parse_bad("redis:6379", "unexpected ':'", "scheme://", NULL);
    parse_bad("red_is://h", "invalid character '_'", "position 4", NULL);
}
END_TEST

START_TEST(test_uri_err_port)
{
    parse_bad("redis://h:abc", "bad port 'abc'", "not a number",
              "position 11");
    parse_bad("redis://h:", "empty port", "position 10", NULL);
    parse_bad("redis://h:70000", "bad port '70000'", "out of range",
              "1-65535");
    parse_bad("redis://h:0", "out of range", NULL, NULL);
    parse_bad("redis://h:-1", "bad port '-1'", NULL, NULL);
    parse_bad("redis://h:99999999999999999999999", "out of range", NULL,
              NULL);
    parse_bad("redis://h:63 79", "bad port", "position 13", NULL);
    parse_bad("redis://[::1]:x", "bad port 'x'", NULL, NULL);
    parse_bad("redis://[::1]x", "unexpected 'x' after ']'", NULL, NULL);
}
END_TEST

START_TEST(test_uri_err_host)
{
    parse_bad("redis://a:b:6379", "unexpected ':' in the host", "brackets",
              "position 10");
    parse_bad("redis://[::1", "without a closing ']'", NULL, NULL);
    parse_bad("redis://[]:1", "empty IPv6", NULL, NULL);
    parse_bad("redis://[zz]:1", "invalid character 'z'", NULL, NULL);
    parse_bad("redis://ho st", "invalid character ' ' in the host",
              "position 11", NULL);
    parse_bad("redis://h\x01", "control character 0x01", "position 10", NULL);
}
END_TEST

START_TEST(test_uri_err_percent)
{
    parse_bad("redis://h/%zz", "bad percent escape '%zz'", "path",
              "position 11");
    parse_bad("redis://h/a%4", "bad percent escape '%4'", "position 12",
              NULL);
    parse_bad("local://?k=%", "bad percent escape '%'", "parameter value",
              NULL);
    parse_bad("local://?k%g1=1", "parameter name", "position 11", NULL);
    parse_bad("local://?k=a%00b", "%00", "NUL", NULL);
    parse_bad("redis://us%Xer@h", "user", "position 11", NULL);
    parse_bad("redis://h%2", "host", NULL, NULL);
}
END_TEST

START_TEST(test_uri_err_params)
{
    parse_bad("local://?=1", "empty parameter name", "position 10", NULL);
    parse_bad("local://?a=1&=2", "empty parameter name", "position 14", NULL);
    parse_bad("local://?a=1&b=2&a=3", "duplicate parameter 'a'",
              "position 18", NULL);
    parse_bad("local://?a=1&%61=2", "duplicate parameter 'a'", NULL, NULL);

    char text[1024];
    size_t o = (size_t)snprintf(text, sizeof text, "local://?");
    for (int i = 0; i < MARIN__URI_MAX_PARAMS; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%sk%d=%d",
                              i ? "&" : "", i, i);
    marin__uri u;
    parse_ok(text, &u);
    ck_assert_uint_eq(u.nparams, MARIN__URI_MAX_PARAMS);
    ck_assert_str_eq(marin__uri_param(&u, "k31"), "31");
    marin__uri_free(&u);
    snprintf(text + o, sizeof text - o, "&k%d=1", MARIN__URI_MAX_PARAMS);
    parse_bad(text, "too many parameters", "at most 32", "position");
}
END_TEST

START_TEST(test_uri_password_never_shown)
{
    parse_bad("redis://user:hunter2@h:bad", "bad port", "***", NULL);
    ck_assert_msg(strstr(marin_last_error(), "hunter2") == NULL,
                  "password leaked: %s", marin_last_error());
    parse_bad("redis://user:hun%zzter@h", "password", NULL, NULL);
    ck_assert_msg(strstr(marin_last_error(), "hun") == NULL,
                  "password leaked: %s", marin_last_error());
    ck_assert_msg(strstr(marin_last_error(), "%zz") == NULL,
                  "password escape leaked: %s", marin_last_error());
}
END_TEST

START_TEST(test_uri_long_message)
{
    size_t n = 5000;
    char *text = malloc(n + 32);
    ck_assert_ptr_nonnull(text);
    strcpy(text, "redis://h/");
    memset(text + 10, 'p', n);
    strcpy(text + 10 + n, "%zz");
    parse_bad(text, "...", "position 5011", NULL);
    ck_assert_uint_lt(strlen(marin_last_error()), 1024);
    free(text);
}
END_TEST

START_TEST(test_uri_param_i64)
{
    marin__uri u;
    parse_ok("redis://h?timeout_ms=1500&zero=0&neg=-1&big="
             "99999999999999999999&max=9223372036854775807&txt=12ab&e=",
             &u);
    long long v = 7;
    ck_assert_int_eq(marin__uri_param_i64(&u, "absent", &v), MARIN_OK);
    ck_assert_int_eq(v, 7); /* unchanged */
    ck_assert_int_eq(marin__uri_param_i64(&u, "timeout_ms", &v), MARIN_OK);
    ck_assert_int_eq(v, 1500);
    ck_assert_int_eq(marin__uri_param_i64(&u, "zero", &v), MARIN_OK);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(marin__uri_param_i64(&u, "max", &v), MARIN_OK);
    ck_assert_int_eq(v, 9223372036854775807LL);
    v = 7;
    ck_assert_int_eq(marin__uri_param_i64(&u, "neg", &v), MARIN_EINVAL);
    ck_assert_lasterr_has("'neg=-1'");
    ck_assert_lasterr_has("non-negative integer");
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(marin__uri_param_i64(&u, "big", &v), MARIN_EINVAL);
    ck_assert_lasterr_has("'big=99999999999999999999'");
    ck_assert_lasterr_has("too large");
    ck_assert_int_eq(marin__uri_param_i64(&u, "txt", &v), MARIN_EINVAL);
    ck_assert_lasterr_has("'txt=12ab'");
    ck_assert_int_eq(marin__uri_param_i64(&u, "e", &v), MARIN_EINVAL);
    ck_assert_lasterr_has("'e' is empty");
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(marin__uri_param_i64(NULL, "x", &v), MARIN_EINVAL);
    ck_assert_int_eq(marin__uri_param_i64(&u, NULL, &v), MARIN_EINVAL);
    ck_assert_int_eq(marin__uri_param_i64(&u, "zero", NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("out is NULL");
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_check_params)
{
    static const char *const known[] = {"namespace", "timeout_ms", NULL};
    static const char *const none[] = {NULL};
    marin__uri u;
    parse_ok("redis://h?namespace=a&timeout_ms=5", &u);
    ck_assert_int_eq(marin__uri_check_params(&u, known), MARIN_OK);
    ck_assert_int_eq(marin__uri_check_params(&u, none), MARIN_EINVAL);
    ck_assert_lasterr_has("'namespace'");
    ck_assert_lasterr_has("known: none");
    marin__uri_free(&u);

    parse_ok("redis://h?namespace=a&nmespace=b", &u);
    ck_assert_int_eq(marin__uri_check_params(&u, known), MARIN_EINVAL);
    ck_assert_lasterr_has("unknown redis parameter 'nmespace'");
    ck_assert_lasterr_has("known: namespace, timeout_ms");
    ck_assert_int_eq(marin__uri_check_params(&u, NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("'namespace'");
    marin__uri_free(&u);

    parse_ok("local", &u);
    ck_assert_int_eq(marin__uri_check_params(&u, known), MARIN_OK);
    ck_assert_int_eq(marin__uri_check_params(&u, NULL), MARIN_OK);
    marin__uri_free(&u);
    ck_assert_int_eq(marin__uri_check_params(NULL, known), MARIN_EINVAL);
}
END_TEST

START_TEST(test_uri_null_args)
{
    marin__uri u;
    memset(&u, 0x5a, sizeof u);
    ck_assert_int_eq(marin__uri_parse(NULL, &u), MARIN_EINVAL);
    ck_assert_lasterr_has("text is NULL");
    assert_empty(&u);
    ck_assert_int_eq(marin__uri_parse("local", NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("u is NULL");
    marin__uri_free(NULL);
    ck_assert_ptr_null(marin__uri_param(NULL, "x"));
    parse_ok("local://?x=1", &u);
    ck_assert_ptr_null(marin__uri_param(&u, NULL));
    marin__uri_free(&u);
}
END_TEST

START_TEST(test_uri_oom)
{
    const char *text = "redis://alice:pw@db.example.com:6390/2?namespace=ns"
                       "&timeout_ms=500&resources=cpus=8,memory=16GiB";
    marin__uri u;
    int rc = MARIN_ENOMEM;
    long n;
    for (n = 0; n < 1000 && rc != MARIN_OK; n++) {
        marin__test_fail_alloc_after(n);
        memset(&u, 0x5a, sizeof u);
        rc = marin__api_exit(marin__uri_parse(text, &u));
        marin__test_fail_alloc_after(-1);
        if (rc != MARIN_OK) {
            ck_assert_int_eq(rc, MARIN_ENOMEM);
            ck_assert_lasterr_has("memory");
            assert_empty(&u);
        }
    }
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert_int_gt(n, 10); /* scheme, user, password, host, path, 6 */
    ck_assert_str_eq(u.password, "pw");
    ck_assert_str_eq(marin__uri_param(&u, "resources"),
                     "cpus=8,memory=16GiB");
    marin__uri_free(&u);
}
END_TEST

/* ---- fuzz ---------------------------------------------------------------- */

static const char *const seeds[] = {
    "local", "local://?resources=cpus=8,memory=16GiB",
    "redis://u:p@h:6379/0?namespace=x&timeout_ms=5", "redis://[::1]:1/",
    "k8s://?namespace=a&image=b%2Fc", "redis://%41:%42@%43:1/%44?%45=%46",
};
static const char alphabet[] = "abc:/?&=@%[]0123456789AFaf+.-_ ";

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

/* Fill buf (cap bytes) with a random or mutated input. */
static void random_uri(char *buf, size_t cap)
{
    fuzz_input(buf, cap, seeds, sizeof seeds / sizeof seeds[0], alphabet,
               &rng_state);
}

START_TEST(test_uri_fuzz)
{
    static const char *const known[] = {"namespace", NULL};
    char text[256];
    int ok = 0, bad = 0;
    for (int i = 0; i < 20000; i++) {
        random_uri(text, sizeof text);
        marin__uri u;
        int rc = marin__uri_parse(text, &u);
        ck_assert_msg(rc == MARIN_OK || rc == MARIN_EINVAL,
                      "\"%s\" returned %d", text, rc);
        if (rc != MARIN_OK) {
            assert_empty(&u);
            ck_assert_msg(marin_last_error()[0] != '\0', "no message");
            bad++;
            continue;
        }
        ok++;
        ck_assert_ptr_nonnull(u.scheme);
        ck_assert(u.port == -1 || (u.port >= 1 && u.port <= 65535));
        ck_assert_uint_le(u.nparams, MARIN__URI_MAX_PARAMS);
        for (size_t k = 0; k < u.nparams; k++) {
            ck_assert_ptr_eq(marin__uri_param(&u, u.keys[k]), u.values[k]);
            long long v = -1;
            rc = marin__uri_param_i64(&u, u.keys[k], &v);
            ck_assert(rc == MARIN_OK || rc == MARIN_EINVAL);
            ck_assert(rc != MARIN_OK || v >= 0);
        }
        rc = marin__uri_check_params(&u, known);
        ck_assert(rc == MARIN_OK || rc == MARIN_EINVAL);
        marin__uri_free(&u);
    }
    ck_assert_int_gt(ok, 100);
    ck_assert_int_gt(bad, 100);
}
END_TEST

static Suite *uri_suite(void)
{
    Suite *s = suite_create("uri");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_uri_bare_scheme);
    tcase_add_test(tc, test_uri_full);
    tcase_add_test(tc, test_uri_local_resources);
    tcase_add_test(tc, test_uri_params_empty_pieces);
    tcase_add_test(tc, test_uri_percent_decoding);
    tcase_add_test(tc, test_uri_err_scheme);
    tcase_add_test(tc, test_uri_err_port);
    tcase_add_test(tc, test_uri_err_host);
    tcase_add_test(tc, test_uri_err_percent);
    tcase_add_test(tc, test_uri_err_params);
    tcase_add_test(tc, test_uri_password_never_shown);
    tcase_add_test(tc, test_uri_long_message);
    tcase_add_test(tc, test_uri_param_i64);
    tcase_add_test(tc, test_uri_check_params);
    tcase_add_test(tc, test_uri_null_args);
    tcase_add_test(tc, test_uri_oom);
    tcase_add_test(tc, test_uri_fuzz);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return marin_test_run(uri_suite()); }
