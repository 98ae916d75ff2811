"""Multi-label and soft labels: a label-weight matrix W (n x C) in place of class indices,
checked against a float64 two-pass computation of the formulas of DESIGN.md section 7,
with a large common offset (mean 1e3, spread 1)."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf


def data(n=2400, d=7, C=5, seed=0, offset=1e3, density=0.35, dtype=np.float64):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(C, d)) * 3
    W = (rng.random((n, C)) < density) * rng.uniform(0.2, 2.0, (n, C))
    W[W.sum(1) == 0, rng.integers(0, C)] = 1.0  # no row without a label
    mix = (W @ means) / W.sum(1, keepdims=True)
    X = (offset + mix + rng.normal(size=(n, d))).astype(dtype)
    return X, W


def reference(X, W):
    """N_k, m_k and S_w, S_b of weighted LDA over the (sample, label) pairs, two passes."""
    X = X.astype(np.float64)
    N = W.sum(0)
    m = (W.T @ X) / N[:, None]
    Sw = sum(((X - m[k]).T * W[:, k]) @ (X - m[k]) for k in range(W.shape[1]))
    mu = (N @ m) / N.sum()
    Sb = ((m - mu).T * N) @ (m - mu)
    return N, m, Sw, Sb


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_statistics_equal_the_two_pass_formulas(dtype, rtol):
    X, W = data(dtype=dtype)
    acc = lrf.ScatterAccumulator(X.shape[1], W.shape[1]).update(X, W)
    N, m, Sw, Sb = reference(X, W)
    np.testing.assert_allclose(acc.class_counts, N, rtol=1e-14)
    np.testing.assert_allclose(acc.class_means, m, rtol=1e-12)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=rtol, atol=rtol * np.abs(Sw).max())
    np.testing.assert_allclose(acc.between_scatter(), Sb, rtol=1e-6, atol=1e-8 * np.abs(Sb).max())
    assert acc.n_samples == X.shape[0]


def test_sample_weights_multiply_the_label_weights():
    X, W = data(seed=1)
    w = np.random.default_rng(2).uniform(0, 3, X.shape[0])
    acc = lrf.ScatterAccumulator(X.shape[1], W.shape[1]).update(X, W, w)
    N, m, Sw, _ = reference(X, W * w[:, None])
    np.testing.assert_allclose(acc.class_counts, N, rtol=1e-13)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-10, atol=1e-11 * np.abs(Sw).max())


def test_one_hot_is_exactly_the_labels():
    X, _ = data(seed=3)
    y = np.random.default_rng(4).integers(0, 5, X.shape[0])
    one_hot = np.eye(5)[y]
    a = lrf.ScatterAccumulator(X.shape[1], 5).update(X, one_hot).get_state()
    b = lrf.ScatterAccumulator(X.shape[1], 5).update(X, y).get_state()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert lrf.rank_labels(X, one_hot) == lrf.rank_labels(X, y)


def test_chunks_merges_and_files_agree_with_one_call(tmp_path):
    X, W = data(seed=5)
    one = lrf.ScatterAccumulator(X.shape[1], 5).update(X, W)
    parts = lrf.ScatterAccumulator(X.shape[1], 5)
    for i in range(0, X.shape[0], 700):
        parts.update(X[i : i + 700], W[i : i + 700])
    halves = lrf.ScatterAccumulator(X.shape[1], 5).update(X[:1000], W[:1000])
    halves.merge(lrf.ScatterAccumulator(X.shape[1], 5).update(X[1000:], W[1000:]))
    for acc in (parts, halves):
        np.testing.assert_allclose(acc.within_scatter(), one.within_scatter(), rtol=1e-10)
        np.testing.assert_allclose(acc.class_means, one.class_means, rtol=1e-12)
    chunks = [(X[i : i + 64], W[i : i + 64]) for i in range(0, X.shape[0], 64)]
    streamed = lrf.rank_labels(iter(chunks), num_classes=5)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "W.npy", W)
    from_files = lrf.rank_labels(tmp_path / "X.npy", tmp_path / "W.npy")
    want = one.rank()
    for r in (streamed, from_files, lrf.rank_labels(X, W)):
        np.testing.assert_array_equal(r.order, want.order)
        np.testing.assert_allclose(r.centroids, want.centroids, rtol=1e-8)


def test_dense_soft_labels():
    rng = np.random.default_rng(6)
    X, _ = data(seed=6)
    W = rng.dirichlet(np.ones(5), X.shape[0])  # every entry non-zero
    acc = lrf.ScatterAccumulator(X.shape[1], 5).update(X, W)
    _, m, Sw, _ = reference(X, W)
    np.testing.assert_allclose(acc.class_means, m, rtol=1e-12)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-10, atol=1e-11 * np.abs(Sw).max())


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda W: -W, ValueError, "finite and >= 0"),
        (lambda W: np.where(W > 1, np.nan, W), ValueError, "finite and >= 0"),
        (lambda W: W[:, :4], ValueError, r"shape \(2400, 5\)"),
        (lambda W: W[:, :1], ValueError, "column vector"),
        (lambda W: W.astype(str), TypeError, "numeric"),
    ],
)
def test_bad_label_matrices_raise_and_change_nothing(make, error, match):
    X, W = data()
    acc = lrf.ScatterAccumulator(X.shape[1], 5).update(X[:100], W[:100])
    before = acc.get_state()
    with pytest.raises(error, match=match):
        acc.update(X, make(W))
    after = acc.get_state()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_a_pass_commits_or_drops_its_label_matrix_rows():
    X, W = data(seed=7)
    acc = lrf.ScatterAccumulator(X.shape[1], 5)
    with pytest.raises(RuntimeError):
        with acc.streaming_pass():
            acc.update(X[:500], W[:500])
            raise RuntimeError("stop")
    assert acc.n_samples == 0
    with acc.streaming_pass():
        acc.update(X[:500], W[:500])
        acc.update(X[500:], W[500:])
    want = lrf.ScatterAccumulator(X.shape[1], 5).update(X, W)
    np.testing.assert_allclose(acc.within_scatter(), want.within_scatter(), rtol=1e-10)


def test_combinations_it_does_not_take_are_refused():
    X, W = data(n=300)
    with pytest.raises(ValueError, match="need num_classes"):
        lrf.rank_labels(iter([(X, W)]))
    with pytest.raises(ValueError, match="cannot be combined with checkpoint or folds"):
        lrf.rank_labels(X, W, folds=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_many_classes_read_by_their_non_zeros_give_the_same_statistics(dtype):
    # 300 classes, 1 to 3 labels per row: the sparse path (more than 256 classes).
    rng = np.random.default_rng(8)
    n, d, C = 3000, 5, 300
    W = np.zeros((n, C))
    for j in range(3):
        keep = rng.random(n) < (1.0 if j == 0 else 0.6)
        W[np.flatnonzero(keep), rng.integers(0, C, keep.sum())] += rng.uniform(0.5, 1.5)
    W[:, :3] += 1.0  # every class is seen: the first three classes on every row
    X = (1e3 + rng.normal(size=(C, d))[W.argmax(1)] + rng.normal(size=(n, d))).astype(dtype)
    acc = lrf.ScatterAccumulator(d, C).update(X, W)
    N, m, Sw, _ = reference(X, W)
    present = N > 0
    np.testing.assert_allclose(acc.class_counts, N, rtol=1e-13)
    np.testing.assert_allclose(acc.class_means[present], m[present], rtol=1e-12)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=tol, atol=tol * np.abs(Sw).max())
