"""Multi-label and soft labels: a label-weight matrix W (n x C) instead of class indices.

With N_k = sum_i W_ik, class means m_k = sum_i W_ik x_i / N_k and
S_w = sum_k sum_i W_ik (x_i - m_k)(x_i - m_k)^T, this is weighted LDA over the (sample,
label) pairs (DESIGN.md section 7). The engine takes W's non-zeros in CSR form
(``Accumulator.update_labels``) and never forms the pairs: a row with several labels
enters the moment once, around the weighted mean of its classes' shifts, and a per-class
correction restores the pairs' spread around that mean when the pass commits. A row with
one label is a weighted single-label row, so a one-hot W gives exactly the labels'
statistics; sub-blocks of soft rows go through matrix products.
"""

from __future__ import annotations

import numpy as np

from ._inputs import as_features, as_weights, check_n_features, to_numpy


def is_label_matrix(y) -> bool:
    """Whether ``y`` is a 2-D label-weight matrix (an array, tensor or nested list)."""
    if hasattr(y, "ndim"):
        return y.ndim == 2
    return isinstance(y, (list, tuple)) and np.ndim(np.asarray(y, dtype=object)) == 2


def label_weight_rows(X, Y, sample_weight, n_features: int, num_classes: int):
    """``(X, indptr, cols, vals)``: the rows of an update with a label-weight matrix,
    validated, and W (times the sample weights, if any) as the CSR arrays the engine
    takes; only the positive weights are kept."""
    X = as_features(X)
    check_n_features(X.shape[1], n_features)
    W = check_label_weights(Y, X.shape[0], num_classes)
    w = as_weights(sample_weight, X.shape[0])
    if w is not None:
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("sample_weight must be finite and >= 0")
        with np.errstate(over="ignore"):
            W = W * w[:, None]
        if not np.isfinite(W).all():
            raise ValueError("sample_weight times the label weights of y overflows float64")
    positive = W > 0
    flat = np.flatnonzero(positive)  # row-major: the CSR order
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(positive, axis=1), out=indptr[1:])
    return X, indptr, (flat % num_classes).astype(np.int64), W.ravel()[flat]


def check_label_weights(W, n_rows: int, num_classes: int, name: str = "y") -> np.ndarray:
    """``W`` as a C-contiguous float64 (n_rows, num_classes) matrix of finite, non-negative
    label weights, or TypeError/ValueError naming ``name``."""
    arr = to_numpy(W)
    if arr.ndim == 2:  # a column of labels is named as one before its dtype is checked
        label_matrix_classes(arr, name)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} as a label-weight matrix must be numeric, got dtype {arr.dtype}")
    if arr.shape != (n_rows, num_classes):
        raise ValueError(
            f"{name} as a label-weight matrix must have shape ({n_rows}, {num_classes}) "
            f"(rows of X, classes), got {arr.shape}"
        )
    arr = np.require(arr, dtype=np.float64, requirements=["C", "A"])
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} label weights must be finite and >= 0")
    return arr


def label_matrix_classes(W, name: str = "y") -> int:
    """The number of classes (columns) of a 2-D ``W``; ValueError for one column, which
    is a column vector of labels far more often than a one-class matrix."""
    shape = np.shape(W)
    if shape[1] == 1:
        raise ValueError(
            f"{name} has shape {shape}: labels must be 1-D (a column vector? pass "
            f"{name}.ravel()), or a label-weight matrix of one column per class"
        )
    return int(shape[1])
