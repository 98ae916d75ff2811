"""Golden files: an accumulator ``.npz`` (state version 1) and a ranking JSON (format
version 1), written once by tests/data/make_golden.py and committed under tests/data/.

Every later version of labelranker_fast must keep loading these files, unchanged, to the
same values. Never regenerate or edit them to make this test pass: a failure here means a
file written by version 1 no longer loads, which breaks users' saved accumulators and
rankings. (The SHA-256 checks below make a regeneration visible.)

The expected values are recomputed here from the same public data (scikit-learn's bundled
iris and wine) with float64 two-pass formulas and scipy.linalg.eigh, not taken from the
library.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pytest
from scipy.linalg import eigh
from sklearn.datasets import load_iris, load_wine

import labelranker_fast as lrf
from conftest import reference_scatter

DATA = pathlib.Path(__file__).resolve().parent / "data"
ACC_FILE = DATA / "accumulator_v1.npz"
RANKING_FILE = DATA / "ranking_v1.json"
SHA256 = {
    ACC_FILE.name: "ac1e75f5141395fa4d926401125985be0209e186f5055bfc3ea009bda1918dda",
    RANKING_FILE.name: "581023e855ca423cedc598fafb7265691410cc6b9efc6c49b323db57dff037a6",
}


def iris_weighted():
    """The accumulator's input (as in make_golden.py): iris, weights exact in binary."""
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float64), y.astype(np.int64), 0.25 + 0.25 * (np.arange(len(X)) % 7)


def wine_named():
    """The ranking's input (as in make_golden.py): wine with its cultivars' names."""
    X, y = load_wine(return_X_y=True)
    return X.astype(np.float64), np.array(["barolo", "grignolino", "barbera"])[y]


def reference_ranking(X, y, num_classes, n_components):
    """(order, centroids, eigenvalues) with DESIGN.md section 2's conventions: directions
    of S_b/N against S = S_w/N normalised to W^T S W = I, each oriented so that its
    largest-magnitude coefficient is positive; classes by Euclidean distance of their
    centroid to the class with the smallest first centroid (stable)."""
    Sw, Sb, means = reference_scatter(X, y, num_classes)
    N = len(X)
    evals, evecs = eigh(Sb / N, Sw / N)  # ascending, evecs^T (Sw / N) evecs = I
    W = evecs[:, ::-1][:, :n_components]
    W = W * np.sign(W[np.abs(W).argmax(axis=0), np.arange(n_components)])
    counts = np.bincount(y, minlength=num_classes)
    centroids = (means - counts @ means / N) @ W
    anchor = centroids[:, 0].argmin()
    order = np.argsort(np.linalg.norm(centroids - centroids[anchor], axis=1), kind="stable")
    return order, centroids, evals[::-1][:n_components]


def same_state(a, b):
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.mark.parametrize("path", [ACC_FILE, RANKING_FILE], ids=lambda p: p.name)
def test_golden_files_are_the_committed_ones(path):
    assert path.stat().st_size < 100_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[path.name], (
        f"{path.name} changed: golden files must never be regenerated"
    )


def test_accumulator_v1_loads_to_the_reference_statistics(tmp_path):
    X, y, w = iris_weighted()
    acc = lrf.ScatterAccumulator.load(ACC_FILE)
    assert (acc.n_features, acc.num_classes, acc.n_samples) == (4, 3, 150)
    Sw, Sb, means = reference_scatter(X, y, 3, sample_weight=w)
    # weighted counts: sums of weights that are exact in binary, so exact
    np.testing.assert_array_equal(acc.class_counts, np.bincount(y, weights=w, minlength=3))
    np.testing.assert_allclose(acc.class_means, means, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-12, atol=1e-12 * np.abs(Sw).max())
    np.testing.assert_allclose(acc.between_scatter(), Sb, rtol=1e-12, atol=1e-12 * np.abs(Sb).max())
    # The loaded statistics keep working: adding the rows again doubles every statistic.
    twice = lrf.ScatterAccumulator.load(ACC_FILE).update(X, y, sample_weight=w)
    np.testing.assert_allclose(twice.within_scatter(), 2 * Sw, rtol=1e-12)
    np.testing.assert_allclose(twice.class_means, means, rtol=1e-13, atol=1e-13)
    # load -> save -> load keeps the state bit for bit
    acc.save(tmp_path / "again.npz")
    same_state(lrf.ScatterAccumulator.load(tmp_path / "again.npz"), acc)


def test_ranking_v1_loads_to_the_reference_ranking(tmp_path):
    X, labels = wine_named()
    ranking = lrf.LabelRanking.from_json(RANKING_FILE)
    classes = np.unique(labels)
    np.testing.assert_array_equal(ranking.classes, classes)
    assert ranking.classes.dtype.kind == "U"  # string labels stay strings
    order, centroids, eigenvalues = reference_ranking(X, np.searchsorted(classes, labels), 3, 2)
    np.testing.assert_array_equal(ranking.order, order)
    np.testing.assert_array_equal(ranking.ranked_classes, classes[order])
    np.testing.assert_array_equal(ranking.positions[order], np.arange(3))
    np.testing.assert_allclose(ranking.centroids, centroids, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ranking.eigenvalues, eigenvalues, rtol=1e-10)
    assert ranking.n_components == 2 and ranking.shrinkage == 0.0
    np.testing.assert_array_equal(ranking.remap(classes[order]), np.arange(3))
    # load -> save -> load keeps it exactly
    ranking.to_json(tmp_path / "again.json")
    again = lrf.LabelRanking.from_json(tmp_path / "again.json")
    assert again == ranking
    np.testing.assert_array_equal(again.centroids, ranking.centroids)
    np.testing.assert_array_equal(again.eigenvalues, ranking.eigenvalues)
    np.testing.assert_array_equal(again.classes, ranking.classes)
