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

# The --quick settings on two of the three backbones, with a learning rate that learns
# something in 6 epochs: a smoke run of the whole protocol (about a minute).
REDUCED = dict(backbones=("scratch", "mae"), lr=2e-3, pretrain_epochs=30, device="cpu")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    result = run_study(
        quick=True, out_dir=str(out), cache_dir=str(out / "cache"), log=lambda *_: None,
        **REDUCED,
    )  # fmt: skip
    return out, result


def test_reduced_study_writes_a_complete_report(study):
    out, result = study
    runs = result["results"]["runs"]
    # per backbone: seeds x (sequence + 3 random + ranker + equivalent + lda x 2 + probe x 2)
    # + 1 extra head seed
    assert len(runs) == 2 * (2 * 10 + 1)
    md = (out / "report.md").read_text()
    assert "| Model | Pretraining | Label state | Accuracy | Average |" in md
    for state in ("sequence", "random 1", "random 3", "ranker"):
        assert f"| {state} |" in md
    for section in (
        "Spread over label orders",
        "Control 1: equivalent network",
        "Control 2: head-seed spread",
        "Order-free arm: LDA-initialised head",
        "Control 3: linear probe",
        "Ranking stability",
        "Power: minimal detectable effect",
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
    # almost 4 of them above it: every pretrained fine-tuning run learned something (the
    # probes train a head alone for 6 epochs from std-0.02 weights: near chance here).
    mae = [
        r["accuracy"]
        for r in result["results"]["runs"]
        if r["backbone"] == "mae" and not r["backbone_frozen"]
    ]
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
    assert [r["label_state"] for r in runs] == [
        "sequence", "random 1", "ranker", "equivalent",
        "lda sequence", "lda random", "probe sequence", "probe random",
    ]  # fmt: skip
    n_test = out["results"]["data"]["test"]
    assert abs(runs[4]["accuracy"] - runs[5]["accuracy"]) * n_test <= 2 + 1e-9  # lda arm
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
    with pytest.raises(ValueError, match="lda_shrinkage"):
        run_study(out_dir=str(tmp_path), lda_shrinkage=2.0, log=lambda *_: None)
    with pytest.raises(ValueError, match="folds"):
        run_study(out_dir=str(tmp_path), folds=-1, log=lambda *_: None)
    assert not (tmp_path / "results.json").exists()  # nothing trained, nothing written


# ------------------------------------------------ the lda arm, the probe, stability, power
def _lines_of(md: str, section: str) -> list[str]:
    """The table rows of one report section."""
    part = md.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [ln for ln in part.splitlines() if ln.startswith("| ") and "---" not in ln][1:]


def test_lda_arm_gives_equal_accuracy_in_both_orders(study):
    """A class keeps its LDA row wherever it sits: the sequence and the random order are
    the same fine-tuning up to float rounding, so their accuracies are equal (within
    AGREE_IMAGES test images; the seed-to-seed spread is tens)."""
    from labelranker_fast.study._extras import AGREE_IMAGES

    out, result = study
    res = result["results"]
    n_test = res["data"]["test"]
    for run in res["runs"]:
        assert run["head_init"] == ("lda" if run["label_state"].startswith("lda") else "random")
    md = (out / "report.md").read_text()
    rows = _lines_of(md, "Order-free arm: LDA-initialised head")
    assert [r.split("|")[1].strip() for r in rows] == ["scratch", "mae"]
    for kind in ("scratch", "mae"):
        lda = {
            (r["seed"], r["label_state"]): r
            for r in res["runs"]
            if r["backbone"] == kind and r["head_init"] == "lda"
        }
        assert len(lda) == 4
        diffs = []
        for seed in (0, 1):
            seq, rnd = lda[(seed, "lda sequence")], lda[(seed, "lda random")]
            assert seq["order"] == list(range(10)) and rnd["order"] == res["lda_order"]
            assert rnd["order"] != seq["order"]
            diffs.append(abs(seq["accuracy"] - rnd["accuracy"]) * n_test)
            assert diffs[-1] <= AGREE_IMAGES + 1e-9, (kind, seed, diffs)
        e = result["summary"][kind]["extras"]["lda"]
        assert e["agree"] and e["max_abs_diff_images"] == round(max(diffs))
        row = next(r for r in rows if r.split("|")[1].strip() == kind)
        assert f"({round(max(diffs))} images) | yes |" in row


def test_linear_probe_control(study):
    out, result = study
    res = result["results"]
    probes = [r for r in res["runs"] if r["label_state"].startswith("probe")]
    assert len(probes) == 2 * 2 * 2 and all(r["backbone_frozen"] for r in probes)
    assert not any(r["backbone_frozen"] for r in res["runs"] if r not in probes)
    n_test = res["data"]["test"]
    for kind in ("scratch", "mae"):
        acc = {
            (r["seed"], r["label_state"]): r["accuracy"] for r in probes if r["backbone"] == kind
        }
        for a in acc.values():
            assert abs(a * n_test - round(a * n_test)) < 1e-6
        seq = [acc[(s, "probe sequence")] for s in (0, 1)]
        rnd = [acc[(s, "probe random")] for s in (0, 1)]
        e = result["summary"][kind]["extras"]["probe"]
        assert e["max_abs_diff"] == pytest.approx(max(abs(a - b) for a, b in zip(seq, rnd)))
        assert e["sequence"]["std"] == pytest.approx(np.std(seq, ddof=1))
    rows = _lines_of((out / "report.md").read_text(), "Control 3: linear probe")
    assert [r.split("|")[1].strip() for r in rows] == ["scratch", "mae"]


def test_probe_learns_separable_features_in_any_order():
    """The probe alone (a head on fixed features) against a property: well separated
    Gaussian classes are learned, in the sequence and a random order alike."""
    from labelranker_fast.study._arms import probe_once
    from labelranker_fast.study._protocol import StudyConfig, _order_ranking

    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, (4, 6))
    y = np.repeat(np.arange(4), 60)
    x = (means[y] + rng.normal(0, 0.5, (240, 6))).astype(np.float32)
    tr, te = np.arange(240) % 3 != 0, np.arange(240) % 3 == 0
    data = [(torch.from_numpy(x[m]), torch.from_numpy(y[m])) for m in (tr, te)]
    cfg = StudyConfig(epochs=20, lr=5e-2, warmup_epochs=1)
    a_seq, _ = probe_once(*data, None, 0, 4, cfg, "cpu")
    a_rnd, _ = probe_once(*data, _order_ranking(np.array([2, 0, 3, 1])), 0, 4, cfg, "cpu")
    assert a_seq > 0.95 and a_rnd > 0.95


def test_rankings_are_written_with_names_and_stability(study):
    from scipy.stats import kendalltau

    from labelranker_fast import LabelRanking

    out, result = study
    rows = _lines_of((out / "report.md").read_text(), "Ranking stability")
    for kind in ("scratch", "mae"):
        ranking = LabelRanking.from_json(str(out / f"ranking_{kind}.json"))
        order = result["results"]["orders"][kind]["ranker"]
        assert ranking.order.tolist() == order
        assert ranking.names == tuple(str(d) for d in range(10))
        class_map = (out / f"class_map_{kind}.txt").read_text().splitlines()
        assert class_map == [str(c) for c in order]
        folds = np.asarray(ranking.stability.fold_orders)
        assert folds.shape == (5, 10)
        positions = np.argsort(folds, axis=1)  # positions[f, c]: class c's place in fold f
        taus = [
            kendalltau(positions[i], positions[j]).statistic
            for i in range(5)
            for j in range(i + 1, 5)
        ]
        widest = int((positions.max(0) - positions.min(0)).max())
        st = result["summary"][kind]["extras"]["stability"]
        assert st["kendall_tau"] == pytest.approx(np.mean(taus))
        assert st["widest_interval"] == widest and st["folds"] == 5
        row = next(r for r in rows if r.split("|")[1].strip() == kind)
        assert f"| 5 | {np.mean(taus):.3f} | {widest} " in row


def test_power_line_is_the_simulated_mde_at_the_measured_noise(study):
    from labelranker_fast.study._power import minimal_detectable_effect

    out, result = study
    rows = _lines_of((out / "report.md").read_text(), "Power: minimal detectable effect")
    for kind in ("scratch", "mae"):
        main = [
            r for r in result["results"]["runs"]
            if r["backbone"] == kind and r["head_seed"] == r["seed"]
        ]  # fmt: skip
        table = np.array(
            [
                [r["accuracy"] for r in main if r["seed"] == s and r["label_state"] == "sequence"]
                + [
                    r["accuracy"]
                    for r in main
                    if r["seed"] == s and r["label_state"].startswith("random")
                ]
                for s in (0, 1)
            ]
        )
        assert table.shape == (2, 4)
        # the residual SD of the two-way layout, from a least-squares fit (seed + order)
        design = np.hstack(
            [np.kron(np.eye(2), np.ones((4, 1))), np.kron(np.ones((2, 1)), np.eye(4))]
        )
        coef, *_ = np.linalg.lstsq(design, table.ravel(), rcond=None)
        noise = np.sqrt(((table.ravel() - design @ coef) ** 2).sum() / 3)
        p = result["summary"][kind]["extras"]["power"]
        assert p["noise_sd"] == pytest.approx(noise, rel=1e-9)
        assert (p["seeds"], p["orders"]) == (2, 4)
        assert p["mde"] == pytest.approx(minimal_detectable_effect(noise, 2, 4))
        assert np.isfinite(p["mde"]) and p["mde"] > noise  # 2 x 4 is a weak design
        row = next(r for r in rows if r.split("|")[1].strip() == kind)
        assert f"| 2 x 4 | {100 * noise:.2f} | {100 * p['mde']:.2f} |" in row
