"""LabelRanker follows scikit-learn's estimator conventions."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import labelranker_fast as lrf
from conftest import make_blobs


def test_params_and_clone():
    est = lrf.LabelRanker(shrinkage="oas", n_components=2)
    assert est.get_params() == {"shrinkage": "oas", "n_components": 2, "n_threads": None}
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    est.set_params(n_components=1)
    assert est.n_components == 1
    assert not hasattr(twin, "ranking_")


def test_fit_sets_attributes_consistent_with_rank_labels(seed):
    X, y = make_blobs(seed, n=900, d=7, C=5)
    labels = np.array(list("vwxyz"))[y]
    est = lrf.LabelRanker(n_components=2).fit(X, labels)
    ranking = lrf.rank_labels(X, labels, n_components=2)
    assert est.ranking_ == ranking
    np.testing.assert_array_equal(est.order_, ranking.order)
    np.testing.assert_array_equal(est.classes_, list("vwxyz"))
    assert est.scalings_.shape == (7, 2)
    assert est.n_features_in_ == 7
    np.testing.assert_allclose(est.xbar_, X.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        est.means_, [X[y == k].mean(0) for k in range(5)], rtol=1e-10, atol=1e-12
    )


def test_transform_matches_sklearn_up_to_sign_and_offset(seed):
    X, y = make_blobs(seed, n=600, d=6, C=4)
    est = lrf.LabelRanker(n_components=2)
    Z = est.fit_transform(X, y)
    sk = LinearDiscriminantAnalysis(solver="eigen").fit(X, y)
    Zs = X @ sk.scalings_[:, :2]  # scikit-learn's eigen solver does not centre
    Zs -= Zs.mean(0)
    signs = np.sign(np.sum(Z * Zs, axis=0))
    np.testing.assert_allclose(Z, Zs * signs, rtol=1e-6, atol=1e-8)
    # The class centroids of the transform are the ranking's centroids.
    np.testing.assert_allclose(
        [Z[y == k].mean(0) for k in range(4)], est.ranking_.centroids, rtol=1e-8, atol=1e-10
    )


def test_partial_fit_equals_fit(seed):
    X, y = make_blobs(seed, n=1200, d=5, C=4)
    full = lrf.LabelRanker().fit(X, y)
    est = lrf.LabelRanker()
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X[:10], y[:10])
    for s in range(0, 1200, 250):
        est.partial_fit(X[s : s + 250], y[s : s + 250], classes=np.arange(4))
    np.testing.assert_array_equal(est.order_, full.order_)
    np.testing.assert_allclose(est.scalings_, full.scalings_, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="not in classes"):
        est.partial_fit(X[:5], np.full(5, 9))


def test_partial_fit_before_all_classes_is_not_fitted():
    X, y = make_blobs(0, n=300, d=4, C=3)
    est = lrf.LabelRanker().partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    with pytest.raises(NotFittedError):
        est.transform(X)
    est.partial_fit(X[y == 2], y[y == 2])
    assert est.transform(X).shape == (300, 1)


def test_in_a_pipeline():
    X, y = make_blobs(1, n=800, d=10, C=4)
    pipe = make_pipeline(lrf.LabelRanker(n_components=3), LogisticRegression())
    pipe.fit(X[:600], y[:600])
    assert pipe.score(X[600:], y[600:]) > 0.8


def test_bad_parameters_raise_at_fit():
    X, y = make_blobs(0, n=100, d=3, C=3)
    with pytest.raises(ValueError, match="shrinkage"):
        lrf.LabelRanker(shrinkage=3).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        lrf.LabelRanker(n_components=5).fit(X, y)
    with pytest.raises(NotFittedError):
        lrf.LabelRanker().transform(X)
