"""cffi (API mode) builder for marin's Python bindings.

The cdef is made mechanically from the public headers (include/marin/*.h):
preprocessor lines, extern "C" braces and the MARIN_API/MARIN_DEPRECATED
macros are dropped; integer #defines stay, other #defines become `...`
(their value is read from the compiled header). Nothing but the public
headers is used.

Run by meson (a custom_target) into the build tree:
    python3 marin_build.py --include DIR [--include DIR] --libdir DIR --out DIR
and by setup.py (cffi_modules) for `pip install`.
"""
import argparse
import os
import re
import sys

import cffi

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_INCLUDE = os.path.normpath(os.path.join(HERE, "..", "..", "include"))
MODULE = "_marin_cffi"

# Order matters for cffi: types before their use.
HEADERS = ["common.h", "version.h", "error.h", "resources.h", "runtime.h",
           "task.h", "future.h", "map.h", "actor.h", "kv.h", "executor.h",
           "worker.h", "experimental.h"]

# Python-side helpers compiled into the module (C, not public API): none of
# them is needed by users; they keep hot paths out of Python.
EXTRA_SOURCE = r"""
#define MARIN_EXPERIMENTAL 1
#include <marin/marin.h>

/* Submit and take a second reference (for the bindings' call table) in one
 * C call: every cffi call hands the GIL over and back, which costs more
 * than the submit itself. */
static int marin_py_submit(marin_runtime_t *rt, const char *task, const void *arg,
                           size_t len, const marin_task_options_t *opts,
                           marin_future_t *const *deps, size_t ndeps,
                           marin_future_t **out)
{
    int rc = ndeps ? marin_submit_after(rt, task, arg, len, opts, deps, ndeps, out)
                   : marin_submit(rt, task, arg, len, opts, out);
    if (rc == 0)
        marin_future_retain(*out);
    return rc;
}

static int marin_py_call_actor(marin_actor_t *a, const char *method, const void *arg,
                               size_t len, marin_future_t **out)
{
    int rc = marin_actor_call(a, method, arg, len, out);
    if (rc == 0)
        marin_future_retain(*out);
    return rc;
}
"""

EXTRA_CDEF = r"""
int marin_py_submit(marin_runtime_t *rt, const char *task, const void *arg, size_t len,
                    const marin_task_options_t *opts, marin_future_t *const *deps,
                    size_t ndeps, marin_future_t **out);
int marin_py_call_actor(marin_actor_t *a, const char *method, const void *arg, size_t len,
                        marin_future_t **out);
extern "Python" int marin_py_task(marin_task_ctx_t *ctx, const void *arg, size_t len,
                                  void *userdata);
extern "Python" int marin_py_actor_init(marin_task_ctx_t *ctx, const void *arg, size_t len,
                                        void **self);
extern "Python" void marin_py_actor_fini(void *self);
extern "Python" int marin_py_actor_call(marin_task_ctx_t *ctx, void *self, const void *arg,
                                        size_t len);
extern "Python" int marin_py_actor_save(marin_task_ctx_t *ctx, void *self);
extern "Python" int marin_py_actor_restore(marin_task_ctx_t *ctx, const void *data,
                                           size_t len, void **self);
extern "Python" void marin_py_log(int level, const char *msg, void *userdata);
"""

_INT_DEFINE = re.compile(r"^#define\s+(MARIN_[A-Z0-9_]+)\s+(-?\d+)\s*$")
_OTHER_DEFINE = re.compile(r"^#define\s+(MARIN_[A-Z0-9_]+)\s+\S")
_SKIP_DEFINES = {"MARIN_API", "MARIN_VERSION_STRING"}


def header_cdef(text):
    """The declarations of one header, as cffi's cdef accepts them."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        # join continued preprocessor lines
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        stripped = line.strip()
        if stripped.startswith("#"):
            m = _INT_DEFINE.match(stripped)
            if m and m.group(1) not in _SKIP_DEFINES:
                out.append("#define %s %s" % (m.group(1), m.group(2)))
                continue
            m = _OTHER_DEFINE.match(stripped)
            if (m and m.group(1) not in _SKIP_DEFINES and "(" not in m.group(1)
                    and not re.match(r"^#define\s+\w+\(", stripped)
                    and '"' not in stripped):
                out.append("#define %s ..." % m.group(1))
            continue
        if stripped in ('extern "C" {', "}") and 'extern "C"' in stripped:
            continue
        out.append(line)
    src = "\n".join(out)
    # drop extern "C" braces left by the __cplusplus guards
    src = src.replace('extern "C" {', "")
    src = re.sub(r"\bMARIN_API\s+", "", src)
    src = re.sub(r"\bMARIN_DEPRECATED\([^)]*\)\s*", "", src)
    # comments
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    # the closing brace of extern "C" is a lone "}" at column 0
    src = re.sub(r"^}\s*$", "", src, flags=re.M)
    return src


def build_cdef(include_dirs):
    parts = []
    for name in HEADERS:
        for d in include_dirs:
            path = os.path.join(d, "marin", name)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    parts.append(header_cdef(f.read()))
                break
        else:
            raise SystemExit("marin_build: cannot find marin/%s in %s" % (name, include_dirs))
    return "\n".join(parts) + EXTRA_CDEF


def make_builder(include_dirs, library_dirs, rpath=None):
    ffi = cffi.FFI()
    ffi.cdef(build_cdef(include_dirs))
    extra_link = []
    if rpath:
        extra_link.append("-Wl,-rpath," + rpath)
    ffi.set_source(MODULE, EXTRA_SOURCE, include_dirs=include_dirs,
                   library_dirs=library_dirs, libraries=["marin"],
                   extra_link_args=extra_link)
    return ffi


def _default_builder():
    """For setup.py: headers and library from the environment or the tree."""
    inc = os.environ.get("MARIN_INCLUDE_DIRS")
    lib = os.environ.get("MARIN_LIBRARY_DIRS")
    build = os.path.normpath(os.path.join(HERE, "..", "..", "build"))
    include_dirs = inc.split(os.pathsep) if inc else [SOURCE_INCLUDE,
                                                      os.path.join(build, "include")]
    library_dirs = lib.split(os.pathsep) if lib else [build]
    rpath = os.environ.get("MARIN_RPATH", library_dirs[0])
    return make_builder(include_dirs, library_dirs, rpath)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--include", action="append", required=True)
    ap.add_argument("--libdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stamp")
    a = ap.parse_args()
    libdir = os.path.abspath(a.libdir)
    ffi = make_builder([os.path.abspath(d) for d in a.include], [libdir], rpath=libdir)
    os.makedirs(a.out, exist_ok=True)
    tmp = os.path.join(os.path.abspath(a.out), "cffi-tmp")
    path = ffi.compile(tmpdir=tmp, verbose=False)
    final = os.path.join(os.path.abspath(a.out), os.path.basename(path))
    os.replace(path, final)
    if a.stamp:
        with open(a.stamp, "w") as f:
            f.write(final + "\n")
    sys.exit(0)
else:
    ffibuilder = _default_builder() if os.environ.get("MARIN_CFFI_SETUP") else None
