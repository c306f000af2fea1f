/* `marin status`: read one namespace (redis_keys.h) into a JSON object,
 * then print it as is (--json) or as aligned tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "marin_cli.h"

/* ---- small JSON helpers -------------------------------------------------- */

/* A JSON string from Redis bytes; bytes that are not UTF-8 become '?'. */
static json_t *jstrn(const char *p, size_t n)
{
    json_t *v = json_stringn(p, n);
    if (v)
        return v;
    char *copy = marin__cli_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)p[i] < 0x80 && p[i] ? p[i] : '?';
    v = json_stringn(copy, n);
    free(copy);
    return v;
}

static json_t *jstr(const char *p)
{
    return jstrn(p, strlen(p));
}

static void jset(json_t *o, const char *k, json_t *v)
{
    if (!v || json_object_set_new(o, k, v) != 0)
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
}

static void jpush(json_t *a, json_t *v)
{
    if (!v || json_array_append_new(a, v) != 0)
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
}

static json_t *jobj(void)
{
    json_t *o = json_object();
    if (!o)
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
    return o;
}

static json_t *jarr(void)
{
    json_t *a = json_array();
    if (!a)
        marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
    return a;
}

/* A field copied from @p src (JSON null when absent). */
static json_t *jcopy(json_t *src, const char *k)
{
    json_t *v = src ? json_object_get(src, k) : NULL;
    return v ? json_deep_copy(v) : json_null();
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = o ? json_object_get(o, k) : NULL;
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (long long)json_real_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

static json_t *reply_str(const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_STRING)
        return jstrn(r->str, r->len);
    if (r && r->type == REDIS_REPLY_INTEGER)
        return json_integer(r->integer);
    return json_null();
}

/* Sort an array of objects by their string field @p key (stable output:
 * hashes and SCAN come back in no particular order). */
static const char *sort_key;

static int cmp_by_key(const void *a, const void *b)
{
    const char *x =
        json_string_value(json_object_get(*(json_t *const *)a, sort_key));
    const char *y =
        json_string_value(json_object_get(*(json_t *const *)b, sort_key));
    return strcmp(x ? x : "", y ? y : "");
}

static void jsort(json_t *arr, const char *key)
{
    size_t n = json_array_size(arr);
    if (n < 2)
        return;
    json_t **v = marin__cli_xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    sort_key = key;
    qsort(v, n, sizeof *v, cmp_by_key);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        jpush(arr, v[i]);
    free(v);
}

/* ---- reading the namespace ----------------------------------------------- */

/* PTTL of a key: -2 missing, -1 no expiry, else ms. */
static long long pttl(marin__cli *c, const char *key)
{
    redisReply *r = marin__cli_cmd(c, 0, "PTTL %s", key);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    return v;
}

/* HGETALL a hash of JSON values into an array of {id, parsed...}. */
static redisReply *hgetall(marin__cli *c, const char *suffix)
{
    char *key = marin__cli_key(c, "%s", suffix);
    redisReply *r = marin__cli_cmd(c, 1, "HGETALL %s", key);
    free(key);
    if (r && r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        r = NULL;
    }
    if (!r)
        marin__cli_warn("%s%s is not a hash; skipped", c->prefix, suffix);
    return r;
}

static json_t *parse_value(const redisReply *v, const char *what,
                           const char *id)
{
    json_error_t err;
    json_t *j = NULL;
    if (v->type == REDIS_REPLY_STRING)
        j = json_loadb(v->str, v->len, JSON_DECODE_ANY, &err);
    if (!json_is_object(j)) {
        marin__cli_warn("%s \"%s\": its entry is not a JSON object", what, id);
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *read_workers(marin__cli *c, int64_t now)
{
    json_t *out = jarr();
    redisReply *r = hgetall(c, "workers");
    if (!r)
        return out;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        json_t *w = parse_value(r->element[i + 1], "worker", k->str);
        json_t *o = jobj();
        jset(o, "id", jstr(k->str));
        jset(o, "name", jcopy(w, "name"));
        jset(o, "host", jcopy(w, "host"));
        jset(o, "pid", jcopy(w, "pid"));
        jset(o, "resources", jcopy(w, "resources"));
        jset(o, "free", jcopy(w, "free"));
        json_t *tasks = w ? json_object_get(w, "tasks") : NULL;
        json_t *run = w ? json_object_get(w, "running") : NULL;
        if (json_is_integer(run))
            jset(o, "running", json_integer(json_integer_value(run)));
        else if (json_is_array(run))
            jset(o, "running", json_integer((json_int_t)json_array_size(run)));
        else
            jset(o, "running", json_null());
        jset(o, "tasks",
             json_is_array(tasks) ? json_deep_copy(tasks) : json_array());
        json_t *classes = w ? json_object_get(w, "classes") : NULL;
        jset(o, "classes",
             json_is_array(classes) ? json_deep_copy(classes) : json_array());
        jset(o, "draining",
             json_boolean(w && json_is_true(json_object_get(w, "draining"))));
        long long hb = jint(w, "hb_ms");
        jset(o, "hb_ms", hb ? json_integer(hb) : json_null());
        jset(o, "hb_age_ms", hb ? json_integer(now - hb) : json_null());
        char *hbkey = marin__cli_key(c, "w:%s", k->str);
        long long ttl = pttl(c, hbkey);
        free(hbkey);
        jset(o, "hb_ttl_ms", ttl >= 0 ? json_integer(ttl) : json_null());
        jset(o, "alive", json_boolean(ttl != -2));
        json_decref(w);
        jpush(out, o);
    }
    freeReplyObject(r);
    return out;
}

/* Field @p name of a flat [k, v, k, v] reply (XINFO). */
static const redisReply *flat_get(const redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            !strcmp(r->element[i]->str, name))
            return r->element[i + 1];
    return NULL;
}

static json_t *read_queues(marin__cli *c)
{
    json_t *out = jarr();
    char *set = marin__cli_key(c, "queues");
    redisReply *r = marin__cli_cmd(c, 1, "SMEMBERS %s", set);
    free(set);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        marin__cli_warn("%squeues is not a set; skipped", c->prefix);
        if (r)
            freeReplyObject(r);
        return out;
    }
    char *qprefix = marin__cli_key(c, "q:");
    size_t qplen = strlen(qprefix);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *k = r->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        json_t *o = jobj();
        jset(o, "key", jstr(k->str));
        /* q:<task>:<shape>: the shape is after the last ':' */
        const char *rest =
            !strncmp(k->str, qprefix, qplen) ? k->str + qplen : NULL;
        const char *colon = rest ? strrchr(rest, ':') : NULL;
        if (colon) {
            jset(o, "task", jstrn(rest, (size_t)(colon - rest)));
            jset(o, "shape", jstr(colon + 1));
        } else {
            jset(o, "task", rest ? jstr(rest) : json_null());
            jset(o, "shape", json_null());
        }
        redisReply *len = marin__cli_cmd(c, 1, "XLEN %s", k->str);
        jset(o, "length",
             len && len->type == REDIS_REPLY_INTEGER
                 ? json_integer(len->integer)
                 : json_null());
        if (len)
            freeReplyObject(len);
        json_t *groups = jarr();
        long long pending = 0, lag = 0;
        int lag_known = 1, have_group = 0;
        redisReply *g = marin__cli_cmd(c, 1, "XINFO GROUPS %s", k->str);
        if (g && g->type == REDIS_REPLY_ARRAY) {
            for (size_t j = 0; j < g->elements; j++) {
                const redisReply *gi = g->element[j];
                if (gi->type != REDIS_REPLY_ARRAY)
                    continue;
                const redisReply *name = flat_get(gi, "name");
                const redisReply *cons = flat_get(gi, "consumers");
                const redisReply *pend = flat_get(gi, "pending");
                const redisReply *lg = flat_get(gi, "lag");
                const redisReply *last = flat_get(gi, "last-delivered-id");
                json_t *go = jobj();
                jset(go, "name", reply_str(name));
                jset(go, "consumers", reply_str(cons));
                jset(go, "pending", reply_str(pend));
                jset(go, "lag",
                     lg && lg->type == REDIS_REPLY_INTEGER
                         ? json_integer(lg->integer)
                         : json_null());
                jset(go, "last_delivered_id", reply_str(last));
                jpush(groups, go);
                if (name && name->type == REDIS_REPLY_STRING &&
                    !strcmp(name->str, "w")) {
                    have_group = 1;
                    if (pend && pend->type == REDIS_REPLY_INTEGER)
                        pending = pend->integer;
                    if (lg && lg->type == REDIS_REPLY_INTEGER)
                        lag = lg->integer;
                    else
                        lag_known = 0;
                }
            }
        }
        if (g)
            freeReplyObject(g);
        jset(o, "groups", groups);
        /* waiting: entries not yet delivered to a worker (the group's lag);
         * pending: delivered and not yet acknowledged */
        jset(o, "waiting",
             have_group && lag_known ? json_integer(lag) : json_null());
        jset(o, "pending", have_group ? json_integer(pending) : json_null());
        jpush(out, o);
    }
    free(qprefix);
    freeReplyObject(r);
    return out;
}

static json_t *read_drivers(marin__cli *c, int64_t now, json_t *totals)
{
    json_t *out = jarr();
    long long sub = 0, ok = 0, failed = 0, running = 0;
    redisReply *r = hgetall(c, "drivers");
    for (size_t i = 0; r && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        json_t *d = parse_value(r->element[i + 1], "driver", k->str);
        json_t *o = jobj();
        jset(o, "id", jstr(k->str));
        jset(o, "host", jcopy(d, "host"));
        jset(o, "pid", jcopy(d, "pid"));
        long long hb = jint(d, "hb_ms");
        jset(o, "hb_ms", hb ? json_integer(hb) : json_null());
        jset(o, "hb_age_ms", hb ? json_integer(now - hb) : json_null());
        char *hbkey = marin__cli_key(c, "d:%s", k->str);
        long long ttl = pttl(c, hbkey);
        free(hbkey);
        jset(o, "alive", json_boolean(ttl != -2));
        long long s = jint(d, "submitted"), su = jint(d, "succeeded"),
                  f = jint(d, "failed"), ru = jint(d, "running");
        jset(o, "submitted", json_integer(s));
        jset(o, "succeeded", json_integer(su));
        jset(o, "failed", json_integer(f));
        jset(o, "running", json_integer(ru));
        sub += s;
        ok += su;
        failed += f;
        running += ru;
        json_decref(d);
        jpush(out, o);
    }
    if (r)
        freeReplyObject(r);
    long long pending = sub - ok - failed - running;
    jset(totals, "submitted", json_integer(sub));
    jset(totals, "pending", json_integer(pending > 0 ? pending : 0));
    jset(totals, "running", json_integer(running));
    jset(totals, "succeeded", json_integer(ok));
    jset(totals, "failed", json_integer(failed));
    return out;
}

/* Every actor (named or not) is in the actor_ids set; names are in the
 * actor's hash. */
static json_t *read_actors(marin__cli *c)
{
    json_t *out = jarr();
    char *set = marin__cli_key(c, "actor_ids");
    redisReply *r = marin__cli_cmd(c, 1, "SMEMBERS %s", set);
    free(set);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *v = r->element[i];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        char *key = marin__cli_key(c, "actor:%s", v->str);
        redisReply *h = marin__cli_cmd(
            c, 1, "HMGET %s class host state restarts error name", key);
        free(key);
        int ok = h && h->type == REDIS_REPLY_ARRAY && h->elements == 6;
        if (!ok || h->element[0]->type != REDIS_REPLY_STRING) { /* gone meanwhile */
            if (h)
                freeReplyObject(h);
            continue;
        }
        json_t *o = jobj();
        jset(o, "name", h->element[5]->type == REDIS_REPLY_STRING && h->element[5]->len
                            ? reply_str(h->element[5])
                            : json_null());
        jset(o, "id", jstr(v->str));
        jset(o, "class", reply_str(h->element[0]));
        jset(o, "host", reply_str(h->element[1]));
        jset(o, "state", reply_str(h->element[2]));
        long long restarts = h->element[3]->type == REDIS_REPLY_STRING
                                 ? strtoll(h->element[3]->str, NULL, 10)
                                 : 0;
        jset(o, "restarts", json_integer(restarts));
        jset(o, "error", reply_str(h->element[4]));
        freeReplyObject(h);
        jpush(out, o);
    }
    if (r)
        freeReplyObject(r);
    return out;
}

static json_t *read_leases(marin__cli *c)
{
    json_t *out = jarr();
    size_t n;
    char **keys = marin__cli_scan(c, "lease:*", &n);
    size_t plen = strlen(c->prefix) + strlen("lease:");
    for (size_t i = 0; i < n; i++) {
        redisReply *v = marin__cli_cmd(c, 1, "GET %s", keys[i]);
        if (!v || v->type != REDIS_REPLY_STRING) {
            if (v)
                freeReplyObject(v); /* expired between SCAN and GET */
            continue;
        }
        json_t *o = jobj();
        jset(o, "key", jstr(keys[i] + plen));
        /* "<token> <owner>" */
        const char *sp = memchr(v->str, ' ', v->len);
        if (sp) {
            jset(o, "token", jstrn(v->str, (size_t)(sp - v->str)));
            jset(o, "owner", jstrn(sp + 1, v->len - (size_t)(sp - v->str) - 1));
        } else {
            jset(o, "token", jstrn(v->str, v->len));
            jset(o, "owner", json_null());
        }
        freeReplyObject(v);
        long long ttl = pttl(c, keys[i]);
        jset(o, "ttl_ms", ttl >= 0 ? json_integer(ttl) : json_null());
        jpush(out, o);
    }
    marin__cli_free_strv(keys);
    return out;
}

static long long dead_letters(marin__cli *c)
{
    char *key = marin__cli_key(c, "dead");
    redisReply *r = marin__cli_cmd(c, 1, "XLEN %s", key);
    free(key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    if (r)
        freeReplyObject(r);
    return n;
}

/* ---- tables -------------------------------------------------------------- */

typedef struct table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, nrows * ncols */
} table;

static void table_add(table *t, const char *const *row)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        char **nc = realloc(t->cells, t->cap * t->ncols * sizeof *nc);
        if (!nc)
            marin__cli_die(MARIN__CLI_EXIT_FAIL, "out of memory");
        t->cells = nc;
    }
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] =
            marin__cli_xstrdup(row[i] ? row[i] : "-");
    t->nrows++;
}

static void table_print(table *t)
{
    size_t w[16] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            if (l > w[i])
                w[i] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            if (i + 1 == t->ncols)
                printf("%s\n", s);
            else
                printf("%-*s  ", (int)w[i], s);
        }
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

/* Resources as text: "cpus=4,gpus=1" stays; {"cpus":4} becomes cpus=4. */
static void fmt_res(json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v)) {
        snprintf(buf, cap, "%s", json_string_value(v));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        size_t off = 0;
        buf[0] = '\0';
        json_object_foreach (v, k, x) {
            char val[64];
            if (json_is_integer(x))
                snprintf(val, sizeof val, "%lld",
                         (long long)json_integer_value(x));
            else if (json_is_real(x))
                snprintf(val, sizeof val, "%g", json_real_value(x));
            else if (json_is_string(x))
                snprintf(val, sizeof val, "%s", json_string_value(x));
            else
                snprintf(val, sizeof val, "?");
            int n = snprintf(buf + off, off < cap ? cap - off : 0, "%s%s=%s",
                             off ? "," : "", k, val);
            if (n > 0)
                off += (size_t)n;
            if (off >= cap)
                break;
        }
        if (!buf[0])
            snprintf(buf, cap, "-");
    } else if (json_is_integer(v)) {
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    } else {
        snprintf(buf, cap, "-");
    }
}

static void fmt_ms(json_t *v, char *buf, size_t cap, const char *suffix)
{
    if (!json_is_integer(v)) {
        snprintf(buf, cap, "-");
        return;
    }
    long long ms = json_integer_value(v);
    if (ms < 0)
        ms = 0;
    if (ms < 10000)
        snprintf(buf, cap, "%.1fs%s", (double)ms / 1000.0, suffix);
    else if (ms < 60000)
        snprintf(buf, cap, "%llds%s", ms / 1000, suffix);
    else if (ms < 3600 * 1000)
        snprintf(buf, cap, "%lldm%02llds%s", ms / 60000, ms / 1000 % 60,
                 suffix);
    else
        snprintf(buf, cap, "%lldh%02lldm%s", ms / 3600000, ms / 60000 % 60,
                 suffix);
}

static void fmt_json(json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        snprintf(buf, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_true(v))
        snprintf(buf, cap, "yes");
    else if (json_is_false(v))
        snprintf(buf, cap, "no");
    else
        snprintf(buf, cap, "-");
}

static void print_human(json_t *s)
{
    table t = {0};
    char a[256], b[256], c[64], d[64], e[64], f[64];
    size_t i;
    json_t *x;

    printf("namespace %s at %s\n",
           json_string_value(json_object_get(s, "namespace")),
           json_string_value(json_object_get(s, "server")));

    json_t *ws = json_object_get(s, "workers");
    size_t alive = 0;
    json_array_foreach (ws, i, x) {
        alive += json_is_true(json_object_get(x, "alive"));
    }
    printf("\nWORKERS (%zu alive, %zu dead)\n", alive,
           json_array_size(ws) - alive);
    if (json_array_size(ws)) {
        t.ncols = 7;
        const char *hdr[] = {"ID",      "HOST",      "CAPACITY", "FREE",
                             "RUNNING", "HEARTBEAT", "STATE"};
        table_add(&t, hdr);
        json_array_foreach (ws, i, x) {
            fmt_res(json_object_get(x, "resources"), a, sizeof a);
            fmt_res(json_object_get(x, "free"), b, sizeof b);
            fmt_json(json_object_get(x, "running"), c, sizeof c);
            fmt_ms(json_object_get(x, "hb_age_ms"), d, sizeof d, " ago");
            int live = json_is_true(json_object_get(x, "alive"));
            int drain = json_is_true(json_object_get(x, "draining"));
            const char *row[] = {json_string_value(json_object_get(x, "id")),
                                 json_string_value(json_object_get(x, "host")),
                                 a,
                                 b,
                                 c,
                                 d,
                                 !live   ? "dead"
                                 : drain ? "draining"
                                         : "alive"};
            table_add(&t, row);
        }
        table_print(&t);
    }

    json_t *qs = json_object_get(s, "queues");
    printf("\nQUEUES (%zu)\n", json_array_size(qs));
    if (json_array_size(qs)) {
        t.ncols = 5;
        const char *hdr[] = {"TASK", "SHAPE", "LENGTH", "WAITING", "PENDING"};
        table_add(&t, hdr);
        json_array_foreach (qs, i, x) {
            fmt_json(json_object_get(x, "length"), c, sizeof c);
            fmt_json(json_object_get(x, "waiting"), d, sizeof d);
            fmt_json(json_object_get(x, "pending"), e, sizeof e);
            json_t *task = json_object_get(x, "task");
            const char *row[] = {
                json_is_string(task)
                    ? json_string_value(task)
                    : json_string_value(json_object_get(x, "key")),
                json_string_value(json_object_get(x, "shape")), c, d, e};
            table_add(&t, row);
        }
        table_print(&t);
    }

    json_t *tt = json_object_get(s, "tasks");
    printf(
        "\nTASKS  submitted %lld  pending %lld  running %lld  succeeded %lld  "
        "failed %lld\n",
        (long long)json_integer_value(json_object_get(tt, "submitted")),
        (long long)json_integer_value(json_object_get(tt, "pending")),
        (long long)json_integer_value(json_object_get(tt, "running")),
        (long long)json_integer_value(json_object_get(tt, "succeeded")),
        (long long)json_integer_value(json_object_get(tt, "failed")));

    json_t *ds = json_object_get(s, "drivers");
    printf("\nDRIVERS (%zu)\n", json_array_size(ds));
    if (json_array_size(ds)) {
        t.ncols = 7;
        const char *hdr[] = {"ID",     "HOST",    "SUBMITTED", "SUCCEEDED",
                             "FAILED", "RUNNING", "STATE"};
        table_add(&t, hdr);
        json_array_foreach (ds, i, x) {
            fmt_json(json_object_get(x, "submitted"), a, sizeof a);
            fmt_json(json_object_get(x, "succeeded"), b, sizeof b);
            fmt_json(json_object_get(x, "failed"), c, sizeof c);
            fmt_json(json_object_get(x, "running"), d, sizeof d);
            const char *row[] = {
                json_string_value(json_object_get(x, "id")),
                json_string_value(json_object_get(x, "host")),
                a,
                b,
                c,
                d,
                json_is_true(json_object_get(x, "alive")) ? "alive" : "gone"};
            table_add(&t, row);
        }
        table_print(&t);
    }

    json_t *as = json_object_get(s, "actors");
    printf("\nACTORS (%zu)\n", json_array_size(as));
    if (json_array_size(as)) {
        t.ncols = 6;
        const char *hdr[] = {"NAME", "ID",    "CLASS",
                             "HOST", "STATE", "RESTARTS"};
        table_add(&t, hdr);
        json_array_foreach (as, i, x) {
            fmt_json(json_object_get(x, "restarts"), c, sizeof c);
            const char *row[] = {json_string_value(json_object_get(x, "name")),
                                 json_string_value(json_object_get(x, "id")),
                                 json_string_value(json_object_get(x, "class")),
                                 json_string_value(json_object_get(x, "host")),
                                 json_string_value(json_object_get(x, "state")),
                                 c};
            table_add(&t, row);
        }
        table_print(&t);
    }

    json_t *ls = json_object_get(s, "leases");
    printf("\nLEASES (%zu)\n", json_array_size(ls));
    if (json_array_size(ls)) {
        t.ncols = 4;
        const char *hdr[] = {"KEY", "OWNER", "TOKEN", "TTL"};
        table_add(&t, hdr);
        json_array_foreach (ls, i, x) {
            json_t *ttl = json_object_get(x, "ttl_ms");
            if (json_is_integer(ttl))
                fmt_ms(ttl, f, sizeof f, "");
            else
                snprintf(f, sizeof f, "none");
            const char *row[] = {json_string_value(json_object_get(x, "key")),
                                 json_string_value(json_object_get(x, "owner")),
                                 json_string_value(json_object_get(x, "token")),
                                 f};
            table_add(&t, row);
        }
        table_print(&t);
    }

    printf("\nDEAD LETTERS %lld\n",
           (long long)json_integer_value(json_object_get(s, "dead_letters")));
}

int marin__cli_status(marin__cli *c, int json)
{
    int64_t now = marin__cli_now_ms(c);
    json_t *s = jobj();
    json_t *totals = jobj();
    jset(s, "namespace", jstr(c->ns));
    jset(s, "server", jstr(c->addr));
    jset(s, "db", json_integer(c->db));
    jset(s, "now_ms", json_integer(now));
    json_t *ws = read_workers(c, now), *qs = read_queues(c);
    json_t *ds = read_drivers(c, now, totals), *as = read_actors(c);
    json_t *ls = read_leases(c);
    jsort(ws, "id");
    jsort(qs, "key");
    jsort(ds, "id");
    jsort(as, "name");
    jsort(ls, "key");
    jset(s, "workers", ws);
    jset(s, "queues", qs);
    jset(s, "drivers", ds);
    jset(s, "tasks", totals);
    jset(s, "actors", as);
    jset(s, "leases", ls);
    jset(s, "dead_letters", json_integer(dead_letters(c)));
    if (json) {
        if (json_dumpf(s, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
            marin__cli_die(MARIN__CLI_EXIT_FAIL, "status: cannot write JSON");
        fputc('\n', stdout);
    } else {
        print_human(s);
    }
    json_decref(s);
    return 0;
}
