import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=15, deadline=None)
# .ci/run sets LRF_HYPOTHESIS_PROFILE=ci; a CI variable alone still selects it.
settings.load_profile(
    os.environ.get("LRF_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def reference_scatter(X, y, num_classes, sample_weight=None):
    """Two-pass float64 S_w, S_b and class means, written independently of the engine."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    d = X.shape[1]
    counts = np.array([w[y == k].sum() for k in range(num_classes)])

    def wmean(Z, v):  # weighted mean, refined by a second pass over the residuals
        m = (v[:, None] * Z).sum(0) / v.sum()
        return m + (v[:, None] * (Z - m)).sum(0) / v.sum()

    means = np.stack([wmean(X[y == k], w[y == k]) for k in range(num_classes)])
    mu = wmean(means, counts)
    Sw = np.zeros((d, d))
    for k in range(num_classes):
        Z = X[y == k] - means[k]
        Sw += (Z * w[y == k, None]).T @ Z
    D = means - mu
    Sb = (D * counts[:, None]).T @ D
    return Sw, Sb, means


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def make_blobs(seed, n=600, d=8, C=5, spread=3.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((C, d)) * spread
    y = np.concatenate([np.arange(C), rng.integers(0, C, n - C)])
    rng.shuffle(y)
    A = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    X = centers[y] + rng.standard_normal((n, d)) @ A
    return X.astype(dtype), y


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    return request.param


def state_of(counts, shifts, sums, m2):
    """A ScatterAccumulator.from_state state with these class counts, shifts, class sums
    (around the shifts) and pooled moment."""
    c, d = shifts.shape
    return {
        "version": 1,
        "n_features": d,
        "num_classes": c,
        "n_rows": int(counts.sum()),
        "counts": counts,
        "shifts": shifts,
        "sums": sums,
        "m2": m2,
    }


def solver_state(d, c, seed=0, spread=1.0, within_scale=1.0, offset=0.01):
    """Statistics with nonzero class sums: S_w = W (a well-conditioned SPD matrix) is what
    m2 - sum_k T_k T_k^T / n_k comes to, and the class means are shifts + T_k / n_k."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(20, 60, c).astype(np.float64)
    a = rng.standard_normal((d, 2 * d))
    within = (a @ a.T / (2 * d) + 0.05 * np.eye(d)) * counts.sum() * within_scale
    shifts = rng.standard_normal((c, d)) * spread
    offsets = rng.standard_normal((c, d)) * offset
    sums = counts[:, None] * offsets
    m2 = within + (sums / np.sqrt(counts)[:, None]).T @ (sums / np.sqrt(counts)[:, None])
    return state_of(counts, shifts, sums, m2), within, shifts + offsets, counts


def lanczos_start(n):
    """The engine's fixed Lanczos start vector (splitmix64, solver_lanczos.cpp), unit."""
    mask = (1 << 64) - 1
    state, q = 0x9E3779B97F4A7C15, np.empty(n)
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        q[i] = (z >> 11) * 2.0**-53 - 0.5
    return q / np.linalg.norm(q)


def run_in_threads(target, args_list, timeout=120):
    """Runs target(*args) on a thread of its own for each args in args_list, all at once,
    and returns the exceptions they raised. Fails the test if a thread is still running
    `timeout` seconds after the joins start (a hang)."""
    import threading

    errors = []

    def guarded(*args):
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 (returned to the test)
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=tuple(args)) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors
