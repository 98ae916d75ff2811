"""LabelRanker: the ranking as a scikit-learn estimator, and the LDA classifier its
statistics define (fit / partial_fit / transform / predict / predict_proba)."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._accumulator import ScatterAccumulator
from ._api import accumulate
from ._classifier import (
    checked_features,
    checked_fit_features,
    checked_targets,
    in_memory_kind,
    is_streamed,
    lda_classifier,
    log_softmax,
)
from ._inputs import as_weights, check_n_components, lookup_classes, parse_shrinkage, to_numpy
from ._state import ranking_of

try:  # scikit-learn is optional: with it, LabelRanker is a full BaseEstimator.
    from sklearn.base import (
        BaseEstimator,
        ClassifierMixin,
        ClassNamePrefixFeaturesOutMixin,
        TransformerMixin,
    )
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
            """fit, then transform X (see ``LabelRanker.transform``)."""
            return self.fit(X, y, **fit_params).transform(X)

    class ClassifierMixin:  # type: ignore[no-redef]
        def score(self, X, y, sample_weight=None):
            """Mean accuracy of ``predict(X)`` against y (weighted by sample_weight).

            Parameters
            ----------
            X : array-like of shape (n_samples, n_features_in_)
            y : array-like of shape (n_samples,)
            sample_weight : array-like of shape (n_samples,), optional

            Returns
            -------
            float
            """
            hits = np.asarray(self.predict(X) == to_numpy(y), dtype=np.float64)
            return float(np.average(hits, weights=sample_weight))

    class ClassNamePrefixFeaturesOutMixin:  # type: ignore[no-redef]
        def get_feature_names_out(self, input_features=None):
            """Output feature names: the lowercased class name and the column index.

            Parameters
            ----------
            input_features : array-like of str, optional
                Ignored (checked against ``feature_names_in_`` with scikit-learn).

            Returns
            -------
            ndarray of str objects, shape (n_components,)
            """
            self._check_fitted()
            prefix = type(self).__name__.lower()
            return np.array([f"{prefix}{i}" for i in range(self._n_features_out)], dtype=object)


__all__ = ["LabelRanker", "NotFittedError"]


class LabelRanker(
    ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    """Label Ranker as an estimator: LDA on features, classes ordered by centroid, and the
    LDA classifier of the same statistics.

    The classifier is scikit-learn's ``LinearDiscriminantAnalysis`` model: with S the
    pooled within-class covariance S_w / N, shrunk by the same intensity the ranking used
    (``shrinkage_``), and priors pi_k = n_k / N, ``coef_[k] = S^-1 means_[k]`` and
    ``intercept_[k] = -means_[k] . coef_[k] / 2 + log pi_k``; probabilities are the
    softmax of ``decision_function``. Without shrinkage or with a fixed float, predictions
    and probabilities equal ``LinearDiscriminantAnalysis(solver="eigen",
    shrinkage=shrinkage)``'s (``"oas"`` has no counterpart there). Sample weights make it
    weighted LDA: n_k, the means and S_w are weighted, so integer weights equal repeated rows.

    Parameters
    ----------
    shrinkage : None, "oas" or float in [0, 1], default="oas"
        Regularisation of the within-class covariance (see ``rank_labels``). The default
        fits any data, as an estimator must; None is unregularised LDA (equal to
        scikit-learn's ``solver="eigen"``), which fails, naming shrinkage, when the
        covariance is singular. (``rank_labels`` defaults to None.)
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
        The shrinkage intensity used, by the ranking and the classifier alike.
    priors_ : ndarray of shape (n_classes,)
        Class proportions n_k / N (weighted).
    covariance_ : ndarray of shape (n_features, n_features)
        The shrunk within-class covariance S the classifier uses.
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
        For two classes, class 1's row minus class 0's (scikit-learn's convention).
    intercept_ : ndarray of shape (n_classes,), or (1,) for two classes
    n_features_in_ : int
    feature_names_in_ : ndarray of str objects, shape (n_features_in_,)
        Defined only when fitted on a DataFrame whose column names are all strings.

    Raises
    ------
    ValueError, TypeError
        From ``fit``/``partial_fit``, not the constructor: parameters of the wrong value or
        type are reported when fitting, as scikit-learn's convention has it.
    """

    def __init__(
        self,
        shrinkage: Literal["oas"] | float | None = "oas",
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
            In memory (numpy, torch, pandas, lists), checked whole first; or anything
            else ``rank_labels`` takes, streamed and never held whole: an ``np.memmap``
            or ``.npy`` path, a sliceable array-like (h5py, zarr), or with ``y=None`` an
            iterable of ``(X, y)`` chunks.
        y : array-like of shape (n_samples,), path, or None
            Class labels (bools, integers, floats, str or bytes), as ``rank_labels``
            takes them.
        sample_weight : array-like of shape (n_samples,), optional
            Finite, non-negative weights, not all zero.

        Returns
        -------
        self

        Raises
        ------
        ValueError, TypeError
            Invalid input or parameters (sparse, NaN or infinite X; one class, or one
            sample per class as a continuous target gives; a class without positive
            weight; a singular covariance without shrinkage); the estimator is left
            exactly as it was.
        """
        parse_shrinkage(self.shrinkage)
        check_n_components(self.n_components)
        names = None
        if y is None and in_memory_kind(X):  # an array is not an iterable of chunks
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(y may be None only when X is an iterable of (X, y) chunks)"
            )
        if is_streamed(X, y, sample_weight):
            acc, classes = accumulate(X, y, sample_weight, n_threads=self.n_threads)
        else:
            X, names = checked_fit_features(X, 2)
            labels = checked_targets(y, X.shape[0])
            weights = _checked_weights(sample_weight, X.shape[0])
            acc, classes = accumulate(X, labels, weights, n_threads=self.n_threads)
        self._set(self._fitted(acc, classes), names)  # all at once, or nothing
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
            The first call fixes the width (and the feature names of a DataFrame); later
            calls are checked against them.
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
        first = not hasattr(self, "_accumulator")
        if first:
            X, names = checked_fit_features(X, 1)
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            known = np.unique(to_numpy(classes))
            if known.size < 2:
                raise ValueError("classes must contain at least 2 labels")
            parse_shrinkage(self.shrinkage)
            check_n_components(self.n_components)
        else:
            X = checked_features(self, X)
            names = getattr(self, "feature_names_in_", None)
            if classes is not None and not np.array_equal(
                np.unique(to_numpy(classes)), self.classes_
            ):
                raise ValueError("classes differ from those given on the first call")
            known = self.classes_
        labels = checked_targets(y, X.shape[0])
        idx = lookup_classes(known, labels, "y has labels not in classes")
        if first:
            acc = ScatterAccumulator(X.shape[1], known.size, n_threads=self.n_threads)
        else:  # a copy, so a failure below leaves the fitted state and its rows unchanged
            acc = self._accumulator.copy()
        acc.update(X, idx, as_weights(sample_weight, X.shape[0]))
        fitted = {"_accumulator": acc, "classes_": known, "n_features_in_": acc.n_features}
        if np.all(acc.class_counts > 0):
            fitted = self._fitted(acc, known)
        self._set(fitted, names)
        return self

    def _fitted(self, acc: ScatterAccumulator, classes) -> dict:
        """Every fitted attribute of ``acc``'s solution, computed before any is set."""
        if acc.n_samples == acc.num_classes:  # a regression target, most likely
            raise ValueError(
                f"y has {acc.num_classes} classes in {acc.n_samples} samples: with one "
                "sample per class the within-class covariance is zero, which no shrinkage "
                "regularises (a continuous target? LabelRanker needs repeated labels)"
            )
        result = acc.solve(self.shrinkage, self.n_components)
        ranking = ranking_of(result, acc.num_classes, classes)
        counts, means = acc.class_counts, acc.class_means
        within = acc.within_scatter() / counts.sum()
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
            "means_": means,
            "n_features_in_": acc.n_features,
            "_n_features_out": result["directions"].shape[1],
            **lda_classifier(counts, means, within, result["shrinkage"]),
        }

    def _set(self, fitted: dict, names) -> None:
        """Sets the fitted attributes together; nothing here can fail half-way."""
        self.__dict__.update(fitted)
        if names is None:
            self.__dict__.pop("feature_names_in_", None)
        else:
            self.feature_names_in_ = names

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "scalings_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "scalings_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call fit, or "
                "partial_fit until every class has samples"
            )

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Projects X onto the discriminant directions: (X - xbar_) @ scalings_.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            A DataFrame with columns ``get_feature_names_out()`` under
            ``set_output(transform="pandas")``.

        Raises
        ------
        NotFittedError
            Not fitted yet (a ValueError and an AttributeError).
        ValueError, TypeError
            Another number of features or other feature names than fit's; NaN or
            infinite, sparse, or non-numeric values.
        """
        self._check_fitted()
        X = checked_features(self, X)
        return (X - self.xbar_) @ self.scalings_

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """The LDA scores X @ coef_.T + intercept_: log-posteriors up to a per-row constant.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
            For two classes, the log-odds of ``classes_[1]`` against ``classes_[0]``.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As ``transform``.
        """
        self._check_fitted()
        X = checked_features(self, X)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The class of highest posterior for each row (the first one on a tie).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As ``transform``.
        """
        scores = self.decision_function(X)
        idx = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[idx]

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log-posterior of each class, by a log-sum-exp of the scores (finite even where
        the probability underflows to 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As ``transform``.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:  # two classes: the log-odds against class 0's zero
            scores = np.column_stack([np.zeros_like(scores), scores])
        return log_softmax(scores)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior probability of each class: the softmax of the scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns in the order of ``classes_``.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As ``transform``.
        """
        return np.exp(self.predict_log_proba(X))


def _checked_weights(sample_weight, n_samples: int) -> np.ndarray | None:
    """sample_weight as ``as_weights`` gives it, refused when every weight is zero."""
    weights = as_weights(sample_weight, n_samples)
    if weights is not None and weights.size and np.all(weights == 0):
        raise ValueError("sample_weight is zero for every sample; at least one must be positive")
    return weights
