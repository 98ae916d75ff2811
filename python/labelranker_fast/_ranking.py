"""LabelRanking: the result of ranking, a small value object with a JSON form."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._inputs import is_torch_tensor, label_array, lookup_classes, to_numpy
from ._ranking_files import RankingFiles
from ._ranking_text import _canonical, check_names
from ._stability import Stability

__all__ = ["LabelRanking"]

_ARGMAX_HINT = "for logits or scores take .argmax(-1) first"


class LabelRanking(RankingFiles):
    """The order of the classes along the top discriminant direction(s).

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The original class labels, unique: bools, integers, floats, str or bytes, by the
        rule of ``rank_labels``'s ``y`` (a Python list or pandas Series is converted by it).
    order : array-like of int, shape (n_classes,)
        ``order[p]`` is the index (into ``classes``) of the class at position ``p``.
    centroids : array-like of float, shape (n_classes, n_components)
        Class centroids ``(mu_c - mu) @ W`` in the discriminant space.
    eigenvalues : array-like of float, shape (n_components,)
        Of the discriminant directions (between- over within-class variance along each).
    shrinkage : float, default=0.0
        The shrinkage intensity the ranking was computed with.
    names : sequence of str, optional
        A display name for each class (``names[c]`` names ``classes[c]``), e.g. the folder
        names of an image data set ranked by index. Saved in JSON, shown in ``repr`` and
        used by ``to_class_map`` and ``to_hf_label_maps``; ``remap`` still takes
        ``classes``.
    stability : Stability, optional
        The agreement of the orders of K disjoint folds (``folds=K``); saved in JSON.

    Attributes
    ----------
    positions : ndarray of int64, shape (n_classes,)
        Inverse of ``order``: ``positions[c]`` is the head position of class index ``c``.

    Raises
    ------
    ValueError
        Classes not unique, fewer than 2 or NaN; ``order`` not a permutation of
        0..n_classes-1; centroids or eigenvalues not finite or of the wrong shape; a
        shrinkage outside [0, 1]; names not unique, empty or not one per class.
    TypeError
        Classes of a dtype the label rule refuses; names that are not strings.
    """

    def __init__(
        self,
        classes: ArrayLike,
        order: ArrayLike,
        centroids: ArrayLike,
        eigenvalues: ArrayLike,
        shrinkage: float = 0.0,
        names: Iterable[str] | None = None,
        stability: Stability | None = None,
    ) -> None:
        classes = _canonical(label_array(classes, "classes"))
        order = np.array(order)  # copies: the arrays are frozen below, not the caller's
        centroids = np.array(centroids, dtype=np.float64)
        eigenvalues = np.array(eigenvalues, dtype=np.float64)
        if classes.ndim != 1 or classes.size < 2:
            raise ValueError("classes must be a 1-D sequence of at least 2 labels")
        if np.unique(classes).size != classes.size:  # by value: 0.0 == -0.0
            raise ValueError("classes must be unique")
        n = classes.size
        if order.dtype.kind not in "iu" or order.shape != (n,):
            raise ValueError(f"order must be {n} integers")
        if not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"order must be a permutation of 0..{n - 1}")
        if centroids.ndim == 1:
            centroids = centroids[:, None]
        if centroids.ndim != 2 or centroids.shape[0] != n or not np.isfinite(centroids).all():
            raise ValueError(f"centroids must be finite with shape ({n}, n_components)")
        if eigenvalues.shape != (centroids.shape[1],) or not np.isfinite(eigenvalues).all():
            raise ValueError("eigenvalues must be finite, one per centroid column")
        shrinkage = float(shrinkage)
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")

        self.classes = classes
        self.order = order.astype(np.int64)
        self.positions = np.empty(n, dtype=np.int64)
        self.positions[self.order] = np.arange(n, dtype=np.int64)
        self.centroids = centroids
        self.eigenvalues = eigenvalues
        self.shrinkage = shrinkage
        self.names = None if names is None else check_names(names, n)
        if stability is not None and (
            not isinstance(stability, Stability) or stability.position_interval.shape != (n, 2)
        ):
            raise TypeError(f"stability must be a Stability of {n} classes, or None")
        self.stability = stability
        self._freeze()

    def _freeze(self) -> None:
        for a in (self.classes, self.order, self.positions, self.centroids, self.eigenvalues):
            a.flags.writeable = False
        self._tables: dict[Any, Any] = {}  # torch tables by device: copied once, not per call

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_tables", None)  # device tensors stay in this process
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._freeze()

    # ------------------------------------------------------------------ views
    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return int(self.classes.size)

    @property
    def n_components(self) -> int:
        """Number of discriminant directions (centroid columns)."""
        return int(self.centroids.shape[1])

    @property
    def ranked_classes(self) -> np.ndarray:
        """``classes[order]``: the label sitting at each position."""
        return self.classes[self.order]

    @property
    def ranked_names(self) -> tuple[str, ...] | None:
        """``names`` in position order (None without names)."""
        return None if self.names is None else tuple(self.names[c] for c in self.order)

    def with_names(self, names: Iterable[str] | None) -> LabelRanking:
        """The same ranking with class names (None: without).

        Parameters
        ----------
        names : sequence of str, or None
            One unique, non-empty name per class, in the order of ``classes`` (for a
            ranking of folder indices: ``ImageFolder.classes``).

        Returns
        -------
        LabelRanking

        Raises
        ------
        TypeError, ValueError
            As for the constructor's ``names``.
        """
        return type(self)(
            self.classes,
            self.order,
            self.centroids,
            self.eigenvalues,
            self.shrinkage,
            names,
            self.stability,
        )

    def __repr__(self) -> str:
        labels = self.ranked_names or self.ranked_classes[:8].tolist()
        shown = ", ".join(map(str, labels[:8]))
        more = ", ..." if self.n_classes > 8 else ""
        return f"LabelRanking(n_classes={self.n_classes}, ranked=[{shown}{more}])"

    def __eq__(self, other) -> bool:
        if not isinstance(other, LabelRanking):
            return NotImplemented
        return (
            np.array_equal(self.classes, other.classes)
            and np.array_equal(self.order, other.order)
            and np.array_equal(self.centroids, other.centroids)
            and np.array_equal(self.eigenvalues, other.eigenvalues)
            and self.shrinkage == other.shrinkage
            and self.names == other.names
            and self.stability == other.stability
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking: unhashable, as numpy

    # ------------------------------------------------------------ remapping
    def remap(self, y: Any) -> Any:
        """Original labels -> head positions.

        Parameters
        ----------
        y : array-like or torch.Tensor of shape () or (n,)
            Labels among ``classes``, compared by value (as in ``rank_labels``: 1.0 matches
            the class 1, 1.7 matches nothing). A torch tensor must have an integer dtype
            (float and bool tensors raise TypeError) and the ranking integer classes.

        Returns
        -------
        ndarray of int64, or a torch.Tensor of int64 on ``y``'s device (computed there).

        Raises
        ------
        ValueError
            Labels not among ``classes`` or of more than one dimension: on the host for
            numpy and CPU tensors, with an asynchronous device-side assert (no host
            synchronisation, a RuntimeError at the next one) on CUDA tensors.
        TypeError
            A float or bool tensor, or a tensor for a ranking of non-integer classes.
        """
        if is_torch_tensor(y):
            return self._module_on(y.device, "remap").remap(y)
        labels = label_array(y, "labels")
        if labels.ndim > 1:
            raise ValueError(f"labels must be 0-D or 1-D, got shape {labels.shape}; {_ARGMAX_HINT}")
        index = lookup_classes(
            self.classes, labels, "labels not among the ranked classes", name="labels"
        )
        return self.positions[index]

    def unmap(self, positions: Any) -> Any:
        """Head positions -> original labels (the inverse of ``remap``).

        Parameters
        ----------
        positions : array-like of int or integer torch.Tensor, any shape
            Positions in [0, n_classes) (any shape, e.g. top-k predictions). Floats and
            bools raise TypeError; out-of-range positions ValueError (checked as in
            ``remap``), never wrapped around.

        Returns
        -------
        ndarray of ``classes``' dtype, or an int64 torch.Tensor on the same device (integer
        classes only).

        Raises
        ------
        TypeError
            Float or bool positions; a tensor for a ranking of non-integer classes.
        ValueError
            Positions outside [0, n_classes) (on CUDA, a device-side assert).
        """
        if is_torch_tensor(positions):
            return self._module_on(positions.device, "unmap").unmap(positions)
        pos = to_numpy(positions)
        if pos.dtype.kind not in "iu":
            raise TypeError(f"positions must be integers, got dtype {pos.dtype}; {_ARGMAX_HINT}")
        if pos.size and (pos.min() < 0 or pos.max() >= self.n_classes):
            raise ValueError(f"positions must be in [0, {self.n_classes})")
        return self.ranked_classes[pos]

    def _module_on(self, device, what: str):
        """The ranking's LabelRankingModule on ``device``, built and copied there on first
        use only: a host to device copy synchronises, and ``remap`` may run in every step."""
        key = str(device)
        if key not in self._tables:
            self._tables[key] = self._build_module(what).to(device)
        return self._tables[key]

    def _build_module(self, what: str):
        c = self.classes
        if c.dtype.kind not in "iu" or (c.dtype.kind == "u" and c.max() > np.iinfo(np.int64).max):
            raise TypeError(
                f"{what} of a torch tensor needs integer classes that fit int64; "
                f"this ranking has classes of dtype {c.dtype}: use numpy arrays"
            )
        from ._ranking_torch import LabelRankingModule

        return LabelRankingModule(c.astype(np.int64), self.order)

    # ---------------------------------------------------------- persistence
    def plot(self, ax: Any = None, max_names: int = 50) -> Any:
        """The paper's Figure 3: the classes along the first discriminant axis.

        One component: each class at its position with its centroid, the band of one
        within-class standard deviation either side (1 in the units of W^T S W = I), its
        name, and its interval of positions over the folds when the ranking has a
        ``stability``. Two or more: the centroids in the first two directions, joined in
        the order's path.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw (default: a new figure).
        max_names : int, default=50
            Names are written for at most this many classes.

        Returns
        -------
        matplotlib Axes

        Raises
        ------
        ImportError
            matplotlib is not installed.
        """
        from ._plot import plot_ranking

        return plot_ranking(self, ax, max_names)

    def as_module(self):
        """The lookup tables as a ``torch.nn.Module`` (``LabelRankingModule``), on the CPU.

        Its tables are buffers, moved by ``.to(device)``; ``remap(y)``, ``unmap(p)`` and
        ``unmap_logits(logits)`` then run where the tensors are, with no host copy.

        Returns
        -------
        LabelRankingModule

        Raises
        ------
        TypeError
            Classes that are not integers (tensors hold integer labels only).
        ImportError
            torch is not installed.
        """
        return self._build_module("as_module")

    def unmap_logits(self, logits: Any) -> Any:
        """Score columns from head positions back to class order.

        Parameters
        ----------
        logits : array-like or torch.Tensor of shape (..., n_classes)
            Column p scores the class at position p (a head trained on ``remap``-ed targets).

        Returns
        -------
        ndarray or torch.Tensor (on the same device) of the same shape
            Column k scores ``classes[k]``: it is column ``positions[k]`` of ``logits``.

        Raises
        ------
        ValueError
            A last dimension other than n_classes.
        TypeError
            A tensor for a ranking of non-integer classes.
        """
        if is_torch_tensor(logits):
            return self._module_on(logits.device, "unmap_logits").unmap_logits(logits)
        scores = to_numpy(logits)
        if scores.ndim < 1 or scores.shape[-1] != self.n_classes:
            raise ValueError(
                f"logits must have {self.n_classes} columns (one per position), "
                f"got shape {scores.shape}"
            )
        return scores[..., self.positions]
