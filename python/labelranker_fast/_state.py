"""Plain state dicts of a ScatterAccumulator, reshaped, and the ranking of a solution."""

from __future__ import annotations

from typing import Any

import numpy as np

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
