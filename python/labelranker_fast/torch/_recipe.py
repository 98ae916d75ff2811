"""The fine-tuning recipe's pieces: the learning-rate schedule, the targets' position
table, and the head's initialisation (random from a seed, or LDA)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._accumulator import ScatterAccumulator
from .._ranking import LabelRanking
from ._head import lda_head


def cosine_with_warmup(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def position_table(ranking, num_classes: int, device):
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


def init_head(clf, head_init, ranking, loader, given: bool, device, amp) -> bool:
    """Sets ``clf``'s head as ``head_init`` asks (see ``finetune``); True for an LDA head.
    ``given``: ``clf`` was passed in (a Classifier keeps its head)."""
    if isinstance(head_init, str) and head_init == "random":
        return False
    if not (isinstance(head_init, ScatterAccumulator) or head_init == "lda"):
        raise ValueError(
            f"head_init must be 'random', 'lda' or a ScatterAccumulator, got {head_init!r}"
        )
    if given:
        raise ValueError("head_init does not apply to a Classifier, which keeps its own head")
    acc = head_init
    if not isinstance(acc, ScatterAccumulator):
        from ._extract import extract_and_rank

        _, acc = extract_and_rank(
            clf.backbone, loader, num_classes=clf.head.out_features, pooling=clf.pooling,
            device=device, amp=amp, shrinkage="oas", progress=False, return_accumulator=True,
        )  # fmt: skip
    if (acc.n_features, acc.num_classes) != (clf.head.in_features, clf.head.out_features):
        raise ValueError(
            f"head_init statistics have {acc.n_features} features and {acc.num_classes} "
            f"classes, the head {clf.head.in_features} and {clf.head.out_features}"
        )
    weight, bias = lda_head(acc, ranking)
    with torch.no_grad():
        clf.head.weight.copy_(weight)
        clf.head.bias.copy_(bias)
    return True
