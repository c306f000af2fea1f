"""Shared fixtures: a fresh default runtime per test (local backend)."""
import pytest

import marin


@pytest.fixture
def rt():
    """marin initialised on the local backend with 2 cpus; shut down after."""
    marin.shutdown()
    marin.init("local://?resources=cpus=2")
    yield marin
    marin.shutdown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report a failure with the cycle collector off. pytest parses the test's
    source (ast.parse) to show a failure while the test's tasks may still run
    on worker threads; on CPython 3.11 the ast module's recursion-depth counter
    is shared by all threads (CPython gh-106905), and a finalizer run by the
    collector inside that parse lets a worker thread that formats a traceback
    corrupt it: pytest then dies with INTERNALERROR "AST constructor recursion
    depth mismatch" and the rest of the run is lost. With the collector off no
    finalizer runs inside the parse. test_threads_signals.py tests the
    bindings' side of this with the collector on."""
    import gc
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
