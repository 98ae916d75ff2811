"""Regressions found by the review of the multi-label, folds, ordering and plot work: each
test failed on the code as it was found. References are float64 two-pass computations
of DESIGN.md section 7, or the inputs the test builds."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf
from labelranker_fast import ScatterAccumulator
from labelranker_fast._stability import Stability


def multi_hot(n=400, d=4, C=3, seed=0, offset=5.0):
    rng = np.random.default_rng(seed)
    W = (rng.random((n, C)) < 0.5) * 1.0
    W[W.sum(1) == 0, 0] = 1.0
    X = offset + (W @ rng.normal(size=(C, d)) * 3) / W.sum(1, keepdims=True)
    return X + rng.normal(size=(n, d)), W


def reference(X, W):
    X = X.astype(np.float64)
    N = W.sum(0)
    m = (W.T @ X) / N[:, None]
    Sw = sum(((X - m[k]).T * W[:, k]) @ (X - m[k]) for k in range(W.shape[1]))
    return N, m, Sw


@pytest.mark.parametrize("scale", [1e-300, 1e-50, 1e200])
def test_float32_features_take_label_weights_that_float64_holds(scale):
    # Weights are float64 however X is stored: their scale must not overflow or vanish
    # in float32 arithmetic (it raised "X contains NaN or infinity" for a finite X).
    X, W = multi_hot()
    X = X.astype(np.float32)
    acc = ScatterAccumulator(X.shape[1], W.shape[1]).update(X, W * scale)
    N, m, Sw = reference(X, W * scale)
    np.testing.assert_allclose(acc.class_counts, N, rtol=1e-13)
    np.testing.assert_allclose(acc.class_means, m, rtol=1e-6)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-5, atol=1e-6 * np.abs(Sw).max())


def test_rank_labels_takes_a_label_matrix_as_nested_lists():
    X, W = multi_hot(seed=1)
    assert lrf.rank_labels(X, W.astype(int).tolist()) == lrf.rank_labels(X, W)


def test_a_column_of_labels_is_named_as_such():
    # y[:, None] or df[["label"]]: the message says what it is, not "num_classes >= 2"
    # or "must be numeric".
    X, W = multi_hot(seed=2)
    y = W.argmax(1)
    with pytest.raises(ValueError, match="column vector"):
        lrf.rank_labels(X, y[:, None])
    with pytest.raises(ValueError, match="column vector"):
        lrf.rank_labels(X, np.array(["a", "b", "c"])[y][:, None])
    with pytest.raises(ValueError, match="column vector"):
        ScatterAccumulator(X.shape[1], 3).update(X, np.array(["a", "b", "c"])[y][:, None])


@pytest.mark.parametrize("rows_before", [0, 10])
def test_classes_grown_while_a_label_matrix_update_runs(rows_before):
    # Another thread's grow_classes during update(X, W): the update either ran first (its
    # rows in classes 0-2, the new slots empty) or sees the wider accumulator and refuses
    # W's width; never silently lost slots or rows. (The label matrix used to be built
    # into a private part outside the lock and merged after.)
    import threading

    X, W = multi_hot(seed=3)
    y0 = np.arange(rows_before) % 3
    Xr = np.r_[X[:rows_before], X]
    Wr = np.r_[np.eye(3)[y0], W]
    N, m, Sw = reference(Xr, Wr)
    for _ in range(20):
        acc = ScatterAccumulator(X.shape[1], 3)
        acc.update(X[:rows_before], y0)
        start, errors = threading.Barrier(2), []

        def update(acc=acc, start=start, errors=errors):
            start.wait()
            try:
                acc.update(X, W)
            except ValueError as exc:
                errors.append(exc)

        def grow(acc=acc, start=start):
            start.wait()
            acc.grow_classes(5)

        threads = [threading.Thread(target=update), threading.Thread(target=grow)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert acc.num_classes == 5
        if errors:
            assert "shape" in str(errors[0])
            assert acc.n_samples == rows_before
            continue
        np.testing.assert_allclose(acc.class_counts, np.r_[N, 0, 0], rtol=1e-13)
        np.testing.assert_allclose(acc.class_means[:3], m, rtol=1e-12)
        np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-10)


def test_sample_weights_times_label_weights_that_overflow_say_so():
    X, W = multi_hot(seed=4)
    with pytest.raises(ValueError, match="overflow"):
        ScatterAccumulator(X.shape[1], 3).update(X, W * 1e200, np.full(X.shape[0], 1e200))


def test_a_fold_too_small_to_rank_is_named():
    # Every class has exactly K samples: the full data ranks, each fold has one sample
    # per class. The error said "4 samples" with no word of folds.
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(4), 3)
    X = rng.normal(size=(12, 2)) + y[:, None] * 3
    lrf.rank_labels(X, y)
    with pytest.raises(ValueError, match=r"fold 0 of folds=3"):
        lrf.rank_labels(X, y, folds=3)


def test_plot_draws_fold_intervals_that_exclude_the_full_position():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The full order puts class 0 first; both folds put it last: its interval is [3, 3].
    stability = Stability.of_orders([[1, 2, 3, 0], [2, 1, 3, 0]], 0)
    r = lrf.LabelRanking(
        np.arange(4), [0, 1, 2, 3], [[0.0], [1.0], [2.0], [3.0]], [1.0], stability=stability
    )
    ax = r.plot()
    _, intervals = ax.containers
    spans = [sorted((s[0][1], s[1][1])) for s in intervals.lines[2][0].get_segments()]
    np.testing.assert_array_equal(spans, stability.position_interval[r.order])
    plt.close(ax.figure)


def test_cli_refuses_a_plot_format_before_the_pass_and_writes_nothing(tmp_path, capsys):
    # It ran the whole pass, wrote -o, then failed on the plot's suffix.
    pytest.importorskip("matplotlib")
    from labelranker_fast._cli import main

    rng = np.random.default_rng(6)
    y = np.arange(300) % 3
    np.save(tmp_path / "X.npy", rng.normal(size=(300, 2)) + y[:, None])
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "r.json"
    args = ["rank", tmp_path / "X.npy", tmp_path / "y.npy", "-o", out, "--plot", tmp_path / "p.xyz"]
    assert main([str(a) for a in args]) != 0
    captured = capsys.readouterr()
    assert "--plot" in captured.err and "xyz" in captured.err
    assert "order:" not in captured.out  # refused before ranking
    assert not out.exists()


def test_a_fitted_label_ranker_with_folds_pickles_and_goes_on_in_its_folds():
    # FoldedAccumulator held an RLock: pickle, deepcopy and joblib.dump raised TypeError.
    import copy
    import pickle

    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 301)
    X = rng.normal(size=(301, 4)) + y[:, None]
    est = lrf.LabelRanker(folds=3).fit(X[:200], y[:200])
    for twin in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
        assert twin.ranking_ == est.ranking_
        twin.partial_fit(X[200:], y[200:])
        # The folds go on where they stopped: the same as one fit on all rows.
        whole = lrf.LabelRanker(folds=3).fit(X, y)
        assert twin.ranking_.stability == whole.ranking_.stability
        for a, b in zip(twin._accumulator.folds, whole._accumulator.folds):
            np.testing.assert_array_equal(a.class_counts, b.class_counts)
            np.testing.assert_allclose(a.class_means, b.class_means, rtol=1e-12)


def test_a_rankings_stability_is_as_frozen_as_the_ranking():
    # LabelRanking's arrays are read-only; its stability's were writable, and shared
    # with the caller's: an edit changed ==, JSON and the plot after the fact.
    orders = np.array([[0, 1, 2], [1, 0, 2]])
    stability = Stability(1.0 / 3.0, np.array([[0, 1], [0, 1], [2, 2]]), 0, orders)
    orders[0] = [2, 1, 0]  # the caller's array, changed after construction
    assert stability.fold_orders.tolist() == [[0, 1, 2], [1, 0, 2]]
    r = lrf.rank_labels(*line_data(), folds=3)
    for a in (r.stability.fold_orders, r.stability.position_interval):
        with pytest.raises(ValueError, match="read-only"):
            a[0, 0] = 7


def line_data(C=4, n=400, seed=8):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    return np.outer(np.arange(C), rng.normal(size=3))[y] + rng.normal(size=(n, 3)), y


def test_an_unpickled_stability_stays_frozen():
    import pickle

    r = pickle.loads(pickle.dumps(lrf.rank_labels(*line_data(), folds=3)))
    with pytest.raises(ValueError, match="read-only"):
        r.stability.fold_orders[0, 0] = 7
