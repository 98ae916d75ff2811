"""Accumulation against numpy's X.T @ X (the roofline), and rank_labels end to end against
numpy's X.T @ X, scikit-learn's LinearDiscriminantAnalysis (solver "eigen", and "svd" as
the Label Ranker paper used) and a plain torch (CPU) implementation, all on the same
200,000 x 768 float32 array. Within a group the baselines run first; the last test (ours)
checks that every ranking baseline that ran agrees with ours on the order."""

import numpy as np
import pytest

import labelranker_fast as lrf
from baselines import C, assert_same_order, numpy_gram, ours_rank, sklearn_rank, torch_rank
from conftest import RESULTS


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", ["numpy X.T @ X", "ours"])
def test_accumulate(record, imagenet_like, dtype, impl):
    X, y = imagenet_like
    X = np.ascontiguousarray(X, dtype=dtype)
    if impl == "ours":
        acc = record(
            f"accumulate-{dtype}", impl, lambda: lrf.ScatterAccumulator(X.shape[1], C).update(X, y)
        )
        assert acc.n_samples == len(X)
    else:
        gram = record(f"accumulate-{dtype}", impl, lambda: numpy_gram(X))
        assert gram.shape == (X.shape[1],) * 2


# name -> (function returning (order, centroids), rounds, warmup); sklearn takes 20-40 s.
RANKERS = {
    "sklearn eigen + centroids": (lambda X, y: sklearn_rank(X, y, "eigen"), 1, 0),
    "sklearn svd + centroids": (lambda X, y: sklearn_rank(X, y, "svd"), 1, 0),
    "torch": (lambda X, y: torch_rank(X, y, C), 3, 1),
}


@pytest.mark.parametrize("impl", ["numpy X.T @ X", *RANKERS, "ours"])
def test_rank_end_to_end(record, imagenet_like, impl):
    X, y = imagenet_like
    group = "rank-end-to-end"
    if impl == "numpy X.T @ X":
        record(group, impl, lambda: numpy_gram(X))
    elif impl in RANKERS:
        if impl == "torch":
            pytest.importorskip("torch")
        fn, rounds, warmup = RANKERS[impl]
        record(group, impl, lambda: fn(X, y), rounds=rounds, warmup=warmup)
    else:
        order, _ = record(group, impl, lambda: ours_rank(X, y))
        for name in RANKERS:
            if (group, name) in RESULTS:
                assert_same_order(order, *RESULTS[group, name])
