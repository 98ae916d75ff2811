"""extract_and_rank: a frozen model's features streamed into the ranker, batch by batch.

The model runs on the device in the calling thread; each batch's pooled features are
copied to the host (asynchronously on CUDA, into pinned memory) and handed to a feeder
thread that gathers them into engine-sized chunks and accumulates them. The engine
releases the GIL, so accumulation on the host overlaps with the device computing the next
batch. No more than a few batches' features exist at any time.

Everything put on the feeder's queue is owned by it: labels are always copied and CPU
features too, since a loader may refill its tensors in place and a model or pooling may
return a view of a buffer it overwrites next batch; a CUDA copy lands in fresh pinned
memory. A pinned input the loader could refill (see ``_batches.fresh_batches``) is not
asked for again until its copy to the device has been read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence, Sized
from typing import Any, Literal, overload

import numpy as np
import torch

from .._api import accumulate
from .._inputs import check_int, check_n_components, parse_shrinkage
from .._ordering import check_method
from .._ranking import LabelRanking
from .._ranking_text import check_names
from .._stream import progress_bar
from ._batches import check_inputs, copy_event, fresh_batches, split_batch
from ._device import autocast_context, check_amp, device_loader, no_grad_context, pick_device
from ._distributed import all_reduce_, is_distributed
from ._pooling import backbone_features, check_pooling, features_module, frozen, input_dtype

__all__ = ["extract_and_rank", "split_batch"]

_DONE = object()
_CANCEL = object()


class _Cancelled(Exception):
    """Ends the accumulation early; its partial statistics are discarded."""


class _Feeder:
    """A thread that accumulates (features, labels) batches put by the model's thread."""

    def __init__(self, num_classes: int, n_threads, folds=None, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._result = None
        self._error = None
        self._thread = threading.Thread(
            target=self._run,
            args=(num_classes, n_threads, folds),
            name="labelranker-feeder",
            daemon=True,
        )
        self._thread.start()

    def _batches(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if item is _CANCEL:
                raise _Cancelled
            feats, ready, labels = item
            if ready is not None:
                ready.synchronize()  # the device-to-host copy has landed
            yield feats, labels

    def _run(self, num_classes, n_threads, folds):
        try:
            batches = self._batches()
            opts = dict(num_classes=num_classes, n_threads=n_threads, folds=folds)
            self._result = accumulate(batches, **opts)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the model's thread
            self._error = exc

    def put(self, item) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                raise RuntimeError("the feature accumulation thread stopped unexpectedly")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self):
        self.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """Stops the thread without finishing the pass, and waits for it."""
        while True:  # unblock the thread: drop what is queued, then tell it to stop
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(_CANCEL)
        except queue.Full:  # pragma: no cover - emptied just above, one producer
            pass
        self._thread.join()


def _to_host(feats: torch.Tensor):
    """(host tensor owned by the caller, event or None): asynchronously on CUDA."""
    feats = feats.detach()
    if feats.is_cuda:
        host = torch.empty(feats.shape, dtype=feats.dtype, device="cpu", pin_memory=True)
        host.copy_(feats, non_blocking=True)
        return host, copy_event(feats.device)
    if feats.device.type == "cpu":  # may be the model's or the pooling's own buffer
        return feats.clone(memory_format=torch.contiguous_format), None
    return feats.cpu(), None  # XLA: runs the pending graph into a fresh host tensor


def _owned_labels(y):
    """A copy of the batch's labels: the loader may refill its tensor in place."""
    if torch.is_tensor(y):
        return y.detach().to("cpu", copy=True)
    return np.array(y, copy=True)


def _to_device(x, dev: torch.device, dtype, wait: bool):
    """(x on ``dev``, event or None). Float inputs take the model's dtype. The event
    marks the copy out of a pinned host tensor, which runs asynchronously: a loader
    whose batches are not fresh (``wait``) may refill that tensor only once it has been
    read."""
    check_inputs(x)
    pinned = wait and x.device.type == "cpu" and x.is_pinned()
    x = x.to(dev, non_blocking=True)
    read = copy_event(dev) if pinned else None
    if dtype is not None and x.is_floating_point() and x.dtype != dtype:
        x = x.to(dtype)  # on the device, after the copy
    return x, read


@overload
def extract_and_rank(
    model: torch.nn.Module | Callable[..., Any],
    loader: Iterable[Any],
    *,
    num_classes: int,
    pooling: str | Callable[[Any], torch.Tensor] = ...,
    device: str | torch.device = ...,
    shrinkage: Literal["oas"] | float | None = ...,
    n_components: int = ...,
    amp: bool | torch.dtype | None = ...,
    progress: bool = ...,
    n_threads: int | None = ...,
    return_accumulator: Literal[False] = ...,
    distributed: Literal["auto"] | bool = ...,
    class_names: Sequence[str] | None = ...,
    method: Literal["anchor", "seriation"] = ...,
    folds: int | None = ...,
) -> LabelRanking: ...


@overload
def extract_and_rank(
    model: torch.nn.Module | Callable[..., Any],
    loader: Iterable[Any],
    *,
    num_classes: int,
    pooling: str | Callable[[Any], torch.Tensor] = ...,
    device: str | torch.device = ...,
    shrinkage: Literal["oas"] | float | None = ...,
    n_components: int = ...,
    amp: bool | torch.dtype | None = ...,
    progress: bool = ...,
    n_threads: int | None = ...,
    return_accumulator: Literal[True],
    distributed: Literal["auto"] | bool = ...,
    class_names: Sequence[str] | None = ...,
    method: Literal["anchor", "seriation"] = ...,
    folds: int | None = ...,
) -> tuple[LabelRanking, Any]: ...


def extract_and_rank(
    model: torch.nn.Module | Callable[..., Any],
    loader: Iterable[Any],
    *,
    num_classes: int,
    pooling: str | Callable[[Any], torch.Tensor] = "avg",
    device: str | torch.device = "auto",
    shrinkage: Literal["oas"] | float | None = None,
    n_components: int = 1,
    amp: bool | torch.dtype | None = None,
    progress: bool = True,
    n_threads: int | None = None,
    return_accumulator: bool = False,
    distributed: Literal["auto"] | bool = "auto",
    class_names: Sequence[str] | None = None,
    method: Literal["anchor", "seriation"] = "anchor",
    folds: int | None = None,
) -> LabelRanking | tuple[LabelRanking, Any]:
    """Ranks the classes of ``loader`` by LDA on ``model``'s frozen features.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A timm model, a Hugging Face vision model, or any module returning a tensor. A
        Hugging Face model with a head (``ViTForImageClassification``,
        ``VideoMAEForVideoClassification``, ...) is ranked on its base model's features
        (``getattr(model, model.base_model_prefix)``): the same ranking as passing that
        backbone, for every pooling but ``"head"``. It
        is moved to ``device`` and run in eval mode without gradients; afterwards every
        submodule has its own training flag back, also after an error or Ctrl-C. A
        Hugging Face ViTMAE sees every patch, in order: its masking (which it applies
        even in eval mode) is off for the call, its ``config.mask_ratio`` restored after.
        Models whose masking cannot be turned off are refused (ValueError). Float inputs
        are cast to the model's parameter dtype (a half-precision model takes float32).
    loader : iterable of batches
        ``(inputs, targets)`` tuples (a DataLoader) or dicts with "pixel_values" and
        "labels"; targets are class indices in [0, num_classes), or multi-hot or soft
        label weights of shape (B, num_classes) (see ``rank_labels``).
    num_classes : int
    pooling : "avg", "cls", "max", "avgmax", "head" or callable
        How token or map outputs become one vector per sample (see ``pool``). "head":
        timm's ``forward_head(..., pre_logits=True)``, or the input of a Hugging Face
        classifier's ``classifier`` module (the features its head sees, pooled as the
        model pools: ViT's class token, VideoMAE's ``fc_norm`` of the mean token).
    device : "auto", str or torch.device
        "auto": XLA when torch_xla is importable and configured, else CUDA, else CPU.
    shrinkage, n_components :
        As for ``rank_labels``.
    amp : None, bool, torch.bfloat16 or torch.float16
        Mixed precision for the forward pass (None: bfloat16 on CUDA devices that support
        it and on TPUs, off on CPU and the XLA CPU device; True: bfloat16). ``finetune``
        refuses float16, which would need loss scaling.
        Low-precision features are accumulated in float64 all the same.
    progress : bool
        A progress bar over batches (tqdm, on standard error).
    n_threads : int, optional
        Host threads for the accumulation (default: all cores).
    return_accumulator : bool
        Also return the ScatterAccumulator (to merge with other processes' or save); with
        ``folds``, the FoldedAccumulator (its ``total()`` is the ScatterAccumulator).
    distributed : "auto" or bool
        Combine the statistics of every rank (``all_reduce_``) before ranking, so that
        every rank returns the same ranking of the whole data set. "auto": when
        torch.distributed is initialised with several ranks and the loader's sampler is
        a ``DistributedSampler`` (whose padding, when the data set size is not a multiple
        of the world size, counts a few samples twice: use ``drop_last`` or a size that
        divides).
    class_names : sequence of str, optional
        The name of each class index (the ranking's ``names``). Default: the loader's
        ``dataset.classes`` when it is a list of strings (torchvision's ImageFolder and
        data sets), else none.
    method : "anchor" or "seriation", default="anchor"
        As for ``rank_labels``.
    folds : int, optional
        As for ``rank_labels``: ``ranking.stability`` over K folds of the same pass (each
        fold combined over the ranks when ``distributed``).

    Returns
    -------
    LabelRanking, or (LabelRanking, ScatterAccumulator)

    Raises
    ------
    ValueError, TypeError
        Invalid arguments, batches or labels, a pooling the model's output does not allow
        (``"cls"`` without a class token, ``"head"`` on a model without a known head), a
        Hugging Face classifier whose backbone is not under its ``base_model_prefix``,
        masking that cannot be turned off, or a solve
        that fails (a singular scatter without shrinkage). The model's configuration and
        every submodule's training flag are restored, and the feeder thread is stopped.
    KeyboardInterrupt
        Ctrl-C, with the same clean-up.
    """
    num_classes = check_int(num_classes, "num_classes", 2)
    check_pooling(pooling)
    parse_shrinkage(shrinkage)
    check_n_components(n_components)
    check_method(method)
    check_amp(amp)
    if folds is not None:
        check_int(folds, "folds", 2)
    names = _class_names(class_names, loader, num_classes)
    dev = pick_device(device)
    if distributed == "auto":
        from torch.utils.data.distributed import DistributedSampler

        distributed = is_distributed() and isinstance(
            getattr(loader, "sampler", None), DistributedSampler
        )
    # A Hugging Face classifier's backbone, found (or refused) before any batch runs.
    dtype = input_dtype(features_module(model, pooling))
    if isinstance(model, torch.nn.Module):
        model = model.to(dev)

    bar = progress_bar(
        progress,
        len(loader) if isinstance(loader, Sized) else None,
        "extract_and_rank",
        unit="batch",
    )
    wait = dev.type == "cuda" and not fresh_batches(loader)  # (see _batches)
    loader = device_loader(loader, dev)
    feeder = None
    try:
        with frozen(model), no_grad_context(dev), autocast_context(dev, amp):
            feeder = _Feeder(num_classes, n_threads, folds)
            for batch in loader:
                x, y = split_batch(batch)
                labels = _owned_labels(y)
                x, read = _to_device(x, dev, dtype, wait)
                feats = backbone_features(model, x, pooling)
                feeder.put((*_to_host(feats), labels))
                if read is not None:
                    read.synchronize()  # before the loader may refill the pinned input
                if bar is not None:
                    bar.update(1)
            acc, _ = feeder.finish()
        if distributed:
            for part in getattr(acc, "folds", [acc]):  # each fold over the ranks
                all_reduce_(part)
    except BaseException:
        if feeder is not None:
            feeder.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()
    ranking = acc.rank(shrinkage, n_components, method=method).with_names(names)
    return (ranking, acc) if return_accumulator else ranking


def _class_names(class_names, loader, num_classes: int) -> tuple[str, ...] | None:
    """The names to give the ranking, checked before any batch is run."""
    what = "class_names"
    if class_names is None:
        found = getattr(getattr(loader, "dataset", None), "classes", None)
        if not isinstance(found, (list, tuple)) or not all(isinstance(c, str) for c in found):
            return None
        class_names, what = found, "loader.dataset.classes"
        if len(found) != num_classes:
            raise ValueError(
                f"loader.dataset.classes has {len(found)} names but num_classes is "
                f"{num_classes}; pass class_names= (or fix num_classes)"
            )
    return check_names(class_names, num_classes, what)
