"""Invariances of the ranking (hypothesis): sample order, chunking, merge trees, labels."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import labelranker_fast as lrf
from conftest import make_blobs, reference_scatter, rel_err


def well_separated(ranking, rtol=1e-6):
    """True when adjacent centroids differ by more than rounding noise."""
    c = np.sort(ranking.centroids[:, 0])
    return np.all(np.diff(c) > rtol * (np.abs(c).max() + 1))


data = st.builds(
    lambda seed, n, d, C, dtype: make_blobs(seed, n=n, d=d, C=C, dtype=dtype) + (C,),
    seed=st.integers(0, 10_000),
    n=st.integers(60, 1500),
    d=st.integers(1, 12),
    C=st.integers(2, 8),
    dtype=st.sampled_from([np.float32, np.float64]),
)


@given(data, st.integers(0, 2**32 - 1))
def test_sample_order_does_not_matter(case, seed):
    X, y, C = case
    base = lrf.rank_labels(X, y, num_classes=C, shrinkage=1e-9)
    perm = np.random.default_rng(seed).permutation(len(X))
    again = lrf.rank_labels(X[perm], y[perm], num_classes=C, shrinkage=1e-9)
    if well_separated(base):
        np.testing.assert_array_equal(base.order, again.order)


@given(data, st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_chunking_does_not_matter(case, sizes):
    X, y, C = case
    base = lrf.rank_labels(X, y, num_classes=C, shrinkage=1e-9)
    acc = lrf.ScatterAccumulator(X.shape[1], C)
    start, i = 0, 0
    while start < len(X):
        stop = start + sizes[i % len(sizes)]
        acc.update(X[start:stop], y[start:stop])
        start, i = stop, i + 1
    ranking = acc.rank(shrinkage=1e-9)
    Sw, Sb, _ = reference_scatter(X, y, C)
    tol = 1e-10 if X.dtype == np.float64 else 1e-5
    assert rel_err(acc.within_scatter(), Sw) < tol
    assert rel_err(acc.between_scatter(), Sb) < tol
    if well_separated(base):
        np.testing.assert_array_equal(base.order, ranking.order)


@given(data, st.integers(2, 7), st.integers(0, 2**32 - 1))
def test_any_merge_tree_gives_the_same_statistics(case, parts, seed):
    X, y, C = case
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(X)), size=parts - 1, replace=False))
    accs = []
    for Xp, yp in zip(np.split(X, cuts), np.split(y, cuts)):
        a = lrf.ScatterAccumulator(X.shape[1], C)
        a.update(Xp, yp)
        accs.append(a)
    while len(accs) > 1:  # merge random pairs until one is left
        i, j = sorted(rng.choice(len(accs), size=2, replace=False))
        accs[i].merge(accs.pop(j))
    merged = accs[0]
    Sw, Sb, _ = reference_scatter(X, y, C)
    tol = 1e-10 if X.dtype == np.float64 else 1e-5
    assert rel_err(merged.within_scatter(), Sw) < tol
    assert rel_err(merged.between_scatter(), Sb) < tol
    assert merged.n_samples == len(X)
    base = lrf.rank_labels(X, y, num_classes=C, shrinkage=1e-9)
    if well_separated(base):
        np.testing.assert_array_equal(base.order, merged.rank(shrinkage=1e-9).order)


@given(data, st.integers(0, 2**32 - 1))
def test_relabelling_puts_the_same_classes_in_the_same_positions(case, seed):
    X, y, C = case
    perm = np.random.default_rng(seed).permutation(C)
    base = lrf.rank_labels(X, y, num_classes=C, shrinkage=1e-9)
    relabelled = lrf.rank_labels(X, perm[y], num_classes=C, shrinkage=1e-9)
    if well_separated(base):
        np.testing.assert_array_equal(perm[base.order], relabelled.order)
