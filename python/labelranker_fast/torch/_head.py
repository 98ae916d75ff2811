"""An LDA-initialised classifier head: each class's row is its LDA discriminant.

The head's row at position p is the LDA classifier of class ``order[p]``: ``coef_k =
S^-1 mu_k`` and ``intercept_k = -mu_k . coef_k / 2 + log pi_k`` (DESIGN.md section 7),
the ``coef_``/``intercept_`` of ``LabelRanker``. A class keeps its own row wherever it
sits, so two rankings give heads that are row permutations of each other, and label
order cannot change fine-tuning (weight imprinting, as in LP-FT).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .._accumulator import ScatterAccumulator
from .._classifier import class_rows
from .._inputs import parse_shrinkage
from .._ranking import LabelRanking


def lda_head(
    accumulator: ScatterAccumulator,
    ranking: LabelRanking | None = None,
    shrinkage: Literal["oas"] | float | None = "oas",
    scale: float | Literal["auto"] = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of an LDA-initialised head, rows in position order.

    Parameters
    ----------
    accumulator : ScatterAccumulator
        Statistics of the backbone's pooled features on the training set (as
        ``extract_and_rank(..., return_accumulator=True)`` returns them).
    ranking : LabelRanking, optional
        Of the class indices 0..C-1: row p is class ``ranking.order[p]``. Default: row k
        is class k.
    shrinkage : None, "oas" or float in [0, 1], default="oas"
        Of the within-class covariance S (OAS: the intensity the ranking's solve uses).
    scale : "auto" or float, default="auto"
        Multiplies weights and biases. Raw LDA logits are log-posteriors, often tens of
        units apart, and fine-tuning from them diverges (a training loss near 20 after
        three epochs where a random head has 2.3: the study's scratch backbone); "auto"
        divides them by their expected spread over the classes at the training samples
        (the spread at the class means plus what within-class deviations add, from the
        statistics alone), so they start about one unit apart. The same factor for every
        class: the head is still the LDA classifier up to a temperature, and order-free.
        1.0 gives the raw classifier. This sets the spread of the logits, not the size of
        the weights: on features whose within-class covariance is nearly singular the
        weights stay large (norms near 1e5 on the study's small ViTs with OAS) and
        fine-tuning the backbone under such a head can still diverge; a larger
        ``shrinkage`` (1.0: the nearest-class-mean head) keeps them small, which is what
        the study's lda arm uses.

    Returns
    -------
    weight : torch.Tensor of shape (C, d), float32
    bias : torch.Tensor of shape (C,), float32

    Raises
    ------
    TypeError
        Not a ScatterAccumulator or LabelRanking.
    ValueError
        A class without samples, a singular S without shrinkage, a ranking of other
        classes than 0..C-1, or a ``scale`` that is not a positive finite number.
    """
    if not isinstance(accumulator, ScatterAccumulator):
        raise TypeError(f"accumulator must be a ScatterAccumulator, got {type(accumulator)}")
    parse_shrinkage(shrinkage)
    if scale != "auto" and (
        not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < np.inf
    ):
        raise ValueError(f"scale must be 'auto' or a positive finite number, got {scale!r}")
    C = accumulator.num_classes
    order = np.arange(C)
    if ranking is not None:
        if not isinstance(ranking, LabelRanking):
            raise TypeError(f"ranking must be a LabelRanking, got {type(ranking).__name__}")
        if not np.array_equal(ranking.classes, np.arange(C)):
            raise ValueError(f"ranking must rank the class indices 0..{C - 1}")
        order = ranking.order
    used = accumulator.solve(shrinkage)["shrinkage"]  # fails, naming it, on a singular S
    counts = accumulator.class_counts
    within = accumulator.within_scatter() / counts.sum()
    coef, intercept, _ = class_rows(counts, accumulator.class_means, within, used)
    if scale == "auto":
        scale = _unit_spread(
            coef, intercept, accumulator.class_means, counts / counts.sum(), within
        )
    weight = torch.from_numpy(np.ascontiguousarray(coef[order] * scale, dtype=np.float32))
    bias = torch.from_numpy(np.ascontiguousarray(intercept[order] * scale, dtype=np.float32))
    return weight, bias


def _unit_spread(coef, intercept, means, priors, within) -> float:
    """1 / the expected spread of the logits over the classes at the training samples: the
    prior-weighted variance over classes at the class means, plus what a sample's
    within-class deviation e adds (E var_k(e . c_k) = mean_k c_k^T S c_k - cbar^T S cbar,
    S the unshrunk within-class covariance); 1.0 if that is zero."""
    logits = means @ coef.T + intercept  # row j: the logits of class j's mean
    cs = coef @ within  # (C, d): c_k^T S
    cbar = coef.mean(axis=0)
    deviation = float(np.einsum("kd,kd->k", cs, coef).mean() - cbar @ within @ cbar)
    spread = float(np.sqrt(max(priors @ logits.var(axis=1) + deviation, 0.0)))
    return 1.0 / spread if spread > 0 and np.isfinite(spread) else 1.0
