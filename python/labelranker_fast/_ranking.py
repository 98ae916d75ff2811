"""LabelRanking: the result of ranking, a small value object with a JSON form."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ._inputs import is_torch_tensor, lookup_classes

__all__ = ["LabelRanking"]

_FORMAT = "labelranker_fast/ranking"
_VERSION = 1


class LabelRanking:
    """The order of the classes along the top discriminant direction(s).

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The original class labels (ints, floats or strings), unique.
    order : array-like of int, shape (n_classes,)
        ``order[p]`` is the index (into ``classes``) of the class at position ``p``.
    centroids : array-like of float, shape (n_classes, n_components)
        Class centroids ``(mu_c - mu) @ W`` in the discriminant space.
    eigenvalues : array-like of float, shape (n_components,)
        Eigenvalues of the discriminant directions (between-class variance over
        within-class variance along each).
    shrinkage : float, default=0.0
        The shrinkage intensity the ranking was computed with.

    Attributes
    ----------
    positions : ndarray of int64, shape (n_classes,)
        Inverse of ``order``: ``positions[c]`` is the head position of class index ``c``.
    ranked_classes : ndarray of shape (n_classes,)
        ``classes[order]``: the label sitting at each position.
    """

    def __init__(self, classes, order, centroids, eigenvalues, shrinkage: float = 0.0):
        classes = np.asarray(classes)
        order = np.asarray(order)
        centroids = np.asarray(centroids, dtype=np.float64)
        eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        if classes.ndim != 1 or classes.size < 2:
            raise ValueError("classes must be a 1-D sequence of at least 2 labels")
        if classes.dtype.kind not in "iuUSf":
            raise TypeError(f"classes must be ints, floats or strings, got dtype {classes.dtype}")
        if np.unique(classes).size != classes.size:
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
        for a in (self.classes, self.order, self.positions, self.centroids, self.eigenvalues):
            a.flags.writeable = False

    # ------------------------------------------------------------------ views
    @property
    def n_classes(self) -> int:
        return int(self.classes.size)

    @property
    def n_components(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def ranked_classes(self) -> np.ndarray:
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

    __hash__ = None

    # ------------------------------------------------------------ remapping
    def remap(self, y):
        """Original labels -> head positions.

        numpy (or anything array-like) in, int64 numpy out; a torch tensor in, a torch
        tensor on the same device out (computed there, no host round trip).
        """
        if is_torch_tensor(y):
            return self._remap_torch(y)
        index = lookup_classes(self.classes, y, "labels not among the ranked classes")
        return self.positions[index]

    def unmap(self, positions):
        """Head positions -> original labels (the inverse of ``remap``)."""
        if is_torch_tensor(positions):
            if self.classes.dtype.kind not in "iu":
                raise TypeError("unmap of a torch tensor needs integer classes")
            import torch

            table = torch.from_numpy(self.ranked_classes.astype(np.int64)).to(positions.device)
            return table[positions.long()]
        pos = np.asarray(positions)
        if pos.dtype.kind not in "iu":
            raise TypeError(f"positions must be integers, got dtype {pos.dtype}")
        if pos.size and (pos.min() < 0 or pos.max() >= self.n_classes):
            raise ValueError(f"positions must be in [0, {self.n_classes})")
        return self.ranked_classes[pos]

    def _remap_torch(self, y):
        import torch

        if self.classes.dtype.kind not in "iu":
            raise TypeError("remap of a torch tensor needs integer classes")
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor, got {y.dtype}")
        classes = self.classes.astype(np.int64)
        positions = torch.from_numpy(self.positions.copy()).to(y.device)
        if np.array_equal(classes, np.arange(self.n_classes)):
            if y.device.type == "cpu" and y.numel() and (
                int(y.min()) < 0 or int(y.max()) >= self.n_classes
            ):
                raise ValueError(f"labels must be in [0, {self.n_classes})")
            return positions[y.long()]
        sorter = np.argsort(classes, kind="stable")
        sorted_classes = torch.from_numpy(classes[sorter]).to(y.device)
        idx = torch.searchsorted(sorted_classes, y.long()).clamp_(max=self.n_classes - 1)
        if y.device.type == "cpu" and not bool((sorted_classes[idx] == y).all()):
            raise ValueError("labels not among the ranked classes")
        return positions[torch.from_numpy(sorter).to(y.device)[idx]]

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "classes": self.classes.tolist(),
            "order": self.order.tolist(),
            "centroids": self.centroids.tolist(),
            "eigenvalues": self.eigenvalues.tolist(),
            "shrinkage": self.shrinkage,
        }

    @classmethod
    def from_dict(cls, data) -> "LabelRanking":
        if not isinstance(data, dict):
            raise ValueError("a ranking must be a JSON object")
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a ranking file: 'format' must be {_FORMAT!r}")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported ranking version {data.get('version')!r}")
        missing = [k for k in ("classes", "order", "centroids", "eigenvalues") if k not in data]
        if missing:
            raise ValueError(f"ranking is missing {missing}")
        try:
            return cls(
                classes=data["classes"],
                order=data["order"],
                centroids=data["centroids"],
                eigenvalues=data["eigenvalues"],
                shrinkage=data.get("shrinkage", 0.0),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed ranking: {exc}") from exc

    def to_json(self, path: str | os.PathLike) -> None:
        """Writes the ranking as JSON (atomically: a temporary file, then a rename)."""
        _write_atomic(os.fspath(path), json.dumps(self.to_dict(), indent=1) + "\n")

    def to_class_map(self, path: str | os.PathLike, names=None) -> None:
        """Writes a timm class-map file: line p holds the class at head position p.

        timm's ``train.py --class-map PATH`` (and ``timm.data.create_dataset(...,
        class_map=PATH)``) then give every image folder its ranked position as target.
        Classes are written with ``str``; written atomically.

        names : sequence of str, optional
            The folder name of each class index, e.g. ``ImageFolder.classes``, for a
            ranking of class indices 0..C-1 (what ``extract_and_rank`` returns): timm
            matches lines against folder names, so indices alone would match nothing.
        """
        if names is None:
            names = [str(c) for c in self.ranked_classes.tolist()]
        else:
            names = list(names)
            if self.classes.dtype.kind not in "iu" or not np.array_equal(
                    self.classes, np.arange(self.n_classes)):
                raise ValueError("names= needs a ranking of class indices 0..C-1; this one "
                                 f"ranks {self.classes[:5].tolist()}...")
            if len(names) != self.n_classes:
                raise ValueError(f"names has {len(names)} entries but the ranking has "
                                 f"{self.n_classes} classes")
            if not all(isinstance(n, str) for n in names):
                raise TypeError("names must be strings (folder names)")
            names = [names[c] for c in self.order.tolist()]
        bad = [n for n in names if not n.strip() or "\n" in n or "\r" in n or n != n.strip()]
        if bad:
            raise ValueError(f"class names cannot be written one per line: {bad[:3]!r}")
        _write_atomic(os.fspath(path), "\n".join(names) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "LabelRanking":
        """Reads and validates a ranking written by ``to_json``."""
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{os.fspath(path)} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def _write_atomic(path: str, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path``, then renames it over ``path``."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
