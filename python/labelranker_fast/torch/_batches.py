"""Batches on their way to the device: split, checked, copied, and safe from producers that
refill their buffers.

On CUDA a pinned host tensor is copied to the device asynchronously: the copy is queued
behind the work already on the stream, and the host goes on. A producer that refills one
pinned buffer when it is asked for the next batch can then overwrite it before the copy
has read it, and the model trains or is scored on the next batch's data with no error.
So a loader whose batches are not known to be fresh is asked for its next batch only once
the copies of the last one have been read (a wait for that copy, which sits behind the
step before; the step just queued keeps the GPU busy meanwhile). ``fresh_batches`` says
which loaders need no wait.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate

from ._device import device_loader

__all__ = [
    "batch_inputs",
    "check_inputs",
    "copy_event",
    "device_batches",
    "fresh_batches",
    "kept_rng",
    "probe_batches",
    "split_batch",
]


_INPUT_KEYS = ("pixel_values", "image", "input", "x")  # a dict batch's inputs, first found
_TARGET_KEYS = ("labels", "label", "target", "y")


def split_batch(batch):
    """(inputs, targets) of a batch: a (x, y, ...) tuple/list or a mapping (a dict, or a
    Hugging Face ``BatchFeature``, which is a ``UserDict``) with
    "pixel_values"/"image"/"input" and "labels"/"label"/"target" keys."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in _INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in _TARGET_KEYS if k in batch), None)
        if x is not None and y is not None:
            return x, y
    raise TypeError(
        "each batch must be an (inputs, targets) tuple or a dict with 'pixel_values' and "
        f"'labels' keys, got {type(batch).__name__}"
    )


def batch_inputs(batch):
    """The inputs of a batch that may have no targets (what ``predict`` reads): a tensor, a
    (x, ...) tuple/list (``TensorDataset(x)`` gives 1-tuples) or a mapping with
    "pixel_values"/"image"/"input"/"x"."""
    if torch.is_tensor(batch):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) >= 1:
        return batch[0]
    if isinstance(batch, Mapping):
        for key in _INPUT_KEYS:
            if key in batch:
                return batch[key]
    raise TypeError(
        "each batch must be inputs, an (inputs, ...) tuple or a dict with a 'pixel_values' "
        f"key, got {type(batch).__name__}"
    )


def check_inputs(x) -> None:
    """A batch's inputs must be a tensor (TypeError otherwise)."""
    if not torch.is_tensor(x):
        raise TypeError(f"each batch's inputs must be a torch tensor, got {type(x).__name__}")


def fresh_batches(loader: Iterable[Any]) -> bool:
    """Whether every batch of ``loader`` is made of new tensors, so that none can be
    refilled under a pending copy: a ``DataLoader`` with workers (their batches arrive as
    new tensors, and its pinning copies them into new pinned memory, which PyTorch's
    pinned-memory cache hands out again only after the copies that read it), or one
    without workers that batches with ``default_collate`` (``torch.stack`` makes new
    tensors). Anything else may hand back one buffer every time: a custom ``collate_fn``,
    ``batch_size=None`` (the dataset's own tensors pass through), any other iterable."""
    if not isinstance(loader, DataLoader):
        return False
    if loader.num_workers > 0:
        return True
    return loader.batch_sampler is not None and loader.collate_fn is default_collate


def copy_event(device: torch.device) -> torch.cuda.Event:
    """An event recorded on ``device``'s current stream, the one that copies to or from
    that device run on (the current device may be another GPU)."""
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def _targets(y, n: int) -> torch.Tensor:
    """Class indices as a 1-D int64 tensor of the batch's ``n`` samples (lists, tuples and
    numpy arrays accepted); bool or floating-point targets would index the position table
    as a mask or fail, (n, 1) or one-hot ones fail deep in the loss."""
    try:
        y = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"each batch's targets must be integer class indices: {exc}") from None
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"each batch's targets must be integer class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(
            "each batch's targets must be one class index per sample, shape "
            f"({n},), got shape {tuple(y.shape)} (one-hot or (n, 1) targets: argmax or ravel)"
        )
    return y if y.dtype == torch.int64 else y.to(torch.int64)


def _positions(table: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``table[y]`` on the host, where a negative index would wrap around to another
    class (``table[-1]`` is the last one's) with no error: index_select refuses it and
    any index past the end, as it reads them (no reduction and no read by the caller)."""
    try:
        pos = table.index_select(0, y)
    except IndexError:
        bad = y[(y < 0) | (y >= table.shape[0])]
        raise ValueError(
            f"each batch's targets must be class indices 0..{table.shape[0] - 1}, got "
            f"{bad[:5].tolist()}"
        ) from None
    return pos.pin_memory() if y.is_pinned() else pos  # its copy stays asynchronous


def device_batches(
    loader: Iterable[Any], dev: torch.device, table: torch.Tensor | None = None
) -> Iterator[tuple[Any, Any]]:
    """Each batch's (inputs, targets) on ``dev``, copied asynchronously; targets as int64,
    or with ``table`` (a host tensor: class index -> head position) their positions.

    Host targets are looked up on the host before their copy, so an index outside the
    table is a ValueError (never a wrap-around, nor a CUDA device-side assert); targets
    a loader has put on the device already (XLA's loader does) are looked up there.
    For a loader whose batches are not fresh (``fresh_batches``), a batch with a pinned
    tensor is followed by a wait for its copies before the loader is asked for the next
    one, also when the step raises. XLA's loader moves the batches itself.

    Raises
    ------
    TypeError
        A batch that is not (inputs, targets), inputs that are not a tensor, or targets
        that are not integer class indices.
    ValueError
        Targets that are not one index per sample, or (with ``table``) outside it.
    """
    wait = dev.type == "cuda" and not fresh_batches(loader)
    on_dev = None
    for batch in device_loader(loader, dev):
        x, y = split_batch(batch)
        check_inputs(x)
        y = _targets(y, int(x.shape[0]) if x.dim() else -1)
        if table is not None and y.device.type == "cpu":
            y = _positions(table, y)
        elif table is not None:
            on_dev = table.to(y.device) if on_dev is None else on_dev
            y = on_dev.index_select(0, y)
        pinned = wait and (x.is_pinned() or y.is_pinned())
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        read = copy_event(dev) if pinned else None
        try:
            yield x, y
        finally:
            if read is not None:
                read.synchronize()


def probe_batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches to learn the feature width from, in the order to try them: from a plain
    ``DataLoader`` without workers that batches a map-style data set, its first sample
    collated alone (its sampler not drawn from); then (or else) its first batch.

    The one sample is only a shortcut: a data set indexed by other keys than 0, a
    ``collate_fn`` that needs a whole batch (an even one, say), a subclass that changes
    its batches or ``batch_size=None`` (where the data set may take lists of indices)
    may make it fail or differ, and then the loader's own batch decides. With workers the
    main process reads nothing: a data set may open a handle on its first read (or in
    ``worker_init_fn``) that must not be opened before its workers start."""
    if isinstance(loader, DataLoader) and (
        type(loader).__iter__ is DataLoader.__iter__
        and not isinstance(loader.dataset, IterableDataset)
        and loader.batch_sampler is not None
        and loader.num_workers == 0
    ):
        try:
            one = loader.collate_fn([loader.dataset[0]])
        except Exception:  # noqa: BLE001 - the loader's own batch is read next
            one = None
        if one is not None:
            yield one
    for batch in loader:  # an empty loader yields nothing
        yield batch
        break


@contextlib.contextmanager
def kept_rng(device: torch.device):
    """Runs the block with the random states of torch (CPU and ``device``), numpy and
    Python put back afterwards: a probe that draws from them (a random transform, a
    masking backbone) must not change the run that follows it."""
    devices = [device] if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
