"""Multi-label and soft labels: a label-weight matrix W (n x C) instead of class indices.

With N_k = sum_i W_ik, class means m_k = sum_i W_ik x_i / N_k and
S_w = sum_k sum_i W_ik (x_i - m_k)(x_i - m_k)^T, this is weighted LDA over the (sample,
label) pairs (DESIGN.md section 7). A chunk becomes an accumulator state without making
the pairs. With a_i = sum_k W_ik m_k / w_i the weighted mean of row i's class means
(w_i = sum_k W_ik), the cross term vanishes and

    sum_k W_ik (x_i - m_k)(x_i - m_k)^T = w_i (x_i - a_i)(x_i - a_i)^T
                                          + sum_k W_ik (a_i - m_k)(a_i - m_k)^T,

so the O(n d^2) part is one weighted moment of the rows centred on a_i (small values:
float32 input keeps its accuracy, the engine computes it), and the rest is
sum_k N_k m'_k m'_k^T - m'^T G m' with G = W^T diag(1/w) W (C x C) and m' = m - r, the
means shifted by the block's mean r so that a large common offset cancels. The state's
shift of class k is m_k itself (in the input precision), so its sums are zero: the
error of that is N_k times the square of the mean's rounding, far below S_w's own.
Multi-hot rows (few labels each) use only their non-zero weights for the means and
a_i; the cost is then about one single-label pass, plus O(n C^2) for G.

Rows with at most one non-zero weight are ordinary weighted rows and take the engine's
single-label path; a one-hot W is exactly the labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._inputs import as_features, as_weights, check_n_features, to_numpy


def is_label_matrix(y) -> bool:
    """Whether ``y`` is a 2-D label-weight matrix (an array, tensor or nested list)."""
    if hasattr(y, "ndim"):
        return y.ndim == 2
    return isinstance(y, (list, tuple)) and np.ndim(np.asarray(y, dtype=object)) == 2


def label_weight_rows(X, Y, sample_weight, n_features: int, num_classes: int):
    """``(single, multi)`` of an update with a label-weight matrix, validated: ``single``
    the ``(X, y, w)`` of the rows with at most one label (None if none), ``multi`` the
    ``(X, W)`` of the rows with several (None if none). A one-hot Y without weights gives
    exactly ``(X, y, None)``."""
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
    single, y, w1, multi = split_rows(W)  # W carries the sample weights now
    one = None
    if single.size:
        plain = w is None and bool((w1 == 1.0).all())
        rows = X if single.size == X.shape[0] else X[single]
        one = (rows, y, None if plain else w1)
    return one, (X[multi], W[multi]) if multi.size else None


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


def split_rows(W: np.ndarray):
    """``(single, y, w, multi)``: the rows with at most one non-zero label weight (their
    class and weight, as single-label rows) and the rows with several."""
    nonzero = W > 0
    several = nonzero.sum(axis=1) > 1
    single = np.flatnonzero(~several)
    y = W[single].argmax(axis=1).astype(np.int64)
    return single, y, W[single, y], np.flatnonzero(several)


BLOCK_ROWS = 8192  # rows per state: bounds the float64 and gathered copies
SPARSE_CLASSES = 256  # above this many classes, multi-hot rows are read by their non-zeros


def _class_sums(Xc, rows, cols, vals, C: int) -> np.ndarray:
    """(C, d) float64: sum_i W_ik Xc_i from the non-zeros (rows, cols, vals) of W."""
    by_class = np.argsort(cols, kind="stable")
    keys = cols[by_class]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    out = np.zeros((C, Xc.shape[1]))
    gathered = Xc[rows[by_class]] * vals[by_class, None]
    out[keys[starts]] = np.add.reduceat(gathered, starts)
    return out


def _row_sums(values, rows, cols, vals) -> np.ndarray:
    """(n, d): sum_k W_ik values_k from the non-zeros, rows in order, every row present."""
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return np.add.reduceat(values[cols] * vals[:, None], starts)


def pair_states(
    X: np.ndarray, W: np.ndarray, moment: Callable[[np.ndarray, np.ndarray], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The accumulator states of rows ``X`` with label weights ``W`` (each row with a
    positive total weight), one per block of rows, to be merged. ``moment(Z, w)`` is the
    engine's state of rows Z with weights w, all in one class."""
    for start in range(0, X.shape[0], BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        yield _block_state(X[start:stop], W[start:stop], moment)


def _block_state(X, W, moment) -> dict[str, Any]:
    n, C = W.shape
    dtype = X.dtype  # the input precision: float32 rows stay float32 for the engine
    w_row = W.sum(axis=1)
    counts = W.sum(axis=0)
    present = counts > 0
    # The block's mean, in the input precision, is the common offset taken out first.
    r = (w_row.astype(dtype) @ X) / dtype.type(w_row.sum())
    Xc = X - r
    r = r.astype(np.float64)
    rows, cols = np.nonzero(W)  # row-major: grouped by row
    if C > SPARSE_CLASSES and rows.size * 4 <= W.size:
        # Many classes, a few labels per row: only the non-zeros are read (O(nnz d)).
        vals = W[rows, cols]
        shifted = _class_sums(Xc, rows, cols, vals, C)  # sum_i W_ik (x_i - r), float64
        shifted[present] /= counts[present, None]  # m_k - r
        a = _row_sums(shifted, rows, cols, vals) / w_row[:, None]  # a_i - r
    else:  # BLAS: O(n C d), less than the moment's O(n d^2 / 2) for C < d / 2
        # The class sums in float64 (exact means); a_i in the input precision.
        shifted = W.T @ (Xc if dtype == np.float64 else Xc.astype(np.float64))
        shifted[present] /= counts[present, None]
        # In float64 like the weights: in float32 a weight below 1e-45 (or a product
        # above 3e38) would vanish or overflow, and a_i come out NaN.
        a = (W @ shifted) / w_row[:, None]
    shifted[~present] = 0.0
    # x_i - a_i: a_i in the input precision is a_i to its rounding, which moves S_w by
    # about as much as the engine's own float32 products do.
    state = moment(np.ascontiguousarray(Xc - a.astype(dtype)), w_row)
    s0, t0, n0 = state["shifts"][0], state["sums"][0], state["counts"][0]
    m2 = state["m2"] + np.outer(s0, t0) + np.outer(t0, s0) + n0 * np.outer(s0, s0)
    G = W.T @ (W / w_row[:, None])
    m2 += (shifted.T * counts) @ shifted - shifted.T @ (G @ shifted)
    shifts = shifted + r
    shifts[~present] = 0.0
    return {
        "n_features": X.shape[1],
        "num_classes": C,
        "n_rows": n,
        "counts": counts,
        "shifts": shifts,
        "sums": np.zeros_like(shifts),
        "m2": 0.5 * (m2 + m2.T),
    }
