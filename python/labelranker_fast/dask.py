"""labelranker_fast.dask: ranking ``dask.array`` features where they live.

Each row block of ``X`` becomes an accumulator on the worker that holds it; only the
accumulators' arrays (O(C d + d^2) each) travel, merged pairwise-ish in a tree of fixed
shape (``split_every`` at a time), so the result does not depend on the scheduler, the
number of workers or the order in which blocks finish. Needs the ``dask`` extra.

    import dask.array as da
    from labelranker_fast.dask import rank_labels
    ranking = rank_labels(da.from_zarr("features.zarr"), labels, shrinkage="oas")
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._accumulator import ScatterAccumulator
from ._inputs import check_int, check_n_components, lookup_classes, parse_shrinkage
from ._labels import ClassIndices
from ._ranking import LabelRanking

__all__ = ["rank_labels", "accumulate"]


def _block_state(X, labels, weights, classes, num_classes, n_features):
    """The statistics of one row block, as plain arrays (what travels between workers)."""
    acc = ScatterAccumulator(n_features, classes.size, n_threads=1)
    if X.shape[0]:
        if num_classes is not None:
            idx = ClassIndices(num_classes).encode(labels, X.shape[0])
        else:  # the label rule of the in-memory path: compared by value, exactly
            idx = lookup_classes(classes, labels, "y has labels that are not among the classes")
        acc.update(X, idx, weights)
    return acc.get_state()


def _merge_states(*states):
    acc = ScatterAccumulator.from_state(states[0])
    for state in states[1:]:
        acc.merge(ScatterAccumulator.from_state(state))
    return acc.get_state()


def accumulate(
    X: Any,
    y: Any,
    *,
    num_classes: int | None = None,
    sample_weight: Any = None,
    split_every: int = 8,
    n_threads: int | None = None,
    **compute_kwargs: Any,
) -> tuple[ScatterAccumulator, np.ndarray]:
    """(ScatterAccumulator, classes) of dask array features ``X`` (n, d) and labels ``y``.

    Parameters
    ----------
    X : dask array (or array-like) of shape (n, d)
    y : dask array (or array-like) of shape (n,)
    num_classes : int, optional
        The labels are class indices in [0, num_classes); default: their sorted unique
        values are the classes.
    sample_weight : dask array (or array-like) of shape (n,), optional
    split_every : int, default=8
        Accumulators merged at a time, in a tree of fixed shape.
    n_threads : int, optional
        Threads of the returned accumulator (blocks use one each).
    **compute_kwargs :
        Passed to ``dask.compute`` (e.g. ``scheduler="threads"``); with a
        ``distributed.Client`` active its cluster is used by default.

    Returns
    -------
    (ScatterAccumulator, ndarray of classes)

    Raises
    ------
    ValueError, TypeError
        Shapes, dtypes, labels or weights that ``ScatterAccumulator.update`` refuses
        (raised by dask from the worker that found them).
    """
    import dask
    import dask.array as da

    split_every = check_int(split_every, "split_every", 2)
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"X has dtype {X.dtype}; features must be numeric")
    X = X.rechunk({1: -1})  # whole rows in every block
    n, d = X.shape
    y = da.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must be 1-D with {n} entries, got shape {y.shape}")
    y = y.rechunk((X.chunks[0],))
    if num_classes is not None:
        classes = np.arange(check_int(num_classes, "num_classes", 2))
    else:
        classes = np.asarray(da.unique(y).compute(**compute_kwargs))
        if classes.size < 2:
            raise ValueError(f"y must contain at least 2 classes, got {classes.size}")
    w_blocks = [None] * len(X.chunks[0])
    if sample_weight is not None:
        w = da.asarray(sample_weight)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
        w_blocks = list(w.astype(np.float64).rechunk((X.chunks[0],)).to_delayed())
    parts = [
        dask.delayed(_block_state)(xb, yb, wb, classes, num_classes, d)
        for xb, yb, wb in zip(X.to_delayed()[:, 0], y.to_delayed(), w_blocks)
    ]
    while len(parts) > 1:
        parts = [
            dask.delayed(_merge_states)(*parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    (state,) = dask.compute(parts[0], **compute_kwargs)
    acc = ScatterAccumulator.from_state(state)
    if n_threads is not None:
        acc.n_threads = n_threads
    return acc, classes


def rank_labels(
    X: Any,
    y: Any,
    *,
    num_classes: int | None = None,
    shrinkage: Literal["oas"] | float | None = None,
    n_components: int = 1,
    sample_weight: Any = None,
    split_every: int = 8,
    n_threads: int | None = None,
    **compute_kwargs: Any,
) -> LabelRanking:
    """``labelranker_fast.rank_labels`` for ``dask.array`` inputs.

    Parameters
    ----------
    X, y, num_classes, sample_weight, split_every, n_threads, **compute_kwargs :
        As for ``accumulate``.
    shrinkage, n_components :
        As for ``labelranker_fast.rank_labels``.

    Returns
    -------
    LabelRanking

    Raises
    ------
    ValueError, TypeError
        As for ``accumulate``; no rows; a solve that fails (singular scatter without
        shrinkage).
    """
    parse_shrinkage(shrinkage)
    check_n_components(n_components)
    acc, classes = accumulate(
        X,
        y,
        num_classes=num_classes,
        sample_weight=sample_weight,
        split_every=split_every,
        n_threads=n_threads,
        **compute_kwargs,
    )
    if acc.n_samples == 0:
        raise ValueError("X has no rows: nothing to rank")
    return acc.rank(shrinkage=shrinkage, n_components=n_components, classes=classes)
