"""The solver alone (``ScatterAccumulator._solve``: the top discriminant direction from
the accumulated statistics) against ``scipy.linalg.eigh(Sb, Sw)``, the full generalized
eigendecomposition a user would call, and its top-pair variant (``subset_by_index``), for
d in {768, 2048, 4096} and C in {100, 1000} on a synthetic, well-conditioned problem.
The issue's target is ours >= 5x faster than the full eigh at d=4096, C=1000 (printed in
the ratio summary, not asserted: timings on a shared machine are too noisy)."""

import functools

import pytest

from baselines import (
    SOLVER_SIZES,
    assert_same_top,
    make_solver_problem,
    ours_solve_top,
    scipy_eigh_top,
    solver_inputs,
)
from conftest import RESULTS

IMPLS = ["scipy eigh(Sb, Sw)", "scipy eigh(Sb, Sw) top pair only", "ours"]


@functools.lru_cache(maxsize=1)  # the cases of one size run together; keep one alive
def problem(d, C):
    return solver_inputs(make_solver_problem(d, C))


@pytest.mark.parametrize("d, C, impl", [(d, C, i) for d, C in SOLVER_SIZES for i in IMPLS])
def test_solver(record, d, C, impl):
    acc, Sb, S = problem(d, C)
    group = f"solver-d={d}-C={C}"
    if impl != "ours":
        # A full eigh at d=4096 takes several seconds to a minute: one round there.
        rounds, warmup = (1, 0) if d > 1000 else (3, 1)
        subset = impl.endswith("only")
        record(group, impl, lambda: scipy_eigh_top(Sb, S, subset), rounds=rounds, warmup=warmup)
        return
    value, w = record(group, impl, lambda: ours_solve_top(acc))
    for name in IMPLS[:-1]:
        if (group, name) in RESULTS:
            assert_same_top(value, w, *RESULTS[group, name])
