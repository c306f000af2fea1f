"""A port of a Ray-style batch pipeline: files in, transformed files out,
bounded in-flight work with results in submission order, retries.

The Ray original looked like:

    @ray.remote(num_cpus=1, memory=2 * 1024**3, max_retries=3)
    def transform(in_path, out_dir): ...

    for stats in simple_backpressure(transform, iter(inputs), max_in_flight=4):
        totals.update(stats)

and the port changes the imports and simple_backpressure -> marin.map_ordered.
"""
import collections
import os
import re
import threading

import pytest

import marin
import marin.testing

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, World!  Hello again...",
    "To be, or not to be: that is the question.",
    "",
    "A  man, a plan, a canal: Panama",
    "It was the best of times, it was the worst of times.",
    "One\ntwo\tthree   four",
    "Café naïve résumé — unicode words",
]


def normalise(text):
    words = re.findall(r"\w+", text.lower())
    return " ".join(words), words


def write_inputs(tmp_path, n):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    paths = []
    for i in range(n):
        p = in_dir / ("doc-%03d.txt" % i)
        p.write_text(TEXTS[i % len(TEXTS)] + (" extra%d" % i), encoding="utf-8")
        paths.append(str(p))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    return paths, str(out_dir)


def expected_stats(path):
    with open(path, encoding="utf-8") as f:
        text, words = normalise(f.read())
    return {"input": os.path.basename(path), "words": len(words),
            "counts": dict(collections.Counter(words)), "text": text}


class Events:
    """Shared bookkeeping between the driver and the tasks (same process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = []
        self.finished = []
        self.delivered = 0
        self.max_ahead = 0
        self.max_in_flight = None
        self.done_event = {}

    def start(self, name):
        with self.lock:
            self.started.append(name)
            ahead = len(self.started) - self.delivered
            self.max_ahead = max(self.max_ahead, ahead)

    def finish(self, name):
        with self.lock:
            self.finished.append(name)
        ev = self.done_event.get(name)
        if ev is not None:
            ev.set()


EV = Events()


@marin.remote(num_cpus=1, memory=64 * 1024 ** 2, max_retries=3)
def transform(in_path, out_dir, wait_for=None):
    name = os.path.basename(in_path)
    EV.start(name)
    if wait_for is not None:
        # an early item that finishes only after a later one did
        assert EV.done_event[wait_for].wait(20), "waited for %s in vain" % wait_for
    if "flaky" in name and marin.get_runtime_context().get_attempt() == 1:
        marin.testing.kill_worker()
    with open(in_path, encoding="utf-8") as f:
        raw = f.read()
    if "poison" in raw:
        raise ValueError("poisoned input %s" % name)
    text, words = normalise(raw)
    out_path = os.path.join(out_dir, name.replace(".txt", ".norm"))
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, out_path)
    EV.finish(name)
    return {"input": name, "words": len(words), "counts": dict(collections.Counter(words)),
            "text": text, "attempt": marin.get_runtime_context().get_attempt()}


@pytest.fixture
def ev():
    global EV
    EV = Events()
    return EV


def check_outputs(paths, out_dir, results):
    assert [r["input"] for r in results] == [os.path.basename(p) for p in paths]
    for p, r in zip(paths, results):
        want = expected_stats(p)
        assert r["words"] == want["words"]
        assert r["counts"] == want["counts"]
        out = os.path.join(out_dir, os.path.basename(p).replace(".txt", ".norm"))
        with open(out, encoding="utf-8") as f:
            assert f.read() == want["text"] + "\n"
    assert not [n for n in os.listdir(out_dir) if n.endswith(".tmp")]


def test_pipeline_results_in_submission_order(rt, tmp_path, ev):
    paths, out_dir = write_inputs(tmp_path, 24)
    names = [os.path.basename(p) for p in paths]
    # item 0 finishes only after item 3 did, item 4 only after item 7 did:
    # later items finish first, the results still come in submission order
    items = []
    for i, p in enumerate(paths):
        wait_for = names[i + 3] if i % 4 == 0 and i + 3 < len(names) else None
        if wait_for:
            ev.done_event[wait_for] = threading.Event()
        items.append((p, out_dir, wait_for))

    results = []
    totals = collections.Counter()
    for stats in marin.map_ordered(transform, items, max_in_flight=4):
        with ev.lock:
            ev.delivered += 1
        results.append(stats)
        totals.update(stats["counts"])

    check_outputs(paths, out_dir, results)
    # later items did finish first
    assert ev.finished.index(names[3]) < ev.finished.index(names[0])
    assert ev.finished != names
    # never more than max_in_flight outstanding
    assert ev.max_ahead <= 4
    assert sorted(ev.started) == sorted(names)
    assert totals["the"] == sum(expected_stats(p)["counts"].get("the", 0) for p in paths)


def test_pipeline_over_a_generator_and_plain_items(rt, tmp_path, ev):
    """Items from a generator (no len), max_in_flight=1 runs them one by one."""
    paths, out_dir = write_inputs(tmp_path, 6)
    gen = ((p, out_dir) for p in paths)
    results = []
    for stats in marin.map_ordered(transform, gen, max_in_flight=1):
        with ev.lock:
            ev.delivered += 1
        results.append(stats)
    check_outputs(paths, out_dir, results)
    assert ev.max_ahead == 1

    # a non-tuple item is a single argument; a plain function works too
    def double(x):
        return 2 * x

    assert list(marin.map_ordered(double, range(5), max_in_flight=2)) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError):
        list(marin.map_ordered(double, range(5), max_in_flight=0))


def test_pipeline_retries_a_flaky_task(rt, tmp_path, ev):
    paths, out_dir = write_inputs(tmp_path, 10)
    for i in (2, 7):
        flaky = paths[i].replace("doc-", "flaky-doc-")
        os.rename(paths[i], flaky)
        paths[i] = flaky
    results = list(marin.map_ordered(transform, [(p, out_dir) for p in paths],
                                     max_in_flight=4))
    check_outputs(paths, out_dir, results)
    assert [r["attempt"] for r in results] == [
        2 if os.path.basename(p).startswith("flaky") else 1 for p in paths]


def test_pipeline_flaky_task_without_retries_fails(rt, tmp_path, ev):
    paths, out_dir = write_inputs(tmp_path, 4)
    flaky = paths[1].replace("doc-", "flaky-doc-")
    os.rename(paths[1], flaky)
    paths[1] = flaky
    it = marin.map_ordered(transform.options(max_retries=0),
                           [(p, out_dir) for p in paths], max_in_flight=2)
    assert next(it)["input"] == os.path.basename(paths[0])
    with pytest.raises(marin.WorkerDiedError):
        next(it)


def test_pipeline_failure_raises_at_its_turn_and_stops(rt, tmp_path, ev):
    paths, out_dir = write_inputs(tmp_path, 40)
    bad = 5
    with open(paths[bad], "a", encoding="utf-8") as f:
        f.write(" poison")
    results = []
    with pytest.raises(ValueError) as info:
        for stats in marin.map_ordered(transform, [(p, out_dir) for p in paths],
                                       max_in_flight=4):
            with ev.lock:
                ev.delivered += 1
            results.append(stats)
    assert isinstance(info.value, marin.TaskError)
    assert "poisoned input doc-005.txt" in str(info.value)
    # everything before the failure was delivered, in order
    assert [r["input"] for r in results] == [os.path.basename(p) for p in paths[:bad]]
    # submission stopped: at most max_in_flight past the failed item started
    names = [os.path.basename(p) for p in paths]
    started = set(ev.started)
    assert started <= set(names[:bad + 1 + 4])
    assert len(started) < len(names)
    # what was still in flight was cancelled, nothing more gets written
    marin.shutdown()
    written = sorted(os.listdir(out_dir))
    assert len(written) < len(names) - 1
    assert "doc-005.norm" not in written


def test_pipeline_break_cancels_what_is_in_flight(tmp_path):
    """Leaving the loop early (break) cancels the queued tasks."""
    marin.shutdown()
    marin.init("local://?resources=cpus=1")
    try:
        ran = []
        gate = threading.Event()

        @marin.remote
        def step(i):
            ran.append(i)
            if i == 0:
                return i
            assert gate.wait(10)
            return i

        it = marin.map_ordered(step, [(i,) for i in range(10)], max_in_flight=5)
        assert next(it) == 0
        it.close()  # what `break` does to the generator
        gate.set()
        marin.shutdown()
        # only the one running when we left can have started after item 0
        assert len(ran) <= 2
    finally:
        marin.shutdown()
