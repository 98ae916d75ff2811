"""extract_and_rank with the ranking options of rank_labels (method, folds, label-weight
targets): the same result as rank_labels on the features computed here in memory."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import labelranker_fast as lrf  # noqa: E402
from labelranker_fast.torch import extract_and_rank  # noqa: E402


def features_and_loader(targets, batch_size=37):
    rng = np.random.default_rng(0)
    n = len(targets)
    x = torch.from_numpy(rng.normal(size=(n, 12)).astype(np.float32))
    labels = torch.as_tensor(targets)
    hot = labels if labels.ndim == 2 else torch.nn.functional.one_hot(labels, 6)
    x += hot.float() @ torch.from_numpy(rng.normal(size=(6, 12)).astype(np.float32)) * 2
    model = torch.nn.Linear(12, 8)
    with torch.no_grad():
        feats = model(x).double().numpy()
    data = torch.utils.data.TensorDataset(x, labels)
    return model, feats, torch.utils.data.DataLoader(data, batch_size=batch_size)


def test_method_and_folds_equal_rank_labels_on_the_features():
    y = np.random.default_rng(1).integers(0, 6, 900)
    model, feats, loader = features_and_loader(y)
    opts = dict(shrinkage="oas", n_components=2, method="seriation", folds=3)
    got = extract_and_rank(model, loader, num_classes=6, device="cpu", progress=False, **opts)
    want = lrf.rank_labels(feats, y, **opts)
    np.testing.assert_array_equal(got.order, want.order)
    assert got.stability == want.stability
    assert got.stability.folds == 3


def test_multi_hot_targets_equal_rank_labels_with_the_matrix():
    rng = np.random.default_rng(2)
    W = (rng.random((600, 6)) < 0.3).astype(np.float32)
    W[W.sum(1) == 0, 0] = 1.0
    model, feats, loader = features_and_loader(W)
    got = extract_and_rank(model, loader, num_classes=6, device="cpu", progress=False)
    want = lrf.rank_labels(feats, W.astype(np.float64))
    np.testing.assert_array_equal(got.order, want.order)
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=1e-4, atol=1e-6)


def test_bad_options_are_refused_before_the_model_runs():
    y = np.zeros(10, dtype=np.int64)
    model, _, loader = features_and_loader(y)
    with pytest.raises(ValueError, match="method must be one of"):
        extract_and_rank(model, loader, num_classes=6, device="cpu", method="x", progress=False)
    with pytest.raises(ValueError, match="folds must be >= 2"):
        extract_and_rank(model, loader, num_classes=6, device="cpu", folds=1, progress=False)
