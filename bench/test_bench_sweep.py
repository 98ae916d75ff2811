"""rank_labels against numpy's X.T @ X over sizes, to show the time linear in N (and,
like the Gram matrix, quadratic in d): N in SWEEP_N at d = 768 and d in SWEEP_D at
N = 100,000, 100 classes, float32. The plot and the linear fit are in bench/report.py."""

import pytest

from baselines import SWEEP_D, SWEEP_D_AT_N, SWEEP_N, numpy_gram, ours_rank, sweep_data

SIZES = sorted({(n, 768) for n in SWEEP_N} | {(SWEEP_D_AT_N, d) for d in SWEEP_D})


@pytest.mark.parametrize(
    "N, d, impl", [(n, d, i) for n, d in SIZES for i in ("numpy X.T @ X", "ours")]
)
def test_sweep(record, N, d, impl):
    X, y = sweep_data(N, d, max(SWEEP_N), max(SWEEP_D))
    fn = (lambda: ours_rank(X, y)) if impl == "ours" else (lambda: numpy_gram(X))
    record(f"sweep-N={N}-d={d}", impl, fn)
