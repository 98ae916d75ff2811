"""The PyTorch layer on CPU: extraction equals ranking the in-memory features, rankings
applied to targets and datasets, class maps, and a short fine-tune on real digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import labelranker_fast as lrf  # noqa: E402
from labelranker_fast.torch import (  # noqa: E402
    Classifier,
    RankedDataset,
    RankedTarget,
    evaluate,
    extract_and_rank,
    finetune,
    load_checkpoint,
    pick_device,
    predict,
    ranked_class_to_idx,
)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    images = torch.from_numpy(X.reshape(-1, 1, 8, 8) / 16.0).float()
    return images, torch.from_numpy(y)


def loader_of(images, labels, batch_size=64, shuffle=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(images, labels), batch_size=batch_size, shuffle=shuffle, generator=gen
    )


class Tokens(torch.nn.Module):
    """A fixed random 'ViT': 2x2 patches -> 16 patch tokens plus a class token, (B, 17, 24)."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.proj = torch.nn.Parameter(torch.randn(4, 24, generator=g))
        self.cls = torch.nn.Parameter(torch.randn(24, generator=g))
        self.out_dtype = dtype

    def forward(self, x):
        patches = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(x.shape[0], 16, 4)
        tokens = torch.tanh(patches @ self.proj)
        cls = torch.tanh(tokens.mean(1) + self.cls)
        return torch.cat([cls[:, None], tokens], 1).to(self.out_dtype)


def assert_same(got, want):
    """Same order; centroids equal to float32 rounding (the model computes in float32, the
    engine multiplies float32 rows in float32 within a block; the references are float64)."""
    np.testing.assert_array_equal(got.order, want.order)
    scale = np.abs(want.centroids).max()
    np.testing.assert_allclose(got.centroids, want.centroids, rtol=1e-4, atol=1e-5 * scale)


# ------------------------------------------------------------- extraction
@pytest.mark.parametrize("pooling", ["cls", "avg", "max", "avgmax"])
def test_extract_equals_ranking_features_in_memory(digits, pooling):
    images, labels = digits
    model = Tokens()
    with torch.no_grad():
        tokens = model(images).double().numpy()
    patches = tokens[:, 1:]  # the model has one prefix token... which pool must be told:
    model.num_prefix_tokens = 1
    feats = {
        "cls": tokens[:, 0],
        "avg": patches.mean(1),
        "max": patches.max(1),
        "avgmax": 0.5 * (patches.mean(1) + patches.max(1)),
    }[pooling]
    want = lrf.rank_labels(feats, labels.numpy(), shrinkage="oas")
    got = extract_and_rank(
        model,
        loader_of(images, labels, 50),
        num_classes=10,
        pooling=pooling,
        shrinkage="oas",
        device="cpu",
        progress=False,
    )
    assert_same(got, want)


def test_extract_with_callable_pooling_and_dict_batches(digits):
    images, labels = digits
    model = Tokens()
    with torch.no_grad():
        feats = model(images)[:, 3].numpy()
    batches = [
        {"pixel_values": images[i : i + 100], "labels": labels[i : i + 100]}
        for i in range(0, len(labels), 100)
    ]
    ranking, acc = extract_and_rank(
        model,
        batches,
        num_classes=10,
        pooling=lambda t: t[:, 3],
        shrinkage="oas",
        device="cpu",
        progress=False,
        return_accumulator=True,
    )
    assert_same(ranking, lrf.rank_labels(feats, labels.numpy(), shrinkage="oas"))
    assert acc.n_samples == len(labels)


def test_bfloat16_features_are_accepted(digits):
    images, labels = digits
    model = Tokens(dtype=torch.bfloat16)
    with torch.no_grad():
        feats = model(images)[:, 0].double().numpy()  # exactly the bfloat16 values
    got = extract_and_rank(
        model,
        loader_of(images, labels),
        num_classes=10,
        pooling="cls",
        shrinkage="oas",
        device="cpu",
        progress=False,
    )
    assert_same(got, lrf.rank_labels(feats, labels.numpy(), shrinkage="oas"))


def test_model_is_left_in_its_training_mode(digits):
    images, labels = digits
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 16))
    model.train()
    a = extract_and_rank(
        model,
        loader_of(images, labels),
        num_classes=10,
        device="cpu",
        shrinkage="oas",
        progress=False,
    )
    b = extract_and_rank(
        model,
        loader_of(images, labels),
        num_classes=10,
        device="cpu",
        shrinkage="oas",
        progress=False,
    )
    assert model.training
    assert a == b  # dropout was off during extraction: deterministic


def test_extract_errors(digits):
    images, labels = digits
    model = Tokens()
    with pytest.raises(ValueError, match="pooling"):
        extract_and_rank(model, loader_of(images, labels), num_classes=10, pooling="mean")
    with pytest.raises(TypeError, match="batch"):
        extract_and_rank(model, [images[:10]], num_classes=10, device="cpu", progress=False)
    with pytest.raises(ValueError, match="class index"):
        extract_and_rank(
            model, loader_of(images, labels), num_classes=5, device="cpu", progress=False
        )


def test_pick_device_auto_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv("PJRT_DEVICE", raising=False)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert pick_device("auto").type == "cpu"
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(TypeError):
        pick_device(3)


# ------------------------------------------------------------- timm models
def tiny_vit(**kw):
    timm = pytest.importorskip("timm")
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=2,
        num_heads=2,
        num_classes=0,
        **kw,
    )


@pytest.mark.parametrize("pooling", ["avg", "head", "cls"])
def test_timm_vit_extraction(pooling):
    torch.manual_seed(0)
    model = tiny_vit().eval()
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 4, 200))
    images = torch.randn(200, 3, 32, 32) + labels[:, None, None, None].float() * 0.3
    with torch.no_grad():
        tokens = model.forward_features(images)
        feats = (
            {
                "avg": tokens[:, model.num_prefix_tokens :].mean(1),
                "cls": tokens[:, 0],
                "head": model.forward_head(tokens, pre_logits=True),
            }[pooling]
            .double()
            .numpy()
        )
    want = lrf.rank_labels(feats, labels.numpy(), shrinkage="oas")
    got = extract_and_rank(
        model,
        loader_of(images, labels, 32),
        num_classes=4,
        pooling=pooling,
        shrinkage="oas",
        device="cpu",
        progress=False,
    )
    assert_same(got, want)


def test_class_map_round_trip_through_timm(tmp_path):
    timm_class_map = pytest.importorskip("timm.data.readers.class_map")
    names = np.array(["cat", "dog", "eel", "fox", "gnu"])
    ranking = lrf.LabelRanking(
        names, order=[3, 0, 4, 1, 2], centroids=np.arange(5.0)[[1, 3, 4, 0, 2]], eigenvalues=[1.0]
    )
    path = tmp_path / "class_map.txt"
    ranking.to_class_map(path)
    mapping = timm_class_map.load_class_map(str(path))
    assert mapping == {str(n): int(p) for n, p in zip(names, ranking.remap(names))}
    folder_idx = {n: i for i, n in enumerate(names)}  # ImageFolder's alphabetical indices
    assert ranked_class_to_idx(folder_idx, ranking) == mapping
    # A ranking of class indices (what extract_and_rank returns) with the folder names.
    by_index = lrf.LabelRanking(
        np.arange(5), order=ranking.order, centroids=ranking.centroids, eigenvalues=[1.0]
    )
    by_index.to_class_map(path, names=list(names))
    assert timm_class_map.load_class_map(str(path)) == mapping


# ------------------------------------------------------------- applying a ranking
@pytest.fixture
def int_ranking():
    order = np.array([4, 2, 0, 1, 3])
    return lrf.LabelRanking(np.arange(5), order, np.arange(5.0)[np.argsort(order)], [1.0])


def test_targets_and_datasets(int_ranking):
    t = RankedTarget(int_ranking)
    assert [t(c) for c in range(5)] == int_ranking.positions.tolist()
    assert t(torch.tensor(4)) == 0
    ds = RankedDataset(TensorDataset(torch.zeros(5, 2), torch.arange(5)), int_ranking)
    assert [ds[i][1] for i in range(5)] == int_ranking.positions.tolist()
    assert len(ds) == 5
    import pickle

    assert pickle.loads(pickle.dumps(t))(2) == t(2)  # DataLoader workers get copies
    y = torch.tensor([0, 4, 4, 1])
    pos = int_ranking.remap(y)
    assert pos.tolist() == int_ranking.positions[[0, 4, 4, 1]].tolist()
    assert int_ranking.unmap(pos).tolist() == y.tolist()
    assert ranked_class_to_idx({"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}, int_ranking) == {
        k: int(int_ranking.positions[i]) for i, k in enumerate("abcde")
    }


# ------------------------------------------------------------- fine-tuning
def mlp():
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.GELU())


@pytest.fixture(scope="module")
def split(digits):
    images, labels = digits
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
    train, test = perm[:1400], perm[1400:]
    return (images[train], labels[train]), (images[test], labels[test])


def test_finetune_reaches_high_accuracy_and_predictions_map_back(split, tmp_path):
    (xtr, ytr), (xte, yte) = split
    backbone = mlp()
    ranking = extract_and_rank(
        backbone, loader_of(xtr, ytr), num_classes=10, shrinkage="oas", device="cpu", progress=False
    )
    result = finetune(
        backbone,
        loader_of(xtr, ytr, shuffle=True),
        num_classes=10,
        ranking=ranking,
        val_loader=loader_of(xte, yte),
        epochs=8,
        warmup_epochs=1,
        lr=3e-3,
        device="cpu",
        progress=False,
        history_path=tmp_path / "history.json",
    )
    assert [h["epoch"] for h in result.history] == list(range(1, 9))
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert json.loads((tmp_path / "history.json").read_text()) == result.history
    # Predictions are positions; mapped back they are the original digits.
    pred = predict(result.model, loader_of(xte, yte), ranking=ranking, device="cpu")
    assert np.mean(pred == yte.numpy()) == pytest.approx(result.history[-1]["val_accuracy"])
    raw = predict(result.model, loader_of(xte, yte), device="cpu")
    np.testing.assert_array_equal(ranking.unmap(raw), pred)
    ev = evaluate(result.model, loader_of(xte, yte), ranking=ranking, device="cpu")
    assert ev["accuracy"] == pytest.approx(result.history[-1]["val_accuracy"])


def test_head_initialisation_depends_on_head_seed_only():
    a = Classifier(mlp(), 64, 10, head_seed=7)
    torch.manual_seed(999)  # the global RNG plays no part
    b = Classifier(mlp(), 64, 10, head_seed=7)
    c = Classifier(mlp(), 64, 10, head_seed=8)
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)
    assert float(a.head.weight.detach().std()) == pytest.approx(0.02, rel=0.2)


class StopsAfter:
    """A loader that raises on its (passes + 1)-th iteration: an interrupted run."""

    def __init__(self, loader, passes):
        self.loader, self.left = loader, passes

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return iter(self.loader)


def test_checkpoint_resume_continues_where_it_stopped(split, tmp_path):
    (xtr, ytr), _ = split
    ckpt = tmp_path / "ckpt.pt"
    kw = dict(num_classes=10, epochs=3, warmup_epochs=1, lr=3e-3, device="cpu", progress=False)
    full = finetune(mlp(), loader_of(xtr, ytr), **kw)
    with pytest.raises(KeyboardInterrupt):
        # 1 pass to size the head (a peek at the first batch) + 2 epochs, then interrupted
        finetune(mlp(), StopsAfter(loader_of(xtr, ytr), 3), checkpoint_path=ckpt, **kw)
    epoch, history = load_checkpoint(ckpt, Classifier(mlp(), 64, 10))
    assert epoch == 2 and len(history) == 2
    resumed = finetune(mlp(), loader_of(xtr, ytr), checkpoint_path=ckpt, **kw)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for got, want in zip(resumed.history, full.history):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-12)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_finetune_rejects_a_ranking_of_other_labels(split):
    (xtr, ytr), _ = split
    names = lrf.LabelRanking(np.array(list("abcdefghij")), np.arange(10), np.arange(10.0), [1.0])
    with pytest.raises(ValueError, match="class indices"):
        finetune(
            mlp(),
            loader_of(xtr, ytr),
            num_classes=10,
            ranking=names,
            epochs=1,
            device="cpu",
            progress=False,
        )


def test_a_checkpoint_of_another_run_is_refused_and_nothing_changes(split, tmp_path):
    """Resuming with another ranking (or recipe) would train the head on another label
    order without a word; truncated or foreign files are ValueErrors."""
    (xtr, ytr), _ = split
    xtr, ytr = xtr[:256], ytr[:256]
    ckpt = tmp_path / "ckpt.pt"
    kw = dict(num_classes=10, epochs=2, warmup_epochs=0, device="cpu", progress=False)
    with pytest.raises(KeyboardInterrupt):
        finetune(mlp(), StopsAfter(loader_of(xtr, ytr), 2), checkpoint_path=ckpt, **kw)
    before = ckpt.read_bytes()
    reversed_order = lrf.LabelRanking(np.arange(10), np.arange(10)[::-1], np.arange(10.0), [1.0])
    with pytest.raises(ValueError, match="another fine-tuning run.*positions"):
        finetune(mlp(), loader_of(xtr, ytr), checkpoint_path=ckpt, ranking=reversed_order, **kw)
    with pytest.raises(ValueError, match="lr"):
        finetune(mlp(), loader_of(xtr, ytr), checkpoint_path=ckpt, lr=1e-2, **kw)
    assert ckpt.read_bytes() == before
    clf = Classifier(mlp(), 64, 10)
    params = [p.detach().clone() for p in clf.parameters()]
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(ckpt, Classifier(mlp(), 64, 7))
    bad = Classifier(
        torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64)
        ),
        64,
        10,
    )
    bad_before = [p.detach().clone() for p in bad.parameters()]
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(ckpt, bad)
    for p, q in zip(bad.parameters(), bad_before):  # all or nothing
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for content in (before[: len(before) // 2], b"", b"not a checkpoint"):
        (tmp_path / "bad.pt").write_bytes(content)
        with pytest.raises(ValueError, match="not a readable fine-tuning checkpoint"):
            load_checkpoint(tmp_path / "bad.pt", clf)
    for p, q in zip(clf.parameters(), params):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    resumed = finetune(mlp(), loader_of(xtr, ytr), checkpoint_path=ckpt, **kw)  # same run
    assert [h["epoch"] for h in resumed.history] == [1, 2]
