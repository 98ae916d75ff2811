"""Statistical power of the order-effect test: the minimal detectable effect (MDE).

The test (``_report.order_effect_test``) is a two-way layout without replication, seeds
as blocks and label orders as the treatment, with an F ratio whose p-value comes from
permuting the orders within each seed. Here that same test is simulated: accuracy =
order effect + noise, the true order means drawn normal with standard deviation ``tau``,
the seed-by-order noise normal with the measured standard deviation. Seed block effects
drop out of the F ratio, and the ratio is scale-free, so the MDE is ``noise_sd`` times a
number that depends on the design alone.
"""

from __future__ import annotations

import numpy as np

__all__ = ["f_ratios", "rejection_rate", "minimal_detectable_effect"]


def f_ratios(acc: np.ndarray) -> np.ndarray:
    """F ratio of the order effect to the residual of every (seeds, orders) table in
    ``acc`` (shape (..., seeds, orders)); the statistic of ``order_effect_test``."""
    s, o = acc.shape[-2:]
    grand = acc.mean(axis=(-2, -1), keepdims=True)
    order_means = acc.mean(axis=-2, keepdims=True)
    resid = acc - acc.mean(axis=-1, keepdims=True) - order_means + grand
    ss_order = s * ((order_means - grand) ** 2).sum(axis=(-2, -1))
    ss_resid = (resid**2).sum(axis=(-2, -1))
    return (ss_order / (o - 1)) / np.maximum(ss_resid / ((o - 1) * (s - 1)), 1e-300)


class _Simulation:
    """Fixed random numbers for one design, so that power is a smooth, increasing function
    of ``tau`` (common random numbers across the bisection's steps)."""

    def __init__(self, seeds: int, orders: int, n_sim: int, n_perm: int, seed: int):
        if seeds < 2 or orders < 2:
            raise ValueError(f"the test needs at least 2 seeds and 2 orders, got {seeds}, {orders}")
        rng = np.random.default_rng(seed)
        self.effect = rng.standard_normal((n_sim, 1, orders))
        self.noise = rng.standard_normal((n_sim, seeds, orders))
        # one within-seed permutation of the orders per (simulation, permutation, seed)
        keys = rng.random((n_sim, n_perm, seeds, orders))
        self.perm = np.argsort(keys, axis=-1)
        self.n_perm = n_perm

    def p_values(self, tau: float) -> np.ndarray:
        acc = tau * self.effect + self.noise
        observed = f_ratios(acc)
        permuted = np.take_along_axis(acc[:, None], self.perm, axis=-1)
        hits = (f_ratios(permuted) >= observed[:, None]).sum(axis=1)
        return (1 + hits) / (1 + self.n_perm)


def _check(seeds, orders, alpha, n_sim, n_perm):
    for name, v in (("seeds", seeds), ("orders", orders), ("n_sim", n_sim), ("n_perm", n_perm)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def rejection_rate(
    tau: float,
    seeds: int,
    orders: int,
    *,
    alpha: float = 0.05,
    n_sim: int = 400,
    n_perm: int = 199,
    seed: int = 0,
) -> float:
    """Share of simulated studies in which the permutation test rejects at ``alpha``.

    Parameters
    ----------
    tau : float
        Standard deviation of the true order means, in units of the noise SD (0: no
        effect, the rate is then the test's size).
    seeds, orders : int
        The design: fine-tuning seeds (blocks) and label orders in the test.
    alpha : float, default=0.05
    n_sim, n_perm : int
        Simulated studies, and permutations per study (p = (1 + hits) / (1 + n_perm)).
    seed : int
        Seed of the simulation.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        Under 2 seeds or orders, a count that is not a positive int, alpha outside (0, 1)
        or a negative or non-finite ``tau``.
    """
    _check(seeds, orders, alpha, n_sim, n_perm)
    if not 0 <= tau < np.inf:
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
    sim = _Simulation(seeds, orders, n_sim, n_perm, seed)
    return float((sim.p_values(tau) <= alpha).mean())


def minimal_detectable_effect(
    noise_sd: float,
    seeds: int,
    orders: int,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    n_sim: int = 400,
    n_perm: int = 199,
    seed: int = 0,
) -> float:
    """The smallest SD of the true order means that the test detects with ``power``.

    Bisection over ``tau`` on one fixed set of simulated studies (``rejection_rate``'s
    model), to a relative precision of 1 %. In the units of ``noise_sd``.

    Parameters
    ----------
    noise_sd : float
        Standard deviation of the seed-by-order noise (e.g. the residual SD of the
        measured (seeds, orders) table).
    seeds, orders : int
        The design.
    power, alpha : float, default 0.8, 0.05
    n_sim, n_perm, seed :
        As for ``rejection_rate``.

    Returns
    -------
    float
        The MDE (NaN for a ``noise_sd`` of 0: nothing to detect against).

    Raises
    ------
    ValueError
        As ``rejection_rate``; ``power`` outside (alpha, 1) or a negative ``noise_sd``.
    """
    _check(seeds, orders, alpha, n_sim, n_perm)
    if not alpha < power < 1:
        raise ValueError(f"power must be in (alpha, 1), got {power!r}")
    if not 0 <= noise_sd < np.inf:
        raise ValueError(f"noise_sd must be a finite number >= 0, got {noise_sd!r}")
    if noise_sd == 0:
        return float("nan")
    sim = _Simulation(seeds, orders, n_sim, n_perm, seed)

    def detects(tau: float) -> bool:
        return float((sim.p_values(tau) <= alpha).mean()) >= power

    lo, hi = 0.0, 1.0
    while not detects(hi):
        lo, hi = hi, 2 * hi
        if hi > 1e4:  # a design that cannot reach the power (e.g. p can never be <= alpha)
            return float("inf")
    while hi - lo > 0.01 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if detects(mid) else (mid, hi)
    return float(hi * noise_sd)
