"""LabelRanker: the ranking as a scikit-learn estimator (fit / partial_fit / transform)."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._accumulator import ScatterAccumulator, ranking_of
from ._api import accumulate
from ._inputs import (
    as_features,
    as_weights,
    check_n_components,
    lookup_classes,
    parse_shrinkage,
    to_numpy,
)

try:  # scikit-learn is optional: with it, LabelRanker is a full BaseEstimator.
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.exceptions import NotFittedError
except ImportError:  # pragma: no cover - exercised by the test that hides scikit-learn

    class NotFittedError(ValueError, AttributeError):  # type: ignore[no-redef]
        """Raised when a LabelRanker is used before fit."""

    class BaseEstimator:  # type: ignore[no-redef]
        """get_params/set_params as scikit-learn defines them (parameters = __init__ args)."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self")

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}")
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class TransformerMixin:  # type: ignore[no-redef]
        def fit_transform(self, X, y=None, **fit_params):
            return self.fit(X, y, **fit_params).transform(X)


__all__ = ["LabelRanker", "NotFittedError"]


class LabelRanker(TransformerMixin, BaseEstimator):
    """Label Ranker as an estimator: LDA on features, classes ordered by centroid.

    Parameters
    ----------
    shrinkage : None, "oas" or float in [0, 1], default=None
        Regularisation of the within-class covariance (see ``rank_labels``).
    n_components : int, default=1
        Number of discriminant directions kept (``transform`` output width).
    n_threads : int, optional
        Threads for accumulation and the solver's BLAS (default: all cores); results are
        identical for every count.

    Attributes
    ----------
    ranking_ : LabelRanking
    order_ : ndarray of int64, shape (n_classes,)
        ``order_[p]`` is the index into ``classes_`` of the class at head position p.
    classes_ : ndarray of shape (n_classes,)
    scalings_ : ndarray of shape (n_features, n_components)
        Discriminant directions, scaled so that W^T S W = I (S the within-class
        covariance, shrunk if asked); without shrinkage these equal scikit-learn's
        ``LinearDiscriminantAnalysis(solver="eigen").scalings_`` up to sign.
    explained_variance_ratio_ : ndarray of shape (n_components,)
    eigenvalues_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_classes, n_features)
    xbar_ : ndarray of shape (n_features,)
        Overall (weighted) mean; ``transform`` centres with it.
    shrinkage_ : float
        The shrinkage intensity used.
    n_features_in_ : int

    Raises
    ------
    ValueError, TypeError
        From ``fit``/``partial_fit``, not the constructor: parameters of the wrong value or
        type are reported when fitting, as scikit-learn's convention has it.
    """

    def __init__(
        self,
        shrinkage: Literal["oas"] | float | None = None,
        n_components: int = 1,
        n_threads: int | None = None,
    ) -> None:
        self.shrinkage = shrinkage
        self.n_components = n_components
        self.n_threads = n_threads

    def fit(
        self, X: Any, y: ArrayLike | None = None, sample_weight: ArrayLike | None = None
    ) -> LabelRanker:
        """Fits on all of (X, y) in one pass.

        Parameters
        ----------
        X : array-like, path, sliceable array-like, or iterable of chunks
            Anything ``rank_labels`` takes: an array or tensor, an ``np.memmap`` or
            ``.npy`` path, a sliceable array-like (h5py, zarr), or with ``y=None`` an
            iterable of ``(X, y)`` chunks; streamed inputs are never held whole.
        y : array-like of shape (n_samples,), path, or None
            Labels of any kind.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self

        Raises
        ------
        ValueError, TypeError
            Invalid input or parameters; the estimator is left exactly as it was.
        """
        parse_shrinkage(self.shrinkage)
        check_n_components(self.n_components)
        acc, classes = accumulate(X, y, sample_weight, n_threads=self.n_threads)
        self.__dict__.update(self._fitted(acc, classes))  # all at once, or nothing
        return self

    def partial_fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> LabelRanker:
        """Adds a chunk; the fitted attributes are refreshed once every class has samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, optional
            All labels that will appear; required on the first call.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self

        Raises
        ------
        ValueError, TypeError
            Invalid input, or a solve that fails (e.g. a singular within-class scatter
            without shrinkage); the estimator is left exactly as it was, rows included.
        """
        X = as_features(X)
        first = not hasattr(self, "_accumulator")
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            known = np.unique(to_numpy(classes))
            if known.size < 2:
                raise ValueError("classes must contain at least 2 labels")
            parse_shrinkage(self.shrinkage)
            check_n_components(self.n_components)
        else:
            if classes is not None and not np.array_equal(
                np.unique(to_numpy(classes)), self.classes_
            ):
                raise ValueError("classes differ from those given on the first call")
            known = self.classes_
        labels = to_numpy(y)
        if labels.ndim != 1 or labels.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with {X.shape[0]} entries, got shape {labels.shape}")
        idx = lookup_classes(known, labels, "y has labels not in classes")
        if first:
            acc = ScatterAccumulator(X.shape[1], known.size, n_threads=self.n_threads)
        else:  # a copy, so a failure below leaves the fitted state and its rows unchanged
            acc = self._accumulator.copy()
        acc.update(X, idx, as_weights(sample_weight, X.shape[0]))
        fitted = {"_accumulator": acc, "classes_": known}
        if np.all(acc.class_counts > 0):
            fitted = self._fitted(acc, known)
        self.__dict__.update(fitted)
        return self

    def _fitted(self, acc: ScatterAccumulator, classes) -> dict:
        """Every fitted attribute of ``acc``'s solution, computed before any is set."""
        result = acc.solve(self.shrinkage, self.n_components)
        ranking = ranking_of(result, acc.num_classes, classes)
        return {
            "_accumulator": acc,
            "classes_": classes,
            "ranking_": ranking,
            "order_": ranking.order,
            "scalings_": result["directions"],
            "eigenvalues_": result["eigenvalues"],
            "explained_variance_ratio_": result["eigenvalues"] / result["eigenvalue_sum"],
            "shrinkage_": result["shrinkage"],
            "xbar_": result["mean"],
            "means_": acc.class_means,
            "n_features_in_": acc.n_features,
        }

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Projects X onto the discriminant directions: (X - xbar_) @ scalings_.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components)

        Raises
        ------
        NotFittedError
            Not fitted yet (a ValueError and an AttributeError).
        ValueError, TypeError
            Another number of features, or values that cannot be features.
        """
        if not hasattr(self, "scalings_"):
            raise NotFittedError(
                "this LabelRanker is not fitted yet (call fit, or partial_fit until every "
                "class has samples)"
            )
        X = as_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, expected {self.n_features_in_}")
        return (X - self.xbar_) @ self.scalings_
