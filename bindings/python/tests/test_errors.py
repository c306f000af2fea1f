"""A task's failure reaches the driver as Ray users expect to catch it."""
import threading
import time

import pytest

import marin


class QuotaExceeded(Exception):
    """A user-defined exception with extra state."""

    def __init__(self, user, limit):
        super().__init__("user %s is over its quota of %d" % (user, limit))
        self.user = user
        self.limit = limit


def raise_value_error_in_parse(text):
    return int(text)  # ValueError: invalid literal for int()


@marin.remote
def parse_record(text):
    return raise_value_error_in_parse(text)


@marin.remote
def lookup_field(record, field):
    return record[field]


@marin.remote
def charge_user(user):
    raise QuotaExceeded(user, 10)


def test_value_error_is_task_error_and_value_error(rt):
    with pytest.raises(ValueError) as info:
        marin.get(parse_record.remote("not a number"))
    e = info.value
    assert isinstance(e, marin.TaskError)
    assert isinstance(e, marin.MarinError)
    assert e.remote_type == "ValueError"
    assert "invalid literal for int()" in e.remote_message
    # the traceback names the functions that raised, where they ran
    assert "raise_value_error_in_parse" in e.traceback_text
    assert "parse_record" in e.traceback_text
    assert "Traceback" in e.traceback_text
    assert isinstance(e.cause, ValueError)
    assert e.code == marin._lib.MARIN_ETASK
    # str() shows the message and the remote traceback
    text = str(e)
    assert "invalid literal" in text
    assert "raise_value_error_in_parse" in text


def test_key_error_is_caught_as_key_error(rt):
    try:
        marin.get(lookup_field.remote({"a": 1}, "missing"))
    except KeyError as e:
        assert isinstance(e, marin.TaskError)
        assert e.remote_type == "KeyError"
        assert "missing" in e.remote_message
        assert "lookup_field" in e.traceback_text
    else:
        pytest.fail("no KeyError")


def test_user_defined_exception(rt):
    with pytest.raises(QuotaExceeded) as info:
        marin.get(charge_user.remote("ada"))
    e = info.value
    assert isinstance(e, marin.TaskError)
    assert e.remote_type == "QuotaExceeded"
    assert "ada" in e.remote_message and "quota" in e.remote_message
    assert "charge_user" in e.traceback_text
    # the original object, with its attributes, is the cause
    assert e.cause.user == "ada" and e.cause.limit == 10


def test_task_error_can_be_caught_generically(rt):
    with pytest.raises(marin.TaskError):
        marin.get(charge_user.remote("bob"))
    # as in `except Exception` around a whole pipeline
    with pytest.raises(Exception):
        marin.get([parse_record.remote("1"), parse_record.remote("x")])


def test_error_message_names_the_task(rt):
    with pytest.raises(marin.TaskError) as info:
        marin.get(parse_record.remote("nope"))
    # the function's qualified name (its label) is in the message
    assert "parse_record" in info.value.message


def test_error_in_get_of_a_list_raises_the_first_failure(rt):
    refs = [parse_record.remote(s) for s in ("1", "2", "three", "4")]
    with pytest.raises(ValueError) as info:
        marin.get(refs)
    assert "three" in info.value.remote_message
    # the good ones are still readable one by one
    assert marin.get(refs[0]) == 1 and marin.get(refs[3]) == 4


def test_failed_dependency_propagates(rt):
    ran = []

    @marin.remote
    def consume(x):
        ran.append(x)
        return x

    bad = parse_record.remote("oops")
    dependent = consume.remote(bad)
    second = consume.remote(dependent)
    with pytest.raises(marin.TaskError) as info:
        marin.get(dependent, timeout=10)
    # the dependent's error says why: the dependency's ValueError
    assert info.value.remote_type == "ValueError"
    assert "invalid literal" in str(info.value)
    with pytest.raises(marin.TaskError):
        marin.get(second, timeout=10)
    assert ran == []


def test_failed_dependency_reraises_the_original_type(rt):
    """As ray.get does: the dependent's get raises the dependency's error,
    so `except ValueError` around the end of a chain still works."""
    @marin.remote
    def consume(x):
        return x

    with pytest.raises(ValueError) as info:
        marin.get(consume.remote(consume.remote(parse_record.remote("oops"))), timeout=10)
    assert isinstance(info.value, marin.TaskError)
    assert "raise_value_error_in_parse" in info.value.traceback_text


def test_failed_dependency_in_keyword_argument(rt):
    @marin.remote
    def consume(*, x):
        return x

    with pytest.raises(marin.MarinError):
        marin.get(consume.remote(x=parse_record.remote("bad")), timeout=10)


def test_task_timeout(rt):
    started = threading.Event()

    @marin.remote(timeout=0.2)
    def too_slow():
        started.set()
        ctx = marin.get_runtime_context()
        deadline = time.monotonic() + 10
        while not ctx.cancelled() and time.monotonic() < deadline:
            time.sleep(0.005)
        return "finished"

    t0 = time.monotonic()
    ref = too_slow.remote()
    with pytest.raises(marin.TaskTimeoutError) as info:
        marin.get(ref, timeout=10)
    assert time.monotonic() - t0 < 5
    assert started.is_set()
    assert isinstance(info.value, TimeoutError)
    # not to be confused with the driver's own get timeout
    assert not isinstance(info.value, marin.GetTimeoutError)


def test_task_timeout_via_options(rt):
    @marin.remote
    def sleepy(seconds):
        ctx = marin.get_runtime_context()
        deadline = time.monotonic() + seconds
        while not ctx.cancelled() and time.monotonic() < deadline:
            time.sleep(0.005)
        return "done"

    assert marin.get(sleepy.options(timeout=10).remote(0.01)) == "done"
    with pytest.raises(marin.TaskTimeoutError):
        marin.get(sleepy.options(timeout=0.1).remote(10), timeout=10)


def test_base_exception_in_task_does_not_kill_the_driver(rt):
    @marin.remote
    def exits():
        raise SystemExit(3)

    with pytest.raises(marin.TaskError) as info:
        marin.get(exits.remote(), timeout=10)
    assert "SystemExit" in str(info.value)

    @marin.remote
    def fine():
        return "still works"

    assert marin.get(fine.remote()) == "still works"


def test_unpicklable_exception_class_still_reaches_the_driver(rt):
    class Local(Exception):
        pass

    @marin.remote
    def raises_local():
        raise Local("defined inside a test")

    with pytest.raises(Local) as info:
        marin.get(raises_local.remote())
    assert info.value.remote_type == "Local"


def test_actor_constructor_error_is_a_marin_error(rt):
    @marin.remote
    class Broken:
        def __init__(self):
            raise ValueError("cannot build")

        def ping(self):
            return "pong"

    h = Broken.remote()
    with pytest.raises(marin.MarinError) as info:
        marin.get(h.ping.remote(), timeout=10)
    assert "cannot build" in str(info.value)


def test_task_timeout_stays_a_timeout_when_the_late_function_raises():
    """The outcome of a ref does not change after it was settled: a task
    that timed out reads as TaskTimeoutError, also once its function
    (still running past the timeout) raised."""
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        go_on = threading.Event()

        @marin.remote(timeout=0.1)
        def late():
            assert go_on.wait(10)
            raise KeyError("raised after the timeout")

        @marin.remote
        def after():
            return "ran"

        ref = late.remote()
        with pytest.raises(marin.TaskTimeoutError):
            marin.get(ref, timeout=10)
        go_on.set()
        # the timed-out task keeps its cpu until its function returns:
        # this one runs after it raised
        assert marin.get(after.remote(), timeout=10) == "ran"
        with pytest.raises(marin.TaskTimeoutError):
            marin.get(ref, timeout=10)
    finally:
        marin.shutdown()


def test_cancelled_running_task_stays_cancelled_when_it_raises():
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        started = threading.Event()

        @marin.remote
        def stubborn():
            started.set()
            ctx = marin.get_runtime_context()
            deadline = time.monotonic() + 10
            while not ctx.cancelled() and time.monotonic() < deadline:
                time.sleep(0.005)
            raise RuntimeError("noticed the cancel and raised")

        @marin.remote
        def after():
            return "ran"

        ref = stubborn.remote()
        assert started.wait(10)
        assert ref.cancel()
        with pytest.raises(marin.TaskCancelledError):
            marin.get(ref, timeout=10)
        # runs once stubborn's body has returned (it holds the only cpu)
        assert marin.get(after.remote(), timeout=10) == "ran"
        with pytest.raises(marin.TaskCancelledError):
            marin.get(ref, timeout=10)
    finally:
        marin.shutdown()
