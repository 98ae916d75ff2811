"""Many classes (issue 16): the workers' block tables hold only a block's classes, the
state's C x d tables wait for the first statistics, a first pass's tables become the
state's and later ones are added in place. Checked against a float64 two-pass
computation, across thread counts, passes, merges and failed passes."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf


def reference(X, y, C):
    X = X.astype(np.float64)
    N = np.bincount(y, minlength=C).astype(float)
    means = np.zeros((C, X.shape[1]))
    np.add.at(means, y, X)
    means /= np.maximum(N, 1)[:, None]
    Z = X - means[y]
    return N, means, Z.T @ Z


def data(n=20000, d=6, C=3000, seed=0, offset=1e3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    X = (offset + rng.normal(size=(C, d))[y] * 3 + rng.normal(size=(n, d))).astype(dtype)
    return X, y


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_thousands_of_classes_match_the_float64_reference(dtype, rtol):
    X, y = data(dtype=dtype)  # 5 blocks of 4096 rows, each naming ~2200 of 3000 classes
    acc = lrf.ScatterAccumulator(X.shape[1], 3000).update(X, y)
    N, m, Sw = reference(X, y, 3000)
    np.testing.assert_array_equal(acc.class_counts, N)
    seen = N > 0
    np.testing.assert_allclose(
        acc.class_means[seen], m[seen], rtol=1e-12 if dtype == np.float64 else 1e-7
    )
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=rtol, atol=rtol * np.abs(Sw).max())


def test_thread_counts_give_identical_statistics_at_many_classes():
    X, y = data(n=30000, C=5000, seed=1)
    states = [
        lrf.ScatterAccumulator(6, 5000, n_threads=t).update(X, y).get_state() for t in (1, 2, 3)
    ]
    for s in states[1:]:
        assert all(np.array_equal(states[0][k], s[k]) for k in s)


def test_passes_merges_and_an_empty_accumulator_agree():
    X, y = data(n=12000, C=4000, seed=2, dtype=np.float64)
    N, m, Sw = reference(X, y, 4000)
    two = lrf.ScatterAccumulator(6, 4000).update(X[:5000], y[:5000]).update(X[5000:], y[5000:])
    a = lrf.ScatterAccumulator(6, 4000).update(X[:7000], y[:7000])
    b = lrf.ScatterAccumulator(6, 4000).update(X[7000:], y[7000:])
    merged = lrf.ScatterAccumulator(6, 4000)
    merged.merge(a)
    merged.merge(lrf.ScatterAccumulator(6, 4000))  # an accumulator without tables
    merged.merge(b)
    for acc in (two, merged):
        np.testing.assert_array_equal(acc.class_counts, N)
        np.testing.assert_allclose(
            acc.within_scatter(), Sw, rtol=1e-10, atol=1e-10 * np.abs(Sw).max()
        )
    empty = lrf.ScatterAccumulator(6, 4000).get_state()  # reads as zeros before any rows
    assert (
        empty["shifts"].shape == (4000, 6) and not empty["shifts"].any() and not empty["sums"].any()
    )


def test_a_failed_first_pass_leaves_nothing_for_the_next_to_adopt():
    # The failed pass set shifts (one of them NaN) in the workspace; the next pass names
    # other classes only, and its tables become the state's: no row of the failed pass
    # may survive in them.
    X, y = data(n=6000, C=50, seed=3, dtype=np.float64)
    acc = lrf.ScatterAccumulator(6, 50)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        acc.update(bad, y)
    keep = y < 25
    acc.update(X[keep], y[keep])
    state = acc.get_state()
    assert all(np.isfinite(v).all() for v in state.values() if isinstance(v, np.ndarray))
    assert not state["shifts"][25:].any() and not state["sums"][25:].any()
    want = lrf.ScatterAccumulator(6, 50).update(X[keep], y[keep]).get_state()
    assert all(np.array_equal(state[k], want[k]) for k in want)
    lrf.ScatterAccumulator.from_state(state)  # a valid state


def test_a_merge_whose_moment_would_overflow_is_refused_and_changes_nothing():
    # Class 0 around +1e154 in one accumulator and -1e154 in the other: each moment is
    # small, but re-expressing one around the other's shift adds n * (2e154)^2 / 2 terms
    # (past float64's range). The moment is now updated in place: the check comes first.
    a = lrf.ScatterAccumulator(2, 3).update(np.full((4, 2), 1e154), np.zeros(4, dtype=int))
    a.update(np.ones((3, 2)), np.ones(3, dtype=int))
    b = lrf.ScatterAccumulator(2, 3).update(np.full((4, 2), -1e154), np.zeros(4, dtype=int))
    before = a.get_state()
    with pytest.raises(ValueError, match="overflow"):
        a.merge(b)
    after = a.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
