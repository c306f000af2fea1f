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
