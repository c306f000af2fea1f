"""pip install for marin's Python bindings (cffi, API mode).

libmarin must be built first (`make build` builds ../../build). Offline, on
Debian 12 (python3-cffi, python3-dev, python3-setuptools, python3-venv):

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv
    /tmp/venv/bin/pip install --no-build-isolation --no-index ./bindings/python
or
    /usr/bin/python3 -m pip install --no-build-isolation --no-index \
        --target DIR ./bindings/python

The compiled module (_marin_cffi) is made by marin_build.py from the public
headers and linked against libmarin.so with an rpath to its directory.
Where they are, from the environment, else the tree's build/:

    MARIN_INCLUDE_DIRS  dirs holding marin/*.h (os.pathsep-separated); the
                        generated marin/version.h is in the build dir's include/
    MARIN_LIBRARY_DIRS  dirs holding libmarin.so; the first is the rpath
    MARIN_RPATH         the rpath instead (e.g. /usr/local/lib/x86_64-linux-gnu)

See README.md here.
"""
import os
import re
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

# marin_build.py makes its builder (ffibuilder) only when this is set: the
# meson build runs it as a script instead. cffi reads it when setup() runs
# the cffi_modules entry, so it must be in the environment before that.
os.environ["MARIN_CFFI_SETUP"] = "1"


def _version():
    """The project version: meson.build's project(), else a generated
    marin/version.h among MARIN_INCLUDE_DIRS or in build/include."""
    try:
        with open(os.path.join(ROOT, "meson.build"), encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"project\s*\((.*?)\)", text, re.S)
        if m:
            v = re.search(r"\bversion\s*:\s*'([^']+)'", m.group(1))
            if v:
                return v.group(1)
    except OSError:
        pass
    inc = os.environ.get("MARIN_INCLUDE_DIRS")
    dirs = inc.split(os.pathsep) if inc else [os.path.join(ROOT, "build", "include")]
    for d in dirs:
        try:
            with open(os.path.join(d, "marin", "version.h"), encoding="utf-8") as f:
                parts = dict(re.findall(r"#define MARIN_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)",
                                        f.read()))
            if len(parts) == 3:
                return "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])
        except OSError:
            continue
    sys.exit("marin setup.py: cannot find the version (meson.build or marin/version.h)")


def _check_library():
    """Say clearly, before the compiler does, when libmarin is not built."""
    lib = os.environ.get("MARIN_LIBRARY_DIRS")
    dirs = lib.split(os.pathsep) if lib else [os.path.join(ROOT, "build")]
    if not any(os.path.exists(os.path.join(d, "libmarin.so")) for d in dirs):
        sys.stderr.write(
            "marin setup.py: libmarin.so is not in %s: build it first (`make build` "
            "in %s), or set MARIN_LIBRARY_DIRS and MARIN_INCLUDE_DIRS (see "
            "bindings/python/README.md)\n" % (os.pathsep.join(dirs), ROOT))


# Keep setuptools' scratch files out of the package directory: under the
# repository root's build-python/ (ignored by .gitignore's /build*/).
_SCRATCH = os.path.join(ROOT, "build-python")

if __name__ == "__main__":
    _check_library()

setup(
    name="marin",
    version=_version(),
    description="marin: one interface for distributed work (Python bindings over cffi)",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=["marin"],
    package_dir={"": "."},
    # No install_requires: the module needs cffi's _cffi_backend at run time
    # (Debian: python3-cffi-backend, pulled in by python3-cffi, which the
    # build needs anyway), but declaring it makes `pip install --target DIR`
    # try to fetch cffi into DIR, which fails offline.
    cffi_modules=["marin_build.py:ffibuilder"],
    zip_safe=False,
    options={
        # force: always recompile and relink, so a changed MARIN_LIBRARY_DIRS
        # or MARIN_RPATH never leaves a module linked to the previous place
        "build": {"build_base": os.path.join(_SCRATCH, "build"), "force": True},
        "egg_info": {"egg_base": _SCRATCH},
    },
)
