"""Backbones for the study: random (``scratch``), self-supervised on the training images
(``mae``, ``rotation``), or a timm model with a checkpoint (``timm:<name>``).

Pretrained weights are cached on disk, keyed by everything that determines them (data
fingerprint, architecture, pretext, epochs, seed), and reused by later runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import pickle
import time
from typing import Any

import torch

from .._io import atomic_write
from ._vit import MaskedAutoencoder, RotationPretext, TinyViT

__all__ = ["BackboneSpec", "build_backbone", "default_cache_dir"]

PRETEXTS = {"mae": MaskedAutoencoder, "rotation": RotationPretext}


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "labelranker_fast", "study")


class BackboneSpec:
    """What a backbone is: ``kind`` in {"scratch", "mae", "rotation"}, or "timm:<name>"
    (random weights) or "timm:<name>@<checkpoint path>" (``checkpoint`` is the default path
    for a timm backbone without one), plus the TinyViT architecture and pretraining."""

    def __init__(
        self,
        kind: str,
        *,
        arch: dict,
        pretrain_epochs: int = 100,
        seed: int = 0,
        checkpoint: str | None = None,
    ):
        if not (kind in ("scratch", *PRETEXTS) or kind.startswith("timm:")):
            raise ValueError(
                f"backbone must be scratch, mae, rotation or timm:<name>[@checkpoint], got {kind!r}"
            )
        if kind.startswith("timm:") and "@" in kind:  # timm:<name>@<checkpoint path>
            kind, checkpoint = kind.split("@", 1)
        self.kind, self.arch, self.pretrain_epochs, self.seed = (
            kind,
            dict(arch),
            pretrain_epochs,
            seed,
        )
        self.checkpoint = os.path.expanduser(checkpoint) if checkpoint else None

    @property
    def pretraining(self) -> str:
        if self.kind.startswith("timm:"):
            return (
                f"checkpoint {os.path.basename(self.checkpoint)}"
                if self.checkpoint
                else "none (random init)"
            )
        return {
            "scratch": "none (random init)",
            "mae": "masked autoencoder (ours)",
            "rotation": "rotation prediction (ours)",
        }[self.kind]

    @property
    def model_name(self) -> str:
        if self.kind.startswith("timm:"):
            return self.kind[5:]
        a = self.arch
        return f"TinyViT d{a['dim']} x{a['depth']} p{a['patch']}"


def _fingerprint(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:16]


def _pretrain(spec: BackboneSpec, images: torch.Tensor, device, log, input_size=None) -> TinyViT:
    torch.manual_seed(spec.seed)
    encoder = TinyViT(**spec.arch)
    task = PRETEXTS[spec.kind](encoder).to(device)
    batch = 128
    steps = spec.pretrain_epochs * math.ceil(len(images) / batch)
    opt = torch.optim.AdamW(task.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(spec.seed)
    t0 = time.perf_counter()
    task.train()
    for epoch in range(spec.pretrain_epochs):
        perm = torch.randperm(len(images), generator=gen)
        total = 0.0
        for i in range(0, len(images), batch):
            x = images[perm[i : i + batch]].to(device)
            if input_size is not None and input_size != x.shape[-1]:
                x = torch.nn.functional.interpolate(
                    x, size=input_size, mode="bilinear", align_corners=False
                )
            loss = task.loss(x, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(x)
        if log and (epoch + 1) % max(1, spec.pretrain_epochs // 5) == 0:
            log(
                f"  {spec.kind} pretraining epoch {epoch + 1}/{spec.pretrain_epochs}: "
                f"loss {total / len(images):.4f} ({time.perf_counter() - t0:.0f} s)"
            )
    return encoder.cpu()


def build_backbone(
    spec: BackboneSpec,
    train_images: torch.Tensor,
    *,
    cache_dir=None,
    device="cpu",
    log=print,
    input_size=None,
):
    """The backbone on the CPU, pretrained (or loaded from the cache) if its kind asks;
    ``input_size``: the size batches are resized to (default: the images' own)."""
    size = input_size or train_images.shape[-1]
    if spec.kind.startswith("timm:"):
        import timm

        kwargs: dict[str, Any] = dict(
            pretrained=False, num_classes=0, in_chans=train_images.shape[1]
        )
        try:  # ViTs are built at the input size (their position embeddings depend on it)
            model = timm.create_model(spec.kind[5:], img_size=size, **kwargs)
        except TypeError as exc:  # CNNs (timm:resnet18) take any size and no img_size
            if "img_size" not in str(exc):
                raise
            model = timm.create_model(spec.kind[5:], **kwargs)
        if spec.checkpoint:
            try:
                state = torch.load(spec.checkpoint, map_location="cpu", weights_only=True)
            except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                raise ValueError(
                    f"checkpoint {spec.checkpoint!r} is not a readable weights file: {exc}"
                ) from None
            if not isinstance(state, dict):
                raise ValueError(f"checkpoint {spec.checkpoint!r} holds no state dict")
            state = state.get("model", state)
            missing, _ = model.load_state_dict(state, strict=False)
            if log and missing:
                log(f"  {spec.kind}: {len(missing)} parameters not in the checkpoint")
        return model
    if spec.kind == "scratch":
        torch.manual_seed(spec.seed)
        return TinyViT(**spec.arch)
    key = json.dumps(
        {
            "kind": spec.kind,
            "arch": spec.arch,
            "epochs": spec.pretrain_epochs,
            "seed": spec.seed,
            "data": _fingerprint(train_images),
            "size": size,
        },
        sort_keys=True,
    )
    path = os.path.join(
        cache_dir or default_cache_dir(),
        f"{spec.kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt",
    )
    encoder = TinyViT(**spec.arch)
    if os.path.exists(path):
        try:
            encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (
            RuntimeError,
            OSError,
            EOFError,
            ValueError,
            KeyError,
            pickle.UnpicklingError,
        ) as exc:  # a damaged cache entry is made again
            if log:
                log(f"  {spec.kind}: cached weights unreadable ({exc}); pretraining again")
            encoder = TinyViT(**spec.arch)
        else:
            if log:
                log(f"  {spec.kind}: pretrained weights from the cache ({path})")
            return encoder
    encoder = _pretrain(spec, train_images, device, log, input_size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    weights = copy.deepcopy(encoder.state_dict())
    atomic_write(path, lambda fh: torch.save(weights, fh))
    return encoder
