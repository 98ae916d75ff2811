"""LabelRanker follows scikit-learn's estimator conventions."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.sparse
from scipy.special import log_softmax, softmax
from sklearn import datasets
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline

import labelranker_fast as lrf
from conftest import make_blobs, reference_scatter


def test_params_and_clone():
    est = lrf.LabelRanker(shrinkage="oas", n_components=2)
    assert est.get_params() == {
        "shrinkage": "oas",
        "n_components": 2,
        "n_threads": None,
        "method": "anchor",
        "folds": None,
    }
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    est.set_params(n_components=1)
    assert est.n_components == 1
    assert not hasattr(twin, "ranking_")


def test_fit_sets_attributes_consistent_with_rank_labels(seed):
    X, y = make_blobs(seed, n=900, d=7, C=5)
    labels = np.array(list("vwxyz"))[y]
    est = lrf.LabelRanker(shrinkage=None, n_components=2).fit(X, labels)
    ranking = lrf.rank_labels(X, labels, n_components=2)
    assert est.ranking_ == ranking
    np.testing.assert_array_equal(est.order_, ranking.order)
    np.testing.assert_array_equal(est.classes_, list("vwxyz"))
    assert est.scalings_.shape == (7, 2)
    assert est.n_features_in_ == 7
    np.testing.assert_allclose(est.xbar_, X.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        est.means_, [X[y == k].mean(0) for k in range(5)], rtol=1e-10, atol=1e-12
    )


def test_transform_matches_sklearn_up_to_sign_and_offset(seed):
    X, y = make_blobs(seed, n=600, d=6, C=4)
    est = lrf.LabelRanker(shrinkage=None, n_components=2)
    Z = est.fit_transform(X, y)
    sk = LinearDiscriminantAnalysis(solver="eigen").fit(X, y)
    Zs = X @ sk.scalings_[:, :2]  # scikit-learn's eigen solver does not centre
    Zs -= Zs.mean(0)
    signs = np.sign(np.sum(Z * Zs, axis=0))
    np.testing.assert_allclose(Z, Zs * signs, rtol=1e-6, atol=1e-8)
    # The class centroids of the transform are the ranking's centroids.
    np.testing.assert_allclose(
        [Z[y == k].mean(0) for k in range(4)], est.ranking_.centroids, rtol=1e-8, atol=1e-10
    )


def test_partial_fit_equals_fit(seed):
    X, y = make_blobs(seed, n=1200, d=5, C=4)
    full = lrf.LabelRanker().fit(X, y)
    est = lrf.LabelRanker()
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X[:10], y[:10])
    for s in range(0, 1200, 250):
        est.partial_fit(X[s : s + 250], y[s : s + 250], classes=np.arange(4))
    np.testing.assert_array_equal(est.order_, full.order_)
    np.testing.assert_allclose(est.scalings_, full.scalings_, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="not in classes"):
        est.partial_fit(X[:5], np.full(5, 9))


def test_partial_fit_before_all_classes_is_not_fitted():
    X, y = make_blobs(0, n=300, d=4, C=3)
    est = lrf.LabelRanker().partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    with pytest.raises(NotFittedError):
        est.transform(X)
    est.partial_fit(X[y == 2], y[y == 2])
    assert est.transform(X).shape == (300, 1)


def test_in_a_pipeline():
    X, y = make_blobs(1, n=800, d=10, C=4)
    pipe = make_pipeline(lrf.LabelRanker(n_components=3), LogisticRegression())
    pipe.fit(X[:600], y[:600])
    assert pipe.score(X[600:], y[600:]) > 0.8


def test_bad_parameters_raise_at_fit():
    X, y = make_blobs(0, n=100, d=3, C=3)
    with pytest.raises(ValueError, match="shrinkage"):
        lrf.LabelRanker(shrinkage=3).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        lrf.LabelRanker(n_components=5).fit(X, y)
    with pytest.raises(NotFittedError):
        lrf.LabelRanker().transform(X)


# ------------------------------------------------------------------ the LDA classifier

BUNDLED = {
    "iris": (datasets.load_iris, [None, 0.2, 0.7]),
    "wine": (datasets.load_wine, [None, 0.2, 0.7]),
    # digits has constant pixels: without shrinkage both refuse it (see the test below)
    "digits": (datasets.load_digits, [1e-3, 0.2, 0.7]),
}
CASES = [(name, s) for name, (_, shrinks) in BUNDLED.items() for s in shrinks]


def assert_same_classifier(est, sk, X):
    """Predictions exactly, everything else to rounding, against a fitted scikit-learn LDA."""
    np.testing.assert_array_equal(est.predict(X), sk.predict(X))
    np.testing.assert_allclose(est.predict_proba(X), sk.predict_proba(X), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        est.decision_function(X), sk.decision_function(X), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(est.coef_, sk.coef_, rtol=1e-9, atol=1e-10 * abs(sk.coef_).max())
    np.testing.assert_allclose(est.intercept_, sk.intercept_, rtol=1e-9, atol=1e-9)
    # log-probabilities where scikit-learn's log(proba) has not lost them to rounding
    proba = sk.predict_proba(X)
    keep = proba > 1e-12
    np.testing.assert_allclose(
        est.predict_log_proba(X)[keep], np.log(proba[keep]), rtol=1e-8, atol=1e-9
    )


@pytest.mark.parametrize("name,shrinkage", CASES)
def test_classifier_equals_sklearn_eigen_lda_on_bundled_data(name, shrinkage):
    X, y = BUNDLED[name][0](return_X_y=True)
    est = lrf.LabelRanker(shrinkage=shrinkage).fit(X, y)
    sk = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(X, y)
    assert_same_classifier(est, sk, X)
    np.testing.assert_allclose(est.priors_, sk.priors_, rtol=1e-15)
    np.testing.assert_allclose(est.covariance_, sk.covariance_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(est.classes_, sk.classes_)
    assert est.score(X, y) == sk.score(X, y) == accuracy_score(y, sk.predict(X))


def test_digits_without_shrinkage_is_refused_naming_shrinkage():
    X, y = datasets.load_digits(return_X_y=True)
    with pytest.raises(np.linalg.LinAlgError):  # scikit-learn's eigen solver fails too
        LinearDiscriminantAnalysis(solver="eigen").fit(X, y)
    est = lrf.LabelRanker(shrinkage=None)
    with pytest.raises(ValueError, match="singular.*shrinkage"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")


def test_oas_classifier_uses_the_rankings_shrinkage():
    X, y = datasets.load_wine(return_X_y=True)
    est = lrf.LabelRanker(shrinkage="oas").fit(X, y)
    assert 0.0 < est.shrinkage_ < 1.0
    assert est.shrinkage_ == est.ranking_.shrinkage
    sk = LinearDiscriminantAnalysis(solver="eigen", shrinkage=est.shrinkage_).fit(X, y)
    assert_same_classifier(est, sk, X)


def test_binary_follows_sklearns_convention():
    X, y = datasets.load_iris(return_X_y=True)
    X, y = X[y > 0], np.array(["versicolor", "virginica"])[y[y > 0] - 1]  # they overlap
    est = lrf.LabelRanker(shrinkage=None).fit(X, y)
    sk = LinearDiscriminantAnalysis(solver="eigen").fit(X, y)
    assert est.coef_.shape == sk.coef_.shape == (1, 4)
    assert est.intercept_.shape == (1,) and est.decision_function(X).shape == (len(X),)
    assert_same_classifier(est, sk, X)
    p = est.predict_proba(X)[:, 1]  # overlapping classes: not a trivial 0/1 comparison
    assert ((p > 0.05) & (p < 0.95)).sum() >= 3 and est.score(X, y) < 1.0


def weighted_lda_reference(X, y, w, classes, shrinkage=0.0):
    """coef (C, d), intercept (C,) of weighted LDA from two-pass float64 statistics."""
    idx = np.searchsorted(classes, y)
    Sw, _, means = reference_scatter(X, idx, len(classes), w)
    counts = np.array([w[idx == k].sum() for k in range(len(classes))])
    S = Sw / counts.sum()
    S = (1 - shrinkage) * S + shrinkage * np.trace(S) / len(S) * np.eye(len(S))
    coef = scipy.linalg.solve(S, means.T, assume_a="sym").T
    intercept = -0.5 * np.sum(means * coef, axis=1) + np.log(counts / counts.sum())
    return coef, intercept


@pytest.mark.parametrize("shrinkage", [None, 0.3])
def test_sample_weight_is_weighted_lda(seed, shrinkage):
    X, y = make_blobs(seed, n=500, d=6, C=4, spread=1.0)
    w = np.random.default_rng(seed).uniform(0.1, 3.0, len(X))
    est = lrf.LabelRanker(shrinkage=shrinkage).fit(X, y, sample_weight=w)
    coef, intercept = weighted_lda_reference(X, y, w, np.arange(4), shrinkage or 0.0)
    np.testing.assert_allclose(est.coef_, coef, rtol=1e-9, atol=1e-9 * abs(coef).max())
    np.testing.assert_allclose(est.intercept_, intercept, rtol=1e-9, atol=1e-9)
    decision = X @ coef.T + intercept
    np.testing.assert_allclose(est.predict_proba(X), softmax(decision, axis=1), atol=1e-10)
    np.testing.assert_array_equal(est.predict(X), decision.argmax(1))
    # Integer weights are repeated rows, which scikit-learn's LDA can fit.
    reps = np.random.default_rng(seed).integers(0, 4, len(X))
    reps[:4] = 1  # keep every class
    est = lrf.LabelRanker(shrinkage=shrinkage).fit(X, y, sample_weight=reps)
    sk = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    assert_same_classifier(est, sk.fit(X.repeat(reps, 0), y.repeat(reps)), X)


def test_all_zero_weights_are_refused():
    X, y = make_blobs(0, n=50, d=3, C=2)
    with pytest.raises(ValueError, match="sample_weight is zero"):
        lrf.LabelRanker().fit(X, y, sample_weight=np.zeros(50))


def test_probabilities_are_stable_far_from_the_data():
    X, y = make_blobs(2, n=400, d=5, C=3)
    est = lrf.LabelRanker().fit(X, y)
    far = X[:20] * 1e4  # scores of order 1e8: a naive softmax overflows
    decision = est.decision_function(far)
    logp = est.predict_log_proba(far)
    assert np.isfinite(logp).all() and logp.min() < -1e4  # not clipped at log(tiny)
    np.testing.assert_allclose(logp, log_softmax(decision, axis=1), rtol=1e-12, atol=1e-6)
    proba = est.predict_proba(far)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(proba.argmax(1), decision.argmax(1))


def test_partial_fit_keeps_the_classifier_consistent(seed):
    X, y = make_blobs(seed, n=900, d=5, C=3)
    full = lrf.LabelRanker(shrinkage=0.1).fit(X, y)
    est = lrf.LabelRanker(shrinkage=0.1)
    est.partial_fit(X[y == 0], y[y == 0], classes=[0, 1, 2])
    with pytest.raises(NotFittedError):
        est.predict(X)
    for s in range(0, 900, 300):
        est.partial_fit(X[s : s + 300], y[s : s + 300])
        seen = lrf.LabelRanker(shrinkage=0.1).fit(
            np.vstack([X[y == 0], X[: s + 300]]), np.concatenate([y[y == 0], y[: s + 300]])
        )
        np.testing.assert_allclose(est.coef_, seen.coef_, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(est.intercept_, seen.intercept_, rtol=1e-9, atol=1e-9)
    before = {k: np.copy(getattr(est, k)) for k in ("coef_", "intercept_", "priors_")}
    bad = X[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(bad, y[:10])
    for k, v in before.items():  # all or nothing: a refused chunk changes nothing
        np.testing.assert_array_equal(getattr(est, k), v)
    assert est._accumulator.n_samples == (y == 0).sum() + 900
    np.testing.assert_allclose(
        est.predict_proba(X),
        lrf.LabelRanker(shrinkage=0.1)
        .fit(np.vstack([X[y == 0], X]), np.concatenate([y[y == 0], y]))
        .predict_proba(X),
        atol=1e-10,
    )
    assert full.score(X, y) > 0.8


# ------------------------------------------------------ inputs, names and output


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_transform_refuses_nan_and_inf(value):
    X, y = make_blobs(0, n=200, d=4, C=3)
    est = lrf.LabelRanker().fit(X, y)
    bad = X.copy()
    bad[5, 1] = value
    with pytest.raises(ValueError, match="NaN|infinity"):  # was silently NaN rows
        est.transform(bad)
    for method in (est.predict, est.predict_proba, est.decision_function):
        with pytest.raises(ValueError, match="NaN|infinity"):
            method(bad)


def test_sparse_input_is_refused_by_name():
    X, y = make_blobs(0, n=200, d=4, C=3)
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data"):
        lrf.LabelRanker().fit(scipy.sparse.csr_array(X), y)
    est = lrf.LabelRanker().fit(X, y)
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data"):
        est.transform(scipy.sparse.csr_matrix(X))


def test_wrong_shapes_use_sklearns_messages():
    X, y = make_blobs(0, n=200, d=4, C=3)
    est = lrf.LabelRanker().fit(X, y)
    with pytest.raises(ValueError, match="Reshape your data"):
        est.transform(X[0])
    with pytest.raises(ValueError, match="X has 3 features, but LabelRanker is expecting 4"):
        est.transform(X[:, :3])


def test_array_likes_are_used_in_memory_not_streamed():
    """A DataFrame or an object with only __array__ is one in-memory array, with names."""

    class OnlyArray:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    X, y = make_blobs(1, n=300, d=4, C=3)
    ref = lrf.LabelRanker(n_components=2).fit(X, y)
    est = lrf.LabelRanker(n_components=2).fit(OnlyArray(X), OnlyArray(y))
    np.testing.assert_allclose(est.transform(OnlyArray(X)), ref.transform(X), rtol=1e-12)
    frame = pd.DataFrame(X, columns=list("abcd"))
    est = lrf.LabelRanker(n_components=2).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(est.feature_names_in_, list("abcd"))
    np.testing.assert_allclose(est.transform(frame), ref.transform(X), rtol=1e-12)


def test_label_and_weight_files_still_stream_with_features_in_memory(tmp_path):
    X, y = make_blobs(4, n=300, d=4, C=3)
    w = np.random.default_rng(4).uniform(0.5, 2.0, 300)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", w)
    ref = lrf.LabelRanker(shrinkage=0.1).fit(X, y, sample_weight=w)
    est = lrf.LabelRanker(shrinkage=0.1).fit(X, tmp_path / "y.npy", str(tmp_path / "w.npy"))
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(est.order_, ref.order_)


def test_feature_names_follow_sklearn():
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    est = lrf.LabelRanker(n_components=2).fit(X, y)
    sk = LinearDiscriminantAnalysis(n_components=2).fit(X, y)
    np.testing.assert_array_equal(est.feature_names_in_, sk.feature_names_in_)
    np.testing.assert_array_equal(est.get_feature_names_out(), ["labelranker0", "labelranker1"])
    assert [
        n.replace("lineardiscriminantanalysis", "labelranker") for n in sk.get_feature_names_out()
    ] == est.get_feature_names_out().tolist()
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        est.predict(X.to_numpy())
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(X.rename(columns=str.upper))
    with pytest.raises(ValueError, match="feature names should match"):
        est.transform(X[X.columns[::-1]])
    est.fit(X.to_numpy(), y)  # refitted without names: none kept
    assert not hasattr(est, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but LabelRanker was fitted"):
        est.transform(X)


def test_set_output_pandas():
    X, y = datasets.load_wine(return_X_y=True, as_frame=True)
    est = lrf.LabelRanker(n_components=2).set_output(transform="pandas")
    out = est.fit_transform(X, y)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["labelranker0", "labelranker1"]
    assert out.index.equals(X.index)
    plain = lrf.LabelRanker(n_components=2).fit(X, y).transform(X)
    np.testing.assert_allclose(out.to_numpy(), plain, rtol=1e-12)


def test_continuous_and_column_targets():
    X, y = make_blobs(0, n=100, d=3, C=2)
    with pytest.raises(ValueError, match="one sample per class.*continuous"):
        lrf.LabelRanker(shrinkage="oas").fit(X, y + np.linspace(0, 0.5, 100))
    halves = lrf.LabelRanker().fit(X, y - 0.5)  # float labels are classes all the same
    np.testing.assert_array_equal(halves.classes_, [-0.5, 0.5])
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        est = lrf.LabelRanker().fit(X, y[:, None])
    np.testing.assert_array_equal(est.predict(X), lrf.LabelRanker().fit(X, y).predict(X))
    with pytest.raises(ValueError, match="requires y to be passed"):
        lrf.LabelRanker().fit(X)


# ---------------------------------------------------------- the README's example


def test_readme_classifier_and_pipeline_example():
    # The same lines as the README's "LabelRanker as a classifier" example.
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    clf = lrf.LabelRanker(shrinkage=0.1).fit(X_train, y_train)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.1).fit(X_train, y_train)
    assert (clf.predict(X_test) == lda.predict(X_test)).all()
    assert np.allclose(clf.predict_proba(X_test), lda.predict_proba(X_test))
    pipe = make_pipeline(StandardScaler(), lrf.LabelRanker(shrinkage="oas"))
    assert pipe.fit(X_train, y_train).score(X_test, y_test) > 0.95
    assert pipe[-1].order_.tolist() == pipe[-1].ranking_.order.tolist()


def test_classifier_without_sklearn_or_scipy():
    """The fallbacks (numpy Cholesky, own checks and score) give the same numbers."""
    code = (
        HIDE
        + """
import json
import numpy as np
import labelranker_fast as lrf
from sklearn.datasets import load_wine
"""
    ).replace("from sklearn.datasets import load_wine\n", "")
    code += """
X = np.array(json.loads(sys.stdin.read()))
y = (np.arange(len(X)) % 3)
X = X + 2.0 * np.eye(X.shape[1])[y % X.shape[1]]
est = lrf.LabelRanker(shrinkage=0.2, n_components=2).fit(X, y)
try:
    est.transform(np.where(X > 3, np.nan, X))
    nan = "accepted"
except ValueError as exc:
    nan = str(exc)
assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules
print(json.dumps({"proba": est.predict_proba(X).tolist(), "score": est.score(X, y),
                  "names": est.get_feature_names_out().tolist(), "nan": nan}))
"""
    X = np.random.default_rng(3).standard_normal((120, 5))
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(X.tolist()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    y = np.arange(len(X)) % 3
    X = X + 2.0 * np.eye(5)[y % 5]
    sk = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.2).fit(X, y)
    np.testing.assert_allclose(got["proba"], sk.predict_proba(X), rtol=1e-8, atol=1e-10)
    assert got["score"] == sk.score(X, y)
    assert got["names"] == ["labelranker0", "labelranker1"]
    assert "NaN" in got["nan"]


HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'sklearn', 'scipy', 'torch'}:
            raise ImportError('hidden: ' + name)
sys.meta_path.insert(0, Hide())
"""
