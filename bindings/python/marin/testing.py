"""Test hooks (unstable): simulate a dying worker or actor host."""
from ._core import WorkerKilled


def kill_worker():
    """Inside a task or actor method: end it as if its worker (or the actor's
    host) died. Tasks are retried within max_retries; actors restart."""
    raise WorkerKilled()
