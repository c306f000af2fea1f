"""The first things a Ray user does, on the local backend."""
import marin


def test_remote_get(rt):
    @marin.remote
    def add(a, b):
        return a + b

    assert marin.get(add.remote(1, 2)) == 3
    assert marin.get([add.remote(i, i) for i in range(10)]) == [2 * i for i in range(10)]
