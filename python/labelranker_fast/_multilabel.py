"""Multi-label and soft labels: a label-weight matrix W (n x C) instead of class indices.

With N_k = sum_i W_ik, class means m_k = sum_i W_ik x_i / N_k and
S_w = sum_k sum_i W_ik (x_i - m_k)(x_i - m_k)^T, this is weighted LDA over the (sample,
label) pairs (DESIGN.md section 7). A chunk becomes an accumulator state without making
the pairs. For any class shifts s_k, with a_i = sum_k W_ik s_k / w_i the weighted mean of
row i's shifts (w_i = sum_k W_ik), the cross term vanishes and

    sum_k W_ik (x_i - s_k)(x_i - s_k)^T = w_i (x_i - a_i)(x_i - a_i)^T
                                          + sum_k W_ik (a_i - s_k)(a_i - s_k)^T,

so the O(n d^2) part is one weighted moment of the rows centred on a_i (small values:
float32 input keeps its accuracy; one engine pass computes it), and the rest is
sum_k N_k s'_k s'_k^T - s'^T G s' with G = W^T diag(1/w) W (C x C) and s' = s - r, the
shifts less each block's mean r so that a large common offset cancels. The shift of
class k is its mean in the first block it appears in; the sums sum_i W_ik (x_i - s_k)
are kept in float64. Above 256 classes, rows with few labels are read by their non-zero
weights only. The numpy part costs O(n C d + n C^2).

Rows with at most one non-zero weight are ordinary weighted rows and take the engine's
single-label path; a one-hot W is exactly the labels.
"""

from __future__ import annotations

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


def pairs_state(X: np.ndarray, W: np.ndarray, moment: Any) -> dict[str, Any]:
    """The accumulator state of rows ``X`` with label weights ``W`` (each row with a
    positive total weight), built block by block. ``moment`` is an empty engine
    accumulator: every block's centred rows go into its class 0, so the O(n d^2) part is
    one engine pass. Class k's shift is its mean in the first block it appears in; the
    rest is added up in float64 with the offset of each block taken out first."""
    n, C = W.shape
    d = X.shape[1]
    shifts = np.zeros((C, d))
    have = np.zeros(C, dtype=bool)  # classes whose shift is set
    counts, sums, m2 = np.zeros(C), np.zeros((C, d)), np.zeros((d, d))
    for start in range(0, n, BLOCK_ROWS):
        Xb, Wb = X[start : start + BLOCK_ROWS], W[start : start + BLOCK_ROWS]
        w_row, n_b = Wb.sum(axis=1), Wb.sum(axis=0)
        nonzeros = _sparse_nonzeros(Wb)
        r, Xc, P = _block_sums(Xb, Wb, w_row, nonzeros)  # P_k = sum_i W_ik (x_i - r)
        new = (n_b > 0) & ~have
        shifts[new] = r + P[new] / n_b[new, None]
        have |= new
        rel = np.where(have[:, None], shifts - r, 0.0)  # s_k - r, small
        a = _weighted_rows(Wb, rel, nonzeros) / w_row[:, None]  # a_i - r (float64)
        Z = np.ascontiguousarray(Xc - a.astype(X.dtype))  # x_i - a_i
        moment.update(Z, np.zeros(len(Xb), dtype=np.int64), w_row)
        sums += P - n_b[:, None] * rel  # sum_i W_ik (x_i - s_k)
        G = Wb.T @ (Wb / w_row[:, None])
        m2 += (rel.T * n_b) @ rel - rel.T @ (G @ rel)
        counts += n_b
    state = moment.get_state()  # sum_i w_i z_i z_i^T from its class 0's moments
    s0, t0, n0 = state["shifts"][0], state["sums"][0], state["counts"][0]
    m2 += state["m2"] + np.outer(s0, t0) + np.outer(t0, s0) + n0 * np.outer(s0, s0)
    return {
        "n_features": d,
        "num_classes": C,
        "n_rows": n,
        "counts": counts,
        "shifts": shifts,
        "sums": sums,
        "m2": 0.5 * (m2 + m2.T),
    }


def _sparse_nonzeros(Wb: np.ndarray):
    """``(rows, cols, vals)`` of W's non-zeros, row-major, when only they should be read
    (many classes, a few labels per row); None when BLAS on the whole of W is cheaper."""
    if Wb.shape[1] <= SPARSE_CLASSES:
        return None
    rows, cols = np.nonzero(Wb)
    return (rows, cols, Wb[rows, cols]) if rows.size * 4 <= Wb.size else None


def _block_sums(Xb: np.ndarray, Wb: np.ndarray, w_row: np.ndarray, nonzeros):
    """``(r, Xc, P)``: the block's weighted mean r (float64, rounded to the input
    precision), its rows less r, and the class sums P_k = sum_i W_ik (x_i - r)."""
    dtype = Xb.dtype
    r = (w_row / w_row.sum()).astype(dtype) @ Xb  # weights summing to 1: none overflows
    Xc = Xb - r
    if nonzeros is not None:
        rows, cols, vals = nonzeros
        return r.astype(np.float64), Xc, _class_sums(Xc, rows, cols, vals, Wb.shape[1])
    P = Wb.T @ (Xc if dtype == np.float64 else Xc.astype(np.float64))
    return r.astype(np.float64), Xc, P


def _weighted_rows(Wb: np.ndarray, values: np.ndarray, nonzeros) -> np.ndarray:
    """(n, d) float64: sum_k W_ik values_k (from the non-zeros when W is sparse)."""
    if nonzeros is not None:
        rows, cols, vals = nonzeros
        return _row_sums(values, rows, cols, vals)
    # float64 like the weights: in float32 a weight below 1e-45 (or a product above
    # 3e38) would vanish or overflow.
    return Wb @ values
