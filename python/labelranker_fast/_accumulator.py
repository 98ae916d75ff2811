"""ScatterAccumulator: the streaming statistics of LDA, around the compiled engine."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from . import _core
from ._inputs import (
    as_class_indices,
    as_features,
    as_weights,
    check_int,
    check_n_components,
    parse_shrinkage,
)
from ._ranking import LabelRanking
from ._sources import in_memory
from ._stream import stream

__all__ = ["ScatterAccumulator"]

_STATE_VERSION = 1
_STATE_KEYS = ("n_features", "num_classes", "n_rows", "counts", "shifts", "sums", "m2")


class ScatterAccumulator:
    """Per-class counts and means and the pooled within-class scatter, in one pass.

    Statistics are kept in float64 whatever the input precision; rows are shifted by a
    per-class estimate of their mean before their outer products are taken, so features
    with a large mean and a small spread keep their accuracy. Accumulators of the same
    shape merge exactly, in any order (``merge``), and pickle as plain arrays.

    Parameters
    ----------
    n_features : int
        Dimension d of the feature vectors.
    num_classes : int
        Number of classes C; labels given to ``update`` are class indices in [0, C).
    n_threads : int, optional
        Worker threads for ``update`` (default: all cores). The statistics are
        bit-identical for every thread count: rows are processed in fixed blocks whose
        results are added in order.

    Examples
    --------
    >>> acc = ScatterAccumulator(64, 10)
    >>> for X, y in chunks:                      # doctest: +SKIP
    ...     acc.update(X, y)
    >>> ranking = acc.rank(shrinkage="oas")      # doctest: +SKIP
    """

    def __init__(self, n_features: int, num_classes: int, *, n_threads=None):
        n_features = check_int(n_features, "n_features", 1)
        num_classes = check_int(num_classes, "num_classes", 2)
        self._core = _core.Accumulator(n_features, num_classes)
        if n_threads is not None:
            self._core.num_threads = check_int(n_threads, "n_threads", 1)

    # ------------------------------------------------------------- updating
    def update(self, X, y=None, sample_weight=None, *, chunk_size=None, progress=False,
               checkpoint=None, checkpoint_every=None):
        """Adds the rows of ``X`` (n, d) with class indices ``y`` (n,) in [0, num_classes).

        ``X`` may be a numpy array, anything ``np.asarray`` accepts, or a torch tensor (a
        C-contiguous float32/float64 array is used in place); or, streamed in chunks of
        ``chunk_size`` rows: an ``np.memmap``, a ``.npy`` path, an array-like with row
        slicing (h5py, zarr), or with ``y=None`` an iterable of ``(X, y)`` or
        ``(X, y, sample_weight)`` chunks. ``sample_weight`` (n,) must be finite and
        non-negative. Either all rows are added or, on invalid input anywhere in the
        stream, none (the accumulator is left unchanged and ValueError/TypeError is
        raised). ``progress`` shows a progress bar while streaming; ``checkpoint`` and
        ``checkpoint_every`` make the pass resumable (see ``rank_labels``). Returns ``self``.
        """
        if y is None or chunk_size is not None or checkpoint is not None or not in_memory(X):
            return self._update_streamed(X, y, sample_weight, chunk_size, progress,
                                         checkpoint, checkpoint_every)
        X = as_features(X)
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"X has {X.shape[1]} features but the accumulator was created with "
                f"n_features={self.n_features}"
            )
        n = X.shape[0]
        y = as_class_indices(y, n, self.num_classes)
        w = as_weights(sample_weight, n)
        self._core.update(X, y, w)
        return self

    def _update_streamed(self, X, y, sample_weight, chunk_size, progress, checkpoint=None,
                         checkpoint_every=None):
        # Into a fresh accumulator first, so a failure midway leaves self unchanged.
        def make(n_features, num_classes, n_threads):
            if n_features != self.n_features:
                raise ValueError(
                    f"X has {n_features} features but the accumulator was created with "
                    f"n_features={self.n_features}"
                )
            return ScatterAccumulator(n_features, num_classes, n_threads=self.n_threads)

        part, _ = stream(X, y, sample_weight, num_classes=self.num_classes,
                         n_threads=self.n_threads, chunk_size=chunk_size, progress=progress,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                         allow_empty=True, make_accumulator=make)
        if part is None:  # no rows: nothing to add
            return self
        if self.n_samples == 0:
            self._core = part._core  # bit-identical to having streamed into self
        else:
            self.merge(part)
        return self

    def merge(self, other: "ScatterAccumulator") -> "ScatterAccumulator":
        """Adds ``other``'s statistics to this accumulator (in place) and returns it."""
        if not isinstance(other, ScatterAccumulator):
            raise TypeError(f"can only merge a ScatterAccumulator, got {type(other).__name__}")
        self._core.merge(other._core)
        return self

    # ------------------------------------------------------------ statistics
    @property
    def n_threads(self) -> int:
        """Threads used by ``update`` and by the solver's BLAS calls."""
        return self._core.num_threads

    @n_threads.setter
    def n_threads(self, value) -> None:
        self._core.num_threads = check_int(value, "n_threads", 1)

    @property
    def n_features(self) -> int:
        return self._core.n_features

    @property
    def num_classes(self) -> int:
        return self._core.num_classes

    @property
    def n_samples(self) -> int:
        """Number of rows accumulated (whatever their weights)."""
        return self._core.n_rows

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) float64 weighted counts n_k (the row counts when unweighted)."""
        return self._core.counts

    @property
    def class_means(self) -> np.ndarray:
        """(C, d) float64 class means; rows of classes without samples are NaN."""
        return self._core.class_means()

    def within_scatter(self) -> np.ndarray:
        """(d, d) S_w = sum_k sum_{x in k} w (x - mu_k)(x - mu_k)^T."""
        return self._core.within_scatter()

    def between_scatter(self) -> np.ndarray:
        """(d, d) S_b = sum_k n_k (mu_k - mu)(mu_k - mu)^T."""
        return self._core.between_scatter()

    # --------------------------------------------------------------- solving
    def _solve(self, shrinkage, n_components) -> dict:
        kind, value = parse_shrinkage(shrinkage)
        return self._core.solve(kind, value, check_n_components(n_components))

    def rank(self, shrinkage=None, n_components: int = 1, classes=None) -> LabelRanking:
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
        """
        return self._ranking_from_result(self._solve(shrinkage, n_components), classes)

    def _ranking_from_result(self, result: dict, classes=None) -> LabelRanking:
        """The LabelRanking of a _solve() result."""
        if classes is None:
            classes = np.arange(self.num_classes)
        return LabelRanking(
            classes=classes,
            order=result["order"],
            centroids=result["centroids"],
            eigenvalues=result["eigenvalues"],
            shrinkage=result["shrinkage"],
        )

    # --------------------------------------------------------- class slots
    def _with_state(self, **changes) -> "ScatterAccumulator":
        state = self.get_state()
        state.update(changes)
        out = ScatterAccumulator.from_state(state)
        out.n_threads = self.n_threads
        return out

    def _with_capacity(self, num_classes: int) -> "ScatterAccumulator":
        """A copy with ``num_classes`` class slots; the new ones are empty."""
        state = self.get_state()
        extra = num_classes - self.num_classes
        return self._with_state(
            num_classes=num_classes,
            counts=np.concatenate([state["counts"], np.zeros(extra)]),
            shifts=np.vstack([state["shifts"], np.zeros((extra, self.n_features))]),
            sums=np.vstack([state["sums"], np.zeros((extra, self.n_features))]),
        )

    def _select_classes(self, order) -> "ScatterAccumulator":
        """A copy whose class k is this one's class ``order[k]`` (other classes must be
        empty: their rows would be lost)."""
        state = self.get_state()
        order = np.asarray(order, dtype=np.int64)
        dropped = np.setdiff1d(np.arange(self.num_classes), order)
        if np.any(state["counts"][dropped] != 0):
            raise ValueError("cannot drop classes that have samples")
        return self._with_state(
            num_classes=order.size,
            counts=state["counts"][order],
            shifts=state["shifts"][order],
            sums=state["sums"][order],
        )

    # ----------------------------------------------------------- persistence
    def get_state(self) -> dict:
        """The whole state as plain numpy arrays (see ``from_state``)."""
        state = self._core.get_state()
        state["version"] = _STATE_VERSION
        return state

    @classmethod
    def from_state(cls, state) -> "ScatterAccumulator":
        """Rebuilds an accumulator from ``get_state()`` (validated)."""
        if not isinstance(state, dict) and not hasattr(state, "keys"):
            raise ValueError("state must be a mapping of arrays")
        if _state_int(state.get("version", -1), "version") != _STATE_VERSION:
            raise ValueError(f"unsupported accumulator state version {state.get('version')!r}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"accumulator state is missing {missing}")
        plain = {}
        for k in _STATE_KEYS:
            if k in ("n_features", "num_classes", "n_rows"):
                plain[k] = _state_int(state[k], k)
            else:
                arr = np.asarray(state[k])
                if arr.dtype.kind not in "fiu":
                    raise ValueError(f"accumulator state {k!r} must be numeric, got dtype {arr.dtype}")
                plain[k] = np.ascontiguousarray(arr, dtype=np.float64)
        # Shapes are checked here, before the engine allocates what the scalars claim.
        d, c = plain["n_features"], plain["num_classes"]
        want = {"counts": (c,), "shifts": (c, d), "sums": (c, d), "m2": (d, d)}
        for k, shape in want.items():
            if plain[k].shape != shape:
                raise ValueError(f"accumulator state {k!r} has shape {plain[k].shape}, expected "
                                 f"{shape} for n_features={d}, num_classes={c}")
        obj = cls.__new__(cls)
        obj._core = _core.Accumulator.from_state(plain)
        return obj

    def save(self, path: str | os.PathLike) -> None:
        """Writes the state to an ``.npz`` file: arrays only (no pickled code), written to a
        temporary file and renamed over ``path``, so a crash never leaves a torn file."""
        write_npz(path, self.get_state())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ScatterAccumulator":
        """Reads a file written by ``save``; malformed, truncated or inconsistent files
        raise ValueError (nothing in them is ever executed)."""
        return cls.from_state(read_npz(path, "accumulator"))

    def __getstate__(self):
        return self.get_state()

    def __setstate__(self, state):
        self._core = ScatterAccumulator.from_state(state)._core

    def __repr__(self) -> str:
        return (
            f"ScatterAccumulator(n_features={self.n_features}, num_classes={self.num_classes}, "
            f"n_samples={self.n_samples})"
        )


def _state_int(value, name: str) -> int:
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "iu":
        raise ValueError(f"accumulator state {name!r} must be an integer scalar, got {value!r}")
    return int(arr)


def write_npz(path, arrays: dict) -> None:
    """``np.savez`` to a temporary file beside ``path``, then an atomic rename."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_npz(path, what: str) -> dict:
    """The arrays of an ``.npz`` file, with any reading failure as a ValueError."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path!r} is not a readable {what} file: {exc}") from exc
