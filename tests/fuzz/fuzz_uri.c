/* libFuzzer target: backend URIs and the local backend's parameters.
 *
 * Part 1: the input, NUL-terminated, goes to marin__uri_parse(). A failure
 * must leave the struct empty and, for a URI with a password, never quote
 * the password. A success must give well-formed components, and
 * marin__uri_param / marin__uri_param_i64 / marin__uri_check_params must
 * agree with the parsed parameters (checked against a plain re-reading).
 *
 * Part 2: marin_runtime_open("local://?" + input) (inputs up to 512 bytes),
 * closed again at once. A URI whose parameters are all valid (known keys,
 * max_threads/idle_ms non-negative integers, resources= accepted by
 * marin_resources_parse) must open, and the runtime's capacity must show
 * every resources= amount, an amount of 0 removing the resource. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marin/error.h"
#include "marin/resources.h"
#include "marin/runtime.h"
#include "resources_internal.h"
#include "uri.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 4096
#define MAX_OPEN_INPUT 512

static const char *const local_known[] = {"resources", "max_threads",
                                          "idle_ms", NULL};

static const char *g_input;

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

__attribute__((noreturn)) static void fail(const char *what, const char *a)
{
    fprintf(stderr, "fuzz_uri: %s\n", what);
    show("input", g_input);
    if (a)
        show("detail", a);
    fprintf(stderr, "  last error: %s\n", marin_last_error());
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* marin_runtime_open reads these; keep runs reproducible. */
    unsetenv("CUDA_VISIBLE_DEVICES");
    unsetenv("MARIN_BACKEND");
    unsetenv("MARIN_PROGRESS");
    setenv("MARIN_LOG", "error", 1);
    return 0;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* ---- part 1: marin__uri_parse and the parameter helpers ----------------- */

/* The password span the parser masks: "scheme://user:PASS@host...". */
static int password_span(const char *t, size_t *ps, size_t *pe)
{
    const char *sep = strstr(t, "://");
    if (!sep)
        return 0;
    size_t a = (size_t)(sep - t) + 3, ae = a, len = strlen(t), at = len;
    while (ae < len && t[ae] != '/' && t[ae] != '?')
        ae++;
    for (size_t i = ae; i > a; i--)
        if (t[i - 1] == '@') {
            at = i - 1;
            break;
        }
    if (at == len)
        return 0;
    const char *colon = memchr(t + a, ':', at - a);
    if (!colon)
        return 0;
    *ps = (size_t)(colon - t) + 1;
    *pe = at;
    return *pe > *ps;
}

static void check_no_password_in_message(const char *t)
{
    size_t ps, pe;
    /* Only clear-cut cases: no percent escapes anywhere (a decoded
     * component could spell the password) and the password text, 6 bytes
     * or more, occurs once in the URI. */
    if (strchr(t, '%') || !password_span(t, &ps, &pe) || pe - ps < 6)
        return;
    char pw[FUZZ_MAX_INPUT + 1];
    memcpy(pw, t + ps, pe - ps);
    pw[pe - ps] = '\0';
    const char *first = strstr(t, pw);
    if (first && strstr(first + 1, pw))
        return;
    if (strstr(marin_last_error(), pw))
        fail("an error message quotes the password", pw);
}

static void check_empty(const marin__uri *u)
{
    if (u->scheme || u->user || u->password || u->host || u->path ||
        u->nparams || u->port != -1)
        fail("a failed parse left components behind", NULL);
}

static void check_component(const char *c, const char *what)
{
    if (c && c[0] == '\0')
        fail("an empty component is stored as \"\", not NULL", what);
}

static void check_params(const marin__uri *u, const char *text)
{
    if (u->nparams > MARIN__URI_MAX_PARAMS)
        fail("more than MARIN__URI_MAX_PARAMS parameters", NULL);
    if (u->nparams && !strchr(text, '?'))
        fail("parameters without a '?'", NULL);
    for (size_t i = 0; i < u->nparams; i++) {
        const char *k = u->keys[i], *v = u->values[i];
        if (!k || !v)
            fail("a NULL parameter key or value", NULL);
        if (k[0] == '\0')
            fail("an empty parameter name", NULL);
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->keys[j], k) == 0)
                fail("a duplicate parameter was accepted", k);
        if (marin__uri_param(u, k) != v)
            fail("marin__uri_param does not find the parameter", k);

        long long x = -7;
        int rc = marin__uri_param_i64(u, k, &x);
        int digits = all_digits(v);
        if (rc == MARIN_OK) {
            if (!digits)
                fail("marin__uri_param_i64 accepted a non-integer", v);
            char back[32];
            snprintf(back, sizeof back, "%lld", x);
            const char *d = v;
            while (d[0] == '0' && d[1])
                d++; /* leading zeros */
            if (strcmp(back, d) != 0)
                fail("marin__uri_param_i64 read another value", v);
        } else if (rc != MARIN_EINVAL) {
            fail("marin__uri_param_i64: unexpected error code", v);
        } else {
            if (x != -7)
                fail("marin__uri_param_i64 changed *out on failure", v);
            const char *d = v;
            while (d[0] == '0' && d[1])
                d++;
            /* "9223372036854775807" is the largest that fits */
            if (digits && (strlen(d) < 19 ||
                           (strlen(d) == 19 &&
                            strcmp(d, "9223372036854775807") <= 0)))
                fail("marin__uri_param_i64 refused a valid integer", v);
        }
    }
    long long x = -7;
    if (marin__uri_param(u, "no such key\x01") != NULL ||
        marin__uri_param_i64(u, "no such key\x01", &x) != MARIN_OK || x != -7)
        fail("an absent key was found", NULL);

    /* check_params: none known; all known; the local backend's list */
    int rc = marin__uri_check_params(u, NULL);
    if ((rc == MARIN_OK) != (u->nparams == 0))
        fail("check_params(NULL) wrong", NULL);
    const char *all[MARIN__URI_MAX_PARAMS + 1];
    for (size_t i = 0; i < u->nparams; i++)
        all[i] = u->keys[i];
    all[u->nparams] = NULL;
    if (marin__uri_check_params(u, all) != MARIN_OK)
        fail("check_params(every key) failed", NULL);
    int unknown = 0;
    for (size_t i = 0; i < u->nparams; i++) {
        int found = 0;
        for (size_t j = 0; local_known[j]; j++)
            found |= strcmp(u->keys[i], local_known[j]) == 0;
        unknown |= !found;
    }
    rc = marin__uri_check_params(u, local_known);
    if ((rc == MARIN_OK) == unknown)
        fail("check_params(local keys) wrong", NULL);
}

static void fuzz_parse(const char *text)
{
    marin__uri u;
    int rc = marin__uri_parse(text, &u);
    if (rc != MARIN_OK && rc != MARIN_EINVAL)
        fail("marin__uri_parse: unexpected error code", NULL);
    if (rc != MARIN_OK) {
        check_empty(&u);
        if (marin_last_error()[0] == '\0')
            fail("a failed parse left no message", NULL);
        check_no_password_in_message(text);
        marin__uri_free(&u);
        return;
    }
    if (!u.scheme || !u.scheme[0])
        fail("no scheme", NULL);
    int sep = strstr(text, "://") != NULL;
    if (!sep && (strcmp(u.scheme, text) != 0 || u.host || u.nparams))
        fail("a URI without '://' is more than its scheme", NULL);
    check_component(u.user, "user");
    check_component(u.password, "password");
    check_component(u.host, "host");
    check_component(u.path, "path");
    if (u.path && u.path[0] != '/')
        fail("the path lost its leading '/'", u.path);
    if (u.port != -1 && (u.port < 1 || u.port > 65535))
        fail("port out of range", NULL);
    if (u.password && !u.user && !strstr(text, "://:"))
        fail("a password without a user", NULL);
    check_params(&u, text);
    marin__uri_free(&u);
    marin__uri_free(&u); /* must be idempotent */
    check_empty(&u);
}

/* ---- part 2: marin_runtime_open("local://?...") --------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

/* Every name in a spec that parsed, whose amount is 0, must be absent from
 * the capacity (the README: "An amount of 0 removes that resource"). */
static void check_zeroed(const char *spec, const marin_resources_t *over,
                         const marin_resources_t *cap)
{
    const char *p = spec;
    while (is_space(*p))
        p++;
    if (!*p)
        return;
    for (p = spec;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *ns = p, *ne = memchr(p, '=', (size_t)(end - p));
        if (!ne)
            fail("resources: accepted a token without '='", spec);
        while (ns < ne && is_space(*ns))
            ns++;
        while (ne > ns && is_space(ne[-1]))
            ne--;
        char name[MARIN__RES_NAME_MAX + 1];
        size_t n = (size_t)(ne - ns);
        if (n == 0 || n > MARIN__RES_NAME_MAX)
            fail("resources: accepted a bad name", spec);
        memcpy(name, ns, n);
        name[n] = '\0';
        if (marin__res_amount(over, name) == 0 &&
            marin__res_amount(cap, name) != 0)
            fail("resources: a 0 amount did not remove the resource", name);
        if (!*end)
            break;
        p = end + 1;
    }
}

static void fuzz_open(const char *query)
{
    size_t qn = strlen(query);
    if (qn > MAX_OPEN_INPUT)
        return;
    char uri[MAX_OPEN_INPUT + 16];
    memcpy(uri, "local://?", 9);
    memcpy(uri + 9, query, qn + 1);

    /* What marin_runtime_open should say, from the pieces alone. */
    marin__uri u;
    int expect_ok = 0;
    marin_resources_t *over = NULL;
    const char *spec = NULL;
    if (marin__uri_parse(uri, &u) == MARIN_OK) {
        long long x = 0;
        expect_ok = marin__uri_check_params(&u, local_known) == MARIN_OK &&
                    marin__uri_param_i64(&u, "max_threads", &x) == MARIN_OK &&
                    marin__uri_param_i64(&u, "idle_ms", &x) == MARIN_OK;
        spec = marin__uri_param(&u, "resources");
        if (expect_ok && spec &&
            marin_resources_parse(spec, &over) != MARIN_OK)
            expect_ok = 0;
        if (!expect_ok) {
            /* Refusals after the parse cost a reactor start; the parser
             * itself is covered above. */
            marin_resources_destroy(over);
            marin__uri_free(&u);
            return;
        }
    } else {
        marin__uri_free(&u);
    }

    marin_runtime_t *rt = NULL;
    int rc = marin_runtime_open(uri, &rt);
    if (!expect_ok) {
        if (rc != MARIN_EINVAL || rt)
            fail("runtime_open: a URI that does not parse did not give "
                 "MARIN_EINVAL", uri);
        return;
    }
    if (rc != MARIN_OK || !rt) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s (%s)", marin_last_error(), uri);
        fail("runtime_open refused a valid local URI", msg);
    }
    marin_resources_t *cap = NULL;
    if (marin_resources_create(&cap) != MARIN_OK ||
        marin_runtime_capacity(rt, cap) != MARIN_OK)
        fail("marin_runtime_capacity failed", uri);
    if (over) {
        for (size_t i = 0; i < over->n; i++)
            if (marin__res_amount(cap, over->e[i].name) != over->e[i].amount)
                fail("capacity does not show a resources= amount",
                     over->e[i].name);
        check_zeroed(spec, over, cap);
    }
    marin_resources_destroy(cap);
    marin_runtime_close(rt);
    marin_resources_destroy(over);
    marin__uri_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    g_input = text;
    fuzz_parse(text);
    fuzz_open(text);
    free(text);
    return 0;
}
