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
