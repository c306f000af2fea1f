/* Resource sets: parse, set/get, canonical format, errors, OOM, fuzz. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "resources_internal.h"
#include "testutil.h"

/* Parse spec (must succeed) and return the set. */
static marin_resources_t *parse_ok(const char *spec)
{
    marin_resources_t *r = NULL;
    int rc = marin_resources_parse(spec, &r);
    ck_assert_msg(rc == MARIN_OK, "parse \"%s\" returned %d: %s", spec, rc,
                  marin_last_error());
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Parse spec, expect MARIN_EINVAL, *out NULL and every needle (NULL
 * terminated) in the message. */
static void parse_bad(const char *spec, const char *n1, const char *n2,
                      const char *n3)
{
    marin_resources_t *r = (marin_resources_t *)(uintptr_t)1;
    int rc = marin_resources_parse(spec, &r);
    ck_assert_msg(rc == MARIN_EINVAL, "parse \"%s\" returned %d, wanted "
                  "EINVAL: %s", spec, rc, marin_last_error());
    ck_assert_ptr_null(r);
    const char *needles[] = {n1, n2, n3};
    for (size_t i = 0; i < 3; i++)
        if (needles[i])
            ck_assert_msg(strstr(marin_last_error(), needles[i]) != NULL,
                          "parse \"%s\": message '%s' lacks '%s'", spec,
                          marin_last_error(), needles[i]);
}

/* Format r into a static buffer. */
static const char *fmt(const marin_resources_t *r)
{
    static char buf[4096];
    int n = marin_resources_format(r, buf, sizeof buf);
    ck_assert_int_ge(n, 0);
    ck_assert_int_lt(n, (int)sizeof buf);
    ck_assert_uint_eq(strlen(buf), (size_t)n);
    return buf;
}

/* Parse spec, format, compare with want. */
static void canon(const char *spec, const char *want)
{
    marin_resources_t *r = parse_ok(spec);
    ck_assert_msg(strcmp(fmt(r), want) == 0, "\"%s\" formats as \"%s\", "
                  "wanted \"%s\"", spec, fmt(r), want);
    marin_resources_destroy(r);
}

/* Parse spec and check the fixed-point amount of name. */
static void fixed(const char *spec, const char *name, int64_t want)
{
    marin_resources_t *r = parse_ok(spec);
    int64_t got = marin__res_amount(r, name);
    ck_assert_msg(got == want, "\"%s\": %s = %lld, wanted %lld", spec, name,
                  (long long)got, (long long)want);
    marin_resources_destroy(r);
}

START_TEST(test_resources_parse_basic)
{
    marin_resources_t *r = parse_ok("cpus=2,memory=4GiB,TPU=4");
    ck_assert_uint_eq(r->n, 3);
    ck_assert_double_eq(marin_resources_get(r, "cpus"), 2.0);
    ck_assert_double_eq(marin_resources_get(r, "memory"), 4294967296.0);
    ck_assert_double_eq(marin_resources_get(r, "TPU"), 4.0);
    ck_assert_double_eq(marin_resources_get(r, "gpus"), 0.0);
    ck_assert_int_eq(marin__res_amount(r, "cpus"), 200);
    ck_assert_int_eq(marin__res_amount(r, "memory"), 4294967296LL);
    ck_assert_int_eq(marin__res_amount(r, "TPU"), 400);
    ck_assert_str_eq(fmt(r), "cpus=2,memory=4GiB,TPU=4");
    ck_assert_str_eq(marin_last_error(), "");
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_resources_empty_spec)
{
    marin_resources_t *r = parse_ok("");
    ck_assert_uint_eq(r->n, 0);
    char buf[8] = "xxxxxxx";
    ck_assert_int_eq(marin_resources_format(r, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");
    marin_resources_destroy(r);
    r = parse_ok(" \t ");
    ck_assert_uint_eq(r->n, 0);
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_resources_whitespace)
{
    canon(" cpus = 2 , memory = 4 GiB ,\tgpus=1 ", "cpus=2,memory=4GiB,gpus=1");
    canon("memory=16GiB", "memory=16GiB");
}
END_TEST

START_TEST(test_resources_units)
{
    fixed("memory=1B", "memory", 1);
    fixed("memory=1KiB", "memory", 1024);
    fixed("memory=1MiB", "memory", 1048576);
    fixed("memory=1GiB", "memory", 1073741824LL);
    fixed("memory=1TiB", "memory", 1099511627776LL);
    fixed("memory=1KB", "memory", 1000);
    fixed("memory=1MB", "memory", 1000000);
    fixed("memory=1GB", "memory", 1000000000LL);
    fixed("memory=1TB", "memory", 1000000000000LL);
    fixed("memory=1.5GiB", "memory", 1610612736LL);
    fixed("memory=123", "memory", 123);
    fixed("memory=0.5KiB", "memory", 512);
    fixed("memory=2e3", "memory", 2000);
    fixed("memory=1.5e1MiB", "memory", 15 * 1048576LL);
    /* units are accepted on any resource */
    fixed("cpus=1KB", "cpus", 100000);
    fixed("TPU=2B", "TPU", 200);
    fixed("gpus=0.001KB", "gpus", 100);
    /* exact at the int64 limit, no double rounding */
    fixed("memory=9223372036854775807", "memory", INT64_MAX);
    fixed("memory=8388607TiB", "memory", 8388607LL * 1099511627776LL);
    fixed("cpus=92233720368547758.07", "cpus", INT64_MAX);
}
END_TEST

START_TEST(test_resources_fractional)
{
    fixed("cpus=0.01", "cpus", 1);
    fixed("cpus=0.5", "cpus", 50);
    fixed("cpus=0.29", "cpus", 29);
    fixed("cpus=1.", "cpus", 100);
    fixed("cpus=.25", "cpus", 25);
    fixed("cpus=0.005", "cpus", 1);     /* rounds half up */
    fixed("cpus=0.0149", "cpus", 1);
    fixed("cpus=0.015", "cpus", 2);
    fixed("cpus=1e-2", "cpus", 1);
    fixed("memory=0.5B", "memory", 1);  /* nearest byte */
    fixed("memory=1.4B", "memory", 1);
    fixed("memory=0.0000000001TiB", "memory", 110);
    fixed("cpus=0.0000000001e8", "cpus", 1);
    marin_resources_t *r = parse_ok("cpus=0.01");
    ck_assert_double_eq_tol(marin_resources_get(r, "cpus"), 0.01, 1e-12);
    ck_assert_str_eq(fmt(r), "cpus=0.01");
    marin_resources_destroy(r);
    parse_bad("cpus=0.004", "rounds to 0", "smallest", "0.01");
    parse_bad("TPU=1e-9", "token 1", "'TPU=1e-9'", "0.01");
    parse_bad("memory=0.4B", "rounds to 0", "1B", NULL);
    parse_bad("cpus=1e-999999999999999999999", "rounds to 0", NULL, NULL);
}
END_TEST

START_TEST(test_resources_zero)
{
    marin_resources_t *r = parse_ok("cpus=0");
    ck_assert_uint_eq(r->n, 0);
    ck_assert_str_eq(fmt(r), "");
    marin_resources_destroy(r);
    canon("cpus=0,memory=0GiB,gpus=0.00,TPU=0e5,gpus2=1", "gpus2=1");
    canon("cpus=000.000", "");
}
END_TEST

START_TEST(test_resources_canonical_order)
{
    canon("zeta=1,gpus=1,alpha=2,memory=1KiB,cpus=1",
          "cpus=1,memory=1KiB,gpus=1,alpha=2,zeta=1");
    canon("b=1,B=1,_x=1,a.b=1,a-b=1", "B=1,_x=1,a-b=1,a.b=1,b=1");
    canon("TPU=4,memory=2GiB", "memory=2GiB,TPU=4");
    /* built-in names are case sensitive: CPUS is a custom resource */
    canon("CPUS=1,cpus=2", "cpus=2,CPUS=1");
}
END_TEST

START_TEST(test_resources_format_amounts)
{
    canon("memory=1536MiB", "memory=1536MiB");
    canon("memory=1.5GiB", "memory=1536MiB");
    canon("memory=100", "memory=100B");
    canon("memory=1024", "memory=1KiB");
    canon("memory=1048576KiB", "memory=1GiB");
    canon("memory=2048GiB", "memory=2TiB");
    canon("memory=1GB", "memory=1000000000B");
    canon("memory=1MB", "memory=1000000B");
    canon("memory=4096KB", "memory=4000KiB");
    canon("memory=9223372036854775807", "memory=9223372036854775807B");
    canon("cpus=0.5", "cpus=0.5");
    canon("cpus=0.50", "cpus=0.5");
    canon("cpus=2.25", "cpus=2.25");
    canon("cpus=2.05", "cpus=2.05");
    canon("cpus=10", "cpus=10");
    canon("cpus=1e2", "cpus=100");
    canon("gpus=92233720368547758.07", "gpus=92233720368547758.07");

    char b[48];
    ck_assert_int_eq(marin__res_format_amount("cpus", 150, b, sizeof b), 3);
    ck_assert_str_eq(b, "1.5");
    ck_assert_int_eq(marin__res_format_amount("memory", 3 << 20, b, sizeof b),
                     4);
    ck_assert_str_eq(b, "3MiB");
    ck_assert_int_eq(marin__res_format_amount("x", 7, NULL, 0), 4);
    ck_assert_int_eq(marin__res_format_amount("memory", 0, b, sizeof b), 2);
    ck_assert_str_eq(b, "0B");
}
END_TEST

START_TEST(test_resources_roundtrip)
{
    static const char *specs[] = {
        "cpus=2,memory=4GiB,TPU=4",
        "cpus=0.01",
        "memory=1",
        "memory=1023,gpus=8,a=0.1,b=0.12,c=99999",
        "memory=123456789012",
        "memory=1.1GiB",
        "memory=9223372036854775807,cpus=92233720368547758.07",
        "x_1=3.5, y-2 = 1KB , z.3=7",
        "",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        marin_resources_t *a = parse_ok(specs[i]);
        char text[4096];
        int n = marin_resources_format(a, text, sizeof text);
        ck_assert_int_ge(n, 0);
        marin_resources_t *b = parse_ok(text);
        ck_assert_msg(marin__res_equal(a, b), "\"%s\" -> \"%s\" changed",
                      specs[i], text);
        ck_assert_str_eq(fmt(b), text);
        marin_resources_destroy(a);
        marin_resources_destroy(b);
    }
}
END_TEST

START_TEST(test_resources_format_truncation)
{
    marin_resources_t *r = parse_ok("cpus=2,memory=4GiB");
    const char *full = "cpus=2,memory=4GiB";
    int need = (int)strlen(full);
    ck_assert_int_eq(marin_resources_format(r, NULL, 0), need);
    char buf[32];
    for (size_t cap = 1; cap <= (size_t)need + 1; cap++) {
        memset(buf, 'Z', sizeof buf);
        ck_assert_int_eq(marin_resources_format(r, buf, cap), need);
        ck_assert_uint_eq(strlen(buf), cap - 1);
        ck_assert_int_eq(strncmp(buf, full, cap - 1), 0);
        ck_assert_int_eq(buf[cap], 'Z'); /* nothing past cap */
    }
    buf[0] = 'Z';
    ck_assert_int_eq(marin_resources_format(r, buf, 0), need);
    ck_assert_int_eq(buf[0], 'Z');
    ck_assert_marin(marin_resources_format(r, NULL, 4), MARIN_EINVAL);
    ck_assert_lasterr_has("buf is NULL");
    ck_assert_marin(marin_resources_format(NULL, buf, sizeof buf),
                    MARIN_EINVAL);
    ck_assert_lasterr_has("NULL");
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_resources_err_negative)
{
    parse_bad("cpus=-1", "negative", "token 1 'cpus=-1'", NULL);
    parse_bad("cpus=1,gpus=-0.5", "negative amount '-0.5'", "token 2", NULL);
    parse_bad("cpus=+1", "sign", "token 1", NULL);
}
END_TEST

START_TEST(test_resources_err_nan_inf)
{
    parse_bad("cpus=nan", "not a number", "NaN", "token 1");
    parse_bad("cpus=NaN(12)", "not a number", NULL, NULL);
    parse_bad("cpus=inf", "infinite", "'inf'", NULL);
    parse_bad("memory=Infinity", "infinite", "token 1", NULL);
    parse_bad("cpus=abc", "not a number", "'abc'", NULL);
    parse_bad("cpus=.", "not a number", NULL, NULL);
    parse_bad("cpus=0x10", "trailing characters 'x10'", NULL, NULL);
}
END_TEST

START_TEST(test_resources_err_empty)
{
    parse_bad("cpus=", "empty amount", "'cpus'", "token 1");
    parse_bad("cpus= ,gpus=1", "empty amount", "token 1", NULL);
    parse_bad("=2", "empty resource name", "token 1 '=2'", NULL);
    parse_bad("cpus=1,,gpus=1", "empty token", "token 2", NULL);
    parse_bad("cpus=1,", "empty token", "token 2", NULL);
    parse_bad(",cpus=1", "empty token", "token 1", NULL);
    parse_bad(" , ", "empty token", "token 1", NULL);
    parse_bad("cpus", "missing '='", "token 1 'cpus'", NULL);
    parse_bad("cpus=1,gpus", "missing '='", "token 2 'gpus'", NULL);
}
END_TEST

START_TEST(test_resources_err_trailing_junk)
{
    parse_bad("cpus=2x", "unknown unit 'x'", "token 1", NULL);
    parse_bad("cpus=1.2.3", "trailing characters '.3'", "token 1", NULL);
    parse_bad("cpus=2 3", "trailing characters '3'", NULL, NULL);
    parse_bad("memory=4GiB!", "trailing characters 'GiB!'", NULL, NULL);
    parse_bad("memory=1e", "unknown unit 'e'", NULL, NULL);
    parse_bad("cpus=1=2", "trailing characters '=2'", NULL, NULL);
}
END_TEST

START_TEST(test_resources_err_overflow)
{
    parse_bad("cpus=1e400", "too large", "'1e400'", "token 1");
    parse_bad("memory=1e400", "too large", "9223372036854775807B", NULL);
    parse_bad("memory=9223372036854775808", "too large", NULL, NULL);
    parse_bad("memory=8388608TiB", "too large", NULL, NULL);
    parse_bad("memory=9223372036854775807.5", "too large", NULL, NULL);
    parse_bad("cpus=92233720368547758.08", "too large",
              "92233720368547758.07", NULL);
    parse_bad("gpus=100000000000000000", "too large", NULL, NULL);
    parse_bad("cpus=99999999999999999999999999999999", "too large", NULL,
              NULL);
    parse_bad("cpus=1TB,gpus=1e18", "too large", "token 2", NULL);
    parse_bad("x=1e999999999999999999999999", "too large", NULL, NULL);
}
END_TEST

START_TEST(test_resources_err_unit)
{
    parse_bad("cpus=2,memory=4XiB", "unknown unit 'XiB'",
              "token 2 'memory=4XiB'", "KiB");
    parse_bad("memory=4gib", "unknown unit 'gib'", "case matters", NULL);
    parse_bad("memory=4Gi", "unknown unit 'Gi'", NULL, NULL);
    parse_bad("memory=4K", "unknown unit 'K'", NULL, NULL);
    parse_bad("memory=4 G B", "trailing characters", NULL, NULL);
}
END_TEST

START_TEST(test_resources_err_duplicate)
{
    parse_bad("cpus=1,cpus=2", "duplicate resource 'cpus'",
              "token 2 'cpus=2'", "first given in token 1");
    parse_bad("cpus=0,gpus=1,cpus=0", "duplicate", "token 3", NULL);
    parse_bad("TPU=1, TPU =2", "duplicate resource 'TPU'", NULL, NULL);
}
END_TEST

START_TEST(test_resources_err_name)
{
    parse_bad("1cpu=2", "invalid resource name '1cpu'", "start with",
              "token 1");
    parse_bad("cpus=1,tp u=2", "invalid resource name 'tp u'", "token 2",
              NULL);
    parse_bad("a/b=1", "'/'", "[A-Za-z_]", NULL);
    parse_bad("a\x01=1", "0x01", NULL, NULL);
    char spec[128];
    char name[80];
    memset(name, 'n', 64);
    name[64] = '\0';
    snprintf(spec, sizeof spec, "%s=1", name);
    parse_bad(spec, "64 bytes", "63", NULL);
    name[63] = '\0';
    snprintf(spec, sizeof spec, "%s=1", name);
    marin_resources_t *r = parse_ok(spec);
    ck_assert_int_eq(marin__res_amount(r, name), 100);
    marin_resources_destroy(r);
    ck_assert(marin__res_name_ok(name));
    ck_assert(marin__res_name_ok("TPU"));
    ck_assert(marin__res_name_ok("_a.b-c9"));
    ck_assert(!marin__res_name_ok(""));
    ck_assert(!marin__res_name_ok("9a"));
    ck_assert(!marin__res_name_ok(".a"));
    ck_assert(!marin__res_name_ok("a b"));
    ck_assert(!marin__res_name_ok(NULL));
}
END_TEST

START_TEST(test_resources_err_too_many)
{
    char spec[1024];
    size_t o = 0;
    for (int i = 0; i < MARIN__RES_MAX; i++)
        o += (size_t)snprintf(spec + o, sizeof spec - o, "%sr%d=1",
                              i ? "," : "", i);
    marin_resources_t *r = parse_ok(spec);
    ck_assert_uint_eq(r->n, MARIN__RES_MAX);
    ck_assert_int_eq(marin_resources_set(r, "extra", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("at most 32");
    ck_assert_marin(marin_resources_set(r, "r5", 2), MARIN_OK);
    marin_resources_destroy(r);
    snprintf(spec + o, sizeof spec - o, ",r%d=1", MARIN__RES_MAX);
    parse_bad(spec, "too many", "token 33", "at most 32");
}
END_TEST

START_TEST(test_resources_long_input_message)
{
    /* long specs and tokens are quoted shortened, not overflowed */
    size_t n = 100000;
    char *spec = malloc(n + 16);
    ck_assert_ptr_nonnull(spec);
    memcpy(spec, "cpus=", 5);
    memset(spec + 5, '1', n);
    strcpy(spec + 5 + n, "Q");
    parse_bad(spec, "...", "token 1", NULL);
    ck_assert_uint_lt(strlen(marin_last_error()), 1024);
    /* many leading zeros are fine */
    memset(spec + 5, '0', n);
    strcpy(spec + 5 + n, "1.5");
    fixed(spec, "cpus", 150);
    free(spec);
}
END_TEST

START_TEST(test_resources_null_args)
{
    marin_resources_t *r = (marin_resources_t *)(uintptr_t)1;
    ck_assert_marin(marin_resources_parse(NULL, &r), MARIN_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_lasterr_has("spec is NULL");
    ck_assert_marin(marin_resources_parse("cpus=1", NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("out is NULL");
    ck_assert_marin(marin_resources_create(NULL), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_resources_create");
    ck_assert_marin(marin_resources_set(NULL, "cpus", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("marin_resources_set");
    r = parse_ok("cpus=1");
    ck_assert_marin(marin_resources_set(r, NULL, 1), MARIN_EINVAL);
    ck_assert_lasterr_has("name is NULL");
    ck_assert_double_eq(marin_resources_get(NULL, "cpus"), 0.0);
    ck_assert_double_eq(marin_resources_get(r, NULL), 0.0);
    ck_assert_int_eq(marin__res_amount(NULL, "cpus"), 0);
    ck_assert_int_eq(marin_resources_format(NULL, NULL, 0), MARIN_EINVAL);
    ck_assert_int_eq(marin__res_set_fixed(NULL, "cpus", 1), MARIN_EINVAL);
    ck_assert_int_eq(marin__res_set_fixed(r, NULL, 1), MARIN_EINVAL);
    marin_resources_t *c = (marin_resources_t *)(uintptr_t)1;
    ck_assert_int_eq(marin__res_copy(NULL, &c), MARIN_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(marin__res_copy(r, NULL), MARIN_EINVAL);
    ck_assert(!marin__res_equal(r, NULL));
    ck_assert(marin__res_equal(NULL, NULL));
    marin_resources_destroy(r);
    marin_resources_destroy(NULL);
}
END_TEST

START_TEST(test_resources_create_set_get)
{
    marin_resources_t *r = NULL;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n, 0);
    ck_assert_marin(marin_resources_set(r, "TPU", 4), MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "memory", 1536.0 * 1048576),
                    MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "cpus", 0.5), MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "gpus", 0.01), MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "accel", 0.29), MARIN_OK);
    ck_assert_str_eq(fmt(r), "cpus=0.5,memory=1536MiB,gpus=0.01,TPU=4,"
                             "accel=0.29");
    ck_assert_double_eq(marin_resources_get(r, "cpus"), 0.5);
    ck_assert_double_eq(marin_resources_get(r, "memory"), 1536.0 * 1048576);
    ck_assert_double_eq_tol(marin_resources_get(r, "accel"), 0.29, 1e-12);
    ck_assert_int_eq(marin__res_amount(r, "accel"), 29);
    ck_assert_double_eq(marin_resources_get(r, "absent"), 0.0);
    /* overwrite, then 0 removes */
    ck_assert_marin(marin_resources_set(r, "cpus", 3), MARIN_OK);
    ck_assert_double_eq(marin_resources_get(r, "cpus"), 3.0);
    ck_assert_marin(marin_resources_set(r, "TPU", 0), MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "never", 0), MARIN_OK);
    ck_assert_str_eq(fmt(r), "cpus=3,memory=1536MiB,gpus=0.01,accel=0.29");
    ck_assert_uint_eq(r->n, 4);
    /* bad amounts and names */
    ck_assert_marin(marin_resources_set(r, "cpus", NAN), MARIN_EINVAL);
    ck_assert_lasterr_has("NaN");
    ck_assert_marin(marin_resources_set(r, "cpus", INFINITY), MARIN_EINVAL);
    ck_assert_lasterr_has("infinite");
    ck_assert_marin(marin_resources_set(r, "cpus", -1), MARIN_EINVAL);
    ck_assert_lasterr_has("negative");
    ck_assert_marin(marin_resources_set(r, "cpus", 0.001), MARIN_EINVAL);
    ck_assert_lasterr_has("0.01");
    ck_assert_marin(marin_resources_set(r, "memory", 0.2), MARIN_EINVAL);
    ck_assert_lasterr_has("1 byte");
    ck_assert_marin(marin_resources_set(r, "cpus", 1e300), MARIN_EINVAL);
    ck_assert_lasterr_has("too large");
    ck_assert_marin(marin_resources_set(r, "9x", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("'9x'");
    ck_assert_marin(marin_resources_set(r, "", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("empty");
    /* failures leave the set as it was */
    ck_assert_str_eq(fmt(r), "cpus=3,memory=1536MiB,gpus=0.01,accel=0.29");
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_resources_internal_fixed)
{
    ck_assert_int_eq(marin__res_to_fixed("cpus", 0.5), 50);
    ck_assert_int_eq(marin__res_to_fixed("cpus", 0.29), 29);
    ck_assert_int_eq(marin__res_to_fixed("cpus", 0.005), 1);
    ck_assert_int_eq(marin__res_to_fixed("memory", 1.5), 2);
    ck_assert_int_eq(marin__res_to_fixed("memory", 4294967296.0),
                     4294967296LL);
    ck_assert_int_eq(marin__res_to_fixed("cpus", 1e300), INT64_MAX);
    ck_assert_int_eq(marin__res_to_fixed("cpus", NAN), 0);
    ck_assert_double_eq(marin__res_from_fixed("cpus", 150), 1.5);
    ck_assert_double_eq(marin__res_from_fixed("memory", 150), 150.0);

    marin_resources_t *r = NULL, *c = NULL;
    ck_assert_marin(marin_resources_create(&r), MARIN_OK);
    ck_assert_int_eq(marin__res_set_fixed(r, "gpus", 200), MARIN_OK);
    ck_assert_int_eq(marin__res_set_fixed(r, "cpus", 1), MARIN_OK);
    ck_assert_int_eq(marin__res_set_fixed(r, "cpus", -1), MARIN_EINVAL);
    ck_assert_lasterr_has("negative");
    ck_assert_int_eq(marin__res_set_fixed(r, "bad name", 1), MARIN_EINVAL);
    ck_assert_lasterr_has("'bad name'");
    ck_assert_str_eq(fmt(r), "cpus=0.01,gpus=2");
    ck_assert_int_eq(marin__res_copy(r, &c), MARIN_OK);
    ck_assert(marin__res_equal(r, c));
    ck_assert_int_eq(marin__res_set_fixed(c, "gpus", 201), MARIN_OK);
    ck_assert(!marin__res_equal(r, c));
    ck_assert_int_eq(marin__res_set_fixed(c, "gpus", 0), MARIN_OK);
    ck_assert(!marin__res_equal(r, c));
    ck_assert_str_eq(fmt(c), "cpus=0.01");
    marin_resources_destroy(r);
    marin_resources_destroy(c);
}
END_TEST

START_TEST(test_resources_error_cleared_on_success)
{
    parse_bad("cpus=-1", "negative", NULL, NULL);
    marin_resources_t *r = parse_ok("cpus=1");
    ck_assert_str_eq(marin_last_error(), "");
    marin_resources_destroy(r);
}
END_TEST

START_TEST(test_resources_oom)
{
    int rc = MARIN_ENOMEM;
    long n;
    marin_resources_t *r = NULL;
    for (n = 0; n < 100 && rc != MARIN_OK; n++) {
        marin__test_fail_alloc_after(n);
        r = (marin_resources_t *)(uintptr_t)1;
        rc = marin_resources_parse("cpus=2,memory=4GiB,TPU=4", &r);
        marin__test_fail_alloc_after(-1);
        if (rc != MARIN_OK) {
            ck_assert_int_eq(rc, MARIN_ENOMEM);
            ck_assert_ptr_null(r);
            ck_assert_lasterr_has("memory");
        }
    }
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert_int_gt(n, 1); /* at least one failure was injected */
    ck_assert_str_eq(fmt(r), "cpus=2,memory=4GiB,TPU=4");
    marin_resources_destroy(r);

    rc = MARIN_ENOMEM;
    for (n = 0; n < 100 && rc != MARIN_OK; n++) {
        marin__test_fail_alloc_after(n);
        r = (marin_resources_t *)(uintptr_t)1;
        rc = marin_resources_create(&r);
        marin__test_fail_alloc_after(-1);
        if (rc != MARIN_OK) {
            ck_assert_int_eq(rc, MARIN_ENOMEM);
            ck_assert_ptr_null(r);
        }
    }
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert_marin(marin_resources_set(r, "cpus", 1), MARIN_OK);

    marin_resources_t *c = NULL;
    rc = MARIN_ENOMEM;
    for (n = 0; n < 100 && rc != MARIN_OK; n++) {
        marin__test_fail_alloc_after(n);
        rc = marin__api_exit(marin__res_copy(r, &c));
        marin__test_fail_alloc_after(-1);
        if (rc != MARIN_OK) {
            ck_assert_int_eq(rc, MARIN_ENOMEM);
            ck_assert_ptr_null(c);
        }
    }
    ck_assert_int_eq(rc, MARIN_OK);
    ck_assert(marin__res_equal(r, c));
    marin_resources_destroy(c);
    marin_resources_destroy(r);
}
END_TEST

/* ---- fuzz ---------------------------------------------------------------- */

static const char *const seeds[] = {
    "cpus=2,memory=4GiB,TPU=4", "cpus=0.01", "memory=1.5e3MiB, gpus = 8",
    "a=1,b=2,c=3", "", "cpus=1e400", "memory=9223372036854775807",
    "x.y-z_=0.005KB",
};
static const char alphabet[] = "cpusmemorygpTU=,.-+eE0123456789 KMGTiB\t_xn";

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* Fill buf (cap bytes) with a random or mutated input. */
static void random_spec(char *buf, size_t cap)
{
    fuzz_input(buf, cap, seeds, sizeof seeds / sizeof seeds[0], alphabet,
               &rng_state);
}

START_TEST(test_resources_fuzz)
{
    char spec[256], text[4096];
    int ok = 0, bad = 0;
    for (int i = 0; i < 20000; i++) {
        random_spec(spec, sizeof spec);
        marin_resources_t *r = NULL;
        int rc = marin_resources_parse(spec, &r);
        ck_assert_msg(rc == MARIN_OK || rc == MARIN_EINVAL,
                      "\"%s\" returned %d", spec, rc);
        if (rc != MARIN_OK) {
            ck_assert_ptr_null(r);
            ck_assert_msg(marin_last_error()[0] != '\0', "no message");
            bad++;
            continue;
        }
        ok++;
        /* whatever parses round-trips exactly */
        int n = marin_resources_format(r, text, sizeof text);
        ck_assert_int_ge(n, 0);
        ck_assert_int_lt(n, (int)sizeof text);
        marin_resources_t *b = NULL;
        rc = marin_resources_parse(text, &b);
        ck_assert_msg(rc == MARIN_OK, "\"%s\" -> \"%s\" does not parse: %s",
                      spec, text, marin_last_error());
        ck_assert_msg(marin__res_equal(r, b), "\"%s\" -> \"%s\" changed",
                      spec, text);
        marin_resources_destroy(b);
        marin_resources_destroy(r);
    }
    ck_assert_int_gt(ok, 100);
    ck_assert_int_gt(bad, 100);
}
END_TEST

static Suite *resources_suite(void)
{
    Suite *s = suite_create("resources");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_resources_parse_basic);
    tcase_add_test(tc, test_resources_empty_spec);
    tcase_add_test(tc, test_resources_whitespace);
    tcase_add_test(tc, test_resources_units);
    tcase_add_test(tc, test_resources_fractional);
    tcase_add_test(tc, test_resources_zero);
    tcase_add_test(tc, test_resources_canonical_order);
    tcase_add_test(tc, test_resources_format_amounts);
    tcase_add_test(tc, test_resources_roundtrip);
    tcase_add_test(tc, test_resources_format_truncation);
    tcase_add_test(tc, test_resources_err_negative);
    tcase_add_test(tc, test_resources_err_nan_inf);
    tcase_add_test(tc, test_resources_err_empty);
    tcase_add_test(tc, test_resources_err_trailing_junk);
    tcase_add_test(tc, test_resources_err_overflow);
    tcase_add_test(tc, test_resources_err_unit);
    tcase_add_test(tc, test_resources_err_duplicate);
    tcase_add_test(tc, test_resources_err_name);
    tcase_add_test(tc, test_resources_err_too_many);
    tcase_add_test(tc, test_resources_long_input_message);
    tcase_add_test(tc, test_resources_null_args);
    tcase_add_test(tc, test_resources_create_set_get);
    tcase_add_test(tc, test_resources_internal_fixed);
    tcase_add_test(tc, test_resources_error_cleared_on_success);
    tcase_add_test(tc, test_resources_oom);
    tcase_add_test(tc, test_resources_fuzz);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return marin_test_run(resources_suite()); }
