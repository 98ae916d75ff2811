"""The text side of a LabelRanking: its JSON fields, its names and its class-map lines."""

from __future__ import annotations

import collections

import numpy as np

from ._inputs import label_array
from ._stability import Stability

FORMAT = "labelranker_fast/ranking"
VERSION = 3  # 2 records the classes' dtype, 3 their names; older files are still read
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


def duplicates(values: list) -> list:
    """The values that occur more than once, sorted: one pass (``list.count`` in a loop
    would be quadratic, minutes for 100,000 names)."""
    return sorted(v for v, k in collections.Counter(values).items() if k > 1)


def _check_lines(lines: list) -> None:
    bad = [n for n in lines if not n.strip() or "\n" in n or "\r" in n or n != n.strip()]
    if bad:
        raise ValueError(f"class names cannot be written one per line: {bad[:3]!r}")
    dup = duplicates(lines)
    if dup:  # timm would give every duplicate the last line's position
        raise ValueError(f"class names must be unique, got duplicates {dup[:3]!r}")
    for n in lines:
        try:
            n.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"class name {n!r} cannot be written as UTF-8") from None


def check_names(names, n_classes: int, what: str = "names") -> tuple[str, ...]:
    """``names`` as a tuple of ``n_classes`` unique, non-empty strings (kept exactly: no
    numpy string array, which would drop trailing NULs), or TypeError/ValueError."""
    if isinstance(names, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of class names, not one string")
    try:
        names = list(names)
    except TypeError:
        raise TypeError(f"{what} must be a sequence of str, got {type(names).__name__}") from None
    if not all(isinstance(x, str) for x in names):
        kinds = sorted({type(x).__name__ for x in names if not isinstance(x, str)})
        raise TypeError(f"{what} must be strings, got {', '.join(kinds)}")
    if len(names) != n_classes:
        raise ValueError(f"{what} has {len(names)} entries but the ranking has {n_classes} classes")
    if not all(names):
        raise ValueError(f"{what} must not hold empty strings")
    dup = duplicates(names)
    if dup:
        raise ValueError(f"{what} must be unique, got duplicates {dup[:3]!r}")
    return tuple(str(x) for x in names)  # np.str_ and other str subclasses as plain str


def class_map_lines(classes: np.ndarray, order: np.ndarray, names, given) -> list[str]:
    """Line p of a timm class map: the name of the class at position p. ``given`` (the
    ``names=`` argument) names class indices 0..C-1; ``names`` are the ranking's own."""
    n = classes.size
    if given is not None:
        given = check_names(given, n)
        if classes.dtype.kind not in "iu" or not np.array_equal(classes, np.arange(n)):
            raise ValueError(
                f"names= needs a ranking of class indices 0..C-1; this one ranks "
                f"{classes[:5].tolist()}..."
            )
        if names is not None and given != names:
            raise ValueError(
                "names= differs from the ranking's own names; drop one, or give the ranking "
                "the right ones with ranking.with_names(names)"
            )
        names = given
    if names is not None:
        lines = [names[c] for c in order.tolist()]
    elif classes.dtype.kind in "iu":
        raise ValueError(
            "this ranking's classes are integers: timm matches class-map lines against "
            "folder names, and ImageFolder numbers its folders in sorted-name order ('10' "
            "before '2'), so a map of numbers would match no folders or the wrong ones; pass "
            "names=dataset.classes (the folder name of each class index), give the ranking "
            "its names (ranking.with_names), or rank the folder names themselves"
        )
    else:
        lines = [_class_name(c) for c in classes[order]]
    _check_lines(lines)
    return lines


def ranking_dict(classes, order, centroids, eigenvalues, shrinkage, names, stability) -> dict:
    """A ranking's fields as plain JSON types, in the current format version."""
    dtype, values = _classes_to_json(classes)
    return {
        "format": FORMAT,
        "version": VERSION,
        "classes_dtype": dtype,
        "classes": values,
        "order": order.tolist(),
        "centroids": centroids.tolist(),
        "eigenvalues": eigenvalues.tolist(),
        "shrinkage": shrinkage,
        "names": None if names is None else list(names),
        "stability": None if stability is None else stability.to_dict(),
    }


def ranking_fields(data) -> dict:
    """The LabelRanking arguments a ranking dict of any version holds (the constructor
    validates them); ValueError if ``data`` is not one."""
    if not isinstance(data, dict):
        raise ValueError("a ranking must be a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"not a ranking file: 'format' must be {FORMAT!r}")
    version = data.get("version")
    if type(version) is not int or version not in (1, 2, 3):
        raise ValueError(f"unsupported ranking version {version!r}")
    missing = [k for k in ("classes", "order", "centroids", "eigenvalues") if k not in data]
    if version >= 2 and "classes_dtype" not in data:
        missing.append("classes_dtype")
    if missing:
        raise ValueError(f"ranking is missing {missing}")
    try:
        dtype = data["classes_dtype"] if version >= 2 else None
        classes = _classes_from_json(data["classes"], dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"malformed ranking: {exc}") from exc
    fields = {k: data[k] for k in ("order", "centroids", "eigenvalues")}
    stability = data.get("stability") if version >= 3 else None
    if stability is not None:
        stability = Stability.from_dict(stability, classes.size)
    return dict(
        classes=classes,
        shrinkage=data.get("shrinkage", 0.0),
        names=data.get("names") if version >= 3 else None,
        stability=stability,
        **fields,
    )
