"""marin: one interface for distributed work (Python bindings over cffi).

A Ray-shaped surface: init, remote, get, wait, actors, plus the ordered
map, KV/leases and the workflow executor. See docs/migrating-from-ray.md.
"""
from ._native import (MarinError, InvalidArgumentError, OutOfMemoryError, BusyError,
                      StateError, TaskCancelledError, GetTimeoutError, NoBackendError,
                      UnavailableError, NotFoundError, ExistsError, ConflictError,
                      InfeasibleError, TaskError, WorkerDiedError, PreemptedError,
                      TaskTimeoutError, ProtocolError, AuthError, UnsupportedError,
                      TooBigError, lib as _lib, ffi as _ffi)
from ._core import (init, shutdown, is_initialized, backend, remote, get, wait, cancel,
                    map_ordered, call, register_task, get_runtime_context, get_gpu_ids,
                    ObjectRef, RemoteFunction)
from ._actor import (ActorClass, ActorHandle, method, get_actor, kill, checkpoint)
from . import kv, testing
from .executor import Executor, Step

__version__ = "%d.%d.%d" % (_lib.MARIN_VERSION_MAJOR, _lib.MARIN_VERSION_MINOR,
                            _lib.MARIN_VERSION_PATCH)


def actor(cls=None, **options):
    """@marin.actor or @marin.actor(max_restarts=..., ...) on a class."""
    if cls is not None:
        return ActorClass(cls, options)
    return lambda c: ActorClass(c, options)


__all__ = [
    "init", "shutdown", "is_initialized", "backend", "remote", "actor", "method", "get",
    "wait", "cancel", "map_ordered", "call", "register_task", "get_runtime_context",
    "get_gpu_ids", "get_actor", "kill", "checkpoint", "kv", "Executor", "Step",
    "ObjectRef", "RemoteFunction", "ActorClass", "ActorHandle", "testing",
    "MarinError", "InvalidArgumentError", "OutOfMemoryError", "BusyError", "StateError",
    "TaskCancelledError", "GetTimeoutError", "NoBackendError", "UnavailableError",
    "NotFoundError", "ExistsError", "ConflictError", "InfeasibleError", "TaskError",
    "WorkerDiedError", "PreemptedError", "TaskTimeoutError", "ProtocolError", "AuthError",
    "UnsupportedError", "TooBigError",
]
