"""local://?processes=N: Python tasks run in supervised worker processes."""
import os
import signal

import pytest

import marin


@pytest.fixture
def procs():
    marin.shutdown()
    marin.init("local://?processes=2&resources=cpus=2")
    yield marin
    marin.shutdown()


def square_with_pid(x):
    return x * x, os.getpid()


def raise_key_error(key):
    raise KeyError(key)


def die_first_time(marker):
    """SIGKILL its own worker on the first attempt (as the OOM killer would)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def die_always():
    os.kill(os.getpid(), signal.SIGKILL)


def test_tasks_run_in_other_processes(procs):
    sq = marin.remote(square_with_pid)
    out = marin.get([sq.remote(i) for i in range(20)])
    assert [v for v, _ in out] == [i * i for i in range(20)]
    pids = {p for _, p in out}
    assert os.getpid() not in pids


def test_closures_and_lambdas_travel_by_value(procs):
    offset = 7
    add = marin.remote(lambda a: a + offset)
    assert marin.get(add.remote(35)) == 42


def test_refs_are_dependencies_across_processes(procs):
    sq = marin.remote(square_with_pid)
    first = sq.remote(3)
    pick = marin.remote(lambda pair, extra: pair[0] + extra)
    assert marin.get(pick.remote(first, extra=1)) == 10


def test_exceptions_keep_their_type_and_traceback(procs):
    f = marin.remote(raise_key_error)
    with pytest.raises(KeyError) as info:
        marin.get(f.remote("missing"))
    e = info.value
    assert isinstance(e, marin.TaskError)
    assert e.remote_type == "KeyError"
    assert "raise_key_error" in e.traceback_text


def test_killed_worker_is_replaced_and_the_task_retried(procs, tmp_path):
    f = marin.remote(die_first_time)
    pid = marin.get(f.remote(str(tmp_path / "marker")), timeout=60)
    assert pid != os.getpid()
    # the pool is whole again
    sq = marin.remote(square_with_pid)
    assert [v for v, _ in marin.get([sq.remote(i) for i in range(4)])] == [0, 1, 4, 9]


def test_worker_death_spends_the_retry_budget(procs):
    f = marin.remote(die_always).options(max_retries=1)
    with pytest.raises(marin.WorkerDiedError) as info:
        marin.get(f.remote(), timeout=60)
    assert "signal 9" in str(info.value)


def test_unpicklable_argument_is_reported_at_submit(procs):
    import threading
    f = marin.remote(square_with_pid)
    with pytest.raises(TypeError, match="pickled"):
        f.remote(threading.Lock())


def raise_value_error(counter_file):
    with open(counter_file, "a") as f:
        f.write("x")
    raise ValueError("not retried")


class Acc:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


def double(x):
    return 2 * x


def test_retry_exceptions_list_is_honoured_across_processes(procs, tmp_path):
    counter = tmp_path / "attempts"
    f = marin.remote(raise_value_error).options(retry_exceptions=[KeyError], max_retries=3)
    with pytest.raises(ValueError):
        marin.get(f.remote(str(counter)))
    assert counter.read_text() == "x"  # one attempt: ValueError is not in the list


def test_actor_refs_and_actor_methods_submitting_tasks(procs):
    acc = marin.remote(Acc).remote()
    ref = acc.add.remote(5)  # its value lives in the driver
    d = marin.remote(double)
    assert marin.get(d.remote(ref)) == 10

    @marin.remote
    class Submitter:
        def run(self, x):
            return marin.get(d.remote(x))

    s = Submitter.remote()
    assert marin.get(s.run.remote(21)) == 42


def test_long_exception_messages_keep_their_type(procs):
    f = marin.remote(raise_key_error)
    with pytest.raises(KeyError):
        marin.get(f.remote("k" * 3000))


def test_auto_init_from_marin_backend(monkeypatch):
    marin.shutdown()
    monkeypatch.setenv("MARIN_BACKEND", "local://?processes=2&resources=cpus=2")
    try:
        sq = marin.remote(square_with_pid)
        value, pid = marin.get(sq.remote(9))  # the first call opens the runtime
        assert value == 81 and pid != os.getpid()
    finally:
        marin.shutdown()
