"""Python actors on marin's C actors.

Two ways, both with the C methods "call" and "call_idempotent" (the
Python method's name travels with the call) and the pickled instance as
checkpoint (so __getstate__ / __setstate__ decide what survives a restart):

- on the local backend, each Python class becomes its own C actor class,
  "py:MODULE.QUALNAME", registered in this process when first used; the
  constructor and call arguments stay in this process (a call carries only
  a key), so nothing is pickled;
- on other backends (redis://), every Python actor is an instance of the
  one generic C class "marin.py.actor" that every Python process registers
  (with the task "marin.py"): the constructor argument is the pickled
  (class, args, kwargs), the class by reference (module:qualname) or, for
  classes of __main__ and local ones, by value with cloudpickle; a call's
  argument is the pickled (method, args, kwargs) and its result the pickled
  value, so any Python worker can host the actor and any process call it.
"""
import base64
import io
import pickle
import struct
import sys
import threading

from ._native import ffi, lib, check, last_error, TaskError, StateError
from . import _core
from ._core import (_Slot, _Call, ObjectRef, _calls, _next_key, _tls, _rt, WorkerKilled,
                    _settle, _track, PICKLED)

# The generic C class of actors whose arguments travel pickled.
PY_ACTOR = "marin.py.actor"
# A pickled actor's checkpoint: this, the class blob's length (4 bytes,
# little endian), the class blob, the pickled instance.
_CKPT = b"MPYA"
# A test switch: the pickled way on the local backend too.
_force_pickled = False

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


_generic_registered = False


def _register_generic():
    """Register the C class "marin.py.actor" in this process (every Python
    process does, at init or when it starts a worker), so any Python worker
    can host any pickled Python actor."""
    global _generic_registered
    if _generic_registered:
        return
    with _reg_lock:
        if _generic_registered:
            return
        p = ffi.new("marin_actor_class_t **")
        check(lib.marin_actor_class_create(PY_ACTOR.encode(), lib.marin_py_actor_init,
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
        _generic_registered = True


def _pickled_actors():
    """Do actors of the current runtime travel pickled? Everywhere but on
    the local backend (whose actors live in this process)."""
    return _force_pickled or _core.backend() != "local"


def _class_by_name(module, qualname):
    """The class @module:@qualname, imported (in a worker), unwrapped when
    the name holds its @marin.remote / @marin.actor wrapper."""
    import importlib
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
        if isinstance(obj, ActorClass):
            obj = obj._cls
    return obj


class _ClassByName:
    """A class sent as module:qualname: pickle would refuse a class whose
    module-level name holds its ActorClass wrapper, and cloudpickle would
    send it by value."""
    __slots__ = ("module", "qualname")

    def __init__(self, module, qualname):
        self.module = module
        self.qualname = qualname

    def __reduce__(self):
        return (_class_by_name, (self.module, self.qualname))


def _importable_name(cls):
    """(module, qualname) when a worker can import @cls by name, else None."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        return None
    obj = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if isinstance(obj, ActorClass):
            obj = obj._cls
    return (module, qualname) if obj is cls else None


def _class_blob(cls):
    """The pickled reference to @cls that a pickled actor's host loads."""
    name = _importable_name(cls)
    if name is None:
        try:
            import cloudpickle  # noqa: F401
        except ImportError:
            raise TypeError("marin: actor class %s is defined in __main__ or inside a "
                            "function, so a worker cannot import it: install "
                            "python3-cloudpickle (it sends such classes by value) or move "
                            "it to a module" % cls.__qualname__) from None
        return _core._dumps(cls)
    return pickle.dumps(_ClassByName(*name), protocol=pickle.HIGHEST_PROTOCOL)


def _dump_call(what, payload):
    try:
        return PICKLED + _core._dumps(payload)
    except Exception as e:
        raise TypeError("marin: cannot send %s to the actor's host: %s: %s (on this backend "
                        "actor arguments are pickled)" % (what, type(e).__name__, e)) from e


def _resolved(args, kwargs):
    """Refs among the arguments, replaced by their values (got here: an
    actor call has no dependencies on remote backends)."""
    args = tuple(_core.get(a) if isinstance(a, ObjectRef) else a for a in args)
    if kwargs:
        kwargs = {k: _core.get(v) if isinstance(v, ObjectRef) else v
                  for k, v in kwargs.items()}
    return args, kwargs or {}


class _PickledResult:
    """The decoder of a pickled actor call's result (and, for messages,
    what the call was)."""
    __slots__ = ("what",)

    def __init__(self, what):
        self.what = what

    def __call__(self, raw):
        return pickle.loads(raw)


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
        pickled = _pickled_actors()
        cname = None if pickled else _register_class(self._cls)
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
        out = ffi.new("marin_actor_t **")
        if pickled:
            args, kwargs = _resolved(args, kwargs)
            arg = _dump_call("the arguments of %s()" % self._cls.__qualname__,
                             (_class_blob(self._cls), args, kwargs))
            check(lib.marin_actor_create(rt, PY_ACTOR.encode(), arg, len(arg), opts, out))
        else:
            key = next(_next_key)
            _ctors[key] = (self._cls, args, kwargs)
            rc = lib.marin_actor_create(rt, cname.encode(), key.to_bytes(8, "little"), 8,
                                        opts, out)
            if rc != 0:
                _ctors.pop(key, None)
                check(rc)
        h = ActorHandle(out[0], self._cls, pickled)
        _class_of_id[h._id] = self._cls
        return h

    def __call__(self, *a, **k):
        raise TypeError("actor class %s cannot be instantiated directly: use "
                        "%s.remote(...)" % (self.__name__, self.__name__))


class ActorHandle:
    """A handle to an actor: handle.method.remote(*args) -> ObjectRef."""

    def __init__(self, ptr, cls=None, pickled=None):
        object.__setattr__(self, "_ptr", ptr)
        object.__setattr__(self, "_id", ffi.string(lib.marin_actor_id(ptr)).decode())
        object.__setattr__(self, "_cls", cls or _class_of_id.get(self._id))
        object.__setattr__(self, "_pickled", _pickled_actors() if pickled is None
                           else pickled)

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
        rc = lib.marin_actor_ready(self._ptr, ms)
        if rc == lib.MARIN_ETASK and self._pickled:
            # the constructor's exception, as a call's: type, traceback
            raise _core._remote_task_error(last_error(), rc)
        check(rc)
        return True

    def __repr__(self):
        return "ActorHandle(%s)" % self._id

    def __reduce__(self):
        # the class by name when importable, so the receiver knows its
        # methods (idempotent ones included); else only the id
        cls = self._cls
        name = _importable_name(cls) if cls is not None else None
        return (_handle_from_id, (self._id,) + (name or ()))


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
        if h._pickled:
            return self._remote_pickled(cls, idem, args, kwargs)
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

    def _remote_pickled(self, cls, idem, args, kwargs):
        what = "%s.%s" % (cls.__name__ if cls is not None else "actor", self._name)
        args, kwargs = _resolved(args, kwargs)
        arg = _dump_call("the arguments of %s" % what, (self._name, args, kwargs))
        out = ffi.new("marin_future_t **")
        check(lib.marin_actor_call(self._handle._ptr,
                                   b"call_idempotent" if idem else b"call", arg, len(arg),
                                   out))
        return ObjectRef(out[0], None, _PickledResult(what))

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


def _handle_from_id(actor_id, module=None, qualname=None):
    """A handle unpickled (in a task): from its id, with its class when this
    process can import it."""
    h = get_actor_by_id(actor_id)
    if h._cls is None and module:
        try:
            object.__setattr__(h, "_cls", _class_by_name(module, qualname))
        except Exception:
            pass
    return h


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


class _Hosted:
    """A pickled actor's instance on its host, with its class and the blob
    that names the class (its checkpoints carry it)."""
    __slots__ = ("obj", "cls", "blob")

    def __init__(self, obj, cls, blob):
        self.obj = obj
        self.cls = cls
        self.blob = blob


def _fail_pickled(ctx, e):
    """Fail with the exception's type, message, traceback and (when small)
    the exception itself, as a pickled task does (within the actor's error
    text, which the backend caps at a few KiB)."""
    text = ("%s: %s" % (type(e).__name__, e))[:2000]
    text += _core._TB_MARK + _core._traceback_text(e)[-3000:]
    try:
        blob = base64.b64encode(pickle.dumps(e)).decode()
        if len(blob) < 2500:
            text += _core._EXC_MARK + blob
    except Exception:
        pass
    return lib.marin_task_fail(ctx, text.encode("utf-8", "replace"))


def _init_pickled(ctx, blob):
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        cls_blob, args, kwargs = pickle.loads(blob)
        cls = pickle.loads(cls_blob)
        obj = cls(*args, **kwargs)
    except WorkerKilled:
        return lib.marin_test_kill_worker(ctx)
    except BaseException as e:  # noqa: B036 - SystemExit too: the constructor failed
        return _fail_pickled(ctx, e)
    finally:
        _tls.ctx = prev
    return _Hosted(obj, cls, cls_blob)


@ffi.def_extern(error=-13)
def marin_py_actor_init(ctx, arg, length, self_out):
    if length > 8 and bytes(ffi.buffer(arg, 4)) == PICKLED:
        hosted = _init_pickled(ctx, bytes(ffi.buffer(arg, length))[4:])
        if isinstance(hosted, int):
            return hosted
        self_out[0] = _keep(hosted)
        return 0
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


def _call_pickled(ctx, hosted, blob):
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        name, args, kwargs = pickle.loads(blob)
        value = _core._awaited(getattr(hosted.obj, name)(*args, **kwargs))
        out = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except WorkerKilled:
        return lib.marin_test_kill_worker(ctx)
    except BaseException as e:  # noqa: B036
        return _fail_pickled(ctx, e)
    finally:
        _tls.ctx = prev
    return lib.marin_task_return(ctx, out, len(out))


@ffi.def_extern(error=-13)
def marin_py_actor_call(ctx, self, arg, length):
    obj = ffi.from_handle(self)
    if isinstance(obj, _Hosted):
        if length <= 4 or bytes(ffi.buffer(arg, 4)) != PICKLED:
            return lib.marin_task_fail(ctx, b"marin: a call to a pickled Python actor "
                                       b"that is not pickled")
        return _call_pickled(ctx, obj, bytes(ffi.buffer(arg, length))[4:])
    key = int.from_bytes(ffi.buffer(arg, length)[:], "little") if length == 8 else -1
    call = _calls.get(key)
    if call is None:
        return lib.marin_task_fail(ctx, b"marin: this actor call is not known in this "
                                   b"process")
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


def _pickler_base():
    try:
        import cloudpickle  # attributes that are lambdas or local functions too
        return cloudpickle.Pickler
    except ImportError:
        return pickle.Pickler


class _ClassPickler:
    """Pickles a pickled actor's instance with its class as a persistent
    reference (the checkpoint carries the class's blob once)."""

    _types = {}

    @classmethod
    def make(cls, buf, actor_cls):
        base = _pickler_base()
        t = cls._types.get(base)
        if t is None:
            def persistent_id(self, obj):
                return "cls" if obj is self._actor_cls else None
            t = type("_ClassPickler", (base,), {"persistent_id": persistent_id})
            cls._types[base] = t
        p = t(buf, protocol=pickle.HIGHEST_PROTOCOL)
        p._actor_cls = actor_cls
        return p


class _ClassUnpickler(pickle.Unpickler):
    def __init__(self, f, actor_cls):
        super().__init__(f)
        self._actor_cls = actor_cls

    def persistent_load(self, pid):
        if pid != "cls":
            raise pickle.UnpicklingError("unknown persistent id %r" % (pid,))
        return self._actor_cls


@ffi.def_extern(error=-13)
def marin_py_actor_save(ctx, self):
    obj = ffi.from_handle(self)
    try:
        buf = io.BytesIO()
        if isinstance(obj, _Hosted):
            buf.write(_CKPT + struct.pack("<I", len(obj.blob)) + obj.blob)
            _ClassPickler.make(buf, obj.cls).dump(obj.obj)
        else:
            _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        data = buf.getvalue()
    except Exception as e:
        return _fail(ctx, e)
    return lib.marin_task_return(ctx, data, len(data))


@ffi.def_extern(error=-13)
def marin_py_actor_restore(ctx, data, length, self_out):
    prev = getattr(_tls, "ctx", None)
    _tls.ctx = ctx
    try:
        raw = bytes(ffi.buffer(data, length))
        if raw[:4] == _CKPT:
            (n,) = struct.unpack("<I", raw[4:8])
            blob = raw[8:8 + n]
            cls = pickle.loads(blob)
            obj = _Hosted(_ClassUnpickler(io.BytesIO(raw[8 + n:]), cls).load(), cls, blob)
        else:
            obj = _Unpickler(io.BytesIO(raw)).load()
    except Exception as e:
        return _fail(ctx, e)
    finally:
        _tls.ctx = prev
    self_out[0] = _keep(obj)
    return 0
