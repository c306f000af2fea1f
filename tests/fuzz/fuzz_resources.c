/* libFuzzer target: resource specs.
 *
 * Each input is NUL-terminated and handed to marin_resources_parse(). On
 * success the set must hold its invariants (canonical order, valid names,
 * positive amounts, at most MARIN__RES_MAX entries); every amount written
 * as a plain decimal (digits, '.', an exponent, a unit) must equal an
 * independent exact computation; marin_resources_format() must behave like
 * snprintf at every buffer size; and formatting, re-parsing and comparing
 * must give back the same set (a round-trip bug aborts). Then names cut from
 * the input go through marin_resources_get/set with a range of amounts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marin/error.h"
#include "marin/resources.h"
#include "resources_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 8192

static const char *g_input; /* for failure reports */

static void show(const char *label, const char *s)
{
    fprintf(stderr, "  %s: \"", label);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

__attribute__((noreturn)) static void fail(const char *what, const char *a,
                                           const char *b)
{
    fprintf(stderr, "fuzz_resources: %s\n", what);
    show("input", g_input);
    if (a)
        show("text", a);
    if (b)
        show("other", b);
    fprintf(stderr, "  last error: %s\n", marin_last_error());
    abort();
}

/* ---- set invariants ----------------------------------------------------- */

static int rank(const char *name)
{
    if (strcmp(name, "cpus") == 0)
        return 0;
    if (strcmp(name, "memory") == 0)
        return 1;
    if (strcmp(name, "gpus") == 0)
        return 2;
    return 3;
}

static int before(const char *a, const char *b)
{
    int ra = rank(a), rb = rank(b);
    if (ra != rb)
        return ra < rb;
    return ra == 3 && strcmp(a, b) < 0;
}

static void check_set(const marin_resources_t *r)
{
    if (r->n > MARIN__RES_MAX)
        fail("more than MARIN__RES_MAX entries", NULL, NULL);
    for (size_t i = 0; i < r->n; i++) {
        const struct marin__res_entry *e = &r->e[i];
        if (memchr(e->name, '\0', sizeof e->name) == NULL)
            fail("entry name not NUL-terminated", NULL, NULL);
        if (!marin__res_name_ok(e->name))
            fail("entry with an invalid name", e->name, NULL);
        if (e->amount <= 0)
            fail("entry with a zero or negative amount", e->name, NULL);
        if (i > 0 && !before(r->e[i - 1].name, e->name))
            fail("entries out of canonical order", r->e[i - 1].name,
                  e->name);
        if (marin__res_amount(r, e->name) != e->amount)
            fail("marin__res_amount disagrees with the entry", e->name,
                  NULL);
        double g = marin_resources_get(r, e->name);
        if (g != marin__res_from_fixed(e->name, e->amount))
            fail("marin_resources_get disagrees with the entry", e->name,
                  NULL);
    }
}

/* ---- an independent exact reading of plain decimal amounts -------------- */

typedef unsigned __int128 u128;

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static const struct {
    const char *name;
    uint64_t mult;
} units[] = {
    {"B", 1},
    {"KiB", 1ULL << 10},   {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},   {"TiB", 1ULL << 40},
    {"KB", 1000ULL},       {"MB", 1000000ULL},
    {"GB", 1000000000ULL}, {"TB", 1000000000000ULL},
};

enum { REF_SKIP, REF_VALUE, REF_MUST_FAIL };

/* Amount s[0..n) (already trimmed) of @p name in fixed point, computed
 * exactly with 128-bit integers, for the subset this handles: up to 20
 * significant digits, exponents up to 60 in magnitude. REF_SKIP outside
 * it; REF_MUST_FAIL when the parser should have refused the amount (too
 * large, or a nonzero amount that rounds to 0). */
static int ref_amount(const char *name, const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    u128 num = 0;
    int sig = 0, nf = 0, digits = 0;
    for (; i < n && is_digit(s[i]); i++, digits++)
        if (num || s[i] != '0') {
            if (++sig > 20)
                return REF_SKIP;
            num = num * 10 + (u128)(s[i] - '0');
        }
    if (i < n && s[i] == '.')
        for (i++; i < n && is_digit(s[i]); i++, digits++, nf++)
            if (num || s[i] != '0') {
                if (++sig > 20)
                    return REF_SKIP;
                num = num * 10 + (u128)(s[i] - '0');
            }
    if (digits == 0)
        return REF_SKIP;
    int exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        int neg = 0;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            neg = s[j++] == '-';
        if (j >= n || !is_digit(s[j]))
            return REF_SKIP;
        for (; j < n && is_digit(s[j]); j++) {
            exp = exp * 10 + (s[j] - '0');
            if (exp > 60)
                return REF_SKIP;
        }
        if (neg)
            exp = -exp;
        i = j;
    }
    while (i < n && is_space(s[i]))
        i++;
    uint64_t mult = 1;
    if (i < n) {
        size_t k, un = n - i;
        for (k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].name) == un &&
                memcmp(units[k].name, s + i, un) == 0)
                break;
        if (k == sizeof units / sizeof units[0])
            return REF_SKIP;
        mult = units[k].mult;
    }
    if (num == 0) {
        *out = 0;
        return REF_VALUE;
    }
    if (strcmp(name, "memory") != 0)
        mult *= MARIN__RES_SCALE;
    /* num < 10^20 and mult < 2^47: the product is below 2^114. */
    u128 v = num * mult;
    int k = exp - nf;
    const u128 lim = (u128)INT64_MAX;
    if (k >= 0) {
        for (; k > 0; k--) {
            if (v > lim)
                return REF_MUST_FAIL;
            v *= 10;
        }
    } else if (k < -38) {
        v = 0; /* v < 2^114 < 10^38 / 2: rounds to 0 */
    } else {
        u128 d = 1;
        for (; k < 0; k++)
            d *= 10;
        u128 q = v / d, rem = v % d;
        if (rem >= d - rem)
            q++; /* half up */
        v = q;
    }
    if (v > lim || v == 0)
        return REF_MUST_FAIL;
    *out = (int64_t)v;
    return REF_VALUE;
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_space(**s))
        (*s)++;
    while (*e > *s && is_space((*e)[-1]))
        (*e)--;
}

/* Walk the tokens of a spec that parsed into r and check each plain
 * amount against ref_amount(). */
static void check_amounts(const char *spec, const marin_resources_t *r)
{
    const char *p = spec;
    while (is_space(*p))
        p++;
    if (*p == '\0') {
        if (r->n != 0)
            fail("a blank spec gave a non-empty set", NULL, NULL);
        return;
    }
    p = spec;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq)
            fail("accepted a token without '='", p, NULL);
        const char *ns = p, *ne = eq, *as = eq + 1, *ae = end;
        trim(&ns, &ne);
        trim(&as, &ae);
        size_t nn = (size_t)(ne - ns);
        if (nn == 0 || nn > MARIN__RES_NAME_MAX)
            fail("accepted an empty or over-long name", p, NULL);
        char name[MARIN__RES_NAME_MAX + 1];
        memcpy(name, ns, nn);
        name[nn] = '\0';
        int64_t want = 0;
        int ref = ref_amount(name, as, (size_t)(ae - as), &want);
        if (ref == REF_MUST_FAIL)
            fail("accepted an amount that is too large or rounds to 0",
                  name, NULL);
        if (ref == REF_VALUE && marin__res_amount(r, name) != want) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "amount of '%s' is %lld, exact value is %lld", name,
                     (long long)marin__res_amount(r, name), (long long)want);
            fail(msg, NULL, NULL);
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
}

/* ---- format and round trip ---------------------------------------------- */

/* Format r at several buffer sizes (each buffer exactly that big, so ASan
 * sees any overrun), check snprintf semantics, then re-parse the full text
 * and require the same set. Returns the formatted text (malloc'ed). */
static char *round_trip(const marin_resources_t *r)
{
    int len = marin_resources_format(r, NULL, 0);
    if (len < 0)
        fail("format(NULL, 0) failed", NULL, NULL);
    size_t ul = (size_t)len;
    char *full = malloc(ul + 1);
    if (!full)
        abort();
    if (marin_resources_format(r, full, ul + 1) != len ||
        strlen(full) != ul)
        fail("format with room for everything: wrong length", full, NULL);

    size_t caps[] = {1, 2, 3, ul / 2, ul, ul + 1};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        size_t cap = caps[c];
        if (cap == 0)
            continue;
        char *buf = malloc(cap);
        if (!buf)
            abort();
        memset(buf, 'X', cap);
        if (marin_resources_format(r, buf, cap) != len)
            fail("format into a small buffer: wrong return value", full,
                  NULL);
        size_t got = ul < cap - 1 ? ul : cap - 1;
        if (memchr(buf, '\0', cap) != buf + got ||
            memcmp(buf, full, got) != 0)
            fail("format into a small buffer: not a NUL-terminated prefix",
                  full, buf);
        free(buf);
    }

    marin_resources_t *back = NULL;
    int rc = marin_resources_parse(full, &back);
    if (rc != MARIN_OK)
        fail("formatted text does not parse", full, NULL);
    if (!marin__res_equal(r, back))
        fail("round trip changed the set", full, NULL);
    char *again = malloc(ul + 1);
    if (!again)
        abort();
    if (marin_resources_format(back, again, ul + 1) != len ||
        strcmp(again, full) != 0)
        fail("formatting the re-parsed set gave other text", full, again);
    free(again);
    marin_resources_destroy(back);
    return full;
}

/* ---- get / set with names from the input -------------------------------- */

static const double amounts[] = {
    0.0,  0.5,     1.0,    2.0,      0.004,     0.005,
    0.015, 3.999,  1e-9,   1e15,     9.2e16,    9.3e16,
    1e30, -1.0,    -0.0,   4294967296.0, 9.2233720368547758e18,
    0.1,  NAN,     INFINITY, -INFINITY, 1024.0, 1.5e-2, 64.0,
};

static void exercise_set(marin_resources_t *r, const char *text, size_t n)
{
    size_t i = 0;
    int ops = 0;
    while (i < n && ops < 12) {
        /* names: runs between ',', '=', blanks (a NUL ends the text) */
        while (i < n && strchr(",= \t", text[i]))
            i++;
        size_t s = i;
        while (i < n && !strchr(",= \t", text[i]))
            i++;
        if (i == s)
            break;
        size_t len = i - s > 100 ? 100 : i - s;
        char name[101];
        memcpy(name, text + s, len);
        name[len] = '\0';
        double amount = amounts[(len + (unsigned char)text[s]) %
                                (sizeof amounts / sizeof amounts[0])];
        ops++;

        (void)marin_resources_get(r, name);
        marin_resources_t before_set = *r;
        int rc = marin_resources_set(r, name, amount);
        if (rc != MARIN_OK && rc != MARIN_EINVAL)
            fail("marin_resources_set: unexpected error code", name, NULL);
        if (rc == MARIN_OK) {
            if (!marin__res_name_ok(name))
                fail("set accepted an invalid name", name, NULL);
            if (!(amount >= 0) || isinf(amount))
                fail("set accepted a NaN, infinite or negative amount",
                      name, NULL);
            int64_t want = marin__res_to_fixed(name, amount);
            if (marin__res_amount(r, name) != want)
                fail("set stored another amount than asked", name, NULL);
            if (amount > 0 && want == 0)
                fail("set stored 0 for a positive amount", name, NULL);
        } else if (memcmp(&before_set, r, sizeof before_set) != 0) {
            fail("a failed set changed the set", name, NULL);
        }
        check_set(r);
        if (marin_resources_get(r, name) !=
            marin__res_from_fixed(name, marin__res_amount(r, name)))
            fail("get after set disagrees", name, NULL);
    }
    free(round_trip(r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *spec = malloc(size + 1);
    if (!spec)
        abort();
    memcpy(spec, data, size);
    spec[size] = '\0';
    g_input = spec;

    marin_resources_t *r = (marin_resources_t *)spec; /* poison: must reset */
    int rc = marin_resources_parse(spec, &r);
    if (rc != MARIN_OK && rc != MARIN_EINVAL)
        fail("marin_resources_parse: unexpected error code", NULL, NULL);
    if (rc != MARIN_OK) {
        if (r != NULL)
            fail("parse failed but *out is not NULL", NULL, NULL);
        if (marin_last_error()[0] == '\0')
            fail("parse failed without a message", NULL, NULL);
        if (marin_resources_create(&r) != MARIN_OK)
            abort();
    } else {
        if (r == NULL)
            fail("parse succeeded with *out NULL", NULL, NULL);
        check_set(r);
        check_amounts(spec, r);
        free(round_trip(r));
    }
    exercise_set(r, spec, strlen(spec));
    marin_resources_destroy(r);
    free(spec);
    return 0;
}
