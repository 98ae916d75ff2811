"""The power simulation of the study's order-effect test, against properties and the
classical F distribution (scipy)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats

from labelranker_fast.study._power import f_ratios, minimal_detectable_effect, rejection_rate
from labelranker_fast.study._report import order_effect_test


def test_the_simulated_statistic_is_the_tests():
    rng = np.random.default_rng(1)
    tables = rng.normal(size=(5, 3, 6))
    for t, f in zip(tables, f_ratios(tables)):
        assert f == pytest.approx(order_effect_test(t, n_perm=10)["F"], rel=1e-12)


def test_size_is_alpha_within_binomial_error():
    n = 2000
    rate = rejection_rate(0.0, 3, 8, n_sim=n, n_perm=199, seed=3)
    assert abs(rate - 0.05) < 3.5 * np.sqrt(0.05 * 0.95 / n)


def test_a_huge_effect_is_always_detected():
    assert rejection_rate(20.0, 3, 8) == 1.0


def test_power_matches_the_classical_f_test():
    """Normal noise, order means N(0, tau^2): F / (1 + s tau^2) follows F(o-1, (o-1)(s-1)),
    so the permutation test's power is close to that of the F test."""
    s, o, tau = 4, 8, 0.7
    crit = stats.f.ppf(0.95, o - 1, (o - 1) * (s - 1))
    expected = stats.f.sf(crit / (1 + s * tau**2), o - 1, (o - 1) * (s - 1))
    rate = rejection_rate(tau, s, o, n_sim=1500, seed=5)
    assert abs(rate - expected) < 0.06


def test_mde_against_the_f_test_and_properties():
    s, o = 5, 8
    # F test: power 0.8 where crit / (1 + s tau^2) is the 20 % quantile
    df = (o - 1, (o - 1) * (s - 1))
    tau = np.sqrt((stats.f.ppf(0.95, *df) / stats.f.ppf(0.2, *df) - 1) / s)
    t0 = time.perf_counter()
    mde = minimal_detectable_effect(1.0, s, o)
    assert time.perf_counter() - t0 < 10
    assert mde == pytest.approx(tau, rel=0.12)
    assert minimal_detectable_effect(0.02, s, o) == pytest.approx(0.02 * mde)  # scale-free
    assert minimal_detectable_effect(1.0, 10, o) < mde  # more seeds: smaller effects seen
    assert minimal_detectable_effect(1.0, s, 12) < mde  # more orders too
    assert np.isnan(minimal_detectable_effect(0.0, s, o))
    # 2 seeds x 3 orders: 6 distinct tables, p never reaches 0.05
    assert minimal_detectable_effect(1.0, 2, 3) == float("inf")


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        rejection_rate(1.0, 1, 5)
    with pytest.raises(ValueError, match="alpha"):
        rejection_rate(1.0, 3, 5, alpha=1.5)
    with pytest.raises(ValueError, match="tau"):
        rejection_rate(-1.0, 3, 5)
    with pytest.raises(ValueError, match="noise_sd"):
        minimal_detectable_effect(float("nan"), 3, 5)
    with pytest.raises(ValueError, match="power"):
        minimal_detectable_effect(1.0, 3, 5, power=0.01)
    with pytest.raises(ValueError, match="seeds"):
        minimal_detectable_effect(1.0, 2.5, 5)
