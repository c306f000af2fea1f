"""ray.init keywords, async functions and methods."""
import asyncio

import pytest

import marin


@pytest.fixture
def clean():
    marin.shutdown()
    yield
    marin.shutdown()


def test_init_num_cpus_sizes_the_local_runtime(clean):
    marin.init(num_cpus=3, resources={"TPU": 2}, logging_level="INFO")

    @marin.remote(num_cpus=3)
    def three():
        return "fits"

    assert marin.get(three.remote()) == "fits"
    with pytest.raises(marin.InfeasibleError) as info:
        three.options(num_cpus=4).remote()
    assert "three" in str(info.value)  # the function, not the trampoline


def test_init_ray_address_is_refused_clearly(clean):
    with pytest.raises(marin.UnsupportedError, match="backend URI"):
        marin.init(address="ray://head:10001")


def test_init_unknown_keyword(clean):
    with pytest.raises(TypeError, match="no_such_option"):
        marin.init(no_such_option=1)


def test_async_functions_and_methods_run_to_completion(clean):
    marin.init("local://?resources=cpus=2")

    @marin.remote
    async def slow_double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    @marin.remote
    class Acc:
        def __init__(self):
            self.total = 0

        async def add(self, x):
            await asyncio.sleep(0)
            self.total += x
            return self.total

    assert marin.get(slow_double.remote(21)) == 42
    a = Acc.remote()
    assert marin.get([a.add.remote(i) for i in range(1, 5)]) == [1, 3, 6, 10]
