"""Adversarial review of the class-by-class single-label path (commit 136cf76): rows
grouped by class, blocks cut from that order, classes inside a block written by the
worker, classes spanning blocks added as per-block carries, pass sums not zeroed.

Every test checks against an independent reference (a float64 two-pass computation of
weighted LDA's pairs) or an exact property (thread-count invariance, exact scaling by
powers of four, an undone call equal to one never made)."""

from __future__ import annotations

import functools
import signal
import threading
import time

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import run_in_threads
from labelranker_fast import _core

BLOCK = _core.BLOCK_ROWS  # 4096


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
        and np.array_equal(np.asarray(a[k]), np.asarray(b[k]))
        for k in a
    )


def pairs_reference(X, rows, cls, w, C):
    """Weighted LDA of (row, class, weight) pairs, two passes in float64."""
    X = np.asarray(X, dtype=np.float64)
    keep = w > 0
    rows, cls, w = rows[keep], cls[keep], w[keep]
    N = np.bincount(cls, w, C)
    S = np.zeros((C, X.shape[1]))
    np.add.at(S, cls, w[:, None] * X[rows])
    seen = N > 0
    M = np.zeros((C, X.shape[1]))
    M[seen] = S[seen] / N[seen, None]
    R = np.zeros_like(M)  # second pass: the mean of the residuals
    np.add.at(R, cls, w[:, None] * (X[rows] - M[cls]))
    M[seen] += R[seen] / N[seen, None]
    Z = X[rows] - M[cls]
    return N, M, (w[:, None] * Z).T @ Z


def _value(v):
    return v() if callable(v) else v


def assert_matches(acc, X, rows, cls, w, C, rtol):
    """acc (a ScatterAccumulator or a _core.Accumulator) against pairs_reference."""
    N, M, Sw = pairs_reference(X, rows, cls, w, C)
    np.testing.assert_allclose(_value(acc.class_counts), N, rtol=1e-13, atol=0)
    seen = N > 0
    np.testing.assert_allclose(_value(acc.class_means)[seen], M[seen], rtol=1e-12, atol=0)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=0, atol=rtol * np.abs(Sw).max())


def data(n, C, d=3, seed=0, big=(0, 1), offset=1e4, spread=1e-2, dtype=np.float64):
    """A few classes of thousands of rows (spanning blocks) among many small ones,
    interleaved; a large feature offset with a small within-class spread."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.8, rng.choice(big, n), rng.integers(0, C, n))
    X = offset + rng.normal(size=(C, d))[y] + spread * rng.normal(size=(n, d))
    return X.astype(dtype), y.astype(np.int64)


# ------------------------------------------------------------------ interrupts


class _Stop(Exception):
    pass


def _raise_stop(*_):
    raise _Stop()


def _interrupted(call, delay):
    """Runs call() with SIGALRM (a handler that raises, as Ctrl-C's does) due after
    `delay` seconds; returns whether the handler's exception came out of the try."""
    old = signal.signal(signal.SIGALRM, _raise_stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, delay)
        try:
            call()
            signal.setitimer(signal.ITIMER_REAL, 0)
            return False
        except _Stop:
            return True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@functools.lru_cache(maxsize=2)
def _long_single_label_rows(d):
    """float32 single-label rows whose update (one thread) takes over 0.1 s, well over
    the 20 ms poll interval: 4 million rows of 2 features, or 120,000 of 256 (for which
    a block's rows take more than one sub-block, so the old code polled too)."""
    rng = np.random.default_rng(11)
    n = 4_000_000 if d <= 4 else 120_000
    y = rng.integers(0, 20, n).astype(np.int64)
    X = np.tile(rng.standard_normal((1000, d), dtype=np.float32), (n // 1000, 1))
    X += y[:, None].astype(np.float32)
    return X, y


def _seconds(call):
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
@pytest.mark.parametrize("mode", ["own", "pass"])
@pytest.mark.parametrize("d", [2, 256])
def test_a_signal_during_a_single_label_update_undoes_it(mode, d):
    """Defect (fixed): with few features (d <= 32 for float64, <= 64 for float32) all of
    a block's rows fit one sub-block, so center_class_block never polled for signals:
    Ctrl-C during a long update was noticed only after the engine returned, and
    KeyboardInterrupt came out of an update that had been applied in full (inside a pass
    the call stayed in it; a retry counts the rows twice). An interrupted update must
    leave the accumulator as it was (own pass) or undo that call (caller's pass)."""
    X, y = _long_single_label_rows(d)
    Xs, ys = X[:3000].copy(), y[:3000].copy()
    Xt, yt = X[-500:].copy(), y[-500:].copy()

    def fresh():
        acc = _core.Accumulator(d, 20)
        acc.n_threads = 1
        return acc

    seconds = _seconds(lambda: fresh().update(X, y, None))
    assert seconds > 0.06, seconds  # long enough for the signal to land mid-update
    acc = fresh()
    if mode == "own":
        acc.update(Xs, ys, None)
        before = acc.get_state()
        assert _interrupted(lambda: acc.update(X, y, None), 0.4 * seconds)
        assert same_state(acc.get_state(), before)
    else:
        acc.begin_pass()
        acc.update(Xs, ys, None)
        assert _interrupted(lambda: acc.update(X, y, None), 0.4 * seconds)
        assert acc.pass_open
        acc.update(Xt, yt, None)
        acc.commit_pass()
        want = fresh()
        want.begin_pass()
        want.update(Xs, ys, None)
        want.update(Xt, yt, None)
        want.commit_pass()
        assert same_state(acc.get_state(), want.get_state())


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_an_interrupted_call_of_a_mixed_pass_is_undone_exactly():
    """The undo saves the touched classes' rows up front: classes spanning blocks that the
    pass had seen (with label-weight corrections in the saved layout), small continued
    classes and classes new to the call. The pass with the interrupted call equals the
    pass without it, bit for bit, on two worker threads."""
    d, C = 256, 20
    rng = np.random.default_rng(3)
    X, y0 = _long_single_label_rows(d)
    y = np.where(y0 < 10, y0 % 2, y0).astype(np.int64)  # classes 0, 1 big; 10..19 smaller
    w = rng.uniform(0, 2, len(y))
    Xa, ya = X[:5000].copy(), np.where(y[:5000] >= 10, y[:5000] % 5, y[:5000])
    n_l = 3000
    cols = np.stack([y[:n_l], (y[:n_l] + 7) % C], 1).ravel().astype(np.int64)
    vals = rng.uniform(0.1, 1.0, 2 * n_l)
    indptr = np.arange(0, 2 * n_l + 1, 2, dtype=np.int64)
    Xl = X[:n_l].copy()

    def start():
        acc = _core.Accumulator(d, C)
        acc.n_threads = 2
        acc.update(X[:100], y[:100], None)  # committed statistics before the pass
        acc.begin_pass()
        acc.update(Xa, ya, None)
        acc.update_labels(Xl, indptr, cols, vals)
        return acc

    probe = start()
    seconds = _seconds(lambda: probe.update(X, y, w))
    assert seconds > 0.04, seconds
    acc = start()
    assert _interrupted(lambda: acc.update(X, y, w), 0.5 * seconds)
    acc.update(Xa[:700], ya[:700], None)
    acc.commit_pass()
    want = start()
    want.update(Xa[:700], ya[:700], None)
    want.commit_pass()
    assert same_state(acc.get_state(), want.get_state())


# ------------------------------------------------------------------ passes and buffers


def test_a_pass_mixing_label_weights_and_class_indices_matches_the_pairs_reference():
    """y calls, then rows with two weighted classes each, then weighted y calls, in one
    pass: the spanning classes are continued from earlier calls (and from label-weight
    rows), classes first named by label-weight rows are continued by y calls. Every
    thread count gives the same bits, and the float64 reference within 1e-10."""
    C, d = 40, 3
    X, y = data(20000, C, d, seed=1)
    rng = np.random.default_rng(2)
    rows2 = np.arange(5000, 9000)
    cols = np.stack([y[rows2], (y[rows2] + 1) % C], 1).ravel().astype(np.int64)
    vals = np.stack([rng.uniform(0.2, 1, 4000), rng.uniform(0.2, 1, 4000)], 1).ravel()
    indptr = np.arange(0, 8001, 2, dtype=np.int64)
    w3 = rng.uniform(0, 2, 11000)
    states = []
    for t in (1, 2, 3, 4):
        acc = _core.Accumulator(d, C)
        acc.n_threads = t
        acc.begin_pass()
        acc.update(X[:5000], y[:5000], None)
        acc.update_labels(np.ascontiguousarray(X[rows2]), indptr, cols, vals)
        acc.update(X[9000:], y[9000:], w3)
        acc.commit_pass()
        states.append(acc.get_state())
    for s in states[1:]:
        assert same_state(states[0], s)
    rows = np.concatenate([np.arange(5000), np.repeat(rows2, 2), np.arange(9000, 20000)])
    cls = np.concatenate([y[:5000], cols, y[9000:]])
    w = np.concatenate([np.ones(5000), vals, w3])
    acc = _core.Accumulator.from_state(states[0])
    assert_matches(acc, X, rows, cls, w, C, rtol=1e-10)


def test_reused_buffers_after_adopt_abort_absorb_release_and_merge_leave_no_stale_rows():
    """The pass's C x d tables are not zeroed: a first commit gives them to the state
    (adopt_pass), an aborted pass leaves rows written, a later pass reuses them (absorb),
    release_buffers drops them. The classes of each pass differ, so a stale row read
    anywhere would show against the reference."""
    C, d = 40, 3
    X, y = data(30000, C, d, seed=9, big=(3, 4))
    acc = _core.Accumulator(d, C)
    acc.n_threads = 2
    first = y[:300] < 20
    acc.update(np.ascontiguousarray(X[:300][first]), y[:300][first], None)  # adopt_pass
    acc.begin_pass()
    acc.update(X[300:9000], y[300:9000], None)  # writes rows of classes 20.. and then
    acc.abort_pass()  # drops them
    acc.begin_pass()
    acc.update(X[300:400], y[300:400], None)
    acc.commit_pass()  # absorb
    acc.update(X[400:10000], y[400:10000], np.ones(9600))
    acc.release_buffers()
    acc.update(X[10000:20000], y[10000:20000], None)
    other = _core.Accumulator(d, C)
    other.update(X[20000:], y[20000:], None)
    acc.merge(other)
    rows = np.concatenate([np.flatnonzero(first), np.arange(300, 30000)])
    assert_matches(acc, X, rows, y[rows], np.ones(len(rows)), C, rtol=1e-10)


@pytest.mark.parametrize("n", [1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 1])
@pytest.mark.parametrize("one_class", [True, False])
def test_block_boundaries_and_one_class_calls(n, one_class):
    """A class of exactly 4096 rows is inside one block, one of 4097 spans two (the second
    with one row); calls of one row; a call of one class only. Thread counts 1..4 give the
    same bits, and the reference within 1e-10."""
    C, d = 12, 3
    X, y = data(n, C, d, seed=n)
    if one_class:
        y[:] = 5
    states = []
    for t in (1, 2, 3, 4):
        acc = lrf.ScatterAccumulator(d, C, n_threads=t)
        acc.update(X[:1], y[:1])  # the class of row 0 has a shift before the call
        acc.update(X, y)
        states.append(acc.get_state())
    for s in states[1:]:
        assert same_state(states[0], s)
    rows = np.concatenate([[0], np.arange(n)])
    assert_matches(acc, X, rows, y[rows], np.ones(len(rows)), C, rtol=1e-10)


def test_zero_weights_on_spanning_and_small_classes():
    """A spanning class whose weights are all zero, a small class of zero weight and a
    whole call of zero weight: zero counts, and the rest as the reference."""
    C, d = 20, 3
    X, y = data(10000, C, d, seed=4)
    w = np.random.default_rng(5).uniform(0.5, 2, len(y))
    w[(y == 0) | (y == 7)] = 0.0
    acc = lrf.ScatterAccumulator(d, C, n_threads=3).update(X, y, w)
    acc.update(X[:5000], y[:5000], np.zeros(5000))
    assert acc.class_counts[0] == 0 and acc.class_counts[7] == 0
    assert acc.n_samples == 15000
    assert_matches(acc, X, np.arange(len(y)), y, w, C, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weights_scaled_by_a_power_of_four_scale_the_statistics_exactly(dtype):
    """The block weight exponent is now computed per block of the class-grouped order:
    multiplying every weight by 4^k (2^-600 .. 2^600, about 1e-180 .. 1e180) must multiply
    the counts, sums and moment by exactly 4^k (sqrt(w) scales by 2^k exactly, and the
    block's scale by the same power of two), for a class spanning blocks and small ones."""
    C, d = 30, 3
    X, y = data(20000, C, d, seed=6, offset=10.0, spread=1.0, dtype=dtype)
    w = np.random.default_rng(7).uniform(0.25, 3.0, len(y))
    base = lrf.ScatterAccumulator(d, C, n_threads=2).update(X, y, w).get_state()
    for e in (-600, -200, -40, 40, 200, 600):
        got = lrf.ScatterAccumulator(d, C, n_threads=2).update(X, y, w * 2.0**e).get_state()
        for key in ("counts", "sums", "m2"):
            np.testing.assert_array_equal(got[key], np.ldexp(base[key], e), err_msg=f"{key} {e}")
        np.testing.assert_array_equal(got["shifts"], base["shifts"])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("offset, spread", [(1e3, 1.0), (1e4, 1e-2)])
def test_accuracy_against_the_two_pass_reference_at_a_large_offset(dtype, rtol, offset, spread):
    """README, Numerics: S_w within 1e-10 (float64) / 1e-5 (float32) of a float64
    two-pass reference for a mean of 1e4 and a spread of 1e-2, with spanning classes
    continued over several calls of a pass and weights."""
    C, d = 50, 4
    X, y = data(30000, C, d, seed=8, offset=offset, spread=spread, dtype=dtype)
    w = np.random.default_rng(9).uniform(0.0, 2.0, len(y))
    acc = lrf.ScatterAccumulator(d, C, n_threads=3)
    with acc.streaming_pass():
        for a in range(0, len(y), 7000):
            acc.update(X[a : a + 7000], y[a : a + 7000], w[a : a + 7000])
    assert_matches(acc, X, np.arange(len(y)), y, w, C, rtol=rtol)


# ------------------------------------------------------------------ failures


def test_overflow_of_a_class_total_continued_across_calls_drops_the_pass():
    """A class total that overflows only when a call continues it: a spanning class
    (carries added to the pass's sums) and a small one (its sums row continued by the
    worker). Either raises ValueError and the streaming pass leaves the accumulator as it
    was before the pass."""
    d, C = 3, 4
    X = np.ones((BLOCK + 10, d))
    for spanning in (True, False):
        y = np.zeros(len(X), dtype=np.int64)
        y[:5] = 1
        k = 0 if spanning else 1
        w = np.where(y == k, 1e308 / (BLOCK + 5 if spanning else 5) * 0.75, 1.0)
        acc = lrf.ScatterAccumulator(d, C, n_threads=2).update(X[:20], y[:20] + 2)
        before = acc.get_state()
        with pytest.raises(ValueError, match="overflow"):
            with acc.streaming_pass():
                acc.update(X, y, w)  # total 0.75e308: fine
                acc.update(X, y, w)  # total 1.5e308: fine
                acc.update(X, y, w)  # total 2.25e308: overflows
        assert same_state(acc.get_state(), before)
        acc.update(X, y, w)  # the accumulator still works
        np.testing.assert_allclose(acc.class_counts[k], w[y == k].sum(), rtol=1e-12)


@pytest.mark.parametrize("where", ["spanning", "small"])
@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_nan_in_a_class_block_raises_and_changes_nothing(where, weight):
    C, d = 20, 3
    X, y = data(9000, C, d, seed=10)
    k = 0 if where == "spanning" else 17
    i = np.flatnonzero(y == k)[-1]
    X[i, 1] = np.nan
    w = np.ones(len(y))
    w[i] = weight
    acc = lrf.ScatterAccumulator(d, C, n_threads=3).update(X[:100], y[:100])
    before = acc.get_state()
    with pytest.raises(ValueError, match="NaN"):
        acc.update(X, y, w)
    assert same_state(acc.get_state(), before)


@pytest.mark.parametrize("threads, after, fail", [(2, 0, 1), (4, 1, 2), (4, 0, 3)])
def test_thread_start_failures_with_spanning_and_many_small_classes(threads, after, fail):
    C, d = 300, 3
    X, y = data(6 * BLOCK + 77, C, d, seed=12, dtype=np.float32)
    w = np.random.default_rng(13).uniform(0, 2, len(y))
    ref = lrf.ScatterAccumulator(d, C, n_threads=1).update(X, y, w).get_state()
    acc = lrf.ScatterAccumulator(d, C, n_threads=threads)
    _core._fail_thread_starts(fail, after)
    try:
        acc.update(X, y, w)
    finally:
        pending = _core._fail_thread_starts(0)
    assert pending == fail - 1
    assert same_state(acc.get_state(), ref)


# ------------------------------------------------------------------ routes to the path


def test_update_rows_with_repeated_unsorted_indices_equals_the_gathered_rows():
    C, d = 30, 3
    X, y = data(12000, C, d, seed=14)
    rng = np.random.default_rng(15)
    index = rng.integers(0, len(y), 15000).astype(np.int64)
    index[:50] = 7  # one row many times
    w = rng.uniform(0, 2, len(index))
    a = _core.Accumulator(d, C)
    a.n_threads = 3
    a.update_rows(X, index, y[index], w)
    b = _core.Accumulator(d, C)
    b.n_threads = 1
    b.update(np.ascontiguousarray(X[index]), y[index], w)
    assert same_state(a.get_state(), b.get_state())
    assert_matches(a, X, index, y[index], w, C, 1e-10)


def test_one_hot_label_matrices_in_a_pass_with_label_weights_equal_class_indices():
    """Inside a pass that also has rows with several weighted classes (so the commit adds
    the label-weight correction), a one-class-per-row label matrix gives the same bits
    as class indices with those weights."""
    C, d = 25, 3
    X, y = data(9000, C, d, seed=16, dtype=np.float32)
    rng = np.random.default_rng(17)
    v = rng.uniform(0, 2, len(y))
    W = np.zeros((len(y), C))
    W[np.arange(len(y)), y] = v
    M = np.zeros((500, C))
    M[np.arange(500), y[:500]] = 0.5
    M[np.arange(500), (y[:500] + 3) % C] = 0.5
    a = lrf.ScatterAccumulator(d, C, n_threads=2)
    b = lrf.ScatterAccumulator(d, C, n_threads=2)
    with a.streaming_pass():
        a.update(X[:500], M)
        a.update(X, W)
    with b.streaming_pass():
        b.update(X[:500], M)
        b.update(X, y, v)
    assert same_state(a.get_state(), b.get_state())


def test_two_threads_updating_one_accumulator_add_every_row_once():
    C, d = 30, 3
    X, y = data(4 * BLOCK + 5, C, d, seed=18)
    acc = lrf.ScatterAccumulator(d, C, n_threads=2)
    parts = [(X[i::2].copy(), y[i::2].copy()) for i in range(2)]

    def run(part):
        for _ in range(3):
            acc.update(*part)

    assert not run_in_threads(run, [(p,) for p in parts])
    rows = np.concatenate([np.arange(len(y))[i::2] for i in range(2) for _ in range(3)])
    assert_matches(acc, X, rows, y[rows], np.ones(len(rows)), C, rtol=1e-10)


def test_relabelled_classes_give_the_same_bits_permuted():
    """The grouped order follows each class's first row, not its index: relabelling the
    classes (DESIGN.md section 2) permutes the shifts, sums and counts and leaves the
    moment's bits as they were, whatever the thread count."""
    C, d = 30, 5
    X, y = data(13000, C, d, seed=19, offset=1e3, spread=1.0, dtype=np.float32)
    pi = np.random.default_rng(20).permutation(C)
    w = np.random.default_rng(21).uniform(0, 2, len(y))
    a = lrf.ScatterAccumulator(d, C, n_threads=2).update(X, y, w).get_state()
    b = lrf.ScatterAccumulator(d, C, n_threads=3).update(X, pi[y], w).get_state()
    np.testing.assert_array_equal(a["m2"], b["m2"])
    for key in ("shifts", "sums", "counts"):
        np.testing.assert_array_equal(a[key], b[key][pi], err_msg=key)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocks_of_several_sub_blocks_cut_inside_classes(dtype):
    """With 40 (float64) or 80 (float32) features a block's rows are multiplied in
    sub-blocks of 3276 rows, cut inside a class's rows: thread counts give the same bits,
    and the reference holds."""
    C = 30
    d = 40 if dtype == np.float64 else 80
    X, y = data(3 * BLOCK + 100, C, d, seed=22, offset=1e3, spread=1.0, dtype=dtype)
    w = np.random.default_rng(23).uniform(0, 2, len(y))
    states = [
        lrf.ScatterAccumulator(d, C, n_threads=t).update(X, y, w).get_state() for t in (1, 2, 3)
    ]
    for s in states[1:]:
        assert same_state(states[0], s)
    acc = lrf.ScatterAccumulator.from_state(states[0])
    assert_matches(acc, X, np.arange(len(y)), y, w, C, rtol=1e-10 if dtype == np.float64 else 1e-5)


def test_a_one_hot_matrix_of_ones_equals_unweighted_class_indices():
    C, d = 30, 5
    X, y = data(13000, C, d, seed=24, offset=1e3, spread=1.0, dtype=np.float32)
    W = np.zeros((len(y), C))
    W[np.arange(len(y)), y] = 1.0
    a = lrf.ScatterAccumulator(d, C, n_threads=2).update(X, W).get_state()
    b = lrf.ScatterAccumulator(d, C, n_threads=2).update(X, y).get_state()
    assert same_state(a, b)
