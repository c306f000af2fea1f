"""The compiled cffi module and the error classes built on marin's codes.

Every marin call returns 0 or a negative MARIN_E* code; check() turns a code
into the matching exception, with marin_last_error()'s sentence as message.
"""
import concurrent.futures

try:
    from _marin_cffi import ffi, lib
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "marin: the compiled module _marin_cffi is missing or cannot be loaded (built "
        "against another libmarin?): build it with `make build` "
        "(it lands in build/bindings/python, add that to PYTHONPATH) or install the "
        "package with pip (see bindings/python/README.md): %s" % e) from e

__all__ = ["ffi", "lib", "MarinError", "check", "error_for", "last_error"]


def last_error():
    return ffi.string(lib.marin_last_error()).decode("utf-8", "replace")


class MarinError(Exception):
    """A marin call failed. `code` is the MARIN_E* value, `message` the
    sentence marin_last_error() gave (what, where, why)."""

    code = None

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __reduce__(self):
        return (type(self), (self.message, self.code))


class InvalidArgumentError(MarinError, ValueError):
    code = lib.MARIN_EINVAL


class OutOfMemoryError(MarinError, MemoryError):
    code = lib.MARIN_ENOMEM


class BusyError(MarinError):
    """A lease is held by another owner."""
    code = lib.MARIN_EBUSY


class StateError(MarinError, RuntimeError):
    code = lib.MARIN_ESTATE


class TaskCancelledError(MarinError, concurrent.futures.CancelledError):
    code = lib.MARIN_ECANCELED


class GetTimeoutError(MarinError, TimeoutError):
    """marin.get/marin.wait ran out of time; the work goes on."""
    code = lib.MARIN_ETIMEDOUT


class NoBackendError(MarinError, ValueError):
    code = lib.MARIN_ENOBACKEND


class UnavailableError(MarinError, ConnectionError):
    code = lib.MARIN_EUNAVAILABLE


class NotFoundError(MarinError, LookupError):
    code = lib.MARIN_ENOTFOUND


class ExistsError(MarinError, ValueError):
    code = lib.MARIN_EEXIST


class ConflictError(MarinError):
    """A compare-and-swap or fenced write lost."""
    code = lib.MARIN_ECONFLICT


class InfeasibleError(MarinError, ValueError):
    """No capacity can ever fit the request."""
    code = lib.MARIN_EINFEASIBLE


class WorkerDiedError(MarinError, ChildProcessError):
    """The worker (or an actor's host) died and the retries are spent."""
    code = lib.MARIN_EWORKER


class PreemptedError(MarinError):
    code = lib.MARIN_EPREEMPTED


class TaskTimeoutError(MarinError, TimeoutError):
    """The task ran past its own timeout."""
    code = lib.MARIN_ETASKTIMEOUT


class ProtocolError(MarinError):
    code = lib.MARIN_EPROTO


class AuthError(MarinError, PermissionError):
    code = lib.MARIN_EAUTH


class UnsupportedError(MarinError, NotImplementedError):
    code = lib.MARIN_EUNSUPPORTED


class TooBigError(MarinError, ValueError):
    code = lib.MARIN_ETOOBIG


class TaskError(MarinError):
    """A task (or actor method) failed with an application error.

    `remote_type` is the exception's type name where it ran, `remote_message`
    its message, `traceback_text` the traceback there; `cause` the exception
    object itself when it ran in this process (else None). Raised by
    marin.get as an instance of both TaskError and, where it can be, the
    original exception's class, so `except ValueError` still works."""

    code = lib.MARIN_ETASK

    def __init__(self, message, code=None, remote_type=None, remote_message=None,
                 traceback_text="", cause=None):
        super().__init__(message, code)
        self.remote_type = remote_type
        self.remote_message = remote_message if remote_message is not None else message
        self.traceback_text = traceback_text
        self.cause = cause

    def __reduce__(self):
        return (TaskError, (self.message, self.code, self.remote_type,
                            self.remote_message, self.traceback_text, None))

    def __str__(self):
        if self.traceback_text:
            return "%s\n\nRemote traceback:\n%s" % (self.message, self.traceback_text.rstrip())
        return self.message

    def as_instanceof_cause(self):
        """This error as an instance of a subclass of both TaskError and the
        cause's class (as Ray's RayTaskError does), or itself."""
        if isinstance(self.cause, TaskError):
            return self.cause  # it failed on an upstream error: that error, as is
        cls = type(self.cause) if self.cause is not None else None
        if cls is None or not issubclass(cls, Exception):
            return self
        try:
            name = "TaskError(%s)" % cls.__name__
            derived = type(name, (TaskError, cls), {
                "__init__": lambda s, *a, **k: None,
                "__str__": TaskError.__str__,
                "__reduce__": TaskError.__reduce__,
            })
            e = derived.__new__(derived)
            e.__dict__.update(self.__dict__)
            e.args = (str(self),)
            return e
        except TypeError:  # the cause's class cannot be subclassed that way
            return self


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgumentError, OutOfMemoryError, BusyError, StateError, TaskCancelledError,
    GetTimeoutError, NoBackendError, UnavailableError, NotFoundError, ExistsError,
    ConflictError, InfeasibleError, TaskError, WorkerDiedError, PreemptedError,
    TaskTimeoutError, ProtocolError, AuthError, UnsupportedError, TooBigError)}


def error_for(code, message=None):
    """The exception for MARIN_E* @code (message: marin_last_error())."""
    if message is None:
        message = last_error() or ffi.string(lib.marin_strerror(code)).decode()
    cls = _BY_CODE.get(code, MarinError)
    e = cls(message, code)
    return e


def check(rc):
    """Raise the matching exception when @rc is not 0; return @rc."""
    if rc != 0:
        raise error_for(rc)
    return rc
