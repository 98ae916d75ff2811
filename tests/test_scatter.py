"""Accumulated statistics against a float64 two-pass reference."""

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import make_blobs, reference_scatter, rel_err


def accumulate(X, y, C, w=None, chunk=None):
    acc = lrf.ScatterAccumulator(X.shape[1], C)
    chunk = chunk or len(X)
    for s in range(0, len(X), chunk):
        acc.update(X[s : s + chunk], y[s : s + chunk], None if w is None else w[s : s + chunk])
    return acc


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("n, d, C", [(600, 8, 5), (9000, 40, 12), (5000, 130, 3)])
def test_scatter_matches_two_pass(seed, dtype, tol, n, d, C):
    X, y = make_blobs(seed, n=n, d=d, C=C, dtype=dtype)
    acc = accumulate(X, y, C)
    Sw, Sb, means = reference_scatter(X, y, C)
    assert rel_err(acc.within_scatter(), Sw) < tol
    assert rel_err(acc.between_scatter(), Sb) < tol
    np.testing.assert_allclose(acc.class_means, means, rtol=tol, atol=tol * np.abs(means).max())
    assert acc.n_samples == n
    np.testing.assert_array_equal(acc.class_counts, np.bincount(y, minlength=C))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_large_mean_small_spread(seed, dtype, tol):
    # Features with mean 1e4 and within-class standard deviation 1e-2: forming S_w as
    # "second moment minus mean outer product" would lose every digit here.
    rng = np.random.default_rng(seed)
    n, d, C = 20000, 24, 6
    y = rng.integers(0, C, n)
    centers = 1e4 + 0.05 * rng.standard_normal((C, d))
    X = (centers[y] + 1e-2 * rng.standard_normal((n, d))).astype(dtype)
    acc = accumulate(X, y, C, chunk=7000)
    Sw, Sb, _ = reference_scatter(X, y, C)
    assert rel_err(acc.within_scatter(), Sw) < tol
    assert rel_err(acc.between_scatter(), Sb) < tol


def test_float32_many_rows_many_blocks():
    # More rows than one engine block (4096) per class, several classes, float32 products.
    rng = np.random.default_rng(5)
    n, d, C = 60000, 64, 4
    y = rng.integers(0, C, n)
    X = (rng.standard_normal((C, d))[y] * 3 + 5 + rng.standard_normal((n, d))).astype(np.float32)
    acc = accumulate(X, y, C)
    Sw, Sb, _ = reference_scatter(X, y, C)
    assert rel_err(acc.within_scatter(), Sw) < 1e-5
    assert rel_err(acc.between_scatter(), Sb) < 1e-5


def test_weights_equal_repeated_rows(seed):
    X, y = make_blobs(seed, n=400, d=6, C=4)
    w = np.random.default_rng(seed).integers(0, 4, len(X)).astype(float)
    w[:4] = 1  # every class keeps weight
    acc_w = accumulate(X, y, 4, w=w)
    rep = np.repeat(np.arange(len(X)), w.astype(int))
    acc_r = accumulate(X[rep], y[rep], 4)
    assert rel_err(acc_w.within_scatter(), acc_r.within_scatter()) < 1e-12
    assert rel_err(acc_w.between_scatter(), acc_r.between_scatter()) < 1e-12
    Sw, Sb, _ = reference_scatter(X, y, 4, w)
    assert rel_err(acc_w.within_scatter(), Sw) < 1e-10
    assert acc_w.n_samples == len(X)
    np.testing.assert_allclose(acc_w.class_counts, [w[y == k].sum() for k in range(4)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_equals_single_pass(seed, dtype):
    X, y = make_blobs(seed, n=3000, d=10, C=6, dtype=dtype)
    whole = accumulate(X, y, 6)
    parts = [accumulate(X[s : s + 700], y[s : s + 700], 6) for s in range(0, 3000, 700)]
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    # float32 rows are multiplied in float32 within a block, so other block boundaries
    # round differently; float64 merges are exact to rounding.
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert rel_err(merged.within_scatter(), whole.within_scatter()) < tol
    assert rel_err(merged.between_scatter(), whole.between_scatter()) < tol
    assert merged.n_samples == 3000


def test_mixed_precision_updates():
    # float32 rows after float64 ones are centred on the float32-rounded shift and moved
    # back to the exact one; the float32 bar holds for the whole.
    X, y = make_blobs(3, n=2000, d=7, C=3)
    X += 1e3
    acc = lrf.ScatterAccumulator(7, 3)
    acc.update(X[:1000], y[:1000])
    acc.update(X[1000:].astype(np.float32), y[1000:])
    Xref = np.concatenate([X[:1000], X[1000:].astype(np.float32).astype(np.float64)])
    Sw, Sb, _ = reference_scatter(Xref, y, 3)
    assert rel_err(acc.within_scatter(), Sw) < 1e-5
    assert rel_err(acc.between_scatter(), Sb) < 1e-5


def test_self_merge_doubles_counts():
    X, y = make_blobs(4, n=300, d=5, C=3)
    acc = accumulate(X, y, 3)
    Sw = acc.within_scatter()
    acc.merge(acc)
    np.testing.assert_allclose(
        acc.within_scatter(), 2 * Sw, rtol=1e-12, atol=1e-12 * np.abs(Sw).max()
    )
    np.testing.assert_array_equal(acc.class_counts, 2 * np.bincount(y, minlength=3))


def test_thread_count_does_not_change_bits():
    from labelranker_fast import _core

    X, y = make_blobs(6, n=20000, d=33, C=9, dtype=np.float32)
    results = []
    for threads in (1, 2, 3):
        acc = lrf.ScatterAccumulator(33, 9, n_threads=threads)
        acc.update(X, y)
        results.append(acc.get_state())
    for other in results[1:]:
        for key in ("m2", "sums", "counts", "shifts"):
            np.testing.assert_array_equal(results[0][key], other[key])
    assert _core.blas_n_threads() >= 1


def test_state_round_trip_and_pickle(tmp_path):
    import pickle

    X, y = make_blobs(7, n=500, d=6, C=4)
    acc = accumulate(X, y, 4)
    again = pickle.loads(pickle.dumps(acc))
    path = tmp_path / "acc.npz"
    acc.save(path)
    loaded = lrf.ScatterAccumulator.load(path)
    for other in (again, loaded):
        np.testing.assert_array_equal(other.within_scatter(), acc.within_scatter())
        assert other.n_samples == acc.n_samples
    # A restored accumulator keeps accumulating and merging correctly.
    X2, y2 = make_blobs(8, n=500, d=6, C=4)
    loaded.update(X2, y2)
    Sw, _, _ = reference_scatter(np.concatenate([X, X2]), np.concatenate([y, y2]), 4)
    assert rel_err(loaded.within_scatter(), Sw) < 1e-10
