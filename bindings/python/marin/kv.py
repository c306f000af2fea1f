"""KV store and leases with fencing tokens (include/marin/kv.h).

Values are bytes (str is encoded as UTF-8). On local they live in memory,
or in files shared by the processes of one machine with
marin.init("local://?state=DIR").
"""
import contextlib

from ._native import ffi, lib, check
from ._core import _rt

__all__ = ["put", "get", "cas", "delete", "acquire", "renew", "release", "put_fenced",
           "lease"]


def _b(v, what="value"):
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError("%s must be bytes or str, not %s" % (what, type(v).__name__))


def put(key, value):
    v = _b(value)
    check(lib.marin_kv_put(_rt(), key.encode(), v, len(v)))


def get(key, default=KeyError):
    """The value of @key; NotFoundError (a LookupError) when missing, unless
    @default is given."""
    out = ffi.new("void **")
    n = ffi.new("size_t *")
    rc = lib.marin_kv_get(_rt(), key.encode(), out, n)
    if rc == lib.MARIN_ENOTFOUND and default is not KeyError:
        return default
    check(rc)
    try:
        return bytes(ffi.buffer(out[0], n[0]))
    finally:
        lib.marin_free(out[0])


def cas(key, expect, value):
    """Store @value if @key holds @expect (None: if @key does not exist);
    ConflictError otherwise."""
    v = _b(value)
    if expect is None:
        check(lib.marin_kv_cas(_rt(), key.encode(), ffi.NULL, 0, v, len(v)))
    else:
        e = _b(expect, "expect")
        check(lib.marin_kv_cas(_rt(), key.encode(), e, len(e), v, len(v)))


def delete(key):
    check(lib.marin_kv_delete(_rt(), key.encode()))


def acquire(key, owner, ttl):
    """Take lease @key for @owner for @ttl seconds; the fencing token.
    BusyError while another owner holds it."""
    tok = ffi.new("uint64_t *")
    check(lib.marin_lease_acquire(_rt(), key.encode(), owner.encode(),
                                  int(ttl * 1000), tok))
    return tok[0]


def renew(key, owner, ttl):
    check(lib.marin_lease_renew(_rt(), key.encode(), owner.encode(), int(ttl * 1000)))


def release(key, owner):
    check(lib.marin_lease_release(_rt(), key.encode(), owner.encode()))


def put_fenced(key, value, lease_key, token):
    """put, refused (ConflictError) when @token is not the current token of
    the unexpired lease @lease_key."""
    v = _b(value)
    check(lib.marin_kv_put_fenced(_rt(), key.encode(), v, len(v), lease_key.encode(),
                                  int(token)))


@contextlib.contextmanager
def lease(key, owner, ttl):
    """with marin.kv.lease("step", "driver-1", 30) as token: ..."""
    token = acquire(key, owner, ttl)
    try:
        yield token
    finally:
        rc = lib.marin_lease_release(_rt(), key.encode(), owner.encode())
        if rc not in (0, lib.MARIN_EBUSY):  # lost meanwhile: nothing to give back
            check(rc)
