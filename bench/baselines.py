"""Data generators, the baseline implementations we compare against, the agreement check
and the timing helper, shared by the pytest benchmarks (bench/test_bench_*.py) and by
bench/report.py so that both time exactly the same code.

Every ``*_rank`` function returns ``(order, centroids)``: ``order[p]`` is the class at
position p, classes sorted by ascending centroid on the top discriminant direction, whose
sign is fixed so that its largest-magnitude entry is positive (our convention). The
centroids' offset and scale differ between implementations; only the order is compared.
"""

from __future__ import annotations

import time

import numpy as np

import labelranker_fast as lrf

# ------------------------------------------------------------------ sizes
# Shared by the pytest benchmarks and report.py.
C = 100
HEADLINE = (200_000, 768)  # rows, features: a ViT-B's embeddings of a large training set
SWEEP_N = (25_000, 50_000, 100_000, 200_000, 400_000)  # rows, at d = 768
SWEEP_D = (128, 256, 512, 768, 1024)  # features, at N = 100,000
SWEEP_D_AT_N = 100_000
SOLVER_SIZES = [(d, c) for d in (768, 2048, 4096) for c in (100, 1000)]


# ------------------------------------------------------------------ data
def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), for the memory benchmarks."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_features(n, d, C, seed=0):
    """float32 (n, d) features of C classes: one standard-normal centre per class plus
    standard-normal noise (the shape of pooled embeddings of a classification set)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    centers = rng.standard_normal((C, d), dtype=np.float32)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X += centers[y]
    return X, y


_pool = {}


def sweep_data(N, d, max_N, max_d):
    """The first N rows and d features of one (max_N, max_d) ``make_features`` array, made
    once: a sweep's sizes then share their data and do not pay its generation each."""
    if _pool.get("shape") != (max_N, max_d):
        _pool.clear()  # keep one pool alive at a time
        _pool["shape"], _pool["data"] = (max_N, max_d), make_features(max_N, max_d, C)
    X, y = _pool["data"]
    return np.ascontiguousarray(X[:N, :d]), y[:N]


def drop_sweep_data():
    _pool.clear()


def make_solver_problem(d, C, seed=0):
    """A synthetic accumulator state for timing the solver alone: counts n_k, class means
    mu_k, sums 0 and a well-conditioned SPD within-class scatter S_w = N (A A^T / 2d + 0.01 I)
    (Marchenko-Pastur spectrum, condition number about 30), so that the eigenvalues are
    accurate to ~1e-13 and a 1e-8 agreement check is meaningful."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(500, 1500, C).astype(np.float64)
    N = counts.sum()
    A = rng.standard_normal((d, 2 * d))
    Sw = A @ A.T
    Sw *= N / (2 * d)
    Sw[np.diag_indices(d)] += 0.01 * N
    means = rng.standard_normal((C, d))
    return {
        "version": 1,
        "n_features": d,
        "num_classes": C,
        "n_rows": int(N),
        "counts": counts,
        "shifts": means,
        "sums": np.zeros((C, d)),
        "m2": Sw,
    }


# ------------------------------------------------------------- our code
def ours_rank(X, y):
    ranking = lrf.rank_labels(X, y)
    return ranking.order, ranking.centroids[:, 0]


def numpy_gram(X):
    """X.T @ X: one BLAS syrk/gemm over the data, the floor for any exact LDA."""
    return X.T @ X


# ------------------------------------------------------------- baselines
def _sign_fixed(w):
    return -w if w[np.argmax(np.abs(w))] < 0 else w


def _centroid_order(X, y, w):
    # Class means in float64, as the ranking is defined on the exact means.
    C = int(y.max()) + 1
    cent = np.array([X[y == k].mean(0, dtype=np.float64) @ w for k in range(C)])
    return np.argsort(cent, kind="stable"), cent


def sklearn_rank(X, y, solver="eigen"):
    """scikit-learn's LinearDiscriminantAnalysis (``solver`` "eigen" or "svd", the latter
    what the Label Ranker paper used), then the classes' mean projections on
    ``scalings_[:, 0]``. The svd solver's scalings have another scale; the order is the
    same."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    lda = LinearDiscriminantAnalysis(solver=solver).fit(X, y)
    return _centroid_order(X, y, _sign_fixed(np.asarray(lda.scalings_[:, 0], np.float64)))


def torch_rank(X, y, C=None):
    """A plain torch (CPU) LDA ranking, as one would write it: class sums (index_add_)
    and the within-class scatter (Gram of the centred rows) in the input precision
    (float32 here: what makes torch fast on CPU), then in float64: S = L L^T (Cholesky),
    M = L^{-1} [sqrt(n_k/N) (mu_k - mu)] (d x C), the top eigenvector u of the C x C
    matrix M^T M (S_b has rank C-1, so this replaces the d x d problem), the direction
    w = L^{-T} M u / sqrt(lambda) (w^T S w = 1), and the centroids (mu_k - mu) . w."""
    import torch

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    C = int(yt.max()) + 1 if C is None else C
    N, d = Xt.shape
    counts = torch.bincount(yt, minlength=C).double()
    means = torch.zeros(C, d, dtype=Xt.dtype).index_add_(0, yt, Xt).double() / counts[:, None]
    Xc = Xt - means.to(Xt.dtype)[yt]
    S = (Xc.T @ Xc).double() / N
    mu = (counts @ means) / N
    D = means - mu  # (C, d)
    L = torch.linalg.cholesky(S)
    M = torch.linalg.solve_triangular(L, (D * (counts / N).sqrt()[:, None]).T, upper=False)
    evals, U = torch.linalg.eigh(M.T @ M)  # ascending
    z = M @ U[:, -1] / evals[-1].sqrt()
    w = torch.linalg.solve_triangular(L.T, z[:, None], upper=True)[:, 0]
    w = _sign_fixed(w.numpy())
    cent = D.numpy() @ w
    return np.argsort(cent, kind="stable"), cent


def scipy_eigh_top(Sb, S, subset=False):
    """scipy.linalg.eigh(Sb, S) -> (top eigenvalue, its eigenvector with v^T S v = 1):
    the full generalized eigendecomposition a user would call, or with ``subset`` only
    the top pair (``subset_by_index``)."""
    from scipy.linalg import eigh

    d = Sb.shape[0]
    vals, vecs = eigh(Sb, S, subset_by_index=[d - 1, d - 1] if subset else None)
    return vals[-1], _sign_fixed(vecs[:, -1])


def solver_inputs(state):
    """(accumulator, Sb, S) of a ``make_solver_problem`` state: scipy gets Sb = between/N
    and S = within/N, whose generalized eigenpairs are the ones ``_solve`` returns."""
    acc = lrf.ScatterAccumulator.from_state(state)
    N = state["counts"].sum()
    return acc, acc.between_scatter() / N, acc.within_scatter() / N


def ours_solve_top(acc):
    """Our solver alone on an accumulator: (top eigenvalue, direction with w^T S w = 1)."""
    r = acc.solve(None, 1)
    return r["eigenvalues"][0], r["directions"][:, 0]


# ------------------------------------------------------------ agreement
def assert_same_order(order, ref_order, ref_cent, rtol=1e-4):
    """Asserts that ``order`` equals the reference order except for swaps of classes
    whose reference centroids lie within ``rtol * max|centroid|`` of each other: float32
    inputs and float32 arithmetic in the baselines move centroids by about that much, so
    the order of such near-ties is not determined by the data."""
    order, ref_order, ref_cent = np.asarray(order), np.asarray(ref_order), np.asarray(ref_cent)
    tol = rtol * np.abs(ref_cent).max()
    differ = np.flatnonzero(order != ref_order)
    far = differ[np.abs(ref_cent[order[differ]] - ref_cent[ref_order[differ]]) > tol]
    assert far.size == 0, (
        f"orders differ at positions {far.tolist()} by more than {tol:.3g} in centroid"
    )


def assert_same_top(value, w, ref_value, ref_w):
    """Asserts that two (top eigenvalue, direction) pairs agree: the eigenvalue to 1e-8
    relative, the directions (both normalised w^T S w = 1, same sign rule) entry by entry
    to 1e-6 of their largest entry (the eigengap of ``make_solver_problem`` is wide)."""
    assert abs(value - ref_value) <= 1e-8 * abs(ref_value), (value, ref_value)
    np.testing.assert_allclose(w, ref_w, rtol=0, atol=1e-6 * np.abs(ref_w).max())


# --------------------------------------------------------------- timing
# OpenBLAS's idle threads (numpy's, scipy's) spin for about a tenth of a second after each
# call before they sleep; on two cores whatever is timed next loses a core to them for that
# long. Every timed call starts after this pause, so that none pays for the one before it.
SETTLE_S = 0.25


def settle() -> None:
    """Waits for the BLAS threads of the call before to go to sleep (SETTLE_S)."""
    time.sleep(SETTLE_S)


def time_interleaved(fns, repeat=3, once=()):
    """Runs each of ``fns`` (name -> callable) ``repeat`` times, round-robin so that a
    noisy neighbour affects all of them alike (the names in ``once``, slow baselines, only
    in the first round), each after ``settle()``; returns ({name: min seconds}, {name:
    last result})."""
    best, results = {}, {}
    for i in range(repeat):
        for name, fn in fns.items():
            if i and name in once:
                continue
            settle()
            t = time.perf_counter()
            results[name] = fn()
            best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
    return best, results
