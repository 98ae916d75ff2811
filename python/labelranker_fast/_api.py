"""rank_labels: features and labels in, a LabelRanking out."""

from __future__ import annotations

import numpy as np

from ._accumulator import ScatterAccumulator
from ._inputs import as_class_indices, as_features, as_weights, check_int, to_numpy
from ._ranking import LabelRanking

__all__ = ["rank_labels", "encode_labels"]


def encode_labels(y, n_samples: int, num_classes=None):
    """(classes, indices): arbitrary labels -> sorted unique classes and int64 indices.

    With ``num_classes`` the labels must already be indices in [0, num_classes) and the
    classes are 0..num_classes-1 (classes without samples are then reported by the engine).
    """
    if num_classes is not None:
        num_classes = check_int(num_classes, "num_classes", 2)
        return np.arange(num_classes), as_class_indices(y, n_samples, num_classes)
    labels = to_numpy(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, got an array of shape {labels.shape}")
    if labels.shape[0] != n_samples:
        raise ValueError(f"y has {labels.shape[0]} entries but X has {n_samples} rows")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError("y contains NaN or infinity")
    if labels.dtype.kind == "O":
        raise TypeError("y has object dtype; pass integer or string labels")
    classes, indices = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"y must contain at least 2 classes, got {classes.size}")
    return classes, np.ascontiguousarray(indices.reshape(-1), dtype=np.int64)


def rank_labels(
    X,
    y,
    *,
    num_classes=None,
    shrinkage=None,
    n_components: int = 1,
    sample_weight=None,
    chunk_size=None,
) -> LabelRanking:
    """Ranks the classes of ``(X, y)`` by their centroids on the top LDA direction(s).

    Parameters
    ----------
    X : array-like or torch tensor of shape (n_samples, n_features)
        Features (float32/float64 C-contiguous input is used without a copy).
    y : array-like of shape (n_samples,)
        Class labels of any kind (ints, strings); sorted unique values become ``classes``.
    num_classes : int, optional
        If given, ``y`` must hold class indices in [0, num_classes) and every class must
        have samples.
    shrinkage : None, "oas" or float in [0, 1]
        Regularisation of the within-class covariance; needed when it is singular (fewer
        samples than features, constant features).
    n_components : int, default=1
        Number of discriminant directions; classes are ordered by Euclidean distance to
        the anchor (the class with the smallest first centroid) in that space.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative per-sample weights.
    chunk_size : int, optional
        Rows passed to the engine per call (default: all at once; the engine blocks
        internally). The result does not depend on it beyond rounding.

    Returns
    -------
    LabelRanking
    """
    X = as_features(X)
    n, d = X.shape
    classes, indices = encode_labels(y, n, num_classes)
    weights = as_weights(sample_weight, n)
    chunk_size = max(n, 1) if chunk_size is None else check_int(chunk_size, "chunk_size", 1)
    if n == 0:
        raise ValueError("X has no rows: nothing to rank")

    acc = ScatterAccumulator(d, classes.size)
    for start in range(0, n, chunk_size):
        stop = start + chunk_size
        acc.update(
            X[start:stop],
            indices[start:stop],
            None if weights is None else weights[start:stop],
        )
    return acc.rank(shrinkage=shrinkage, n_components=n_components, classes=classes)
