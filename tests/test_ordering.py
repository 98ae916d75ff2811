"""Ordering methods: the anchor rule (the engine's, re-derived here) and seriation.

The seriation test data: class means on most of a circle (300 degrees) in a random 2-D
subspace, which no single direction orders correctly and the anchor rule cuts in two.
"""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf
from labelranker_fast._ordering import anchor_order, seriation_order

scipy_hierarchy = pytest.importorskip("scipy.cluster.hierarchy")


def folded_curve(n_classes=30, per_class=60, d=12, radius=6.0, seed=0):
    """Features whose class means lie along an arc: class k at angle 300 k / (C - 1)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    angles = np.deg2rad(300.0 * np.arange(n_classes) / (n_classes - 1))
    means = radius * np.c_[np.cos(angles), np.sin(angles)] @ basis.T + rng.normal(size=d)
    y = np.repeat(np.arange(n_classes), per_class)
    X = means[y] + rng.normal(size=(y.size, d))
    return X, y


def along_the_curve(order) -> bool:
    n = len(order)
    return list(order) in (list(range(n)), list(range(n))[::-1])


def kendall_tau(a, b) -> float:
    from scipy.stats import kendalltau

    pa, pb = np.argsort(a), np.argsort(b)  # positions of each class
    return float(kendalltau(pa, pb).statistic)


def test_seriation_recovers_the_folded_curve_and_the_anchor_rule_does_not():
    X, y = folded_curve()
    for k in (2, 3):
        ser = lrf.rank_labels(X, y, n_components=k, method="seriation")
        assert along_the_curve(ser.order), ser.order
        anchor = lrf.rank_labels(X, y, n_components=k)
        assert not along_the_curve(anchor.order)
        assert abs(kendall_tau(anchor.order, np.arange(30))) < 0.9
    one = lrf.rank_labels(X, y)  # one direction folds the arc onto a line
    assert abs(kendall_tau(one.order, np.arange(30))) < 0.9


def test_seriation_is_oriented_by_the_first_discriminant_centroid():
    X, y = folded_curve(seed=3)
    ser = lrf.rank_labels(X, y, n_components=2, method="seriation")
    first = ser.centroids[:, 0]
    assert first[ser.order[0]] < first[ser.order[-1]]


@pytest.mark.parametrize("method", ["anchor", "seriation"])
def test_relabelling_the_classes_moves_no_class(method):
    X, y = folded_curve(seed=1)
    perm = np.random.default_rng(5).permutation(30)
    base = lrf.rank_labels(X, y, n_components=2, method=method)
    relabelled = lrf.rank_labels(X, perm[y], n_components=2, method=method)
    # The class at each position is the same class under its new label.
    np.testing.assert_array_equal(perm[base.ranked_classes], relabelled.ranked_classes)


def test_the_python_anchor_rule_is_the_engines():
    rng = np.random.default_rng(2)
    for k in (1, 2, 4):
        X = rng.normal(size=(600, 8))
        y = rng.integers(0, 12, 600)
        X += rng.normal(size=(12, 8))[y] * 2
        r = lrf.rank_labels(X, y, n_components=k)
        np.testing.assert_array_equal(anchor_order(r.centroids), r.order)


def test_seriation_of_points_on_a_line_is_the_sorted_order():
    rng = np.random.default_rng(4)
    x = rng.permutation(50).astype(float)
    centroids = np.c_[x, 1e-3 * rng.normal(size=50)]
    np.testing.assert_array_equal(seriation_order(centroids), np.argsort(x))


def test_bad_methods_are_refused_before_the_pass():
    X, y = folded_curve(n_classes=4, per_class=10)
    with pytest.raises(ValueError, match=r"method must be one of \['anchor', 'seriation'\]"):
        lrf.rank_labels(X, y, method="spectral")
    with pytest.raises(TypeError, match="method must be one of"):
        lrf.rank_labels(X, y, method=None)
    acc = lrf.ScatterAccumulator(X.shape[1], 4).update(X, y)
    with pytest.raises(ValueError, match="method must be one of"):
        acc.rank(method="tsp")


def test_seriation_refuses_more_classes_than_it_can_order_in_reasonable_time():
    with pytest.raises(ValueError, match="up to 2048 classes"):
        seriation_order(np.zeros((2049, 2)))
