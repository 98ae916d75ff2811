"""The text side of a LabelRanking: its classes in JSON and as class-map lines."""

from __future__ import annotations

import numpy as np

from ._inputs import label_array

_INTS = tuple(f"{u}int{bits}" for u in ("", "u") for bits in (8, 16, 32, 64))
_CLASS_DTYPES = ("bool", *_INTS, "float16", "float32", "float64", "str", "bytes")


def _canonical(classes: np.ndarray) -> np.ndarray:
    """Classes in native byte order, text in its narrowest width: the dtype JSON restores."""
    dtype = classes.dtype.newbyteorder("=")
    if dtype.kind in "US":
        width = max((len(c) for c in classes.tolist()), default=1)
        dtype = np.dtype(f"{dtype.kind}{max(width, 1)}")
    return classes.astype(dtype)  # a copy, so freezing it leaves the caller's array alone


def _classes_to_json(classes: np.ndarray) -> tuple[str, list]:
    if classes.dtype.kind == "U":
        return "str", classes.tolist()
    if classes.dtype.kind == "S":  # latin-1: one code point per byte, any bytes, readable
        return "bytes", [c.decode("latin-1") for c in classes.tolist()]
    return classes.dtype.name, classes.tolist()


# JSON types each recorded dtype may hold (bools are not ints here, as in JSON)
_JSON_TYPES = {"bool": (bool,), "str": (str,), "bytes": (str,), "f": (int, float), "iu": (int,)}


def _classes_from_json(values, dtype):
    """The classes of a ranking file, exactly as written, or ValueError."""
    if not isinstance(values, list):
        raise ValueError("classes must be a JSON list")
    if dtype is None:  # version 1: the label rule decides
        return label_array(np.array(values + [None], dtype=object)[:-1], "classes")
    if dtype not in _CLASS_DTYPES:
        raise ValueError(f"classes_dtype must be one of {list(_CLASS_DTYPES)}, got {dtype!r}")
    key = dtype if dtype in _JSON_TYPES else "f" if dtype.startswith("float") else "iu"
    if not all(type(v) in _JSON_TYPES[key] for v in values):
        raise ValueError(
            f"classes must all be JSON {_JSON_TYPES[key][-1].__name__}s for classes_dtype {dtype!r}"
        )
    if dtype == "bytes":
        try:
            values = [v.encode("latin-1") for v in values]
        except UnicodeEncodeError as exc:
            raise ValueError(f"bytes classes must be code points below 256: {exc}") from None
    try:
        arr = np.array(values, dtype={"str": str, "bytes": bytes}.get(dtype, dtype))
    except OverflowError:
        arr = None
    if arr is None or arr.tolist() != values:  # out of range, rounded, a trailing NUL lost
        raise ValueError(f"classes cannot be held exactly as {dtype}")
    return arr


def _class_name(label) -> str:
    if isinstance(label, bytes):
        try:
            return label.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"bytes class {label!r} is not UTF-8 text; a class map holds folder names"
            ) from None
    return str(label)  # numpy's str: float32 0.1 is "0.1"


def _check_lines(lines: list) -> None:
    bad = [n for n in lines if not n.strip() or "\n" in n or "\r" in n or n != n.strip()]
    if bad:
        raise ValueError(f"class names cannot be written one per line: {bad[:3]!r}")
    dup = sorted({n for n in lines if lines.count(n) > 1}) if len(set(lines)) < len(lines) else []
    if dup:  # timm would give every duplicate the last line's position
        raise ValueError(f"class names must be unique, got duplicates {dup[:3]!r}")
    for n in lines:
        try:
            n.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"class name {n!r} cannot be written as UTF-8") from None
