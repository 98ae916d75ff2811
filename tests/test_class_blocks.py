"""Single-label rows are taken class by class (issue 16): a call's rows are grouped by
class and cut into blocks of 4096 in that order; a class inside one block has its sums
written by the worker that centres it, a class spanning blocks gets one partial sum per
block, added in block order. Checked against a float64 computation of the documented
statistics (the shift rule included), across thread counts, weights, passes and label
matrices with one class per row."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf
from labelranker_fast import _core

BLOCK = 4096


def mixed(n=30000, d=5, seed=0, dtype=np.float64):
    """Three classes of thousands of rows (each spans several blocks), hundreds of small
    ones, some of one row, interleaved at random; features with a large offset."""
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 3, n)
    small = rng.integers(3, 600, n)
    y = np.where(rng.random(n) < 0.7, big, small)
    X = (1e3 + 2.0 * rng.normal(size=(600, d))[y] + rng.normal(size=(n, d))).astype(dtype)
    return X, y


def shifts_by_rule(X, y, C):
    """The documented shift of a class new to an accumulator: the mean of its first
    kShiftRows = 32 rows in the call, rounded to the input precision."""
    s = np.zeros((C, X.shape[1]))
    for k in np.unique(y):
        rows = np.flatnonzero(y == k)[:32]
        s[k] = X[rows].astype(np.float64).mean(axis=0)
        # numpy's mean is pairwise; the engine adds in row order: equal to a few ulps
    return s.astype(X.dtype).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_statistics_match_the_float64_formulas(dtype):
    X, y = mixed(dtype=dtype)
    w = np.random.default_rng(1).uniform(0.0, 3.0, len(y))
    C = 600
    state = lrf.ScatterAccumulator(X.shape[1], C).update(X, y, w).get_state()
    X64 = X.astype(np.float64)
    seen = np.bincount(y, minlength=C) > 0
    # shifts: the rule, to the ulps numpy's pairwise mean differs by
    want_shifts = shifts_by_rule(X, y, C)
    tol = 4 * np.finfo(dtype).eps * 1e3
    np.testing.assert_allclose(state["shifts"][seen], want_shifts[seen], rtol=0, atol=tol)
    assert not state["shifts"][~seen].any() and not state["sums"][~seen].any()
    # counts, sums around the state's own shifts, and the moment
    s = state["shifts"]
    np.testing.assert_allclose(state["counts"], np.bincount(y, w, C), rtol=1e-13)
    Z = X64 - s[y]
    if dtype == np.float32:  # the engine takes x - s in float32 (exact near s: Sterbenz)
        Z = (X - s[y].astype(np.float32)).astype(np.float64)
    sums = np.zeros_like(s)
    np.add.at(sums, y, w[:, None] * Z)
    np.testing.assert_allclose(state["sums"], sums, rtol=1e-12, atol=1e-12 * np.abs(sums).max())
    m2 = (w[:, None] * Z).T @ Z
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(state["m2"], m2, rtol=rtol, atol=rtol * np.abs(m2).max())


def test_thread_counts_give_identical_statistics_with_classes_spanning_blocks():
    X, y = mixed(n=40000, seed=2, dtype=np.float32)
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    states = [
        lrf.ScatterAccumulator(X.shape[1], 600, n_threads=t).update(X, y, w).get_state()
        for t in (1, 2, 3, 4)
    ]
    for s in states[1:]:
        for key in s:
            np.testing.assert_array_equal(states[0][key], s[key], err_msg=key)


def test_a_pass_continues_the_sums_of_classes_it_has_seen():
    """Calls of one pass continue each class's sums (small and spanning classes alike):
    the pass equals the float64 formulas around its shifts, each class's shift being the
    rule's for the first call it appears in."""
    X, y = mixed(n=20000, seed=4)
    acc = _core.Accumulator(X.shape[1], 600)
    acc.begin_pass()
    calls = [(0, 3000), (3000, 12000), (12000, 20000)]
    for a, b in calls:
        acc.update(X[a:b], y[a:b])
    acc.commit_pass()
    got = acc.get_state()
    want_shifts = np.zeros_like(got["shifts"])
    for a, b in reversed(calls):  # the earliest call that names a class sets its shift
        rule = shifts_by_rule(X[a:b], y[a:b], 600)
        named = np.bincount(y[a:b], minlength=600) > 0
        want_shifts[named] = rule[named]
    np.testing.assert_allclose(got["shifts"], want_shifts, rtol=0, atol=1e-12 * 1e3)
    np.testing.assert_array_equal(got["counts"], np.bincount(y, minlength=600))
    Z = X - got["shifts"][y]
    sums = np.zeros_like(got["shifts"])
    np.add.at(sums, y, Z)
    np.testing.assert_allclose(got["sums"], sums, rtol=1e-12, atol=1e-12 * np.abs(sums).max())
    np.testing.assert_allclose(got["m2"], Z.T @ Z, rtol=1e-12, atol=1e-9)


def test_one_class_per_row_label_weights_take_the_single_label_path_exactly():
    X, y = mixed(n=12000, seed=5, dtype=np.float32)
    v = np.random.default_rng(6).uniform(0.0, 2.0, len(y))
    W = np.zeros((len(y), 600))
    W[np.arange(len(y)), y] = v
    a = lrf.ScatterAccumulator(X.shape[1], 600).update(X, W).get_state()
    b = lrf.ScatterAccumulator(X.shape[1], 600).update(X, y, v).get_state()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("spanning", [True, False])
def test_weights_whose_class_total_overflows_are_refused_and_change_nothing(spanning):
    # identical rows: every centred value is 0, so only a class's weight total overflows,
    # that of class 0 (4101 rows, two blocks) or of class 1 (5 rows, inside one block)
    X = np.ones((BLOCK + 10, 3))
    y = np.zeros(len(X), dtype=np.int64)
    y[:5] = 1
    w = np.where(y == 0, 1e305 if spanning else 1.0, 1.0 if spanning else 1e308)
    acc = lrf.ScatterAccumulator(3, 2).update(X[:5], y[:5])
    before = acc.get_state()
    with pytest.raises(ValueError, match="overflow"):
        acc.update(X, y, w)
    after = acc.get_state()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_updates_that_reuse_the_buffers_leave_no_stale_sums():
    """The pass's C x d tables are not zeroed between passes: every row a pass reads was
    written in it. Four updates on one accumulator (the later ones reuse the tables)
    against the float64 two-pass statistics."""
    X, y = mixed(n=32000, seed=7)
    acc = lrf.ScatterAccumulator(X.shape[1], 600)
    for a in range(0, 32000, 8000):
        acc.update(X[a : a + 8000], y[a : a + 8000])
    N = np.bincount(y, minlength=600).astype(float)
    means = np.zeros((600, X.shape[1]))
    np.add.at(means, y, X)
    seen = N > 0
    means[seen] /= N[seen, None]
    Z = X - means[y]
    np.testing.assert_array_equal(acc.class_counts, N)
    np.testing.assert_allclose(acc.class_means[seen], means[seen], rtol=1e-13)
    Sw = Z.T @ Z
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=1e-11, atol=1e-11 * np.abs(Sw).max())
