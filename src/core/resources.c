/* Resource sets: one syntax everywhere, "name=amount,name=amount".
 *
 * See include/marin/resources.h (public contract) and resources_internal.h
 * (fixed-point view). Amounts are parsed exactly from their decimal text
 * (no detour through double), so "memory=9223372036854775807" and
 * "cpus=0.29" mean exactly what they say. */
#include "resources_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"

/* How much of the spec and of a token an error message quotes. */
#define SHOW_SPEC 160
#define SHOW_TOKEN 80
#define SHOW_NAME 80

/* Exponents are clamped to this magnitude; anything beyond it overflows
 * or rounds to zero anyway, and the clamp keeps index arithmetic safe. */
#define EXP_CLAMP 1000000000000000LL

#define XSTR(x) #x
#define STR(x) XSTR(x)

#define KIB 1024ULL
#define MIB (KIB * 1024ULL)
#define GIB (MIB * 1024ULL)
#define TIB (GIB * 1024ULL)

static const struct unit {
    const char *name;
    uint64_t mult;
} units[] = {
    {"B", 1ULL},
    {"KiB", KIB},          {"MiB", MIB},
    {"GiB", GIB},          {"TiB", TIB},
    {"KB", 1000ULL},       {"MB", 1000000ULL},
    {"GB", 1000000000ULL}, {"TB", 1000000000000ULL},
};

#define UNITS_HELP "KiB, MiB, GiB, TiB, KB, MB, GB, TB or B; case matters"

/* Largest binary units first, for formatting memory. */
static const struct unit mem_units[] = {
    {"TiB", TIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB},
};

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int lower(char c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

static int is_memory(const char *name)
{
    return name && strcmp(name, "memory") == 0;
}

static int64_t scale_of(const char *name)
{
    return is_memory(name) ? 1 : MARIN__RES_SCALE;
}

/* cpus, memory, gpus first (in that order), then custom names. */
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

static int canon_cmp(const char *a, const char *b)
{
    int ra = rank(a), rb = rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    return ra == 3 ? strcmp(a, b) : 0;
}

/* Printable form of one byte for messages: "'x'" or "byte 0x0a". */
static void show_char(char c, char *buf, size_t cap)
{
    unsigned char u = (unsigned char)c;
    if (u >= 0x21 && u < 0x7f)
        snprintf(buf, cap, "'%c'", c);
    else
        snprintf(buf, cap, "byte 0x%02x", u);
}

/* Validate name[0..n). On failure write why into why (when given). */
static int name_check(const char *name, size_t n, char *why, size_t cap)
{
    char ch[16];
    if (n == 0) {
        if (why)
            snprintf(why, cap, "it is empty");
        return 0;
    }
    if (n > MARIN__RES_NAME_MAX) {
        if (why)
            snprintf(why, cap, "it is %zu bytes long, the limit is %d", n,
                     MARIN__RES_NAME_MAX);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = is_alpha(c) || c == '_' ||
                 (i > 0 && (is_digit(c) || c == '.' || c == '-'));
        if (!ok) {
            if (why) {
                show_char(c, ch, sizeof ch);
                if (i == 0)
                    snprintf(why, cap, "it cannot start with %s (names "
                             "match [A-Za-z_][A-Za-z0-9_.-]*)", ch);
                else
                    snprintf(why, cap, "it contains %s at character %zu "
                             "(names match [A-Za-z_][A-Za-z0-9_.-]*)", ch,
                             i + 1);
            }
            return 0;
        }
    }
    return 1;
}

int marin__res_name_ok(const char *name)
{
    if (!name)
        return 0;
    size_t n = strnlen(name, MARIN__RES_NAME_MAX + 1);
    return name_check(name, n, NULL, 0);
}

static const struct marin__res_entry *find(const marin_resources_t *r,
                                           const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->e[i].name, name) == 0)
            return &r->e[i];
    return NULL;
}

int64_t marin__res_amount(const marin_resources_t *r, const char *name)
{
    if (!r || !name)
        return 0;
    const struct marin__res_entry *e = find(r, name);
    return e ? e->amount : 0;
}

int marin__res_set_fixed(marin_resources_t *r, const char *name,
                         int64_t amount)
{
    char why[160];
    if (!r || !name)
        return marin__err(MARIN_EINVAL, "resources: %s is NULL",
                          !r ? "the set" : "the name");
    size_t len = strlen(name);
    if (!name_check(name, len, why, sizeof why))
        return marin__err(MARIN_EINVAL,
                          "resources: invalid resource name '%.*s%s': %s",
                          SHOW_NAME, name,
                          strlen(name) > SHOW_NAME ? "..." : "", why);
    if (amount < 0)
        return marin__err(MARIN_EINVAL,
                          "resources: negative amount %lld for '%s'",
                          (long long)amount, name);
    size_t i = 0;
    int c = 1;
    for (; i < r->n; i++) {
        c = canon_cmp(r->e[i].name, name);
        if (c >= 0)
            break;
    }
    if (i < r->n && c == 0) {
        if (amount == 0) {
            memmove(&r->e[i], &r->e[i + 1], (r->n - i - 1) * sizeof r->e[0]);
            r->n--;
            memset(&r->e[r->n], 0, sizeof r->e[0]);
        } else {
            r->e[i].amount = amount;
        }
        return MARIN_OK;
    }
    if (amount == 0)
        return MARIN_OK;
    if (r->n >= MARIN__RES_MAX)
        return marin__err(MARIN_EINVAL,
                          "resources: cannot add '%s': a set holds at most "
                          "%d names",
                          name, MARIN__RES_MAX);
    memmove(&r->e[i + 1], &r->e[i], (r->n - i) * sizeof r->e[0]);
    memset(&r->e[i], 0, sizeof r->e[0]);
    memcpy(r->e[i].name, name, len + 1);
    r->e[i].amount = amount;
    r->n++;
    return MARIN_OK;
}

int64_t marin__res_to_fixed(const char *name, double amount)
{
    if (isnan(amount))
        return 0;
    double x = amount * (double)scale_of(name);
    if (x >= 9223372036854775808.0) /* 2^63 */
        return INT64_MAX;
    if (x <= -9223372036854775808.0)
        return INT64_MIN;
    int64_t i = (int64_t)x; /* truncates toward zero */
    double frac = x - (double)i;
    if (frac >= 0.5)
        i++;
    else if (frac <= -0.5)
        i--;
    return i;
}

double marin__res_from_fixed(const char *name, int64_t amount)
{
    return (double)amount / (double)scale_of(name);
}

int marin__res_equal(const marin_resources_t *a, const marin_resources_t *b)
{
    if (a == b)
        return 1;
    if (!a || !b || a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->e[i].amount != b->e[i].amount ||
            strcmp(a->e[i].name, b->e[i].name) != 0)
            return 0;
    return 1;
}

int marin__res_format_amount(const char *name, int64_t amount, char *buf,
                             size_t cap)
{
    const char *sign = amount < 0 ? "-" : "";
    unsigned long long m = amount < 0 ? 0ULL - (unsigned long long)amount
                                      : (unsigned long long)amount;
    if (!buf)
        cap = 0;
    if (is_memory(name)) {
        for (size_t i = 0; m && i < sizeof mem_units / sizeof mem_units[0];
             i++)
            if (m % mem_units[i].mult == 0)
                return snprintf(buf, cap, "%s%llu%s", sign,
                                m / mem_units[i].mult, mem_units[i].name);
        return snprintf(buf, cap, "%s%lluB", sign, m);
    }
    unsigned long long whole = m / MARIN__RES_SCALE;
    unsigned long long frac = m % MARIN__RES_SCALE;
    if (frac == 0)
        return snprintf(buf, cap, "%s%llu", sign, whole);
    if (frac % 10 == 0)
        return snprintf(buf, cap, "%s%llu.%llu", sign, whole, frac / 10);
    return snprintf(buf, cap, "%s%llu.%02llu", sign, whole, frac);
}

int marin__res_copy(const marin_resources_t *src, marin_resources_t **out)
{
    if (!out)
        return marin__err(MARIN_EINVAL, "resources: copy: out is NULL");
    *out = NULL;
    if (!src)
        return marin__err(MARIN_EINVAL, "resources: copy: source is NULL");
    marin_resources_t *r = marin__malloc(sizeof *r);
    if (!r)
        return marin__err(MARIN_ENOMEM,
                          "resources: out of memory copying a set");
    memcpy(r, src, sizeof *r);
    *out = r;
    return MARIN_OK;
}

/* ---- parsing ---------------------------------------------------------- */

struct spec_ctx {
    const char *spec;
    int tok;         /* 1-based token number */
    const char *ts;  /* token text (trimmed) */
    size_t tn;
};

/* Record 'resources "<spec>": <what> in token N '<token>'<note>' and
 * return MARIN_EINVAL; note (why, or what to do) may be "". */
static int spec_err(const struct spec_ctx *c, const char *note,
                    const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int spec_err(const struct spec_ctx *c, const char *note,
                    const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    size_t sl = strlen(c->spec);
    return marin__err(MARIN_EINVAL,
                      "resources \"%.*s%s\": %s in token %d '%.*s%s'%s",
                      SHOW_SPEC, c->spec, sl > SHOW_SPEC ? "..." : "", what,
                      c->tok, (int)(c->tn > SHOW_TOKEN ? SHOW_TOKEN : c->tn),
                      c->ts, c->tn > SHOW_TOKEN ? "..." : "", note);
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_space(**s))
        (*s)++;
    while (*e > *s && is_space((*e)[-1]))
        (*e)--;
}

/* Case-insensitive: does s[0..n) start with word? */
static int starts_ci(const char *s, size_t n, const char *word)
{
    size_t wl = strlen(word);
    if (n < wl)
        return 0;
    for (size_t i = 0; i < wl; i++)
        if (lower(s[i]) != word[i])
            return 0;
    return 1;
}

/* Digit string S = ip[0..ni) ++ fp[0..nf), decimal point after position
 * point (which may lie outside S: zeros fill the gap). */
struct decimal {
    const char *ip, *fp;
    int64_t ni, nf, point;
};

static unsigned digit_at(const struct decimal *d, int64_t i)
{
    if (i < 0 || i >= d->ni + d->nf)
        return 0;
    char c = i < d->ni ? d->ip[i] : d->fp[i - d->ni];
    return (unsigned)(c - '0');
}

/* Exact round-half-up of value * mult, where mult <= 2^47. Returns 0 and
 * sets *out, or -1 when the result exceeds INT64_MAX. */
static int decimal_fixed(const struct decimal *d, uint64_t mult,
                         int64_t *out)
{
    const uint64_t lim = (uint64_t)INT64_MAX;
    int64_t len = d->ni + d->nf;
    int64_t p = d->point;

    /* Integer part: positions [0, p). S is not all zeros (the caller
     * checked), so this overflows within ~20 steps of the first nonzero
     * digit, which lies inside S: the loop is bounded by len + 20. */
    uint64_t ip = 0;
    for (int64_t i = 0; i < p; i++) {
        unsigned dg = digit_at(d, i);
        if (ip > (lim - dg) / 10)
            return -1;
        ip = ip * 10 + dg;
    }
    if (ip != 0 && ip > lim / mult)
        return -1;
    uint64_t total = ip * mult;

    /* Fraction part times mult, exactly: long multiplication from the
     * last digit to position p; carry stays below mult. */
    uint64_t carry = 0;
    unsigned first = 0;
    int64_t start = len - 1;
    for (int64_t i = start; i >= p; i--) {
        if (i < 0 && carry == 0) {
            first = 0; /* only zeros remain, down to position p */
            break;
        }
        uint64_t t = (uint64_t)digit_at(d, i) * mult + carry;
        carry = t / 10;
        if (i == p)
            first = (unsigned)(t % 10);
    }
    if (carry > lim - total)
        return -1;
    total += carry;
    if (first >= 5) {
        if (total == lim)
            return -1;
        total++;
    }
    *out = (int64_t)total;
    return 0;
}

static int parse_amount(const struct spec_ctx *c, const char *name,
                        const char *s, size_t n, int64_t *out)
{
    int mem = is_memory(name);
    int sn = (int)(n > SHOW_TOKEN ? SHOW_TOKEN : n);
    const char *more = n > SHOW_TOKEN ? "..." : "";

    if (n == 0)
        return spec_err(c, " (expected name=amount)", "empty amount for "
                        "'%s'", name);
    if (s[0] == '-')
        return spec_err(c, " (amounts are non-negative)",
                        "negative amount '%.*s%s'", sn, s, more);
    if (s[0] == '+')
        return spec_err(c, " (write the number without a sign)",
                        "signed amount '%.*s%s'", sn, s, more);
    if (starts_ci(s, n, "nan"))
        return spec_err(c, "", "amount '%.*s%s' is not a number (NaN)", sn,
                        s, more);
    if (starts_ci(s, n, "inf"))
        return spec_err(c, " (amounts are finite)", "infinite amount "
                        "'%.*s%s'", sn, s, more);

    struct decimal d = {s, s, 0, 0, 0};
    size_t i = 0;
    while (i < n && is_digit(s[i]))
        i++;
    d.ni = (int64_t)i;
    if (i < n && s[i] == '.') {
        i++;
        d.fp = s + i;
        while (i < n && is_digit(s[i]))
            i++;
        d.nf = (int64_t)(s + i - d.fp);
    }
    if (d.ni + d.nf == 0)
        return spec_err(c, " (expected a decimal such as 2, 0.5 or 4GiB)",
                        "amount '%.*s%s' is not a number", sn, s, more);
    int64_t exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        int neg = 0;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            neg = s[j++] == '-';
        if (j < n && is_digit(s[j])) {
            while (j < n && is_digit(s[j])) {
                if (exp < EXP_CLAMP)
                    exp = exp * 10 + (s[j] - '0');
                j++;
            }
            if (exp > EXP_CLAMP)
                exp = EXP_CLAMP;
            if (neg)
                exp = -exp;
            i = j;
        } /* else "1E" etc.: left for the unit check to reject */
    }
    d.point = d.ni + exp;

    while (i < n && is_space(s[i]))
        i++;
    uint64_t mult = 1;
    if (i < n) {
        const char *u = s + i;
        size_t un = n - i;
        size_t k;
        for (k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].name) == un &&
                memcmp(units[k].name, u, un) == 0)
                break;
        if (k == sizeof units / sizeof units[0]) {
            int alpha = 1;
            for (size_t j = 0; j < un; j++)
                alpha = alpha && is_alpha(u[j]);
            int show = (int)(un > SHOW_TOKEN ? SHOW_TOKEN : un);
            if (alpha)
                return spec_err(c, " (units: " UNITS_HELP ")",
                                "unknown unit '%.*s%s'", show, u, more);
            return spec_err(c, "", "trailing characters '%.*s%s' after the "
                            "number in amount '%.*s%s'", show, u,
                            un > SHOW_TOKEN ? "..." : "", sn, s, more);
        }
        mult = units[k].mult;
    }

    int zero = 1;
    for (int64_t j = 0; j < d.ni + d.nf && zero; j++)
        zero = digit_at(&d, j) == 0;
    if (zero) {
        *out = 0;
        return MARIN_OK;
    }
    int64_t v = 0;
    char lim[48], note[80];
    if (decimal_fixed(&d, mult * (uint64_t)scale_of(name), &v) != 0) {
        marin__res_format_amount(name, INT64_MAX, lim, sizeof lim);
        snprintf(note, sizeof note, " (at most %s for %s)", lim,
                 mem ? "memory" : "this resource");
        return spec_err(c, note, "amount '%.*s%s' is too large", sn, s,
                        more);
    }
    if (v == 0)
        return spec_err(c, mem ? "; the smallest nonzero memory is 1B (one "
                                 "byte)"
                               : "; the smallest nonzero amount is 0.01",
                        "amount '%.*s%s' rounds to 0", sn, s, more);
    *out = v;
    return MARIN_OK;
}

static int parse_into(const char *spec, marin_resources_t *r)
{
    struct {
        const char *s;
        size_t n;
    } seen[MARIN__RES_MAX];
    struct spec_ctx c = {spec, 0, spec, 0};
    char why[160];
    const char *p = spec;

    while (is_space(*p))
        p++;
    if (*p == '\0')
        return MARIN_OK; /* "" or only blanks: the empty set */
    p = spec;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *ts = p, *te = end;
        trim(&ts, &te);
        c.tok++;
        c.ts = ts;
        c.tn = (size_t)(te - ts);
        if (ts == te)
            return spec_err(&c, " (empty token: a stray comma?)",
                            "nothing");
        if (c.tok > MARIN__RES_MAX)
            return spec_err(&c, " (a set holds at most "
                            STR(MARIN__RES_MAX) " names)",
                            "too many resources");
        const char *eq = memchr(ts, '=', c.tn);
        if (!eq)
            return spec_err(&c, " (expected name=amount)", "missing '='");
        const char *ns = ts, *ne = eq, *as = eq + 1, *ae = te;
        trim(&ns, &ne);
        trim(&as, &ae);
        size_t nn = (size_t)(ne - ns);
        if (nn == 0)
            return spec_err(&c, " (expected name=amount)",
                            "empty resource name");
        memcpy(why, ": ", 3);
        if (!name_check(ns, nn, why + 2, sizeof why - 2))
            return spec_err(&c, why, "invalid resource name '%.*s%s'",
                            (int)(nn > SHOW_NAME ? SHOW_NAME : nn), ns,
                            nn > SHOW_NAME ? "..." : "");
        for (int k = 0; k < c.tok - 1; k++)
            if (seen[k].n == nn && memcmp(seen[k].s, ns, nn) == 0) {
                snprintf(why, sizeof why, " (first given in token %d)",
                         k + 1);
                return spec_err(&c, why, "duplicate resource '%.*s'",
                                (int)nn, ns);
            }
        seen[c.tok - 1].s = ns;
        seen[c.tok - 1].n = nn;

        char name[MARIN__RES_NAME_MAX + 1];
        memcpy(name, ns, nn);
        name[nn] = '\0';
        int64_t v = 0;
        int rc = parse_amount(&c, name, as, (size_t)(ae - as), &v);
        if (rc != MARIN_OK)
            return rc;
        if (v != 0 && (rc = marin__res_set_fixed(r, name, v)) != MARIN_OK)
            return rc;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    return MARIN_OK;
}

/* ---- public API ------------------------------------------------------- */

int marin_resources_parse(const char *spec, marin_resources_t **out)
{
    MARIN__CHECK_ARG(out, "marin_resources_parse", "out is NULL");
    *out = NULL;
    MARIN__CHECK_ARG(spec, "marin_resources_parse", "spec is NULL");
    marin_resources_t *r = marin__calloc(1, sizeof *r);
    if (!r)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM, "marin_resources_parse: out of memory"));
    int rc = parse_into(spec, r);
    if (rc != MARIN_OK) {
        marin__free(r);
        return marin__api_exit(rc);
    }
    *out = r;
    return marin__api_exit(MARIN_OK);
}

int marin_resources_create(marin_resources_t **out)
{
    MARIN__CHECK_ARG(out, "marin_resources_create", "out is NULL");
    *out = marin__calloc(1, sizeof **out);
    if (!*out)
        return marin__api_exit(marin__err(
            MARIN_ENOMEM, "marin_resources_create: out of memory"));
    return marin__api_exit(MARIN_OK);
}

int marin_resources_set(marin_resources_t *r, const char *name,
                        double amount)
{
    char why[160], lim[48];
    MARIN__CHECK_ARG(r, "marin_resources_set", "the set is NULL");
    MARIN__CHECK_ARG(name, "marin_resources_set", "name is NULL");
    if (!name_check(name, strlen(name), why, sizeof why))
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_resources_set: invalid resource name "
            "'%.*s%s': %s", SHOW_NAME, name,
            strlen(name) > SHOW_NAME ? "..." : "", why));
    if (isnan(amount))
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_resources_set: amount for '%s' is not a "
            "number (NaN)", name));
    if (isinf(amount))
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_resources_set: infinite amount for '%s'",
            name));
    if (amount < 0)
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_resources_set: negative amount %g for '%s' "
            "(amounts are non-negative)", amount, name));
    if (amount * (double)scale_of(name) >= 9223372036854775808.0) {
        marin__res_format_amount(name, INT64_MAX, lim, sizeof lim);
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_resources_set: amount %g for '%s' is too "
            "large (at most %s)", amount, name, lim));
    }
    int64_t v = marin__res_to_fixed(name, amount);
    if (v == 0 && amount > 0)
        return marin__api_exit(marin__err(
            MARIN_EINVAL, "marin_resources_set: amount %g for '%s' rounds "
            "to 0; the smallest nonzero amount is %s", amount, name,
            is_memory(name) ? "1 byte" : "0.01"));
    return marin__api_exit(marin__res_set_fixed(r, name, v));
}

double marin_resources_get(const marin_resources_t *r, const char *name)
{
    if (!r || !name)
        return 0;
    return marin__res_from_fixed(name, marin__res_amount(r, name));
}

/* Appends to a caller buffer snprintf-style: copies what fits, counts
 * everything. */
struct sink {
    char *buf;
    size_t cap, len;
};

static void put(struct sink *o, const char *s, size_t n)
{
    if (o->len + 1 < o->cap) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

int marin_resources_format(const marin_resources_t *r, char *buf,
                           size_t cap)
{
    MARIN__CHECK_ARG(r, "marin_resources_format", "the set is NULL");
    MARIN__CHECK_ARG(buf || cap == 0, "marin_resources_format",
                     "buf is NULL but cap is not 0");
    struct sink o = {buf, cap, 0};
    char amt[48];
    for (size_t i = 0; i < r->n && i < MARIN__RES_MAX; i++) {
        if (i > 0)
            put(&o, ",", 1);
        put(&o, r->e[i].name, strnlen(r->e[i].name, MARIN__RES_NAME_MAX));
        put(&o, "=", 1);
        int n = marin__res_format_amount(r->e[i].name, r->e[i].amount, amt,
                                         sizeof amt);
        put(&o, amt, n > 0 ? (size_t)n : 0);
    }
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    (void)marin__api_exit(MARIN_OK);
    return (int)o.len;
}

void marin_resources_destroy(marin_resources_t *r) { marin__free(r); }
