"""Conversion and checking of user inputs, done once, before anything reaches the engine.

Arrays that are already C-contiguous float32/float64 (numpy, or CPU torch tensors through
their numpy view) pass through without a copy; other real dtypes are converted once.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

__all__ = [
    "as_features",
    "as_class_indices",
    "as_weights",
    "is_torch_tensor",
    "lookup_classes",
    "parse_shrinkage",
    "check_int",
    "check_n_components",
    "check_n_features",
    "in_memory",
    "is_path",
    "is_sliceable",
    "to_numpy",
]


def is_torch_tensor(obj) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def to_numpy(obj):
    """A numpy view of a torch tensor (CPU: shares memory when possible), else np.asarray."""
    if is_torch_tensor(obj):
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype.is_floating_point and t.dtype.itemsize < 4:  # bfloat16, float16
            t = t.float()
        return t.numpy()
    return np.asarray(obj)


def as_features(X, name: str = "X") -> np.ndarray:
    """X as a 2-D C-contiguous float32 or float64 array (no copy when it already is one)."""
    arr = to_numpy(X)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; features must be real numbers")
    if kind not in "fiub":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; features must be numeric (float32 or float64 "
            "preferably)"
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got an array of shape {arr.shape}"
        )
    if arr.dtype not in (np.float32, np.float64):  # also non-native byte order
        arr = arr.astype(np.float64)
    # C order, aligned (unpickled or frombuffer arrays may not be), native byte order
    return np.require(arr, dtype=arr.dtype.newbyteorder("="), requirements=["C", "A"])


def as_class_indices(y, n_samples: int, num_classes: int, name: str = "y") -> np.ndarray:
    """y as a contiguous int64 vector of class indices in [0, num_classes)."""
    arr = to_numpy(y)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer class indices in [0, {num_classes}), got dtype "
            f"{arr.dtype}; use rank_labels or LabelRanker for arbitrary labels"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {n_samples} rows")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has labels outside [0, {num_classes})")
    return np.require(arr, dtype=np.int64, requirements=["C", "A"])


def as_weights(sample_weight, n_samples: int) -> np.ndarray | None:
    """sample_weight as a contiguous float64 vector (finiteness and sign: the engine)."""
    if sample_weight is None:
        return None
    arr = to_numpy(sample_weight)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got an array of shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight has {arr.shape[0]} entries but X has {n_samples} rows"
        )
    return np.require(arr, dtype=np.float64, requirements=["C", "A"])


def lookup_classes(classes: np.ndarray, labels, unknown_message: str) -> np.ndarray:
    """int64 indices into ``classes`` (unique, any order) of ``labels``.

    Raises ValueError ``f"{unknown_message}: [first unknown labels]"`` for labels that are
    not among the classes, TypeError for labels that cannot be compared with them.
    """
    labels = np.asarray(labels)
    sorter = np.argsort(classes, kind="stable")
    sorted_classes = classes[sorter]
    try:
        idx = np.searchsorted(sorted_classes, labels)
    except TypeError as exc:  # e.g. strings against ints
        raise TypeError(
            f"labels of dtype {labels.dtype} cannot be compared with classes of dtype "
            f"{classes.dtype}"
        ) from exc
    idx = np.clip(idx, 0, sorted_classes.size - 1)
    found = sorted_classes[idx] == labels
    if not np.all(found):
        unknown = np.unique(labels[~found])[:5].tolist()
        raise ValueError(f"{unknown_message}: {unknown}")
    return sorter[idx].astype(np.int64)


def parse_shrinkage(shrinkage) -> tuple[str, float]:
    """None -> ("none", 0); "oas" -> ("oas", 0); a in [0, 1] -> ("fixed", a)."""
    if shrinkage is None:
        return "none", 0.0
    if isinstance(shrinkage, str):
        if shrinkage.lower() == "oas":
            return "oas", 0.0
        raise ValueError(f"shrinkage must be None, 'oas' or a float in [0, 1], got {shrinkage!r}")
    if isinstance(shrinkage, (bool, np.bool_)) or not isinstance(shrinkage, numbers.Real):
        raise TypeError(
            f"shrinkage must be None, 'oas' or a float in [0, 1], got {type(shrinkage).__name__}"
        )
    value = float(shrinkage)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage!r}")
    return "fixed", value


def check_int(value, name: str, minimum: int) -> int:
    """value as an int >= minimum (TypeError for non-integers, bools included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_n_components(n_components) -> int:
    return check_int(n_components, "n_components", 1)


def check_n_features(got: int, expected: int) -> None:
    """ValueError unless an input's width ``got`` is the accumulator's ``expected``."""
    if got != expected:
        raise ValueError(
            f"X has {got} features but the accumulator was created with n_features={expected}"
        )


def is_path(obj) -> bool:
    """True for a file path (str, bytes or os.PathLike)."""
    return isinstance(obj, (str, bytes, os.PathLike))


def is_sliceable(obj) -> bool:
    """True for an array-like with a ``shape`` tuple and item access (h5py, zarr, ...)."""
    shape = getattr(obj, "shape", None)
    return isinstance(shape, tuple) and hasattr(obj, "__getitem__")


def in_memory(X) -> bool:
    """True if ``X`` is an in-memory array (used whole, without streaming)."""
    if is_path(X) or isinstance(X, np.memmap):
        return False
    return isinstance(X, np.ndarray) or is_torch_tensor(X) or not is_sliceable(X)
