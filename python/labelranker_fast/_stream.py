"""One pass over any source of rows into a ScatterAccumulator.

The pass reads chunks (``_sources``), turns their labels into class indices
(``_labels``), gathers small chunks into engine-sized ones, feeds the engine and reports
progress. It is the single loop behind ``rank_labels``, ``LabelRanker.fit`` and
``ScatterAccumulator.update`` for out-of-core inputs.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from . import _core
from ._inputs import as_features, as_weights, check_int
from ._labels import ClassIndices, DiscoveredClasses, SortedClasses
from ._sources import ArraySource, IterableSource, open_source

__all__ = ["stream", "default_chunk_rows", "resolve_threads"]

_CHUNK_BYTES = 32 << 20  # upper bound on one streamed chunk of features


def resolve_threads(n_threads) -> int:
    """``n_threads`` checked, or all cores this process may use."""
    if n_threads is not None:
        return check_int(n_threads, "n_threads", 1)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_chunk_rows(n_features: int, itemsize: int, n_threads: int) -> int:
    """One engine block per worker thread, at most ``_CHUNK_BYTES`` (but one block)."""
    block = _core.BLOCK_ROWS
    fit = _CHUNK_BYTES // max(1, n_features * itemsize) // block * block
    return max(block, min(block * n_threads, fit))


def _encoder(source, y, num_classes):
    if num_classes is not None:
        return ClassIndices(num_classes)
    if isinstance(source, IterableSource):
        return DiscoveredClasses()
    return SortedClasses(y, source.n_rows)


class _Gather:
    """Collects chunks smaller than ``rows`` into one buffer of ``rows`` rows.

    Data loaders yield batches of tens of rows; the engine pays O(d^2) per call, so small
    batches are copied together first. Chunks are copied on arrival, so a producer may
    reuse its arrays afterwards.
    """

    def __init__(self, rows: int):
        self.rows = rows
        self.filled = 0
        self.key = None

    def add(self, X, idx, w):
        """Yields the batches that are complete once (X, idx, w) has been added."""
        key = (X.dtype, X.shape[1], w is None)
        if self.filled and (key != self.key or self.filled + X.shape[0] > self.rows):
            yield self.flush()
        if X.shape[0] * 2 >= self.rows:  # big enough on its own
            yield X, idx, w
            return
        if self.filled == 0:
            self.key = key
            self.X = np.empty((self.rows, X.shape[1]), dtype=X.dtype)
            self.idx = np.empty(self.rows, dtype=np.int64)
            self.w = None if w is None else np.empty(self.rows, dtype=np.float64)
        stop = self.filled + X.shape[0]
        self.X[self.filled:stop] = X
        self.idx[self.filled:stop] = idx
        if w is not None:
            self.w[self.filled:stop] = w
        self.filled = stop

    def flush(self):
        n, self.filled = self.filled, 0
        return self.X[:n], self.idx[:n], None if self.w is None else self.w[:n]


def _progress_bar(enabled: bool, total, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rows", unit_scale=True, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def stream(
    X,
    y=None,
    sample_weight=None,
    *,
    num_classes=None,
    n_threads=None,
    chunk_size=None,
    progress: bool = False,
    checkpoint=None,
    checkpoint_every=None,
    allow_empty: bool = False,
    make_accumulator,
):
    """Accumulates all rows of ``X``; returns ``(accumulator, classes)``.

    ``make_accumulator(n_features, num_classes, n_threads)`` builds the accumulator once
    the width is known. With ``num_classes`` the labels must be class indices; otherwise
    classes are the sorted unique labels (found before the pass when ``y`` is an array,
    during it for an iterable of chunks). With ``checkpoint`` the pass saves its state
    there every ``checkpoint_every`` chunks and, started again with the same arguments,
    continues after the last saved chunk (see ``_Checkpoint``).
    """
    threads = resolve_threads(n_threads)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1)
    source = open_source(X, y, sample_weight)
    encoder = _encoder(source, source.y if hasattr(source, "y") else None, num_classes)
    if isinstance(source, ArraySource) and chunk_size is None and checkpoint is None:
        rows = None  # in memory: one engine call, which blocks internally
    elif chunk_size is not None:
        rows = chunk_size
    elif source.n_features is not None:
        rows = default_chunk_rows(source.n_features, source.itemsize, threads)
    else:
        rows = None  # chunks of an iterable: sized once the first arrives
    saver = None
    if checkpoint is not None:
        every = check_int(checkpoint_every if checkpoint_every is not None else 1,
                          "checkpoint_every", 1)
        saver = _Checkpoint(checkpoint, every, source, rows)
    elif checkpoint_every is not None:
        raise ValueError("checkpoint_every needs a checkpoint path")

    # All chunks form one engine pass (per checkpoint interval): the O(C d + d^2)
    # bookkeeping of an update is paid once, at commit, and an error anywhere leaves the
    # accumulator untouched.
    acc, done, complete = (None, 0, False) if saver is None else saver.load(encoder, threads)
    if acc is not None and not complete:
        acc._core.begin_pass()
    gather = None
    wide = False  # a float64 chunk was seen: later float32 chunks are widened (exactly)
    bar = _progress_bar(progress and not complete, source.n_rows, "labelranker")
    chunks = iter(()) if complete else source.chunks(rows, skip=done)
    try:
        for X_part, y_part, w_part in chunks:
            X_part = as_features(X_part)
            wide = wide or X_part.dtype == np.float64
            if wide and X_part.dtype != np.float64:
                X_part = X_part.astype(np.float64)
            n = X_part.shape[0]
            idx = encoder.encode(y_part, n)
            w_part = as_weights(w_part, n)
            if acc is None:
                acc = make_accumulator(X_part.shape[1], encoder.capacity, threads)
                acc._core.begin_pass()
            if isinstance(source, IterableSource):
                if gather is None:
                    gather = _Gather(rows or default_chunk_rows(
                        X_part.shape[1], X_part.dtype.itemsize, threads))
                batches = list(gather.add(X_part, idx, w_part))
            else:
                batches = [(X_part, idx, w_part)]
            for batch in batches:
                acc = _update(acc, encoder, *batch)
            done += 1
            if saver is not None and done % saver.every == 0:
                if gather is not None and gather.filled:
                    acc = _update(acc, encoder, *gather.flush())
                acc._core.commit_pass()
                saver.save(acc, done, encoder, complete=False)
                acc._core.begin_pass()
            if bar is not None:
                bar.update(n)
        if gather is not None and gather.filled:
            acc = _update(acc, encoder, *gather.flush())
        if acc is not None and acc._core.pass_open:
            acc._core.commit_pass()
            if not isinstance(source, ArraySource):
                # Out of core, memory matters more than the solve's page faults: free the
                # pass's buffers before the solve allocates its own.
                acc._core.release_buffers()
            if saver is not None:
                saver.save(acc, done, encoder, complete=True)
    except BaseException:
        if acc is not None and acc._core.pass_open:
            acc._core.abort_pass()
        raise
    finally:
        if bar is not None:
            bar.close()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if acc is None or acc.n_samples == 0:
        if allow_empty:  # an update with no rows changes nothing
            return None, None
        raise ValueError("X has no rows: nothing to rank")
    return encoder.finish(acc)


class _Checkpoint:
    """The state of an interrupted pass, in one ``.npz`` file written atomically.

    It holds the accumulator's arrays, the number of source chunks they cover, the classes
    discovered so far (iterables without ``num_classes``) and what identifies the pass
    (rows per chunk, source rows, width). A pass started again with the same arguments
    loads it and continues after its last chunk; its statistics are then bit-identical to
    an uninterrupted pass with the same checkpoint interval (each interval is one engine
    pass, and the saved float64 arrays are restored exactly). A completed pass leaves a
    checkpoint marked complete, which later runs reuse without reading the data again;
    delete the file to start over.
    """

    def __init__(self, path, every: int, source, rows):
        self.path, self.every = os.fspath(path), every
        self.identity = {"rows_per_chunk": -1 if rows is None else rows,
                         "source_rows": -1 if source.n_rows is None else source.n_rows}

    def load(self, encoder, threads):
        if not os.path.exists(self.path):
            return None, 0, False
        from ._accumulator import ScatterAccumulator, read_npz

        data = read_npz(self.path, "checkpoint")
        for key, value in self.identity.items():
            saved = int(data.get(key, -2))
            if saved != value:
                raise ValueError(
                    f"checkpoint {self.path!r} was written for another pass ({key} {saved}, "
                    f"now {value}); delete it to start over"
                )
        acc = ScatterAccumulator.from_state({k[4:]: v for k, v in data.items() if k.startswith("acc_")})
        acc.n_threads = threads
        if "classes" in data:  # labels discovered before the interruption, in slot order
            encoder.restore(data["classes"])
        if acc.num_classes != encoder.capacity:
            raise ValueError(f"checkpoint {self.path!r} has {acc.num_classes} class slots, "
                             f"this pass {encoder.capacity}; delete it to start over")
        return acc, int(data["chunks_done"]), bool(data["complete"])

    def save(self, acc, done: int, encoder, complete: bool) -> None:
        from ._accumulator import write_npz

        arrays = {f"acc_{k}": v for k, v in acc.get_state().items()}
        arrays.update(self.identity, chunks_done=done, complete=complete)
        if getattr(encoder, "classes", None) is not None and hasattr(encoder, "restore"):
            arrays["classes"] = np.asarray(encoder.classes)
        write_npz(self.path, arrays)


def _update(acc, encoder, X, idx, w):
    if encoder.capacity > acc.num_classes:  # classes discovered beyond the slots so far
        acc._core.commit_pass()  # re-shaping works on committed statistics
        acc = acc._with_capacity(encoder.capacity)
        acc._core.begin_pass()
    acc.update(X, idx, w)
    return acc
