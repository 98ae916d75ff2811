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
    "as_numpy",
    "as_class_indices",
    "as_weights",
    "is_torch_tensor",
    "label_array",
    "lookup_classes",
    "parse_shrinkage",
    "check_int",
    "check_n_components",
    "check_threads",
    "check_n_features",
    "in_memory",
    "is_path",
    "is_sliceable",
    "to_numpy",
]


def is_torch_tensor(obj) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def as_numpy(obj) -> np.ndarray:
    """A numpy view of a torch tensor (CPU: shares memory when possible; half precision
    widened to float32), else ``np.asarray``: numbers as numpy reads them (features and
    weights; labels go through ``to_numpy``)."""
    if is_torch_tensor(obj):
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype.is_floating_point and t.dtype.itemsize < 4:  # bfloat16, float16
            t = t.float()
        return t.numpy()
    return np.asarray(obj)


def to_numpy(obj):
    """Labels as a numpy array: ``as_numpy``, except for the following.

    Flat Python sequences and pandas objects are converted by the label rules
    (``label_array``) when they hold one kind of value, so ``[1, "a"]`` is not silently
    turned into strings: such a mix, or missing values, come back as an object array for
    the caller to refuse by name.
    """
    if is_torch_tensor(obj) or isinstance(obj, np.ndarray):
        return as_numpy(obj)
    arr = np.asarray(obj)
    from_pandas = type(obj).__module__.split(".")[0] == "pandas"
    # numpy's own conversion is exact for bools and integers; floats may have absorbed
    # big integers, strings may have absorbed numbers: those are converted again.
    if (
        arr.ndim == 1
        and arr.dtype.kind in "fUSO"
        and (isinstance(obj, (list, tuple)) or (from_pandas and arr.dtype.kind == "O"))
    ):
        try:
            return _convert_objects(np.asarray(obj, dtype=object), "values")
        except (TypeError, ValueError):
            return np.asarray(obj, dtype=object)
    return arr


def as_features(X, name: str = "X") -> np.ndarray:
    """X as a 2-D C-contiguous float32 or float64 array (no copy when it already is one)."""
    arr = as_numpy(X)
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
    if arr.dtype.kind == "O":
        arr = label_array(arr, name)
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
    arr = as_numpy(sample_weight)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, got an array of shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"sample_weight has {arr.shape[0]} entries but X has {n_samples} rows")
    return np.require(arr, dtype=np.float64, requirements=["C", "A"])


# ----------------------------------------------------------------------------- labels
# One rule for every label vector, whether it arrives whole, from a .npy file or in
# chunks: labels are bools, integers, floats, str or bytes. Numbers of different kinds
# are compared by value (True == 1 == 1.0) and may be mixed when one dtype holds all of
# them exactly; text never mixes with numbers, nor str with bytes (numpy would silently
# turn [1, "a"] into the strings "1", "a"). Missing values and infinities are refused.

_LABEL_RULE = "labels must all be numbers (bool, int, float) or all str or all bytes"
_FLOATS = (np.float16, np.float32, np.float64)


def _element_kind(t: type) -> str:
    if issubclass(t, (bool, np.bool_)):
        return "bool"
    if issubclass(t, (int, np.integer)):
        return "int"
    if issubclass(t, (float, np.float16, np.float32, np.float64)):
        return "float"
    if issubclass(t, str):
        return "str"
    if issubclass(t, bytes):
        return "bytes"
    if t is type(None) or t.__name__ in ("NAType", "NaTType"):
        return "missing"
    return t.__name__


def _convert_objects(values: np.ndarray, name: str) -> np.ndarray:
    """An object array (or pandas' object values) as a bool/int/float/str/bytes array."""
    items = values.ravel().tolist()
    if not items:
        return np.zeros(values.shape)  # what numpy makes of []
    kinds = {_element_kind(t) for t in set(map(type, items))}
    if "float" in kinds and len(kinds) > 1 and any(v != v for v in items if type(v) is not str):
        kinds.add("missing")  # NaN beside other kinds: pandas' missing marker
    if "missing" in kinds:
        raise ValueError(
            f"{name} has missing values (None, NaN or pd.NA); drop those rows or give them a label"
        )
    other = sorted(kinds - {"bool", "int", "float", "str", "bytes"})
    if other:
        raise TypeError(
            f"{name} holds values of type {other[0]}; labels must be bools, "
            "integers, floats, str or bytes"
        )
    if len(kinds) > 1 and not kinds <= {"bool", "int", "float"}:
        raise TypeError(
            f"{name} mixes {' and '.join(sorted(kinds))} values; {_LABEL_RULE} "
            "(numpy would turn [1, 'a'] into the strings '1', 'a')"
        )
    if kinds <= {"str", "bytes"}:
        if any(v[-1:] in ("\x00", b"\x00") for v in items):  # numpy strings drop trailing NULs
            raise ValueError(
                f"{name} has labels ending in a NUL character, which numpy "
                "string arrays cannot hold"
            )
        out = np.array(items, dtype=str if "str" in kinds else bytes)
    elif kinds == {"bool"}:
        out = np.array(items, dtype=bool)
    elif "float" not in kinds:
        ints = [int(v) for v in items]
        lo, hi = (min(ints), max(ints)) if ints else (0, 0)
        if -(2**63) <= lo and hi < 2**63:
            out = np.array(ints, dtype=np.int64)
        elif 0 <= lo and hi < 2**64:
            out = np.array(ints, dtype=np.uint64)
        else:
            raise TypeError(
                f"{name} has integer labels from {lo} to {hi}, beyond what one "
                "64-bit integer dtype holds"
            )
    else:
        try:
            out = np.array([float(v) for v in items], dtype=np.float64)
            exact = all(
                int(f) == int(v)
                for v, f in zip(items, out.tolist())
                if _element_kind(type(v)) != "float"
            )
        except OverflowError:  # an integer beyond float64's range
            exact = False
        if not exact:
            raise TypeError(
                f"{name} mixes integers and floats, and float64 cannot hold its "
                "integers exactly; pass them as integers only"
            )
    return out.reshape(values.shape)


def label_array(y, name: str = "y") -> np.ndarray:
    """``y`` as an array of one label dtype (bool, int, uint, float16/32/64, str, bytes).

    Arrays of those dtypes pass through without a copy (memory maps stay mapped); object
    arrays, Python sequences and pandas objects are converted by the rule above. Raises
    TypeError for other dtypes or mixed kinds, ValueError for missing values or infinities.
    """
    arr = y if isinstance(y, np.ndarray) else to_numpy(y)
    if arr.dtype.kind == "O":
        arr = _convert_objects(arr, name)
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.type not in _FLOATS:  # longdouble: kept only when exact
        wide = arr.astype(np.float64)
        if not np.array_equal(wide, arr, equal_nan=True):
            raise TypeError(f"{name} has dtype {arr.dtype} whose values float64 cannot hold")
        arr = wide
    if kind not in "biufUS":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; labels must be bools, integers, floats, str or bytes"
        )
    if kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity (missing labels?)")
    return arr


def exact_cast(values: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray | np.bool_]:
    """``values`` (numeric) cast to int64, uint64 or float64, and where that was exact."""
    dtype, kind = np.dtype(dtype), values.dtype.kind
    if kind == "b" or (kind == "f") == (dtype.kind == "f") and np.can_cast(values.dtype, dtype):
        return values.astype(dtype, copy=False), np.True_  # exact for every value
    if dtype.kind == "f":  # integers: exact when they come back unchanged
        out = values.astype(np.float64)
        limit = 2.0**63 if kind == "i" else 2.0**64
        ok = (out >= -limit) & (out < limit)
        return out, ok & (np.where(ok, out, 0).astype(values.dtype) == values)
    if kind == "f":  # floats into integers: integral and in range, never truncated
        lo, hi = (-(2.0**63), 2.0**63) if dtype == np.int64 else (0.0, 2.0**64)
        ok = (values == np.floor(values)) & (values >= lo) & (values < hi)
    elif kind == "u" and dtype == np.int64:
        ok = values <= np.iinfo(np.int64).max
    elif kind == "i" and dtype == np.uint64:
        ok = values >= 0
    return np.where(ok, values, 0).astype(dtype), ok


def _int_domain(arr: np.ndarray) -> np.dtype:
    big = arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max
    return np.dtype(np.uint64 if big else np.int64)


def common_label_dtype(a: np.ndarray, b: np.ndarray, name: str = "y") -> np.dtype:
    """The dtype that holds the labels of ``a`` and ``b`` (label arrays) exactly.

    TypeError when there is none: text with numbers, str with bytes, integers beyond one
    64-bit dtype, or integers and floats that float64 cannot hold exactly.
    """
    ka, kb = a.dtype.kind, b.dtype.kind
    if a.dtype == b.dtype or (ka == kb and ka in "USf"):
        return np.result_type(a.dtype, b.dtype)  # the same kind widens exactly
    if ka in "US" or kb in "US":
        raise TypeError(
            f"{name} has labels of dtype {b.dtype} that cannot be compared with "
            f"labels of dtype {a.dtype}; {_LABEL_RULE}"
        )
    target: np.dtype
    if "f" in (ka, kb):
        target = np.dtype(np.float64)
    else:
        target = np.result_type(a.dtype, b.dtype)
        if target.kind != "f":
            return target  # numpy's promotion of bools and integers is exact
        big = np.dtype(np.uint64) in (_int_domain(a), _int_domain(b))  # int64 with uint64
        target = np.dtype(np.uint64 if big else np.int64)
    if not (exact_cast(a, target)[1].all() and exact_cast(b, target)[1].all()):
        raise TypeError(
            f"{name} has labels of dtypes {a.dtype} and {b.dtype} that no one dtype "
            "holds exactly (integers beyond 2**53 beside floats, or negative "
            "integers beside integers above 2**63)"
        )
    return target


def lookup_classes(classes, labels, unknown_message: str, name: str = "y") -> np.ndarray:
    """int64 indices into ``classes`` (unique, any order) of ``labels``, compared by value.

    Raises ValueError ``f"{unknown_message}: [first unknown labels]"`` for labels that are
    not among the classes (a float such as 1.7 never matches an integer class), TypeError
    for labels that cannot be compared with them (text with numbers, str with bytes).
    """
    classes, labels = label_array(classes, "classes"), label_array(labels, name)
    text_c, text_l = classes.dtype.kind in "US", labels.dtype.kind in "US"
    if (text_c or text_l) and classes.dtype.kind != labels.dtype.kind:
        raise TypeError(
            f"{name} of dtype {labels.dtype} cannot be compared with classes of "
            f"dtype {classes.dtype}; {_LABEL_RULE}"
        )
    ok: np.ndarray | np.bool_
    if text_c:
        keys, values, ok = classes, labels, np.ones(labels.shape, dtype=bool)
    else:  # numbers compared exactly in the classes' domain
        domain = np.float64 if classes.dtype.kind == "f" else _int_domain(classes)
        keys = exact_cast(classes, domain)[0]
        values, ok = exact_cast(labels, domain)
    sorter = np.argsort(keys, kind="stable")
    sorted_keys = keys[sorter]
    idx = np.clip(np.searchsorted(sorted_keys, values), 0, sorted_keys.size - 1)
    found = ok & (sorted_keys[idx] == values)
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


INT32_MAX = 2**31 - 1  # counts the engine keeps in a C int (threads, components)
INT64_MAX = 2**63 - 1


def check_int(value, name: str, minimum: int, maximum: int = INT64_MAX) -> int:
    """value as an int in [minimum, maximum] (TypeError for non-integers, bools included;
    ValueError naming ``name`` outside the range)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if int(value) < minimum:  # int(): exact for every Integral, and typed
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if int(value) > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_threads(n_threads) -> int:
    return check_int(n_threads, "n_threads", 1, INT32_MAX)


def check_n_components(n_components) -> int:
    return check_int(n_components, "n_components", 1, INT32_MAX)


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
