"""Applying a ranking to data: targets become head positions.

- ``RankedTarget(ranking)``: a ``target_transform`` for torchvision-style datasets;
- ``RankedDataset(dataset, ranking)``: wraps a dataset of (input, target) pairs;
- ``ranked_class_to_idx(class_to_idx, ranking)``: an ImageFolder's class_to_idx with the
  ranked positions, for code that builds its own targets from folder names;
- on tensors, ``ranking.remap(y)`` works on any device and ``ranking.unmap(pred)`` maps
  predicted positions back to the original classes.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._inputs import is_torch_tensor
from .._ranking import LabelRanking

__all__ = ["RankedTarget", "RankedDataset", "ranked_class_to_idx"]


def _check_ranking(ranking) -> LabelRanking:
    if not isinstance(ranking, LabelRanking):
        raise TypeError(f"ranking must be a LabelRanking, got {type(ranking).__name__}")
    return ranking


class RankedTarget:
    """Target transform: one original label -> its head position (int).

    The label is matched as ``ranking.remap`` matches it: numbers by value (1.0 is the
    class 1, 1.7 no class: ValueError), text only against text classes; a torch tensor
    must be 0-D with an integer dtype. Picklable (DataLoader workers get a copy): it holds
    only the ranking's arrays.

    Parameters
    ----------
    ranking : LabelRanking
        The ranking whose positions the targets become.

    Raises
    ------
    TypeError
        ``ranking`` is not a LabelRanking. Called on a target: ValueError for a label that
        is not one of the ranking's classes or not one label.
    """

    def __init__(self, ranking: LabelRanking) -> None:
        self.ranking = _check_ranking(ranking)

    def __call__(self, target: Any) -> int:
        if np.ndim(target) != 0:  # a list, an array or a tensor of several labels
            raise ValueError(
                f"target must be one label, got {type(target).__name__} of "
                f"shape {tuple(np.shape(target))}"
            )
        if is_torch_tensor(target):
            return int(self.ranking.remap(target.reshape(1))[0])
        return int(self.ranking.remap([target])[0])

    def __repr__(self) -> str:
        return f"RankedTarget({self.ranking!r})"


class RankedDataset:
    """``dataset[i] = (input, target)`` -> ``(input, position)``; other items unchanged.

    Parameters
    ----------
    dataset : map-style dataset
        Items are ``(input, target, ...)`` tuples or lists.
    ranking : LabelRanking
        Targets are remapped with ``RankedTarget(ranking)``.

    Raises
    ------
    TypeError
        ``ranking`` is not a LabelRanking; on indexing, an item that is not a pair.
    """

    def __init__(self, dataset: Any, ranking: LabelRanking) -> None:
        self.dataset = dataset
        self.transform = RankedTarget(ranking)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(
                f"dataset items must be (input, target) pairs, got {type(item).__name__}"
            )
        return (item[0], self.transform(item[1]), *item[2:])


def ranked_class_to_idx(class_to_idx: dict[str, int], ranking: LabelRanking) -> dict[str, int]:
    """``{class name: ranked position}`` from an ImageFolder's ``{class name: index}``.

    Parameters
    ----------
    class_to_idx : dict of {str: int}
        Folder name -> class index, one index per folder.
    ranking : LabelRanking
        Ranked on the folder names (str classes) or on the folder indices (integer
        classes, e.g. from ``extract_and_rank``).

    Returns
    -------
    dict of {str: int}

    Raises
    ------
    TypeError
        Keys that are not str, or (integer classes) indices that are not integers.
    ValueError
        Another number of classes, names or indices not among the ranking's classes, or
        one index given to several folders.
    """
    _check_ranking(ranking)
    if not isinstance(class_to_idx, dict) or not class_to_idx:
        raise TypeError("class_to_idx must be a non-empty dict {class name: index}")
    names = list(class_to_idx)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("class_to_idx keys must be folder names (str)")
    if len(names) != ranking.n_classes:
        raise ValueError(f"class_to_idx has {len(names)} classes, the ranking {ranking.n_classes}")
    if ranking.classes.dtype.kind in "US":
        positions = ranking.remap(names)
    else:
        indices = list(class_to_idx.values())
        if not all(
            isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)) for i in indices
        ):
            raise TypeError("class_to_idx values must be integer class indices")
        if len(set(indices)) != len(indices):  # two folders would share one position
            raise ValueError("class_to_idx gives one index to several class names")
        positions = ranking.remap(np.array([int(i) for i in indices]))
    return {name: int(p) for name, p in zip(names, positions)}
