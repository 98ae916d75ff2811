"""The LDA classifier that the accumulated statistics define, and the input checks of the
estimator's in-memory path (scikit-learn's when it is installed, so its messages are the
ones its ``check_estimator`` expects; equivalent ones of ours when it is not).

With S the (shrunk) pooled within-class covariance S_w / N and priors pi_k = n_k / N
(DESIGN.md section 7): coef_k = S^-1 mu_k, intercept_k = -mu_k . coef_k / 2 + log pi_k.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._inputs import (
    as_features,
    as_numpy,
    is_path,
    is_sliceable,
    is_torch_tensor,
    label_array,
    to_numpy,
)

try:  # optional: with scikit-learn, its validators (and so its messages) are used
    from sklearn.exceptions import DataConversionWarning
    from sklearn.utils import check_array
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - exercised by the test that hides scikit-learn
    check_array = validate_data = None
    DataConversionWarning = UserWarning

__all__ = [
    "lda_classifier",
    "log_softmax",
    "in_memory_kind",
    "is_streamed",
    "feature_names_of",
    "checked_fit_features",
    "checked_features",
    "checked_targets",
]


def lda_classifier(counts, means, within_cov, shrinkage: float) -> dict:
    """The classifier's fitted attributes, in float64.

    Parameters
    ----------
    counts : ndarray of shape (C,)
        Weighted class counts n_k (all positive).
    means : ndarray of shape (C, d)
        Class means mu_k.
    within_cov : ndarray of shape (d, d)
        The pooled within-class covariance S_w / N, not shrunk.
    shrinkage : float in [0, 1]
        The intensity a the ranking used: S = (1 - a) S_w / N + a (tr / d) I.

    Returns
    -------
    dict
        ``coef_`` (C, d), or (1, d) for two classes: class 1's row minus class 0's, as
        scikit-learn does; ``intercept_`` (C,) or (1,); ``priors_`` (C,);
        ``covariance_`` (d, d), the S used.

    Raises
    ------
    ValueError
        S is not positive definite (the ranking's solve would have failed first).
    """
    coef, intercept, S = class_rows(counts, means, within_cov, shrinkage)
    if len(counts) == 2:  # the binary convention: one row, the log-odds of class 1
        coef, intercept = coef[1:] - coef[:1], intercept[1:] - intercept[:1]
    return {
        "coef_": coef,
        "intercept_": intercept,
        "priors_": counts / counts.sum(),
        "covariance_": S,
    }


def class_rows(counts, means, within_cov, shrinkage: float):
    """``(coef, intercept, S)``: one LDA row per class, (C, d) and (C,), whatever C (no
    binary convention), and the shrunk covariance S they use; arguments and errors as for
    ``lda_classifier``."""
    d = within_cov.shape[0]
    S = np.array(within_cov, dtype=np.float64)
    if shrinkage > 0.0:
        target = np.trace(S) / d
        S *= 1.0 - shrinkage
        S[np.diag_indices(d)] += shrinkage * target
    try:
        coef = _spd_solve(S, means.T).T  # S^-1 mu_k, by Cholesky: no explicit inverse
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            "the within-class covariance is not positive definite; pass shrinkage='oas' "
            "or a shrinkage in (0, 1]"
        ) from exc
    intercept = -0.5 * np.einsum("kd,kd->k", means, coef) + np.log(counts / counts.sum())
    return coef, intercept, S


def _spd_solve(S: np.ndarray, B: np.ndarray) -> np.ndarray:
    """S^-1 B for a symmetric positive definite S (LinAlgError when it is not)."""
    try:
        from scipy.linalg import LinAlgError, cho_factor, cho_solve
    except ImportError:  # numpy only: the Cholesky factor, then two triangular solves
        L = np.linalg.cholesky(S)
        return np.linalg.solve(L.T, np.linalg.solve(L, B))
    try:
        return cho_solve(cho_factor(S, lower=True, check_finite=False), B, check_finite=False)
    except LinAlgError as exc:
        raise np.linalg.LinAlgError(str(exc)) from exc


def log_softmax(decision: np.ndarray) -> np.ndarray:
    """Row-wise log of the softmax, by log-sum-exp around the row maximum (no overflow,
    and log-probabilities far below the smallest float stay finite)."""
    shifted = decision - decision.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# ------------------------------------------------------------------------ inputs


def in_memory_kind(X) -> bool:
    """numpy (not a memory map), torch, pandas and sparse matrices are used whole."""
    module = type(X).__module__.split(".")[0]
    if isinstance(X, np.memmap):
        return False
    return isinstance(X, np.ndarray) or is_torch_tensor(X) or module in ("pandas", "scipy")


def is_streamed(X, y, sample_weight=None) -> bool:
    """True for the inputs ``fit`` streams instead of validating whole: an iterable of
    chunks (``y`` None), a path or a memory map (for any of the three), a sliceable
    array-like X (h5py, zarr)."""
    if y is None or any(is_path(a) or isinstance(a, np.memmap) for a in (X, y, sample_weight)):
        return True
    return is_sliceable(X) and not in_memory_kind(X)


def feature_names_of(X) -> np.ndarray | None:
    """A DataFrame's column names when they are all strings, else None.

    Raises
    ------
    TypeError
        Column names that mix strings with other types.
    """
    columns = getattr(X, "columns", None)
    if columns is None or type(X).__module__.split(".")[0] != "pandas":
        return None
    names = np.asarray(columns, dtype=object)
    kinds = {isinstance(n, str) for n in names}
    if kinds == {True}:
        return names
    if len(kinds) > 1:
        raise TypeError(
            "Feature names are only supported if all input features have string names; X "
            "has column names of mixed types. Convert them all to str, e.g. "
            "X.columns = X.columns.astype(str)."
        )
    return None


def _fallback_features(X, min_samples: int) -> np.ndarray:
    """The checks of scikit-learn's ``check_array`` that matter here, without it."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required. Use '.toarray()' to "
            "convert to a dense numpy array."
        )
    X = as_features(X)
    if X.shape[0] < min_samples:
        raise ValueError(
            f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a "
            f"minimum of {min_samples} is required."
        )
    if X.shape[1] < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if not np.isfinite(X).all():
        raise ValueError("Input X contains NaN or infinity.")
    return X


def checked_fit_features(X, min_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(X as a finite 2-D float32/float64 array, its feature names) for fitting.

    Raises
    ------
    ValueError, TypeError
        Sparse, complex, non-numeric, NaN or infinite, not 2-D, too few rows or no column.
    """
    names = feature_names_of(X)
    if is_torch_tensor(X):
        X = as_numpy(X)
    if check_array is None:
        return _fallback_features(X, min_samples), names
    X = check_array(
        X, dtype=[np.float64, np.float32], ensure_min_samples=min_samples, input_name="X"
    )
    return as_features(X), names


def checked_features(estimator, X) -> np.ndarray:
    """X checked against what ``estimator`` was fitted on (width, feature names), without
    changing the estimator.

    Raises
    ------
    ValueError, TypeError
        As ``checked_fit_features``; another width; other feature names than fit's.
    """
    if is_torch_tensor(X):
        X = as_numpy(X)
    if validate_data is not None:
        X = validate_data(estimator, X, reset=False, dtype=[np.float64, np.float32])
        return as_features(X)
    fitted_names = getattr(estimator, "feature_names_in_", None)
    names = feature_names_of(X)
    if fitted_names is not None and names is not None and not np.array_equal(names, fitted_names):
        raise ValueError("The feature names should match those that were passed during fit.")
    X = _fallback_features(X, 1)
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return X


def checked_targets(y, n_samples: int) -> np.ndarray:
    """Class labels as a 1-D label array by the package's label rule (a column vector is
    flattened, with scikit-learn's warning).

    Raises
    ------
    ValueError, TypeError
        Labels of another length or shape, mixed kinds, missing values.
    """
    labels = to_numpy(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the "
            "shape of y to (n_samples, ), for example using ravel().",
            DataConversionWarning,
            stacklevel=3,
        )
        labels = labels.ravel()
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,), got an array of shape {labels.shape}")
    if labels.shape[0] != n_samples:
        raise ValueError(f"y has {labels.shape[0]} entries but X has {n_samples} rows")
    return label_array(labels, "y")
