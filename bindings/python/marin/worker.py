"""A worker process of a `local://?processes=N` driver (started by the
driver; not run by hand): serves the driver's tasks on the socket it was
given until the driver closes it.

    python3 -m marin.worker
"""
import os
import signal
import sys


def main():
    fd = os.environ.get("MARIN_LOCAL_WORKER_FD")
    if not fd:
        sys.stderr.write("marin.worker: MARIN_LOCAL_WORKER_FD is not set; this module is "
                         "started by a marin driver with local://?processes=N\n")
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


if __name__ == "__main__":
    sys.exit(main())
