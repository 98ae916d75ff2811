"""Checkpoints of a streamed pass: one ``.npz`` file, written atomically, that records
the statistics so far and everything that identifies the pass.

Identity (checked field by field on load; a mismatch is refused with a message that
names the field): the format version, whether the source is an iterable of chunks, its
row count and width, the feature dtype of an array source, the label mode (class
indices with their count, sorted labels with the classes themselves, or labels
discovered on the way), whether the rows are weighted, the chunk boundaries (rows per
chunk, or the gathering size for iterables), and a fingerprint of the content: sampled
rows of an array source, or the shapes and edge rows of every chunk of an iterable read
so far. Progress: chunks done, complete, whether a float64 chunk was seen (later float32
chunks are widened), the discovered classes.

Chunk boundaries are taken from the checkpoint when the caller does not fix them, so a
pass resumes with identical statistics after the machine's core count changed.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ._accumulator import ScatterAccumulator
from ._inputs import to_numpy
from ._io import NpzReader, as_path, check_keys, write_npz

__all__ = ["Checkpoint", "Identity", "chunk_fingerprint", "source_fingerprint"]

_FORMAT = "labelranker_fast/checkpoint"
_VERSION = 2
_SAMPLED_ROWS = 17  # rows of an array source read for its fingerprint
_INT_FIELDS = ("n_rows", "n_features", "num_classes", "rows_per_chunk", "gather_rows")
_FLAGS = ("iterable", "weighted")
_TEXT_FIELDS = ("label_mode", "feature_dtype", "fingerprint", "first_fingerprint")
_PROGRESS_INTS = ("chunks_done",)
_PROGRESS_FLAGS = ("complete", "wide")
_NA = -1  # an integer field that does not apply (an iterable's row count, ...)


def _edges(arr) -> bytes:
    a = np.asarray(to_numpy(arr))
    head = f"{a.dtype.str}{a.shape}".encode()
    if a.shape[:1] == (0,):
        return head
    return head + np.ascontiguousarray(a[:1]).tobytes() + np.ascontiguousarray(a[-1:]).tobytes()


def chunk_fingerprint(digest, X, y, w) -> None:
    """Adds a chunk's shapes, dtypes and first and last rows to a running sha256."""
    for part in (X, y, w):
        digest.update(b"-" if part is None else _edges(part))


def source_fingerprint(X, y, w, n_rows: int) -> str:
    """sha256 of an array source's shape, dtype and up to 17 evenly spaced rows (with
    their labels and weights), read as one-row slices (h5py and zarr support those)."""
    digest = hashlib.sha256(f"{n_rows}".encode())
    rows: np.ndarray | list[int] = []
    if n_rows:
        rows = np.unique(np.linspace(0, n_rows - 1, _SAMPLED_ROWS).astype(np.int64))
    for i in rows:
        for part in (X, y, w):
            digest.update(b"-" if part is None else _edges(part[int(i) : int(i) + 1]))
    return digest.hexdigest()


class Identity(dict):
    """What identifies a pass: ints (``_NA`` where not applicable), flags, texts and
    the sorted classes (``classes`` may be None)."""

    def differences(self, saved: Identity) -> list[str]:
        out = []
        for key, value in self.items():
            other = saved.get(key)
            if key == "classes":
                same = (value is None and other is None) or (
                    value is not None
                    and other is not None
                    and value.dtype == other.dtype
                    and value.shape == other.shape
                    and np.array_equal(value, other)
                )
                if not same:
                    out.append("classes (the labels' sorted unique values)")
            elif value == _NA or value == "":
                # Not known before the data is read (an iterable's width and content:
                # checked as its chunks arrive) or not fixed by the caller (chunk
                # boundaries: the checkpoint's are used).
                continue
            elif value != other:
                out.append(f"{key} (checkpoint: {other!r}, this pass: {value!r})")
        return out


class Checkpoint:
    """Loads and saves one pass's checkpoint file (see the module docstring)."""

    def __init__(self, path, every: int):
        self.path = as_path(path, "checkpoint")
        self.every = every

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def load(self, identity: Identity, threads: int):
        """(accumulator, saved identity, progress) of the file; ValueError when it was
        written for another pass or is not a valid checkpoint."""
        with NpzReader(self.path, "checkpoint", name="checkpoint") as reader:
            saved, progress = self._read_fields(reader)
            diffs = identity.differences(saved)
            if diffs:
                raise ValueError(
                    f"checkpoint {self.path!r} was written for another pass: it differs in "
                    + "; ".join(diffs)
                    + ". Delete it to start over"
                )
            acc = ScatterAccumulator.read_state(reader, prefix="acc_")
        if acc.n_features != saved["n_features"] and saved["n_features"] != _NA:
            raise reader._bad("its statistics disagree with its n_features")
        acc.n_threads = threads
        return acc, saved, progress

    def _read_fields(self, reader: NpzReader):
        required = (
            ("format", "version")
            + _INT_FIELDS
            + _FLAGS
            + _TEXT_FIELDS
            + _PROGRESS_INTS
            + _PROGRESS_FLAGS
        )
        if "format" not in reader.keys and "chunks_done" in reader.keys:
            raise reader._bad(
                "it was written by an earlier version of labelranker_fast, "
                "which recorded too little to check it; delete it to start over"
            )
        check_keys(reader, required)
        if str(reader.read("format", ())) != _FORMAT:
            raise reader._bad(f"its format is not {_FORMAT!r}")
        if reader.scalar("version") != _VERSION:
            raise reader._bad(f"unsupported checkpoint version {reader.scalar('version')}")
        saved = Identity()
        for key in _INT_FIELDS:
            saved[key] = reader.scalar(key)
            if saved[key] < _NA or saved[key] == 0:
                raise reader._bad(f"{key} is {saved[key]}")
        for key in _FLAGS:
            saved[key] = reader.scalar(key, "b")
        for key in _TEXT_FIELDS:
            shape, dtype = reader.header(key)
            if shape != () or dtype.kind != "U":
                raise reader._bad(f"{key} must be a text scalar")
            saved[key] = str(reader.read(key))
        saved["classes"] = _optional_vector(reader, "classes")
        progress: dict[str, Any] = {key: reader.scalar(key) for key in _PROGRESS_INTS}
        progress.update({key: reader.scalar(key, "b") for key in _PROGRESS_FLAGS})
        if progress["chunks_done"] < 0:
            raise reader._bad(f"chunks_done is {progress['chunks_done']}")
        progress["discovered"] = _optional_vector(reader, "discovered_classes")
        return saved, progress

    def save(
        self, acc: ScatterAccumulator, identity: Identity, discovered=None, **progress
    ) -> None:
        """Writes the committed statistics with ``identity`` and ``progress`` (and the
        classes discovered so far, for an iterable without ``num_classes``)."""
        arrays = {f"acc_{k}": v for k, v in acc.get_state().items()}
        if discovered is not None:
            arrays["discovered_classes"] = np.asarray(discovered)
        for key, value in identity.items():
            if key == "classes":
                if value is not None:
                    arrays["classes"] = np.asarray(value)
            elif isinstance(value, (bool, np.bool_)):
                arrays[key] = np.bool_(value)
            elif isinstance(value, str):
                arrays[key] = np.str_(value)
            else:
                arrays[key] = np.int64(value)
        for key, value in progress.items():
            arrays[key] = np.bool_(value) if isinstance(value, bool) else np.int64(value)
        arrays.update(format=np.str_(_FORMAT), version=np.int64(_VERSION))
        write_npz(self.path, arrays, name="checkpoint")


def _optional_vector(reader: NpzReader, key: str) -> np.ndarray | None:
    """A 1-D member of the checkpoint, or None where it has none."""
    if key not in reader.keys:
        return None
    shape, _ = reader.header(key)
    if len(shape) != 1:
        raise reader._bad(f"{key} must be 1-D")
    return reader.read(key)
