/* Backend URIs: scheme://[user[:password]@]host[:port][/path][?k=v&k=v].
 *
 * See uri.h. Components are split on the raw text first and percent-decoded
 * afterwards, so %2F, %26 or %3D inside a value never act as delimiters.
 * Parameters split on '&' only, key from value on the first '=', so
 * "local://?resources=cpus=8,memory=16GiB" works. Empty components (an
 * empty user, host, password or path) are stored as NULL, like absent ones;
 * a parameter without '=' gets the value "". The path keeps its leading
 * '/'. Error messages never quote the password. */
#include "uri.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"

#define SHOW_URI 200 /* bytes of the URI quoted in messages */
#define SHOW_PART 64 /* bytes of a component quoted in messages */

struct ctx {
    const char *text;
    size_t len;
    size_t pw_start, pw_end; /* password span to mask; empty when none */
};

static int uri_err(const struct ctx *c, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 'uri "<text, password masked>": <what> at position N' (1-based). */
static int uri_err(const struct ctx *c, size_t pos, const char *fmt, ...)
{
    char what[512], shown[SHOW_URI + 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);

    size_t o = 0, i = 0;
    while (i < c->len && o < SHOW_URI) {
        if (i == c->pw_start && c->pw_end > c->pw_start) {
            for (const char *m = "***"; *m && o < SHOW_URI; m++)
                shown[o++] = *m;
            i = c->pw_end;
            continue;
        }
        shown[o++] = c->text[i++];
    }
    shown[o] = '\0';
    if (i < c->len)
        memcpy(shown + o, "...", 4);
    return marin__err(MARIN_EINVAL, "uri \"%s\": %s at position %zu", shown,
                      what, pos + 1);
}

static int oom(void)
{
    return marin__err(MARIN_ENOMEM, "uri: out of memory while parsing");
}

static int is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Characters allowed raw in a host name (RFC 3986 reg-name). */
static int host_char(char ch)
{
    return is_alpha(ch) || is_digit(ch) ||
           (ch != '\0' && strchr("-._~!$&'()*+,;=%", ch) != NULL);
}

static size_t find_char(const char *s, size_t from, size_t to, char ch)
{
    for (size_t i = from; i < to; i++)
        if (s[i] == ch)
            return i;
    return to;
}

/* Percent-decode text[s, e) into *out (NULL when the span is empty, unless
 * keep_empty). @p what names the component; a password is never quoted. */
static int decode(const struct ctx *c, size_t s, size_t e, const char *what,
                  int keep_empty, char **out)
{
    int secret = strcmp(what, "password") == 0;
    *out = NULL;
    for (size_t i = s; i < e; i++) {
        if (c->text[i] != '%')
            continue;
        if (i + 2 >= e || hexval(c->text[i + 1]) < 0 ||
            hexval(c->text[i + 2]) < 0) {
            int n = (int)(e - i < 3 ? e - i : 3);
            if (secret)
                return uri_err(c, i, "bad percent escape in the password "
                               "(expected %% and two hex digits)");
            return uri_err(c, i, "bad percent escape '%.*s' in the %s "
                           "(expected %% and two hex digits)", n,
                           c->text + i, what);
        }
        if (hexval(c->text[i + 1]) == 0 && hexval(c->text[i + 2]) == 0)
            return uri_err(c, i, "percent escape %%00 (a NUL byte) in the "
                           "%s is not allowed", what);
        i += 2;
    }
    if (s == e && !keep_empty)
        return MARIN_OK;
    char *d = marin__malloc(e - s + 1);
    if (!d)
        return oom();
    size_t o = 0;
    for (size_t i = s; i < e; i++) {
        if (c->text[i] == '%') {
            d[o++] = (char)(hexval(c->text[i + 1]) * 16 +
                            hexval(c->text[i + 2]));
            i += 2;
        } else {
            d[o++] = c->text[i];
        }
    }
    d[o] = '\0';
    *out = d;
    return MARIN_OK;
}

static int parse_port(const struct ctx *c, size_t s, size_t e, int *port)
{
    int show = (int)(e - s > SHOW_PART ? SHOW_PART : e - s);
    if (s == e)
        return uri_err(c, s - 1, "empty port after ':' (expected 1-65535)");
    long v = 0;
    for (size_t i = s; i < e; i++) {
        if (!is_digit(c->text[i]))
            return uri_err(c, i, "bad port '%.*s': not a number (expected "
                           "1-65535)", show, c->text + s);
        if (v <= 65535)
            v = v * 10 + (c->text[i] - '0');
    }
    if (v < 1 || v > 65535)
        return uri_err(c, s, "bad port '%.*s': out of range (expected "
                       "1-65535)", show, c->text + s);
    *port = (int)v;
    return MARIN_OK;
}

static int parse_host(const struct ctx *c, marin__uri *u, size_t s,
                      size_t e)
{
    size_t colon = e;
    if (s < e && c->text[s] == '[') { /* IPv6 literal: [::1]:port */
        size_t close = find_char(c->text, s, e, ']');
        if (close == e)
            return uri_err(c, s, "'[' without a closing ']' in the host");
        if (close == s + 1)
            return uri_err(c, s, "empty IPv6 address '[]' in the host");
        for (size_t i = s + 1; i < close; i++)
            if (!(hexval(c->text[i]) >= 0 || c->text[i] == ':' ||
                  c->text[i] == '.'))
                return uri_err(c, i, "invalid character '%c' in the IPv6 "
                               "address", c->text[i]);
        if (close + 1 < e) {
            if (c->text[close + 1] != ':')
                return uri_err(c, close + 1, "unexpected '%c' after ']' "
                               "(expected ':port')", c->text[close + 1]);
            colon = close + 1;
        }
        int rc = decode(c, s + 1, close, "host", 0, &u->host);
        if (rc != MARIN_OK)
            return rc;
    } else {
        /* the last ':' starts the port; any earlier one is an error */
        for (size_t i = e; i > s; i--)
            if (c->text[i - 1] == ':') {
                colon = i - 1;
                break;
            }
        for (size_t i = s; i < colon; i++) {
            char ch = c->text[i];
            if (ch == ':')
                return uri_err(c, i, "unexpected ':' in the host (an IPv6 "
                               "address goes in brackets: [::1]:6379)");
            if (!host_char(ch))
                return uri_err(c, i, "invalid character '%c' in the host",
                               ch);
        }
        int rc = decode(c, s, colon, "host", 0, &u->host);
        if (rc != MARIN_OK)
            return rc;
    }
    if (colon < e)
        return parse_port(c, colon + 1, e, &u->port);
    return MARIN_OK;
}

static int parse_query(const struct ctx *c, marin__uri *u, size_t s)
{
    size_t q = s;
    for (;;) {
        size_t pe = find_char(c->text, q, c->len, '&');
        if (pe > q) { /* empty pieces ("a=1&&b=2", a trailing '&') skip */
            size_t eq = find_char(c->text, q, pe, '=');
            if (eq == q)
                return uri_err(c, q, "empty parameter name before '='");
            if (u->nparams == MARIN__URI_MAX_PARAMS)
                return uri_err(c, q, "too many parameters (at most %d)",
                               MARIN__URI_MAX_PARAMS);
            char *k = NULL, *v = NULL;
            int rc = decode(c, q, eq, "parameter name", 1, &k);
            if (rc != MARIN_OK)
                return rc;
            u->keys[u->nparams] = k; /* owned by u from here on */
            rc = decode(c, eq < pe ? eq + 1 : pe, pe, "parameter value", 1,
                        &v);
            if (rc != MARIN_OK) {
                u->keys[u->nparams] = NULL;
                marin__free(k);
                return rc;
            }
            u->values[u->nparams++] = v;
            for (size_t i = 0; i + 1 < u->nparams; i++)
                if (strcmp(u->keys[i], k) == 0)
                    return uri_err(c, q, "duplicate parameter '%.*s'",
                                   SHOW_PART, k);
        }
        if (pe >= c->len)
            return MARIN_OK;
        q = pe + 1;
    }
}

int marin__uri_parse(const char *text, marin__uri *u)
{
    if (!u)
        return marin__err(MARIN_EINVAL, "marin__uri_parse: u is NULL");
    memset(u, 0, sizeof *u);
    u->port = -1;
    if (!text)
        return marin__err(MARIN_EINVAL, "marin__uri_parse: text is NULL");

    struct ctx c = {text, strlen(text), 0, 0};
    const char *sep = strstr(text, "://");
    size_t slen = sep ? (size_t)(sep - text) : c.len;
    size_t a = slen + 3, ae = c.len, at = c.len;
    if (sep) { /* find the password first, so no message can show it */
        ae = a;
        while (ae < c.len && text[ae] != '/' && text[ae] != '?')
            ae++;
        for (size_t i = ae; i > a; i--)
            if (text[i - 1] == '@') {
                at = i - 1;
                break;
            }
        if (at < c.len) {
            size_t colon = find_char(text, a, at, ':');
            if (colon < at) {
                c.pw_start = colon + 1;
                c.pw_end = at;
            }
        }
    }

    int rc;
    for (size_t i = 0; i < c.len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch < 0x20 || ch == 0x7f) {
            rc = uri_err(&c, i, "control character 0x%02x", ch);
            goto fail;
        }
    }
    if (slen == 0) {
        rc = uri_err(&c, 0, "empty scheme (expected e.g. 'local' or "
                     "'redis://host:6379')");
        goto fail;
    }
    for (size_t i = 0; i < slen; i++) {
        char ch = text[i];
        if (is_alpha(ch) || (i > 0 && (is_digit(ch) || ch == '+' ||
                                       ch == '-' || ch == '.')))
            continue;
        if (!sep && (ch == ':' || ch == '/' || ch == '?'))
            rc = uri_err(&c, i, "unexpected '%c' after the scheme '%.*s' "
                         "(write 'scheme://...')", ch,
                         (int)(i > SHOW_PART ? SHOW_PART : i), text);
        else if (i == 0)
            rc = uri_err(&c, i, "the scheme must start with a letter, not "
                         "'%c'", ch);
        else
            rc = uri_err(&c, i, "invalid character '%c' in the scheme", ch);
        goto fail;
    }
    if (!(u->scheme = marin__strndup(text, slen))) {
        rc = oom();
        goto fail;
    }
    if (!sep)
        return MARIN_OK; /* "local" */

    size_t hs = a;
    if (at < c.len) {
        size_t colon = find_char(text, a, at, ':');
        if ((rc = decode(&c, a, colon, "user", 0, &u->user)) != MARIN_OK)
            goto fail;
        if (colon < at &&
            (rc = decode(&c, colon + 1, at, "password", 0, &u->password)) !=
                MARIN_OK)
            goto fail;
        hs = at + 1;
    }
    if ((rc = parse_host(&c, u, hs, ae)) != MARIN_OK)
        goto fail;

    size_t pe = ae;
    if (pe < c.len && text[pe] == '/') {
        pe = find_char(text, ae, c.len, '?');
        if ((rc = decode(&c, ae, pe, "path", 0, &u->path)) != MARIN_OK)
            goto fail;
    }
    if (pe < c.len && (rc = parse_query(&c, u, pe + 1)) != MARIN_OK)
        goto fail;
    return MARIN_OK;

fail:
    marin__uri_free(u);
    return rc;
}

void marin__uri_free(marin__uri *u)
{
    if (!u)
        return;
    marin__free(u->scheme);
    marin__free(u->user);
    marin__free(u->password);
    marin__free(u->host);
    marin__free(u->path);
    for (size_t i = 0; i < u->nparams && i < MARIN__URI_MAX_PARAMS; i++) {
        marin__free(u->keys[i]);
        marin__free(u->values[i]);
    }
    memset(u, 0, sizeof *u);
    u->port = -1;
}

const char *marin__uri_param(const marin__uri *u, const char *key)
{
    if (!u || !key)
        return NULL;
    for (size_t i = 0; i < u->nparams && i < MARIN__URI_MAX_PARAMS; i++)
        if (u->keys[i] && strcmp(u->keys[i], key) == 0)
            return u->values[i];
    return NULL;
}

int marin__uri_param_i64(const marin__uri *u, const char *key, long long *out)
{
    if (!u || !key || !out)
        return marin__err(MARIN_EINVAL, "marin__uri_param_i64: %s is NULL",
                          !u ? "u" : !key ? "key" : "out");
    const char *v = marin__uri_param(u, key);
    if (!v)
        return MARIN_OK;
    size_t n = strlen(v);
    int show = (int)(n > SHOW_PART ? SHOW_PART : n);
    const char *more = n > SHOW_PART ? "..." : "";
    if (n == 0)
        return marin__err(MARIN_EINVAL, "uri parameter '%.*s' is empty "
                          "(expected a non-negative integer)", SHOW_PART,
                          key);
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(v[i]))
            return marin__err(MARIN_EINVAL, "uri parameter '%.*s=%.*s%s' is "
                              "not a non-negative integer", SHOW_PART, key,
                              show, v, more);
        int dg = v[i] - '0';
        if (x > (LLONG_MAX - dg) / 10)
            return marin__err(MARIN_EINVAL, "uri parameter '%.*s=%.*s%s' is "
                              "too large (at most %lld)", SHOW_PART, key,
                              show, v, more, LLONG_MAX);
        x = x * 10 + dg;
    }
    *out = x;
    return MARIN_OK;
}

int marin__uri_check_params(const marin__uri *u, const char *const *known)
{
    if (!u)
        return marin__err(MARIN_EINVAL, "marin__uri_check_params: u is "
                          "NULL");
    for (size_t i = 0; i < u->nparams && i < MARIN__URI_MAX_PARAMS; i++) {
        const char *k = u->keys[i];
        int found = 0;
        for (size_t j = 0; known && known[j] && !found; j++)
            found = k && strcmp(known[j], k) == 0;
        if (found)
            continue;
        char list[400];
        size_t o = 0;
        list[0] = '\0';
        for (size_t j = 0; known && known[j] && o < sizeof list; j++) {
            int w = snprintf(list + o, sizeof list - o, "%s%s",
                             j ? ", " : "", known[j]);
            if (w < 0)
                break;
            o += (size_t)w;
        }
        return marin__err(MARIN_EINVAL, "unknown %s parameter '%.*s' "
                          "(known: %s)", u->scheme ? u->scheme : "uri",
                          SHOW_PART, k ? k : "", o ? list : "none");
    }
    return MARIN_OK;
}
