"""finetune: the paper's fine-tuning recipe as a thin loop (a backbone, a fresh head).

Recipe defaults (the Label Ranker preprint, section 4): AdamW, learning rate 5e-4, weight
decay 0.05, 5 warm-up epochs then cosine decay (per step), 100 epochs, batch size 64 (the
loader's), cross-entropy on head positions, top-1 accuracy. The classifier head is a new
``nn.Linear`` initialised from ``head_seed`` alone (normal, std 0.02, truncated at two
standard deviations, zero bias; timm's ViT heads use std 0.02 with a far cut-off), so two
runs that differ only in label order start from the same head.

Devices: CPU, CUDA (bfloat16 autocast where supported) and XLA. On XLA the loop follows
torch_xla's idioms: inputs through ``MpDeviceLoader``, ``xm.optimizer_step`` (which also
all-reduces gradients when several devices run the loop under ``torch_xla.launch``), one
``torch_xla.sync()`` per step, and no host reads of device tensors inside a step: losses
and hits are summed on the device and read once per epoch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from .._accumulator import ScatterAccumulator
from .._inputs import check_int
from .._io import as_path, write_json
from .._ranking import LabelRanking
from .._stream import progress_bar
from ._batches import (
    batch_inputs,
    check_inputs,
    device_batches,
    kept_rng,
    probe_batches,
    split_batch,
)
from ._checkpoints import load_checkpoint, save_checkpoint
from ._device import autocast_context, check_amp, device_loader, is_xla, pick_device, xla_sync
from ._hf import check_label_order, head_width, logits_of
from ._pooling import backbone_features, check_pooling, every_patch, features_module, frozen
from ._recipe import cosine_with_warmup, init_head, position_table

__all__ = ["Classifier", "FinetuneResult", "finetune", "evaluate", "predict", "load_checkpoint"]


class Classifier(torch.nn.Module):
    """``backbone`` -> pooled features (``pooling``) -> a fresh ``nn.Linear`` head.

    Parameters
    ----------
    backbone : torch.nn.Module
        Any backbone ``extract_and_rank`` takes. A Hugging Face classifier gives its base
        model's features (its own head, and ``fc_norm``, unused and so not trained), or
        with ``pooling="head"`` the input of its own ``classifier`` (which stays unused).
    feature_dim : int
        Width of the pooled features.
    num_classes : int
        Head positions.
    pooling : str or callable
        As for ``extract_and_rank``.
    head_seed : int
        Seed of the head's initialisation (truncated normal, std 0.02), and nothing else.

    Raises
    ------
    ValueError, TypeError
        An unknown pooling, a negative or non-integer ``head_seed``, or a Hugging Face
        classifier whose backbone cannot be found (see ``extract_and_rank``).
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        pooling: str | Callable[[Any], torch.Tensor] = "avg",
        head_seed: int = 0,
    ) -> None:
        super().__init__()
        check_pooling(pooling)
        features_module(backbone, pooling)  # a Hugging Face backbone found, or ValueError
        self.backbone = backbone
        self.pooling = pooling
        self.head = torch.nn.Linear(feature_dim, num_classes)
        self.reset_head(head_seed)

    def reset_head(self, head_seed: int) -> None:
        """Re-initialises the head from ``head_seed`` only (the global RNG is untouched).

        Parameters
        ----------
        head_seed : int
            Seed of the head's truncated-normal weights (std 0.02); the bias is zeroed.

        Raises
        ------
        ValueError, TypeError
            ``head_seed`` negative or not an int.
        """
        gen = torch.Generator().manual_seed(check_int(head_seed, "head_seed", 0))
        with torch.no_grad():
            weight = torch.empty(self.head.weight.shape)
            torch.nn.init.trunc_normal_(weight, std=0.02, a=-0.04, b=0.04, generator=gen)
            self.head.weight.copy_(weight)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch: the head on the backbone's pooled features.

        A Hugging Face ViTMAE masks 75 % of its patches in every mode; fine-tuning and
        prediction see them all, as extraction does.

        Parameters
        ----------
        x : torch.Tensor
            A batch as the backbone takes it.

        Returns
        -------
        torch.Tensor of shape (batch, num_classes)
            Column p is the class at ranked position p.

        Raises
        ------
        ValueError, TypeError
            Backbone output that ``pooling`` cannot pool to one vector per sample.
        """
        with every_patch(self.backbone):
            return self.head(backbone_features(self.backbone, x, self.pooling))


@dataclass
class FinetuneResult:
    """What ``finetune`` returns.

    Attributes
    ----------
    model : Classifier
        The fine-tuned backbone and head (outputs in ranked positions).
    history : list of dict
        One dict per epoch: its loss, learning rate and, with a validation loader,
        accuracy (in class order).
    """

    model: Classifier
    history: list = field(default_factory=list)  # one dict per epoch


def _feature_dim(backbone, loader, pooling, device) -> int:
    """The width of ``backbone``'s pooled features, from the first of ``probe_batches``
    that it runs on; the random states are left as they were (see ``kept_rng``)."""
    check_pooling(pooling)
    features_module(backbone, pooling)  # ValueError before a batch is read
    error = None
    with kept_rng(device), frozen(backbone), torch.no_grad():
        for batch in probe_batches(loader):
            try:
                x, _ = split_batch(batch)
                return int(backbone_features(backbone, x[:2].to(device), pooling).shape[1])
            except Exception as exc:  # noqa: BLE001 - the loader's own batch is tried next
                error = exc
    if error is not None:
        raise error
    raise ValueError("finetune needs a train_loader with at least one batch")


def evaluate(
    model: torch.nn.Module,
    loader: Iterable[Any],
    *,
    ranking: LabelRanking | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "auto",
    amp: bool | torch.dtype | None = None,
) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``loader``.

    Parameters
    ----------
    model : torch.nn.Module
        A ``Classifier``, or any module returning logits over head positions: a tensor
        or an output with ``.logits`` (a Hugging Face classifier trained on ranked
        positions, as by ``Trainer`` in the README).
    loader : iterable of (inputs, targets); targets are class indices.
    ranking : LabelRanking, optional
        Targets are scored at their head positions (None: position = class index).
    num_classes : int, optional
        Default: ``model.head.out_features`` (a ``Classifier``), else
        ``model.config.num_labels`` (a Hugging Face model). Logits of another width are
        a ValueError.
    device, amp :
        As for ``extract_and_rank``.

    Returns
    -------
    dict with "loss" and "accuracy".

    Raises
    ------
    ValueError, TypeError
        A ranking of other classes than 0..num_classes-1, batches that are not (inputs,
        targets), outputs without logits, no ``num_classes`` to be found, logits of
        another width, or a ``model.config.id2label`` that labels its columns in another
        order than the ranking. Every submodule's training flag is restored.
    """
    dev = pick_device(device)
    positions = head_width(model, num_classes)
    table = position_table(ranking, positions, "cpu")  # targets are looked up on the host
    check_label_order(model, ranking)
    loss_sum = torch.zeros((), device=dev)
    hits = torch.zeros((), device=dev, dtype=torch.long)
    count = 0
    with frozen(model), torch.no_grad(), autocast_context(dev, amp):
        for x, pos in device_batches(loader, dev, table):
            logits = logits_of(model(x), positions).float()
            loss_sum += F.cross_entropy(logits, pos, reduction="sum")
            hits += (logits.argmax(1) == pos).sum()
            count += int(pos.shape[0])
            xla_sync(dev)
    return {"loss": float(loss_sum) / max(count, 1), "accuracy": float(hits) / max(count, 1)}


def predict(
    model: torch.nn.Module,
    loader: Iterable[Any],
    *,
    ranking: LabelRanking | None = None,
    device: str | torch.device = "auto",
    amp: bool | torch.dtype | None = None,
) -> np.ndarray:
    """Predicted original classes: argmax head positions mapped back through ``ranking``.

    Parameters
    ----------
    model : torch.nn.Module
        Returns logits over head positions: a tensor or an output with ``.logits`` (a
        Hugging Face classifier).
    loader : iterable of batches
        Inputs alone, (inputs, ...) tuples (``TensorDataset(x)`` gives 1-tuples) or dicts
        with "pixel_values"; targets, if any, are ignored.
    ranking : LabelRanking, optional
        None: the positions themselves.
    device, amp :
        As for ``extract_and_rank``.

    Returns
    -------
    ndarray of shape (n_samples,)

    Raises
    ------
    ValueError, TypeError
        Batches without inputs (or inputs that are not a tensor), outputs without 2-D
        logits, logits of another width than the ranking's classes, or a
        ``model.config.id2label`` that labels its columns in another order than the ranking
        (``check_label_order``).
        Every submodule's training flag is restored.
    """
    dev = pick_device(device)
    check_label_order(model, ranking)
    width = None if ranking is None else ranking.n_classes  # one logit per position
    out = []
    with frozen(model), torch.no_grad(), autocast_context(dev, amp):
        # No device_batches: its targets are ignored, and each batch's .cpu() below waits
        # for the batch's work, its input's copy included, before the next is asked for.
        for batch in device_loader(loader, dev):
            x = batch_inputs(batch)
            check_inputs(x)
            logits = logits_of(model(x.to(dev, non_blocking=True)), width, "ranking.n_classes")
            out.append(logits.argmax(1).cpu())
    positions = torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)
    return positions if ranking is None else ranking.unmap(positions)


def finetune(
    model: torch.nn.Module,
    train_loader: Iterable[Any],
    *,
    num_classes: int,
    ranking: LabelRanking | None = None,
    val_loader: Iterable[Any] | None = None,
    epochs: int = 100,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    warmup_epochs: int = 5,
    label_smoothing: float = 0.0,
    head_seed: int = 0,
    pooling: str | Callable[[Any], torch.Tensor] = "avg",
    device: str | torch.device = "auto",
    amp: bool | torch.dtype | None = None,
    head_init: Literal["random", "lda"] | ScatterAccumulator = "random",
    history_path: str | os.PathLike[str] | bytes | None = None,
    checkpoint_path: str | os.PathLike[str] | bytes | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tunes ``model`` (a backbone) with a fresh head on ``train_loader``.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone (timm, Hugging Face or any module; see ``pool``), or a
        ``Classifier`` to continue training one. A Hugging Face classifier
        (``*ForImageClassification``, ``*ForVideoClassification``) is a backbone too: the
        fresh head sits on the features ``extract_and_rank`` ranks it on (its base
        model's, or with ``pooling="head"`` its own head's input); its own head is not
        used and not trained.
    train_loader, val_loader : iterables of (inputs, targets)
        Targets are class indices 0..num_classes-1; with ``ranking`` the loss and
        accuracy use their head positions ``ranking.positions[target]``.
    num_classes : int
    ranking : LabelRanking, optional
        Label order of the head (None: position = class index, the "sequence" order).
    epochs, lr, weight_decay, warmup_epochs, label_smoothing :
        The recipe (defaults from the paper); the learning rate follows linear warm-up
        then cosine decay, stepped every batch.
    head_seed : int
        Seed of the head's initialisation, and nothing else.
    pooling, device, amp :
        As for ``extract_and_rank``.
    head_init : "random", "lda" or ScatterAccumulator, default="random"
        "random": truncated normal from ``head_seed``. "lda": row p is the LDA classifier
        of the class at position p (``lda_head``; OAS shrinkage), from one frozen pass of
        the backbone over ``train_loader`` first, or from the statistics given (a
        ScatterAccumulator of the backbone's pooled features, e.g. from
        ``extract_and_rank(..., return_accumulator=True)``). Each class then starts with
        its own row wherever it sits, so the label order cannot change the run.
    history_path : path, optional
        Per-epoch history written there as JSON after every epoch (atomically).
    checkpoint_path : path, optional
        Model, optimizer and schedule saved there after every epoch (atomically); if the
        file exists when ``finetune`` starts, training resumes after its last epoch.

    Returns
    -------
    FinetuneResult with ``model`` (the Classifier) and ``history``: per epoch
    ``epoch, lr, train_loss, train_accuracy, seconds`` and, with a val_loader,
    ``val_loss, val_accuracy``.

    Raises
    ------
    ValueError, TypeError
        Invalid arguments (counts, ``label_smoothing`` outside [0, 1), ``amp`` of
        torch.float16, which would need loss scaling, a ranking of other classes than
        0..num_classes-1), or a checkpoint at ``checkpoint_path`` that is not
        readable or belongs to another run (naming what differs; nothing is loaded).
    FileNotFoundError
        A folder of ``history_path`` or ``checkpoint_path`` that does not exist.
    KeyboardInterrupt
        Ctrl-C; the last completed epoch's checkpoint stays intact, to resume from.
    """
    num_classes = check_int(num_classes, "num_classes", 2)
    epochs = check_int(epochs, "epochs", 1)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", 0)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    check_amp(amp, training=True)
    dev = pick_device(device)
    if isinstance(model, Classifier):
        clf = model.to(dev)
    else:
        model = model.to(dev)
        dim = _feature_dim(model, train_loader, pooling, dev)
        clf = Classifier(model, dim, num_classes, pooling=pooling, head_seed=head_seed).to(dev)
    table = position_table(ranking, num_classes, "cpu")  # targets are looked up on the host
    lda = init_head(clf, head_init, ranking, train_loader, model is clf, dev, amp)
    steps = len(cast(Sized, train_loader))  # the schedule needs the steps per epoch
    optimizer = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(min(warmup_epochs, epochs) * steps, epochs * steps)
    )
    start = 0
    history: list[dict] = []
    identity = {
        "num_classes": num_classes,
        "epochs": epochs,
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "warmup_epochs": warmup_epochs,
        "label_smoothing": float(label_smoothing),
        "head_seed": int(head_seed),
        "pooling": pooling if isinstance(pooling, str) else "callable",
        "steps_per_epoch": steps,
        "positions": None if ranking is None else ranking.positions.tolist(),
        **({"head_init": "lda"} if lda else {}),  # random-head checkpoints stay as they were
    }
    if checkpoint_path is not None and os.path.exists(as_path(checkpoint_path, "checkpoint_path")):
        start, history = load_checkpoint(
            checkpoint_path, clf, optimizer, scheduler, expect=identity
        )
    if is_xla(dev):
        import torch_xla.core.xla_model as xm

        step_optimizer = xm.optimizer_step
    else:

        def step_optimizer(opt):
            opt.step()

    bar = progress_bar(progress, (epochs - start) * steps, "finetune", unit="step")
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            lr_now = optimizer.param_groups[0]["lr"]
            clf.train()
            loss_sum = torch.zeros((), device=dev)
            hits = torch.zeros((), device=dev, dtype=torch.long)
            count = 0
            for x, pos in device_batches(train_loader, dev, table):
                with autocast_context(dev, amp):
                    logits = clf(x)
                loss = F.cross_entropy(logits.float(), pos, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step_optimizer(optimizer)
                scheduler.step()
                loss_sum += loss.detach() * pos.shape[0]
                hits += (logits.detach().argmax(1) == pos).sum()
                count += int(pos.shape[0])
                xla_sync(dev)
                if bar is not None:
                    bar.update(1)
            record = {
                "epoch": epoch + 1,
                "lr": lr_now,
                "train_loss": float(loss_sum) / max(count, 1),
                "train_accuracy": float(hits) / max(count, 1),
            }
            if val_loader is not None:
                val = evaluate(
                    clf, val_loader, ranking=ranking, num_classes=num_classes, device=dev, amp=amp
                )
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            if history_path is not None:
                write_json(history_path, history, name="history_path", allow_nan=True)
            if checkpoint_path is not None:
                save_checkpoint(
                    checkpoint_path, clf, optimizer, scheduler, epoch + 1, history, identity
                )
    finally:
        if bar is not None:
            bar.close()
    return FinetuneResult(model=clf, history=history)
