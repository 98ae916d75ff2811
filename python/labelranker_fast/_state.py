"""Plain state dicts of a ScatterAccumulator, reshaped, and the ranking of a solution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._inputs import as_class_indices, as_features, as_weights, check_n_features
from ._io import NpzReader, read_plain_state
from ._ranking import LabelRanking


def grown_state(
    state: dict[str, Any], num_classes: int, old_classes: int, n_features: int
) -> dict[str, Any]:
    """``state`` (updated in place) with ``num_classes`` class slots; the new ones empty."""
    extra = num_classes - old_classes
    state.update(
        num_classes=num_classes,
        counts=np.concatenate([state["counts"], np.zeros(extra)]),
        shifts=np.vstack([state["shifts"], np.zeros((extra, n_features))]),
        sums=np.vstack([state["sums"], np.zeros((extra, n_features))]),
    )
    return state


def selected_state(state: dict[str, Any], order, num_classes: int) -> dict[str, Any]:
    """``state`` (updated in place) whose class k is its class ``order[k]``; ValueError
    if a class left out has samples."""
    order = np.asarray(order, dtype=np.int64)
    dropped = np.setdiff1d(np.arange(num_classes), order)
    if np.any(state["counts"][dropped] != 0):
        raise ValueError("cannot drop classes that have samples")
    state.update(
        num_classes=order.size,
        counts=state["counts"][order],
        shifts=state["shifts"][order],
        sums=state["sums"][order],
    )
    return state


def ranking_of(result: dict, num_classes: int, classes=None) -> LabelRanking:
    """The LabelRanking of a ``solve()`` result."""
    return LabelRanking(
        classes=np.arange(num_classes) if classes is None else classes,
        order=result["order"],
        centroids=result["centroids"],
        eigenvalues=result["eigenvalues"],
        shrinkage=result["shrinkage"],
    )


def stream_part(hook, acc, X, y, sample_weight, **opts):
    """The streamed ``update`` of ``acc`` through ``hook`` (the passes layer's entry
    point): the private accumulator it returns, or None."""
    if hook is None:  # pragma: no cover
        raise RuntimeError("labelranker_fast._stream is not loaded")
    return hook(acc, X, y, sample_weight, **opts)


def checked_rows(X, y, sample_weight, n_features: int, num_classes: int):
    """``(X, y, w)`` of an in-memory ``update``, validated against the shape."""
    X = as_features(X)
    check_n_features(X.shape[1], n_features)
    y = as_class_indices(y, X.shape[0], num_classes)
    return X, y, as_weights(sample_weight, X.shape[0])


def read_validated(reader: NpzReader, prefix: str, build: Callable[[dict[str, Any]], Any]):
    """``build`` (``from_state``) of the ``prefix``-named state members of an open
    ``.npz`` file; its ValueError is raised again naming the file."""
    state = read_plain_state(reader, prefix)
    try:
        return build(state)
    except ValueError as exc:
        raise reader._bad(str(exc)) from None
