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
 * key prefix, most entries, result ttl ms, message, force ("1": a worker
 * restarted under the same name reclaims what its previous process left,
 * though the heartbeat key is its own again). Each entry is acked,
 * deleted and reported to its driver as MARIN_EWORKER (the driver retries
 * within budget); an entry nobody waits for (sequence 0: an actor's
 * restart) goes back to the end of the stream instead. -1: the consumer's heartbeat is back (nothing done). */
static const char reclaim_lua[] =
    "if ARGV[7] ~= '1' and redis.call('EXISTS', ARGV[3] .. 'w:' .. ARGV[2]) == 1 then\n"
    "  return -1\n"
    "end\n"
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
    "    if s == '0' then\n"
    "      local args = {'XADD', KEYS[1], '*'}\n"
    "      for _, v in ipairs(f) do table.insert(args, v) end\n"
    "      redis.call(unpack(args))\n"
    "    elseif d and s and a then\n"
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

/* Actors whose host died, and calls left to dead actors. KEYS: the
 * actor_ids set. ARGV: key prefix, result ttl ms, how many ids to look at,
 * and optionally a worker id whose actors count as orphaned (that worker
 * restarted under the same name).
 * A dead host: its pending calls fail with MARIN_EWORKER, and the actor's
 * creation is queued again (restart from its checkpoint) within
 * max_restarts, else it is marked dead. A dead actor: calls still in its
 * stream fail. Returns how many actors or calls it handled. */
static const char actor_reap_lua[] =
    "local P = ARGV[1]\n"
    "local function notify(e, code, msg)\n"
    "  local f = e[2]\n"
    "  local d, s, a\n"
    "  for i = 1, #f - 1, 2 do\n"
    "    if f[i] == 'd' then d = f[i + 1] elseif f[i] == 's' then s = f[i + 1]\n"
    "    elseif f[i] == 'a' then a = f[i + 1] end\n"
    "  end\n"
    "  if d and s and a then\n"
    "    local dk = P .. 'done:' .. d\n"
    "    redis.call('XADD', dk, '*', 's', s, 'a', a, 'c', code, 'w', '', 'm', msg)\n"
    "    redis.call('PEXPIRE', dk, ARGV[2])\n"
    "  end\n"
    "end\n"
    "local n = 0\n"
    "local function reap(id)\n"
    "  local k = P .. 'actor:' .. id\n"
    "  local stream = P .. 'ac:' .. id\n"
    "  local st = redis.call('HGET', k, 'state')\n"
    "  if not st then\n"
    "    redis.call('SREM', KEYS[1], id)\n"
    "  elseif st == 'dead' then\n"
    "    local err = redis.call('HGET', k, 'error') or 'the actor is dead'\n"
    "    local code = redis.call('HGET', k, 'code') or '-14'\n"
    "    local es = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1000)\n"
    "    for _, e in ipairs(es) do\n"
    "      notify(e, code, 'call to actor ' .. id .. ' failed: ' .. err)\n"
    "      redis.call('XACK', stream, 'w', e[1])\n"
    "      redis.call('XDEL', stream, e[1])\n"
    "      n = n + 1\n"
    "    end\n"
    "    if #es == 0 and redis.call('HEXISTS', k, 'reaped') == 0 then\n"
    "      redis.call('HSET', k, 'reaped', '1')\n"
    "      redis.call('PEXPIRE', k, ARGV[2])\n"
    "      redis.call('PEXPIRE', stream, ARGV[2])\n"
    "    end\n"
    "  elseif st == 'alive' then\n"
    "    local host = redis.call('HGET', k, 'host')\n"
    "    if host and host ~= '' and (host == ARGV[4] or\n"
    "                                redis.call('EXISTS', P .. 'w:' .. host) == 0) then\n"
    "      local p = redis.call('XPENDING', stream, 'w', '-', '+', 1000, host)\n"
    "      for _, e in ipairs(p) do\n"
    "        local r = redis.call('XRANGE', stream, e[1], e[1])\n"
    "        if #r > 0 then\n"
    "          notify(r[1], '-14', 'call to actor ' .. id .. ' was lost: its host worker ' ..\n"
    "                 host .. ' died while it ran')\n"
    "        end\n"
    "        redis.call('XACK', stream, 'w', e[1])\n"
    "        redis.call('XDEL', stream, e[1])\n"
    "      end\n"
    "      pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream, 'w', host)\n"
    "      local restarts = tonumber(redis.call('HGET', k, 'restarts') or '0') or 0\n"
    "      local maxr = tonumber(redis.call('HGET', k, 'max_restarts') or '0') or 0\n"
    "      local cq = redis.call('HGET', k, 'cq')\n"
    "      local cf = redis.call('HGET', k, 'cframe')\n"
    "      local cr = redis.call('HGET', k, 'creator')\n"
    "      if (maxr < 0 or restarts < maxr) and cq and cf and cr then\n"
    "        redis.call('HSET', k, 'state', 'restarting', 'host', '',\n"
    "                   'restarts', tostring(restarts + 1))\n"
    "        redis.call('XADD', cq, '*', 'd', cr, 's', '0', 'a', tostring(restarts + 2),\n"
    "                   'f', cf)\n"
    "      else\n"
    "        redis.call('HSET', k, 'state', 'dead', 'code', '-14', 'error',\n"
    "                   'its host worker ' .. host .. ' died and max_restarts (' .. maxr ..\n"
    "                   ') is spent')\n"
    "        local name = redis.call('HGET', k, 'name')\n"
    "        if name and name ~= '' then redis.call('HDEL', P .. 'actors', name) end\n"
    "      end\n"
    "      n = n + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[3]))) do\n"
    "  local ok = pcall(reap, id)\n"
    "  if not ok then redis.call('SREM', KEYS[1], id) end\n"
    "end\n"
    "return n\n";

/* The janitor. KEYS: drivers hash, workers hash. ARGV: key prefix. Drivers
 * whose heartbeat expired lose their entry and their done stream (their
 * log stream expires by itself); workers whose heartbeat expired leave the
 * workers hash (their pending entries are reclaimed from the streams).
 * Returns the dead drivers' ids, so workers drop their queued tasks. */
static const char janitor_lua[] =
    "local P = ARGV[1]\n"
    "local dead = {}\n"
    "for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "  if redis.call('EXISTS', P .. 'd:' .. id) == 0 then\n"
    "    redis.call('HDEL', KEYS[1], id)\n"
    "    redis.call('DEL', P .. 'done:' .. id)\n"
    "    table.insert(dead, id)\n"
    "  end\n"
    "end\n"
    "for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do\n"
    "  if redis.call('EXISTS', P .. 'w:' .. id) == 0 then redis.call('HDEL', KEYS[2], id) end\n"
    "end\n"
    "return dead\n";

const char *marin__redis_script(int which)
{
    switch (which) {
    case MARIN__RS_ACK: return ack_lua;
    case MARIN__RS_RECLAIM: return reclaim_lua;
    case MARIN__RS_DEADLETTER: return deadletter_lua;
    case MARIN__RS_LIVE: return live_lua;
    case MARIN__RS_HANDBACK: return handback_lua;
    case MARIN__RS_ACTOR_REAP: return actor_reap_lua;
    case MARIN__RS_JANITOR: return janitor_lua;
    }
    return "return nil";
}
