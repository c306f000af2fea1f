"""KV, leases with fencing tokens (in memory and file-backed, shared between
processes) and the workflow executor."""
import collections
import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import marin
import marin.kv as kv


# ---------------------------------------------------------------- KV

def test_put_get_delete(rt):
    kv.put("a", b"\x00bytes\xff")
    assert kv.get("a") == b"\x00bytes\xff"
    kv.put("a", "text")  # str is stored as UTF-8
    assert kv.get("a") == b"text"
    kv.put("empty", b"")
    assert kv.get("empty") == b""
    kv.delete("a")
    with pytest.raises(marin.NotFoundError) as info:
        kv.get("a")
    assert isinstance(info.value, LookupError)
    assert kv.get("a", None) is None
    assert kv.get("a", b"dflt") == b"dflt"
    with pytest.raises(marin.NotFoundError):
        kv.delete("never-there")
    with pytest.raises(TypeError):
        kv.put("k", 3)


def test_cas(rt):
    kv.cas("c", None, b"1")             # create: must not exist
    with pytest.raises(marin.ConflictError):
        kv.cas("c", None, b"again")
    kv.cas("c", b"1", b"2")
    with pytest.raises(marin.ConflictError):
        kv.cas("c", b"1", b"3")          # stale expectation
    assert kv.get("c") == b"2"


def test_kv_inside_a_task(rt):
    @marin.remote
    def bump(key):
        while True:
            old = kv.get(key, None)
            new = str(int(old or b"0") + 1)
            try:
                kv.cas(key, old, new)
                return new
            except marin.ConflictError:
                continue

    marin.get([bump.remote("counter") for _ in range(20)], timeout=30)
    assert kv.get("counter") == b"20"


# ---------------------------------------------------------------- leases

def test_lease_acquire_renew_release(rt):
    t1 = kv.acquire("job", "alice", 10)
    assert isinstance(t1, int) and t1 > 0
    # the holder may acquire again (renewal by acquire) and renew
    kv.renew("job", "alice", 10)
    with pytest.raises(marin.BusyError):
        kv.acquire("job", "bob", 10)
    with pytest.raises(marin.MarinError):
        kv.renew("job", "bob", 10)
    with pytest.raises(marin.MarinError):
        kv.release("job", "bob")
    kv.release("job", "alice")
    t2 = kv.acquire("job", "bob", 10)
    assert t2 > t1  # tokens strictly increase per key
    kv.release("job", "bob")


def test_lease_expiry_and_takeover(rt):
    t1 = kv.acquire("exp", "slow-driver", 0.05)
    deadline = time.monotonic() + 5
    while True:
        try:
            t2 = kv.acquire("exp", "new-driver", 10)
            break
        except marin.BusyError:
            assert time.monotonic() < deadline, "the lease never expired"
            time.sleep(0.01)
    assert t2 > t1
    # the old holder is told apart by its stale token
    kv.put_fenced("result", b"new", "exp", t2)
    with pytest.raises(marin.ConflictError):
        kv.put_fenced("result", b"old", "exp", t1)
    assert kv.get("result") == b"new"
    with pytest.raises(marin.MarinError):
        kv.renew("exp", "slow-driver", 10)


def test_put_fenced_after_release_is_refused(rt):
    tok = kv.acquire("fence", "me", 10)
    kv.put_fenced("v", b"1", "fence", tok)
    kv.release("fence", "me")
    with pytest.raises(marin.ConflictError):
        kv.put_fenced("v", b"2", "fence", tok)
    assert kv.get("v") == b"1"


def test_lease_context_manager(rt):
    with kv.lease("ctx", "owner-1", 10) as token:
        assert token > 0
        with pytest.raises(marin.BusyError):
            kv.acquire("ctx", "owner-2", 10)
        kv.put_fenced("ctx-value", b"x", "ctx", token)
    # released on exit
    t2 = kv.acquire("ctx", "owner-2", 10)
    assert t2 > token
    kv.release("ctx", "owner-2")
    # released on an exception too
    with pytest.raises(ZeroDivisionError):
        with kv.lease("ctx", "owner-3", 10):
            1 / 0
    kv.acquire("ctx", "owner-4", 10)


# ---------------------------------------------------------------- file-backed state

def child_env():
    import _marin_cffi
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(marin.__file__))),
             os.path.dirname(os.path.abspath(_marin_cffi.__file__))]
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    env.pop("MARIN_BACKEND", None)
    return env


CHILD = textwrap.dedent("""
    import json, sys
    import marin, marin.kv as kv
    marin.init("local://?resources=cpus=1&state=" + sys.argv[1])
    out = {"value": kv.get("shared", b"").decode()}
    try:
        kv.acquire("the-lock", "child", 10)
        out["lease"] = "acquired"
        kv.release("the-lock", "child")
    except marin.BusyError as e:
        out["lease"] = "busy"
        out["busy_message"] = str(e)
    kv.put("from-child", b"hello parent")
    try:
        kv.cas("shared", b"parent wrote this", b"child changed it")
        out["cas"] = "ok"
    except marin.ConflictError:
        out["cas"] = "conflict"
    print(json.dumps(out))
""")


def run_child(state_dir):
    p = subprocess.run([sys.executable, "-c", CHILD, str(state_dir)], env=child_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_file_backed_state_is_shared_with_a_child_process(tmp_path):
    state = tmp_path / "state"
    marin.shutdown()
    marin.init("local://?resources=cpus=1&state=%s" % state)
    try:
        kv.put("shared", b"parent wrote this")
        token = kv.acquire("the-lock", "parent", 30)
        out = run_child(state)
        assert out["value"] == "parent wrote this"
        assert out["lease"] == "busy"        # the parent's lease blocks the child
        assert "parent" in out["busy_message"]
        assert out["cas"] == "ok"
        assert kv.get("from-child") == b"hello parent"
        assert kv.get("shared") == b"child changed it"
        kv.put_fenced("guarded", b"1", "the-lock", token)

        kv.release("the-lock", "parent")
        out = run_child(state)
        assert out["lease"] == "acquired"
        # the child's acquire moved the token on: the parent's is stale now
        with pytest.raises(marin.ConflictError):
            kv.put_fenced("guarded", b"2", "the-lock", token)
        assert kv.acquire("the-lock", "parent", 30) > token + 1
    finally:
        marin.shutdown()
    # the state outlives the runtime
    marin.init("local://?resources=cpus=1&state=%s" % state)
    try:
        assert kv.get("from-child") == b"hello parent"
    finally:
        marin.shutdown()


def test_file_backed_state_with_spawned_process(tmp_path):
    import multiprocessing
    state = str(tmp_path / "state2")
    marin.shutdown()
    marin.init("local://?resources=cpus=1&state=" + state)
    try:
        kv.acquire("spawn-lock", "parent", 30)
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_spawned_child, args=(state, q))
        p.start()
        result = q.get(timeout=60)
        p.join(30)
        assert p.exitcode == 0
        assert result == "busy"
    finally:
        marin.shutdown()


def _spawned_child(state, q):
    import marin as m
    m.init("local://?resources=cpus=1&state=" + state)
    try:
        m.kv.acquire("spawn-lock", "child", 10)
        q.put("acquired")
    except m.BusyError:
        q.put("busy")
    m.shutdown()


# ---------------------------------------------------------------- executor

CALLS = collections.Counter()


def download(output_path, config):
    CALLS["download"] += 1
    assert isinstance(config, dict)
    with open(os.path.join(output_path, "raw.txt"), "w") as f:
        for i in range(config["n"]):
            f.write("%s line %d\n" % (config["url"], i))


def tokenize(output_path, config):
    CALLS["tokenize"] += 1
    deps = marin.get_runtime_context().get_env("MARIN_DEP_PATHS").splitlines()
    with open(os.path.join(deps[0], "raw.txt")) as f:
        tokens = f.read().split()
    with open(os.path.join(output_path, "tokens.json"), "w") as f:
        json.dump({"vocab": config["vocab"], "count": len(tokens)}, f)


def report(output_path, config):
    CALLS["report"] += 1
    assert config is None
    raw, tok = marin.get_runtime_context().get_env("MARIN_DEP_PATHS").splitlines()
    with open(os.path.join(tok, "tokens.json")) as f:
        count = json.load(f)["count"]
    with open(os.path.join(output_path, "report.txt"), "w") as f:
        f.write("tokens=%d from %s\n" % (count, os.path.basename(raw)))


def build(ex, url="http://x", n=3, version="v1"):
    raw = ex.step("raw", download, config={"url": url, "n": n}, version=version)
    tok = ex.step("tok", tokenize, config={"vocab": 100}, deps=[raw])
    rep = ex.step("report", report, deps=[raw, tok])
    return raw, tok, rep


def test_executor_runs_steps_once(rt, tmp_path):
    CALLS.clear()
    prefix = str(tmp_path / "exp")
    ex = marin.Executor(prefix)
    raw, tok, rep = build(ex)
    for s in (raw, tok, rep):
        assert re.fullmatch(re.escape(prefix) + "/" + s.name + r"-[0-9a-f]{8}",
                            s.output_path), s.output_path
        assert s.status() == ("NONE", 0)
    plan = ex.plan()
    assert plan.splitlines() == [
        "RUN raw %s" % raw.output_path,
        "RUN tok %s after raw" % tok.output_path,
        "RUN report %s after raw,tok" % rep.output_path,
    ]
    ex.run()
    assert CALLS == {"download": 1, "tokenize": 1, "report": 1}
    for s in (raw, tok, rep):
        assert s.status() == ("SUCCESS", 1)
    with open(os.path.join(rep.output_path, "report.txt")) as f:
        assert f.read() == "tokens=9 from %s\n" % os.path.basename(raw.output_path)
    assert ex.plan().startswith("SKIP raw ")

    # a second run, from a second executor as a new driver would: skipped
    ex2 = marin.Executor(prefix)
    steps2 = build(ex2)
    assert [s.output_path for s in steps2] == [raw.output_path, tok.output_path,
                                               rep.output_path]
    assert all(line.startswith("SKIP ") for line in ex2.plan().splitlines())
    ex2.run()
    assert CALLS == {"download": 1, "tokenize": 1, "report": 1}

    # a changed upstream config reruns everything below it, at new paths
    ex3 = marin.Executor(prefix)
    steps3 = build(ex3, n=4)
    assert all(a.output_path != b.output_path for a, b in zip(steps3, (raw, tok, rep)))
    ex3.run()
    assert CALLS == {"download": 2, "tokenize": 2, "report": 2}


def test_executor_paths(rt, tmp_path):
    prefix = str(tmp_path / "paths")
    ex = marin.Executor(prefix)
    a = ex.step("a", download, config={"url": "u", "n": 1, "nested": {"x": 1, "y": [1, 2]}})
    ex_b = marin.Executor(prefix)
    # the same config written in another order: the same path
    b = ex_b.step("a", download, config={"nested": {"y": [1, 2], "x": 1}, "n": 1, "url": "u"})
    assert a.output_path == b.output_path
    # any change of name, config or version changes the path
    ex_c = marin.Executor(prefix)
    assert ex_c.step("a", download, config={"url": "u", "n": 2}).output_path != a.output_path
    assert ex_c.step("a2", download, config={"url": "u", "n": 1, "nested": {"x": 1, "y": [1, 2]}}
                     ).output_path.rsplit("-", 1)[1] != a.output_path.rsplit("-", 1)[1]
    ex_d = marin.Executor(prefix)
    assert ex_d.step("a", download, config={"url": "u", "n": 1, "nested": {"x": 1, "y": [1, 2]}},
                     version="v2").output_path != a.output_path
    # dependencies change the paths below them
    ex_e = marin.Executor(prefix)
    up1 = ex_e.step("up1", download, config={"url": "u", "n": 1})
    up2 = ex_e.step("up2", download, config={"url": "u", "n": 2})
    d1 = ex_e.step("down1", tokenize, config={"vocab": 1}, deps=[up1])
    ex_f = marin.Executor(prefix)
    ex_f.step("up1", download, config={"url": "u", "n": 1})
    up2f = ex_f.step("up2", download, config={"url": "u", "n": 2})
    d1f = ex_f.step("down1", tokenize, config={"vocab": 1}, deps=[up2f])
    assert d1.output_path != d1f.output_path
    assert up2.output_path == up2f.output_path
    # a step may not depend on another executor's step
    with pytest.raises(ValueError):
        ex_f.step("bad", tokenize, deps=[up1])
    with pytest.raises(marin.ExistsError):
        ex_f.step("up1", download, config={"url": "u", "n": 1})


def test_executor_dot_and_mermaid(rt, tmp_path):
    ex = marin.Executor(str(tmp_path / "g"))
    raw, tok, rep = build(ex)
    rel = {s.name: os.path.basename(s.output_path) for s in (raw, tok, rep)}
    dot = ex.dot()
    assert dot.startswith("digraph executor {")
    assert '"raw" -> "tok";' in dot
    assert '"raw" -> "report";' in dot
    assert '"tok" -> "report";' in dot
    assert rel["tok"] in dot
    mer = ex.mermaid()
    assert mer.startswith("flowchart LR")
    assert "s0 --> s1" in mer and "s0 --> s2" in mer and "s1 --> s2" in mer
    assert rel["report"] in mer


def test_executor_failing_step(rt, tmp_path):
    attempts = []

    def flaky_step(output_path, config):
        attempts.append(1)
        if config == "fail":
            raise RuntimeError("step exploded")
        with open(os.path.join(output_path, "ok"), "w") as f:
            f.write("ok")

    prefix = str(tmp_path / "f")
    ex = marin.Executor(prefix)
    s = ex.step("flaky", flaky_step, config="fail", max_retries=0)
    with pytest.raises(marin.TaskError) as info:
        ex.run()
    assert "step exploded" in str(info.value)
    assert "flaky" in str(info.value)
    assert s.status()[0] == "FAILED"
    assert ex.plan().startswith("STOP flaky ")
    # a FAILED step stops the next run unless forced
    ex2 = marin.Executor(prefix)
    s2 = ex2.step("flaky", flaky_step, config="fail", max_retries=0)
    with pytest.raises(marin.StateError):
        ex2.run()
    n = len(attempts)
    with pytest.raises(marin.TaskError):
        ex2.run(force=True)
    assert len(attempts) == n + 1
    assert s2.status() == ("FAILED", 2)


def test_executor_dry_run_runs_nothing(rt, tmp_path, capfd):
    CALLS.clear()
    ex = marin.Executor(str(tmp_path / "dry"))
    raw, _, _ = build(ex)
    ex.run(dry_run=True)
    assert CALLS == {}
    assert raw.status() == ("NONE", 0)
    out = capfd.readouterr().out
    assert "RUN raw " in out
