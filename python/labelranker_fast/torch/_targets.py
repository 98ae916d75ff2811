"""Applying a ranking to data: targets become head positions.

- ``RankedTarget(ranking)``: a ``target_transform`` for torchvision-style datasets;
- ``RankedDataset(dataset, ranking)``: wraps a dataset of (input, target) pairs;
- ``ranked_class_to_idx(class_to_idx, ranking)``: an ImageFolder's class_to_idx with the
  ranked positions, for code that builds its own targets from folder names;
- on tensors, ``ranking.remap(y)`` works on any device and ``ranking.unmap(pred)`` maps
  predicted positions back to the original classes.
"""

from __future__ import annotations

import numpy as np

from .._ranking import LabelRanking

__all__ = ["RankedTarget", "RankedDataset", "ranked_class_to_idx"]


def _check_ranking(ranking) -> LabelRanking:
    if not isinstance(ranking, LabelRanking):
        raise TypeError(f"ranking must be a LabelRanking, got {type(ranking).__name__}")
    return ranking


class RankedTarget:
    """Target transform: an original label (int or str) -> its head position (int).

    Picklable (DataLoader workers get a copy): it holds only the ranking's arrays.
    """

    def __init__(self, ranking: LabelRanking):
        self.ranking = _check_ranking(ranking)

    def __call__(self, target):
        if hasattr(target, "item") and getattr(target, "ndim", 0) == 0:
            target = target.item()
        return int(self.ranking.remap(np.asarray([target]))[0])

    def __repr__(self) -> str:
        return f"RankedTarget({self.ranking!r})"


class RankedDataset:
    """``dataset[i] = (input, target)`` -> ``(input, position)``; other items unchanged."""

    def __init__(self, dataset, ranking: LabelRanking):
        self.dataset = dataset
        self.transform = RankedTarget(ranking)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"dataset items must be (input, target) pairs, got {type(item).__name__}")
        return (item[0], self.transform(item[1]), *item[2:])


def ranked_class_to_idx(class_to_idx: dict, ranking: LabelRanking) -> dict:
    """``{class name: ranked position}`` from an ImageFolder's ``{class name: index}``.

    The ranking's classes may be the folder names (ranked on name labels) or the folder
    indices (ranked on ImageFolder's targets, e.g. with ``extract_and_rank``).
    """
    _check_ranking(ranking)
    if not isinstance(class_to_idx, dict) or not class_to_idx:
        raise TypeError("class_to_idx must be a non-empty dict {class name: index}")
    names = list(class_to_idx)
    if len(names) != ranking.n_classes:
        raise ValueError(f"class_to_idx has {len(names)} classes, the ranking {ranking.n_classes}")
    if ranking.classes.dtype.kind in "US":
        positions = ranking.remap(np.asarray(names))
    else:
        positions = ranking.remap(np.asarray([class_to_idx[n] for n in names]))
    return {name: int(p) for name, p in zip(names, positions)}
