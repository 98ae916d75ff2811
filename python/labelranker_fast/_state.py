"""Plain state dicts of a ScatterAccumulator: reshaped, read and written, and the ranking
of a solution. ``StateForms`` gives the accumulator its file, pickle and class-slot forms,
built on ``get_state``/``from_state`` alone."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

import numpy as np

from ._inputs import as_class_indices, as_features, as_weights, check_n_features
from ._io import NpzReader, read_plain_state, write_npz
from ._ordering import check_method, order_of
from ._ranking import LabelRanking

PathArg = Union[str, "os.PathLike[str]", bytes]  # a file path, as the readers take it
_Acc = TypeVar("_Acc", bound="StateForms")


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


def ranking_of(result: dict, num_classes: int, classes=None, method="anchor") -> LabelRanking:
    """The LabelRanking of a ``solve()`` result, its classes ordered by ``method``."""
    order = result["order"] if method == "anchor" else order_of(result["centroids"], method)
    return LabelRanking(
        classes=np.arange(num_classes) if classes is None else classes,
        order=order,
        centroids=result["centroids"],
        eigenvalues=result["eigenvalues"],
        shrinkage=result["shrinkage"],
    )


def widened(part: _Acc, num_classes: int) -> _Acc:
    """``part`` with ``num_classes`` class slots: a part built (outside the lock) before
    another thread grew the accumulator it joins. Slots are only ever added at the end,
    so its class indices mean the same in the grown accumulator."""
    return part if part.num_classes >= num_classes else part._with_capacity(num_classes)


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


class StateForms:
    """What an accumulator is as plain arrays: ``.npz`` files, pickles, copies with other
    class slots. The class provides ``get_state``, ``from_state`` and ``n_threads``."""

    if TYPE_CHECKING:
        n_threads: int

        @property
        def num_classes(self) -> int: ...

        @property
        def n_features(self) -> int: ...

        def get_state(self) -> dict[str, Any]: ...

        @classmethod
        def from_state(cls: type[_Acc], state: dict[str, Any]) -> _Acc: ...

        def solve(self, shrinkage: Any = None, n_components: int = 1) -> dict[str, Any]: ...

    def rank(
        self,
        shrinkage: Literal["oas"] | float | None = None,
        n_components: int = 1,
        classes: Any = None,
        method: Literal["anchor", "seriation"] = "anchor",
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
        method : "anchor" or "seriation", default="anchor"
            How the centroids become an order (see ``rank_labels``).

        Returns
        -------
        LabelRanking

        Raises
        ------
        ValueError, TypeError
            A class without samples, a singular S without shrinkage, or statistics that
            overflowed; a ``shrinkage``, ``n_components`` or ``method`` of the wrong value
            or type; more classes than seriation takes.
        """
        check_method(method)
        return ranking_of(self.solve(shrinkage, n_components), self.num_classes, classes, method)

    def copy(self: _Acc) -> _Acc:
        """An independent accumulator with the same statistics and thread count.

        Returns
        -------
        ScatterAccumulator
        """
        return self._rebuilt(self.get_state())

    @classmethod
    def read_state(cls: type[_Acc], reader: NpzReader, prefix: str = "") -> _Acc:
        """An accumulator from the ``prefix``-named members of an open ``.npz`` file.

        Scalars are read first, then each array after its header's shape has been
        checked against them, so a hostile file cannot make it allocate.

        Parameters
        ----------
        reader : NpzReader
            The open file (``labelranker_fast._io.NpzReader``).
        prefix : str, default=""
            What the state's member names start with (a checkpoint's is "acc_").

        Returns
        -------
        ScatterAccumulator

        Raises
        ------
        ValueError
            Members missing, malformed or inconsistent (the message names the file).
        """
        return read_validated(reader, prefix, cls.from_state)

    def save(self, path: PathArg) -> None:
        """Writes the state to an ``.npz`` file: arrays only (no pickled code).

        The file is written atomically: a crash or Ctrl-C never leaves a torn file.

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to write (replaced if it exists).

        Raises
        ------
        TypeError
            ``path`` is not a path.
        FileNotFoundError
            Its folder does not exist.
        ValueError
            The folder is not writable.
        """
        write_npz(path, self.get_state())

    @classmethod
    def load(cls: type[_Acc], path: PathArg) -> _Acc:
        """Reads a file written by ``save``.

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to read.

        Returns
        -------
        ScatterAccumulator

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError, TypeError
            Not an accumulator file: malformed, truncated, inconsistent, or another kind
            of file (nothing in it is executed, members it does not need are not read);
            a ``path`` that is not a path.
        """
        with NpzReader(path, "accumulator") as reader:
            return cls.read_state(reader)

    def _with_capacity(self: _Acc, num_classes: int) -> _Acc:
        """A copy with ``num_classes`` class slots; the new ones are empty."""
        state = grown_state(self.get_state(), num_classes, self.num_classes, self.n_features)
        return self._rebuilt(state)

    def _select_classes(self: _Acc, order) -> _Acc:
        """A copy whose class k is this one's class ``order[k]`` (the other classes must
        be empty: their rows would be lost)."""
        return self._rebuilt(selected_state(self.get_state(), order, self.num_classes))

    def _rebuilt(self: _Acc, state: dict[str, Any]) -> _Acc:
        out = type(self).from_state(state)
        out.n_threads = self.n_threads
        return out
