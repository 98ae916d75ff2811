"""The paper's Figure 3 for a LabelRanking: classes along the discriminant axis.

One component: each class at its position (vertical, position 0 on top) and its centroid
on the first discriminant (horizontal), with the band of one within-class standard
deviation either side (1 in the units of W^T S W = I), its name, and, when the ranking
has a stability, the interval of positions it took over the folds. Two or more
components: the centroids in the first two directions, joined in the order's path.
Needs matplotlib.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _labels(ranking) -> list[str]:
    """The label of each position: the ranking's names, else its classes as text."""
    if ranking.ranked_names is not None:
        return list(ranking.ranked_names)
    return [str(c) for c in ranking.ranked_classes.tolist()]


def plot_ranking(ranking, ax: Any = None, max_names: int = 50) -> Any:
    """Draws ``ranking`` on ``ax`` (a new figure's Axes by default) and returns the Axes."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError("ranking.plot needs matplotlib (pip install matplotlib)") from None
    if ax is None:
        height = min(12.0, 1.5 + 0.25 * ranking.n_classes)
        _, ax = plt.subplots(figsize=(7.0, height if ranking.n_components == 1 else 6.0))
    labels = _labels(ranking)
    show_names = ranking.n_classes <= max_names
    cents = ranking.centroids[ranking.order]
    if ranking.n_components == 1:
        _one_axis(ax, ranking, cents[:, 0], labels if show_names else None)
    else:
        _two_axes(ax, cents, labels if show_names else None)
    return ax


def _one_axis(ax, ranking, x: np.ndarray, labels) -> None:
    pos = np.arange(x.size)
    ax.errorbar(
        x, pos, xerr=1.0, fmt="none", ecolor="tab:blue", alpha=0.35, elinewidth=6,
        label="±1 within-class s.d.",
    )  # fmt: skip
    ax.plot(x, pos, "o", color="tab:blue", label="centroid")
    stability = ranking.stability
    if stability is not None:
        # Drawn about the interval's middle: the full order's position may lie outside
        # every fold's (an error bar about it could not show that).
        low, high = ranking.stability.position_interval[ranking.order].T
        ax.errorbar(
            x, (low + high) / 2, yerr=(high - low) / 2,
            fmt="none", ecolor="tab:red", capsize=3,
            label=f"positions over {stability.folds} folds",
        )  # fmt: skip
    if labels is not None:
        for xi, p, name in zip(x, pos, labels):
            ax.annotate(name, (xi, p), xytext=(6, 0), textcoords="offset points", va="center")
    ax.set_ylim(x.size - 0.5, -0.5)  # position 0 on top
    ax.set_xlabel("first discriminant (within-class s.d.)")
    ax.set_ylabel("position")
    ax.legend(loc="best", fontsize="small")


def _two_axes(ax, cents: np.ndarray, labels) -> None:
    ax.plot(cents[:, 0], cents[:, 1], "-", color="0.6", label="order")
    ax.plot(cents[:, 0], cents[:, 1], "o", color="tab:blue", label="centroid")
    if labels is not None:
        for (xi, yi), name in zip(cents[:, :2], labels):
            ax.annotate(name, (xi, yi), xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("first discriminant")
    ax.set_ylabel("second discriminant")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize="small")
