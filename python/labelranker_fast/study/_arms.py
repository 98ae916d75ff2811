"""The study's order-free arm and linear-probe control.

- ``lda``: fine-tuning from an LDA-initialised head (``lda_head``), row p the LDA
  classifier of the class at position p, built from the statistics the ranker already
  has. A class keeps its row wherever it sits, so the label order cannot change the run
  beyond float rounding (the gradient into the features sums over head positions in
  position order).
- ``probe``: the backbone frozen, the head alone trained with the same recipe on the
  backbone's features of the (un-augmented) training images. The problem is convex, so
  the order can act only through the optimiser's path from the random initial head.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..torch import Classifier, evaluate, finetune
from ..torch._head import lda_head
from ..torch._pooling import backbone_features, frozen

__all__ = ["lda_classifier", "pooled_features", "probe_once", "recipe_finetune"]


def recipe_finetune(clf, loader, cfg, C: int, ranking, device):
    """``finetune`` of ``clf`` on ``loader`` with the study's recipe: ``cfg``'s epochs,
    warm-up, learning rate, weight decay and label smoothing, no progress bar."""
    return finetune(
        clf,
        loader,
        num_classes=C,
        ranking=ranking,
        epochs=cfg.epochs,
        warmup_epochs=cfg.warmup_epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        label_smoothing=cfg.label_smoothing,
        device=device,
        progress=False,
    )


def lda_classifier(backbone, dim, C, accumulator, ranking, shrinkage, pooling) -> Classifier:
    """A Classifier on a copy of ``backbone`` whose head is ``lda_head(accumulator,
    ranking, shrinkage)`` (the 'auto' temperature)."""
    clf = Classifier(copy.deepcopy(backbone), dim, C, pooling=pooling)
    weight, bias = lda_head(accumulator, ranking, shrinkage=shrinkage)
    with torch.no_grad():
        clf.head.weight.copy_(weight)
        clf.head.bias.copy_(bias)
    return clf


def pooled_features(backbone, loader, pooling, device) -> torch.Tensor:
    """(N, d) pooled features of every batch of ``loader``, the backbone in eval mode."""
    backbone = backbone.to(device)
    with frozen(backbone), torch.no_grad():
        feats = [
            backbone_features(backbone, x.to(device), pooling).float().cpu() for x, _ in loader
        ]
    backbone.cpu()
    return torch.cat(feats)


class _Features(torch.nn.Module):
    """A 'backbone' whose input already is the pooled feature vector."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def probe_once(train, test, ranking, seed, C, cfg, device) -> tuple[float, float]:
    """(test accuracy, final training loss) of a head trained alone on frozen features.

    ``train`` and ``test`` are (features, labels) pairs; the head starts from
    ``head_seed = seed``, batches are shuffled from ``seed``, and the schedule is the
    fine-tuning recipe's (epochs, warm-up, lr, weight decay, batch size)."""
    feats, labels = train
    clf = Classifier(_Features(), feats.shape[1], C, pooling="avg", head_seed=seed)
    loader = DataLoader(
        TensorDataset(feats, labels),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    result = recipe_finetune(clf, loader, cfg, C, ranking, device)
    test_loader = DataLoader(TensorDataset(*test), batch_size=512)
    acc = evaluate(result.model, test_loader, ranking=ranking, num_classes=C, device=device)
    return acc["accuracy"], result.history[-1]["train_loss"]
