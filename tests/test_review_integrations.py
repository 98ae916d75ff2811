"""Regression tests from a review of the integrations (Hugging Face predict/evaluate,
the Lightning callback): each failed on the code as it was found."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import labelranker_fast as lrf  # noqa: E402
from labelranker_fast.torch import evaluate, predict  # noqa: E402

C = 4
NAMES = ["ant", "bee", "cat", "dog"]


def tiny_vit(num_labels):
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=num_labels,
    )
    return transformers.ViTForImageClassification(config).eval()


def data(n=24):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 16, 16, generator=g)
    return x, torch.arange(n) % C


def loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=8)


def named_ranking():
    # order [2, 0, 3, 1]: position p holds class order[p]
    return lrf.LabelRanking(np.arange(C), [2, 0, 3, 1], np.arange(C, dtype=float), [1.0])


# ------------------------------------------------------------------ HF predict
def test_predict_refuses_logits_of_another_width_than_the_ranking():
    """A 3-logit classifier cannot be predicting through a 4-class ranking: mapping its
    positions 0..2 through the ranking gave classes with no error."""
    x, y = data()
    with pytest.raises(ValueError, match="3 logits.*4"):
        predict(tiny_vit(3), loader(x, y), ranking=named_ranking(), device="cpu")


def test_predict_and_evaluate_refuse_a_config_labelled_in_another_order():
    """An HF classifier whose config.id2label names its logit columns in class order (a
    head trained on class indices) is not a head on the ranking's positions: mapping its
    argmax through the ranking gave the wrong classes silently."""
    x, y = data()
    ranking = named_ranking().with_names(NAMES)
    clf = tiny_vit(C)
    clf.config.id2label = dict(enumerate(NAMES))  # column k is class k, not position k
    clf.config.label2id = {n: k for k, n in enumerate(NAMES)}
    with pytest.raises(ValueError, match="id2label"):
        predict(clf, loader(x, y), ranking=ranking, device="cpu")
    with pytest.raises(ValueError, match="id2label"):
        evaluate(clf, loader(x, y), ranking=ranking, device="cpu")


def test_predict_through_the_rankings_own_label_maps_maps_back():
    """With id2label from the ranking (as the README's Trainer example sets it), the
    predictions are the class at each argmax position, computed by hand."""
    x, y = data()
    ranking = named_ranking().with_names(NAMES)
    clf = tiny_vit(C)
    clf.config.id2label, clf.config.label2id = ranking.to_hf_label_maps()
    with torch.no_grad():
        best = clf(pixel_values=x).logits.argmax(1).numpy()
    got = predict(clf, loader(x, y), ranking=ranking, device="cpu")
    np.testing.assert_array_equal(got, np.array([2, 0, 3, 1])[best])


# ------------------------------------------------------------------ Lightning
def test_two_callbacks_setting_the_same_label_ranking_are_refused(tmp_path):
    """Two LabelRankerCallbacks (on two backbones) both set pl_module.label_ranking: the
    module ended up with whichever ran last, silently not the other's ranking."""
    pytest.importorskip("lightning")
    import lightning.pytorch as pl

    from labelranker_fast.lightning import LabelRankerCallback

    d = 5
    g = torch.Generator().manual_seed(0)
    ys = torch.arange(32) % C
    xs = torch.randn(C, d, generator=g)[ys] * 3 + torch.randn(32, d, generator=g)
    train = DataLoader(TensorDataset(xs, ys), batch_size=8)

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Linear(d, 3)
            self.teacher = torch.nn.Linear(d, 3)
            self.head = torch.nn.Linear(3, C)

        def training_step(self, batch, batch_idx):
            x, y = batch
            t = self.label_ranking.remap(y)
            return torch.nn.functional.cross_entropy(self.head(self.backbone(x)), t)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return train

    callbacks = [
        LabelRankerCallback(train, C, backbone="backbone", progress=False),
        LabelRankerCallback(train, C, backbone="teacher", progress=False),
    ]
    trainer = pl.Trainer(
        callbacks=callbacks,
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="LabelRankerCallback"):
            trainer.fit(Net())
