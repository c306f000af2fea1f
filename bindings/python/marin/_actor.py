"""Python actors on marin's C actors.

Each Python class becomes one C actor class, "py:MODULE.QUALNAME", with two
C methods: "call" and "call_idempotent"; the Python method's name travels
with the call. Its checkpoint is the pickled instance (so __getstate__ /
__setstate__ decide what survives a restart).
"""
import io
import pickle
import threading

from ._native import ffi, lib, check, TaskError, StateError
from . import _core
from ._core import (_Slot, _Call, ObjectRef, _calls, _next_key, _tls, _rt, WorkerKilled,
                    _settle, _track)

_reg_lock = threading.Lock()
_registered = {}        # C class name -> Python class, registered in this process
_ctors = {}             # constructor key -> (cls, args, kwargs), for restarts
_instances = {}         # handle address -> cffi handle (keeps the object alive)
_class_of_id = {}       # actor id -> Python class (this process)

_ACTOR_KEYS = {"name", "get_if_exists", "max_restarts", "max_concurrency", "lifetime",
               "detached", "checkpoint_every", "namespace", "cpus", "num_cpus", "gpus",
               "num_gpus", "memory", "resources", "max_task_retries"}


def method(fn=None, *, idempotent=False):
    """Mark an actor method: @marin.method(idempotent=True) methods are
    replayed after a restart instead of failing with WorkerDiedError."""
    def mark(f):
        f._marin_idempotent = bool(idempotent)
        return f
    return mark(fn) if fn is not None else mark


def _c_name(cls):
    return "py:%s.%s" % (cls.__module__, cls.__qualname__)


def _register_class(cls):
    name = _c_name(cls)
    with _reg_lock:
        if name in _registered:
            if _registered[name] is not cls:
                raise ValueError("two actor classes are both named %s in this process"
                                 % name)
            return name
        p = ffi.new("marin_actor_class_t **")
        check(lib.marin_actor_class_create(name.encode(), lib.marin_py_actor_init,
                                           lib.marin_py_actor_fini, p))
        c = p[0]
        try:
            check(lib.marin_actor_class_add_method(c, b"call", lib.marin_py_actor_call, 0))
            check(lib.marin_actor_class_add_method(c, b"call_idempotent",
                                                   lib.marin_py_actor_call,
                                                   lib.MARIN_METHOD_IDEMPOTENT))
            check(lib.marin_actor_class_set_checkpoint(c, lib.marin_py_actor_save,
                                                       lib.marin_py_actor_restore))
            rc = lib.marin_register_actor_class(c)
            if rc not in (0, lib.MARIN_EEXIST):
                check(rc)
        finally:
            lib.marin_actor_class_destroy(c)
        _registered[name] = cls
        return name


class ActorClass:
    """A Python class made remote: Cls.remote(*args) -> ActorHandle."""

    def __init__(self, cls, options):
        unknown = set(options) - _ACTOR_KEYS
        if unknown:
            raise TypeError("unknown actor option(s): %s" % ", ".join(sorted(unknown)))
        self._cls = cls
        self._options = dict(options)
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def options(self, **options):
        merged = dict(self._options)
        merged.update(options)
        return ActorClass(self._cls, merged)

    def remote(self, *args, **kwargs):
        _core._register_trampoline()
        rt = _rt()
        cname = _register_class(self._cls)
        o = self._options
        p = ffi.new("marin_actor_options_t **")
        check(lib.marin_actor_options_create(p))
        opts = ffi.gc(p[0], lib.marin_actor_options_destroy)
        if o.get("name"):
            check(lib.marin_actor_options_set_name(opts, str(o["name"]).encode()))
        if o.get("get_if_exists"):
            check(lib.marin_actor_options_set_get_if_exists(opts, 1))
        if o.get("max_restarts") is not None:
            check(lib.marin_actor_options_set_max_restarts(opts, int(o["max_restarts"])))
        if o.get("max_concurrency") is not None:
            check(lib.marin_actor_options_set_max_concurrency(opts, int(o["max_concurrency"])))
        if o.get("detached") or o.get("lifetime") == "detached":
            check(lib.marin_actor_options_set_detached(opts, 1))
        if o.get("checkpoint_every"):
            check(lib.marin_actor_options_set_checkpoint_every(opts, int(o["checkpoint_every"])))
        res = dict(o)
        res["_default_cpus"] = None  # an actor holds nothing unless asked (as Ray)
        spec = _core.resources_spec(res)
        if spec:
            r = ffi.new("marin_resources_t **")
            check(lib.marin_resources_parse(spec.encode(), r))
            try:
                check(lib.marin_actor_options_set_resources(opts, r[0]))
            finally:
                lib.marin_resources_destroy(r[0])
        key = next(_next_key)
        _ctors[key] = (self._cls, args, kwargs)
        out = ffi.new("marin_actor_t **")
        rc = lib.marin_actor_create(rt, cname.encode(), key.to_bytes(8, "little"), 8,
                                    opts, out)
        if rc != 0:
            _ctors.pop(key, None)
            check(rc)
        h = ActorHandle(out[0], self._cls)
        _class_of_id[h._id] = self._cls
        return h

    def __call__(self, *a, **k):
        raise TypeError("actor class %s cannot be instantiated directly: use "
                        "%s.remote(...)" % (self.__name__, self.__name__))


class ActorHandle:
    """A handle to an actor: handle.method.remote(*args) -> ObjectRef."""

    def __init__(self, ptr, cls=None):
        object.__setattr__(self, "_ptr", ptr)
        object.__setattr__(self, "_id", ffi.string(lib.marin_actor_id(ptr)).decode())
        object.__setattr__(self, "_cls", cls or _class_of_id.get(self._id))

    def __del__(self):
        ptr = self.__dict__.get("_ptr")
        if ptr is not None and lib is not None:
            object.__setattr__(self, "_ptr", None)
            lib.marin_actor_release(ptr)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = self.__dict__.get("_cls")
        if cls is not None and not callable(getattr(cls, name, None)):
            raise AttributeError("actor class %s has no method %r" % (cls.__name__, name))
        return ActorMethod(self, name)

    def actor_id(self):
        return self._id

    def ready(self, timeout=None):
        """Wait for the constructor; raises its error."""
        ms = -1 if timeout is None else int(timeout * 1000)
        check(lib.marin_actor_ready(self._ptr, ms))
        return True

    def __repr__(self):
        return "ActorHandle(%s)" % self._id

    def __reduce__(self):
        return (get_actor_by_id, (self._id,))


class ActorMethod:
    __slots__ = ("_handle", "_name")

    def __init__(self, handle, name):
        self._handle = handle
        self._name = name

    def remote(self, *args, **kwargs):
        h = self._handle
        cls = h._cls
        fn = getattr(cls, self._name, None) if cls is not None else None
        idem = bool(getattr(fn, "_marin_idempotent", False))
        key = next(_next_key)
        deps = _core._deps_of(args, kwargs)
        what = "%s.%s" % (cls.__name__ if cls is not None else "actor", self._name)
        slot = _Slot(key, deps, what)
        _calls[key] = _Call(self._name, args, kwargs, slot, idem, bool(deps))
        out = ffi.new("marin_future_t **")
        rc = lib.marin_py_call_actor(h._ptr, b"call_idempotent" if idem else b"call",
                                     key.to_bytes(8, "little"), 8, out)
        if rc != 0:
            _calls.pop(key, None)
            check(rc)
        _track(key, out[0])
        return ObjectRef(out[0], slot)

    def __call__(self, *a, **k):
        raise TypeError("actor method %s cannot be called directly: use "
                        ".%s.remote(...)" % (self._name, self._name))


def get_actor(name):
    """The live actor named @name (as ray.get_actor); NotFoundError if none."""
    out = ffi.new("marin_actor_t **")
    check(lib.marin_actor_lookup(_rt(), str(name).encode(), out))
    return ActorHandle(out[0])


def get_actor_by_id(actor_id):
    out = ffi.new("marin_actor_t **")
    check(lib.marin_actor_from_id(_rt(), actor_id.encode(), out))
    return ActorHandle(out[0])


def kill(actor, no_restart=True):
    """Kill the actor (as ray.kill): its calls end with TaskCancelledError;
    with no_restart=False and restarts left it comes back."""
    check(lib.marin_actor_kill(actor._ptr, 1 if no_restart else 0))


def checkpoint(actor):
    """Checkpoint the actor now (after the calls made before), pickling it."""
    check(lib.marin_actor_checkpoint(actor._ptr))


# ---------------------------------------------------------------- trampolines

def _addr(p):
    return int(ffi.cast("uintptr_t", p))


def _keep(obj):
    h = ffi.new_handle(obj)
    _instances[_addr(h)] = h
    return h


def _fail(ctx, e):
    return lib.marin_task_fail(ctx, ("%s: %s" % (type(e).__name__, e))
                               .encode("utf-8", "replace")[:4000])


@ffi.def_extern(error=-13)
def marin_py_actor_init(ctx, arg, length, self_out):
    key = int.from_bytes(ffi.buffer(arg, length)[:], "little") if length == 8 else -1
    entry = _ctors.get(key)
    if entry is None:
        return lib.marin_task_fail(ctx, b"marin: this actor's constructor arguments are "
                                   b"not known in this process")
    cls, args, kwargs = entry
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        obj = cls(*args, **kwargs)
    except WorkerKilled:
        return lib.marin_test_kill_worker(ctx)
    except BaseException as e:  # noqa: B036 - SystemExit too: the constructor failed
        return _fail(ctx, e)
    finally:
        _tls.ctx = prev
    self_out[0] = _keep(obj)
    return 0


@ffi.def_extern()
def marin_py_actor_fini(self):
    _instances.pop(_addr(self), None)


@ffi.def_extern(error=-13)
def marin_py_actor_call(ctx, self, arg, length):
    key = int.from_bytes(ffi.buffer(arg, length)[:], "little") if length == 8 else -1
    call = _calls.get(key)
    if call is None:
        return lib.marin_task_fail(ctx, b"marin: this actor call is not known in this "
                                   b"process")
    obj = ffi.from_handle(self)
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        args, kwargs = call.args, call.kwargs
        if call.refpos:
            args = tuple(_core._resolve(a) for a in args)
            kwargs = {k: _core._resolve(v) for k, v in kwargs.items()} if kwargs else kwargs
        value = _core._awaited(getattr(obj, call.fn)(*args, **(kwargs or {})))
    except WorkerKilled:
        if not call.opts:  # not idempotent: it will not be replayed
            _settle(key)
        return lib.marin_test_kill_worker(ctx)
    except BaseException as e:  # noqa: B036
        call.slot.exc = e if isinstance(e, Exception) else RuntimeError(
            "%s: %s" % (type(e).__name__, e))
        call.slot.tb = _core._traceback_text(e)
        _settle(key)
        return _fail(ctx, e)
    finally:
        _tls.ctx = prev
    call.slot.value = value
    _settle(key)
    return 0


class _Pickler(pickle.Pickler):
    """Pickles an actor instance with its class by its marin name: the
    module attribute of a decorated class is the ActorClass wrapper (and a
    class defined in a function has none), so pickling the class by
    reference would fail."""

    def persistent_id(self, obj):
        if isinstance(obj, type):
            name = _c_name(obj)
            if _registered.get(name) is obj:
                return ("marin-actor-class", name)
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        kind, name = pid
        cls = _registered.get(name) if kind == "marin-actor-class" else None
        if cls is None:
            raise pickle.UnpicklingError("actor class %s is not registered in this "
                                         "process" % name)
        return cls


@ffi.def_extern(error=-13)
def marin_py_actor_save(ctx, self):
    obj = ffi.from_handle(self)
    try:
        buf = io.BytesIO()
        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        data = buf.getvalue()
    except Exception as e:
        return _fail(ctx, e)
    return lib.marin_task_return(ctx, data, len(data))


@ffi.def_extern(error=-13)
def marin_py_actor_restore(ctx, data, length, self_out):
    try:
        obj = _Unpickler(io.BytesIO(bytes(ffi.buffer(data, length)))).load()
    except Exception as e:
        return _fail(ctx, e)
    self_out[0] = _keep(obj)
    return 0
