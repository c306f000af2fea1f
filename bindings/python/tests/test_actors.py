"""Actors as a Ray user writes them: stateful, ordered, named, shared,
concurrent, restartable."""
import threading

import pytest

import marin
import marin.testing


@marin.remote
class Counter:
    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step
        self.log = []

    def incr(self, by=None):
        self.value += self.step if by is None else by
        return self.value

    def append(self, x):
        self.log.append(x)
        return len(self.log)

    def get_log(self):
        return list(self.log)

    def get(self):
        return self.value

    def fail(self, msg):
        raise KeyError(msg)

    def explode(self):
        raise RuntimeError("kaboom")


@marin.actor
class Store:
    def __init__(self):
        self.data = {}

    def put(self, k, v):
        self.data[k] = v

    def get(self, k):
        return self.data.get(k)

    def size(self):
        return len(self.data)


def test_remote_class_with_constructor_args(rt):
    c = Counter.remote(10, step=5)
    assert isinstance(c, marin.ActorHandle)
    assert marin.get(c.incr.remote()) == 15
    assert marin.get(c.incr.remote(by=1)) == 16
    assert marin.get(c.get.remote()) == 16
    # two actors have their own state
    d = Counter.remote()
    assert marin.get(d.incr.remote()) == 1
    assert marin.get(c.get.remote()) == 16


def test_marin_actor_decorator(rt):
    s = Store.remote()
    marin.get(s.put.remote("a", 1))
    assert marin.get(s.get.remote("a")) == 1
    assert marin.get(s.size.remote()) == 1

    @marin.actor(max_concurrency=1)
    class WithOptions:
        def hello(self):
            return "hi"

    assert marin.get(WithOptions.remote().hello.remote()) == "hi"


def test_actor_class_cannot_be_instantiated_directly(rt):
    with pytest.raises(TypeError):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError):
        c.incr()


def test_thousand_pipelined_calls_run_in_order(rt):
    c = Counter.remote()
    refs = [c.append.remote(i) for i in range(1000)]
    assert marin.get(refs) == list(range(1, 1001))
    assert marin.get(c.get_log.remote()) == list(range(1000))


def test_calls_from_many_threads_each_in_order(rt):
    c = Counter.remote()

    def worker(t):
        refs = [c.append.remote((t, i)) for i in range(200)]
        marin.get(refs)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    log = marin.get(c.get_log.remote())
    assert len(log) == 800
    for t in range(4):
        assert [i for (tt, i) in log if tt == t] == list(range(200))


def test_refs_as_method_arguments(rt):
    """A ref passed to a method is resolved to its value first, even when the
    task behind it is still running when the call is made (as in Ray)."""
    gate = threading.Event()

    @marin.remote
    def make(x):
        assert gate.wait(10)
        return x * 3

    c = Counter.remote()
    pending = make.remote(2)
    call = c.incr.remote(pending)
    later = c.get.remote()  # runs after incr: not before `make` has finished
    ready, _ = marin.wait([later], timeout=0.3)
    gate.set()
    assert marin.get(call, timeout=10) == 6
    assert marin.get(later, timeout=10) == 6
    assert ready == []


def test_failed_ref_as_method_argument(rt):
    gate = threading.Event()

    @marin.remote
    def bad():
        assert gate.wait(10)
        raise ValueError("upstream")

    c = Counter.remote()
    call = c.incr.remote(bad.remote())
    marin.wait([c.get.remote()], timeout=0.3)  # gives a wrong early run its chance
    gate.set()
    with pytest.raises(ValueError):
        marin.get(call, timeout=10)
    assert marin.get(c.get.remote()) == 0


def test_named_actor_get_if_exists_and_get_actor(rt):
    a = Counter.options(name="shared-counter").remote(100)
    marin.get(a.incr.remote())
    b = Counter.options(name="shared-counter", get_if_exists=True).remote(0)
    assert marin.get(b.get.remote()) == 101  # the same actor, not a new one
    c = marin.get_actor("shared-counter")
    assert marin.get(c.incr.remote()) == 102
    assert marin.get(a.get.remote()) == 102
    # the name is taken
    with pytest.raises(marin.MarinError):
        Counter.options(name="shared-counter").remote()
    with pytest.raises(marin.NotFoundError) as info:
        marin.get_actor("no-such-actor")
    assert isinstance(info.value, ValueError) or isinstance(info.value, LookupError)


def test_unknown_method_is_attribute_error(rt):
    c = Counter.remote()
    with pytest.raises(AttributeError):
        c.no_such_method
    with pytest.raises(AttributeError):
        c.value  # an attribute, not a method
    # also through a handle found by name
    Counter.options(name="attr-check").remote()
    h = marin.get_actor("attr-check")
    with pytest.raises(AttributeError):
        h.no_such_method.remote()
    assert hasattr(c, "incr")


def test_method_exception_is_task_error(rt):
    c = Counter.remote()
    with pytest.raises(KeyError) as info:
        marin.get(c.fail.remote("boom"))
    e = info.value
    assert isinstance(e, marin.TaskError)
    assert e.remote_type == "KeyError"
    assert "boom" in e.remote_message
    assert "fail" in e.traceback_text
    # the actor survives its method's exception
    assert marin.get(c.incr.remote()) == 1


def test_method_error_message_names_the_method(rt):
    c = Counter.remote()
    with pytest.raises(RuntimeError) as info:
        marin.get(c.explode.remote())
    assert "Counter" in info.value.message
    assert "explode" in info.value.message


def test_kill_then_calls_fail(rt):
    c = Counter.remote()
    assert marin.get(c.incr.remote()) == 1
    marin.kill(c)
    with pytest.raises(marin.MarinError):
        marin.get(c.incr.remote(), timeout=10)


def test_kill_named_actor_frees_the_name(rt):
    c = Counter.options(name="short-lived").remote()
    marin.get(c.incr.remote())
    marin.kill(c)
    with pytest.raises(marin.NotFoundError):
        marin.get_actor("short-lived")
    fresh = Counter.options(name="short-lived").remote(7)
    assert marin.get(fresh.get.remote()) == 7


def test_actor_shared_by_tasks(rt):
    store = Store.options(name="task-shared-store").remote()

    @marin.remote
    def writer_by_handle(handle, k):
        marin.get(handle.put.remote(k, k * k))
        return k

    @marin.remote
    def writer_by_name(k):
        h = marin.get_actor("task-shared-store")
        marin.get(h.put.remote(k, -k))
        return k

    refs = [writer_by_handle.remote(store, k) for k in range(10)]
    refs += [writer_by_name.remote(k) for k in range(10, 20)]
    assert sorted(marin.get(refs, timeout=30)) == list(range(20))
    assert marin.get(store.size.remote()) == 20
    assert marin.get(store.get.remote(3)) == 9
    assert marin.get(store.get.remote(13)) == -13


def test_actor_handle_in_a_list_argument(rt):
    store = Store.remote()

    @marin.remote
    def use(handles):
        marin.get(handles[0].put.remote("k", "v"))
        return marin.get(handles[0].get.remote("k"))

    assert marin.get(use.remote([store]), timeout=10) == "v"


def test_actors_do_not_starve_tasks():
    """An actor holds no cpus by default: many actors on a 1-cpu runtime
    leave room for tasks."""
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        actors = [Counter.remote() for _ in range(4)]

        @marin.remote
        def task():
            return "ran"

        assert marin.get([a.incr.remote() for a in actors], timeout=10) == [1] * 4
        assert marin.get(task.remote(), timeout=10) == "ran"
    finally:
        marin.shutdown()


def test_max_concurrency_allows_overlap(rt):
    @marin.remote(max_concurrency=3)
    class Meeting:
        def __init__(self):
            self.barrier = threading.Barrier(3, timeout=10)

        def meet(self, i):
            self.barrier.wait()  # only passes when three calls overlap
            return i

    m = Meeting.remote()
    assert marin.get([m.meet.remote(i) for i in range(3)], timeout=20) == [0, 1, 2]

    # the same class with max_concurrency=1 (via options) serialises calls
    @marin.remote
    class Serial:
        def __init__(self):
            self.lock = threading.Lock()
            self.now = 0
            self.peak = 0

        def work(self):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            threading.Event().wait(0.002)
            with self.lock:
                self.now -= 1

        def peak_seen(self):
            return self.peak

    s = Serial.options(max_concurrency=1).remote()
    marin.get([s.work.remote() for _ in range(10)])
    assert marin.get(s.peak_seen.remote()) == 1


# ---------------------------------------------------------------- restarts

CRASHED = []  # tags of idempotent calls that crashed once (not in checkpoints)


class DurableState:
    """A plain class made an actor below with marin.remote(DurableState), so
    that the module attribute DurableState is the class pickle looks for."""

    def __init__(self):
        self.n = 0
        self.history = []

    def add(self, x):
        self.n += x
        self.history.append(x)
        return self.n

    def add_then_crash(self, x):
        self.n += x  # lost: the restart restores the last checkpoint
        marin.testing.kill_worker()

    @marin.method(idempotent=True)
    def add_idempotent_crash_once(self, x, tag):
        if tag not in CRASHED:
            CRASHED.append(tag)
            marin.testing.kill_worker()
        self.n += x
        return self.n

    def state(self):
        return self.n, list(self.history)


Durable = marin.remote(DurableState)


@marin.remote
class DecoratedDurable:
    """The usual Ray spelling: the decorator at module level (the module
    attribute is then the actor class, not the Python class)."""

    def __init__(self):
        self.n = 0

    def add(self, x):
        self.n += x
        return self.n

    def crash(self):
        marin.testing.kill_worker()


def test_restart_with_state_from_checkpoint(rt):
    d = Durable.options(max_restarts=2, checkpoint_every=1).remote()
    assert marin.get(d.add.remote(1)) == 1
    assert marin.get(d.add.remote(2)) == 3
    with pytest.raises(marin.WorkerDiedError):
        marin.get(d.add_then_crash.remote(100), timeout=20)
    # the next call sees the state from before the crash
    assert marin.get(d.state.remote(), timeout=20) == (3, [1, 2])
    assert marin.get(d.add.remote(4)) == 7
    # a second crash: one restart left
    with pytest.raises(marin.WorkerDiedError):
        marin.get(d.add_then_crash.remote(100), timeout=20)
    assert marin.get(d.state.remote(), timeout=20) == (7, [1, 2, 4])
    # a third: max_restarts spent, the actor is gone for good
    with pytest.raises(marin.WorkerDiedError):
        marin.get(d.add_then_crash.remote(100), timeout=20)
    with pytest.raises(marin.MarinError):
        marin.get(d.state.remote(), timeout=20)


def test_calls_queued_behind_a_crash_run_after_the_restart(rt):
    d = Durable.options(max_restarts=1, checkpoint_every=1).remote()
    marin.get(d.add.remote(5))
    crash = d.add_then_crash.remote(100)
    after = [d.add.remote(1) for _ in range(3)]
    with pytest.raises(marin.WorkerDiedError):
        marin.get(crash, timeout=20)
    assert marin.get(after, timeout=20) == [6, 7, 8]


def test_idempotent_method_is_replayed(rt):
    CRASHED.clear()
    d = Durable.options(max_restarts=2, checkpoint_every=1).remote()
    assert marin.get(d.add.remote(10)) == 10
    # crashes on its first run, replayed after the restart: succeeds once
    assert marin.get(d.add_idempotent_crash_once.remote(5, "a"), timeout=20) == 15
    assert CRASHED == ["a"]
    assert marin.get(d.state.remote()) == (15, [10])


def test_no_restarts_by_default(rt):
    d = Durable.remote()
    marin.get(d.add.remote(1))
    with pytest.raises(marin.WorkerDiedError):
        marin.get(d.add_then_crash.remote(1), timeout=20)
    with pytest.raises(marin.MarinError):
        marin.get(d.state.remote(), timeout=20)


def test_checkpoint_on_request(rt):
    d = Durable.options(max_restarts=1).remote()
    marin.get(d.add.remote(1))
    marin.get(d.add.remote(2))
    marin.checkpoint(d)
    marin.get(d.add.remote(4))  # after the checkpoint: lost in the crash
    with pytest.raises(marin.WorkerDiedError):
        marin.get(d.add_then_crash.remote(100), timeout=20)
    assert marin.get(d.state.remote(), timeout=20) == (3, [1, 2])


def test_decorated_class_restarts_with_state(rt):
    d = DecoratedDurable.options(max_restarts=1, checkpoint_every=1).remote()
    assert marin.get(d.add.remote(2)) == 2
    with pytest.raises(marin.WorkerDiedError):
        marin.get(d.crash.remote(), timeout=20)
    assert marin.get(d.add.remote(3), timeout=20) == 5


def test_getstate_decides_what_survives(rt):
    @marin.remote
    class Cache:
        def __init__(self):
            self.kept = 0
            self.scratch = []

        def __getstate__(self):
            return {"kept": self.kept}

        def __setstate__(self, st):
            self.kept = st["kept"]
            self.scratch = ["rebuilt"]

        def bump(self):
            self.kept += 1
            self.scratch.append("x")
            return self.kept

        def crash(self):
            marin.testing.kill_worker()

        def look(self):
            return self.kept, self.scratch

    c = Cache.options(max_restarts=1, checkpoint_every=1).remote()
    marin.get([c.bump.remote(), c.bump.remote()])
    with pytest.raises(marin.WorkerDiedError):
        marin.get(c.crash.remote(), timeout=20)
    assert marin.get(c.look.remote(), timeout=20) == (2, ["rebuilt"])


def test_constructor_failure_surfaces_on_calls(rt):
    @marin.remote
    class Broken:
        def __init__(self, why):
            raise ValueError(why)

        def ping(self):
            return "pong"

    b = Broken.remote("no config file")
    with pytest.raises(marin.MarinError) as info:
        marin.get(b.ping.remote(), timeout=10)
    assert "no config file" in str(info.value)
    with pytest.raises(marin.MarinError):
        marin.get(b.ping.remote(), timeout=10)
    with pytest.raises(marin.MarinError) as info:
        b.ready(timeout=10)
    assert "no config file" in str(info.value)


def test_ready(rt):
    c = Counter.remote()
    assert c.ready(timeout=10) is True


# The way of remote backends (redis://), where a Python actor is an instance
# of the generic C class "marin.py.actor" whose constructor and call
# arguments travel pickled, run here on the local backend (test_redis.py
# runs it across processes).
@pytest.fixture
def pickled_rt(rt, monkeypatch):
    import marin._actor
    monkeypatch.setattr(marin._actor, "_force_pickled", True)
    yield rt


@pytest.mark.parametrize("case", [
    test_remote_class_with_constructor_args, test_marin_actor_decorator,
    test_thousand_pipelined_calls_run_in_order, test_named_actor_get_if_exists_and_get_actor,
    test_method_exception_is_task_error, test_method_error_message_names_the_method,
    test_kill_named_actor_frees_the_name, test_actor_shared_by_tasks,
    test_max_concurrency_allows_overlap, test_restart_with_state_from_checkpoint,
    test_calls_queued_behind_a_crash_run_after_the_restart, test_idempotent_method_is_replayed,
    test_checkpoint_on_request, test_decorated_class_restarts_with_state,
    test_getstate_decides_what_survives, test_constructor_failure_surfaces_on_calls],
    ids=lambda f: f.__name__[5:])
def test_pickled_actors(pickled_rt, case):
    case(pickled_rt)


def test_pickled_actor_ref_argument_is_got_first(pickled_rt):
    c = Counter.remote()
    ok = marin.remote(lambda: 5).remote()
    assert marin.get(c.incr.remote(ok)) == 5
    bad = marin.remote(lambda: 1 // 0).options(max_retries=0).remote()
    with pytest.raises(ZeroDivisionError):
        c.incr.remote(bad)  # raised by .remote(): the caller got the ref
    assert marin.get(c.get.remote()) == 5
