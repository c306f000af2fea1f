#!/usr/bin/python3
"""Python benchmark of marin's bindings (issue 5), with references measured
in the same process run.

    PYTHONPATH=bindings/python:build/bindings/python /usr/bin/python3 bench/bench_python.py
    ... bench/bench_python.py --quick

Output follows bench/marin-bench: one `name value unit` line per figure on
stdout; the individual runs, the configuration and the reasons a figure was
skipped go to stderr as `# ...` lines. Figures (docs/performance.md,
"Python (issue 5)"):

  python.local.submit_get_noop     no-op Python task: submit N refs, then
                                   marin.get each in order (median of 3)
  python.tpe.submit_get_noop       the same through ThreadPoolExecutor
                                   (max_workers = CPU count)
  ratio_vs_tpe                     the two above, marin / TPE
  python.dask.submit_get_noop      the same through dask.distributed
                                   (in-process LocalCluster, processes=False);
                                   only when dask is importable; measured
                                   last (its threads outlive the cluster)
  ratio_vs_dask                    marin / Dask, only when Dask was measured
  python.local.map_ordered_noop    marin.map_ordered over N no-op items
  python.local.actor_call_pipelined  N actor calls issued back to back, then
                                   marin.get each
  python.local.cpu_bound_threads   CPU-bound pure-Python tasks on threads
  python.local.cpu_bound_processes the same on local://?processes=2
  speedup_processes                processes / threads, only when this
                                   build has processes=N (marin.init raises
                                   InvalidArgumentError where it does not:
                                   both figures are then skipped with a note)

Exit status: 0 when every figure that could be measured was; 1 when a
measurement failed; 2 on bad usage.
"""
import argparse
import concurrent.futures
import gc
import os
import statistics
import sys
import time

RUNS = 3


def figure(name, value, decimals, unit):
    print("%s %.*f %s" % (name, decimals, value, unit), flush=True)


def note(msg):
    sys.stderr.write("# %s\n" % msg)
    sys.stderr.flush()


def median_of(name, fn, runs=RUNS):
    """Run @fn (returns a rate) @runs times; note the runs; the median."""
    vals = []
    for _ in range(runs):
        gc.collect()
        vals.append(fn())
    note("%s runs: %s" % (name, " ".join("%.0f" % v for v in vals)))
    return statistics.median(vals)


# ------------------------------------------------------------- the work

def noop():
    return None


def cpu_work(n):
    """CPU-bound pure Python (holds the GIL throughout)."""
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


def _importable(fn):
    """@fn as an attribute of this file imported under its own module name
    (bench_python), not __main__: worker processes (processes=N) then load
    it by reference (this file's directory is on the sys.path they get),
    without needing cloudpickle for functions of __main__."""
    if getattr(fn, "__module__", None) != "__main__":
        return fn
    import importlib
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    mod = importlib.import_module(os.path.splitext(os.path.basename(__file__))[0])
    return getattr(mod, fn.__name__)


class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


# ------------------------------------------------------------- marin

def marin_submit_get(marin, fn, n):
    t0 = time.perf_counter()
    refs = [fn.remote() for _ in range(n)]
    for r in refs:
        marin.get(r)
    dt = time.perf_counter() - t0
    del refs
    return n / dt


def marin_map_ordered(marin, fn, n):
    t0 = time.perf_counter()
    k = 0
    for _ in marin.map_ordered(fn, (() for _ in range(n)), max_in_flight=1000):
        k += 1
    dt = time.perf_counter() - t0
    assert k == n, (k, n)
    return n / dt


def marin_actor_pipelined(marin, actor_cls, n):
    a = actor_cls.remote()
    marin.get(a.incr.remote())  # constructed and warm
    t0 = time.perf_counter()
    refs = [a.incr.remote() for _ in range(n)]
    last = None
    for r in refs:
        last = marin.get(r)
    dt = time.perf_counter() - t0
    assert last == n + 1, (last, n)
    del refs
    marin.kill(a)
    return n / dt


def marin_cpu_bound(marin, fn, tasks, work):
    t0 = time.perf_counter()
    refs = [fn.remote(work) for _ in range(tasks)]
    marin.get(refs)
    return tasks / (time.perf_counter() - t0)


# ------------------------------------------------------------- references

def tpe_submit_get(ex, n):
    t0 = time.perf_counter()
    futs = [ex.submit(noop) for _ in range(n)]
    for f in futs:
        f.result()
    dt = time.perf_counter() - t0
    del futs
    return n / dt


def dask_submit_get(client, n):
    t0 = time.perf_counter()
    futs = [client.submit(noop, pure=False) for _ in range(n)]
    for f in futs:
        f.result()
    dt = time.perf_counter() - t0
    del futs
    return n / dt


# ------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(
        description="marin Python bindings vs ThreadPoolExecutor and Dask, in one run")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 20k tasks (Dask 1k), 20k actor calls")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                    help="cpus of the marin runtime and TPE workers (default: CPU count)")
    ap.add_argument("-n", type=int, help="no-op tasks per run (default 100k; --quick 20k)")
    ap.add_argument("--dask-n", type=int,
                    help="no-op tasks per Dask run (default 5k; --quick 1k)")
    ap.add_argument("--no-dask", action="store_true", help="skip Dask even if installed")
    ap.add_argument("--processes-uri", default="local://?processes=2",
                    help="runtime for the CPU-bound processes figure "
                         "(default local://?processes=2)")
    a = ap.parse_args(argv)
    if a.cpus < 1:
        ap.error("--cpus must be at least 1")
    n = a.n or (20000 if a.quick else 100000)
    dask_n = a.dask_n or (1000 if a.quick else 5000)
    actor_n = 20000 if a.quick else 100000
    cpu_tasks, cpu_work_n = (8, 100000) if a.quick else (32, 300000)

    import marin

    failed = False
    uri = "local://?resources=cpus=%d" % a.cpus
    note("marin %s, Python %s, %s, %d cpus; N=%d, Dask N=%d, actor N=%d, median of %d"
         % (marin.__version__, sys.version.split()[0], uri, a.cpus, n, dask_n, actor_n,
            RUNS))

    # ---- no-op submit+get: marin vs ThreadPoolExecutor, same process run
    marin.init(uri)
    try:
        noop_r = marin.remote(noop)
        marin_submit_get(marin, noop_r, min(n, 10000))  # warm-up (threads, slabs)
        m = median_of("python.local.submit_get_noop",
                      lambda: marin_submit_get(marin, noop_r, n))
        figure("python.local.submit_get_noop", m, 0, "tasks/s")
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.cpus) as ex:
            tpe_submit_get(ex, min(n, 10000))
            t = median_of("python.tpe.submit_get_noop", lambda: tpe_submit_get(ex, n))
        figure("python.tpe.submit_get_noop", t, 0, "tasks/s")
        figure("ratio_vs_tpe", m / t, 2, "x")

        # ---- ordered map and pipelined actor calls
        mo = median_of("python.local.map_ordered_noop",
                       lambda: marin_map_ordered(marin, noop_r, n))
        figure("python.local.map_ordered_noop", mo, 0, "tasks/s")
        counter = marin.actor(Counter)
        ac = median_of("python.local.actor_call_pipelined",
                       lambda: marin_actor_pipelined(marin, counter, actor_n))
        figure("python.local.actor_call_pipelined", ac, 0, "calls/s")

        # ---- CPU-bound on threads (the baseline of speedup_processes)
        cpu_r = marin.remote(_importable(cpu_work))
        marin.get([cpu_r.remote(cpu_work_n // 4) for _ in range(2 * a.cpus)])  # warm-up
        th = median_of("python.local.cpu_bound_threads",
                       lambda: marin_cpu_bound(marin, cpu_r, cpu_tasks, cpu_work_n))
        figure("python.local.cpu_bound_threads", th, 2, "tasks/s")
    finally:
        marin.shutdown()

    # ---- CPU-bound through worker processes, when the backend has them
    try:
        marin.init(a.processes_uri)
    except (marin.InvalidArgumentError, marin.NoBackendError,
            marin.UnsupportedError) as e:
        note("skipped: speedup_processes: %s is not available in this build (%s: %s); "
             "python.local.cpu_bound_threads measured alone"
             % (a.processes_uri, type(e).__name__, e))
    else:
        try:
            cpu_r = marin.remote(_importable(cpu_work))
            # warm-up: every worker process started and has imported the function
            marin.get([cpu_r.remote(cpu_work_n // 4) for _ in range(2 * a.cpus)])
            pr = median_of("python.local.cpu_bound_processes",
                           lambda: marin_cpu_bound(marin, cpu_r, cpu_tasks, cpu_work_n))
            figure("python.local.cpu_bound_processes", pr, 2, "tasks/s")
            figure("speedup_processes", pr / th, 2, "x")
        except marin.MarinError as e:
            note("python.local.cpu_bound_processes failed: %s: %s" % (type(e).__name__, e))
            failed = True
        finally:
            marin.shutdown()

    # ---- Dask, when installed: last, since its cluster leaves threads behind
    # (its event loop and monitors) that slow whatever runs after it
    if a.no_dask:
        note("skipped: Dask (--no-dask)")
    else:
        try:
            import logging
            from distributed import Client, LocalCluster
        except ImportError as e:
            note("dask not installed: python3-distributed (%s); ratio_vs_dask "
                 "skipped" % e)
        else:
            logging.getLogger("distributed").setLevel(logging.ERROR)
            cluster = LocalCluster(processes=False, n_workers=1,
                                   threads_per_worker=a.cpus, dashboard_address=None)
            client = Client(cluster)
            try:
                dask_submit_get(client, min(dask_n, 200))
                d = median_of("python.dask.submit_get_noop",
                              lambda: dask_submit_get(client, dask_n))
                figure("python.dask.submit_get_noop", d, 0, "tasks/s")
                figure("ratio_vs_dask", m / d, 1, "x")
            finally:
                client.close()
                cluster.close()

    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ImportError as e:
        sys.stderr.write("bench_python: %s\n(run with PYTHONPATH=bindings/python:"
                         "build/bindings/python /usr/bin/python3, or after pip install)\n"
                         % e)
        sys.exit(1)
    except Exception:  # a marin failure: say which, with where
        import traceback
        traceback.print_exc()
        sys.exit(1)
