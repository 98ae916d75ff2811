"""Plain state dicts of a ScatterAccumulator, reshaped, and the ranking of a solution."""

from __future__ import annotations

from typing import Any, Literal, Union

import numpy as np
from numpy.typing import ArrayLike

from ._inputs import check_n_components, check_threads, parse_shrinkage
from ._ranking import LabelRanking

Shrinkage = Union[Literal["oas"], float, None]


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


class StateViews:
    """The read-only views of a ScatterAccumulator's statistics, its thread count and
    its buffers, its solution (the accumulator's base class; ``_core`` and ``_lock`` are its)."""

    _core: Any
    _lock: Any

    def release_buffers(self) -> None:
        """Frees the work buffers ``update`` keeps between calls (not the statistics);
        ValueError inside a pass."""
        with self._lock:
            self._core.release_buffers()

    @property
    def n_threads(self) -> int:
        """Threads used by ``update`` and by the solver's BLAS calls."""
        return self._core.num_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        value = check_threads(value)
        with self._lock:
            self._core.num_threads = value

    @property
    def n_features(self) -> int:
        """Dimension d of the feature vectors."""
        return self._core.n_features

    @property
    def num_classes(self) -> int:
        """Number of class slots C."""
        return self._core.num_classes

    @property
    def n_samples(self) -> int:
        """Number of rows accumulated (whatever their weights)."""
        with self._lock:
            return self._core.n_rows

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) float64 weighted counts n_k (the row counts when unweighted)."""
        with self._lock:
            return self._core.counts

    @property
    def class_means(self) -> np.ndarray:
        """(C, d) float64 class means; rows of classes without samples are NaN."""
        with self._lock:
            return self._core.class_means()

    def within_scatter(self) -> np.ndarray:
        """(d, d) S_w = sum_k sum_{x in k} w (x - mu_k)(x - mu_k)^T."""
        with self._lock:
            return self._core.within_scatter()

    def between_scatter(self) -> np.ndarray:
        """(d, d) S_b = sum_k n_k (mu_k - mu)(mu_k - mu)^T."""
        with self._lock:
            return self._core.between_scatter()

    def solve(self, shrinkage: Shrinkage = None, n_components: int = 1) -> dict[str, Any]:
        """The discriminant solution as arrays (``rank`` makes a LabelRanking of it).

        Parameters
        ----------
        shrinkage : None, "oas" or float in [0, 1]
            As for ``rank``.
        n_components : int
            As for ``rank``.

        Returns
        -------
        dict
            "directions" (d, k), "eigenvalues" (k,), "eigenvalue_sum", "centroids"
            (C, k), "order" (C,), "mean" (d,), "shrinkage".

        Raises
        ------
        ValueError, TypeError
            As for ``rank``.
        """
        kind, value = parse_shrinkage(shrinkage)
        n_components = check_n_components(n_components)
        with self._lock:
            return self._core.solve(kind, value, n_components)

    def rank(
        self, shrinkage: Shrinkage = None, n_components: int = 1, classes: ArrayLike | None = None
    ) -> LabelRanking:
        """Ranks the classes along the top ``n_components`` discriminant directions.

        Parameters
        ----------
        shrinkage : None, "oas" or float in [0, 1]
            Regularisation of the within-class covariance S = S_w / N towards
            (tr S / d) I. None fails (naming shrinkage) when S is singular.
        n_components : int
            Number of discriminant directions, at most min(C - 1, d).
        classes : array-like of shape (C,), optional
            Labels to report for the class indices (default: 0..C-1).

        Returns
        -------
        LabelRanking

        Raises
        ------
        ValueError, TypeError
            A class without samples, a singular S without shrinkage, or statistics that
            overflowed; a ``shrinkage`` or ``n_components`` of the wrong value or type.
        """
        return ranking_of(self.solve(shrinkage, n_components), self.num_classes, classes)


def ranking_of(result: dict, num_classes: int, classes=None) -> LabelRanking:
    """The LabelRanking of a ``solve()`` result."""
    return LabelRanking(
        classes=np.arange(num_classes) if classes is None else classes,
        order=result["order"],
        centroids=result["centroids"],
        eigenvalues=result["eigenvalues"],
        shrinkage=result["shrinkage"],
    )
