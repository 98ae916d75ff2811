"""Out-of-core and streamed inputs: every kind gives what the in-memory array gives.

Inputs: np.memmap, .npy paths (str and pathlib), an array-like with row slicing only (as
h5py/zarr datasets are), iterables of (X, y) and (X, y, w) chunks, torch tensors. Chunk
sizes are small so every pass has many chunks.
"""

from __future__ import annotations

import pathlib
import sys
import threading

import numpy as np
import pytest

import labelranker_fast as lrf
from labelranker_fast._sources import prefetched

N, D, C = 3000, 12, 6


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    y = rng.integers(0, C, N)
    centers = rng.standard_normal((C, D)) * 2.0
    X = (centers[y] + rng.standard_normal((N, D))).astype(np.float32)
    w = rng.uniform(0.2, 2.0, N)
    return X, y, w


@pytest.fixture(scope="module")
def reference(data):
    X, y, _ = data
    return lrf.rank_labels(X, y, n_components=2)


@pytest.fixture
def files(tmp_path, data):
    X, y, w = data
    paths = {name: tmp_path / f"{name}.npy" for name in ("X", "y", "w")}
    for name, arr in zip("Xyw", (X, y, w)):
        np.save(paths[name], arr)
    return paths


def assert_same_ranking(got, want):
    np.testing.assert_array_equal(got.order, want.order)
    np.testing.assert_array_equal(got.classes, want.classes)
    # Different chunk boundaries only change rounding (float32 products within a block).
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.eigenvalues, want.eigenvalues, rtol=1e-5)


class Sliceable:
    """Only what h5py/zarr datasets offer: shape, dtype, row slicing. No __array__."""

    def __init__(self, arr):
        self._arr = arr
        self.shape = arr.shape
        self.dtype = arr.dtype
        self.reads = []
        self.threads = set()

    def __getitem__(self, key):
        assert isinstance(key, slice), "the streamer must read row slices"
        self.reads.append((key.start, key.stop))
        self.threads.add(threading.current_thread().name)
        return self._arr[key].copy()


def chunks_of(X, y, w=None, size=257):
    for start in range(0, len(X), size):
        stop = start + size
        yield (
            (X[start:stop], y[start:stop])
            if w is None
            else (X[start:stop], y[start:stop], w[start:stop])
        )


# ------------------------------------------------------------------ every input kind
@pytest.mark.parametrize("as_path", [str, pathlib.Path])
def test_npy_paths(files, reference, as_path):
    got = lrf.rank_labels(as_path(files["X"]), as_path(files["y"]), n_components=2, chunk_size=500)
    assert_same_ranking(got, reference)


def test_memmap(files, data, reference):
    X = np.load(files["X"], mmap_mode="r")
    assert isinstance(X, np.memmap)
    got = lrf.rank_labels(X, data[1], n_components=2, chunk_size=500)
    assert_same_ranking(got, reference)


def test_sliceable_array_like(data, reference):
    X, y, _ = data
    source = Sliceable(X)
    got = lrf.rank_labels(source, y, n_components=2, chunk_size=700)
    assert_same_ranking(got, reference)
    assert source.reads == [(a, min(a + 700, N)) for a in range(0, N, 700)]
    assert source.threads == {"labelranker-prefetch"}  # read beside the computation


def test_iterable_of_chunks(data, reference):
    X, y, _ = data
    got = lrf.rank_labels(chunks_of(X, y), n_components=2)
    assert_same_ranking(got, reference)


def test_iterable_with_string_labels_discovers_sorted_classes(data):
    X, y, _ = data
    names = np.array(["fox", "ant", "owl", "cat", "bee", "elk"])  # not in sorted order
    want = lrf.rank_labels(X, names[y])
    # The first chunk holds only two classes, so the engine grows its class slots.
    order = np.argsort(np.isin(y, [0, 1]) == 0, kind="stable")
    got = lrf.rank_labels(chunks_of(X[order], names[y][order], size=100))
    np.testing.assert_array_equal(got.classes, np.sort(names))
    np.testing.assert_array_equal(got.ranked_classes, want.ranked_classes)
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=1e-5, atol=1e-6)


def test_iterable_with_weights_and_num_classes(data):
    X, y, w = data
    want = lrf.rank_labels(X, y, sample_weight=w)
    got = lrf.rank_labels(chunks_of(X, y, w), num_classes=C)
    assert_same_ranking(got, want)


def test_small_batches_are_gathered_and_may_be_reused_by_the_producer(data, reference):
    X, y, _ = data
    buf_X = np.empty((16, D), dtype=np.float32)
    buf_y = np.empty(16, dtype=np.int64)

    def loader():  # reuses its buffers, as some data loaders do
        for start in range(0, N, 16):
            n = min(16, N - start)
            buf_X[:n] = X[start : start + n]
            buf_y[:n] = y[start : start + n]
            yield buf_X[:n].copy(), buf_y[:n].copy()

    got = lrf.rank_labels(loader(), n_components=2)
    assert_same_ranking(got, reference)


def test_torch_tensors(data, reference):
    torch = pytest.importorskip("torch")
    X, y, _ = data
    got = lrf.rank_labels(torch.from_numpy(X), torch.from_numpy(y), n_components=2)
    assert_same_ranking(got, reference)
    chunks = ((torch.from_numpy(a), torch.from_numpy(b)) for a, b in chunks_of(X, y))
    assert_same_ranking(lrf.rank_labels(chunks, n_components=2), reference)


def test_estimator_fit_streams(files, data, reference):
    est = lrf.LabelRanker(n_components=2).fit(str(files["X"]), str(files["y"]))
    np.testing.assert_array_equal(est.order_, reference.order)
    est2 = lrf.LabelRanker(n_components=2).fit(chunks_of(*data[:2]))
    np.testing.assert_array_equal(est2.order_, reference.order)
    np.testing.assert_allclose(est2.means_, est.means_, rtol=1e-6)


def test_accumulator_update_streams_exactly_like_chunked_updates(files, data):
    X, y, w = data
    streamed = lrf.ScatterAccumulator(D, C).update(
        str(files["X"]), str(files["y"]), str(files["w"]), chunk_size=4096
    )
    direct = lrf.ScatterAccumulator(D, C).update(X, y, w)
    # One chunk covering the same rows: the same engine pass, bit for bit.
    np.testing.assert_array_equal(streamed.within_scatter(), direct.within_scatter())
    np.testing.assert_array_equal(streamed.class_means, direct.class_means)
    # Into an accumulator that already holds rows: merged exactly, up to the rounding of
    # float32 products taken over different blocks of rows.
    half = lrf.ScatterAccumulator(D, C).update(X[:1000], y[:1000], w[:1000])
    half.update(chunks_of(X[1000:], y[1000:], w[1000:]))
    want = direct.within_scatter()
    np.testing.assert_allclose(half.within_scatter(), want, atol=1e-6 * np.abs(want).max())
    assert half.n_samples == N


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_results_identical_for_every_thread_count(files, data, n_threads):
    base = lrf.rank_labels(str(files["X"]), str(files["y"]), n_threads=1, chunk_size=1000)
    got = lrf.rank_labels(str(files["X"]), str(files["y"]), n_threads=n_threads, chunk_size=1000)
    np.testing.assert_array_equal(got.centroids, base.centroids)
    np.testing.assert_array_equal(got.order, base.order)
    est = lrf.LabelRanker(n_threads=n_threads).fit(*data[:2])
    np.testing.assert_array_equal(
        est.scalings_, lrf.LabelRanker(n_threads=1).fit(*data[:2]).scalings_
    )


# ------------------------------------------------------------------ memory behaviour
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_mapped_pages_are_released_after_streaming(tmp_path):
    rows, d = 40_000, 64  # 10 MiB file
    rng = np.random.default_rng(0)
    path = tmp_path / "big.npy"
    np.save(path, rng.standard_normal((rows, d)).astype(np.float32))
    y = rng.integers(0, 3, rows)
    X = np.load(path, mmap_mode="r")
    lrf.rank_labels(X, y, chunk_size=4096)
    resident = _mapped_rss_kib(str(path))
    assert resident is not None
    assert resident <= 4096 * d * 4 / 1024 + 64, f"{resident} KiB of the file still mapped"
    # An in-memory pass over the same mapping would leave it all resident: the check bites.
    np.asarray(X).sum()
    assert _mapped_rss_kib(str(path)) > 9000


def _mapped_rss_kib(filename):
    total, inside = 0, False
    found = False
    with open("/proc/self/smaps") as f:
        for line in f:
            if not line[0].isupper() or ":" not in line.split()[0]:  # a mapping header
                inside = line.rstrip().endswith(filename)
                found = found or inside
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total if found else None


def test_copy_on_write_memmap_keeps_the_callers_changes(files, data):
    X = np.load(files["X"], mmap_mode="c")
    X[:, 0] += 100.0  # private changes, not in the file
    got = lrf.ScatterAccumulator(D, C).update(X, data[1], chunk_size=512)
    assert np.all(X[:, 0] >= 90.0), "the caller's changes were dropped"
    want = lrf.ScatterAccumulator(D, C).update(np.array(X), data[1])
    np.testing.assert_allclose(got.class_means, want.class_means, rtol=1e-6)


# ------------------------------------------------------------------ errors
def test_errors_in_a_stream_leave_the_accumulator_unchanged(data):
    X, y, _ = data
    acc = lrf.ScatterAccumulator(D, C).update(X[:100], y[:100])
    before = acc.get_state()

    def bad():
        yield X[:500], y[:500]
        yield X[500:600, :5], y[500:600]  # wrong width

    with pytest.raises(ValueError, match="features"):
        acc.update(bad())

    def raises():
        yield X[:500], y[:500]
        raise KeyError("loader broke")

    with pytest.raises(KeyError, match="loader broke"):
        acc.update(raises())
    with pytest.raises(TypeError, match=r"\(X, y\)"):
        acc.update(iter([X[:10]]))
    after = acc.get_state()
    for key in ("counts", "sums", "m2", "n_rows"):
        np.testing.assert_array_equal(after[key], before[key])
    assert not acc._core.pass_open


def test_bad_inputs_name_the_argument(files, tmp_path, data):
    X, y, w = data
    with pytest.raises(ValueError, match="y is required"):
        lrf.rank_labels(X)
    with pytest.raises(FileNotFoundError, match="no such file"):
        lrf.rank_labels(tmp_path / "missing.npy", y)
    np.savez(tmp_path / "a.npz", X=X)
    with pytest.raises(ValueError, match="npz"):
        lrf.rank_labels(tmp_path / "a.npz", y)
    with pytest.raises(ValueError, match="sample_weight"):
        lrf.rank_labels(chunks_of(X, y), sample_weight=w)
    with pytest.raises(ValueError, match="y has 10 entries"):
        lrf.rank_labels(str(files["X"]), y[:10])
    with pytest.raises(ValueError, match="no rows"):
        lrf.rank_labels(iter([]), num_classes=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        lrf.rank_labels(chunks_of(X, np.zeros(N, dtype=int)))
    with pytest.raises(TypeError, match="cannot be compared"):
        lrf.rank_labels(iter([(X[:10], np.arange(10)), (X[10:20], np.array(["a"] * 10))]))


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetched(endless())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    threads = [t for t in threading.enumerate() if t.name == "labelranker-prefetch"]
    for t in threads:
        t.join(timeout=2.0)
    assert not any(t.is_alive() for t in threads)
    assert len(produced) <= 3 + 2  # at most one queued and one in hand


def test_progress_bar_reports_rows(files, capsys):
    lrf.rank_labels(str(files["X"]), str(files["y"]), progress=True, chunk_size=1000)
    err = capsys.readouterr().err
    assert "rows" in err and "3.00k" in err
    lrf.rank_labels(str(files["X"]), str(files["y"]))
    assert capsys.readouterr().err == ""
