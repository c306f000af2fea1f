#!/usr/bin/env bash
# The `marin` CLI against a real redis-server: fixture data written by hand
# per src/backends/redis/redis_keys.h, then status (table and --json),
# cancel, logs (--follow too), purge, AUTH, SELECT and the error paths.
#
#   tests/test_cli.sh /path/to/marin
#
# Exits 77 (skip) when redis-server, redis-cli or python3 is missing.
set -u

MARIN=${1:?usage: test_cli.sh /path/to/marin}
REDIS_SERVER=${MARIN_REDIS_SERVER:-$(command -v redis-server || true)}
REDIS_CLI=$(command -v redis-cli || true)
for need in "$REDIS_SERVER" "$REDIS_CLI" "$(command -v python3 || true)"; do
    if [ -z "$need" ]; then
        echo "SKIP: test_cli needs redis-server, redis-cli and python3 on PATH"
        exit 77
    fi
done
[ -x "$MARIN" ] || { echo "FAIL: $MARIN is not executable"; exit 1; }
unset MARIN_BACKEND

TMP=$(mktemp -d "${TMPDIR:-/tmp}/marin-cli.XXXXXX")
REDIS_PID=
cleanup() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Start redis on a free port (retry: another process may take the port).
for _ in 1 2 3 4 5; do
    PORT=$(free_port)
    "$REDIS_SERVER" --port "$PORT" --bind 127.0.0.1 --dir "$TMP" --save "" \
        --appendonly no --daemonize no --logfile "$TMP/redis.log" &
    REDIS_PID=$!
    up=0
    for _ in $(seq 100); do
        if "$REDIS_CLI" -p "$PORT" PING 2>/dev/null | grep -q PONG; then up=1; break; fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ "$up" = 1 ] && break
    kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; REDIS_PID=
done
if [ -z "$REDIS_PID" ]; then
    echo "FAIL: redis-server did not come up"; cat "$TMP/redis.log" 2>/dev/null; exit 1
fi

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
rc() { "$REDIS_CLI" -p "$PORT" "$@"; }

NS=clitest
P="marin:{$NS}:"
URI="redis://127.0.0.1:$PORT?namespace=$NS"
NOW=$(rc TIME | head -1)000

# ---- fixture ---------------------------------------------------------------
rc HSET "${P}workers" w1 "{\"name\":\"w1\",\"host\":\"node-a\",\"pid\":123,\"resources\":\"cpus=4,gpus=1\",\"free\":\"cpus=2,gpus=1\",\"tasks\":[\"drv1-7\"],\"classes\":[\"Counter\"],\"started_ms\":$NOW,\"hb_ms\":$NOW,\"running\":2,\"draining\":false}" >/dev/null
rc SET "${P}w:w1" 1 PX 60000 >/dev/null
rc HSET "${P}workers" w2 "{\"name\":\"w2\",\"host\":\"node-b\",\"pid\":456,\"resources\":{\"cpus\":8},\"free\":{\"cpus\":8},\"tasks\":[],\"classes\":[],\"started_ms\":1,\"hb_ms\":$((NOW - 120000)),\"running\":0,\"draining\":false}" >/dev/null
Q="${P}q:train:cpus=1,gpus=1"
rc SADD "${P}queues" "$Q" >/dev/null
for s in 7 8 9; do rc XADD "$Q" '*' d drv1 s $s a 1 f frame >/dev/null; done
rc XGROUP CREATE "$Q" w 0 >/dev/null
rc XREADGROUP GROUP w w1 COUNT 1 STREAMS "$Q" '>' >/dev/null
rc HSET "${P}drivers" drv1 "{\"host\":\"laptop\",\"pid\":9,\"started_ms\":1,\"hb_ms\":$NOW,\"submitted\":10,\"succeeded\":5,\"failed\":1,\"running\":2}" >/dev/null
rc SET "${P}d:drv1" 1 PX 60000 >/dev/null
rc HSET "${P}actors" counter a1 >/dev/null
rc HSET "${P}actor:a1" class Counter name counter host w1 restarts 1 state alive >/dev/null
rc SADD "${P}actor_ids" a1 >/dev/null
rc SET "${P}lease:leader" "42 w1" PX 30000 >/dev/null
rc XADD "${P}dead" '*' queue "$Q" id 1-0 reason boom worker w2 >/dev/null
rc XADD "${P}logs:drv1" '*' s 7 t drv1-7 l 3 m "hello from seven" >/dev/null
rc XADD "${P}logs:drv1" '*' s 8 t drv1-8 l 3 m "hello from eight" >/dev/null
rc XADD "${P}logs:drv1" '*' s 7 t drv1-7 l 1 m "seven failed" >/dev/null
rc SET "marin:{other}:kv:x" keep >/dev/null
rc SET unrelated keep >/dev/null

# ---- status ------------------------------------------------------------------
out=$("$MARIN" --backend "$URI" status 2>"$TMP/err"); st=$?
if [ $st -eq 0 ] &&
   echo "$out" | grep -Eq '^w1 +node-a +cpus=4,gpus=1 +cpus=2,gpus=1 +2 +[0-9.]+s ago +alive$' &&
   echo "$out" | grep -Eq '^w2 +node-b +cpus=8 +cpus=8 +0 .* +dead$' &&
   echo "$out" | grep -Eq '^train +cpus=1,gpus=1 +3 +2 +1$' &&
   echo "$out" | grep -q 'WORKERS (1 alive, 1 dead)' &&
   echo "$out" | grep -q 'TASKS  submitted 10  pending 2  running 2  succeeded 5  failed 1' &&
   echo "$out" | grep -Eq '^counter +a1 +Counter +w1 +alive +1$' &&
   echo "$out" | grep -Eq '^leader +w1 +42 +[0-9]' &&
   echo "$out" | grep -q 'DEAD LETTERS 1'; then
    ok "status table"
else
    fail "status table (exit $st)"; echo "$out"; cat "$TMP/err"
fi

"$MARIN" --backend "$URI" status --json >"$TMP/status.json" 2>"$TMP/err"; st=$?
if [ $st -eq 0 ] && python3 - "$TMP/status.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["namespace"] == "clitest", s["namespace"]
w = {x["id"]: x for x in s["workers"]}
assert w["w1"]["alive"] is True and w["w2"]["alive"] is False, w
assert w["w1"]["running"] == 2 and w["w1"]["host"] == "node-a"
assert 0 <= w["w1"]["hb_age_ms"] < 60000, w["w1"]
assert w["w2"]["hb_age_ms"] >= 120000
q = s["queues"][0]
assert (q["task"], q["shape"], q["length"], q["waiting"], q["pending"]) == \
    ("train", "cpus=1,gpus=1", 3, 2, 1), q
assert q["groups"][0]["name"] == "w" and q["groups"][0]["consumers"] == 1
assert s["tasks"] == {"submitted": 10, "pending": 2, "running": 2,
                      "succeeded": 5, "failed": 1}, s["tasks"]
assert s["drivers"][0]["id"] == "drv1" and s["drivers"][0]["alive"] is True
a = s["actors"][0]
assert (a["name"], a["id"], a["class"], a["host"], a["state"], a["restarts"]) == \
    ("counter", "a1", "Counter", "w1", "alive", 1), a
l = s["leases"][0]
assert (l["key"], l["token"], l["owner"]) == ("leader", "42", "w1"), l
assert 0 < l["ttl_ms"] <= 30000
assert s["dead_letters"] == 1
EOF
then ok "status --json"; else fail "status --json (exit $st)"; cat "$TMP/status.json" "$TMP/err"; fi

# MARIN_BACKEND is the default; an empty namespace lists nothing
out=$(MARIN_BACKEND="redis://127.0.0.1:$PORT?namespace=empty" "$MARIN" status 2>&1); st=$?
if [ $st -eq 0 ] && echo "$out" | grep -q 'namespace empty at 127.0.0.1' &&
   echo "$out" | grep -q 'WORKERS (0 alive, 0 dead)'; then
    ok "status via MARIN_BACKEND"
else fail "status via MARIN_BACKEND (exit $st)"; echo "$out"; fi

# ---- cancel ------------------------------------------------------------------
out=$("$MARIN" --backend "$URI" cancel drv1-7 2>"$TMP/err"); st=$?
ttl=$(rc PTTL "${P}cancel:drv1:7")
if [ $st -eq 0 ] && [ "$out" = "cancel requested for drv1-7" ] &&
   [ "$(rc GET "${P}cancel:drv1:7")" = 1 ] && [ "$ttl" -gt 3500000 ] && [ ! -s "$TMP/err" ]; then
    ok "cancel"
else fail "cancel (exit $st, ttl $ttl)"; echo "$out"; cat "$TMP/err"; fi

out=$("$MARIN" --backend "$URI" cancel ghost2-3 2>"$TMP/err"); st=$?
if [ $st -eq 0 ] && grep -q 'warning: driver "ghost2" is not registered' "$TMP/err" &&
   [ "$(rc GET "${P}cancel:ghost2:3")" = 1 ]; then
    ok "cancel of an unknown driver warns and sets the key"
else fail "cancel unknown driver (exit $st)"; cat "$TMP/err"; fi

for bad in drv1 drv1-x drv1- "drv1-1 2"; do
    "$MARIN" --backend "$URI" cancel "$bad" >/dev/null 2>"$TMP/err"; st=$?
    if [ $st -eq 2 ] && grep -q "task id \"$bad\"" "$TMP/err"; then :; else
        fail "cancel $bad: exit $st"; cat "$TMP/err"; fi
done
[ "$(rc EXISTS "${P}cancel:drv1:x")" = 0 ] && ok "cancel rejects malformed ids"

# ---- logs ----------------------------------------------------------------------
out=$("$MARIN" --backend "$URI" logs drv1-7 2>"$TMP/err"); st=$?
if [ $st -eq 0 ] && [ "$out" = "$(printf 'INFO hello from seven\nERROR seven failed')" ]; then
    ok "logs"
else fail "logs (exit $st)"; echo "$out"; cat "$TMP/err"; fi

"$MARIN" --backend "$URI" logs drv1-7 --follow >"$TMP/follow" 2>&1 &
fpid=$!
sleep 0.7
rc XADD "${P}logs:drv1" '*' s 8 t drv1-8 l 3 m "not mine" >/dev/null
rc XADD "${P}logs:drv1" '*' s 7 t drv1-7 l 2 m "late line" >/dev/null
sleep 0.7
kill -INT $fpid
for _ in $(seq 40); do kill -0 $fpid 2>/dev/null || break; sleep 0.1; done
if kill -0 $fpid 2>/dev/null; then
    kill -9 $fpid; wait $fpid 2>/dev/null; fail "logs --follow ignored Ctrl-C"
else
    wait $fpid; st=$?
    if [ $st -eq 0 ] &&
       [ "$(cat "$TMP/follow")" = "$(printf 'INFO hello from seven\nERROR seven failed\nWARN late line')" ]; then
        ok "logs --follow"
    else fail "logs --follow (exit $st)"; cat "$TMP/follow"; fi
fi

# ---- AUTH and SELECT ---------------------------------------------------------
rc -n 2 HSET "marin:{dbns}:drivers" d1 '{"submitted":3}' >/dev/null
out=$("$MARIN" --backend "redis://127.0.0.1:$PORT/2?namespace=dbns" status --json 2>&1)
if echo "$out" | python3 -c 'import json,sys; assert json.load(sys.stdin)["tasks"]["submitted"] == 3'; then
    ok "db from the URI path"
else fail "db select"; echo "$out"; fi
rc CONFIG SET requirepass 'p@ss:w/rd' >/dev/null
out=$("$MARIN" --backend "redis://:p%40ss%3Aw%2Frd@127.0.0.1:$PORT?namespace=$NS" cancel drv1-9 2>&1); st=$?
[ $st -eq 0 ] && ok "AUTH with a percent-encoded password" || { fail "AUTH (exit $st)"; echo "$out"; }
out=$("$MARIN" --backend "redis://default:p%40ss%3Aw%2Frd@127.0.0.1:$PORT?namespace=$NS" cancel drv1-9 2>&1); st=$?
[ $st -eq 0 ] && ok "AUTH with user and password" || { fail "AUTH user (exit $st)"; echo "$out"; }
out=$("$MARIN" --backend "redis://:wrong@127.0.0.1:$PORT?namespace=$NS" status 2>&1); st=$?
if [ $st -eq 1 ] && echo "$out" | grep -q "^marin: AUTH at 127.0.0.1:$PORT: "; then
    ok "wrong password"
else fail "wrong password (exit $st)"; echo "$out"; fi
"$REDIS_CLI" -p "$PORT" -a 'p@ss:w/rd' --no-auth-warning CONFIG SET requirepass '' >/dev/null

# ---- purge ---------------------------------------------------------------------
nkeys=$(rc --scan --pattern "marin:{$NS}:*" | wc -l)
out=$("$MARIN" --backend "$URI" purge --yes </dev/null 2>&1); st=$?
if [ $st -eq 1 ] && echo "$out" | grep -q '1 live worker in namespace clitest' &&
   echo "$out" | grep -q -- '--force' &&
   [ "$(rc --scan --pattern "marin:{$NS}:*" | wc -l)" = "$nkeys" ]; then
    ok "purge refuses while workers live"
else fail "purge with live workers (exit $st)"; echo "$out"; fi

out=$("$MARIN" --backend "$URI" purge --force </dev/null 2>&1); st=$?
if [ $st -eq 1 ] && echo "$out" | grep -q -- 'pass --yes' &&
   echo "$out" | grep -q "would delete $nkeys keys" &&
   [ "$(rc --scan --pattern "marin:{$NS}:*" | wc -l)" = "$nkeys" ]; then
    ok "purge without --yes and no terminal refuses"
else fail "purge without --yes (exit $st)"; echo "$out"; fi

out=$("$MARIN" --backend "$URI" purge --yes --force 2>&1); st=$?
left=$(rc --scan --pattern "marin:{$NS}:*" | wc -l)
if [ $st -eq 0 ] && [ "$left" = 0 ] && echo "$out" | grep -q "deleted $nkeys keys" &&
   [ "$(rc GET "marin:{other}:kv:x")" = keep ] && [ "$(rc GET unrelated)" = keep ] &&
   [ "$(rc -n 2 EXISTS "marin:{dbns}:drivers")" = 1 ]; then
    ok "purge --yes deletes the namespace only ($nkeys keys)"
else fail "purge --yes (exit $st, $left left)"; echo "$out"; fi

out=$("$MARIN" --backend "$URI" purge 2>&1 </dev/null); st=$?
[ $st -eq 0 ] && echo "$out" | grep -q 'nothing to delete' && ok "purge of an empty namespace" ||
    { fail "purge empty (exit $st)"; echo "$out"; }

# ---- bad URIs, unreachable Redis, usage ------------------------------------------
expect() { # expect EXIT PATTERN args...
    local want=$1 pat=$2; shift 2
    out=$("$MARIN" "$@" 2>&1 </dev/null); st=$?
    if [ $st -eq "$want" ] && echo "$out" | grep -q -- "$pat"; then ok "$* -> $want"; else
        fail "$*: exit $st (want $want), output:"; echo "$out"; fi
}
expect 2 'scheme "http" is not supported' --backend "http://127.0.0.1:$PORT" status
expect 2 'backend "local" is not supported' --backend local status
expect 2 'no backend' status
expect 2 'the port must be' --backend "redis://127.0.0.1:99999" status
expect 2 'database number' --backend "redis://127.0.0.1:$PORT/x" status
expect 2 'bad percent-escape' --backend "redis://:a%zz@127.0.0.1:$PORT" status
expect 2 'unknown command' --backend "$URI" frobnicate
expect 2 'name a TASK_ID' --backend "$URI" logs
DEAD_PORT=$(free_port)
expect 1 "marin: cannot connect to redis at 127.0.0.1:$DEAD_PORT: " \
    --backend "redis://127.0.0.1:$DEAD_PORT?namespace=x" status
expect 1 "127.0.0.1:$DEAD_PORT" --backend "redis://127.0.0.1:$DEAD_PORT" cancel d-1

if [ $FAILS -ne 0 ]; then echo "$FAILS check(s) failed"; exit 1; fi
echo "all CLI checks passed"
