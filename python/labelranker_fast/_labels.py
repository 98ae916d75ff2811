"""Labels to class indices: for a whole label vector, or for a stream of chunks.

Three encoders share one interface: ``classes`` (the labels known so far), ``capacity``
(the number of class slots an accumulator needs), ``encode(labels, n_rows)`` (int64
indices for one chunk) and ``finish(acc)`` (the final accumulator and its classes).
"""

from __future__ import annotations

import numpy as np

from . import _pages
from ._inputs import (
    as_class_indices,
    check_int,
    common_label_dtype,
    exact_cast,
    label_array,
    lookup_classes,
)
from ._multilabel import check_label_weights, is_label_matrix

__all__ = ["ClassIndices", "SortedClasses", "DiscoveredClasses"]

# Integer labels spanning at most this many values (or 4x the rows) are encoded through a
# lookup table in O(n) instead of a sort.
_TABLE_SPAN = 1 << 22
_SCAN_ROWS = 1 << 20  # rows of a label file read at a time


def _check_label_array(labels, n_rows: int | None, name: str = "y") -> np.ndarray:
    """``labels`` as a 1-D label array (one rule for every path: see ``label_array``)."""
    labels = label_array(labels, name)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {labels.shape}")
    if n_rows is not None and labels.shape[0] != n_rows:
        raise ValueError(f"{name} has {labels.shape[0]} entries but X has {n_rows} rows")
    return labels


def _cast(labels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Labels in ``dtype``, which ``common_label_dtype`` chose to hold them exactly."""
    if dtype.kind in "iu" and dtype.itemsize == 8 and labels.dtype.kind in "fiu":
        return exact_cast(labels, dtype)[0]  # int64 <-> uint64 without numpy's float detour
    return labels.astype(dtype)


class ClassIndices:
    """Labels that already are class indices in [0, num_classes)."""

    def __init__(self, num_classes):
        self.capacity = check_int(num_classes, "num_classes", 2)
        self.classes = np.arange(self.capacity)

    def encode(self, labels, n_rows: int) -> np.ndarray:
        if is_label_matrix(labels):  # (n, C) label weights: multi-label or soft labels
            return check_label_weights(labels, n_rows, self.capacity)
        return as_class_indices(labels, n_rows, self.capacity)

    def finish(self, acc):
        return acc, self.classes


class SortedClasses:
    """Labels of any kind whose full vector is known: classes are its sorted unique values.

    Integer labels with a modest range are encoded with a lookup table (one O(n) pass, read
    in slices so a memory-mapped label file is never copied whole); others by sorting.
    """

    def __init__(self, y, n_rows: int):
        labels = _check_label_array(y, n_rows)
        self._table = None
        if labels.dtype.kind in "iub" and labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            span = hi - lo + 1
            if hi <= np.iinfo(np.int64).max and span <= max(_TABLE_SPAN, 4 * labels.size):
                present = np.zeros(span, dtype=bool)
                for start in range(0, labels.size, _SCAN_ROWS):
                    part = labels[start : start + _SCAN_ROWS].astype(np.int64) - lo
                    present[part] = True
                self.classes = (np.flatnonzero(present) + lo).astype(labels.dtype)
                if _pages.releasable(labels):  # a mapped label file: do not keep it resident
                    _pages.release(labels)
                self._lo = lo
                self._table = np.cumsum(present, dtype=np.int64) - 1
        if self._table is None:
            self.classes = np.unique(labels)
        if self.classes.size < 2:
            raise ValueError(f"y must contain at least 2 classes, got {self.classes.size}")
        self.capacity = self.classes.size

    def encode(self, labels, n_rows: int) -> np.ndarray:
        labels = _check_label_array(labels, n_rows)
        # A slice of a Python list may convert to another dtype than the whole list did.
        if self._table is not None and labels.dtype.kind in "iub":
            return self._table[labels.astype(np.int64) - self._lo]
        return lookup_classes(self.classes, labels, "y has labels not in classes")

    def finish(self, acc):
        return acc, self.classes


class DiscoveredClasses:
    """Labels of any kind arriving chunk by chunk: classes are discovered as they appear.

    Slots are handed out in order of first appearance and grow by doubling (so an
    accumulator is re-shaped O(log C) times); ``finish`` re-orders the accumulator's
    classes to sorted label order, as if all labels had been known up front.
    """

    def __init__(self):
        self.classes = None  # labels in order of first appearance
        self.capacity = 2

    def encode(self, labels, n_rows: int) -> np.ndarray:
        if is_label_matrix(labels):
            raise ValueError(
                "chunks with a label-weight matrix (n, C) need num_classes=C: classes are "
                "the matrix's columns, not discovered"
            )
        labels = _check_label_array(labels, n_rows)
        seen = np.unique(labels)
        if self.classes is None:
            self.classes = seen
        else:
            # One rule with in-memory labels: numbers by value in a dtype that holds every
            # chunk's exactly (TypeError if none does), text only with text of its kind.
            dtype = common_label_dtype(self.classes, seen)
            known_classes, seen = _cast(self.classes, dtype), _cast(seen, dtype)
            known = np.isin(seen, known_classes)
            self.classes = np.concatenate([known_classes, seen[~known]])
        while self.capacity < self.classes.size:
            self.capacity *= 2
        return lookup_classes(self.classes, labels, "y has labels not in classes")

    def restore(self, classes) -> None:
        """Continues after an interruption with the classes discovered before it."""
        self.classes = label_array(classes, "the checkpoint's classes")
        while self.capacity < self.classes.size:
            self.capacity *= 2

    def finish(self, acc):
        if self.classes is None or self.classes.size < 2:
            found = 0 if self.classes is None else self.classes.size
            raise ValueError(f"y must contain at least 2 classes, got {found}")
        order = np.argsort(self.classes, kind="stable")
        return acc._select_classes(order), self.classes[order]
