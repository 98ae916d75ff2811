"""Every file the library reads or writes: paths, the one atomic-write helper, ``.npz``
arrays, JSON and text lines.

Writers never leave a torn or foreign file behind: ``atomic_write`` writes a uniquely
named temporary file created with ``O_EXCL`` in the target's directory (a planted
symlink cannot redirect it), fsyncs it, renames it over the target and removes it on
any failure. Concurrent writers to one path leave one complete file.

Readers validate before they allocate: an ``.npz`` member's header (dtype, shape) is read
and checked against what the caller expects, and against the size its archive entry
claims, before its data is read; members that are not asked for are never read.
Failures are ValueError (the file is not what it should be), FileNotFoundError, or a
MemoryError from numpy that names the size it could not allocate.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from typing import IO, Any

import numpy as np

__all__ = [
    "STATE_KEYS",
    "STATE_VERSION",
    "plain_state",
    "read_plain_state",
    "as_path",
    "atomic_write",
    "write_text",
    "write_npz",
    "NpzReader",
    "read_json",
    "write_json",
]

_MAX_JSON_BYTES = 1 << 30  # a ranking of a million classes is far below this


def as_path(path, name: str = "path") -> str:
    """``path`` (str, bytes or os.PathLike) as a str; TypeError for anything else."""
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(path))
        if not path or "\0" in path:
            raise ValueError(
                f"{name} must be a non-empty path without NUL characters, got {path!r}"
            )
        return path
    raise TypeError(f"{name} must be a str or os.PathLike path, got {type(path).__name__}")


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would race with other threads)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _os_error(path: str, exc: OSError, doing: str) -> Exception:
    """The exception a public call raises for an OSError: FileNotFoundError stays one,
    anything else (a directory, no permission, a full disk) is a ValueError."""
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"cannot {doing} {path!r}: {exc.strerror or exc}")
    return ValueError(f"cannot {doing} {path!r}: {exc.strerror or exc}")


def atomic_write(path, write: Callable[[IO[bytes]], Any], name: str = "path") -> None:
    """Calls ``write(fh)`` on a fresh temporary file beside ``path``, then renames it over
    ``path``; on any failure (Ctrl-C included) the temporary file is removed and ``path``
    is left as it was."""
    path = as_path(path, name)
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a directory")
    folder, base = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _os_error(path, exc, "write") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # as open() would have made it
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _os_error(path, exc, "write") from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - a folder that cannot be opened for reading
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(dir_fd)


def write_text(path, text: str, name: str = "path") -> None:
    """Writes ``text`` (UTF-8) atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data), name)


def write_json(path, obj, name: str = "path", allow_nan: bool = False) -> None:
    """Writes ``obj`` as indented JSON atomically; NaN and infinity (not JSON) are
    refused unless ``allow_nan`` (then written as JavaScript's NaN/Infinity)."""
    write_text(path, json.dumps(obj, indent=1, allow_nan=allow_nan) + "\n", name)


def read_json(path, what: str, name: str = "path"):
    """The JSON value in ``path``; ValueError when it is not a readable JSON file."""
    path = as_path(path, name)
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise _os_error(path, exc, f"read the {what} file") from exc
    if len(data) > _MAX_JSON_BYTES:
        raise ValueError(f"{path!r} is larger than {_MAX_JSON_BYTES} bytes: not a {what} file")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{path!r} is not a valid {what} JSON file: {reason}") from None


def write_npz(path, arrays: dict, name: str = "path") -> None:
    """``np.savez`` of ``arrays`` (no pickled objects) written atomically."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays), name)


class NpzReader:
    """Reads chosen members of an ``.npz`` archive, each checked before it is read.

    ``header(key)`` gives a member's (shape, dtype) from its ``.npy`` header, after
    checking that the archive entry's size is exactly what that header implies (a
    truncated or forged member is a ValueError, and nothing is allocated);
    ``read(key, shape=None)`` then reads it, refusing another shape.
    """

    def __init__(self, path, what: str, name: str = "path"):
        self.path = as_path(path, name)
        self.what = what
        try:
            self._zip = zipfile.ZipFile(self.path)
        except OSError as exc:
            raise _os_error(self.path, exc, f"read the {what} file") from exc
        except (zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise self._bad(f"not an .npz archive ({exc})") from None
        self.keys = {n[:-4] for n in self._zip.namelist() if n.endswith(".npy")}

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc) -> None:
        self._zip.close()

    def _bad(self, reason: str) -> ValueError:
        return ValueError(f"{self.path!r} is not a readable {self.what} file: {reason}")

    def header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        if key not in self.keys:
            raise self._bad(f"it has no {key!r} member")
        info = self._zip.getinfo(key + ".npy")
        try:
            with self._zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                offset = fh.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise self._bad(f"member {key!r} has no valid .npy header ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biufcSU":
            raise self._bad(f"member {key!r} has dtype {dtype}, not plain numbers or text")
        nbytes = int(np.prod(shape, dtype=object) if shape else 1) * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise self._bad(
                f"member {key!r} claims shape {shape} of {dtype} ({nbytes} bytes) "
                f"but its archive entry holds {info.file_size - offset}: truncated "
                "or inconsistent"
            )
        return tuple(int(s) for s in shape), dtype

    def read(self, key: str, shape: tuple | None = None) -> np.ndarray:
        got, _ = self.header(key)
        if shape is not None and got != tuple(shape):
            raise self._bad(f"member {key!r} has shape {got}, expected {tuple(shape)}")
        try:
            with self._zip.open(key + ".npy") as fh:
                return np.lib.format.read_array(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise self._bad(f"member {key!r} cannot be read ({exc})") from None

    def scalar(self, key: str, kinds: str = "iu") -> int | bool:
        """A 0-d integer (or bool, with ``kinds="b"``) member as a Python value."""
        shape, dtype = self.header(key)
        if shape != () or dtype.kind not in kinds:
            raise self._bad(
                f"{key!r} must be a scalar of kind {kinds!r}, got shape {shape} dtype {dtype}"
            )
        value = self.read(key)[()]
        return bool(value) if kinds == "b" else int(value)


def check_keys(reader: NpzReader, required: Iterable[str]) -> None:
    """ValueError naming the required members that ``reader``'s archive lacks."""
    missing = sorted(set(required) - reader.keys)
    if missing:
        raise reader._bad(f"it is missing {missing}")


# ------------------------------------------------------- accumulator state
# ScatterAccumulator.get_state(): these scalars and arrays, as plain numpy values.
STATE_VERSION = 1
_SCALARS = ("n_features", "num_classes", "n_rows")
_ARRAYS = ("counts", "shifts", "sums", "m2")
STATE_KEYS = ("version",) + _SCALARS + _ARRAYS


def _state_shapes(d: int, c: int) -> dict:
    return {"counts": (c,), "shifts": (c, d), "sums": (c, d), "m2": (d, d)}


def _state_int(value, name: str) -> int:
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "iu":
        raise ValueError(f"accumulator state {name!r} must be an integer scalar, got {value!r}")
    return int(arr)


def plain_state(state) -> dict[str, Any]:
    """An accumulator state (a mapping) as ints and C-contiguous float64 arrays, its
    keys, version, dtypes and shapes checked (ValueError) before the engine sees it."""
    if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
        raise ValueError("state must be a mapping of arrays")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"accumulator state is missing {missing}")
    if _state_int(state["version"], "version") != STATE_VERSION:
        raise ValueError(f"unsupported accumulator state version {state['version']!r}")
    plain: dict[str, Any] = {k: _state_int(state[k], k) for k in _SCALARS}
    # Shapes are checked here, before the engine allocates what the scalars claim.
    shapes = _state_shapes(plain["n_features"], plain["num_classes"])
    for k in _ARRAYS:
        arr = np.asarray(state[k])
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"accumulator state {k!r} must be numeric, got dtype {arr.dtype}")
        if arr.shape != shapes[k]:
            raise ValueError(
                f"accumulator state {k!r} has shape {arr.shape}, expected "
                f"{shapes[k]} for n_features={plain['n_features']}, "
                f"num_classes={plain['num_classes']}"
            )
        plain[k] = np.ascontiguousarray(arr, dtype=np.float64)
    return plain


def read_plain_state(reader: NpzReader, prefix: str = "") -> dict[str, Any]:
    """The ``prefix``-named state members of an open ``.npz`` file: scalars first, then
    each array after its header's shape has been checked."""
    check_keys(reader, [prefix + k for k in STATE_KEYS])
    state: dict[str, Any] = {k: reader.scalar(prefix + k) for k in ("version",) + _SCALARS}
    if state["version"] != STATE_VERSION:
        raise reader._bad(f"unsupported accumulator state version {state['version']}")
    if state["n_features"] < 1 or state["num_classes"] < 2 or state["n_rows"] < 0:
        raise reader._bad(f"invalid sizes { ({k: state[k] for k in _SCALARS}) }")
    shapes = _state_shapes(state["n_features"], state["num_classes"])
    for k in _ARRAYS:
        state[k] = reader.read(prefix + k, shapes[k])
    return state
