/* The Lua scripts: each is one atomic step on the server. They are sent
 * with EVAL (Redis caches the compiled body by its SHA1), which survives a
 * Redis restart without the NOSCRIPT dance. Every key is under the
 * namespace's hash tag. */
#include "redis_internal.h"

/* A worker's outcome. KEYS: stream, done stream. ARGV: group, consumer,
 * entry id, seq, attempt, code, worker, frame, result ttl ms.
 * 1: delivered; 0: the entry is no longer this consumer's (it was reclaimed
 * or cancelled): the outcome is dropped, so a result arrives at most once. */
static const char ack_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])\n"
    "if #p == 0 then return 0 end\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
    "redis.call('XDEL', KEYS[1], ARGV[3])\n"
    "redis.call('XADD', KEYS[2], '*', 's', ARGV[4], 'a', ARGV[5], 'c', ARGV[6],\n"
    "           'w', ARGV[7], 'f', ARGV[8])\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[9])\n"
    "return 1\n";

/* Entries of a dead consumer. KEYS: stream. ARGV: group, dead consumer,
 * key prefix, most entries, result ttl ms, message. Each entry is acked,
 * deleted and reported to its driver as MARIN_EWORKER (the driver retries
 * within budget). -1: the consumer's heartbeat is back (nothing done). */
static const char reclaim_lua[] =
    "if redis.call('EXISTS', ARGV[3] .. 'w:' .. ARGV[2]) == 1 then return -1 end\n"
    "local max = tonumber(ARGV[4])\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', max, ARGV[2])\n"
    "for _, e in ipairs(p) do\n"
    "  local id = e[1]\n"
    "  local r = redis.call('XRANGE', KEYS[1], id, id)\n"
    "  redis.call('XACK', KEYS[1], ARGV[1], id)\n"
    "  redis.call('XDEL', KEYS[1], id)\n"
    "  if #r > 0 then\n"
    "    local f = r[1][2]\n"
    "    local d, s, a\n"
    "    for i = 1, #f - 1, 2 do\n"
    "      if f[i] == 'd' then d = f[i + 1] elseif f[i] == 's' then s = f[i + 1]\n"
    "      elseif f[i] == 'a' then a = f[i + 1] end\n"
    "    end\n"
    "    if d and s and a then\n"
    "      local dk = ARGV[3] .. 'done:' .. d\n"
    "      redis.call('XADD', dk, '*', 's', s, 'a', a, 'c', '-14', 'w', ARGV[2],\n"
    "                 'm', ARGV[6])\n"
    "      redis.call('PEXPIRE', dk, ARGV[5])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #p < max then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end\n"
    "return #p\n";

/* A corrupt or foreign entry. KEYS: stream, dead-letter stream. ARGV: group,
 * entry id, reason, worker, key prefix, result ttl ms. Moved with its raw
 * fields; when it names a driver, sequence and attempt, the driver hears
 * MARIN_EPROTO so its task does not wait forever. */
static const char deadletter_lua[] =
    "local r = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])\n"
    "local args = {'XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', 'queue', KEYS[1],\n"
    "              'id', ARGV[2], 'reason', ARGV[3], 'worker', ARGV[4]}\n"
    "local d, s, a\n"
    "if #r > 0 then\n"
    "  local f = r[1][2]\n"
    "  for i = 1, #f - 1, 2 do\n"
    "    table.insert(args, 'field:' .. f[i])\n"
    "    table.insert(args, f[i + 1])\n"
    "    if f[i] == 'd' then d = f[i + 1] elseif f[i] == 's' then s = f[i + 1]\n"
    "    elseif f[i] == 'a' then a = f[i + 1] end\n"
    "  end\n"
    "end\n"
    "redis.call(unpack(args))\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "if d and s and a and string.match(d, '^[%w]+$') and string.match(s, '^%d+$')\n"
    "   and string.match(a, '^%d+$') then\n"
    "  local dk = ARGV[5] .. 'done:' .. d\n"
    "  redis.call('XADD', dk, '*', 's', s, 'a', a, 'c', '-17', 'w', ARGV[4],\n"
    "             'm', ARGV[3])\n"
    "  redis.call('PEXPIRE', dk, ARGV[6])\n"
    "end\n"
    "return 1\n";

/* Live workers. KEYS: workers hash. ARGV: key prefix. The JSON of each
 * worker whose heartbeat key exists. */
static const char live_lua[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "local out = {}\n"
    "for i = 1, #h - 1, 2 do\n"
    "  if redis.call('EXISTS', ARGV[1] .. 'w:' .. h[i]) == 1 then\n"
    "    table.insert(out, h[i + 1])\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Hand an entry back (a draining worker): the same fields go to the end of
 * the stream as a new entry for another worker, the old one is acked and
 * deleted. KEYS: stream. ARGV: group, consumer, entry id. 0 when the entry
 * is no longer this consumer's. */
static const char handback_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])\n"
    "if #p == 0 then return 0 end\n"
    "local r = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])\n"
    "redis.call('XDEL', KEYS[1], ARGV[3])\n"
    "if #r == 0 then return 0 end\n"
    "local args = {'XADD', KEYS[1], '*'}\n"
    "for _, v in ipairs(r[1][2]) do table.insert(args, v) end\n"
    "redis.call(unpack(args))\n"
    "return 1\n";

const char *marin__redis_script(int which)
{
    switch (which) {
    case MARIN__RS_ACK: return ack_lua;
    case MARIN__RS_RECLAIM: return reclaim_lua;
    case MARIN__RS_DEADLETTER: return deadletter_lua;
    case MARIN__RS_LIVE: return live_lua;
    case MARIN__RS_HANDBACK: return handback_lua;
    }
    return "return nil";
}
