"""LabelRanker: the ranking as a scikit-learn estimator, and the LDA classifier its
statistics define (fit / partial_fit / transform / predict / predict_proba)."""

from __future__ import annotations

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
from ._folds import FoldedAccumulator
from ._inputs import (
    as_weights,
    check_int,
    check_n_components,
    lookup_classes,
    parse_shrinkage,
    to_numpy,
)
from ._ordering import check_method
from ._sklearn_base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    NotFittedError,
    TransformerMixin,
)
from ._state import ranking_of

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
        Threads for accumulation and the solver (default: all cores); results are
        identical for every count.
    method : "anchor" or "seriation", default="anchor"
        How the centroids become the order (see ``rank_labels``).
    folds : int, optional
        K >= 2: ``ranking_.stability`` over K folds of the same pass (see
        ``rank_labels``); the classifier and the order are those of all the data.

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
        method: Literal["anchor", "seriation"] = "anchor",
        folds: int | None = None,
    ) -> None:
        self.shrinkage = shrinkage
        self.n_components = n_components
        self.n_threads = n_threads
        self.method = method
        self.folds = folds

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
        self._check_params()
        names = None
        if y is None and in_memory_kind(X):  # an array is not an iterable of chunks
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(y may be None only when X is an iterable of (X, y) chunks)"
            )
        opts = dict(n_threads=self.n_threads, folds=self.folds)
        if is_streamed(X, y, sample_weight):
            acc, classes = accumulate(X, y, sample_weight, **opts)
        else:
            X, names = checked_fit_features(X, 2)
            labels = checked_targets(y, X.shape[0])
            weights = _checked_weights(sample_weight, X.shape[0])
            acc, classes = accumulate(X, labels, weights, **opts)
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
            self._check_params()
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
        acc: ScatterAccumulator | FoldedAccumulator
        if first and self.folds is not None:
            acc = FoldedAccumulator(X.shape[1], known.size, self.folds, n_threads=self.n_threads)
        elif first:
            acc = ScatterAccumulator(X.shape[1], known.size, n_threads=self.n_threads)
        else:  # a copy, so a failure below leaves the fitted state and its rows unchanged
            acc = self._accumulator._select_classes(np.arange(known.size))
        acc.update(X, idx, as_weights(sample_weight, X.shape[0]))
        fitted = {"_accumulator": acc, "classes_": known, "n_features_in_": acc.n_features}
        counts = np.array([part.class_counts for part in getattr(acc, "folds", [acc])])
        if np.all(counts > 0):  # every class in every fold
            fitted = self._fitted(acc, known)
        self._set(fitted, names)
        return self

    def _check_params(self) -> None:
        parse_shrinkage(self.shrinkage)
        check_n_components(self.n_components)
        check_method(self.method)
        if self.folds is not None:
            check_int(self.folds, "folds", 2)

    def _fitted(self, acc: ScatterAccumulator | FoldedAccumulator, classes) -> dict:
        """Every fitted attribute of ``acc``'s solution, computed before any is set."""
        folded = acc
        acc = acc.total() if isinstance(acc, FoldedAccumulator) else acc
        if acc.n_samples == acc.num_classes:  # a regression target, most likely
            raise ValueError(
                f"y has {acc.num_classes} classes in {acc.n_samples} samples: with one "
                "sample per class the within-class covariance is zero, which no shrinkage "
                "regularises (a continuous target? LabelRanker needs repeated labels)"
            )
        result = acc.solve(self.shrinkage, self.n_components)
        ranking = ranking_of(result, acc.num_classes, classes, self.method)
        if folded is not acc:  # the same order, with the folds' stability
            ranking = folded.rank(self.shrinkage, self.n_components, classes, self.method)
        counts, means = acc.class_counts, acc.class_means
        within = acc.within_scatter() / counts.sum()
        return {
            "_accumulator": folded,
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
