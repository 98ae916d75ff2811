"""Accumulation against numpy's X.T @ X (the roofline) and rank_labels against
scikit-learn's LinearDiscriminantAnalysis, on the same 200,000 x 768 float32 array."""

import numpy as np
import pytest

import labelranker_fast as lrf


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_accumulation_vs_numpy_gram(record, imagenet_like, dtype):
    X, y = imagenet_like
    X = X.astype(dtype)
    group = f"accumulate-{dtype}"

    def ours():
        return lrf.ScatterAccumulator(X.shape[1], 100).update(X, y)

    gram = record(group, "numpy X.T @ X", lambda: X.T @ X)
    acc = record(group, "ours", ours)
    # Same work: the accumulated moment is the Gram matrix of the class-centred rows.
    assert acc.n_samples == len(X)
    assert np.isfinite(gram).all()


def test_rank_labels_vs_sklearn_eigen(record, imagenet_like):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = imagenet_like
    group = "rank-end-to-end"

    def sklearn_rank():
        lda = LinearDiscriminantAnalysis(solver="eigen").fit(X, y)
        w = lda.scalings_[:, 0]
        if w[np.argmax(np.abs(w))] < 0:  # the same sign rule
            w = -w
        cent = np.array([X[y == k].mean(0) @ w for k in range(100)])
        return np.argsort(cent, kind="stable")

    def numpy_gram():
        return X.T @ X

    record(group, "numpy X.T @ X", numpy_gram)
    expected = record(group, "sklearn eigen + centroids", sklearn_rank, rounds=1, warmup=0)
    ranking = record(group, "ours", lambda: lrf.rank_labels(X, y))
    np.testing.assert_array_equal(ranking.order, expected)
