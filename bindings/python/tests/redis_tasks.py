"""Task functions for test_redis.py, imported by the Python workers
(`python3 -m marin.worker --import redis_tasks`) and by the driver: the
driver's calls name them as redis_tasks:<qualname>; nothing here is
pickled by value. Everything they share with the test goes through files."""
import collections
import os
import re
import time

import marin


def normalise(text):
    words = re.findall(r"\w+", text.lower())
    return " ".join(words), words


@marin.remote(num_cpus=1, memory=64 * 1024 ** 2, max_retries=3, retry_exceptions=True)
def transform(in_path, out_dir):
    """Files in, a transformed file out, the stats back. An input whose
    name has "flaky" fails its first attempt (an application error,
    retried because retry_exceptions=True)."""
    name = os.path.basename(in_path)
    attempt = marin.get_runtime_context().get_attempt()
    if "flaky" in name and attempt == 1:
        raise IOError("transient failure reading %s" % name)
    with open(in_path, encoding="utf-8") as f:
        text, words = normalise(f.read())
    out_path = os.path.join(out_dir, name.replace(".txt", ".norm"))
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, out_path)
    return {"input": name, "words": len(words), "counts": dict(collections.Counter(words)),
            "attempt": attempt, "pid": os.getpid()}


@marin.remote
def total_words(stats):
    """A dependency: @stats is the value of another task's ref."""
    return sum(s["words"] for s in stats) if isinstance(stats, list) else stats["words"]


def raise_value_error(what):
    raise ValueError("bad input: %s" % what)


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def pid():
    return os.getpid()


def fan_out(n):
    """Submits tasks from inside a task (they travel pickled too)."""
    sq = marin.remote(square)
    return sum(marin.get([sq.remote(i) for i in range(n)], timeout=30))


def square(x):
    return x * x


def record_and_block(log_path, release_path, seconds=20.0):
    """Appends "start <pid> <attempt>" to @log_path, then waits (at most
    @seconds) for @release_path to exist unless this is a retry; appends
    "done ..." and returns (pid, attempt)."""
    attempt = marin.get_runtime_context().get_attempt()
    with open(log_path, "a") as f:
        f.write("start %d %d\n" % (os.getpid(), attempt))
    if attempt == 1:
        deadline = time.monotonic() + seconds
        while not os.path.exists(release_path) and time.monotonic() < deadline:
            time.sleep(0.02)
    with open(log_path, "a") as f:
        f.write("done %d %d\n" % (os.getpid(), attempt))
    return os.getpid(), attempt


@marin.register_task("redis_tasks.shout")
def shout(arg):
    """A task registered by name: bytes in, bytes out (marin.call)."""
    return arg.upper() + b"!"


# ---------------------------------------------------------------- actors

@marin.remote
class Tally:
    """An actor for test_redis.py: hosted by a Python worker (its class
    travels as redis_tasks:Tally), called from the driver and from tasks."""

    def __init__(self, start=0, *, tag="t"):
        self.total = start
        self.seen = []
        self.tag = tag

    def add(self, x, who="driver"):
        self.total += x
        self.seen.append((who, x))
        return self.total

    def state(self):
        return self.total, list(self.seen)

    def where(self):
        return os.getpid()

    def fail(self, what):
        raise KeyError("no such entry: %s" % what)


def bump_named(name, who, times):
    """A task that finds the named actor and calls it @times times (in
    order, through one handle); returns what the last call saw."""
    h = marin.get_actor(name)
    refs = [h.add.remote(1, who) for _ in range(times)]
    return marin.get(refs, timeout=30)


def bump_by_handle(handle, who):
    """A task given the handle itself (it travels as the actor's id)."""
    return marin.get(handle.add.remote(100, who), timeout=30)
