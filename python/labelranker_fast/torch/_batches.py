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

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from ._device import device_loader

__all__ = ["copy_event", "device_batches", "fresh_batches", "split_batch"]


def split_batch(batch):
    """(inputs, targets) of a batch: a (x, y, ...) tuple/list or a dict with
    "pixel_values"/"image"/"input" and "labels"/"label"/"target" keys."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        x = next((batch[k] for k in ("pixel_values", "image", "input", "x") if k in batch), None)
        y = next((batch[k] for k in ("labels", "label", "target", "y") if k in batch), None)
        if x is not None and y is not None:
            return x, y
    raise TypeError(
        "each batch must be an (inputs, targets) tuple or a dict with 'pixel_values' and "
        f"'labels' keys, got {type(batch).__name__}"
    )


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


def _targets(y) -> torch.Tensor:
    """Class indices as int64 (lists, tuples and numpy arrays accepted); bool or
    floating-point targets would index the position table as a mask or fail."""
    y = torch.as_tensor(y)
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"each batch's targets must be integer class indices, got dtype {y.dtype}")
    return y if y.dtype == torch.int64 else y.to(torch.int64)


def device_batches(loader: Iterable[Any], dev: torch.device) -> Iterator[tuple[Any, Any]]:
    """Each batch's (inputs, targets) on ``dev``, copied asynchronously; targets as int64.

    For a loader whose batches are not fresh (``fresh_batches``), a batch with a pinned
    tensor is followed by a wait for its copies before the loader is asked for the next
    one, also when the step raises. XLA's loader moves the batches itself.

    Raises
    ------
    TypeError
        A batch that is not (inputs, targets), inputs that are not a tensor, or targets
        that are not integer class indices.
    """
    wait = dev.type == "cuda" and not fresh_batches(loader)
    for batch in device_loader(loader, dev):
        x, y = split_batch(batch)
        if not torch.is_tensor(x):
            raise TypeError(f"each batch's inputs must be a torch tensor, got {type(x).__name__}")
        y = _targets(y)
        pinned = wait and (x.is_pinned() or y.is_pinned())
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        read = copy_event(dev) if pinned else None
        try:
            yield x, y
        finally:
            if read is not None:
                read.synchronize()
