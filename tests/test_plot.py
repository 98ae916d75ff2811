"""ranking.plot: the artists it draws carry the ranking's numbers (names, centroids, the
±1 band, fold intervals, the order's path), checked against the ranking itself."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def line_data(C=8, n=1600, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = np.outer(np.arange(C), rng.normal(size=d))[y] + rng.normal(size=(n, d))
    return X, y


NAMES = [f"class {c}" for c in "abcdefgh"]


def test_one_component_draws_names_centroids_band_and_fold_intervals():
    X, y = line_data()
    r = lrf.rank_labels(X, y, folds=4).with_names(NAMES)
    ax = r.plot()
    texts = [t.get_text() for t in ax.texts]
    assert texts == list(r.ranked_names)
    (points,) = [ln for ln in ax.lines if ln.get_marker() == "o"]
    np.testing.assert_allclose(points.get_xdata(), r.centroids[r.order, 0])
    np.testing.assert_array_equal(points.get_ydata(), np.arange(8))
    band, intervals = ax.containers  # errorbar containers: the band, then the folds
    band_segments = band.lines[2][0].get_segments()
    widths = [seg[1][0] - seg[0][0] for seg in band_segments]
    np.testing.assert_allclose(widths, 2.0)  # ±1 within-class s.d.
    spans = [(seg[0][1], seg[1][1]) for seg in intervals.lines[2][0].get_segments()]
    want = r.stability.position_interval[r.order]
    np.testing.assert_allclose(sorted(map(sorted, spans)), sorted(map(sorted, want.tolist())))
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # position 0 on top
    plt.close(ax.figure)


def test_two_components_draw_the_path_in_order_and_an_axes_can_be_given():
    X, y = line_data(seed=1)
    r = lrf.rank_labels(X, y, n_components=2)
    fig, ax = plt.subplots()
    assert r.plot(ax=ax) is ax
    (path,) = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
    np.testing.assert_allclose(np.c_[path.get_xdata(), path.get_ydata()], r.centroids[r.order])
    assert [t.get_text() for t in ax.texts] == [str(c) for c in r.ranked_classes]
    plt.close(fig)


def test_many_classes_leave_out_the_names():
    X, y = line_data(C=8)
    ax = lrf.rank_labels(X, y).plot(max_names=5)
    assert len(ax.texts) == 0 and len(ax.containers) == 1  # no names; no folds: the band only
    plt.close(ax.figure)
