"""Python tasks on the Redis backend: a driver (this process) and Python
worker processes (`python3 -m marin.worker --backend URI --import
redis_tasks`) that meet in a real redis-server started for this module.

Each test has a namespace of its own and starts the workers it needs.
Python actors (f) are hosted by those workers: their constructor and call
arguments travel pickled (the generic C actor class "marin.py.actor").
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid

import pytest

import marin
import redis_tasks

def _redis_server():
    """$MARIN_REDIS_SERVER, /usr/bin/redis-server, redis-server on PATH (as
    tests/redis_fixture.c looks for it)."""
    for p in (os.environ.get("MARIN_REDIS_SERVER"), "/usr/bin/redis-server",
              shutil.which("redis-server")):
        if p and os.access(p, os.X_OK):
            return p
    return None


REDIS_SERVER = _redis_server()
HERE = os.path.dirname(os.path.abspath(__file__))
# Short timings: a dead worker is noticed in about 0.6 s, reclaimed within
# 0.2 s more; a task nobody can run fails after 3 s.
TIMINGS = "heartbeat_ms=100&worker_ttl_ms=600&reclaim_ms=200&grace_ms=3000&block_ms=100"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_port():
    """A redis-server on a free port (no persistence), for this module."""
    if REDIS_SERVER is None:
        reason = "redis-server is missing ($MARIN_REDIS_SERVER, /usr/bin/redis-server, " \
                 "PATH): the Redis tests need it (Debian: apt-get install redis-server)"
        print("SKIP test_redis.py: " + reason)
        pytest.skip(reason)
    tmp = tempfile.mkdtemp(prefix="marin-py-redis-")
    proc = None
    try:
        for _ in range(5):
            port = _free_port()
            proc = subprocess.Popen(
                [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", tmp,
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--protected-mode", "no", "--logfile", os.path.join(tmp, "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < deadline and not _ping(port):
                time.sleep(0.02)
            if proc.poll() is None and _ping(port):
                break
            proc.kill()
            proc.wait()
            proc = None
        if proc is None:
            with open(os.path.join(tmp, "redis.log"), errors="replace") as f:
                pytest.fail("redis-server did not start; redis.log ends:\n" + f.read()[-2000:])
        yield port
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


class Cluster:
    """One namespace of the module's server: its URI, the driver (marin.init
    on it) and the Python workers started for the test."""

    def __init__(self, port, tmp_path):
        self.uri = "redis://127.0.0.1:%d?namespace=py-%s&%s" % (port, uuid.uuid4().hex[:12],
                                                               TIMINGS)
        self.tmp = tmp_path
        self.workers = []
        env = dict(os.environ)
        paths = [HERE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["MARIN_LOG"] = "info"
        self.env = env

    def start_worker(self, cpus=2, drain_ms=None, wait=True):
        n = len(self.workers)
        log = self.tmp / ("worker-%d.log" % n)
        cmd = [sys.executable, "-m", "marin.worker", "--backend", self.uri,
               "--import", "redis_tasks", "--resources", "cpus=%d,memory=1GiB" % cpus,
               "--name", "pyw-%d-%s" % (n, uuid.uuid4().hex[:6])]
        if drain_ms is not None:
            cmd += ["--drain-ms", str(drain_ms)]
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
        p.log = log
        self.workers.append(p)
        if wait:
            deadline = time.monotonic() + 15
            while b" ready" not in log.read_bytes():
                assert p.poll() is None, "worker exited %s:\n%s" % (p.returncode,
                                                                   self.log_of(p))
                assert time.monotonic() < deadline, "worker not ready:\n" + self.log_of(p)
                time.sleep(0.02)
        return p

    @staticmethod
    def log_of(p):
        return p.log.read_text(errors="replace")

    def stop(self):
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def cluster(redis_port, tmp_path):
    marin.shutdown()
    c = Cluster(redis_port, tmp_path)
    marin.init(c.uri)
    try:
        yield c
    finally:
        marin.shutdown()
        c.stop()


def _wait_for(cond, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


# ---------------------------------------------------------------- (a) batch pipeline

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello, World!  Hello again...",
         "To be, or not to be: that is the question.", "", "One\ntwo\tthree   four",
         "Café naïve résumé — unicode words"]


def test_batch_pipeline_ordered_with_retries(cluster, tmp_path):
    """The Ray-style pipeline: files in, transformed files out, results in
    submission order (map_ordered), a flaky input retried, on two Python
    worker processes."""
    w1 = cluster.start_worker(cpus=2)
    w2 = cluster.start_worker(cpus=2)
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    inputs = []
    for i in range(24):
        name = "doc-%03d%s.txt" % (i, "-flaky" if i in (5, 17) else "")
        (in_dir / name).write_text(TEXTS[i % len(TEXTS)] + " extra%d" % i, encoding="utf-8")
        inputs.append(str(in_dir / name))

    stats = list(marin.map_ordered(redis_tasks.transform, [(p, str(out_dir)) for p in inputs],
                                   max_in_flight=6))
    assert [s["input"] for s in stats] == [os.path.basename(p) for p in inputs]
    for p, s in zip(inputs, stats):
        with open(p, encoding="utf-8") as f:
            text, words = redis_tasks.normalise(f.read())
        assert s["words"] == len(words)
        out = out_dir / os.path.basename(p).replace(".txt", ".norm")
        assert out.read_text(encoding="utf-8") == text + "\n"
        assert s["attempt"] == (2 if "flaky" in p else 1)
    pids = {s["pid"] for s in stats}
    assert os.getpid() not in pids and pids <= {w1.pid, w2.pid}
    # a ref passed as an argument is a dependency, its value substituted
    first = redis_tasks.transform.remote(inputs[0], str(out_dir))
    assert marin.get(redis_tasks.total_words.remote(first), timeout=20) == stats[0]["words"]


def test_named_task_and_nested_calls(cluster):
    """A task registered by name in the imported module is advertised and
    served; tasks submitted from inside a task run on the workers too."""
    cluster.start_worker(cpus=2)
    assert marin.get(marin.call("redis_tasks.shout", b"hey"), timeout=20) == b"HEY!"
    fan = marin.remote(redis_tasks.fan_out)
    assert marin.get(fan.remote(5), timeout=30) == sum(i * i for i in range(5))


# ---------------------------------------------------------------- (b) by value

def test_closures_and_main_functions_travel_by_value(cluster):
    cluster.start_worker(cpus=2)
    offset = 7
    add = marin.remote(lambda a: a + offset)  # a closure: not importable by the worker
    assert marin.get(add.remote(35), timeout=20) == 42

    # a function of __main__ (a script's), which the worker cannot import
    main_ns = {"__name__": "__main__"}
    exec("import os\ndef triple_with_pid(x):\n    return 3 * x, os.getpid()\n", main_ns)
    fn = main_ns["triple_with_pid"]
    assert fn.__module__ == "__main__"
    value, pid = marin.get(marin.remote(fn).remote(5), timeout=20)
    assert value == 15 and pid == cluster.workers[0].pid

    # a function made at run time, in a module the worker never saw
    mod = types.ModuleType("made_up_module_%s" % uuid.uuid4().hex[:6])
    exec("def joined(*parts):\n    return '-'.join(parts)\n", mod.__dict__)
    inner = mod.joined

    def outer(a, b):
        return inner(a, b).upper()
    assert marin.get(marin.remote(outer).remote("x", "y"), timeout=20) == "X-Y"


# ---------------------------------------------------------------- (c) errors

def test_remote_exception_keeps_type_message_and_traceback(cluster):
    cluster.start_worker(cpus=1)
    f = marin.remote(redis_tasks.raise_value_error).options(max_retries=0)
    with pytest.raises(ValueError) as info:
        marin.get(f.remote("doc-7"), timeout=20)
    e = info.value
    assert isinstance(e, marin.TaskError)
    assert e.remote_type == "ValueError"
    assert "bad input: doc-7" in e.remote_message
    assert "raise_value_error" in e.traceback_text
    assert "redis_tasks.py" in e.traceback_text


def test_get_timeout_and_task_timeout(cluster):
    cluster.start_worker(cpus=2)
    slow = marin.remote(redis_tasks.sleep_for)
    ref = slow.remote(1.0)
    t0 = time.monotonic()
    with pytest.raises(marin.GetTimeoutError) as info:
        marin.get(ref, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - t0 < 1.0
    ready, not_ready = marin.wait([ref], timeout=0.05)
    assert ready == [] and not_ready == [ref]
    assert marin.get(ref, timeout=20) == 1.0  # the work went on
    # the task's own timeout fails it
    capped = slow.options(timeout=0.3, max_retries=0)
    with pytest.raises(marin.TaskTimeoutError):
        marin.get(capped.remote(1.0), timeout=20)


# ---------------------------------------------------------------- (d) worker death

def test_killed_worker_task_runs_again_once(cluster, tmp_path):
    first = cluster.start_worker(cpus=1)
    log, release = tmp_path / "attempts.log", tmp_path / "release"
    f = marin.remote(redis_tasks.record_and_block).options(max_retries=2)
    ref = f.remote(str(log), str(release))
    _wait_for(lambda: log.exists() and b"start" in log.read_bytes(), "the first attempt")
    second = cluster.start_worker(cpus=1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    pid, attempt = marin.get(ref, timeout=20)
    assert pid == second.pid and attempt == 2
    lines = log.read_text().split("\n")
    assert lines.count("done %d 2" % second.pid) == 1
    assert sum(1 for line in lines if line.startswith("done")) == 1  # completed once
    assert lines[0] == "start %d 1" % first.pid


def test_killed_worker_without_retries_is_worker_died(cluster, tmp_path):
    first = cluster.start_worker(cpus=1)
    log, release = tmp_path / "attempts.log", tmp_path / "release"
    f = marin.remote(redis_tasks.record_and_block).options(max_retries=0)
    ref = f.remote(str(log), str(release))
    _wait_for(lambda: log.exists() and b"start" in log.read_bytes(), "the first attempt")
    cluster.start_worker(cpus=1)  # a live worker reclaims the dead one's task
    first.send_signal(signal.SIGKILL)
    first.wait()
    with pytest.raises(marin.WorkerDiedError) as info:
        marin.get(ref, timeout=20)
    assert "died" in str(info.value)
    assert log.read_text().count("start") == 1


# ---------------------------------------------------------------- (e) drain

def test_sigterm_drains_running_work_and_exits_0(cluster, tmp_path):
    w = cluster.start_worker(cpus=1, drain_ms=10000)
    log, release = tmp_path / "attempts.log", tmp_path / "release"
    f = marin.remote(redis_tasks.record_and_block).options(max_retries=0)
    ref = f.remote(str(log), str(release), 5.0)
    _wait_for(lambda: log.exists() and b"start" in log.read_bytes(), "the task to start")
    w.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert w.poll() is None, "the worker left before its task finished"
    release.touch()
    assert marin.get(ref, timeout=20) == (w.pid, 1)
    assert w.wait(10) == 0, cluster.log_of(w)
    assert "drained; exiting" in cluster.log_of(w)


def test_worker_command_line_errors(redis_port, tmp_path):
    env = Cluster(redis_port, tmp_path).env
    uri = "redis://127.0.0.1:%d?namespace=py-cli" % redis_port
    bad = subprocess.run([sys.executable, "-m", "marin.worker", "--backend", uri,
                          "--import", "no_such_module_here"], env=env,
                         capture_output=True, timeout=30)
    assert bad.returncode == 1
    assert b"cannot import no_such_module_here" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "marin.worker", "--import", "redis_tasks"],
                          env={k: v for k, v in env.items() if k != "MARIN_BACKEND"},
                          capture_output=True, timeout=30)
    assert none.returncode == 2 and b"--backend" in none.stderr


# ---------------------------------------------------------------- (f) actors

def test_named_actor_hosted_by_a_python_worker(cluster):
    """A named actor created by the driver (which hosts nothing) lives in a
    Python worker process; the driver and tasks on the workers call it, in
    order, and its state is kept between calls."""
    w = cluster.start_worker(cpus=2)
    t = redis_tasks.Tally.options(name="tally").remote(10, tag="x")
    assert t.ready(timeout=20) is True
    assert marin.get(t.where.remote(), timeout=20) == w.pid != os.getpid()
    # calls through one handle run in the order made
    assert marin.get([t.add.remote(i) for i in range(1, 51)], timeout=20) == \
        [10 + i * (i + 1) // 2 for i in range(1, 51)]
    # a ref as an argument: its value (got in the driver) travels
    sq = marin.remote(redis_tasks.square).remote(4)
    assert marin.get(t.add.remote(sq, who="ref"), timeout=20) == 10 + 1275 + 16
    # from tasks on the workers: by name, and by a handle passed as argument
    bump = marin.remote(redis_tasks.bump_named)
    runs = marin.get([bump.remote("tally", "task%d" % k, 5) for k in range(3)], timeout=30)
    for seen in runs:
        assert seen == sorted(seen) and len(set(seen)) == 5  # each task's calls in order
    by_handle = marin.get(marin.remote(redis_tasks.bump_by_handle).remote(t, "h"), timeout=30)
    total, seen = marin.get(t.state.remote(), timeout=20)
    assert total == by_handle == 10 + 1275 + 16 + 15 + 100
    assert [x for who, x in seen if who == "driver"] == list(range(1, 51))
    assert sum(1 for who, _ in seen if who.startswith("task")) == 15
    # the driver finds it by name too; a lookup gives the same actor
    h = marin.get_actor("tally")
    assert marin.get(h.state.remote(), timeout=20)[0] == total
    # a method's exception: its type, message and traceback from the worker
    with pytest.raises(KeyError) as info:
        marin.get(t.fail.remote("k7"), timeout=20)
    e = info.value
    assert isinstance(e, marin.TaskError) and e.remote_type == "KeyError"
    assert "no such entry: k7" in e.remote_message
    assert "redis_tasks.py" in e.traceback_text and "Tally.fail" in str(e)
    assert marin.get(t.add.remote(0), timeout=20) == total  # the actor lives on
    # get_if_exists attaches to it; the same name without it is taken
    again = redis_tasks.Tally.options(name="tally", get_if_exists=True).remote()
    assert marin.get(again.state.remote(), timeout=20)[0] == total
    with pytest.raises(marin.ExistsError):
        redis_tasks.Tally.options(name="tally").remote()
    # kill: the name is free, calls fail
    marin.kill(t)
    with pytest.raises(marin.MarinError):
        marin.get(t.add.remote(1), timeout=20)
    _wait_for(lambda: _not_found("tally"), "the name to be freed")
    fresh = redis_tasks.Tally.options(name="tally").remote(7)
    assert marin.get(fresh.state.remote(), timeout=20) == (7, [])


def _not_found(name):
    try:
        marin.get_actor(name)
    except marin.NotFoundError:
        return True
    return False


def test_actor_of_main_by_value_and_constructor_failure(cluster):
    cluster.start_worker(cpus=1)
    main_ns = {"__name__": "__main__", "marin": marin}
    exec("class Box:\n"
         "    def __init__(self, v):\n"
         "        self.v = v\n"
         "    def get(self):\n"
         "        return self.v\n"
         "    def put(self, f):\n"
         "        self.v = f(self.v)\n"
         "        return self.v\n"
         "class Broken:\n"
         "    def __init__(self, why):\n"
         "        raise ValueError(why)\n"
         "    def ping(self):\n"
         "        return 'pong'\n", main_ns)
    box = marin.remote(main_ns["Box"]).remote([1])
    assert marin.get(box.get.remote(), timeout=20) == [1]
    assert marin.get(box.put.remote(lambda v: v + [2]), timeout=20) == [1, 2]
    broken = marin.remote(main_ns["Broken"]).remote("no config file")
    with pytest.raises(ValueError) as info:
        broken.ready(timeout=20)
    assert "no config file" in str(info.value)
    with pytest.raises(marin.MarinError) as info:
        marin.get(broken.ping.remote(), timeout=20)
    assert "no config file" in str(info.value)


def test_actor_restarts_on_another_worker_after_its_host_is_killed(cluster):
    """Its host kill -9'ed, an actor with max_restarts=1 comes back on
    another worker from its last checkpoint (checkpoint_every=1: every
    acknowledged call; marin.checkpoint: on request), or, without one, from
    its constructor (as Ray); with no restarts left it is gone."""
    first = cluster.start_worker(cpus=1)
    every = redis_tasks.Tally.options(name="every", max_restarts=1,
                                      checkpoint_every=1).remote(100)
    asked = redis_tasks.Tally.options(name="asked", max_restarts=1).remote(100)
    reset = redis_tasks.Tally.options(name="reset", max_restarts=1).remote(100)
    once = redis_tasks.Tally.options(name="once").remote(100)  # max_restarts 0
    for a in (every, asked, reset, once):
        assert marin.get(a.where.remote(), timeout=20) == first.pid
        assert marin.get([a.add.remote(1), a.add.remote(2)], timeout=20) == [101, 103]
    marin.checkpoint(asked)
    assert marin.get(asked.add.remote(4), timeout=20) == 107  # after it: lost
    second = cluster.start_worker(cpus=1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    for a in (every, asked, reset):
        assert marin.get(a.where.remote(), timeout=30) == second.pid
    both = [("driver", 1), ("driver", 2)]
    assert marin.get(every.state.remote(), timeout=20) == (103, both)
    assert marin.get(asked.state.remote(), timeout=20) == (103, both)
    assert marin.get(reset.state.remote(), timeout=20) == (100, [])
    assert marin.get(every.add.remote(4), timeout=20) == 107  # it goes on
    with pytest.raises(marin.WorkerDiedError) as info:  # no restarts left: gone
        marin.get(once.state.remote(), timeout=30)
    assert "max_restarts (0) is spent" in str(info.value)
    marin.kill(every)
    with pytest.raises(marin.MarinError):
        marin.get(every.add.remote(1), timeout=20)
