"""Discriminant directions against scipy.linalg.eigh and scikit-learn."""

import numpy as np
import pytest
import scipy.linalg
from sklearn import datasets
from sklearn.covariance import oas
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

import labelranker_fast as lrf
from conftest import lanczos_start, make_blobs, reference_scatter, state_of

DATASETS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
}


def fitted(X, y, shrinkage=None, n_components=1):
    return lrf.LabelRanker(shrinkage=shrinkage, n_components=n_components).fit(X, y)


def eigh_reference(X, y, shrinkage_value=0.0):
    """Top eigenpairs of eigh(S_b/N, S) with S the (shrunk) within-class covariance."""
    classes, yi = np.unique(y, return_inverse=True)
    Sw, Sb, _ = reference_scatter(X, yi, classes.size)
    N, d = X.shape
    S = Sw / N
    S = (1 - shrinkage_value) * S + shrinkage_value * np.trace(S) / d * np.eye(d)
    evals, evecs = scipy.linalg.eigh(Sb / N, S)
    return evals[::-1], evecs[:, ::-1], S


def assert_same_directions(W, V, S):
    # Both normalised to W^T S W = I; equal up to the sign of each column.
    np.testing.assert_allclose(W.T @ S @ W, np.eye(W.shape[1]), atol=1e-8)
    for j in range(W.shape[1]):
        sign = np.sign(W[:, j] @ S @ V[:, j])
        np.testing.assert_allclose(
            W[:, j], sign * V[:, j], rtol=1e-6, atol=1e-7 * np.abs(V[:, j]).max()
        )


def sign_rule(W):
    W = W.copy()
    for j in range(W.shape[1]):
        if W[np.argmax(np.abs(W[:, j])), j] < 0:
            W[:, j] *= -1
    return W


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_matches_eigh_and_sklearn_on_bundled_data(name):
    X, y = DATASETS[name](return_X_y=True)
    k = min(2, np.unique(y).size - 1)
    est = fitted(X, y, n_components=k)
    evals, evecs, S = eigh_reference(X, y)
    np.testing.assert_allclose(est.eigenvalues_, evals[:k], rtol=1e-8)
    assert_same_directions(est.scalings_, evecs[:, :k], S)

    sk = LinearDiscriminantAnalysis(solver="eigen").fit(X, y)
    assert_same_directions(est.scalings_, sk.scalings_[:, :k], S)
    np.testing.assert_allclose(
        est.explained_variance_ratio_, sk.explained_variance_ratio_[:k], rtol=1e-6
    )
    # Same order once scikit-learn's direction gets our sign rule.
    w = sign_rule(sk.scalings_[:, :1])[:, 0]
    classes = np.unique(y)
    cent = np.array([X[y == c].mean(0) @ w for c in classes])
    np.testing.assert_array_equal(est.order_, np.argsort(cent, kind="stable"))


@pytest.mark.parametrize("n_components", [1, 3])
def test_synthetic_against_eigh(seed, n_components):
    X, y = make_blobs(seed, n=2000, d=12, C=6)
    est = fitted(X, y, n_components=n_components)
    evals, evecs, S = eigh_reference(X, y)
    np.testing.assert_allclose(est.eigenvalues_, evals[:n_components], rtol=1e-8)
    assert_same_directions(est.scalings_, evecs[:, :n_components], S)


def test_more_classes_than_features():
    X, y = make_blobs(3, n=3000, d=5, C=20)
    est = fitted(X, y, n_components=4)
    evals, evecs, S = eigh_reference(X, y)
    np.testing.assert_allclose(est.eigenvalues_, evals[:4], rtol=1e-8)
    assert_same_directions(est.scalings_, evecs[:, :4], S)


@pytest.mark.parametrize("a", [0.0, 0.1, 0.5, 1.0])
def test_fixed_shrinkage_against_eigh(seed, a):
    X, y = make_blobs(seed, n=800, d=10, C=4)
    est = fitted(X, y, shrinkage=a, n_components=2)
    evals, evecs, S = eigh_reference(X, y, a)
    assert est.shrinkage_ == a
    np.testing.assert_allclose(est.eigenvalues_, evals[:2], rtol=1e-8)
    assert_same_directions(est.scalings_, evecs[:, :2], S)


def test_oas_against_sklearn_and_eigh():
    X, y = datasets.load_digits(return_X_y=True)
    classes, yi = np.unique(y, return_inverse=True)
    means = np.stack([X[y == c].mean(0) for c in classes])
    _, a = oas(X - means[yi], assume_centered=True)
    est = fitted(X, y, shrinkage="oas", n_components=3)
    assert est.shrinkage_ == pytest.approx(a, rel=1e-10)
    evals, evecs, S = eigh_reference(X, y, est.shrinkage_)
    np.testing.assert_allclose(est.eigenvalues_, evals[:3], rtol=1e-8)
    assert_same_directions(est.scalings_, evecs[:, :3], S)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_singular_within_scatter_names_shrinkage(dtype):
    X, y = datasets.load_digits(return_X_y=True)  # some pixels are always 0
    X = X.astype(dtype)
    with pytest.raises(ValueError, match="shrinkage"):
        lrf.rank_labels(X, y)
    # Fewer samples than features: singular too.
    for n, d in [(30, 50), (1000, 1200)]:
        X2, y2 = make_blobs(0, n=n, d=d, C=3, dtype=dtype)
        with pytest.raises(ValueError, match="shrinkage"):
            lrf.rank_labels(X2, y2)
    assert lrf.rank_labels(X2, y2, shrinkage="oas").n_classes == 3


def test_identical_class_means_are_rejected():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    X = np.concatenate([X, X])
    y = np.repeat([0, 1], 40)
    with pytest.raises(ValueError, match="identical"):
        lrf.rank_labels(X, y)


# ------------------------------------------ top pair of a large Gram matrix (Lanczos)
# For n_components=1 and a Gram matrix of at least 256 rows (the smaller of C and d), the
# engine finds the top pair by certified Lanczos instead of a dense eigensolver, and falls
# back to the dense one when Lanczos does not converge or its certificate fails. These
# problems have a designed between-class spectrum (S = I, equal counts), so the hard cases
# for Lanczos (a double or nearly double top eigenvalue, a flat cluster at the top) are
# there by construction.


def accumulator_of(counts, means, m2):
    """An accumulator whose class counts, class means (sums 0 around them) and pooled
    moment are the given ones."""
    return lrf.ScatterAccumulator.from_state(state_of(counts, means, np.zeros_like(means), m2))


def designed_state(d, C, top, seed=0):
    """An accumulator state with S = S_w/N = I and S_b/N = Mc^T Mc / C whose nonzero
    eigenvalues are ``top`` followed by a decreasing tail."""
    rng = np.random.default_rng(seed)
    r = min(d, C - 1)
    spectrum = np.concatenate([top, np.linspace(0.5, 0.01, r - len(top))]) * C
    P = rng.standard_normal((C, r))
    P -= P.mean(axis=0)
    P = np.linalg.qr(P)[0]  # orthonormal columns, orthogonal to the ones vector
    V = np.linalg.qr(rng.standard_normal((d, r)))[0]
    means = (P * np.sqrt(spectrum)) @ V.T
    counts = np.full(C, 50.0)
    N = counts.sum()
    return accumulator_of(counts, means, N * np.eye(d))


def scipy_top(acc):
    N = acc.n_samples
    Sb, S = acc.between_scatter() / N, acc.within_scatter() / N
    vals, vecs = scipy.linalg.eigh(Sb, S)
    return vals, vecs, Sb, S


@pytest.mark.parametrize("d, C", [(300, 420), (420, 300), (600, 700)])
@pytest.mark.parametrize("seed", [0, 1])
def test_top_pair_of_large_gram_against_eigh(d, C, seed):
    # Both sides of the Gram choice, on the synthetic problem of the solver bench.
    rng = np.random.default_rng(seed)
    counts = rng.integers(20, 60, C).astype(float)
    A = rng.standard_normal((d, 2 * d))
    N = counts.sum()
    acc = accumulator_of(
        counts, rng.standard_normal((C, d)), (A @ A.T / (2 * d) + 0.01 * np.eye(d)) * N
    )
    r = acc.solve(None, 1)
    vals, vecs, Sb, S = scipy_top(acc)
    np.testing.assert_allclose(r["eigenvalues"], vals[-1:], rtol=1e-10)
    np.testing.assert_allclose(r["eigenvalue_sum"], vals.sum(), rtol=1e-10)
    assert_same_directions(r["directions"], vecs[:, -1:], S)
    # The same answer as the dense path gives for the top pair of n_components=2.
    two = acc.solve(None, 2)
    np.testing.assert_allclose(r["eigenvalues"][0], two["eigenvalues"][0], rtol=1e-12)
    np.testing.assert_allclose(
        r["directions"][:, 0],
        two["directions"][:, 0],
        rtol=0,
        atol=1e-9 * np.abs(two["directions"][:, 0]).max(),
    )


@pytest.mark.parametrize("d, C", [(300, 400), (400, 300)])
@pytest.mark.parametrize(
    "top",
    [
        [1.0, 1.0],  # a double top eigenvalue: any unit vector of its plane is an answer
        [1.0, 1.0 - 1e-7],  # nearly double: the iteration has to resolve the gap
        list(np.linspace(1.0, 0.999, 40)),  # a flat cluster: slow convergence
    ],
    ids=["double", "near-double", "cluster"],
)
def test_top_pair_when_the_top_is_degenerate(d, C, top):
    acc = designed_state(d, C, np.array(top))
    r = acc.solve(None, 1)
    vals, vecs, Sb, S = scipy_top(acc)
    lam, w = r["eigenvalues"][0], r["directions"][:, 0]
    np.testing.assert_allclose(lam, vals[-1], rtol=1e-10)
    np.testing.assert_allclose(w @ S @ w, 1.0, rtol=1e-10)
    # w solves the generalized problem for the top eigenvalue.
    assert np.linalg.norm(Sb @ w - lam * (S @ w)) <= 1e-8 * lam * np.linalg.norm(S @ w)
    if len(top) == 2 and top[0] != top[1]:
        # gap 1e-7: the direction is determined to about eps / gap
        assert abs(abs(w @ S @ vecs[:, -1]) - 1.0) < 1e-6


def test_a_top_pair_lanczos_cannot_see_is_found_by_the_fallback():
    """The top eigenvector is orthogonal to Lanczos's start vector (up to rounding), and
    the second eigenvalue is 1e-6 below it: Lanczos converges to the second, its
    certificate (a Cholesky factorisation of sigma I - G, done in G's place) fails, and
    the dense fallback must get the Gram matrix back to find the true top pair."""
    d, C = 300, 280  # C <= d: the C x C Gram matrix, of at least 256 rows
    rng = np.random.default_rng(3)
    ones = np.ones(C) / np.sqrt(C)
    Q = np.linalg.qr(np.column_stack([ones, lanczos_start(C), rng.standard_normal((C, 1))]))[0]
    top_vector = Q[:, 2]  # orthogonal to the ones vector (centred means) and to the start
    # The other eigenvectors: random directions orthogonal to both, so that the start
    # spreads over all of them (it is no eigenvector itself).
    R = np.linalg.qr(np.column_stack([ones, top_vector, rng.standard_normal((C, C - 2))]))[0]
    P = np.column_stack([top_vector, R[:, 2:]])
    r = P.shape[1]
    spectrum = np.concatenate([[1.0, 1.0 - 1e-6], np.linspace(0.5, 0.01, r - 2)]) * C
    V = np.linalg.qr(rng.standard_normal((d, r)))[0]
    means = (P * np.sqrt(spectrum)) @ V.T
    counts = np.full(C, 50.0)
    acc = accumulator_of(counts, means, counts.sum() * np.eye(d))
    r1 = acc.solve(None, 1)
    vals, vecs, Sb, S = scipy_top(acc)
    np.testing.assert_allclose(r1["eigenvalues"][0], vals[-1], rtol=1e-10)
    assert abs(r1["eigenvalues"][0] - 1.0) < 1e-9  # the top, not the second (1 - 1e-6)
    assert_same_directions(r1["directions"], vecs[:, -1:], S)
