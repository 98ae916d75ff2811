"""ScatterAccumulator: the streaming statistics of LDA, around the compiled engine.

This is the only module that touches the compiled ``_core``. A ScatterAccumulator owns
one engine accumulator and one lock: every operation that reads or changes the state
takes the lock, and a streamed pass (``streaming_pass``) holds it from begin to commit,
so concurrent callers are serialised and never lose or double-count rows.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._inputs import check_int, check_n_components, check_threads, in_memory, parse_shrinkage
from ._io import STATE_KEYS, STATE_VERSION, plain_state
from ._multilabel import is_label_matrix, label_weight_rows
from ._state import PathArg, StateForms, stream_part, widened
from ._state import checked_rows as _rows

__all__ = ["ScatterAccumulator", "BLOCK_ROWS", "STATE_KEYS"]

BLOCK_ROWS: int = _core.BLOCK_ROWS  # rows a worker thread takes at a time
Shrinkage = Union[Literal["oas"], float, None]


class ScatterAccumulator(StateForms):
    """Per-class counts and means and the pooled within-class scatter, in one pass.

    Statistics are kept in float64 whatever the input precision; rows are shifted by a
    per-class estimate of their mean before their outer products are taken, so features
    with a large mean and a small spread keep their accuracy. Accumulators of the same
    shape merge (``merge``), save to ``.npz`` and pickle as plain arrays. One
    accumulator may be used from several threads: its operations are serialised.

    Parameters
    ----------
    n_features : int
        Dimension d of the feature vectors.
    num_classes : int
        Number of classes C; labels given to ``update`` are class indices in [0, C).
    n_threads : int, optional
        Threads for ``update`` and the solver (default: all cores); bit-identical for any
        count.

    Raises
    ------
    ValueError, TypeError
        A size or thread count that is not an int or is below its minimum.

    Examples
    --------
    >>> acc = ScatterAccumulator(64, 10)
    >>> for X, y in chunks:                      # doctest: +SKIP
    ...     acc.update(X, y)
    >>> ranking = acc.rank(shrinkage="oas")      # doctest: +SKIP
    """

    # The streamed ``update`` (out-of-core inputs, iterables, checkpoints) is the passes
    # layer's job; ``_stream`` registers its entry point here when the package is
    # imported, so this layer never imports the one above it.
    _streamed_update: ClassVar[Callable[..., ScatterAccumulator | None] | None] = None

    def __init__(self, n_features: int, num_classes: int, *, n_threads: int | None = None):
        n_features = check_int(n_features, "n_features", 1)
        num_classes = check_int(num_classes, "num_classes", 2)
        core = _core.Accumulator(n_features, num_classes)
        if n_threads is not None:
            core.n_threads = check_threads(n_threads)
        self._adopt(core)

    def _adopt(self, core) -> None:
        self._core = core
        self._lock = threading.RLock()

    @classmethod
    def _wrap(cls, core) -> ScatterAccumulator:
        obj = cls.__new__(cls)
        obj._adopt(core)
        return obj

    def update(
        self,
        X: ArrayLike | PathArg | Iterable[Any],
        y: ArrayLike | PathArg | None = None,
        sample_weight: ArrayLike | PathArg | None = None,
        *,
        chunk_size: int | None = None,
        progress: bool = False,
        checkpoint: PathArg | None = None,
        checkpoint_every: int | None = None,
    ) -> ScatterAccumulator:
        """Adds rows with their class indices; all of them or, on any error, none.

        Parameters
        ----------
        X : array-like of shape (n, n_features), path, sliceable array-like or chunks
            Anything ``rank_labels`` takes; streamed inputs are never held whole.
        y : array-like of int of shape (n,) or path, optional
            Class indices in [0, num_classes). None for an iterable of chunks.
        sample_weight : array-like of shape (n,) or path, optional
            Finite, non-negative weights.
        chunk_size : int, optional
            Stream in chunks of this many rows (see ``rank_labels``).
        progress : bool, default=False
            Show a progress bar (tqdm, standard error) while streaming.
        checkpoint : path, optional
            Make the pass resumable (see ``rank_labels``).
        checkpoint_every : int, optional
            Chunks between checkpoint saves (default 1; needs ``checkpoint``).

        Returns
        -------
        self

        Raises
        ------
        ValueError, TypeError
            Invalid input anywhere in the stream; the accumulator is left unchanged.
        KeyboardInterrupt
            Ctrl-C while rows are being added; the accumulator is left unchanged.
        """
        opts = dict(chunk_size=chunk_size, checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        if y is None or any(v is not None for v in opts.values()) or not in_memory(X):
            hook = ScatterAccumulator._streamed_update
            part = stream_part(hook, self, X, y, sample_weight, progress=progress, **opts)
            if part is not None:
                self._absorb(part)
            return self
        if is_label_matrix(y):
            with self._lock:  # the class count is read and used under the lock
                rows = label_weight_rows(X, y, sample_weight, self.n_features, self.num_classes)
                self._core.update_labels(*rows)
            return self
        X, y, w = _rows(X, y, sample_weight, self.n_features, self.num_classes)
        with self._lock:
            self._core.update(X, y, w)
        return self

    def _update_rows(self, X: np.ndarray, index: np.ndarray, y: np.ndarray, w) -> None:
        """Adds rows ``X[index]`` (checked arrays, as ``_rows`` gives) without a copy."""
        with self._lock:
            self._core.update_rows(X, index, y, w)

    def _absorb(self, part: ScatterAccumulator) -> None:
        """Adds a privately built (streamed) part: adopted by an empty accumulator, else
        merged; refused inside an open pass, whose abort could not take it back."""
        with self._lock:
            part = widened(part, self.num_classes)  # grown meanwhile by another thread
            if self._core.pass_open:
                raise ValueError("a streamed update cannot join an open streaming_pass")
            if self._core.n_samples == 0:
                self._core = part._core
            else:
                self._core.merge(part._core)

    @contextlib.contextmanager
    def streaming_pass(self) -> Iterator[ScatterAccumulator]:
        """A pass: the ``update`` calls inside are committed together when the block
        ends, or all dropped if it raises. The accumulator's lock is held throughout.

        Yields
        ------
        ScatterAccumulator
            This accumulator.

        Raises
        ------
        ValueError
            A pass is already open.
        """
        with self._lock:
            self._core.begin_pass()
            try:
                yield self
            except BaseException:
                if self._core.pass_open:  # a failed commit_so_far may have closed it
                    self._core.abort_pass()
                raise
            self._core.commit_pass()

    def commit_so_far(self) -> None:
        """Inside ``streaming_pass``: commits what the pass added so far and goes on
        (for a checkpoint, which saves committed statistics).

        Raises
        ------
        ValueError
            No pass is open.
        """
        with self._lock:
            self._core.commit_pass()
            self._core.begin_pass()

    def grow_classes(self, num_classes: int) -> None:
        """Adds empty class slots, inside or outside ``streaming_pass`` (inside, what the
        pass added so far is committed first).

        Parameters
        ----------
        num_classes : int
            The new number of class slots, at least the current ``num_classes``.

        Raises
        ------
        ValueError, TypeError
            ``num_classes`` below the current count, or not an int.
        """
        with self._lock:
            open_pass = self._core.pass_open
            if open_pass:
                self._core.commit_pass()
            self._core = self._with_capacity(num_classes)._core
            if open_pass:
                self._core.begin_pass()

    def release_buffers(self) -> None:
        """Frees the work buffers ``update`` keeps between calls (not the statistics).

        Raises
        ------
        ValueError
            A pass is open.
        """
        with self._lock:
            self._core.release_buffers()

    def merge(self, other: ScatterAccumulator) -> ScatterAccumulator:
        """Adds ``other``'s statistics to this accumulator (in place) and returns it.

        Exact up to rounding (about 1e-13 relative in float64); a fixed merge order is
        bit-identical. ``acc.merge(acc)`` doubles every count.

        Parameters
        ----------
        other : ScatterAccumulator
            Of the same ``n_features`` and ``num_classes``; left unchanged.

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            Not a ScatterAccumulator; another shape, or sums that would overflow float64.
        """
        if not isinstance(other, ScatterAccumulator):
            raise TypeError(f"can only merge a ScatterAccumulator, got {type(other).__name__}")
        first, second = sorted((self, other), key=id)  # one lock order: no deadlock
        with first._lock, second._lock:
            self._core.merge(other._core)
        return self

    def take_state_of(self, other: ScatterAccumulator) -> None:
        """Replaces this accumulator's statistics by a copy of ``other``'s, keeping its
        thread count.

        Parameters
        ----------
        other : ScatterAccumulator
            Of the same ``n_features`` and ``num_classes``.

        Raises
        ------
        TypeError, ValueError
            Not a ScatterAccumulator; another ``n_features`` or ``num_classes``.
        """
        if not isinstance(other, ScatterAccumulator):
            raise TypeError(f"expected a ScatterAccumulator, got {type(other).__name__}")
        first, second = sorted((self, other), key=id)
        with first._lock, second._lock:
            if (other.n_features, other.num_classes) != (self.n_features, self.num_classes):
                raise ValueError("accumulators differ in n_features or num_classes")
            threads = self._core.n_threads
            self._core = _core.Accumulator.from_state(other._core.get_state())  # not shared
            self._core.n_threads = threads

    @property
    def n_threads(self) -> int:
        """Threads used by ``update`` and by the solver (bit-identical results for any count)."""
        return self._core.n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        value = check_threads(value)
        with self._lock:
            self._core.n_threads = value

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
            return self._core.n_samples

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) float64 weighted counts n_k (the row counts when unweighted)."""
        with self._lock:
            return self._core.class_counts

    @property
    def class_means(self) -> np.ndarray:
        """(C, d) float64 class means; rows of classes without samples are NaN."""
        with self._lock:
            return self._core.class_means()

    def within_scatter(self) -> np.ndarray:
        """The pooled within-class scatter.

        Returns
        -------
        ndarray of shape (d, d), float64
            S_w = sum_k sum_{x in k} w (x - mu_k)(x - mu_k)^T.
        """
        with self._lock:
            return self._core.within_scatter()

    def between_scatter(self) -> np.ndarray:
        """The between-class scatter.

        Returns
        -------
        ndarray of shape (d, d), float64
            S_b = sum_k n_k (mu_k - mu)(mu_k - mu)^T.
        """
        with self._lock:
            return self._core.between_scatter()

    def solve(self, shrinkage: Shrinkage = None, n_components: int = 1) -> dict[str, Any]:
        """The discriminant solution as arrays (``rank`` makes a LabelRanking of it).

        Parameters
        ----------
        shrinkage : None, "oas" or float in [0, 1]
            As for ``rank``.
        n_components : int, default=1
            As for ``rank``.

        Returns
        -------
        dict
            "directions" (d, k), "eigenvalues" (k,), "eigenvalue_sum", "centroids" (C, k),
            "order" (C,), "mean" (d,) and "shrinkage" (the value used).

        Raises
        ------
        ValueError, TypeError
            As for ``rank``.
        """
        kind, value = parse_shrinkage(shrinkage)
        n_components = check_n_components(n_components)
        with self._lock:
            return self._core.solve(kind, value, n_components)

    def get_state(self) -> dict[str, Any]:
        """The whole state as plain numpy arrays (see ``from_state``).

        Returns
        -------
        dict
            The state's arrays and scalars by name, with its format "version".
        """
        with self._lock:
            state = self._core.get_state()
        state["version"] = STATE_VERSION
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ScatterAccumulator:
        """Rebuilds an accumulator from ``get_state()``, validated.

        Parameters
        ----------
        state : dict
            As ``get_state`` returns it.

        Returns
        -------
        ScatterAccumulator

        Raises
        ------
        ValueError
            A missing key, a wrong version, a non-numeric array, shapes that disagree
            with ``n_features``/``num_classes``, or statistics that cannot be a state.
        """
        return cls._wrap(_core.Accumulator.from_state(plain_state(state)))

    def __getstate__(self):
        return self.get_state()

    def __setstate__(self, state):
        self._adopt(ScatterAccumulator.from_state(state)._core)

    def __repr__(self) -> str:
        return (
            f"ScatterAccumulator(n_features={self.n_features}, num_classes={self.num_classes}, "
            f"n_samples={self.n_samples})"
        )
