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

import copy
import json
import math
import os
import pickle
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .._inputs import check_int
from .._io import as_path, atomic_write, write_json
from .._ranking import LabelRanking
from .._stream import progress_bar
from ._device import autocast_context, is_xla, pick_device, xla_sync
from ._extract import split_batch
from ._pooling import backbone_features, check_pooling, every_patch, frozen

__all__ = ["Classifier", "FinetuneResult", "finetune", "evaluate", "predict", "load_checkpoint"]


class Classifier(torch.nn.Module):
    """``backbone`` -> pooled features (``pooling``) -> a fresh ``nn.Linear`` head."""

    def __init__(
        self, backbone, feature_dim: int, num_classes: int, *, pooling="avg", head_seed: int = 0
    ):
        super().__init__()
        check_pooling(pooling)
        self.backbone = backbone
        self.pooling = pooling
        self.head = torch.nn.Linear(feature_dim, num_classes)
        self.reset_head(head_seed)

    def reset_head(self, head_seed: int) -> None:
        """Re-initialises the head from ``head_seed`` only (the global RNG is untouched)."""
        gen = torch.Generator().manual_seed(check_int(head_seed, "head_seed", 0))
        with torch.no_grad():
            weight = torch.empty(self.head.weight.shape)
            torch.nn.init.trunc_normal_(weight, std=0.02, a=-0.04, b=0.04, generator=gen)
            self.head.weight.copy_(weight)
            self.head.bias.zero_()

    def forward(self, x):
        # A Hugging Face ViTMAE masks 75 % of its patches in every mode; fine-tuning and
        # prediction see them all, as extraction does.
        with every_patch(self.backbone):
            return self.head(backbone_features(self.backbone, x, self.pooling))


@dataclass
class FinetuneResult:
    model: Classifier
    history: list = field(default_factory=list)  # one dict per epoch


def _cosine_with_warmup(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _position_table(ranking, num_classes: int, device):
    """Lookup table original class index -> position on ``device`` (identity without a
    ranking), built once so a step never goes back to the host."""
    if ranking is None:
        return torch.arange(num_classes, device=device)
    if not isinstance(ranking, LabelRanking):
        raise TypeError(f"ranking must be a LabelRanking, got {type(ranking).__name__}")
    if ranking.n_classes != num_classes or not np.array_equal(
        ranking.classes, np.arange(num_classes)
    ):
        raise ValueError(
            "finetune needs a ranking of the class indices 0..num_classes-1 (the loader's "
            "targets); apply RankedTarget to other labels in the dataset instead"
        )
    return torch.from_numpy(ranking.positions.copy()).to(device)


def _feature_dim(backbone, loader, pooling, device) -> int:
    x, _ = split_batch(next(iter(loader)))
    training = getattr(backbone, "training", False)
    if hasattr(backbone, "eval"):
        backbone.eval()
    with torch.no_grad():
        dim = backbone_features(backbone, x[:2].to(device), pooling).shape[1]
    if training:
        backbone.train()
    return int(dim)


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _save_checkpoint(path, model, optimizer, scheduler, epoch, history, identity) -> None:
    state = {
        "model": _to_cpu(model.state_dict()),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": json.dumps(history),
        "identity": json.dumps(identity, sort_keys=True),
    }
    # Atomic: a crash or Ctrl-C leaves the previous checkpoint intact.
    atomic_write(path, lambda fh: torch.save(state, fh), name="checkpoint_path")


def _read_checkpoint(path) -> dict:
    path = as_path(path, "checkpoint_path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path!r} is not a readable fine-tuning checkpoint: {exc}") from None
    missing = [
        k
        for k in ("model", "optimizer", "scheduler", "epoch", "history")
        if not isinstance(state, dict) or k not in state
    ]
    if missing:
        raise ValueError(f"{path!r} is not a fine-tuning checkpoint: it is missing {missing}")
    return state


def load_checkpoint(
    path, model, optimizer=None, scheduler=None, *, expect=None
) -> tuple[int, list]:
    """Restores a checkpoint written by ``finetune`` (``weights_only=True``: tensors and
    plain values only), all or nothing.

    Parameters
    ----------
    path : path
    model, optimizer, scheduler : the objects to restore (optimizer, scheduler optional)
    expect : dict, optional
        The run's identity (what ``finetune`` records: class count, ranking positions,
        recipe, head seed, pooling, steps per epoch); a checkpoint of another run is refused.

    Returns
    -------
    (epochs completed, history)

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a readable checkpoint, another run's (naming what differs), or one whose
        tensors do not fit ``model``; nothing is changed then.
    """
    state = _read_checkpoint(path)
    if expect is not None:
        if "identity" not in state:
            raise ValueError(
                f"checkpoint {path!r} was written by an earlier version, which "
                "did not record its run; delete it to start over"
            )
        saved = json.loads(state["identity"])
        diffs = [
            f"{k} (checkpoint: {saved.get(k)!r}, this run: {v!r})"
            for k, v in expect.items()
            if saved.get(k) != v
        ]
        if diffs:
            raise ValueError(
                f"checkpoint {path!r} is of another fine-tuning run: it differs in "
                + "; ".join(diffs)
                + ". Delete it to start over"
            )
    parts = [
        (model, state["model"]),
        (optimizer, state["optimizer"]),
        (scheduler, state["scheduler"]),
    ]
    before = [(obj, copy.deepcopy(obj.state_dict())) for obj, _ in parts if obj is not None]
    try:
        for obj, saved_state in parts:
            if obj is not None:
                obj.load_state_dict(saved_state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        for obj, old in before:  # all or nothing
            obj.load_state_dict(old)
        raise ValueError(f"checkpoint {path!r} does not fit this model: {exc}") from None
    return int(state["epoch"]), json.loads(state["history"])


def _device_loader(loader, device):
    if is_xla(device):
        import torch_xla.distributed.parallel_loader as pl

        return pl.MpDeviceLoader(loader, device)
    return loader


def evaluate(model, loader, *, ranking=None, num_classes=None, device="auto", amp=None) -> dict:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``loader`` (targets mapped to
    positions with ``ranking``)."""
    dev = pick_device(device)
    num_classes = num_classes or model.head.out_features
    table = _position_table(ranking, num_classes, dev)
    loss_sum = torch.zeros((), device=dev)
    hits = torch.zeros((), device=dev, dtype=torch.long)
    count = 0
    with frozen(model), torch.no_grad(), autocast_context(dev, amp):
        for batch in _device_loader(loader, dev):
            x, y = split_batch(batch)
            x, pos = x.to(dev, non_blocking=True), table[y.to(dev, non_blocking=True)]
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, pos, reduction="sum")
            hits += (logits.argmax(1) == pos).sum()
            count += int(y.shape[0])
            xla_sync(dev)
    return {"loss": float(loss_sum) / max(count, 1), "accuracy": float(hits) / max(count, 1)}


def predict(model, loader, *, ranking=None, device="auto", amp=None) -> np.ndarray:
    """Predicted original classes: argmax positions mapped back through ``ranking``."""
    dev = pick_device(device)
    out = []
    with frozen(model), torch.no_grad(), autocast_context(dev, amp):
        for batch in _device_loader(loader, dev):
            x, _ = split_batch(batch)
            out.append(model(x.to(dev, non_blocking=True)).argmax(1).cpu())
    positions = torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)
    return positions if ranking is None else ranking.unmap(positions)


def finetune(
    model,
    train_loader,
    *,
    num_classes: int,
    ranking: LabelRanking | None = None,
    val_loader=None,
    epochs: int = 100,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    warmup_epochs: int = 5,
    label_smoothing: float = 0.0,
    head_seed: int = 0,
    pooling="avg",
    device="auto",
    amp=None,
    history_path=None,
    checkpoint_path=None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tunes ``model`` (a backbone) with a fresh head on ``train_loader``.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone (timm, Hugging Face or any module; see ``pool``), or a
        ``Classifier`` to continue training one.
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
    """
    num_classes = check_int(num_classes, "num_classes", 2)
    epochs = check_int(epochs, "epochs", 1)
    warmup_epochs = check_int(warmup_epochs, "warmup_epochs", 0)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    dev = pick_device(device)
    if isinstance(model, Classifier):
        clf = model.to(dev)
    else:
        model = model.to(dev)
        dim = _feature_dim(model, train_loader, pooling, dev)
        clf = Classifier(model, dim, num_classes, pooling=pooling, head_seed=head_seed).to(dev)
    table = _position_table(ranking, num_classes, dev)
    steps = len(train_loader)
    optimizer = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(min(warmup_epochs, epochs) * steps, epochs * steps)
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
            for batch in _device_loader(train_loader, dev):
                x, y = split_batch(batch)
                x, pos = x.to(dev, non_blocking=True), table[y.to(dev, non_blocking=True)]
                with autocast_context(dev, amp):
                    logits = clf(x)
                loss = F.cross_entropy(logits.float(), pos, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step_optimizer(optimizer)
                scheduler.step()
                loss_sum += loss.detach() * y.shape[0]
                hits += (logits.detach().argmax(1) == pos).sum()
                count += int(y.shape[0])
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
                _save_checkpoint(
                    checkpoint_path, clf, optimizer, scheduler, epoch + 1, history, identity
                )
    finally:
        if bar is not None:
            bar.close()
    return FinetuneResult(model=clf, history=history)
