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
    weight, bias = lda_head(acc, ranking, shrinkage=0.2, scale=1.0)  # the raw classifier
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
    w1, b1 = lda_head(acc, a, scale=1.0)
    w2, b2 = lda_head(acc, a, scale=0.5)
    assert torch.equal(w2, w1 * 0.5) and torch.equal(b2, b1 * 0.5)


def test_auto_scale_puts_the_logits_about_one_unit_apart(wine):
    X, y = wine
    acc = lrf.ScatterAccumulator(X.shape[1], 3).update(X, y)
    raw_w, raw_b = lda_head(acc, scale=1.0)
    w, b = lda_head(acc)  # "auto"
    factor = (w / raw_w).flatten()
    np.testing.assert_allclose(factor.numpy(), factor[0].item(), rtol=1e-5)  # one factor
    # On the training samples themselves, the logits' spread over classes is about 1
    # (the statistics give its expectation: the mean of the per-sample variances).
    logits = torch.from_numpy(X).float() @ w.T + b
    spread = logits.double().var(dim=1, unbiased=False).mean().sqrt().item()
    assert spread == pytest.approx(1.0, rel=0.02)
    raw = torch.from_numpy(X).float() @ raw_w.T + raw_b
    assert raw.double().var(dim=1, unbiased=False).mean().sqrt().item() > 2  # raw: spread out


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


def tiny_backbone():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 24), torch.nn.GELU(), torch.nn.Dropout(0.1)
    )


@pytest.fixture(scope="module")
def digits_loader():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    images = torch.from_numpy(X[:600].reshape(-1, 1, 8, 8) / 16.0).float()
    data = torch.utils.data.TensorDataset(images, torch.from_numpy(y[:600]))

    def make():
        gen = torch.Generator().manual_seed(0)
        return torch.utils.data.DataLoader(data, batch_size=100, shuffle=True, generator=gen)

    return make


def run(digits_loader, ranking, head_init):
    from labelranker_fast.torch import finetune

    torch.manual_seed(1)  # dropout draws the same in every run
    return finetune(
        tiny_backbone(), digits_loader(), num_classes=10, ranking=ranking, epochs=3,
        warmup_epochs=1, lr=1e-3, head_init=head_init, device="cpu", progress=False,
    )  # fmt: skip


def test_an_lda_head_makes_fine_tuning_independent_of_the_label_order(digits_loader):
    rng = np.random.default_rng(0)
    orders = [rng.permutation(10) for _ in range(2)]
    rankings = [
        lrf.LabelRanking(np.arange(10), o, np.argsort(o).astype(float), [1.0]) for o in orders
    ]
    lda = [run(digits_loader, r, "lda") for r in rankings]
    losses = [[h["train_loss"] for h in res.history] for res in lda]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
    heads = [res.model.head.weight.detach() for res in lda]
    for p in range(10):  # a class's row is the same row, wherever it sits
        q = int(rankings[0].positions[rankings[1].order[p]])
        torch.testing.assert_close(heads[1][p], heads[0][q], rtol=1e-4, atol=1e-5)
    random = [run(digits_loader, r, "random") for r in rankings]
    random_losses = [[h["train_loss"] for h in res.history] for res in random]
    assert not np.allclose(random_losses[0], random_losses[1], rtol=1e-5)  # the test can fail


def test_head_init_is_checked(digits_loader):
    from labelranker_fast.torch import Classifier, finetune

    with pytest.raises(ValueError, match="head_init must be"):
        finetune(tiny_backbone(), digits_loader(), num_classes=10, head_init="zeros", epochs=1,
                 device="cpu", progress=False)  # fmt: skip
    clf = Classifier(tiny_backbone(), 24, 10)
    with pytest.raises(ValueError, match="keeps its own head"):
        finetune(clf, digits_loader(), num_classes=10, head_init="lda", epochs=1, device="cpu",
                 progress=False)  # fmt: skip
    wrong = lrf.ScatterAccumulator(5, 10)
    with pytest.raises(ValueError, match="5 features and 10 classes"):
        finetune(tiny_backbone(), digits_loader(), num_classes=10, head_init=wrong, epochs=1,
                 device="cpu", progress=False)  # fmt: skip
