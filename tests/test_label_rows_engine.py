"""The engine's row sets: rows of X picked by index (the folds' path) and label-weight rows
in CSR form (multi-label and soft labels), checked against independent references: the
same rows gathered by numpy, a float64 two-pass computation of DESIGN.md section 7's
formulas, every thread count, and Ctrl-C inside a pass."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf
from labelranker_fast import _core
from labelranker_fast._multilabel import label_weight_rows
from test_engine_trust import run_script
from test_multilabel import reference


def same_state(a, b) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


def csr(X, W):
    return label_weight_rows(X, W, None, X.shape[1], W.shape[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_by_index_equal_the_gathered_rows(dtype):
    rng = np.random.default_rng(0)
    n, d, C = 13000, 9, 6
    X = (50 + rng.normal(size=(n, d))).astype(dtype)
    y = rng.integers(0, C, n)
    w = rng.uniform(0, 3, n)
    idx = rng.permutation(n)[:9000]
    for weights in (None, w[idx]):
        want = _core.Accumulator(d, C)
        want.update(np.ascontiguousarray(X[idx]), y[idx], weights)
        got = _core.Accumulator(d, C)
        got.update_rows(X, idx.astype(np.int64), y[idx], weights)
        assert same_state(got.get_state(), want.get_state())


def test_rows_by_index_refuse_bad_indices_and_change_nothing():
    X = np.ones((10, 3))
    acc = _core.Accumulator(3, 2)
    for idx, match in [([0, 10], "not a row of X"), ([-1], "not a row of X")]:
        with pytest.raises(ValueError, match=match):
            acc.update_rows(X, np.array(idx, dtype=np.int64), np.zeros(len(idx), dtype=np.int64))
    with pytest.raises(ValueError, match="y has 1 entries but index has 2"):
        acc.update_rows(X, np.array([0, 1], dtype=np.int64), np.zeros(1, dtype=np.int64))
    assert acc.n_samples == 0


def soft_and_multi_hot(n, d, C, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(C), n) * rng.uniform(0.5, 2, (n, 1))
    W[::3] = 0  # every third row multi-hot (1 to 3 labels), every ninth one-hot
    for j in range(3):
        rows = np.arange(0, n, 3)[rng.random(len(range(0, n, 3))) < (1 if j == 0 else 0.5)]
        W[rows, rng.integers(0, C, rows.size)] = 1.0
    W[::9] = 0
    W[np.arange(0, n, 9), rng.integers(0, C, len(range(0, n, 9)))] = 1.0
    W[5] = 0  # a row without weight
    X = (
        1e3
        + (W @ rng.normal(size=(C, d)) * 3) / np.maximum(W.sum(1, keepdims=True), 1e-9)
        + rng.normal(size=(n, d))
    ).astype(dtype)
    return X, W


@pytest.mark.parametrize("C", [6, 40, 700])  # 700: more classes than the product path takes
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 3e-5)])
def test_soft_multi_hot_and_one_hot_rows_mixed_in_blocks(C, dtype, rtol):
    # Soft rows go through matrix products per sub-block (up to 512 classes) or row by
    # row; one- and multi-hot rows sit in the same blocks. Large offset: mean 1e3.
    X, W = soft_and_multi_hot(5000 if C < 700 else 1500, 6, C, seed=C, dtype=dtype)
    acc = lrf.ScatterAccumulator(X.shape[1], C).update(X, W)
    N, m, Sw, Sb = reference(X, W)
    np.testing.assert_allclose(acc.class_counts, N, rtol=1e-13)
    np.testing.assert_allclose(acc.class_means, m, rtol=1e-12 if dtype == np.float64 else 1e-7)
    np.testing.assert_allclose(acc.within_scatter(), Sw, rtol=rtol, atol=rtol * np.abs(Sw).max())
    np.testing.assert_allclose(acc.between_scatter(), Sb, rtol=rtol, atol=rtol * np.abs(Sb).max())


@pytest.mark.parametrize("dense", [False, True])
def test_label_rows_are_bit_identical_for_every_thread_count(dense):
    X, W = soft_and_multi_hot(17000, 8, 12, seed=3)
    if not dense:
        W[W < 0.2] = 0  # mostly sparse rows: the row-by-row path
    states = []
    for threads in (1, 2, 3):
        acc = lrf.ScatterAccumulator(8, 12, n_threads=threads).update(X, W)
        states.append(acc.get_state())
    assert same_state(states[0], states[1]) and same_state(states[0], states[2])


def test_label_rows_inside_a_pass_equal_one_call_and_chunks_split_anywhere():
    X, W = soft_and_multi_hot(9000, 5, 7, seed=4, dtype=np.float64)
    one = lrf.ScatterAccumulator(5, 7).update(X, W)
    acc = lrf.ScatterAccumulator(5, 7)
    with acc.streaming_pass():
        for start, stop in [(0, 1), (1, 4100), (4100, 4101), (4101, 9000)]:
            acc.update(X[start:stop], W[start:stop])
    np.testing.assert_allclose(acc.within_scatter(), one.within_scatter(), rtol=1e-12)
    np.testing.assert_allclose(acc.class_means, one.class_means, rtol=1e-13)


def test_bad_csr_arrays_are_refused_by_the_engine():
    X = np.ones((2, 3))
    acc = _core.Accumulator(3, 4)
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    cases = [
        ((i64([0, 1, 2]), i64([0, 4]), np.ones(2)), "not a class index"),
        ((i64([0, 1, 2]), i64([0, 1]), np.array([1.0, np.nan])), "finite and >= 0"),
        ((i64([1, 1, 2]), i64([0, 1]), np.ones(2)), r"indptr\[0\] must be 0"),
        ((i64([0, 2, 1]), i64([0]), np.ones(1)), "must not decrease"),
        ((i64([0, 2, 2]), i64([0, 1]), np.array([1e308, 1e308])), "sum to infinity"),
        ((i64([0, 1]), i64([0]), np.ones(1)), "indptr has 2 entries"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            acc.update_labels(X, *args)
    assert acc.n_samples == 0


LABEL_INTERRUPT = """
    import json, signal, sys, threading, time, numpy as np
    from labelranker_fast import _core
    from labelranker_fast._multilabel import label_weight_rows
    dense, threads = sys.argv[1] == "dense", int(sys.argv[2])
    rng = np.random.default_rng(5)
    d, c, n = 768, 20, 50000
    W = rng.dirichlet(np.ones(c), n) if dense else (rng.random((n, c)) < 0.1) * 1.0
    X = rng.standard_normal((n, d), dtype=np.float32) + 10
    rows = lambda a, b: label_weight_rows(X[a:b], W[a:b], None, d, c)
    A, B, C = rows(0, 3000), rows(0, n), rows(n - 2000, n)
    def same(a, b):
        return all(np.array_equal(a[k], b[k]) for k in a)
    def fresh():
        acc = _core.Accumulator(d, c); acc.n_threads = threads; return acc
    t = time.perf_counter(); fresh().update_labels(*B); seconds = time.perf_counter() - t
    acc = fresh(); acc.begin_pass(); acc.update_labels(*A)
    main = threading.main_thread().ident
    timer = threading.Timer(seconds * 0.3, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        acc.update_labels(*B); raised = False
    except KeyboardInterrupt:
        raised = True
    timer.join()
    acc.update_labels(*C); acc.commit_pass()
    want = fresh(); want.begin_pass(); want.update_labels(*A); want.update_labels(*C)
    want.commit_pass()
    print(json.dumps({"seconds": seconds, "raised": raised,
                      "unchanged": same(acc.get_state(), want.get_state())}))
"""


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_ctrl_c_during_a_label_rows_update_undoes_only_that_call(kind):
    """Inside a pass, SIGINT during a label-weight update: the pass then holds exactly its
    other calls, bit for bit (class sums, counts and the label corrections restored)."""
    (out,) = run_script(LABEL_INTERRUPT, kind, 2)
    assert out["seconds"] > 0.1, out
    assert out["raised"], out
    assert out["unchanged"], out
