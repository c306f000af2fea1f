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
