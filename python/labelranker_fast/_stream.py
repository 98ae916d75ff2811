"""One pass over any source of rows into a ScatterAccumulator.

The pass reads chunks (``_sources``: each one owned by the consumer before the next is
read), turns their labels into class indices (``_labels``), gathers small chunks into
engine-sized ones, feeds the engine inside one ``ScatterAccumulator.streaming_pass`` per
checkpoint interval, saves checkpoints (``_checkpoint``) and reports progress. It is the
single loop behind ``rank_labels``, ``LabelRanker.fit`` and ``ScatterAccumulator.update``
for out-of-core inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys

import numpy as np

from ._accumulator import BLOCK_ROWS, ScatterAccumulator
from ._checkpoint import _NA, Checkpoint, Identity, chunk_fingerprint, source_fingerprint
from ._folds import FoldedAccumulator
from ._inputs import as_features, as_weights, check_int, check_n_features, check_threads
from ._labels import ClassIndices, DiscoveredClasses, SortedClasses
from ._multilabel import label_matrix_classes
from ._sources import ArraySource, IterableSource, open_source

__all__ = ["StreamOptions", "stream", "default_chunk_rows", "resolve_threads", "progress_bar"]

_CHUNK_BYTES = 32 << 20  # upper bound on one streamed chunk of features


def resolve_threads(n_threads) -> int:
    """``n_threads`` checked, or all cores this process may use."""
    if n_threads is not None:
        return check_threads(n_threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_chunk_rows(n_features: int, itemsize: int, n_threads: int) -> int:
    """One engine block per worker thread, at most ``_CHUNK_BYTES`` (but one block)."""
    fit = _CHUNK_BYTES // max(1, n_features * itemsize) // BLOCK_ROWS * BLOCK_ROWS
    return max(BLOCK_ROWS, min(BLOCK_ROWS * n_threads, fit))


def progress_bar(enabled: bool, total, desc: str, unit: str = "rows"):
    """A tqdm bar on standard error, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "rows",
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """How a pass reads its source; the keyword arguments of the public entry points."""

    num_classes: int | None = None
    n_threads: int | None = None
    chunk_size: int | None = None
    progress: bool = False
    checkpoint: object = None
    checkpoint_every: int | None = None
    folds: int | None = None

    def __post_init__(self):
        if self.num_classes is not None:
            check_int(self.num_classes, "num_classes", 2)
        if self.chunk_size is not None:
            check_int(self.chunk_size, "chunk_size", 1)
        if self.checkpoint_every is not None:
            if self.checkpoint is None:
                raise ValueError("checkpoint_every needs a checkpoint path")
            check_int(self.checkpoint_every, "checkpoint_every", 1)
        if self.folds is not None:
            check_int(self.folds, "folds", 2)
            if self.checkpoint is not None:
                raise ValueError("folds= cannot be combined with a checkpoint")


def _encoder(source, num_classes):
    if num_classes is not None:
        return ClassIndices(num_classes)
    if isinstance(source, IterableSource):
        return DiscoveredClasses()
    if np.ndim(source.y) == 2:  # a label-weight matrix: its columns are the classes
        return ClassIndices(label_matrix_classes(source.y))
    return SortedClasses(source.y, source.n_rows)


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
        key = (X.dtype, X.shape[1], w is None, idx.shape[1:])
        if self.filled and (key != self.key or self.filled + X.shape[0] > self.rows):
            yield self.flush()
        if X.shape[0] * 2 >= self.rows:  # big enough on its own
            yield X, idx, w
            return
        if self.filled == 0:
            self.key = key
            self.X = np.empty((self.rows, X.shape[1]), dtype=X.dtype)
            self.idx = np.empty((self.rows, *idx.shape[1:]), dtype=idx.dtype)
            self.w = None if w is None else np.empty(self.rows, dtype=np.float64)
        stop = self.filled + X.shape[0]
        self.X[self.filled : stop] = X
        self.idx[self.filled : stop] = idx
        if w is not None:
            self.w[self.filled : stop] = w
        self.filled = stop

    def flush(self):
        n, self.filled = self.filled, 0
        return self.X[:n], self.idx[:n], None if self.w is None else self.w[:n]


def _identity(source, encoder, options: StreamOptions) -> Identity:
    """What identifies this pass before its data is read (see ``_checkpoint``)."""
    iterable = isinstance(source, IterableSource)
    mode = {ClassIndices: "indices", SortedClasses: "sorted", DiscoveredClasses: "discovered"}
    rows = _NA if options.chunk_size is None else options.chunk_size
    return Identity(
        iterable=iterable,
        n_rows=_NA if iterable else source.n_rows,
        n_features=_NA if iterable else source.n_features,
        feature_dtype="" if iterable else np.dtype(getattr(source.X, "dtype", np.float64)).str,
        label_mode=mode[type(encoder)],
        num_classes=encoder.capacity if isinstance(encoder, ClassIndices) else _NA,
        classes=encoder.classes if isinstance(encoder, SortedClasses) else None,
        weighted=False if iterable else source.w is not None,
        rows_per_chunk=_NA if iterable else rows,
        gather_rows=rows if iterable else _NA,
        fingerprint=""
        if iterable
        else source_fingerprint(source.X, source.y, source.w, source.n_rows),
        first_fingerprint="",
    )


class _Pass:
    """The state of one pass: its accumulator, checkpoint and progress."""

    def __init__(self, source, encoder, options: StreamOptions, threads: int):
        self.source, self.encoder, self.threads = source, encoder, threads
        self.folds = options.folds
        self.iterable = isinstance(source, IterableSource)
        self.acc: ScatterAccumulator | FoldedAccumulator | None = None
        self.done, self.complete, self.wide = 0, False, False
        self.digest = hashlib.sha256()  # an iterable's chunks, as they are read
        self.saved_fingerprint: str | None = None
        self.first_fingerprint: str | None = None
        self.rows = options.chunk_size
        self.saver: Checkpoint | None = None
        if options.checkpoint is not None:
            self.saver = Checkpoint(options.checkpoint, options.checkpoint_every or 1)
            self.identity = _identity(source, encoder, options)
            if self.saver.exists():
                self._resume()
        if (
            self.rows is None
            and not self.iterable
            and (self.saver is not None or not isinstance(source, ArraySource))
        ):
            self.rows = self._default_rows(source.n_features, source.itemsize)

    def _default_rows(self, n_features: int, itemsize: int) -> int:
        """A chunk of one block per thread; folded, K of them: each fold's share of a
        chunk is then a block per thread too, so every engine call keeps all threads."""
        return default_chunk_rows(n_features, itemsize, self.threads) * (self.folds or 1)

    def _resume(self) -> None:
        assert self.saver is not None  # called only with a checkpoint
        acc, saved, progress = self.saver.load(self.identity, self.threads)
        key = "gather_rows" if self.iterable else "rows_per_chunk"
        if self.rows is None and saved[key] != _NA:
            self.rows = saved[key]  # the interrupted pass's boundaries, whatever the cores
        self.identity.update({k: saved[k] for k in ("n_features", key)})
        if self.iterable:
            self.saved_fingerprint = saved["fingerprint"]
            self.first_fingerprint = saved["first_fingerprint"]
        if progress["discovered"] is not None:
            self.encoder.restore(progress["discovered"])
        if acc.num_classes != self.encoder.capacity:
            raise ValueError(
                f"checkpoint {self.saver.path!r} has {acc.num_classes} class "
                f"slots, this pass {self.encoder.capacity}; delete it to start over"
            )
        self.acc, self.done = acc, progress["chunks_done"]
        self.complete, self.wide = progress["complete"], progress["wide"]

    def save(self, complete: bool) -> None:
        # A checkpointed pass (never folded: StreamOptions refuses the two together).
        assert self.saver is not None and isinstance(self.acc, ScatterAccumulator)
        if self.iterable:
            self.identity.update(
                fingerprint=self.digest.hexdigest(),
                first_fingerprint=self.first_fingerprint or "",
                gather_rows=self.rows or _NA,
            )
        else:
            self.identity["rows_per_chunk"] = self.rows
        self.identity["n_features"] = self.acc.n_features
        discovered = (
            getattr(self.encoder, "classes", None)
            if isinstance(self.encoder, DiscoveredClasses)
            else None
        )
        self.saver.save(
            self.acc,
            self.identity,
            discovered=discovered,
            chunks_done=self.done,
            complete=complete,
            wide=self.wide,
        )

    def note_chunk(self, index: int, chunk) -> bool:
        """Fingerprints an iterable's chunk; True if it was already counted (skip it)."""
        if not self.iterable or self.saver is None:
            return False
        chunk_fingerprint(self.digest, *chunk)
        if index == 0:  # the running digest of one chunk is that chunk's fingerprint
            first = self.digest.hexdigest()
            if self.first_fingerprint not in (None, "", first):
                raise ValueError(self._other_data("its first chunk"))
            self.first_fingerprint = first
        if index + 1 == self.done and self.digest.hexdigest() != self.saved_fingerprint:
            raise ValueError(self._other_data(f"its first {self.done} chunks"))
        return index < self.done

    def _other_data(self, what: str) -> str:
        assert self.saver is not None  # only a checkpointed pass compares data
        return (
            f"checkpoint {self.saver.path!r} was written for another pass: {what} differ "
            "from the interrupted pass's (shapes, dtypes or edge rows). Delete it to "
            "start over"
        )


def stream(
    X,
    y=None,
    sample_weight=None,
    options: StreamOptions = StreamOptions(),
    *,
    n_features: int | None = None,
    allow_empty: bool = False,
):
    """Accumulates all rows of ``X``; returns ``(accumulator, classes)``.

    With ``options.num_classes`` the labels must be class indices; otherwise classes are
    the sorted unique labels (found before the pass when ``y`` is an array, during it for
    an iterable of chunks). ``n_features``: the width the rows must have. With
    ``options.checkpoint`` the pass saves its state every ``checkpoint_every`` chunks
    and, started again with the same input, continues after the last saved chunk.
    """
    threads = resolve_threads(options.n_threads)
    source = open_source(X, y, sample_weight)
    run = _Pass(source, _encoder(source, options.num_classes), options, threads)
    if run.acc is not None and n_features is not None:
        check_n_features(run.acc.n_features, n_features)
    with contextlib.ExitStack() as stack:
        bar = progress_bar(options.progress and not run.complete, source.n_rows, "labelranker")
        if bar is not None:
            stack.callback(bar.close)
        chunks = source.chunks(run.rows, skip=0 if run.iterable else run.done)
        stack.callback(getattr(chunks, "close", lambda: None))
        if run.complete:
            if run.iterable:  # only its first chunk is read, to check it is this data
                first = next(iter(chunks), None)
                if first is not None:
                    run.note_chunk(0, first)
        else:
            _feed(run, chunks, stack, bar, n_features)
    acc = run.acc
    if acc is not None and not run.complete:
        if not isinstance(source, ArraySource):
            # Out of core, memory matters more than the solve's page faults: free the
            # pass's buffers before the solve allocates its own.
            acc.release_buffers()
        if run.saver is not None:
            run.save(complete=True)
    if acc is None or acc.n_samples == 0:
        if allow_empty:  # an update with no rows changes nothing
            return None, None
        raise ValueError("X has no rows: nothing to rank")
    return run.encoder.finish(acc)


def _feed(run: _Pass, chunks, stack: contextlib.ExitStack, bar, n_features) -> None:
    """The loop of a pass: every new chunk into the accumulator, checkpoints on the way."""
    if run.acc is not None:
        stack.enter_context(run.acc.streaming_pass())
    gather = None
    # An array source seeks past the chunks already done; an iterable yields them again.
    first = 0 if run.iterable else run.done
    index = first - 1
    for index, chunk in enumerate(chunks, start=first):
        if run.note_chunk(index, chunk):
            continue  # counted before the interruption
        X_part = as_features(chunk.X)
        run.wide = run.wide or X_part.dtype == np.float64
        if run.wide and X_part.dtype != np.float64:
            X_part = X_part.astype(np.float64)  # exact: float32 widens without rounding
        n = X_part.shape[0]
        idx = run.encoder.encode(chunk.y, n)
        if idx.ndim == 2 and (run.saver is not None or run.folds is not None):
            raise ValueError("a label-weight matrix cannot be combined with checkpoint or folds")
        w_part = as_weights(chunk.w, n)
        if run.acc is None:
            if n_features is not None:
                check_n_features(X_part.shape[1], n_features)
            shape = (X_part.shape[1], run.encoder.capacity)
            run.acc = (
                ScatterAccumulator(*shape, n_threads=run.threads)
                if run.folds is None
                else FoldedAccumulator(*shape, run.folds, n_threads=run.threads)
            )
            stack.enter_context(run.acc.streaming_pass())
        if run.iterable:
            if gather is None:
                run.rows = run.rows or run._default_rows(X_part.shape[1], X_part.dtype.itemsize)
                gather = _Gather(run.rows)
            batches = list(gather.add(X_part, idx, w_part))
        else:
            batches = [(X_part, idx, w_part)]
        for batch in batches:
            _add(run.acc, run.encoder, *batch)
        run.done = index + 1
        if run.saver is not None and run.done % run.saver.every == 0:
            if gather is not None and gather.filled:
                _add(run.acc, run.encoder, *gather.flush())
            run.acc.commit_so_far()
            run.save(complete=False)
        if bar is not None:
            bar.update(n)
    if run.iterable and index + 1 < run.done:
        raise ValueError(
            run._other_data(
                f"it yields {index + 1} chunks, fewer than the {run.done} it covers; its chunks"
            )
        )
    if gather is not None and gather.filled:
        assert run.acc is not None  # created with the first chunk, before any gathering
        _add(run.acc, run.encoder, *gather.flush())


def _add(acc: ScatterAccumulator | FoldedAccumulator, encoder, X, idx, w) -> None:
    if encoder.capacity > acc.num_classes:  # classes discovered beyond the slots so far
        acc.grow_classes(encoder.capacity)
    acc.update(X, idx, w)


def _update_streamed(acc: ScatterAccumulator, X, y, sample_weight, **options):
    """``ScatterAccumulator.update`` for streamed inputs: the rows go into a private
    accumulator first (the caller absorbs it), so a failure midway changes nothing."""
    opts = StreamOptions(num_classes=acc.num_classes, n_threads=acc.n_threads, **options)
    part, _ = stream(X, y, sample_weight, opts, n_features=acc.n_features, allow_empty=True)
    return part


ScatterAccumulator._streamed_update = _update_streamed
