"""scikit-learn's estimator base classes, or equivalents of ours when it is not installed
(the core must import and work without it)."""

from __future__ import annotations

import inspect

import numpy as np

from ._inputs import to_numpy

__all__ = [
    "BaseEstimator",
    "ClassifierMixin",
    "ClassNamePrefixFeaturesOutMixin",
    "NotFittedError",
    "TransformerMixin",
]

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
