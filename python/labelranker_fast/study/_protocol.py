"""The protocol of the label-order study (the preprint's Tables 1 to 3, plus two controls).

For every backbone, and every fine-tuning seed s (which fixes the head's initialisation,
the data order, augmentation and dropout, so that within a seed only the label order
changes), the backbone is fine-tuned with the classes in
- ``sequence`` order (class k at head position k),
- K random orders (the same K permutations for every backbone and seed),
- the ``ranker`` order (``extract_and_rank`` on that backbone's frozen features),
and two controls test the paper's explanation:
1. ``equivalent``: the first random order with the head's initial rows permuted the same
   way, so each class meets the initial weights it meets in the sequence run. If label
   order acts only through the head's initial weights, this reproduces the sequence run.
2. head seeds: the sequence order fine-tuned with other head-initialisation seeds (data
   seed fixed), whose spread is set against the spread across random orders.
Beside them (``_arms``): the order-free ``lda`` arm (an LDA-initialised head, in the
sequence order and in random order 1) and control 3, the linear probe (backbone frozen,
head trained alone, in the same two orders). The ranker is run with ``folds=5``, whose
stability goes in the report.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .._accumulator import ScatterAccumulator
from .._inputs import parse_shrinkage
from .._ranking import LabelRanking
from ..torch import Classifier, evaluate, extract_and_rank, pick_device
from ..torch._pooling import backbone_features
from ._arms import lda_classifier, pooled_features, probe_once, recipe_finetune
from ._backbones import BackboneSpec, build_backbone
from ._data import load_data, stratified_split

__all__ = ["StudyConfig", "QUICK", "run_protocol"]


@dataclass
class StudyConfig:
    """Settings of ``run_study`` (see the README's study section).

    Attributes
    ----------
    data : "digits", an image folder path, or an (images, labels) pair
        The data set; it is split into train and test with ``test_fraction``.
    backbones : tuple of str
        "scratch", "mae", "rotation" or "timm:<name>" (weights from ``checkpoint``).
    random_orders, seeds, head_seeds : int
        Random label orders, fine-tuning seeds, and head seeds of control 2.
    epochs, warmup_epochs, batch_size, lr, weight_decay, label_smoothing : number
        Fine-tuning schedule (AdamW, cosine with warm-up).
    pretrain_epochs : int
        Self-supervised pre-training epochs of the built-in backbones.
    arch : dict
        ViT size of the built-in backbones (patch, dim, depth, heads).
    image_size, input_size : int
        Stored image size; size batches are resized to (None: as stored).
    test_fraction : float
        Share of each class held out for testing.
    pooling, shrinkage, device : str, float or None
        As for ``extract_and_rank`` and ``finetune``.
    cache_dir : str, optional
        Where pre-trained backbones are cached.
    """

    data: object = "digits"
    backbones: tuple = ("scratch", "mae", "rotation")
    checkpoint: str | None = None  # weights for a timm:<name> backbone
    # The default design: 4 seeds x 9 orders (sequence + 8 random) detects an order-effect
    # SD of about 0.9 noise SDs (about 2 points on digits) with 80 % power, in an estimated
    # 13 minutes on 2 cores; 1 point needs about 16 seeds for one backbone (README).
    random_orders: int = 8
    seeds: int = 4
    head_seeds: int = 3  # control 2: sequence order, these head seeds
    epochs: int = 15
    warmup_epochs: int = 1
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    pretrain_epochs: int = 100
    arch: dict = field(default_factory=lambda: dict(patch=2, dim=48, depth=3, heads=3))
    image_size: int = 32  # image folders are stored at this size
    input_size: int | None = None  # batches are resized to this (e.g. 224 for ViT-B)
    test_fraction: float = 0.3
    pooling: str = "avg"
    shrinkage: Literal["oas"] | float | None = "oas"
    lda_shrinkage: Literal["oas"] | float | None = 1.0  # of the lda arm's head (see README)
    folds: int = 5  # the ranker's stability folds
    device: str = "auto"
    cache_dir: str | None = None


# A smoke run: fewer orders, seeds and epochs (about 1.5 minutes on two cores). Three
# random orders: with 2 seeds x 4 orders the permutation test can reach p <= 0.05 (with
# 3 orders it cannot), so the minimal detectable effect is finite.
QUICK = dict(random_orders=3, seeds=2, head_seeds=2, epochs=6, pretrain_epochs=20)


class _Images(Dataset):
    """(image, label) pairs of an in-memory image tensor. With ``shift`` a random
    translation of up to one pixel (zero padding), drawn from the global torch RNG, which
    each run seeds with its fine-tuning seed; with ``size`` resized (bilinear) on the fly,
    so that large models see their input size without the data set being held at it."""

    def __init__(self, images, labels, shift: bool = False, size: int | None = None):
        self.images = torch.nn.functional.pad(images, (1, 1, 1, 1)) if shift else images
        self.labels, self.shift, self.size = labels, shift, size
        self.native = images.shape[-1]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        if self.shift:
            dy, dx = torch.randint(0, 3, (2,)).tolist()
            img = img[:, dy : dy + self.native, dx : dx + self.native]
        if self.size is not None and self.size != self.native:
            img = torch.nn.functional.interpolate(
                img[None], size=self.size, mode="bilinear", align_corners=False
            )[0]
        return img, self.labels[i]


def _order_ranking(order: np.ndarray) -> LabelRanking:
    """A LabelRanking that only carries an order (its centroids are the positions)."""
    positions = np.argsort(order)
    return LabelRanking(np.arange(order.size), order, positions.astype(float), [0.0])


def run_protocol(cfg: StudyConfig, log=print) -> dict:
    """Runs the study; returns {"config", "data", "runs": [...], "orders": {...}}."""
    t_start = time.perf_counter()
    try:  # checked before any training
        parse_shrinkage(cfg.lda_shrinkage)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lda_shrinkage: {exc}") from None
    if not isinstance(cfg.folds, int) or isinstance(cfg.folds, bool) or cfg.folds < 0:
        raise ValueError(f"folds must be an int >= 0 (0 or 1: no stability), got {cfg.folds!r}")
    device = pick_device(cfg.device)
    data = load_data(cfg.data, cfg.image_size)
    train, test = stratified_split(data.labels, cfg.test_fraction, seed=0)
    C = data.num_classes
    size = cfg.input_size or data.images.shape[-1]
    arch = dict(cfg.arch, img_size=size, channels=data.images.shape[1])
    log(
        f"data: {data.name}, {len(train)} train / {len(test)} test images "
        f"{tuple(data.images.shape[1:])}, {C} classes; device {device}"
    )

    x_tr, y_tr = data.images[train], data.labels[train]
    plain_train = DataLoader(_Images(x_tr, y_tr, size=cfg.input_size), batch_size=256)
    test_loader = DataLoader(
        _Images(data.images[test], data.labels[test], size=cfg.input_size), batch_size=256
    )
    perm_rng = np.random.default_rng(12345)
    random_orders = [perm_rng.permutation(C) for _ in range(cfg.random_orders)]
    # the lda arm and the probe's "random" order: random order 1 (or one drawn alike)
    lda_order = random_orders[0] if random_orders else np.random.default_rng(12345).permutation(C)

    runs, orders, rankings = [], {}, {}
    for kind in cfg.backbones:
        spec = BackboneSpec(
            kind, arch=arch, pretrain_epochs=cfg.pretrain_epochs, checkpoint=cfg.checkpoint
        )
        log(f"backbone {kind}: {spec.pretraining}")
        backbone = build_backbone(
            spec, x_tr, cache_dir=cfg.cache_dir, device=device, log=log, input_size=cfg.input_size
        )
        ranker, stats = extract_and_rank(
            copy.deepcopy(backbone),
            plain_train,
            num_classes=C,
            pooling=cfg.pooling,
            shrinkage=cfg.shrinkage,
            device=device,
            progress=False,
            folds=cfg.folds if cfg.folds and cfg.folds >= 2 else None,
            return_accumulator=True,
        )
        if not isinstance(stats, ScatterAccumulator):  # with folds: their merge
            stats = stats.total()
        orders[kind] = {"ranker": ranker.order.tolist()}
        rankings[kind] = ranker.with_names(data.class_names).to_dict()
        log(f"  ranker order: {ranker.order.tolist()}")
        with torch.no_grad():
            probe = next(iter(plain_train))[0][:2]
            dim = int(backbone_features(backbone.eval(), probe, cfg.pooling).shape[1])
        features = (
            (pooled_features(backbone, plain_train, cfg.pooling, device), y_tr),
            (pooled_features(backbone, test_loader, cfg.pooling, device), data.labels[test]),
        )

        Job = tuple[str, LabelRanking | None, str, int, int]  # state, order, arm, seed, head
        seq_rand = [("sequence", None), ("random", _order_ranking(lda_order))]
        conditions: list[tuple[str, LabelRanking | None, str]] = [("sequence", None, "main")]
        conditions += [
            (f"random {k + 1}", _order_ranking(o), "main") for k, o in enumerate(random_orders)
        ]
        conditions += [("ranker", ranker, "main")]
        if random_orders:
            conditions += [("equivalent", _order_ranking(random_orders[0]), "equivalent")]
        conditions += [(f"lda {n}", rk, "lda") for n, rk in seq_rand]
        conditions += [(f"probe {n}", rk, "probe") for n, rk in seq_rand]
        jobs: list[Job] = [
            (name, rk, arm, seed, seed) for seed in range(cfg.seeds) for name, rk, arm in conditions
        ]
        jobs += [("sequence", None, "main", 0, h) for h in range(1, cfg.head_seeds)]
        for name, rk, arm, seed, head_seed in jobs:
            t0 = time.perf_counter()
            if arm == "probe":
                acc, loss = probe_once(*features, rk, seed, C, cfg, device)
            else:
                clf = (
                    lda_classifier(backbone, dim, C, stats, rk, cfg.lda_shrinkage, cfg.pooling)
                    if arm == "lda"
                    else None
                )
                acc, loss = _finetune_once(
                    backbone, dim, x_tr, y_tr, test_loader, rk, arm == "equivalent",
                    seed, head_seed, C, cfg, device, clf,
                )  # fmt: skip
            run = {
                "backbone": kind,
                "model": spec.model_name,
                "pretraining": spec.pretraining,
                "label_state": name,
                "seed": seed,
                "head_seed": head_seed,
                "order": (rk.order.tolist() if rk is not None else list(range(C))),
                "head_permuted": arm == "equivalent",
                "head_init": "lda" if arm == "lda" else "random",
                "backbone_frozen": arm == "probe",
                "accuracy": acc,
                "final_train_loss": loss,
                "seconds": time.perf_counter() - t0,
            }
            runs.append(run)
            log(
                f"  {name:<14} seed {seed} head {head_seed}: accuracy {100 * acc:6.2f} % "
                f"({run['seconds']:.1f} s)"
            )
    config = asdict(cfg)
    config["data"] = data.name if not isinstance(cfg.data, str) else cfg.data
    return {
        "config": config,
        "data": {
            "name": data.name,
            "train": len(train),
            "test": len(test),
            "classes": C,
            "shape": list(data.images.shape[1:]),
        },
        "device": str(device),
        "runs": runs,
        "orders": orders,
        "rankings": rankings,
        "lda_order": lda_order.tolist(),
        "random_orders": [o.tolist() for o in random_orders],
        "seconds": time.perf_counter() - t_start,
    }


def _finetune_once(
    backbone, dim, x_tr, y_tr, test_loader, ranking, permute_head, seed, head_seed, C, cfg, device,
    clf=None,
):  # fmt: skip
    """(test accuracy, final training loss); ``clf``: a Classifier with its head set (the
    lda arm), else a fresh one with the head from ``head_seed``."""
    torch.manual_seed(seed)  # augmentation shifts and any dropout: the same for every order
    if clf is None:
        clf = Classifier(copy.deepcopy(backbone), dim, C, pooling=cfg.pooling, head_seed=head_seed)
    if permute_head:  # row p starts as the sequence run's row for the class now at p
        with torch.no_grad():
            clf.head.weight.copy_(clf.head.weight[torch.from_numpy(ranking.order.copy())])
    loader = DataLoader(
        _Images(x_tr, y_tr, shift=True, size=cfg.input_size),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    result = recipe_finetune(clf, loader, cfg, C, ranking, device)
    acc = evaluate(result.model, test_loader, ranking=ranking, num_classes=C, device=device)
    return acc["accuracy"], result.history[-1]["train_loss"]
