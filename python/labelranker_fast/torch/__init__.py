"""labelranker_fast.torch: the PyTorch layer (CPU, CUDA, and TPU through torch_xla).

    from labelranker_fast.torch import extract_and_rank, finetune, RankedTarget

- ``extract_and_rank(model, loader, num_classes=...)``: a frozen model's pooled features
  streamed into the ranker (never all held), host accumulation overlapping device compute;
- ``finetune(backbone, loader, num_classes=..., ranking=...)``: the paper's recipe with a
  fresh, seeded head, targets as ranked positions;
- ``RankedTarget``, ``RankedDataset``, ``ranked_class_to_idx``: a ranking applied to data
  (and ``LabelRanking.remap``/``unmap`` on tensors, ``LabelRanking.to_class_map`` for timm);
- ``all_reduce_(acc)``: every rank's statistics combined with torch.distributed;
- ``pool``, ``pick_device``, ``evaluate``, ``predict``, ``load_checkpoint``.

Importing it needs PyTorch (``pip install "labelranker_fast[torch]"``); the rest of the
package does not.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the test that hides torch
    raise ImportError(
        "labelranker_fast.torch needs PyTorch: pip install 'labelranker_fast[torch]'"
    ) from exc

from ._checkpoints import load_checkpoint
from ._device import pick_device
from ._distributed import all_reduce_
from ._extract import extract_and_rank
from ._finetune import Classifier, FinetuneResult, evaluate, finetune, predict
from ._head import lda_head
from ._pooling import pool
from ._targets import RankedDataset, RankedTarget, ranked_class_to_idx

__all__ = [
    "extract_and_rank",
    "all_reduce_",
    "finetune",
    "evaluate",
    "predict",
    "load_checkpoint",
    "Classifier",
    "FinetuneResult",
    "RankedTarget",
    "RankedDataset",
    "ranked_class_to_idx",
    "pool",
    "pick_device",
    "lda_head",
]
