"""The label-order study: a reduced configuration end to end, its statistics and controls."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from labelranker_fast._cli import main  # noqa: E402
from labelranker_fast.study import order_effect_test, run_study  # noqa: E402
from labelranker_fast.study._backbones import BackboneSpec, build_backbone  # noqa: E402
from labelranker_fast.study._data import load_data, stratified_split  # noqa: E402

# Fewer orders, seeds and epochs than the defaults, and a learning rate that learns
# something in 6 epochs: a smoke run of the whole protocol (about a minute).
REDUCED = dict(
    backbones=("scratch", "mae"),
    random_orders=2,
    seeds=2,
    head_seeds=2,
    epochs=6,
    lr=2e-3,
    pretrain_epochs=30,
    device="cpu",
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    result = run_study(
        out_dir=str(out), cache_dir=str(out / "cache"), log=lambda *_: None, **REDUCED
    )
    return out, result


def test_reduced_study_writes_a_complete_report(study):
    out, result = study
    runs = result["results"]["runs"]
    # per backbone: seeds x (sequence + 2 random + ranker + equivalent) + 1 extra head seed
    assert len(runs) == 2 * (2 * 5 + 1)
    md = (out / "report.md").read_text()
    assert "| Model | Pretraining | Label state | Accuracy | Average |" in md
    for state in ("sequence", "random 1", "random 2", "ranker"):
        assert f"| {state} |" in md
    for section in (
        "Spread over label orders",
        "Control 1: equivalent network",
        "Control 2: head-seed spread",
    ):
        assert section in md
    assert (out / "accuracy.png").stat().st_size > 1000
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(runs))
    assert set(saved["summary"]) == {"scratch", "mae"}


def test_every_accuracy_is_a_real_evaluation(study):
    _, result = study
    n_test = result["results"]["data"]["test"]
    for run in result["results"]["runs"]:
        hits = run["accuracy"] * n_test
        assert abs(hits - round(hits)) < 1e-6, "not a count of correct test images"
    # Chance is 0.10; with 539 test images its standard deviation is 0.013, so 0.15 is
    # almost 4 of them above it: every pretrained run learned something.
    mae = [r["accuracy"] for r in result["results"]["runs"] if r["backbone"] == "mae"]
    assert min(mae) > 0.15, f"pretrained backbone near chance (0.1): {mae}"


def test_orders_are_what_they_claim(study):
    _, result = study
    res = result["results"]
    for run in res["runs"]:
        order = run["order"]
        assert sorted(order) == list(range(10))
        if run["label_state"] == "sequence":
            assert order == list(range(10))
        elif run["label_state"] == "ranker":
            assert order == res["orders"][run["backbone"]]["ranker"]
        elif run["label_state"].startswith("random"):
            assert order == res["random_orders"][int(run["label_state"].split()[1]) - 1]


def test_equivalent_network_reproduces_the_sequence_run(study):
    """A random order with the head's initial rows permuted alike is the sequence network
    with its outputs relabelled: training is the same computation, so the accuracy is."""
    _, result = study
    for s in result["summary"].values():
        assert s["equivalent"], "control 1 did not run"
        for e in s["equivalent"]:
            assert e["equivalent"] == e["sequence"]


def test_timm_backbone_at_its_input_size(tmp_path):
    pytest.importorskip("timm")
    out = run_study(
        out_dir=str(tmp_path),
        log=lambda *_: None,
        backbones=("timm:vit_tiny_patch16_224",),
        input_size=16,
        random_orders=1,
        seeds=1,
        head_seeds=1,
        epochs=1,
        device="cpu",
    )
    runs = out["results"]["runs"]
    assert [r["label_state"] for r in runs] == ["sequence", "random 1", "ranker", "equivalent"]
    assert all(r["model"] == "vit_tiny_patch16_224" for r in runs)
    assert runs[3]["accuracy"] == runs[0]["accuracy"]  # control 1 holds for timm models too


def test_a_timm_cnn_backbone_runs(tmp_path):
    """timm CNNs take no img_size: timm:resnet18 used to fail with a TypeError. timm's
    small test_resnet takes the same path (resnet18 itself: the closing note's run)."""
    pytest.importorskip("timm")
    out = run_study(
        out_dir=str(tmp_path), log=lambda *_: None, backbones=("timm:test_resnet",),
        random_orders=1, seeds=1, head_seeds=1, epochs=1, device="cpu",
    )  # fmt: skip
    runs = out["results"]["runs"]
    assert all(r["model"] == "test_resnet" for r in runs)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in runs)
    assert runs[3]["accuracy"] == runs[0]["accuracy"]  # control 1


def test_order_effect_test_detects_an_effect_and_not_noise():
    rng = np.random.default_rng(0)
    seeds, orders = 3, 8
    noise = rng.normal(0, 0.01, (seeds, orders))
    effect = noise + np.linspace(0, 0.1, orders)  # order shifts accuracy by up to 10 points
    assert order_effect_test(effect, n_perm=2000)["p"] < 0.01
    assert order_effect_test(noise, n_perm=2000)["p"] > 0.05
    assert order_effect_test(noise, n_perm=500) == order_effect_test(noise, n_perm=500)
    assert np.isnan(order_effect_test(noise[:1])["p"])
    with pytest.raises(ValueError, match=r"acc must be \(seeds, orders\)"):
        order_effect_test(noise[0])


def test_pretrained_weights_are_cached_and_reused(tmp_path):
    data = load_data("digits")
    train, _ = stratified_split(data.labels)
    spec = BackboneSpec(
        "rotation",
        arch=dict(img_size=8, channels=1, patch=2, dim=16, depth=1, heads=2),
        pretrain_epochs=1,
    )
    messages = []
    first = build_backbone(spec, data.images[train[:200]], cache_dir=tmp_path, log=messages.append)
    second = build_backbone(spec, data.images[train[:200]], cache_dir=tmp_path, log=messages.append)
    assert any("from the cache" in m for m in messages)
    for p, q in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(p, q)
    assert len(list(tmp_path.glob("rotation-*.pt"))) == 1
    # A damaged cache entry (truncated by a crash of another writer, say) is made again.
    (cached,) = tmp_path.glob("rotation-*.pt")
    cached.write_bytes(cached.read_bytes()[:100])
    messages.clear()
    third = build_backbone(spec, data.images[train[:200]], cache_dir=tmp_path, log=messages.append)
    assert any("pretraining again" in m for m in messages)
    for p, q in zip(first.state_dict().values(), third.state_dict().values()):
        assert torch.equal(p, q)  # pretraining is seeded: the same weights again
    assert build_backbone(spec, data.images[train[:200]], cache_dir=tmp_path) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [cached.name]


def test_split_is_stratified_and_fixed():
    y = torch.from_numpy(np.repeat(np.arange(4), [10, 20, 30, 40]))
    train, test = stratified_split(y, 0.3, seed=0)
    assert np.bincount(y[test].numpy()).tolist() == [3, 6, 9, 12]
    assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 100
    assert torch.equal(stratified_split(y, 0.3, seed=0)[1], test)


def test_image_folder_data(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("circle", "square"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i}.png"
            )
    data = load_data(str(tmp_path), image_size=16)
    assert data.class_names == ["circle", "square"]
    assert tuple(data.images.shape) == (6, 3, 16, 16)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0


def test_study_errors(tmp_path):
    with pytest.raises(TypeError, match="unknown study options"):
        run_study(out_dir=str(tmp_path), epoch=3)
    with pytest.raises(ValueError, match="backbone"):
        run_study(out_dir=str(tmp_path), backbones=("imagenet",), log=lambda *_: None)
    assert main(["study", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
