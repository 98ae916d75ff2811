"""The LDA-initialised head: its rows are scikit-learn's LDA classifier, in position
order, and two rankings give row permutations of one head."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import labelranker_fast as lrf  # noqa: E402
from labelranker_fast.torch import lda_head  # noqa: E402


@pytest.fixture(scope="module")
def wine():
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    return X, y


def test_rows_are_sklearns_lda_in_position_order(wine):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = wine
    acc = lrf.ScatterAccumulator(X.shape[1], 3).update(X, y)
    ranking = acc.rank(shrinkage=0.2)
    weight, bias = lda_head(acc, ranking, shrinkage=0.2)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.2).fit(X, y)
    np.testing.assert_allclose(weight.double().numpy(), lda.coef_[ranking.order], rtol=1e-5)
    np.testing.assert_allclose(bias.double().numpy(), lda.intercept_[ranking.order], rtol=1e-5)
    logits = torch.from_numpy(X).float() @ weight.T + bias
    np.testing.assert_array_equal(ranking.unmap(logits.argmax(1).numpy()), lda.predict(X))


def test_two_rankings_give_row_permutations_of_one_head(wine):
    X, y = wine
    acc = lrf.ScatterAccumulator(X.shape[1], 3).update(X, y)
    a = lrf.LabelRanking(np.arange(3), [0, 1, 2], [0.0, 1.0, 2.0], [1.0])
    b = lrf.LabelRanking(np.arange(3), [2, 0, 1], [1.0, 2.0, 0.0], [1.0])
    wa, ba = lda_head(acc, a)
    wb, bb = lda_head(acc, b)
    for p in range(3):  # the class at position p of b has the same row in a's head
        q = int(a.positions[b.order[p]])
        assert torch.equal(wb[p], wa[q]) and torch.equal(bb[p], ba[q])
    w2, b2 = lda_head(acc, a, scale=0.5)
    assert torch.equal(w2, wa * 0.5) and torch.equal(b2, ba * 0.5)


def test_bad_arguments_are_refused(wine):
    X, y = wine
    acc = lrf.ScatterAccumulator(X.shape[1], 3).update(X, y)
    with pytest.raises(TypeError, match="ScatterAccumulator"):
        lda_head(X)
    with pytest.raises(ValueError, match="0..2"):
        lda_head(acc, lrf.LabelRanking(np.array([1, 2, 3]), [0, 1, 2], [0, 1, 2.0], [1.0]))
    with pytest.raises(ValueError, match="scale"):
        lda_head(acc, scale=0)
    with pytest.raises(ValueError, match="shrinkage"):
        lda_head(acc, shrinkage=2.0)
    empty = lrf.ScatterAccumulator(X.shape[1], 4).update(X, y)  # class 3 has no samples
    with pytest.raises(ValueError):
        lda_head(empty)
