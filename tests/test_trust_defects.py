"""The three defects of issue 11, each seen to fail before its fix.

1. A producer that reuses its buffers must not corrupt the statistics.
2. Concurrent use of one accumulator must never lose rows.
3. A checkpoint of another pass must be refused, saying what differs.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import reference_scatter

N, D, C = 4000, 10, 5


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    y = rng.integers(0, C, N)
    X = rng.standard_normal((C, D))[y] * 3.0 + rng.standard_normal((N, D))
    return X, y


def reusing(X, y, batch, kind="numpy"):
    """Yields views of one buffer per array, refilled in place for every batch: what a
    data loader with preallocated (pinned) buffers does."""
    if kind == "torch":
        import torch

        bx = torch.empty((batch, X.shape[1]), dtype=torch.float64)
        by = torch.empty(batch, dtype=torch.int64)
    else:
        bx = np.empty((batch, X.shape[1]))
        by = np.empty(batch, dtype=np.int64)
    for a in range(0, len(X), batch):
        k = min(batch, len(X) - a)
        bx[:k] = X[a : a + k] if kind == "numpy" else __import__("torch").from_numpy(X[a : a + k])
        by[:k] = y[a : a + k] if kind == "numpy" else __import__("torch").from_numpy(y[a : a + k])
        yield bx[:k], by[:k]


def check_statistics(acc, X, y):
    Sw, _, means = reference_scatter(X, y, C)
    np.testing.assert_array_equal(acc.class_counts, np.bincount(y, minlength=C))
    np.testing.assert_allclose(acc.class_means, means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("batch", [7, 64, 3000])  # gathered, gathered, big enough alone
def test_producer_reusing_its_buffers(data, batch, kind):
    if kind == "torch":
        pytest.importorskip("torch")
    X, y = data
    acc = lrf.ScatterAccumulator(D, C).update(reusing(X, y, batch, kind))
    check_statistics(acc, X, y)
    ranking = lrf.rank_labels(reusing(X, y, batch, kind), num_classes=C)
    assert ranking == lrf.rank_labels(X, y)


class ReusingSliceable:
    """Row slicing into one reused buffer (a reader with a fixed read buffer)."""

    def __init__(self, X):
        self.X, self.shape, self.dtype = X, X.shape, X.dtype
        self.buf = np.empty_like(X)

    def __getitem__(self, key):
        part = self.X[key]
        self.buf[: len(part)] = part
        return self.buf[: len(part)]


def test_sliceable_reusing_its_buffer(data):
    X, y = data
    acc = lrf.ScatterAccumulator(D, C).update(ReusingSliceable(X), y, chunk_size=300)
    check_statistics(acc, X, y)


def test_concurrent_streamed_updates_lose_no_rows(data):
    """Two threads stream into one empty accumulator while a third reads it. The race
    (both see an empty accumulator, both install their part) is narrow, so the trials are
    many and the interpreter switches threads as often as it can."""
    X, y = data[0][:200], data[1][:200]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    lost = []
    try:
        for trial in range(500):
            acc = lrf.ScatterAccumulator(D, C)
            start = threading.Barrier(3)
            stop = threading.Event()

            def writer(acc=acc, start=start):  # this trial's, bound explicitly
                start.wait()
                acc.update(X, y, chunk_size=100)

            def reader(acc=acc, start=start, stop=stop):
                start.wait()
                while not stop.is_set():
                    acc.within_scatter()

            threads = [threading.Thread(target=f) for f in (writer, writer, reader)]
            for t in threads:
                t.start()
            for t in threads[:2]:
                t.join()
            stop.set()
            threads[2].join()
            if acc.n_samples != 2 * len(X):
                lost.append((trial, acc.n_samples))
    finally:
        sys.setswitchinterval(old)
    assert not lost, f"rows lost in {len(lost)} of 500 trials, e.g. {lost[:3]}"
    np.testing.assert_array_equal(acc.class_counts, 2 * np.bincount(y, minlength=C))
    Sw, _, _ = reference_scatter(np.vstack([X, X]), np.concatenate([y, y]), C)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-11, atol=1e-9)


def test_concurrent_merges_do_not_deadlock(data):
    X, y = data
    a = lrf.ScatterAccumulator(D, C).update(X, y)
    b = lrf.ScatterAccumulator(D, C).update(X, y)
    done = []

    def cross(p, q):
        for _ in range(8):
            p.merge(q)
        done.append(1)

    threads = [
        threading.Thread(target=cross, args=(a, b)),
        threading.Thread(target=cross, args=(b, a)),
        threading.Thread(target=cross, args=(a, a)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(done) == 3, "merges deadlocked"
    a.merge(a)  # self-merge doubles
    assert a.n_samples % N == 0


def test_checkpoint_of_another_width_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    ckpt = tmp_path / "pass.ckpt"
    lrf.ScatterAccumulator(4, 3).update(rng.standard_normal((200, 4)), y, checkpoint=ckpt)
    acc = lrf.ScatterAccumulator(5, 3)
    with pytest.raises(ValueError, match="n_features"):
        acc.update(rng.standard_normal((200, 5)), y, checkpoint=ckpt)
    assert acc.n_samples == 0 and acc.n_features == 5
    with pytest.raises(ValueError, match="n_features"):
        lrf.rank_labels(rng.standard_normal((200, 5)), y, checkpoint=ckpt)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_large_batches_reusing_their_buffer(kind):
    """Batches big enough to be passed to the engine without gathering (half the engine
    chunk or more) were used in place while the producer refilled them."""
    if kind == "torch":
        pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    n, batch = 6 * 8192, 8192
    y = rng.integers(0, C, n)
    X = rng.standard_normal((C, D))[y] * 3.0 + rng.standard_normal((n, D))
    acc = lrf.ScatterAccumulator(D, C, n_threads=2).update(reusing(X, y, batch, kind))
    check_statistics(acc, X, y)


def test_a_streamed_update_cannot_join_an_open_pass(data):
    """It used to replace the core the pass was open on: the pass's rows were lost, and
    an abort kept the streamed rows."""
    X, y = data
    acc = lrf.ScatterAccumulator(D, C)
    with pytest.raises(ValueError, match="open streaming_pass"):
        with acc.streaming_pass():
            acc.update(X[:100], y[:100])
            acc.update(iter([(X[100:200], y[100:200])]))
    assert acc.n_samples == 0  # the pass was aborted whole
    with acc.streaming_pass():
        acc.update(X[:100], y[:100])
    acc.update(iter([(X[100:200], y[100:200])]))
    assert acc.n_samples == 200


def test_take_state_of_copies(data):
    """Sharing one engine core between two accumulators shared its pass and thread count
    and bypassed both locks."""
    X, y = data
    a, b = lrf.ScatterAccumulator(D, C, n_threads=1), lrf.ScatterAccumulator(D, C, n_threads=3)
    b.update(X, y)
    a.take_state_of(b)
    assert a.n_threads == 1 and b.n_threads == 3 and a.n_samples == b.n_samples == N
    np.testing.assert_array_equal(a.within_scatter(), b.within_scatter())
    a.update(X, y)
    assert b.n_samples == N and a.n_samples == 2 * N
    try:
        with a.streaming_pass():
            b.update(X[:10], y[:10])
            raise RuntimeError
    except RuntimeError:
        pass
    assert b.n_samples == N + 10 and a.n_samples == 2 * N
