"""Class orders from centroids in the discriminant space: the paper's anchor rule and
seriation (optimal leaf ordering of a Ward linkage).

Centroids are ``(mu_k - mu) @ W`` with ``W^T S W = I``, so Euclidean distance between
them is Mahalanobis distance under the within-class covariance S.
"""

from __future__ import annotations

import numpy as np

METHODS = ("anchor", "seriation")
SERIATION_MAX_CLASSES = 2048  # optimal leaf ordering is O(C^3): ~3 s at 1000, ~30 s at 2000


def check_method(method) -> str:
    """``method`` if it is one of METHODS, else ValueError/TypeError naming it."""
    if not isinstance(method, str):
        raise TypeError(f"method must be one of {list(METHODS)}, got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return method


def anchor_order(centroids: np.ndarray) -> np.ndarray:
    """The paper's rule, as the engine computes it: the anchor is the class with the
    smallest first centroid (the lowest index on a tie); classes follow by their distance
    to it (in one dimension, ``c - c_anchor``), ties broken by class index."""
    c = np.asarray(centroids, dtype=np.float64)
    anchor = int(np.argmin(c[:, 0]))
    if c.shape[1] == 1:
        distance = c[:, 0] - c[anchor, 0]
    else:
        distance = np.sqrt(((c - c[anchor]) ** 2).sum(axis=1))
    return np.argsort(distance, kind="stable").astype(np.int64)


def seriation_order(centroids: np.ndarray) -> np.ndarray:
    """Neighbours adjacent: the leaf order of a Ward linkage of the centroids, made
    optimal (Bar-Joseph et al. 2001: the sum of distances between adjacent leaves is
    minimal among the orders the tree allows), oriented so that the end with the smaller
    first centroid comes first.

    The classes are put in a canonical order (by their centroids) before the linkage, so
    the result does not depend on how they were numbered. Needs scipy.
    """
    c = np.asarray(centroids, dtype=np.float64)
    n = c.shape[0]
    if n > SERIATION_MAX_CLASSES:
        raise ValueError(
            f"method='seriation' supports up to {SERIATION_MAX_CLASSES} classes (its "
            f"optimal leaf ordering costs O(C^3), about 30 s at 2000); got {n}: use "
            "method='anchor'"
        )
    try:
        from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    except ImportError:  # pragma: no cover - scipy is in the test extra
        raise ImportError("method='seriation' needs scipy (pip install scipy)") from None
    if n < 3:
        return anchor_order(c)
    # Canonical numbering: lexicographic by the centroid coordinates, first axis first.
    canonical = np.lexsort(c.T[::-1]).astype(np.int64)
    points = c[canonical]
    tree = optimal_leaf_ordering(linkage(points, method="ward"), points)
    order = canonical[leaves_list(tree)]
    if c[order[-1], 0] < c[order[0], 0]:
        order = order[::-1]
    return np.ascontiguousarray(order, dtype=np.int64)


def order_of(centroids: np.ndarray, method: str) -> np.ndarray:
    """The class order ``method`` gives the centroids."""
    return seriation_order(centroids) if method == "seriation" else anchor_order(centroids)
