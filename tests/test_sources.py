"""labelranker_fast._sources: where rows come from, each chunk owned before the next is
read."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from labelranker_fast._sources import (
    ArraySource,
    IterableSource,
    MappedSource,
    SlicedSource,
    open_source,
    owned,
    prefetched,
)


class Sliceable:
    def __init__(self, arr):
        self.arr, self.shape, self.dtype = arr, arr.shape, arr.dtype

    def __getitem__(self, key):
        return self.arr[key]


@pytest.fixture
def arrays():
    X = np.arange(40.0).reshape(10, 4)
    return X, np.arange(10) % 3, np.linspace(0.5, 1.5, 10)


def test_each_input_kind_is_recognised(tmp_path, arrays):
    X, y, w = arrays
    np.save(tmp_path / "X.npy", X)
    assert isinstance(open_source(X, y, w), ArraySource)
    assert isinstance(open_source(X.tolist(), y, None), ArraySource)
    assert isinstance(open_source(tmp_path / "X.npy", y, w), MappedSource)
    assert isinstance(open_source(str(tmp_path / "X.npy"), y, None), MappedSource)
    assert isinstance(open_source(np.load(tmp_path / "X.npy", mmap_mode="r"), y, w), MappedSource)
    assert isinstance(open_source(Sliceable(X), y, w), SlicedSource)
    assert isinstance(open_source(iter([(X, y)]), None, None), IterableSource)


def test_recognition_errors(arrays):
    X, y, w = arrays
    with pytest.raises(ValueError, match="y is required"):
        open_source(X, None, None)
    with pytest.raises(ValueError, match="sample_weight cannot be given"):
        open_source(iter([(X, y)]), None, w)
    with pytest.raises(TypeError, match="not an array and not an iterable"):
        open_source(42, None, None)
    with pytest.raises(ValueError, match="y has 9 entries but X has 10 rows"):
        open_source(Sliceable(X), y[:-1], None)
    with pytest.raises(ValueError, match="sample_weight must be 1-D"):
        open_source(Sliceable(X), y, w[:, None])


@pytest.mark.parametrize("source_of", ["array", "sliced", "mapped"])
def test_chunks_cover_every_row_in_order(tmp_path, arrays, source_of):
    X, y, w = arrays
    np.save(tmp_path / "X.npy", X)
    src = {"array": X, "sliced": Sliceable(X), "mapped": tmp_path / "X.npy"}[source_of]
    chunks = list(open_source(src, y, w).chunks(3))
    assert [len(c.X) for c in chunks] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.vstack([np.asarray(c.X) for c in chunks]), X)
    np.testing.assert_array_equal(np.concatenate([np.asarray(c.y) for c in chunks]), y)
    np.testing.assert_array_equal(np.concatenate([np.asarray(c.w) for c in chunks]), w)
    skipped = list(open_source(src, y, w).chunks(3, skip=2))
    np.testing.assert_array_equal(np.asarray(skipped[0].X), X[6:9])


def test_owned_copies_and_keeps_values(arrays):
    X, _, _ = arrays
    view = X[2:5]
    mine = owned(view)
    assert not np.shares_memory(mine, X) and mine.flags.c_contiguous
    np.testing.assert_array_equal(mine, view)
    assert owned(None) is None
    assert owned([1, 2]).tolist() == [1, 2]
    torch = pytest.importorskip("torch")
    t = torch.arange(6.0).reshape(2, 3)
    copy = owned(t)
    t.fill_(-1.0)
    assert copy.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_iterable_chunks_are_owned_before_the_next_is_read():
    buf = np.zeros((2, 2))

    def refilling():
        for k in range(5):
            buf[:] = k
            yield buf, np.array([0, 1])

    seen = [c.X.copy() for c in IterableSource(refilling()).chunks()]
    assert [float(x[0, 0]) for x in seen] == [0, 1, 2, 3, 4]


def test_iterable_items_must_be_pairs_or_triples():
    with pytest.raises(TypeError, match="length 4"):
        list(IterableSource([(1, 2, 3, 4)]).chunks())
    with pytest.raises(TypeError, match="got int"):
        list(IterableSource([5]).chunks())


def test_prefetched_raises_where_the_item_would_be_and_stops_when_closed():
    def failing():
        yield 1
        raise RuntimeError("broken reader")

    it = prefetched(failing())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="broken reader"):
        next(it)

    produced = []

    def endless():
        k = 0
        while True:
            produced.append(k)
            yield k
            k += 1

    it = prefetched(endless())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 5  # the thread stopped, at most depth ahead
    assert not any(t.name == "labelranker-prefetch" and t.is_alive() for t in threading.enumerate())
