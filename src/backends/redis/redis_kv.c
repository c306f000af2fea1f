/* The redis backend's KV store and leases (redis_kv.h), with the local
 * store's rules and words (src/backends/local/local_kv.c): a lease free or
 * expired is taken with a new token (INCR of fence:<key>, which never
 * expires, so tokens strictly increase per key across Redis restarts); a
 * lease held by its owner is extended with the same token; renew and
 * release need the holder; put_fenced needs the token of the current
 * lease. Expiry is Redis's (PX), so no clock is read here.
 *
 * What Redis cannot tell apart after PX removed a lease: whether it expired
 * or was released (both leave fence:<key> and no lease:<key>); the messages
 * say "expired or was released" where the local store says which.
 *
 * Every call is synchronous on the backend's connection and not retried:
 * while Redis is unreachable they fail at once with MARIN_EUNAVAILABLE. */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "fail.h"
#include "redis_keys.h"
#include "redis_kv.h"

/* Longest lease: PX must stay below LLONG_MAX minus Redis's clock. */
#define TTL_MAX ((int64_t)1 << 42)

/* KEYS[1] lease, KEYS[2] fence; ARGV[1] owner, ARGV[2] ttl ms.
 * {0, token} taken or extended; {1, holder, pttl} busy; {-1, raw} corrupt. */
static const char acquire_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  local sp = string.find(v, ' ', 1, true)\n"
    "  if not sp then return {-1, v} end\n"
    "  local owner = string.sub(v, sp + 1)\n"
    "  if owner ~= ARGV[1] then\n"
    "    return {1, owner, redis.call('PTTL', KEYS[1])}\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return {0, string.sub(v, 1, sp - 1)}\n"
    "end\n"
    "local t = string.format('%d', redis.call('INCR', KEYS[2]))\n"
    "redis.call('SET', KEYS[1], t .. ' ' .. ARGV[1], 'PX', ARGV[2])\n"
    "return {0, t}\n";

/* KEYS[1] lease, KEYS[2] fence; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3]
 * "renew" or "release". {0} done; {1, holder, pttl} held by another;
 * {2, fence exists} nobody holds it; {-1, raw} corrupt. */
static const char holder_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  local sp = string.find(v, ' ', 1, true)\n"
    "  if not sp then return {-1, v} end\n"
    "  local owner = string.sub(v, sp + 1)\n"
    "  if owner == ARGV[1] then\n"
    "    if ARGV[3] == 'release' then\n"
    "      redis.call('DEL', KEYS[1])\n"
    "    else\n"
    "      redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "    end\n"
    "    return {0}\n"
    "  end\n"
    "  return {1, owner, redis.call('PTTL', KEYS[1])}\n"
    "end\n"
    "return {2, redis.call('EXISTS', KEYS[2])}\n";

/* KEYS[1] kv, KEYS[2] lease, KEYS[3] fence; ARGV[1] token, ARGV[2] value.
 * {0} written; {1, current, holder} another token holds it; {2, current}
 * never acquired; {3, current} expired or released; {-1, raw} corrupt. */
static const char fenced_lua[] =
    "local v = redis.call('GET', KEYS[2])\n"
    "local cur = redis.call('GET', KEYS[3])\n"
    "if v then\n"
    "  local sp = string.find(v, ' ', 1, true)\n"
    "  if not sp then return {-1, v} end\n"
    "  if string.sub(v, 1, sp - 1) == ARGV[1] then\n"
    "    redis.call('SET', KEYS[1], ARGV[2])\n"
    "    return {0}\n"
    "  end\n"
    "  return {1, cur or '0', string.sub(v, sp + 1)}\n"
    "end\n"
    "if not cur then return {2, '0'} end\n"
    "return {3, cur}\n";

/* KEYS[1] kv; ARGV[1] "0" (expect absent) or "1", ARGV[2] expected value,
 * ARGV[3] new value. {0} written; {1, len} exists; {2} missing; {3, len}
 * differs. */
static const char cas_lua[] =
    "if ARGV[1] == '0' then\n"
    "  if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "    return {1, redis.call('STRLEN', KEYS[1])}\n"
    "  end\n"
    "else\n"
    "  if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end\n"
    "  local n = redis.call('STRLEN', KEYS[1])\n"
    "  if n ~= string.len(ARGV[2]) or redis.call('GET', KEYS[1]) ~= ARGV[2] then\n"
    "    return {3, n}\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[3])\n"
    "return {0}\n";

static const char *const lease_fn[] = {"marin_lease_acquire", "marin_lease_renew",
                                       "marin_lease_release"};
enum { OP_ACQUIRE, OP_RENEW, OP_RELEASE };

/* ---- helpers ---- */

/* Redis's refusals that say it cannot serve now, as opposed to a key
 * holding something marin did not write. */
static int error_code(const char *words)
{
    static const char *const busy[] = {"OOM",        "READONLY", "LOADING",
                                       "MISCONF",    "BUSY",     "MASTERDOWN",
                                       "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN"};
    for (size_t i = 0; i < sizeof busy / sizeof *busy; i++) {
        size_t n = strlen(busy[i]);
        if (!strncmp(words, busy[i], n) && (words[n] == ' ' || !words[n]))
            return MARIN_EUNAVAILABLE;
    }
    return MARIN_EPROTO;
}

/* One synchronous command. On success *out is the reply (not an error
 * reply); on failure a message that starts with @p fn and names @p key. */
static int call(marin__redis_kv *kv, const char *fn, const char *key, redisReply **out,
                int argc, const char *const *argv, const size_t *lens)
{
    int rc = marin__rconn_call(kv->conn, 0, out, argc, argv, lens);
    if (rc != MARIN_OK) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", marin__err_msg());
        return marin__err(rc, "%s: '%s': %s", fn, key, msg);
    }
    redisReply *r = *out;
    if (r->type != REDIS_REPLY_ERROR)
        return MARIN_OK;
    const char *words = r->str ? r->str : "";
    rc = marin__err(error_code(words), "%s: Redis at %s refused the command on '%s': %s",
                    fn, marin__rconn_addr(kv->conn), key, words);
    freeReplyObject(r);
    *out = NULL;
    return rc;
}

/* "marin:{NS}:<kind>:<key>" into buf. */
static int make_key(marin__redis_kv *kv, char *buf, const char *kind, const char *key,
                    const char *fn)
{
    int n = marin__rkey(buf, MARIN__RKEY_MAX, kv->ns, "%s:%s", kind, key);
    if (n < 0 || n >= MARIN__RKEY_MAX)
        return marin__err(MARIN_EINVAL, "%s: key '%s' is too long for a Redis key", fn,
                          key);
    return MARIN_OK;
}

static int64_t clamp_ttl(int64_t ttl_ms)
{
    return ttl_ms < 1 ? 1 : ttl_ms > TTL_MAX ? TTL_MAX : ttl_ms;
}

/* A script's answer must be an array whose first element is an integer. */
static int script_code(marin__redis_kv *kv, const char *fn, const char *key,
                       const redisReply *r, long long *code)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return marin__err(MARIN_EPROTO, "%s: Redis at %s gave an unexpected answer "
                          "(type %d) for '%s'", fn, marin__rconn_addr(kv->conn), r->type,
                          key);
    *code = r->element[0]->integer;
    return MARIN_OK;
}

/* Element @p i as text ("" when absent or not text). */
static const char *elem_str(const redisReply *r, size_t i)
{
    if (i >= r->elements)
        return "";
    const redisReply *e = r->element[i];
    return (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) && e->str
               ? e->str
               : "";
}

static long long elem_int(const redisReply *r, size_t i)
{
    if (i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING && e->str)
        return strtoll(e->str, NULL, 10);
    return 0;
}

static int corrupt_lease(marin__redis_kv *kv, const char *fn, const char *lease_key,
                         const redisReply *r)
{
    return marin__err(MARIN_EPROTO, "%s: lease '%s' in Redis at %s holds '%.64s', not "
                      "'<token> <owner>'", fn, lease_key, marin__rconn_addr(kv->conn),
                      elem_str(r, 1));
}

/* ---- the ops ---- */

static int kv_put(marin__redis_kv *kv, const char *key, const void *val, size_t len)
{
    static const char fn[] = "marin_kv_put";
    char k[MARIN__RKEY_MAX];
    int rc = make_key(kv, k, "kv", key, fn);
    if (rc != MARIN_OK)
        return rc;
    const char *argv[3] = {"SET", k, len ? val : ""};
    size_t lens[3] = {3, strlen(k), len};
    redisReply *r;
    if ((rc = call(kv, fn, key, &r, 3, argv, lens)) != MARIN_OK)
        return rc;
    freeReplyObject(r);
    return MARIN_OK;
}

static int kv_get(marin__redis_kv *kv, const char *key, void **val, size_t *len)
{
    static const char fn[] = "marin_kv_get";
    *val = NULL;
    char k[MARIN__RKEY_MAX];
    int rc = make_key(kv, k, "kv", key, fn);
    if (rc != MARIN_OK)
        return rc;
    const char *argv[2] = {"GET", k};
    redisReply *r;
    if ((rc = call(kv, fn, key, &r, 2, argv, NULL)) != MARIN_OK)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = marin__err(MARIN_ENOTFOUND, "%s: no key '%s' in the store", fn, key);
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = marin__err(MARIN_EPROTO, "%s: Redis at %s gave an unexpected answer "
                        "(type %d) for '%s'", fn, marin__rconn_addr(kv->conn), r->type,
                        key);
    } else if (!(*val = marin__malloc(r->len))) {
        rc = marin__err(MARIN_ENOMEM, "%s: out of memory for the value of '%s' "
                        "(%zu bytes)", fn, key, r->len);
    } else {
        if (r->len)
            memcpy(*val, r->str, r->len);
        *len = r->len;
    }
    freeReplyObject(r);
    return rc;
}

static int kv_cas(marin__redis_kv *kv, const char *key, const void *expect, size_t elen,
                  const void *val, size_t len)
{
    static const char fn[] = "marin_kv_cas";
    char k[MARIN__RKEY_MAX];
    int rc = make_key(kv, k, "kv", key, fn);
    if (rc != MARIN_OK)
        return rc;
    const char *argv[7] = {"EVAL", cas_lua, "1", k, expect ? "1" : "0",
                           expect && elen ? expect : "", len ? val : ""};
    size_t lens[7] = {4, sizeof cas_lua - 1, 1, strlen(k), 1, expect ? elen : 0, len};
    redisReply *r;
    if ((rc = call(kv, fn, key, &r, 7, argv, lens)) != MARIN_OK)
        return rc;
    long long code = 0;
    if ((rc = script_code(kv, fn, key, r, &code)) == MARIN_OK) {
        long long now_len = elem_int(r, 1);
        if (code == 1)
            rc = marin__err(MARIN_ECONFLICT, "%s: key '%s' exists (%lld bytes), expected "
                            "it absent", fn, key, now_len);
        else if (code == 2)
            rc = marin__err(MARIN_ECONFLICT, "%s: key '%s' does not exist, expected a "
                            "value of %zu bytes", fn, key, elen);
        else if (code == 3)
            rc = marin__err(MARIN_ECONFLICT, "%s: the value of '%s' differs from the "
                            "expected one (%lld bytes now, %zu expected)", fn, key,
                            now_len, elen);
    }
    freeReplyObject(r);
    return rc;
}

static int kv_del(marin__redis_kv *kv, const char *key)
{
    static const char fn[] = "marin_kv_delete";
    char k[MARIN__RKEY_MAX];
    int rc = make_key(kv, k, "kv", key, fn);
    if (rc != MARIN_OK)
        return rc;
    const char *argv[2] = {"DEL", k};
    redisReply *r;
    if ((rc = call(kv, fn, key, &r, 2, argv, NULL)) != MARIN_OK)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = marin__err(MARIN_EPROTO, "%s: Redis at %s gave an unexpected answer "
                        "(type %d) for '%s'", fn, marin__rconn_addr(kv->conn), r->type,
                        key);
    else if (r->integer == 0)
        rc = marin__err(MARIN_ENOTFOUND, "%s: no key '%s' in the store", fn, key);
    freeReplyObject(r);
    return rc;
}

static int kv_lease(marin__redis_kv *kv, int op, const char *key, const char *owner,
                    int64_t ttl_ms, uint64_t *token)
{
    const char *fn = lease_fn[op];
    char lk[MARIN__RKEY_MAX], fk[MARIN__RKEY_MAX];
    int rc = make_key(kv, lk, "lease", key, fn);
    if (rc == MARIN_OK)
        rc = make_key(kv, fk, "fence", key, fn);
    if (rc != MARIN_OK)
        return rc;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, clamp_ttl(ttl_ms));
    const char *script = op == OP_ACQUIRE ? acquire_lua : holder_lua;
    const char *argv[8] = {"EVAL", script, "2", lk, fk, owner, ttl,
                           op == OP_RELEASE ? "release" : "renew"};
    int argc = op == OP_ACQUIRE ? 7 : 8;
    redisReply *r;
    if ((rc = call(kv, fn, key, &r, argc, argv, NULL)) != MARIN_OK)
        return rc;
    long long code = 0;
    if ((rc = script_code(kv, fn, key, r, &code)) != MARIN_OK) {
        /* told */
    } else if (code == -1) {
        rc = corrupt_lease(kv, fn, key, r);
    } else if (code == 0) {
        if (op == OP_ACQUIRE && token)
            *token = strtoull(elem_str(r, 1), NULL, 10);
    } else if (code == 1 && op == OP_ACQUIRE) {
        rc = marin__err(MARIN_EBUSY, "%s: lease '%s' is held by '%s' (expires in %lld "
                        "ms); '%s' cannot take it", fn, key, elem_str(r, 1),
                        elem_int(r, 2), owner);
    } else if (code == 1) {
        rc = marin__err(MARIN_EBUSY, "%s: lease '%s' is held by '%s' (expires in %lld "
                        "ms), not by '%s'", fn, key, elem_str(r, 1), elem_int(r, 2),
                        owner);
    } else if (elem_int(r, 1)) {
        rc = marin__err(MARIN_EBUSY, "%s: lease '%s' expired or was released and "
                        "nobody holds it now; '%s' must acquire it again", fn, key, owner);
    } else {
        rc = marin__err(MARIN_EBUSY, "%s: nobody holds lease '%s' (never acquired); "
                        "'%s' must acquire it first", fn, key, owner);
    }
    freeReplyObject(r);
    return rc;
}

static int kv_put_fenced(marin__redis_kv *kv, const char *key, const void *val,
                         size_t len, const char *lease_key, uint64_t token)
{
    static const char fn[] = "marin_kv_put_fenced";
    char k[MARIN__RKEY_MAX], lk[MARIN__RKEY_MAX], fk[MARIN__RKEY_MAX];
    int rc = make_key(kv, k, "kv", key, fn);
    if (rc == MARIN_OK)
        rc = make_key(kv, lk, "lease", lease_key, fn);
    if (rc == MARIN_OK)
        rc = make_key(kv, fk, "fence", lease_key, fn);
    if (rc != MARIN_OK)
        return rc;
    char tok[24];
    snprintf(tok, sizeof tok, "%" PRIu64, token);
    const char *argv[8] = {"EVAL", fenced_lua, "3", k, lk, fk, tok, len ? val : ""};
    size_t lens[8] = {4, sizeof fenced_lua - 1, 1, strlen(k), strlen(lk), strlen(fk),
                      strlen(tok), len};
    redisReply *r;
    if ((rc = call(kv, fn, key, &r, 8, argv, lens)) != MARIN_OK)
        return rc;
    long long code = 0;
    if ((rc = script_code(kv, fn, key, r, &code)) == MARIN_OK && code != 0) {
        char why[MARIN_NAME_MAX + 64];
        if (code == -1) {
            rc = corrupt_lease(kv, fn, lease_key, r);
        } else {
            if (code == 1)
                snprintf(why, sizeof why, "is held by '%s' under another token",
                         elem_str(r, 2));
            else if (code == 2)
                snprintf(why, sizeof why, "was never acquired");
            else
                snprintf(why, sizeof why, "expired or was released");
            rc = marin__err(MARIN_ECONFLICT, "%s: refused to write '%s': lease '%s' %s "
                            "(current token %s, given %" PRIu64 ")", fn, key, lease_key,
                            why, elem_str(r, 1), token);
        }
    }
    freeReplyObject(r);
    return rc;
}

/* ---- the two tables: the state is the backend's, or the KV struct ---- */

#define KV_OPS(prefix, OF)                                                         \
    static int prefix##put(void *state, const char *key, const void *val,         \
                           size_t len)                                             \
    {                                                                              \
        return kv_put(OF(state), key, val, len);                                   \
    }                                                                              \
    static int prefix##get(void *state, const char *key, void **val, size_t *len)  \
    {                                                                              \
        return kv_get(OF(state), key, val, len);                                   \
    }                                                                              \
    static int prefix##cas(void *state, const char *key, const void *expect,      \
                           size_t elen, const void *val, size_t len)               \
    {                                                                              \
        return kv_cas(OF(state), key, expect, elen, val, len);                     \
    }                                                                              \
    static int prefix##del(void *state, const char *key)                           \
    {                                                                              \
        return kv_del(OF(state), key);                                             \
    }                                                                              \
    static int prefix##acquire(void *state, const char *key, const char *owner,   \
                               int64_t ttl_ms, uint64_t *token)                    \
    {                                                                              \
        return kv_lease(OF(state), OP_ACQUIRE, key, owner, ttl_ms, token);         \
    }                                                                              \
    static int prefix##renew(void *state, const char *key, const char *owner,     \
                             int64_t ttl_ms)                                       \
    {                                                                              \
        return kv_lease(OF(state), OP_RENEW, key, owner, ttl_ms, NULL);            \
    }                                                                              \
    static int prefix##release(void *state, const char *key, const char *owner)   \
    {                                                                              \
        return kv_lease(OF(state), OP_RELEASE, key, owner, 1, NULL);               \
    }                                                                              \
    static int prefix##put_fenced(void *state, const char *key, const void *val,  \
                                  size_t len, const char *lease_key,               \
                                  uint64_t token)                                  \
    {                                                                              \
        return kv_put_fenced(OF(state), key, val, len, lease_key, token);          \
    }

static marin__redis_kv *as_kv(void *state)
{
    return state;
}

KV_OPS(backend_, marin__redis_kv_of)
KV_OPS(direct_, as_kv)

const marin__kv_ops marin__redis_kv_ops = {
    .put = backend_put,
    .get = backend_get,
    .cas = backend_cas,
    .del = backend_del,
    .lease_acquire = backend_acquire,
    .lease_renew = backend_renew,
    .lease_release = backend_release,
    .put_fenced = backend_put_fenced,
};

const marin__kv_ops marin__redis_kv_conn_ops = {
    .put = direct_put,
    .get = direct_get,
    .cas = direct_cas,
    .del = direct_del,
    .lease_acquire = direct_acquire,
    .lease_renew = direct_renew,
    .lease_release = direct_release,
    .put_fenced = direct_put_fenced,
};
