"""LabelRanking: the result of ranking, a small value object with a JSON form."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Union

import numpy as np
from numpy.typing import ArrayLike

from ._inputs import is_torch_tensor, label_array, lookup_classes, to_numpy
from ._io import read_json, write_json, write_text
from ._ranking_text import (
    _canonical,
    _check_lines,
    _class_name,
    _classes_from_json,
    _classes_to_json,
)

__all__ = ["LabelRanking"]

_FORMAT = "labelranker_fast/ranking"
_VERSION = 2  # 2 records the classes' dtype; files of version 1 are still read
_ARGMAX_HINT = "for logits or scores take .argmax(-1) first"
PathArg = Union[str, "os.PathLike[str]", bytes]  # a file path, as the readers take it


class LabelRanking:
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

    Attributes
    ----------
    positions : ndarray of int64, shape (n_classes,)
        Inverse of ``order``: ``positions[c]`` is the head position of class index ``c``.

    Raises
    ------
    ValueError
        Classes not unique, fewer than 2 or NaN; ``order`` not a permutation of
        0..n_classes-1; centroids or eigenvalues not finite or of the wrong shape; a
        shrinkage outside [0, 1].
    TypeError
        Classes of a dtype the label rule refuses.
    """

    def __init__(
        self,
        classes: ArrayLike,
        order: ArrayLike,
        centroids: ArrayLike,
        eigenvalues: ArrayLike,
        shrinkage: float = 0.0,
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

    def __repr__(self) -> str:
        shown = ", ".join(map(str, self.ranked_classes[:8].tolist()))
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
            return self._remap_torch(y)
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
            _torch_checked(positions, "positions")
            table = self._table(
                positions.device, "ranked", lambda: self._int_classes("unmap")[self.order]
            )
            index = positions.long()
            _require(
                ((index >= 0) & (index < self.n_classes)).all(),
                f"positions must be in [0, {self.n_classes})",
            )
            return table[index]
        pos = to_numpy(positions)
        if pos.dtype.kind not in "iu":
            raise TypeError(f"positions must be integers, got dtype {pos.dtype}; {_ARGMAX_HINT}")
        if pos.size and (pos.min() < 0 or pos.max() >= self.n_classes):
            raise ValueError(f"positions must be in [0, {self.n_classes})")
        return self.ranked_classes[pos]

    def _int_classes(self, what: str) -> np.ndarray:
        """The classes as int64 for a torch lookup table (TypeError if they are not ints)."""
        c = self.classes
        if c.dtype.kind not in "iu" or (c.dtype.kind == "u" and c.max() > np.iinfo(np.int64).max):
            raise TypeError(
                f"{what} of a torch tensor needs integer classes that fit int64; "
                f"this ranking has classes of dtype {c.dtype}: use numpy arrays"
            )
        return c.astype(np.int64)

    def _table(self, device, name: str, make):
        """``make()`` as a tensor on ``device``, copied there on first use only: a host to
        device copy synchronises, and ``remap`` may run inside every training step."""
        key = (name, str(device))
        if key not in self._tables:
            import torch

            self._tables[key] = torch.from_numpy(np.array(make())).to(device)
        return self._tables[key]

    def _remap_torch(self, y):
        _torch_checked(y, "labels")
        if y.ndim > 1:
            raise ValueError(
                f"labels must be a 0-D or 1-D tensor, got shape {tuple(y.shape)}; {_ARGMAX_HINT}"
            )
        classes, n = self._int_classes("remap"), self.n_classes
        positions = self._table(y.device, "positions", lambda: self.positions)
        labels = y.long()
        if np.array_equal(classes, np.arange(n)):
            _require(
                ((labels >= 0) & (labels < n)).all(),
                f"labels must be among the ranked classes 0..{n - 1}",
            )
            return positions[labels]
        import torch

        sorter = np.argsort(classes, kind="stable")
        sorted_classes = self._table(y.device, "sorted", lambda: classes[sorter])
        idx = torch.searchsorted(sorted_classes, labels).clamp_(max=n - 1)
        _require((sorted_classes[idx] == labels).all(), "labels not among the ranked classes")
        return positions[self._table(y.device, "sorter", lambda: sorter)[idx]]

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """The ranking as plain JSON types (format version 2: the classes' dtype recorded).

        Returns
        -------
        dict
            The fields ``from_dict`` reads, "format" and "version" among them.
        """
        dtype, classes = _classes_to_json(self.classes)
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "classes_dtype": dtype,
            "classes": classes,
            "order": self.order.tolist(),
            "centroids": self.centroids.tolist(),
            "eigenvalues": self.eigenvalues.tolist(),
            "shrinkage": self.shrinkage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelRanking:
        """The ranking ``data`` holds (as ``to_dict`` makes it), validated; ValueError if
        not one. Version 1 did not record the classes' dtype: its classes are read by the
        label rule (ints, floats or strings; integers above 2**63 as uint64).

        Parameters
        ----------
        data : dict
            As ``to_dict`` (or ``json.load`` of a ``to_json`` file) makes it.

        Returns
        -------
        LabelRanking

        Raises
        ------
        ValueError
            ``data`` is not a ranking: wrong format or version, missing or malformed fields.
        """
        if not isinstance(data, dict):
            raise ValueError("a ranking must be a JSON object")
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a ranking file: 'format' must be {_FORMAT!r}")
        version = data.get("version")
        if type(version) is not int or version not in (1, 2):
            raise ValueError(f"unsupported ranking version {version!r}")
        missing = [k for k in ("classes", "order", "centroids", "eigenvalues") if k not in data]
        if version == 2 and "classes_dtype" not in data:
            missing.append("classes_dtype")
        if missing:
            raise ValueError(f"ranking is missing {missing}")
        try:
            dtype = data["classes_dtype"] if version == 2 else None
            classes = _classes_from_json(data["classes"], dtype)
            return cls(
                classes=classes,
                order=data["order"],
                centroids=data["centroids"],
                eigenvalues=data["eigenvalues"],
                shrinkage=data.get("shrinkage", 0.0),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"malformed ranking: {exc}") from exc

    def to_json(self, path: PathArg) -> None:
        """Writes the ranking as JSON, atomically (see ``labelranker_fast._io``).

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to write.

        Raises
        ------
        TypeError, FileNotFoundError, ValueError
            As ``ScatterAccumulator.save``: not a path, no such folder, not writable.
        """
        write_json(path, self.to_dict())

    def to_class_map(self, path: PathArg, names: Iterable[str] | None = None) -> None:
        """Writes a timm class-map file: line p holds the name of the class at position p.

        timm's ``train.py --class-map PATH`` (or ``timm.data.create_dataset(..., class_map=PATH)``)
        then gives every image folder its ranked position as target (written atomically, UTF-8).

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to write.
        names : sequence of str, optional
            Folder name of each class index (``ImageFolder.classes``) of a ranking of
            indices 0..C-1 (``extract_and_rank``'s); required for integer classes, which
            timm would match against folder names wrongly. Others are written as text.

        Raises
        ------
        ValueError
            Integer classes without ``names``; names that are duplicated, empty, padded
            with spaces, span lines or are not UTF-8; ``names`` for a ranking not of
            indices 0..C-1 or of the wrong length. Nothing is written then.
        TypeError
            ``names`` is one string, or holds something other than strings.
        """
        if names is None:
            if self.classes.dtype.kind in "iu":
                raise ValueError(
                    "this ranking's classes are integers: timm matches class-map lines "
                    "against folder names, and ImageFolder numbers its folders in sorted-name "
                    "order ('10' before '2'), so a map of numbers would match no folders or "
                    "the wrong ones; pass names=dataset.classes (the folder name of each "
                    "class index), or rank the folder names themselves"
                )
            lines = [_class_name(c) for c in self.ranked_classes]
        else:
            if isinstance(names, (str, bytes)):
                raise TypeError("names must be a sequence of folder names, not one string")
            names = list(names)
            if self.classes.dtype.kind not in "iu" or not np.array_equal(
                self.classes, np.arange(self.n_classes)
            ):
                raise ValueError(
                    "names= needs a ranking of class indices 0..C-1; this one "
                    f"ranks {self.classes[:5].tolist()}..."
                )
            if len(names) != self.n_classes:
                raise ValueError(
                    f"names has {len(names)} entries but the ranking has {self.n_classes} classes"
                )
            if not all(isinstance(n, str) for n in names):
                raise TypeError("names must be strings (folder names)")
            lines = [str(names[c]) for c in self.order.tolist()]
        _check_lines(lines)
        write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def from_json(cls, path: PathArg) -> LabelRanking:
        """Reads and validates a ranking written by ``to_json`` (format 1 or 2).

        Parameters
        ----------
        path : str, os.PathLike or bytes
            The file to read.

        Returns
        -------
        LabelRanking

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            Not a valid ranking file (not JSON, nested too deeply, wrong format or
            version, inconsistent fields, a directory).
        """
        return cls.from_dict(read_json(path, "ranking"))


def _torch_checked(t, name: str) -> None:
    """TypeError unless ``t`` has an integer dtype that ``long()`` keeps."""
    import torch

    if t.dtype.is_floating_point or t.is_complex() or t.dtype in (torch.bool, torch.uint64):
        hint = _ARGMAX_HINT if t.dtype.is_floating_point else "convert to int64"
        raise TypeError(f"{name} must be an integer tensor, got {t.dtype}; {hint}")


def _require(condition, message: str) -> None:
    """ValueError(message) unless ``condition`` (a 0-D bool tensor) holds: on the host,
    except on CUDA (``device_assert``, so a training step never waits for the device)."""
    if condition.device.type == "cuda":
        device_assert(condition, message)
    elif not bool(condition):
        raise ValueError(message)


def device_assert(condition, message: str) -> None:
    """An asynchronous device-side assert: a failure surfaces at the next synchronisation
    as a RuntimeError carrying ``message`` (and, on CUDA, ends the CUDA context)."""
    import torch

    torch._assert_async(condition, message)
