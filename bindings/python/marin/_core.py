"""Runtime, remote functions, refs, get/wait and the ordered map.

Python functions run as one C task, "marin.py", whose argument is the key
of the call in this process's table of calls: on the local backend the
function, its arguments and its result never leave the process, so nothing
is pickled. Functions registered by name (register_task) run as their own C
tasks and take and return bytes, so C code and other processes can call
them too.
"""
import asyncio
import atexit
import base64
import inspect
import collections
import itertools
import os
import pickle
import re
import sys
import urllib.parse
import threading
import time
import traceback

from ._native import (ffi, lib, check, error_for, TaskError, GetTimeoutError,
                      UnsupportedError, StateError)

PY_TASK = b"marin.py"

# Slices of a blocking wait: marin calls release the GIL, and between two
# slices Python runs signal handlers, so Ctrl-C interrupts get/wait promptly.
WAIT_SLICE_MS = 100

_state_lock = threading.Lock()
_runtime = None          # the default runtime (a _Runtime)
_calls = {}              # key -> _Call, until the call is settled
_next_key = itertools.count(1)
_tls = threading.local()  # .ctx: the marin_task_ctx_t of the task running here
_process_mode = False     # local://?processes=N: Python tasks travel pickled

# Pickled calls (processes=N, remote backends) start with this, so they are
# never taken for the 8-byte key of an in-process call.
PICKLED = b"MPY1"
_TB_MARK = "\n--- remote traceback ---\n"
_EXC_MARK = "\n--- pickled exception ---\n"


# ---------------------------------------------------------------- runtime

class _Runtime:
    def __init__(self, uri):
        out = ffi.new("marin_runtime_t **")
        check(lib.marin_runtime_open(uri.encode() if uri else ffi.NULL, out))
        self.ptr = out[0]
        self.backend = ffi.string(lib.marin_runtime_backend(self.ptr)).decode()
        self.uri = uri

    def close(self):
        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            lib.marin_runtime_close(ptr)


# ray.init keywords that change nothing here (logging, dashboard, ...).
_RAY_INIT_IGNORED = {"namespace", "logging_level", "logging_format", "log_to_driver",
                     "include_dashboard", "dashboard_host", "dashboard_port",
                     "configure_logging", "_temp_dir", "local_mode", "object_store_memory",
                     "runtime_env", "_system_config"}


def _ray_init_uri(uri, address, num_cpus, num_gpus, resources, unknown):
    """A URI from ray.init's keywords: address= names a backend URI;
    num_cpus/num_gpus/resources size a local runtime."""
    if unknown:
        raise TypeError("marin.init: unknown keyword(s) %s" % ", ".join(sorted(unknown)))
    if address is not None:
        if uri is not None:
            raise TypeError("marin.init: give uri or address, not both")
        if address in ("local", "auto") or ("://" in address and
                                            not address.startswith("ray://")):
            uri = None if address == "auto" else address
        else:
            raise UnsupportedError(
                "marin.init: address=%r is a Ray cluster address; marin connects to a "
                "backend URI instead (redis://host:port?namespace=NAME, or local)" % address,
                lib.MARIN_EUNSUPPORTED)
    sizes = {}
    if num_cpus is not None:
        sizes["cpus"] = num_cpus
    if num_gpus is not None:
        sizes["gpus"] = num_gpus
    sizes.update(resources or {})
    if sizes:
        base = uri or os.environ.get("MARIN_BACKEND") or "local"
        if not base.startswith("local"):
            raise UnsupportedError("marin.init: num_cpus/num_gpus/resources size a local "
                                   "runtime; the capacity of %s comes from its workers"
                                   % base.split(":", 1)[0], lib.MARIN_EUNSUPPORTED)
        spec = resources_spec(dict(resources=sizes, _default_cpus=None))
        sep = "&" if "?" in base else ("?" if base.startswith("local://") else "://?")
        uri = base + sep + "resources=" + spec
    return uri


def init(uri=None, *, ignore_reinit_error=False, address=None, num_cpus=None,
         num_gpus=None, resources=None, **ray_kwargs):
    """Open the default runtime: @uri, or $MARIN_BACKEND when None, else
    "local" (as ray.init). Ray's address= (a backend URI), num_cpus,
    num_gpus and resources= (the size of a local runtime) are understood;
    its logging and dashboard keywords are ignored. Returns the backend."""
    global _runtime
    unknown = set(ray_kwargs) - _RAY_INIT_IGNORED
    uri = _ray_init_uri(uri, address, num_cpus, num_gpus, resources, unknown)
    with _state_lock:
        if _runtime is not None:
            if ignore_reinit_error:
                return _runtime.backend
            raise StateError("marin.init: already initialized (backend %s); call "
                             "marin.shutdown() first or pass ignore_reinit_error=True"
                             % _runtime.backend, lib.MARIN_ESTATE)
        _register_trampoline()
        uri = _with_python_worker(uri)
        _runtime = _Runtime(uri)
        global _process_mode
        # Python calls travel pickled to worker processes (processes=N) and
        # to the workers of a cluster backend (redis://)
        _process_mode = _runtime.backend != "local" or (
            uri is not None and "processes=" in (uri.split("?", 1) + [""])[1])
        return _runtime.backend


def _with_python_worker(uri):
    """local://?processes=N runs tasks in worker processes: make them Python
    workers (this interpreter, -m marin.worker) that can import what this
    process imports, unless the URI names its own worker."""
    if uri is None:
        uri = os.environ.get("MARIN_BACKEND") or None
    if not uri or not uri.startswith("local") or "?" not in uri:
        return uri
    query = uri.split("?", 1)[1]
    keys = [kv.split("=", 1)[0] for kv in query.split("&") if kv]
    if "processes" not in keys or "worker" in keys:
        return uri
    os.environ["MARIN_PY_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
    cmd = "%s -m marin.worker" % sys.executable
    return uri + "&worker=" + urllib.parse.quote(cmd, safe="/")


# Close the runtime before the interpreter goes: its threads call into Python.
atexit.register(lambda: shutdown())


def is_initialized():
    return _runtime is not None


def shutdown():
    """Close the default runtime: work it still owns is cancelled; refs stay
    readable."""
    global _runtime
    with _state_lock:
        rt, _runtime = _runtime, None
    if rt is not None:
        rt.close()
        _calls.clear()
        while _futs:
            _settle(next(iter(_futs)))


def _rt():
    """The default runtime's pointer, opening it on first use (as Ray)."""
    if _in_task():
        # inside a task, use the runtime that runs it (in a worker process
        # there is no default runtime to open)
        return lib.marin_task_runtime(_tls.ctx)
    rt = _runtime
    if rt is None:
        init(ignore_reinit_error=True)
        rt = _runtime
    return rt.ptr


def backend():
    rt = _rt()
    if _runtime is None or rt != _runtime.ptr:  # inside a worker's task
        return ffi.string(lib.marin_runtime_backend(rt)).decode()
    return _runtime.backend


_trampoline_registered = False


def _worker_mode():
    """In a worker of a cluster backend (python3 -m marin.worker --backend):
    calls its tasks make travel pickled too, to whichever worker takes them."""
    global _process_mode
    _process_mode = True


def _register_trampoline():
    global _trampoline_registered
    if not _trampoline_registered:
        rc = lib.marin_register_task(PY_TASK, lib.marin_py_task, ffi.NULL)
        if rc not in (0, lib.MARIN_EEXIST):
            check(rc)
        # the generic actor class of pickled Python actors, beside the task
        from ._actor import _register_generic
        _register_generic()
        _trampoline_registered = True


# ---------------------------------------------------------------- options

def _format_amount(v):
    if isinstance(v, bool):
        raise TypeError("a resource amount must be a number, not a bool")
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def resources_spec(opts):
    """The resource spec string for Ray- or marin-style keywords."""
    res = {}
    cpus = opts.get("cpus", opts.get("num_cpus"))
    gpus = opts.get("gpus", opts.get("num_gpus"))
    memory = opts.get("memory")
    if cpus is not None:
        res["cpus"] = _format_amount(cpus)
    if gpus is not None:
        res["gpus"] = _format_amount(gpus)
    if memory is not None:
        res["memory"] = memory if isinstance(memory, str) else _format_amount(memory)
    for k, v in (opts.get("resources") or {}).items():
        res[k] = v if isinstance(v, str) else _format_amount(v)
    if "cpus" not in res and opts.get("_default_cpus", 1) is not None:
        res["cpus"] = _format_amount(opts.get("_default_cpus", 1))
    return ",".join("%s=%s" % kv for kv in res.items())


_TASK_KEYS = {"cpus", "num_cpus", "gpus", "num_gpus", "memory", "resources",
              "max_retries", "retry_exceptions", "timeout", "env", "runtime_env",
              "name", "label", "scheduling_strategy", "num_returns"}


def _env_of(opts):
    env = dict(opts.get("env") or {})
    renv = opts.get("runtime_env") or {}
    for k, v in renv.items():
        if k == "env_vars":
            env.update(v)
        else:
            raise UnsupportedError(
                "runtime_env key %r is not supported by marin: install packages and "
                "code into the workers' environment beforehand; only env_vars "
                "travels with a task" % k, lib.MARIN_EUNSUPPORTED)
    return env


class TaskOptions:
    """A C marin_task_options_t made once from keyword options."""

    def __init__(self, opts):
        unknown = set(opts) - _TASK_KEYS - {"_default_cpus"}
        if unknown:
            raise TypeError("unknown task option(s): %s" % ", ".join(sorted(unknown)))
        if opts.get("num_returns", 1) != 1:
            raise UnsupportedError("num_returns other than 1 is not supported: return a "
                                   "tuple", lib.MARIN_EUNSUPPORTED)
        if opts.get("scheduling_strategy") not in (None, "DEFAULT", "SPREAD"):
            raise UnsupportedError("scheduling strategies (placement groups, node "
                                   "affinity) are not supported yet; see "
                                   "docs/migrating-from-ray.md", lib.MARIN_EUNSUPPORTED)
        p = ffi.new("marin_task_options_t **")
        check(lib.marin_task_options_create(p))
        self.ptr = ffi.gc(p[0], lib.marin_task_options_destroy)
        r = ffi.new("marin_resources_t **")
        check(lib.marin_resources_parse(resources_spec(opts).encode(), r))
        try:
            check(lib.marin_task_options_set_resources(self.ptr, r[0]))
        finally:
            lib.marin_resources_destroy(r[0])
        self.max_retries = int(opts.get("max_retries", 3))
        check(lib.marin_task_options_set_max_retries(self.ptr, self.max_retries))
        rex = opts.get("retry_exceptions", False)
        if isinstance(rex, (list, tuple)):
            self.retry_types = tuple(rex)
            self.retry_all = False
        else:
            self.retry_types = ()
            self.retry_all = bool(rex)
        check(lib.marin_task_options_set_retry_exceptions(
            self.ptr, 1 if (self.retry_all or self.retry_types) else 0))
        if opts.get("timeout") is not None:
            check(lib.marin_task_options_set_timeout_ms(self.ptr,
                                                        int(float(opts["timeout"]) * 1000)))
        for k, v in _env_of(opts).items():
            check(lib.marin_task_options_set_env(self.ptr, str(k).encode(),
                                                 str(v).encode()))
        label = opts.get("name") or opts.get("label")
        if label:
            check(lib.marin_task_options_set_label(self.ptr, str(label).encode()))

    def retries(self, exc, attempt):
        """Should this exception on this attempt be retried?"""
        if not (self.retry_all or (self.retry_types and isinstance(exc, self.retry_types))):
            return False
        return self.max_retries < 0 or attempt - 1 < self.max_retries


# ---------------------------------------------------------------- refs

class _Slot:
    """Where a Python call leaves its outcome (read after the future ends),
    with what it is called in messages, its key in _calls and the refs it
    depends on (to re-raise a failed dependency's own error)."""
    __slots__ = ("value", "exc", "tb", "key", "deps", "what")

    def __init__(self, key=0, deps=None, what=None):
        self.value = None
        self.exc = None
        self.tb = ""
        self.key = key
        self.deps = deps
        self.what = what


class ObjectRef:
    """The result of a task or actor call (a marin future). Pass it to
    marin.get, marin.wait, or as an argument to another task (it becomes a
    dependency)."""

    __slots__ = ("_fut", "_slot", "_decode", "__weakref__")

    def __init__(self, fut, slot=None, decode=None):
        self._fut = fut
        self._slot = slot
        self._decode = decode

    def __del__(self):
        fut, self._fut = self._fut, None
        if fut is not None and lib is not None:
            slot = self._slot
            if slot is not None and slot.key and lib.marin_future_state(fut) >= 2:
                _settle(slot.key)
            lib.marin_future_release(fut)

    def task_id(self):
        buf = ffi.new("char[128]")
        lib.marin_future_id(self._fut, buf, 128)
        return ffi.string(buf).decode()

    def done(self):
        return lib.marin_future_state(self._fut) >= 2

    def cancel(self):
        """Cancel: a queued task never runs, a running one sees cancelled()."""
        return _cancel(self)

    def __repr__(self):
        return "ObjectRef(%s)" % self.task_id()

    def __reduce__(self):
        raise TypeError("an ObjectRef cannot be pickled: pass it as a task argument "
                        "(it becomes a dependency) or get its value first")


def _result_of(ref, data, length):
    slot = ref._slot
    if slot is not None:
        if slot.exc is not None:
            raise _task_error(ref, slot)
        return slot.value
    raw = bytes(ffi.buffer(data, length)) if length else b""
    return ref._decode(raw) if ref._decode else raw


def _message(ref, slot):
    msg = ffi.string(lib.marin_future_error(ref._fut)).decode("utf-8", "replace")
    what = slot.what if slot is not None else getattr(ref._decode, "what", None)
    if what and "'call" in msg:
        # actor calls travel as the C methods "call"/"call_idempotent"
        msg = msg.replace("call 'call_idempotent'", "call '%s'" % what, 1)
        msg = msg.replace("call 'call'", "call '%s'" % what, 1)
    return msg


def _task_error(ref, slot=None):
    if slot is not None and slot.exc is not None:
        e = slot.exc
        msg = _message(ref, slot)
        te = TaskError(msg or "%s: %s" % (type(e).__name__, e), lib.MARIN_ETASK,
                       type(e).__name__, str(e), slot.tb, e)
        return te.as_instanceof_cause()
    return None


_REMOTE_EXC = re.compile(r"(?:^|: )([A-Z][A-Za-z0-9_]*): (.*)$", re.S)


def _raise_failure(ref, rc):
    slot = ref._slot
    if slot is not None:
        if slot.key:
            _settle(slot.key)
        if rc == lib.MARIN_ETASK or rc == 0:
            te = _task_error(ref, slot)
            if te is not None:
                raise te
            for d in slot.deps or ():
                # a dependency failed, so this never ran: raise its own error
                if lib.marin_future_state(d._fut) in (3, 4):
                    get(d)
    msg = _message(ref, slot)
    if rc == lib.MARIN_ETASK:
        raise _remote_task_error(msg, rc)
    raise error_for(rc, msg)


def _remote_task_error(msg, rc):
    """A TaskError from the message of a task that ran in another process:
    "... failed ...: TypeName: message", then maybe its traceback and the
    exception itself, pickled."""
    cause = None
    tb = ""
    if _EXC_MARK in msg:
        msg, blob = msg.split(_EXC_MARK, 1)
        try:
            cause = pickle.loads(base64.b64decode(blob))
        except Exception:  # a class this process cannot load: keep the text
            cause = None
    if _TB_MARK in msg:
        msg, tb = msg.split(_TB_MARK, 1)
    remote_type, remote_msg = None, msg
    m = _REMOTE_EXC.search(msg)
    if m:
        remote_type, remote_msg = m.group(1), m.group(2)
    te = TaskError(msg, rc, remote_type, remote_msg, tb,
                   cause if isinstance(cause, Exception) else None)
    return te.as_instanceof_cause()


def _deadline(timeout):
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    return time.monotonic() + timeout


def _slice(deadline):
    if deadline is None:
        return WAIT_SLICE_MS
    left = deadline - time.monotonic()
    return max(0, min(WAIT_SLICE_MS, int(left * 1000)))


def _get_one(ref, deadline, data, length):
    if not isinstance(ref, ObjectRef):
        raise TypeError("marin.get expects ObjectRefs, got %s" % type(ref).__name__)
    while True:
        ms = _slice(deadline)
        rc = lib.marin_future_get(ref._fut, ms, data, length)
        if rc == 0:
            return _result_of(ref, data[0], length[0])
        if rc == lib.MARIN_ETIMEDOUT:
            if deadline is not None and time.monotonic() >= deadline:
                raise GetTimeoutError("marin.get: %s did not finish in time"
                                      % ref.task_id(), rc)
            continue
        _raise_failure(ref, rc)


def get(refs, timeout=None):
    """The value of a ref, or a list of values for a list of refs (as
    ray.get). Raises the task's error (TaskError, also an instance of the
    original exception's class), WorkerDiedError, TaskCancelledError,
    TaskTimeoutError, or GetTimeoutError when @timeout seconds pass."""
    deadline = _deadline(timeout)
    data = ffi.new("const void **")
    length = ffi.new("size_t *")
    if isinstance(refs, ObjectRef):
        return _get_one(refs, deadline, data, length)
    if isinstance(refs, (list, tuple)):
        return [_get_one(r, deadline, data, length) for r in refs]
    raise TypeError("marin.get expects an ObjectRef or a list of them, got %s"
                    % type(refs).__name__)


def wait(refs, num_returns=1, timeout=None, fetch_local=True):
    """(ready, not_ready) as ray.wait: at most num_returns ready refs, in
    input order; on timeout fewer."""
    refs = list(refs)
    n = len(refs)
    if n == 0:
        return [], []
    if not 1 <= num_returns <= n:
        raise ValueError("num_returns must be between 1 and %d, got %d" % (n, num_returns))
    for r in refs:
        if not isinstance(r, ObjectRef):
            raise TypeError("marin.wait expects ObjectRefs, got %s" % type(r).__name__)
    futs = ffi.new("marin_future_t *[]", [r._fut for r in refs])
    idx = ffi.new("size_t[]", num_returns)
    nready = ffi.new("size_t *")
    deadline = _deadline(timeout)
    while True:
        ms = _slice(deadline)
        check(lib.marin_wait(futs, n, num_returns, ms, idx, nready))
        k = nready[0]
        if k >= num_returns or (deadline is not None and time.monotonic() >= deadline):
            chosen = set(idx[i] for i in range(k))
            ready = [refs[i] for i in range(n) if i in chosen]
            rest = [refs[i] for i in range(n) if i not in chosen]
            return ready, rest


def _cancel(ref):
    rc = lib.marin_future_cancel(ref._fut)
    if rc == 0:
        if ref._slot is not None and ref._slot.key:
            _settle(ref._slot.key)
        return True
    if rc == lib.MARIN_ESTATE:
        return False
    check(rc)


def cancel(ref, force=False, recursive=True):
    """Cancel a task (as ray.cancel): True when it was still pending or
    running. Cooperative: a running task sees marin.get_runtime_context()
    .cancelled() become true."""
    return _cancel(ref)


# ---------------------------------------------------------------- calls

class WorkerKilled(BaseException):
    """Raised by marin.testing.kill_worker() inside a task or actor method:
    the attempt ends as if its worker died (marin_test_kill_worker in C)."""


class _Call:
    __slots__ = ("fn", "args", "kwargs", "slot", "opts", "refpos")

    def __init__(self, fn, args, kwargs, slot, opts, refpos):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.slot = slot
        self.opts = opts
        self.refpos = refpos


_sweep_at = [4096]


_futs = {}  # call key -> the call table's reference on its future


def _settle(key):
    """Forget call @key (its arguments go with it). dict.pop is atomic under
    the GIL, so the reference is released once even when a worker thread
    and the submitter race here."""
    _calls.pop(key, None)
    fut = _futs.pop(key, None)
    if fut is not None and lib is not None:
        lib.marin_future_release(fut)


def _track(key, fut):
    """Keep the second reference the submit took (marin_py_submit) on the
    call's future, so calls that end without running their function
    (cancelled, a dependency failed, the worker died, the actor was killed)
    are forgotten too: swept when the table has doubled since the last
    sweep, so the cost per call stays constant."""
    _futs[key] = fut
    if key not in _calls:  # it ran and was settled meanwhile
        _settle(key)
    if len(_futs) > _sweep_at[0]:
        for k in list(_futs):
            f = _futs.pop(k, None)  # ours now: no other thread releases it
            if f is None:
                continue
            if lib.marin_future_state(f) >= 2:
                _calls.pop(k, None)
                lib.marin_future_release(f)
            else:
                _futs[k] = f
                if k not in _calls:  # settled meanwhile, without its reference
                    _settle(k)
        _sweep_at[0] = max(4096, 2 * len(_futs))


def _deps_of(args, kwargs):
    """Top-level ObjectRefs among the arguments (as Ray resolves them)."""
    deps = [a for a in args if isinstance(a, ObjectRef)]
    if kwargs:
        deps.extend(v for v in kwargs.values() if isinstance(v, ObjectRef))
    return deps


def _resolve(v):
    # get, not the slot: an actor call does not wait for its arguments
    return get(v) if isinstance(v, ObjectRef) else v


class _Dep:
    """Stands for the i-th dependency's value in a pickled call."""
    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __reduce__(self):
        return (_Dep, (self.i,))


def _dumps(obj):
    try:
        import cloudpickle  # functions of __main__ and closures travel by value
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except ImportError:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


# A pickled call whose exception must not be retried (retry_exceptions names
# other types) succeeds in C with this marker and the pickled error.
_FAILED_RESULT = b"MPYE"


def _loads_result(raw):
    if raw[:4] == _FAILED_RESULT:
        msg, tb, exc = pickle.loads(raw[4:])
        te = TaskError(msg, lib.MARIN_ETASK, type(exc).__name__ if exc else None,
                       str(exc) if exc else msg, tb, exc)
        raise te.as_instanceof_cause()
    return pickle.loads(raw)


def _by_name(module, qualname):
    """The function @module:@qualname, in a worker: imported, and unwrapped
    when the name holds its @marin.remote wrapper."""
    import importlib
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj._fn if isinstance(obj, RemoteFunction) else obj


class _FnByName:
    """A function sent as module:qualname (pickle sends plain module
    functions so; this covers those whose module-level name holds their
    @marin.remote wrapper, which pickle would refuse and cloudpickle would
    send by value)."""
    __slots__ = ("module", "qualname")

    def __init__(self, module, qualname):
        self.module = module
        self.qualname = qualname

    def __reduce__(self):
        return (_by_name, (self.module, self.qualname))


def _sendable(fn):
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        return fn
    obj = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn and isinstance(obj, RemoteFunction) and obj._fn is fn:
        return _FnByName(module, qualname)
    return fn


def _submit_pickled(fn, args, kwargs, opts, label):
    """processes=N: the call travels pickled; top-level refs become
    dependencies whose (pickled) results the worker substitutes."""
    rt = _rt()
    deps = []

    def sub(v):
        if isinstance(v, ObjectRef):
            if v._slot is not None or v._decode is not _loads_result:
                # an actor call's value lives in this process, a named task's
                # is raw bytes: not a pickled result a worker can load
                return get(v)
            deps.append(v)
            return _Dep(len(deps) - 1)
        return v

    args = tuple(sub(a) for a in args)
    kwargs = {k: sub(v) for k, v in kwargs.items()} if kwargs else {}
    spec = (opts.max_retries, opts.retry_all, opts.retry_types)
    if getattr(fn, "__module__", None) == "__main__" or "<locals>" in getattr(
            fn, "__qualname__", ""):
        try:
            import cloudpickle  # noqa: F401
        except ImportError:
            raise TypeError("marin: %s is defined in __main__ or inside a function, so a "
                            "worker process cannot import it: install python3-cloudpickle "
                            "(it sends such functions by value) or move it to a module"
                            % getattr(fn, "__qualname__", fn)) from None
    try:
        arg = PICKLED + _dumps((_sendable(fn), args, kwargs, spec))
    except Exception as e:
        raise TypeError("marin: cannot send %s to a worker process: %s: %s (with "
                        "processes=N, functions and arguments are pickled; "
                        "python3-cloudpickle sends functions of __main__ by value)"
                        % (label or getattr(fn, "__name__", "the call"),
                           type(e).__name__, e)) from e
    out = ffi.new("marin_future_t **")
    if deps:
        darr = ffi.new("marin_future_t *[]", [d._fut for d in deps])
        check(lib.marin_submit_after(rt, PY_TASK, arg, len(arg), opts.ptr, darr, len(deps),
                                     out))
    else:
        check(lib.marin_submit(rt, PY_TASK, arg, len(arg), opts.ptr, out))
    return ObjectRef(out[0], None, _loads_result)


def submit_call(fn, args, kwargs, opts, label=None):
    """Submit Python @fn(*args, **kwargs) with TaskOptions @opts."""
    rt = _rt()  # first: it may open the runtime, which sets the mode
    if _process_mode:  # (worker processes never set it: nested calls stay there)
        return _submit_pickled(fn, args, kwargs, opts, label)
    key = next(_next_key)
    deps = _deps_of(args, kwargs)
    slot = _Slot(key, deps, label)
    _calls[key] = _Call(fn, args, kwargs, slot, opts, bool(deps))
    arg = key.to_bytes(8, "little")
    out = ffi.new("marin_future_t **")
    darr = ffi.new("marin_future_t *[]", [d._fut for d in deps]) if deps else ffi.NULL
    rc = lib.marin_py_submit(rt, PY_TASK, arg, 8, opts.ptr, darr, len(deps), out)
    if rc != 0:
        _calls.pop(key, None)
        check(rc)
    _track(key, out[0])
    return ObjectRef(out[0], slot)


_OWN_FILES = (__file__.rstrip("c"),)


def _awaited(value):
    """An async def function or method runs to completion on this thread."""
    if inspect.iscoroutine(value):
        return asyncio.run(value)
    return value


def _traceback_text(e):
    """The traceback as text, formatted without column markers: those parse
    the source with ast, which is not safe from several threads on 3.11
    (CPython gh-106905). Frames of marin's own trampolines are left out."""
    frames = [traceback.FrameSummary(f.filename, f.lineno, f.name, line=f.line)
              for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.endswith(("marin/_core.py", "marin/_actor.py"))]
    return ("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) +
            "".join(traceback.format_exception_only(type(e), e)))


@ffi.def_extern(error=-13)  # MARIN_ETASK if the trampoline itself fails
def marin_py_task(ctx, arg, length, userdata):
    if userdata != ffi.NULL:
        return _run_named(ctx, arg, length, userdata)
    if length > 8 and bytes(ffi.buffer(arg, 4)) == PICKLED:
        return _run_pickled(ctx, bytes(ffi.buffer(arg, length))[4:])
    key = int.from_bytes(ffi.buffer(arg, length)[:], "little") if length == 8 else -1
    call = _calls.get(key)
    if call is None:
        return lib.marin_task_fail(ctx, b"marin: this Python call is not known in this "
                                   b"process (the driver that submitted it is gone)")
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        args, kwargs = call.args, call.kwargs
        if call.refpos:
            args = tuple(_resolve(a) for a in args)
            kwargs = {k: _resolve(v) for k, v in kwargs.items()} if kwargs else kwargs
        value = _awaited(call.fn(*args, **(kwargs or {})))
    except WorkerKilled:
        return lib.marin_test_kill_worker(ctx)
    except BaseException as e:  # noqa: B036 - the task's failure, whatever it is
        attempt = lib.marin_task_attempt(ctx)
        text = "%s: %s" % (type(e).__name__, e)
        if not isinstance(e, Exception) or not call.opts.retries(e, attempt):
            call.slot.exc = e if isinstance(e, Exception) else RuntimeError(text)
            call.slot.tb = _traceback_text(e)
            _settle(key)
            if call.opts.retry_types and not isinstance(e, call.opts.retry_types):
                # The C layer would retry it (retry_exceptions is on for the
                # listed types): settle it here; get() raises from the slot.
                return 0
        return lib.marin_task_fail(ctx, text.encode("utf-8", "replace")[:4000])
    finally:
        _tls.ctx = prev
    call.slot.value = value
    _settle(key)
    return 0


def _run_pickled(ctx, blob):
    """A pickled call (in a worker process): run it, return its pickled
    value, or fail with its type, message, traceback and pickled exception."""
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    retry_all, retry_types = False, ()
    try:
        fn, args, kwargs, (max_retries, retry_all, retry_types) = pickle.loads(blob)
        if any(isinstance(a, _Dep) for a in args) or any(
                isinstance(v, _Dep) for v in kwargs.values()):
            data = ffi.new("const void **")
            n = ffi.new("size_t *")

            def dep(v):
                if not isinstance(v, _Dep):
                    return v
                check(lib.marin_task_dep(ctx, v.i, data, n))
                return pickle.loads(bytes(ffi.buffer(data[0], n[0])))

            args = tuple(dep(a) for a in args)
            kwargs = {k: dep(v) for k, v in kwargs.items()}
        value = _awaited(fn(*args, **kwargs))
        out = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except WorkerKilled:
        return lib.marin_test_kill_worker(ctx)
    except BaseException as e:  # noqa: B036
        text = "%s: %s" % (type(e).__name__, e)
        tb = _traceback_text(e)
        if retry_types and not retry_all and not (isinstance(e, retry_types)):
            # C retries every application error of this task (its list is
            # on): settle this one as a marked result that get() raises
            try:
                out = _FAILED_RESULT + pickle.dumps(
                    (text, tb, e if isinstance(e, Exception) else None))
            except Exception:
                out = _FAILED_RESULT + pickle.dumps((text, tb, None))
            return lib.marin_task_return(ctx, out, len(out))
        text = text[:4000] + _TB_MARK + tb[-4000:]
        try:
            blob = base64.b64encode(pickle.dumps(e)).decode()
            if len(blob) < 8192:
                text += _EXC_MARK + blob
        except Exception:
            pass
        return lib.marin_task_fail(ctx, text.encode("utf-8", "replace"))
    finally:
        _tls.ctx = prev
    return lib.marin_task_return(ctx, out, len(out))


# ---------------------------------------------------------------- named tasks

_named = {}  # name -> _Named (kept alive: C holds a handle to it)


class _Named:
    def __init__(self, name, fn):
        self.name = name
        self.fn = fn
        self.handle = ffi.new_handle(self)


def _to_bytes(v, what):
    if v is None:
        return b""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise TypeError("%s must return bytes, str or None, not %s" % (what, type(v).__name__))


def _run_named(ctx, arg, length, userdata):
    named = ffi.from_handle(userdata)
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        out = _to_bytes(named.fn(bytes(ffi.buffer(arg, length)) if length else b""),
                        "task %r" % named.name)
    except BaseException as e:  # noqa: B036
        return lib.marin_task_fail(ctx, ("%s: %s" % (type(e).__name__, e))
                                   .encode("utf-8", "replace")[:4000])
    finally:
        _tls.ctx = prev
    return lib.marin_task_return(ctx, out, len(out))


def register_task(name, fn=None):
    """Register Python @fn(arg: bytes) -> bytes|str|None as task @name, so
    marin.call(name, ...), C code and the executor can run it by name.
    Usable as a decorator: @marin.register_task("wordcount")."""
    if fn is None:
        return lambda f: register_task(name, f) or f
    named = _Named(name, fn)
    check(lib.marin_register_task(name.encode(), lib.marin_py_task, named.handle))
    _named[name] = named
    return fn


def call(task, arg=b"", *, decode=None, **options):
    """Run the task registered by name @task (in C or with register_task)
    with bytes @arg; the ref's value is the bytes it returned (or
    decode(bytes))."""
    rt = _rt()
    if isinstance(arg, str):
        arg = arg.encode()
    arg = bytes(arg)
    opts = TaskOptions(dict(options))
    out = ffi.new("marin_future_t **")
    check(lib.marin_submit(rt, task.encode(), arg, len(arg), opts.ptr, out))
    return ObjectRef(out[0], None, decode)


# ---------------------------------------------------------------- remote

class RemoteFunction:
    """A Python function made remote: f.remote(*args) -> ObjectRef."""

    def __init__(self, fn, options):
        self._fn = fn
        self._options = dict(options)
        self._opts = None
        self._label = None
        self.__name__ = getattr(fn, "__name__", "remote")
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def _task_options(self):
        if self._opts is None:
            o = dict(self._options)
            o.setdefault("label", "%s.%s" % (getattr(self._fn, "__module__", "?"),
                                             getattr(self._fn, "__qualname__", self.__name__)))
            self._label = o.get("name") or o["label"]
            self._opts = TaskOptions(o)
        return self._opts

    def remote(self, *args, **kwargs):
        opts = self._task_options()
        return submit_call(self._fn, args, kwargs, opts, self._label)

    def options(self, **options):
        merged = dict(self._options)
        merged.update(options)
        return RemoteFunction(self._fn, merged)

    def __call__(self, *args, **kwargs):
        raise TypeError("remote function %s cannot be called directly: use "
                        "%s.remote(...)" % (self.__name__, self.__name__))


def remote(*args, **options):
    """@marin.remote or @marin.remote(cpus=, memory="4GiB", gpus=,
    resources={}, max_retries=, retry_exceptions=, timeout=, env={}) on a
    function (a task) or a class (an actor). Ray's num_cpus, num_gpus,
    memory in bytes and runtime_env={"env_vars": ...} are accepted too."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("marin.remote takes keyword options only")
    return lambda target: _make_remote(target, options)


def _make_remote(target, options):
    if isinstance(target, type):
        from ._actor import ActorClass
        return ActorClass(target, options)
    return RemoteFunction(target, options)


# ---------------------------------------------------------------- ordered map

def map_ordered(fn, iterable, max_in_flight=1000, progress=False):
    """Yield fn.remote(*item) for each item of @iterable, in submission
    order, with at most @max_in_flight outstanding (the old code's
    simple_backpressure). A failed task raises its error when its turn
    comes; what is still in flight is then cancelled."""
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    if not isinstance(fn, RemoteFunction):
        if hasattr(fn, "remote"):
            submit = fn.remote
        else:
            fn = RemoteFunction(fn, {})
            submit = fn.remote
    else:
        submit = fn.remote
    try:
        total = len(iterable)
    except TypeError:
        total = None
    bar = _Progress(total) if (progress or os.environ.get("MARIN_PROGRESS", "").startswith("1")) else None
    window = collections.deque()
    ok = False
    try:
        for item in iterable:
            if not isinstance(item, tuple):
                item = (item,)
            window.append(submit(*item))
            if len(window) >= max_in_flight:
                yield get(window.popleft())
                if bar:
                    bar.tick()
        while window:
            yield get(window.popleft())
            if bar:
                bar.tick()
        ok = True
    finally:
        if not ok:
            for ref in window:
                _cancel(ref)
        if bar:
            bar.close()


class _Progress:
    """count, rate and ETA on stderr, only when it is a terminal."""

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.last = 0.0
        self.on = sys.stderr.isatty()

    def tick(self):
        self.done += 1
        now = time.monotonic()
        if self.on and (now - self.last > 0.1 or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            if self.total:
                eta = (self.total - self.done) / rate if rate > 0 else 0
                sys.stderr.write("\r%d/%d  %.0f/s  ETA %.0fs " % (self.done, self.total,
                                                                 rate, eta))
            else:
                sys.stderr.write("\r%d  %.0f/s " % (self.done, rate))
            sys.stderr.flush()

    def close(self):
        if self.on:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- context

def _in_task():
    return getattr(_tls, "ctx", None) is not None


class RuntimeContext:
    """What a task knows about itself (marin.get_runtime_context())."""

    def _ctx(self):
        ctx = getattr(_tls, "ctx", None)
        if ctx is None:
            raise StateError("not inside a marin task or actor method", lib.MARIN_ESTATE)
        return ctx

    def get_task_id(self):
        return ffi.string(lib.marin_task_id(self._ctx())).decode()

    def get_attempt(self):
        return lib.marin_task_attempt(self._ctx())

    def get_env(self, key, default=None):
        """The task's env option @key (env= / runtime_env env_vars)."""
        p = lib.marin_task_env(self._ctx(), key.encode())
        return default if p == ffi.NULL else ffi.string(p).decode()

    def get_gpu_ids(self):
        ids = ffi.new("int[64]")
        n = ffi.new("size_t *")
        check(lib.marin_task_gpu_ids(self._ctx(), ids, 64, n))
        return [ids[i] for i in range(n[0])]

    def cancelled(self):
        return bool(lib.marin_task_cancelled(self._ctx()))

    def log(self, message, level=3):
        check(lib.marin_task_log(self._ctx(), level, str(message).encode()))

    def in_task(self):
        return _in_task()


_context = RuntimeContext()


def get_runtime_context():
    return _context


def get_gpu_ids():
    return _context.get_gpu_ids()
