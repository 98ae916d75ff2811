"""Bad input: a clear ValueError/TypeError, and the accumulator left unchanged."""

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import make_blobs


@pytest.fixture
def acc():
    X, y = make_blobs(0, n=200, d=4, C=3)
    a = lrf.ScatterAccumulator(4, 3)
    a.update(X, y)
    return a


def state(a):
    return {k: np.array(v, copy=True) for k, v in a.get_state().items()}


def assert_unchanged(a, before):
    after = a.get_state()
    for k, v in before.items():
        np.testing.assert_array_equal(np.asarray(after[k]), v, err_msg=k)


def good(n=10, d=4):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


def with_value(i, j, value, dtype=np.float64):
    X, y = good()
    X = X.astype(dtype)
    X[i, j] = value
    return X, y


CASES = [
    ("nan feature", lambda: (*with_value(7, 2, np.nan), None), ValueError, "NaN or infinity"),
    ("inf feature", lambda: (*with_value(0, 0, np.inf), None), ValueError, "NaN or infinity"),
    (
        "-inf float32",
        lambda: (*with_value(9, 3, -np.inf, np.float32), None),
        ValueError,
        "NaN or infinity",
    ),
    ("label too big", lambda: (good()[0], np.full(10, 3), None), ValueError, "class index"),
    (
        "negative label",
        lambda: (good()[0], np.r_[np.zeros(9, int), -1], None),
        ValueError,
        "class index",
    ),
    ("float labels", lambda: (good()[0], np.zeros(10), None), TypeError, "integer class indices"),
    ("string labels", lambda: (good()[0], np.array(["a"] * 10), None), TypeError, "integer"),
    ("1-D X", lambda: (np.zeros(4), np.zeros(1, int), None), ValueError, "2-D"),
    ("3-D X", lambda: (np.zeros((2, 2, 4)), np.zeros(2, int), None), ValueError, "2-D"),
    ("2-D y", lambda: (good()[0], np.zeros((10, 1), int), None), ValueError, "1-D"),
    ("length mismatch", lambda: (good()[0], np.zeros(9, int), None), ValueError, "9 entries"),
    (
        "wrong feature count",
        lambda: (np.zeros((5, 3)), np.zeros(5, int), None),
        ValueError,
        "features",
    ),
    ("complex X", lambda: (good()[0].astype(complex), good()[1], None), TypeError, "complex"),
    ("object X", lambda: (np.array([[object()] * 4] * 10), good()[1], None), TypeError, "dtype"),
    ("negative weight", lambda: (*good(), np.r_[np.ones(9), -1.0]), ValueError, "sample_weight"),
    ("nan weight", lambda: (*good(), np.r_[np.ones(9), np.nan]), ValueError, "sample_weight"),
    ("inf weight", lambda: (*good(), np.r_[np.inf, np.ones(9)]), ValueError, "sample_weight"),
    ("weight length", lambda: (*good(), np.ones(3)), ValueError, "sample_weight"),
]


@pytest.mark.parametrize("name, make, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_update_leaves_state_unchanged(acc, name, make, exc, match):
    before = state(acc)
    X, y, w = make()
    with pytest.raises(exc, match=match):
        acc.update(X, y, sample_weight=w)
    assert_unchanged(acc, before)


def test_nan_in_a_late_block_leaves_state_unchanged(acc):
    # The NaN sits beyond the first engine blocks, after work has been done on them.
    before = state(acc)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20000, 4)).astype(np.float32)
    X[19999, 1] = np.nan
    with pytest.raises(ValueError, match=r"X\[19999, 1\]"):
        acc.update(X, rng.integers(0, 3, 20000))
    assert_unchanged(acc, before)
    acc.update(*good())  # still usable
    assert acc.n_samples == 210


def test_overflowing_float32_squares():
    a = lrf.ScatterAccumulator(2, 2)
    X = np.array([[1e30, 0], [-1e30, 0], [3e30, 1], [-2e30, 1]], dtype=np.float32)
    with pytest.raises(ValueError, match="overflow"):
        a.update(X, np.array([0, 0, 1, 1]))
    assert a.n_samples == 0


def test_rank_errors(acc):
    with pytest.raises(ValueError, match="empty"):
        lrf.ScatterAccumulator(4, 3).rank()
    partial = lrf.ScatterAccumulator(4, 3)
    partial.update(
        np.random.default_rng(0).standard_normal((20, 4)),
        np.r_[np.zeros(10, int), np.ones(10, int)],
    )
    with pytest.raises(ValueError, match=r"no samples \(class indices 2\)"):
        partial.rank()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="shrinkage"):
            acc.rank(shrinkage=bad)
    with pytest.raises(ValueError, match="shrinkage"):
        acc.rank(shrinkage="ledoit")
    with pytest.raises(TypeError, match="shrinkage"):
        acc.rank(shrinkage=[0.1])
    with pytest.raises(ValueError, match="n_components"):
        acc.rank(n_components=3)  # C - 1 = 2
    with pytest.raises(ValueError, match="n_components"):
        acc.rank(n_components=0)
    with pytest.raises(TypeError, match="n_components"):
        acc.rank(n_components=1.5)


def test_constructor_and_merge_errors(acc):
    with pytest.raises(ValueError, match="num_classes"):
        lrf.ScatterAccumulator(4, 1)
    with pytest.raises(ValueError, match="n_features"):
        lrf.ScatterAccumulator(0, 3)
    with pytest.raises(TypeError, match="n_features"):
        lrf.ScatterAccumulator(4.0, 3)
    before = state(acc)
    with pytest.raises(ValueError, match="cannot merge"):
        acc.merge(lrf.ScatterAccumulator(5, 3))
    with pytest.raises(TypeError, match="merge"):
        acc.merge("not an accumulator")
    assert_unchanged(acc, before)


def test_rank_labels_errors():
    X, y = make_blobs(0, n=100, d=3, C=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        lrf.rank_labels(X, np.zeros(100, int))
    with pytest.raises(ValueError, match="no samples"):
        lrf.rank_labels(X, y, num_classes=4)
    with pytest.raises(ValueError, match="class index"):
        lrf.rank_labels(X, y, num_classes=2)
    with pytest.raises(ValueError, match="chunk_size"):
        lrf.rank_labels(X, y, chunk_size=0)
    with pytest.raises(ValueError, match="NaN"):
        lrf.rank_labels(X, np.where(y == 0, np.nan, y))


def test_invalid_state_is_rejected(acc):
    s = acc.get_state()
    bad = dict(s, m2=np.asarray(s["m2"])[:2])
    with pytest.raises(ValueError, match="state"):
        lrf.ScatterAccumulator.from_state(bad)
    bad = dict(s, counts=-np.asarray(s["counts"]))
    with pytest.raises(ValueError, match="counts"):
        lrf.ScatterAccumulator.from_state(bad)
    bad = dict(s)
    bad.pop("sums")
    with pytest.raises(ValueError, match="missing"):
        lrf.ScatterAccumulator.from_state(bad)
