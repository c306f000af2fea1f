#!/usr/bin/env python3
"""Celery's no-op task rate, the reference of marin-bench's `redis` group.

    python3 bench/bench_celery.py --redis redis://127.0.0.1:PORT/1 [-n N]

bench_redis.c runs it (when `import celery` works) against the
redis-server it started, after its own marin-worker processes stopped.
The setup mirrors the marin figure: two worker processes with 8 threads
each (`celery worker --pool threads --concurrency 8`), Redis as broker
and result backend; the driver sends N `noop.delay()` and then calls
`.get()` on each result in order. Median of 3 runs, after a warm-up.

Prints `celery.tasks_per_s VALUE` on stdout, notes as `# ...` lines.
Exit status 0, or 1 when something failed (printed on stderr)."""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from celery import Celery

REDIS = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/1")
app = Celery("bench_celery", broker=REDIS, backend=REDIS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench_celery.noop")
def noop():
    return None


def run(n):
    t0 = time.perf_counter()
    results = [noop.delay() for _ in range(n)]
    t1 = time.perf_counter()
    for r in results:
        r.get(timeout=120)
        r.forget()
    t2 = time.perf_counter()
    return n / (t2 - t0), n / (t1 - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True, help="broker and result backend URL")
    ap.add_argument("-n", type=int, default=5000, help="tasks per run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, BENCH_CELERY_REDIS=args.redis,
               PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    app.conf.broker_url = args.redis
    app.conf.result_backend = args.redis
    procs = []
    logs = []
    try:
        for i in range(args.workers):
            logs.append(tempfile.TemporaryFile())
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench_celery", "worker",
                 "--pool", "threads", "--concurrency", str(args.threads),
                 "--loglevel", "WARNING", "--hostname", "bench%d@%%h" % i,
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=here, env=env, stdin=subprocess.DEVNULL,
                stdout=logs[-1], stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while True:
            replies = app.control.ping(timeout=0.5) or []
            if len(replies) >= args.workers:
                break
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs[0].seek(0)
                err = logs[0].read().decode(errors="replace")[-2000:]
                print("bench_celery: the workers did not start (%d of %d answered)\n%s"
                      % (len(replies), args.workers, err), file=sys.stderr)
                return 1
        import celery
        print("# celery %s: %d workers x --pool threads --concurrency %d, broker and "
              "results %s, n=%d" % (celery.__version__, args.workers, args.threads,
                                    args.redis, args.n))
        run(max(args.n // 10, 1))  # warm-up
        rates = []
        for i in range(3):
            rate, submit = run(args.n)
            print("# celery run %d: %.0f tasks/s (submit phase %.0f tasks/s)"
                  % (i + 1, rate, submit))
            rates.append(rate)
        print("celery.tasks_per_s %.0f" % statistics.median(rates))
        sys.stdout.flush()
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
