"""A Python worker.

Serving a cluster backend (Redis), as tools/marin-worker does for C plugins:

    python3 -m marin.worker --backend redis://host:6379?namespace=NS \\
        --import mymodule [--import other.module ...] \\
        [--resources cpus=4,memory=8GiB] [--name ID] [--drain-ms MS]

The modules are imported first, so that their registrations
(marin.register_task) exist; Python functions submitted with
@marin.remote(...).remote() travel pickled (by reference as
module:qualname when importable here, by value with cloudpickle when
defined in __main__ or as closures) and run as the generic task
"marin.py", which every Python worker registers. SIGTERM or SIGINT: stop
taking work, finish (or, after the drain period, hand back) what runs,
exit 0. Unpickling runs code: whoever can write to the Redis namespace can
run code in this worker; protect the server with AUTH/ACL.

Without arguments (MARIN_LOCAL_WORKER_FD set): a worker process of a
`local://?processes=N` driver, started by that driver (not by hand); it
serves the driver's tasks on the socket it was given until the driver
closes it.
"""
import argparse
import importlib
import os
import signal
import sys
import threading
import time


def _local_main():
    fd = os.environ.get("MARIN_LOCAL_WORKER_FD")
    if not fd:
        sys.stderr.write("marin.worker: MARIN_LOCAL_WORKER_FD is not set and no --backend "
                         "was given: serve a cluster with `python3 -m marin.worker "
                         "--backend URI --import MODULE` (this module is also started by a "
                         "marin driver with local://?processes=N)\n")
        return 2
    for p in reversed((os.environ.get("MARIN_PY_SYS_PATH") or "").split(os.pathsep)):
        if p and p not in sys.path:
            sys.path.insert(0, p)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver
    from ._native import lib, check
    from . import _core
    _core._register_trampoline()
    check(lib.marin_worker_serve_fd(int(fd)))
    return 0


def _log(level, msg):
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    msg = msg.replace('"', "'").replace("\n", " ")
    sys.stderr.write('ts=%sZ level=%s pid=%d msg="%s"\n' % (when, level, os.getpid(), msg))
    sys.stderr.flush()


def _parse(argv):
    ap = argparse.ArgumentParser(
        prog="python3 -m marin.worker",
        description="Serve a marin cluster backend (redis://) with Python tasks.")
    ap.add_argument("--backend", default=os.environ.get("MARIN_BACKEND"),
                    help="the cluster to serve (default $MARIN_BACKEND)")
    ap.add_argument("--import", dest="imports", action="append", default=[],
                    metavar="MODULE", help="a module to import first (repeatable)")
    ap.add_argument("--resources", metavar="SPEC",
                    help="what this worker offers, e.g. cpus=4,memory=8GiB "
                         "(default: the machine's)")
    ap.add_argument("--name", metavar="ID",
                    help="its id in the namespace (default host-pid-random)")
    ap.add_argument("--drain-ms", type=int, metavar="MS",
                    help="on SIGTERM, how long running work may finish (default 30000)")
    a = ap.parse_args(argv)
    if not a.backend:
        ap.error("no backend: pass --backend URI or set MARIN_BACKEND")
    if a.drain_ms is not None and a.drain_ms < 0:
        ap.error("--drain-ms must be >= 0")
    return a


def serve(backend, imports=(), resources=None, name=None, drain_ms=None):
    """Serve @backend as a worker until SIGTERM/SIGINT (or a fatal error);
    returns 0 after a clean drain, 1 otherwise. Call it from the main thread."""
    os.environ.setdefault("MARIN_LOG", "info")  # the library's lines, on stderr
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --import finds modules of the cwd, as -m does
    from ._native import ffi, lib, check, last_error
    from . import _core
    _core._register_trampoline()
    _core._worker_mode()
    for mod in imports:
        try:
            importlib.import_module(mod)
        except BaseException as e:  # noqa: B036 - reported, then exit 1
            _log("error", "cannot import %s: %s: %s" % (mod, type(e).__name__, e))
            return 1
        _log("info", "imported %s" % mod)
    po = ffi.new("marin_worker_options_t **")
    check(lib.marin_worker_options_create(po))
    opts = ffi.gc(po[0], lib.marin_worker_options_destroy)
    if resources:
        pr = ffi.new("marin_resources_t **")
        check(lib.marin_resources_parse(resources.encode(), pr))
        try:
            check(lib.marin_worker_options_set_resources(opts, pr[0]))
        finally:
            lib.marin_resources_destroy(pr[0])
    if name:
        check(lib.marin_worker_options_set_name(opts, name.encode()))
    if drain_ms is not None:
        check(lib.marin_worker_options_set_drain_ms(opts, int(drain_ms)))

    # A signal that comes while the worker starts is kept and acted on once
    # it exists (as marin-worker blocks them until then).
    stop = threading.Event()
    worker = [None]

    def on_signal(signum, frame):
        stop.set()
        if worker[0] is not None:
            lib.marin_worker_stop(worker[0])

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        pw = ffi.new("marin_worker_t **")
        rc = lib.marin_worker_start(backend.encode(), opts, pw)
        if rc != 0:
            _log("error", "cannot start: %s" % last_error())
            return 1
        worker[0] = pw[0]
        _log("info", "worker %s ready" % ffi.string(lib.marin_worker_id(pw[0])).decode())
        if stop.is_set():
            lib.marin_worker_stop(pw[0])
        # marin_worker_join blocks in C (the GIL released): run it on a
        # thread, so that this thread runs the Python signal handlers.
        result = []

        def join():
            jrc = lib.marin_worker_join(pw[0])
            result.append((jrc, last_error() if jrc != 0 else ""))

        joiner = threading.Thread(target=join, name="marin-worker-join", daemon=True)
        joiner.start()
        while joiner.is_alive():
            joiner.join(0.2)
        worker[0] = None
        rc, why = result[0] if result else (lib.MARIN_ESTATE, "the join thread failed")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if rc != 0:
        _log("error", "worker stopped: %s" % why)
        return 1
    _log("info", "drained; exiting")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv and os.environ.get("MARIN_LOCAL_WORKER_FD"):
        return _local_main()
    if not argv:
        return _local_main()  # prints what to do
    a = _parse(argv)
    return serve(a.backend, a.imports, a.resources, a.name, a.drain_ms)


if __name__ == "__main__":
    sys.exit(main())
