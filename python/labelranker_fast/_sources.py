"""Where feature rows come from, read as a sequence of row chunks.

``open_source(X, y, sample_weight)`` recognises
- in-memory arrays (numpy, torch, anything ``np.asarray`` takes): used in place;
- ``np.memmap`` arrays and ``.npy`` paths: read through the mapping, the next chunk's
  pages requested from disk while the current one is processed, each processed chunk's
  pages dropped from the process, so resident memory stays at about one chunk;
- array-likes that support row slicing (``shape`` and ``X[a:b]``: h5py and zarr
  datasets, dask arrays, ...): chunks read by a background thread, one ahead;
- iterables of ``(X, y)`` or ``(X, y, sample_weight)`` chunks (generators, data
  loaders), when ``y`` is None: items pulled by a background thread, one ahead.
The engine releases the GIL while it works, so background reads overlap with it.

Ownership: a chunk belongs to the consumer before the producer is asked for the next one.
A read-ahead thread asks for item k+1 while item k is being accumulated, and producers
may legitimately refill one buffer per item (data loaders with preallocated or pinned
buffers, readers with a fixed read buffer), so what such a thread reads is copied first
(``owned``: O(n d), against the engine's O(n d^2)). Memory maps and arrays in memory are
read in the consumer's thread and need no copy.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from . import _pages
from ._inputs import as_features, in_memory, is_path, is_sliceable, is_torch_tensor, to_numpy
from ._io import as_path

__all__ = ["Chunk", "in_memory", "open_source", "open_npy", "owned", "prefetched"]


class Chunk(NamedTuple):
    X: object  # rows, any array-like (converted by the consumer)
    y: object  # labels of those rows
    w: object  # their weights, or None


def open_npy(path, name: str) -> np.ndarray:
    """A ``.npy`` file as a read-only memory map (no pickled objects allowed).

    A file that is truncated while it is mapped ends the process with SIGBUS when the
    missing pages are read: the operating system, not Python, handles that.
    """
    path = as_path(path, name)
    if os.path.isdir(path):
        raise ValueError(f"{name}: {path!r} is a directory, not a .npy file")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file {path!r}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(
            f"{name}: cannot read {path!r} as a .npy array: {exc or 'empty file'}"
        ) from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise ValueError(f"{name}: {path!r} is an .npz archive; pass a .npy file")
    if arr.dtype.hasobject:  # pragma: no cover - np.load refuses these without pickle
        raise ValueError(f"{name}: {path!r} holds Python objects")
    return arr


def owned(arr):
    """A private copy of one chunk's array (None stays None): the producer may refill
    its buffer as soon as it is asked for the next item."""
    if arr is None:
        return None
    return np.array(to_numpy(arr), copy=True, order="C")


class _Source:
    """Rows with known count and width; ``chunks(rows)`` yields ``Chunk``s in order."""

    def __init__(self, X, y, w):
        shape = tuple(X.shape)
        if len(shape) != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {shape}")
        self.n_rows, self.n_features = (int(v) for v in shape)
        # Labels and weights are sliced chunk by chunk: their shapes are checked up front.
        for name, arr in (("y", y), ("sample_weight", w)):
            if arr is None:
                continue
            arr_shape = tuple(getattr(arr, "shape", np.shape(arr)))
            if len(arr_shape) != 1 and not (name == "y" and len(arr_shape) == 2):
                also = " (or a 2-D label-weight matrix)" if name == "y" else ""
                raise ValueError(f"{name} must be 1-D{also}, got shape {arr_shape}")
            if arr_shape[0] != self.n_rows:
                raise ValueError(f"{name} has {arr_shape[0]} entries but X has {self.n_rows} rows")
        self.X, self.y, self.w = X, y, w
        self.itemsize = np.dtype(getattr(X, "dtype", np.float64)).itemsize

    def _slices(self, rows: int | None, skip: int = 0) -> Iterator[tuple[int, int]]:
        step = max(self.n_rows if rows is None else rows, 1)
        for start in range(skip * step, self.n_rows, step):
            yield start, min(start + step, self.n_rows)

    def _chunk(self, a: int, b: int, X) -> Chunk:
        return Chunk(X, self.y[a:b], None if self.w is None else self.w[a:b])


class ArraySource(_Source):
    """An array in memory: chunks are views (by default the whole array, one chunk)."""

    def __init__(self, X, y, w):
        super().__init__(as_features(X), y, w)

    def chunks(self, rows=None, skip=0):
        for a, b in self._slices(rows, skip):
            yield self._chunk(a, b, self.X[a:b])


class MappedSource(_Source):
    """A memory-mapped array: pages are read ahead and dropped once processed."""

    def chunks(self, rows=None, skip=0):
        # Labels and weights may be mapped files too (a .npy path): released alike.
        mapped = [arr for arr in (self.X, self.y, self.w) if _pages.releasable(arr)]
        slices = list(self._slices(rows, skip))
        for i, (a, b) in enumerate(slices):
            if i + 1 < len(slices):
                _pages.prefetch(self.X[slices[i + 1][0] : slices[i + 1][1]])
            yield self._chunk(a, b, self.X[a:b])
            for arr in mapped:
                _pages.release(arr[a:b])


class SlicedSource(_Source):
    """Any array-like with row slicing: a background thread reads the next chunk."""

    def chunks(self, rows=None, skip=0):
        def read():
            for a, b in self._slices(rows, skip):
                chunk = self._chunk(a, b, self.X[a:b])
                yield Chunk(*(owned(v) for v in chunk))

        return prefetched(read())


class IterableSource:
    """An iterable of (X, y) or (X, y, sample_weight) chunks, pulled one ahead."""

    n_rows = None
    n_features = None

    def __init__(self, iterable):
        if not isinstance(iterable, Iterable):
            raise TypeError(
                f"X of type {type(iterable).__name__} is not an array and not an iterable of "
                "(X, y) chunks; pass y for an array"
            )
        self.iterable = iterable

    def chunks(self, rows=None, skip=0):
        def read():  # skipped items are read and dropped: an iterable cannot seek
            for item in itertools.islice(self.iterable, skip, None):
                if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                    raise TypeError(
                        "each item of an iterable X must be an (X, y) or (X, y, sample_weight) "
                        f"tuple, got {type(item).__name__}"
                        + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
                    )
                yield Chunk(
                    owned(item[0]), owned(item[1]), owned(item[2]) if len(item) == 3 else None
                )

        return prefetched(read())


def open_source(X, y, sample_weight):
    """The source of rows for ``X`` (see the module docstring); ``y`` None means chunks."""
    if y is None:
        if is_path(X) or isinstance(X, np.ndarray) or is_torch_tensor(X) or is_sliceable(X):
            raise ValueError("y is required unless X is an iterable of (X, y) chunks")
        if sample_weight is not None:
            raise ValueError(
                "sample_weight cannot be given with an iterable of chunks; yield "
                "(X, y, sample_weight) instead"
            )
        return IterableSource(X)
    if is_path(X):
        X = open_npy(X, "X")
    if is_path(y):
        y = open_npy(y, "y")
    if is_path(sample_weight):
        sample_weight = open_npy(sample_weight, "sample_weight")
    if isinstance(X, np.memmap):
        return MappedSource(X, y, sample_weight)
    if in_memory(X):
        return ArraySource(X, y, sample_weight)
    return SlicedSource(X, y, sample_weight)


_END = object()


def prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Yields ``items`` while a background thread fetches up to ``depth`` ahead.

    The thread asks for the next item as soon as it has handed one over, so ``items``
    must yield arrays it owns (see ``owned``), not views of a buffer it will refill.

    An exception in the background thread is raised here, at the point of the item it
    would have produced; closing this generator early stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((_END, exc))
        else:
            put((_END, None))

    thread = threading.Thread(target=produce, name="labelranker-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
