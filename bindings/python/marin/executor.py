"""The workflow executor (include/marin/executor.h) from Python.

    ex = marin.Executor("/data/marin")
    raw = ex.step("download", download, config={"url": URL}, version="v1")
    tok = ex.step("tokenize", tokenize, config={"vocab": 32000}, deps=[raw])
    ex.run()

A step function is called as fn(output_path, config): config is the step's
config decoded as it was given (dict/list: canonical JSON; bytes; str).
A task name (str) instead of a function runs that registered task with the
config bytes. Output paths are PREFIX/NAME-HASH8 (docs/executor.md).
"""
import json

from ._native import ffi, lib, check
from . import _core

__all__ = ["Executor", "Step", "STEP_STATES"]

STEP_STATES = {lib.MARIN_STEP_NONE: "NONE", lib.MARIN_STEP_WAITING: "WAITING",
               lib.MARIN_STEP_RUNNING: "RUNNING", lib.MARIN_STEP_SUCCESS: "SUCCESS",
               lib.MARIN_STEP_FAILED: "FAILED"}

_step_tasks = {}  # function -> registered task name


def _encode_config(config):
    if config is None:
        return b"", "none"
    if isinstance(config, (bytes, bytearray, memoryview)):
        return bytes(config), "bytes"
    if isinstance(config, str):
        return config.encode(), "str"
    # canonical JSON: the hash must not depend on dict order or spacing
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode(), "json"


def _decoder(kind):
    if kind == "json":
        return lambda b: json.loads(b.decode())
    if kind == "str":
        return lambda b: b.decode()
    if kind == "none":
        return lambda b: None
    return lambda b: b


def _task_for(fn, kind):
    key = (fn, kind)
    name = _step_tasks.get(key)
    if name:
        return name
    base = "py-step:%s.%s:%s" % (getattr(fn, "__module__", "?"),
                                 getattr(fn, "__qualname__", "fn"), kind)
    name, n = base, 1
    while name in _core._named:
        n += 1
        name = "%s#%d" % (base, n)
    decode = _decoder(kind)
    ctx = _core.get_runtime_context()

    def run(arg):
        out = fn(ctx.get_env("MARIN_OUTPUT_PATH"), decode(arg))
        return out if isinstance(out, (bytes, str)) else None

    _core.register_task(name, run)
    _step_tasks[key] = name
    return name


class Step:
    def __init__(self, ex, ptr):
        self._ex = ex
        self._ptr = ptr

    @property
    def name(self):
        return ffi.string(lib.marin_step_name(self._ptr)).decode()

    @property
    def output_path(self):
        return ffi.string(lib.marin_step_output_path(self._ptr)).decode()

    def status(self):
        """(state name, attempt) from the step's .executor_status."""
        st = ffi.new("int *")
        at = ffi.new("int *")
        check(lib.marin_step_status(self._ptr, st, at))
        return STEP_STATES.get(st[0], str(st[0])), at[0]

    def __repr__(self):
        return "Step(%s -> %s)" % (self.name, self.output_path)


class Executor:
    def __init__(self, prefix=None):
        _core._register_trampoline()
        out = ffi.new("marin_executor_t **")
        check(lib.marin_executor_create(_core._rt(),
                                        prefix.encode() if prefix else ffi.NULL, out))
        self._ptr = ffi.gc(out[0], lib.marin_executor_destroy)
        self._steps = []

    def step(self, name, fn, config=None, version="", deps=(), **task_options):
        data, kind = _encode_config(config)
        task = fn if isinstance(fn, str) else _task_for(fn, kind)
        deps = list(deps)
        for d in deps:
            if not isinstance(d, Step) or d._ex is not self:
                raise ValueError("deps must be steps of this executor")
        darr = ffi.new("marin_step_t *[]", [d._ptr for d in deps]) if deps else ffi.NULL
        opts = _core.TaskOptions(task_options) if task_options else None
        out = ffi.new("marin_step_t **")
        check(lib.marin_executor_add_step(self._ptr, name.encode(), task.encode(), data,
                                          len(data), (version or "").encode(), darr,
                                          len(deps), opts.ptr if opts else ffi.NULL, out))
        s = Step(self, out[0])
        self._steps.append(s)
        return s

    def run(self, force=False, dry_run=False, lease_ttl=None, poll=None, owner=None,
            max_parallel=0):
        p = ffi.new("marin_executor_options_t **")
        check(lib.marin_executor_options_create(p))
        o = ffi.gc(p[0], lib.marin_executor_options_destroy)
        check(lib.marin_executor_options_set_force(o, 1 if force else 0))
        check(lib.marin_executor_options_set_dry_run(o, 1 if dry_run else 0))
        if lease_ttl is not None:
            check(lib.marin_executor_options_set_lease_ttl_ms(o, int(lease_ttl * 1000)))
        if poll is not None:
            check(lib.marin_executor_options_set_poll_ms(o, int(poll * 1000)))
        if owner:
            check(lib.marin_executor_options_set_owner(o, owner.encode()))
        if max_parallel:
            check(lib.marin_executor_options_set_max_parallel(o, int(max_parallel)))
        check(lib.marin_executor_run(self._ptr, o))

    def _text(self, fn):
        n = fn(self._ptr, ffi.NULL, 0)
        if n < 0:
            check(n)
        buf = ffi.new("char[]", n + 1)
        n = fn(self._ptr, buf, n + 1)
        if n < 0:
            check(n)
        return ffi.string(buf).decode()

    def plan(self):
        return self._text(lib.marin_executor_plan)

    def dot(self):
        return self._text(lib.marin_executor_format_dot)

    def mermaid(self):
        return self._text(lib.marin_executor_format_mermaid)
