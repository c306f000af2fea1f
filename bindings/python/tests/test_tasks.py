"""Remote functions as a Ray user writes them, on the local backend."""
import threading
import time

import pytest

import marin
import marin.testing


# ---------------------------------------------------------------- options

def test_remote_without_options(rt):
    @marin.remote
    def square(x):
        return x * x

    ref = square.remote(7)
    assert isinstance(ref, marin.ObjectRef)
    assert marin.get(ref) == 49


def test_remote_kwargs_and_values_are_not_copied(rt):
    @marin.remote
    def f(a, b=10, *, c):
        return (a, b, c)

    assert marin.get(f.remote(1, c=3)) == (1, 10, 3)
    assert marin.get(f.remote(1, b=2, c=3)) == (1, 2, 3)
    # a Python object comes back as what the task returned
    obj = object()

    @marin.remote
    def ident(x):
        return x

    assert marin.get(ident.remote(obj)) is obj


@pytest.mark.parametrize("options", [
    dict(cpus=1),
    dict(num_cpus=1),
    dict(cpus=0.5),
    dict(memory="4GiB"),
    dict(memory=4 * 1024 ** 3),
    dict(num_cpus=2, memory=1 << 30),
    dict(resources={"custom": 1}),
    dict(max_retries=0),
    dict(max_retries=5, retry_exceptions=True),
    dict(retry_exceptions=[KeyError, ValueError]),
    dict(timeout=30),
    dict(env={"A": "1"}),
    dict(runtime_env={"env_vars": {"A": "1"}}),
])
def test_remote_with_options(options):
    marin.shutdown()
    marin.init("local://?resources=cpus=2,memory=8GiB,custom=2")
    try:
        @marin.remote(**options)
        def f(x):
            return x + 1

        assert marin.get(f.remote(1)) == 2
        # the same options through .options(...) on a plain remote function
        @marin.remote
        def g(x):
            return x + 2

        assert marin.get(g.options(**options).remote(1)) == 3
    finally:
        marin.shutdown()


def test_env_and_runtime_env_are_read_in_the_task(rt):
    @marin.remote(env={"COLOR": "blue"})
    def color():
        return marin.get_runtime_context().get_env("COLOR")

    @marin.remote
    def read(key):
        return marin.get_runtime_context().get_env(key, "unset")

    assert marin.get(color.remote()) == "blue"
    assert marin.get(read.remote("COLOR")) == "unset"
    assert marin.get(read.options(runtime_env={"env_vars": {"COLOR": "red"}})
                     .remote("COLOR")) == "red"
    assert marin.get(read.options(env={"N": 3}).remote("N")) == "3"
    # runtime_env adds to env
    both = read.options(env={"X": "1"}, runtime_env={"env_vars": {"Y": "2"}})
    assert marin.get(both.remote("X")) == "1"
    assert marin.get(both.remote("Y")) == "2"


def test_options_does_not_change_the_original(rt):
    @marin.remote(env={"K": "base"})
    def read():
        return marin.get_runtime_context().get_env("K")

    other = read.options(env={"K": "other"})
    assert marin.get(other.remote()) == "other"
    assert marin.get(read.remote()) == "base"


def test_resource_limits_bound_concurrency():
    """cpus=2 on a 2-cpu runtime: two such tasks never overlap."""
    marin.shutdown()
    marin.init("local://?resources=cpus=2")
    try:
        lock = threading.Lock()
        state = {"now": 0, "peak": 0}

        @marin.remote(num_cpus=2)
        def exclusive():
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.02)
            with lock:
                state["now"] -= 1

        marin.get([exclusive.remote() for _ in range(6)])
        assert state["peak"] == 1

        state["peak"] = 0
        barrier = threading.Barrier(2, timeout=10)

        @marin.remote(num_cpus=1)
        def meet():
            barrier.wait()  # both 1-cpu tasks run at once
            return True

        assert marin.get([meet.remote(), meet.remote()], timeout=20) == [True, True]
    finally:
        marin.shutdown()


def test_unknown_option_is_a_type_error(rt):
    with pytest.raises(TypeError):
        marin.remote(num_cpu=1)(lambda: None).remote()


def test_calling_a_remote_function_directly_is_a_type_error(rt):
    @marin.remote
    def f():
        return 1

    with pytest.raises(TypeError):
        f()


# ---------------------------------------------------------------- refs as arguments

def test_refs_as_arguments_are_dependencies(rt):
    go = threading.Event()
    order = []

    @marin.remote
    def slow(x):
        assert go.wait(10)
        order.append("slow")
        return x

    @marin.remote
    def add(a, b):
        order.append("add")
        return a + b

    a = slow.remote(1)
    b = add.remote(a, 10)   # must wait for a
    c = add.remote(b, b)    # twice the same ref
    d = add.remote(5, b=a)  # as a keyword
    assert not b.done()
    go.set()
    assert marin.get(c) == 22
    assert marin.get(d) == 6
    assert order[0] == "slow"


def test_nested_refs_are_passed_as_refs(rt):
    @marin.remote
    def one():
        return 1

    @marin.remote
    def inspect(items, mapping):
        assert all(isinstance(r, marin.ObjectRef) for r in items)
        assert isinstance(mapping["k"], marin.ObjectRef)
        return sum(marin.get(items)) + marin.get(mapping["k"])

    refs = [one.remote() for _ in range(3)]
    assert marin.get(inspect.remote(refs, {"k": one.remote()})) == 4


def test_nested_tasks_do_not_deadlock_a_one_cpu_runtime():
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        @marin.remote
        def leaf(x):
            return x * 2

        @marin.remote
        def middle(x):
            return marin.get(leaf.remote(x)) + 1

        @marin.remote
        def top(n):
            return sum(marin.get([middle.remote(i) for i in range(n)]))

        assert marin.get(top.remote(5), timeout=20) == sum(2 * i + 1 for i in range(5))
        assert marin.get([top.remote(2) for _ in range(3)], timeout=20) == [4, 4, 4]
    finally:
        marin.shutdown()


# ---------------------------------------------------------------- get / wait

def test_get_list_keeps_order(rt):
    @marin.remote
    def f(i):
        time.sleep(0.001 * (10 - i))
        return i

    refs = [f.remote(i) for i in range(10)]
    assert marin.get(refs) == list(range(10))
    assert marin.get(tuple(refs)) == list(range(10))
    assert marin.get([]) == []


def test_get_rejects_non_refs(rt):
    with pytest.raises(TypeError):
        marin.get(3)
    with pytest.raises(TypeError):
        marin.get([3])


def test_get_timeout(rt):
    ev = threading.Event()

    @marin.remote
    def blocked():
        ev.wait(10)
        return "late"

    ref = blocked.remote()
    t0 = time.monotonic()
    with pytest.raises(marin.GetTimeoutError) as info:
        marin.get(ref, timeout=0.2)
    assert 0.15 <= time.monotonic() - t0 < 2
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(TimeoutError):
        marin.get([ref], timeout=0)
    ev.set()
    # the work goes on after a get timed out
    assert marin.get(ref, timeout=10) == "late"


@pytest.fixture
def rt4():
    """Four cpus: four 1-cpu tasks run at once."""
    marin.shutdown()
    marin.init("local://?resources=cpus=4")
    yield marin
    marin.shutdown()


def test_wait_semantics(rt4):
    gates = [threading.Event() for _ in range(4)]

    @marin.remote
    def gated(i):
        assert gates[i].wait(10)
        return i

    refs = [gated.remote(i) for i in range(4)]
    ready, rest = marin.wait(refs, num_returns=1, timeout=0.05)
    assert ready == [] and rest == refs

    gates[3].set()
    gates[1].set()
    ready, rest = marin.wait(refs, num_returns=2, timeout=10)
    assert ready == [refs[1], refs[3]]  # input order, not completion order
    assert rest == [refs[0], refs[2]]

    ready, rest = marin.wait(refs, num_returns=1, timeout=10)
    assert len(ready) == 1 and ready[0] in (refs[1], refs[3])
    assert len(rest) == 3

    # timeout: fewer than num_returns, every ref in one of the lists
    ready, rest = marin.wait(refs, num_returns=4, timeout=0.05)
    assert ready == [refs[1], refs[3]] and rest == [refs[0], refs[2]]

    for g in gates:
        g.set()
    ready, rest = marin.wait(refs, num_returns=4)
    assert ready == refs and rest == []

    with pytest.raises(ValueError):
        marin.wait(refs, num_returns=0)
    with pytest.raises(ValueError):
        marin.wait(refs, num_returns=5)
    assert marin.wait([], num_returns=1) == ([], [])


def test_wait_counts_failures_as_ready(rt):
    @marin.remote
    def boom():
        raise RuntimeError("x")

    ref = boom.remote()
    ready, rest = marin.wait([ref], timeout=10)
    assert ready == [ref] and rest == []


def test_cancel_a_queued_task():
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        started = threading.Event()
        release = threading.Event()
        ran = []

        @marin.remote
        def hog():
            started.set()
            release.wait(10)
            return "hog"

        @marin.remote
        def queued():
            ran.append(1)
            return "queued"

        h = hog.remote()
        assert started.wait(10)
        q = queued.remote()
        assert marin.cancel(q) is True
        release.set()
        with pytest.raises(marin.TaskCancelledError):
            marin.get(q, timeout=10)
        assert marin.get(h, timeout=10) == "hog"
        assert ran == []
        # cancelling a finished task says so
        assert marin.cancel(h) is False
    finally:
        marin.shutdown()


def test_cancel_a_running_task_is_cooperative(rt):
    started = threading.Event()

    @marin.remote
    def loop():
        started.set()
        ctx = marin.get_runtime_context()
        deadline = time.monotonic() + 10
        while not ctx.cancelled() and time.monotonic() < deadline:
            time.sleep(0.005)
        return ctx.cancelled()

    ref = loop.remote()
    assert started.wait(10)
    assert ref.cancel() is True
    with pytest.raises(marin.TaskCancelledError):
        marin.get(ref, timeout=10)


# ---------------------------------------------------------------- retries

def test_worker_death_is_retried(rt):
    attempts = []

    @marin.remote(max_retries=2)
    def flaky():
        attempt = marin.get_runtime_context().get_attempt()
        attempts.append(attempt)
        if attempt == 1:
            marin.testing.kill_worker()
        return "ok on %d" % attempt

    assert marin.get(flaky.remote(), timeout=20) == "ok on 2"
    assert attempts == [1, 2]


def test_worker_death_past_max_retries_is_worker_died(rt):
    attempts = []

    @marin.remote(max_retries=2)
    def doomed():
        attempts.append(marin.get_runtime_context().get_attempt())
        marin.testing.kill_worker()

    with pytest.raises(marin.WorkerDiedError) as info:
        marin.get(doomed.remote(), timeout=20)
    assert attempts == [1, 2, 3]
    assert isinstance(info.value, marin.MarinError)

    attempts.clear()
    with pytest.raises(marin.WorkerDiedError):
        marin.get(doomed.options(max_retries=0).remote(), timeout=20)
    assert attempts == [1]


def test_application_errors_are_not_retried_by_default(rt):
    attempts = []

    @marin.remote(max_retries=3)
    def bad():
        attempts.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        marin.get(bad.remote(), timeout=20)
    assert len(attempts) == 1


def test_retry_exceptions_true_retries_application_errors(rt):
    attempts = []

    @marin.remote(max_retries=3, retry_exceptions=True)
    def flaky():
        attempt = marin.get_runtime_context().get_attempt()
        attempts.append(attempt)
        if attempt < 3:
            raise IOError("transient %d" % attempt)
        return attempt

    assert marin.get(flaky.remote(), timeout=20) == 3
    assert attempts == [1, 2, 3]

    attempts.clear()

    @marin.remote(max_retries=2, retry_exceptions=True)
    def always():
        attempts.append(marin.get_runtime_context().get_attempt())
        raise KeyError("always")

    with pytest.raises(KeyError) as info:
        marin.get(always.remote(), timeout=20)
    assert attempts == [1, 2, 3]  # the first run and max_retries retries
    assert isinstance(info.value, marin.TaskError)


def test_retry_exceptions_list_retries_only_listed_types(rt):
    attempts = []

    @marin.remote(max_retries=3, retry_exceptions=[ConnectionError, KeyError])
    def f(exc_type):
        attempt = marin.get_runtime_context().get_attempt()
        attempts.append(attempt)
        if attempt < 3:
            raise exc_type("attempt %d" % attempt)
        return attempt

    # a listed type (and its subclasses) is retried
    assert marin.get(f.remote(ConnectionError), timeout=20) == 3
    assert attempts == [1, 2, 3]
    attempts.clear()
    assert marin.get(f.remote(ConnectionResetError), timeout=20) == 3
    assert attempts == [1, 2, 3]
    attempts.clear()
    # an unlisted type fails on the first attempt
    with pytest.raises(ValueError) as info:
        marin.get(f.remote(ValueError), timeout=20)
    assert attempts == [1]
    assert isinstance(info.value, marin.TaskError)
    assert info.value.remote_type == "ValueError"


def test_retry_exceptions_list_unlisted_failure_is_a_failed_ref(rt):
    """An unlisted exception fails the task: wait/done see it finished, and a
    task depending on it fails too."""
    @marin.remote(retry_exceptions=[KeyError])
    def bad():
        raise ValueError("not listed")

    ran = []

    @marin.remote
    def after(x):
        ran.append(x)
        return x

    ref = bad.remote()
    with pytest.raises(ValueError):
        marin.get(ref, timeout=10)
    dep = after.remote(ref)
    with pytest.raises(marin.MarinError):
        marin.get(dep, timeout=10)
    assert ran == []


def test_retry_exceptions_list_exhausted_raises_the_last_error(rt):
    attempts = []

    @marin.remote(max_retries=1, retry_exceptions=[KeyError])
    def always():
        attempts.append(marin.get_runtime_context().get_attempt())
        raise KeyError("again")

    with pytest.raises(KeyError):
        marin.get(always.remote(), timeout=20)
    assert attempts == [1, 2]


# ---------------------------------------------------------------- refusals

def test_infeasible_resources_raise_at_remote(rt):
    @marin.remote(num_cpus=64)
    def huge():
        return 1

    with pytest.raises(marin.InfeasibleError) as info:
        huge.remote()
    assert isinstance(info.value, ValueError)

    @marin.remote(resources={"TPU": 4})
    def tpu():
        return 1

    with pytest.raises(marin.InfeasibleError):
        tpu.remote()
    with pytest.raises(marin.InfeasibleError):
        marin.remote(memory="1000TiB")(lambda: 1).remote()


def test_unknown_runtime_env_key_is_unsupported(rt):
    @marin.remote
    def f():
        return 1

    with pytest.raises(marin.UnsupportedError) as info:
        f.options(runtime_env={"pip": ["numpy"]}).remote()
    assert "pip" in str(info.value)
    assert isinstance(info.value, NotImplementedError)
    with pytest.raises(marin.UnsupportedError):
        marin.remote(runtime_env={"working_dir": "."})(lambda: 1).remote()


# ---------------------------------------------------------------- tasks by name

def test_call_a_task_registered_by_name(rt):
    def upper(data):
        assert isinstance(data, bytes)
        return data.upper()

    marin.register_task("test_tasks.upper", upper)
    ref = marin.call("test_tasks.upper", b"hello \x00 world")
    assert marin.get(ref) == b"HELLO \x00 WORLD"
    assert marin.get(marin.call("test_tasks.upper", "str in")) == b"STR IN"
    assert marin.get(marin.call("test_tasks.upper", b"")) == b""
    n = marin.call("test_tasks.upper", b"abc", decode=lambda b: len(b))
    assert marin.get(n) == 3

    @marin.register_task("test_tasks.wordcount")
    def wordcount(data):
        return str(len(data.split()))

    assert marin.get(marin.call("test_tasks.wordcount", b"a b  c\nd")) == b"4"


def test_registered_task_failure_is_a_task_error(rt):
    @marin.register_task("test_tasks.fails")
    def fails(data):
        raise ValueError("bad bytes: %r" % data)

    with pytest.raises(marin.TaskError) as info:
        marin.get(marin.call("test_tasks.fails", b"xyz"), timeout=10)
    assert "bad bytes" in str(info.value)


def test_register_the_same_name_twice_is_an_error(rt):
    marin.register_task("test_tasks.twice", lambda b: b)
    with pytest.raises(marin.ExistsError):
        marin.register_task("test_tasks.twice", lambda b: b)


def test_call_an_unknown_name_is_not_found(rt):
    with pytest.raises(marin.NotFoundError) as info:
        marin.get(marin.call("test_tasks.no-such-task", b""), timeout=10)
    assert isinstance(info.value, LookupError)
    assert "no-such-task" in str(info.value)


# ---------------------------------------------------------------- init

def test_init_twice(rt):
    with pytest.raises(marin.StateError) as info:
        marin.init("local")
    assert isinstance(info.value, RuntimeError)
    assert marin.init("local", ignore_reinit_error=True) == "local"
    assert marin.is_initialized()


def test_init_none_uses_marin_backend(monkeypatch):
    marin.shutdown()
    monkeypatch.setenv("MARIN_BACKEND", "local://?resources=cpus=1,marker=3")
    try:
        assert marin.init(None) == "local"
        assert marin.backend() == "local"

        @marin.remote(resources={"marker": 3})
        def f():
            return "fits"

        assert marin.get(f.remote(), timeout=10) == "fits"
        with pytest.raises(marin.InfeasibleError):
            f.options(resources={"marker": 4}).remote()
    finally:
        marin.shutdown()
    monkeypatch.setenv("MARIN_BACKEND", "nonsense://x")
    with pytest.raises(marin.MarinError):
        marin.init()
    assert not marin.is_initialized()


def test_first_use_opens_a_runtime():
    marin.shutdown()
    try:
        @marin.remote
        def f():
            return 5

        assert marin.get(f.remote()) == 5
        assert marin.is_initialized()
    finally:
        marin.shutdown()


def test_refs_stay_readable_after_shutdown():
    marin.shutdown()
    marin.init("local://?resources=cpus=1")

    @marin.remote
    def f():
        return "kept"

    ref = f.remote()
    assert marin.get(ref) == "kept"
    marin.shutdown()
    assert marin.get(ref) == "kept"


# ---------------------------------------------------------------- memory

class Payload:
    """An argument whose lifetime the tests watch with a weakref."""


def _outcome_refs(outcome):
    """Submit a task with a Payload argument that ends in @outcome."""
    import weakref
    payload = Payload()
    alive = weakref.ref(payload)
    gate = threading.Event()

    @marin.remote(max_retries=1)
    def run(p, mode):
        if mode == "fail":
            raise ValueError("no")
        if mode == "die":
            marin.testing.kill_worker()
        if mode == "block":
            gate.wait(10)
        return "ok"

    @marin.remote
    def fails():
        raise KeyError("dep")

    if outcome == "cancelled":
        blocker = run.remote(None, "block")  # holds the only cpu
        ref = run.remote(payload, "ok")
        ref.cancel()
        gate.set()
        marin.get(blocker)
    elif outcome == "dependency failed":
        ref = run.remote(payload, fails.remote())
    else:
        ref = run.remote(payload, outcome)
    del payload
    marin.wait([ref], timeout=20)
    try:
        marin.get(ref, timeout=20)
    except Exception:
        pass
    return alive


@pytest.mark.parametrize("outcome", ["ok", "fail", "die", "cancelled",
                                     "dependency failed"])
def test_arguments_are_released_when_the_task_ends(outcome):
    """A long batch job must not keep every input alive: once a task has
    ended, however it ended, the driver holds nothing of its arguments."""
    import gc
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        alive = _outcome_refs(outcome)
        gc.collect()
        assert alive() is None, "the arguments of a task that ended (%s) are still " \
                                "held by marin" % outcome
    finally:
        marin.shutdown()
