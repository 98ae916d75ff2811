"""``labelranker extract``: an image folder through a real timm or transformers model to a
ranking, a class map and label maps. Tiny models built from configs; nothing downloaded.

The references are computed here in Python, the documented way (torchvision's
ImageFolder, timm's eval transform or the saved image processor, ``extract_and_rank``),
not through the command's code."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
Image = pytest.importorskip("PIL.Image")

from labelranker_fast import LabelRanking  # noqa: E402
from labelranker_fast._cli import main  # noqa: E402
from labelranker_fast.torch import extract_and_rank  # noqa: E402

FOLDERS = ("10", "2", "cat")  # ImageFolder's order is by name: "10" before "2"
SIZE = 32


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """3 classes x 6 PNGs, 16x16, each class its own colour (plus noise)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    colours = {"10": (200, 40, 40), "2": (40, 200, 40), "cat": (90, 90, 220)}
    for name, colour in colours.items():
        (root / name).mkdir()
        for i in range(6):
            pixels = np.asarray(colour)[None, None] + rng.normal(0, 30, (16, 16, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def timm_vit(num_classes=0):
    return timm.create_model("test_vit", pretrained=False, num_classes=num_classes, img_size=SIZE)


@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory):
    """A timm train.py-style checkpoint (weights under "state_dict", its arguments as an
    argparse.Namespace) of a model with a 3-class head, and the backbone's weights."""
    torch.manual_seed(7)
    model = timm_vit(num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "vit.pth.tar"
    state = model.state_dict()
    torch.save({"epoch": 2, "state_dict": state, "args": argparse.Namespace(lr=0.1)}, path)
    return path, {k: v for k, v in state.items() if not k.startswith("head.")}


def timm_reference(images, backbone_state, batch_size):
    model = timm_vit()
    model.load_state_dict(backbone_state)
    config = timm.data.resolve_data_config({"input_size": (3, SIZE, SIZE)}, model=model)
    data = torchvision.datasets.ImageFolder(images, timm.data.create_transform(**config))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
    return extract_and_rank(
        model, loader, num_classes=3, shrinkage="oas", progress=False, device="cpu"
    )


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "labelranker_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def call(capsys, *args):
    """The command run in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def outputs(folder):
    return folder / "ranking.json", folder / "class_map.txt", folder / "label_maps.json"


def check_outputs_agree(ranking_path, map_path, maps_path):
    ranking = LabelRanking.from_json(ranking_path)
    lines = map_path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and sorted(lines[:-1]) == sorted(FOLDERS), lines
    assert ranking.names == FOLDERS  # class index c is the c-th folder in sorted order
    assert tuple(lines[:-1]) == ranking.ranked_names
    assert [FOLDERS[c] for c in ranking.order] == lines[:-1]
    id2label, label2id = ranking.to_hf_label_maps()
    maps = json.loads(maps_path.read_text())
    assert {int(k): v for k, v in maps["id2label"].items()} == id2label
    assert maps["label2id"] == label2id
    assert id2label == dict(enumerate(lines[:-1]))
    return ranking


def test_timm_checkpoint_ranking_class_map_and_label_maps(
    images, timm_checkpoint, tmp_path, capsys
):
    path, backbone = timm_checkpoint
    runs = []
    # The command itself, then again in this process (a fresh process costs seconds
    # here): the same bytes a second time, and with worker processes reading the images.
    for i, workers in enumerate((0, 0, 2)):
        folder = tmp_path / str(i)
        folder.mkdir()
        ranking_path, map_path, maps_path = outputs(folder)
        args = (
            "extract", "--model", f"timm:test_vit@{path}", "--data", images,
            "--input-size", SIZE, "--batch-size", 4, "--num-workers", workers,
            "-o", ranking_path, "--class-map", map_path, "--label-maps", maps_path,
        )  # fmt: skip
        if i == 0:
            done = run_cli(*args)
            status, stdout, err = done.returncode, done.stdout, done.stderr
        else:
            status, stdout, err = call(capsys, *args, "--no-progress")
        assert status == 0, err
        assert "head.weight, head.bias dropped" in stdout
        runs.append([p.read_bytes() for p in (ranking_path, map_path, maps_path)])
        ranking = check_outputs_agree(ranking_path, map_path, maps_path)
    assert runs[0] == runs[1] == runs[2]
    # The checkpoint's backbone weights, run the documented way, rank the same.
    assert ranking == timm_reference(images, backbone, batch_size=4)


def test_checkpoint_forms_all_give_the_same_ranking(images, timm_checkpoint, tmp_path, capsys):
    safetensors = pytest.importorskip("safetensors.torch")
    path, backbone = timm_checkpoint
    reference = timm_reference(images, backbone, batch_size=64)
    full = torch.load(path, weights_only=False)["state_dict"]
    forms = {
        "plain.pth": full,
        "ddp.pth": {"module." + k: v for k, v in full.items()},
        "model_key.pth": {"model": backbone, "epoch": 1},
    }
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
    safetensors.save_file(backbone, str(tmp_path / "w.safetensors"))
    for name in (*forms, "w.safetensors"):
        status, _, err = call(
            capsys, "extract", "--model", f"timm:test_vit@{tmp_path / name}", "--data",
            images, "--input-size", SIZE, "--num-workers", 0, "--no-progress",
            "-o", tmp_path / "r.json",
        )  # fmt: skip
        assert status == 0, (name, err)
        assert LabelRanking.from_json(tmp_path / "r.json") == reference, name


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A saved tiny ViTForImageClassification (its head and no pooler) and its processor."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("hf")
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    processor = transformers.ViTImageProcessor(size={"height": SIZE, "width": SIZE})
    processor.save_pretrained(folder)
    return folder


def test_hf_folder_ranking_equals_its_model_and_processor(images, hf_folder, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    ranking_path, map_path, maps_path = outputs(tmp_path)
    args = (
        "extract", "--model", f"hf:{hf_folder}", "--data", images, "--num-workers", 0,
        "-o", ranking_path, "--class-map", map_path, "--label-maps", maps_path,
    )  # fmt: skip
    status, _, err = call(capsys, *args, "--no-progress")
    assert status == 0, err
    first = [p.read_bytes() for p in (ranking_path, map_path, maps_path)]
    ranking = check_outputs_agree(ranking_path, map_path, maps_path)
    status, _, err = call(capsys, *args, "--no-progress")
    assert status == 0, err
    assert [p.read_bytes() for p in (ranking_path, map_path, maps_path)] == first

    model = transformers.AutoModel.from_pretrained(hf_folder)
    processor = transformers.AutoImageProcessor.from_pretrained(hf_folder)
    data = torchvision.datasets.ImageFolder(
        images, lambda im: processor(images=im, return_tensors="pt")["pixel_values"][0]
    )
    loader = torch.utils.data.DataLoader(data, batch_size=64)
    reference = extract_and_rank(
        model, loader, num_classes=3, shrinkage="oas", progress=False, device="cpu"
    )
    assert ranking == reference


def test_random_weights_are_refused_unless_allowed(images, tmp_path, capsys):
    out_path = tmp_path / "r.json"
    args = ("extract", "--model", "timm:test_vit", "--data", images, "--input-size", SIZE,
            "--num-workers", 0, "--no-progress", "-o", out_path)  # fmt: skip
    status, _, err = call(capsys, *args)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "--allow-random-weights" in err and "random" in err
    assert not out_path.exists()
    # Allowed, the weights are seeded: two runs agree.
    status, _, err = call(capsys, *args, "--allow-random-weights")
    assert status == 0, err
    first = out_path.read_bytes()
    assert call(capsys, *args, "--allow-random-weights")[0] == 0
    assert out_path.read_bytes() == first


def test_random_weights_are_seeded_without_touching_the_callers_generator():
    from labelranker_fast.torch._images import load_model

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_model("timm:test_vit", input_size=SIZE, allow_random_weights=True).model
    assert torch.equal(torch.rand(3), expected)
    b = load_model("timm:test_vit", input_size=SIZE, allow_random_weights=True).model
    state = b.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in a.state_dict().items())


def test_hf_folder_missing_weights_or_processor_is_refused(hf_folder, images, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    bare = tmp_path / "bare"  # a model and no image processor
    transformers.AutoModel.from_pretrained(hf_folder).save_pretrained(bare)
    partial = tmp_path / "partial"  # an image processor, and weights for the embeddings only
    model = transformers.AutoModel.from_pretrained(hf_folder)
    model.save_pretrained(partial)
    processor = transformers.AutoImageProcessor.from_pretrained(hf_folder)
    processor.save_pretrained(partial)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(partial / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if k.startswith("embeddings.")}
    save_file(kept, str(partial / "model.safetensors"), metadata={"format": "pt"})
    for spec, extra, expect in (
        (f"hf:{bare}", (), "image processor"),
        (f"hf:{partial}", (), "--allow-random-weights"),
        (f"hf:{hf_folder}", ("--input-size", 64), "--input-size applies to timm"),
        (f"hf:{tmp_path / 'nowhere'}", (), "no such folder"),
    ):
        status, _, err = call(
            capsys, "extract", "--model", spec, "--data", images, "--num-workers", 0,
            "--no-progress", "-o", tmp_path / "r.json", *extra,
        )  # fmt: skip
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1, (spec, err)
        assert lines[0].startswith("labelranker: error:") and expect in lines[0], (spec, err)
    assert not (tmp_path / "r.json").exists()
    status, _, err = call(
        capsys, "extract", "--model", f"hf:{partial}", "--data", images, "--num-workers",
        0, "--no-progress", "-o", tmp_path / "r.json", "--allow-random-weights",
    )  # fmt: skip
    assert status == 0 and (tmp_path / "r.json").exists(), err


def bad_case(kind, tmp_path, images, checkpoint, backbone):
    """(--model, --data, other args, text the error must hold) for one kind of bad input."""
    model = f"timm:test_vit@{checkpoint}"
    data = images
    more: tuple = ()
    if kind == "no folder":
        data, expect = tmp_path / "nope", "no such folder"
    elif kind == "a file as folder":
        data, expect = checkpoint, "not a folder"
    elif kind == "one class":
        data = tmp_path / "one"
        (data / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(data / "a" / "x.png")
        expect = "1 class sub-folder"
    elif kind == "a class without images":
        data = tmp_path / "empty"
        for name in ("a", "b"):
            (data / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(data / "a" / "x.png")
        (data / "b" / "notes.txt").write_text("no image")
        expect = "classes b"
    elif kind in ("corrupt image", "corrupt image, workers"):
        data = tmp_path / "corrupt"
        for name in ("a", "b"):
            (data / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(data / name / "x.png")
        (data / "b" / "y.png").write_bytes(b"not a png")
        expect = f"cannot read image {str(data / 'b' / 'y.png')!r}"
        more = ("--num-workers", 2) if "workers" in kind else ()
    elif kind == "unknown model":
        model, expect = "timm:no_such_model_xyz", "unknown timm model 'no_such_model_xyz'"
    elif kind == "unknown spec":
        model, expect = "torchhub:resnet", "timm:NAME[@CHECKPOINT] or hf:DIR"
    elif kind == "no checkpoint file":
        model, expect = f"timm:test_vit@{tmp_path / 'gone.pth'}", "no such file"
    elif kind == "junk checkpoint":
        (tmp_path / "junk.pth").write_bytes(b"\x80\x02junk" * 10)
        model, expect = f"timm:test_vit@{tmp_path / 'junk.pth'}", "not a readable weights"
    elif kind == "not a state dict":
        torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
        model, expect = f"timm:test_vit@{tmp_path / 'meta.pth'}", "holds no state dict"
    elif kind == "missing key":
        torch.save({k: v for k, v in backbone.items() if k != "norm.weight"}, tmp_path / "m.pth")
        model, expect = f"timm:test_vit@{tmp_path / 'm.pth'}", "missing norm.weight"
    elif kind == "unexpected key":
        torch.save({**backbone, "extra.weight": torch.zeros(2)}, tmp_path / "u.pth")
        model, expect = f"timm:test_vit@{tmp_path / 'u.pth'}", "unexpected extra.weight"
    elif kind == "another size":  # a 32-pixel ViT's checkpoint in the default-size model
        more, expect = ("--input-size", 64), "wrong shape pos_embed"
    elif kind == "output folder missing":
        more, expect = ("-o", tmp_path / "no" / "r.json"), "no such folder"
    elif kind == "two outputs, one file":
        more, expect = ("--class-map", tmp_path / "r.json"), "are the same file"
    else:
        assert kind == "bad device"
        more, expect = ("--device", "nonsense"), "--device 'nonsense'"
    return model, data, more, expect


BAD = [
    "no folder", "a file as folder", "one class", "a class without images", "corrupt image",
    "corrupt image, workers", "unknown model", "unknown spec", "no checkpoint file",
    "junk checkpoint", "not a state dict", "missing key", "unexpected key", "another size",
    "output folder missing", "two outputs, one file", "bad device",
]  # fmt: skip


@pytest.mark.parametrize("kind", BAD)
def test_bad_inputs_are_one_line_errors_with_status_2(
    kind, images, timm_checkpoint, tmp_path, capsys
):
    checkpoint, backbone = timm_checkpoint
    model, data, more, expect = bad_case(kind, tmp_path, images, checkpoint, backbone)
    args = ["extract", "--model", model, "--data", data, "--no-progress", "-o", tmp_path / "r.json"]
    if "--input-size" not in more:
        args += ["--input-size", SIZE]
    if "--num-workers" not in more:
        args += ["--num-workers", 0]
    status, out, err = call(capsys, *args, *more)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, (kind, err)
    assert lines[0].startswith("labelranker: error:") and expect in lines[0], (kind, err)
    assert "Traceback" not in err
    assert not (tmp_path / "r.json").exists()
    # A failed pass stops its image-reading processes at once, not when collected.
    assert not multiprocessing.active_children()


def test_bad_arguments_are_usage_errors(images, capsys):
    for more in (("--batch-size", "0"), ("--num-workers", "-1"), ("--pooling", "mean")):
        with pytest.raises(SystemExit) as exc:
            main(
                [
                    "extract",
                    "--model",
                    "timm:test_vit",
                    "--data",
                    str(images),
                    "-o",
                    "r.json",
                    *more,
                ]
            )
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and more[0] in err, err


def test_the_command_offers_every_pooling_extract_and_rank_takes():
    from labelranker_fast._cli_extract import POOLINGS
    from labelranker_fast.torch._pooling import POOLINGS as ACCEPTED

    assert sorted(POOLINGS) == sorted(ACCEPTED)


def readme_extract_command() -> list[str]:
    """The README's ``labelranker extract`` example, as arguments."""
    import pathlib
    import shlex

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("labelranker extract --model")
    command = text[start : text.index("```", start)].replace("\\\n", " ")
    return shlex.split(command)[1:]


def test_the_readme_example_runs_as_documented(images, timm_checkpoint, tmp_path, capsys):
    """The README's command with only the model (a tiny one, with its input size) and the
    paths replaced: its flags exist and its outputs agree."""
    args = readme_extract_command()
    assert args[0] == "extract" and {"--model", "--data", "-o", "--class-map"} <= set(args)
    path, _ = timm_checkpoint
    given = {
        "--model": f"timm:test_vit@{path}",
        "--data": str(images),
        "-o": str(tmp_path / "ranking.json"),
        "--class-map": str(tmp_path / "class_map.txt"),
        "--label-maps": str(tmp_path / "label_maps.json"),
    }
    for i, arg in enumerate(args[:-1]):
        if arg in given:
            args[i + 1] = given[arg]
    status, _, err = call(capsys, *args, "--input-size", SIZE, "--num-workers", 0, "--no-progress")
    assert status == 0, err
    check_outputs_agree(*outputs(tmp_path))


def test_ctrl_c_during_the_pass_exits_130_without_a_traceback(timm_checkpoint, tmp_path):
    import signal
    import time

    # 800 one-image batches: the pass outlasts the 0.7 s below even on a fast machine
    # (with 80 it could end first, and the signal then found no handler).
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(400):
            Image.new("RGB", (8, 8), (i % 250, 0, 0)).save(tmp_path / name / f"{i}.png")
    path, _ = timm_checkpoint
    args = ["extract", "--model", f"timm:test_vit@{path}", "--data", tmp_path, "--input-size",
            SIZE, "--batch-size", 1, "--num-workers", 2, "-o", tmp_path / "r.json"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelranker_fast", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stderr.read(1)  # the progress bar: the pass has started
    time.sleep(0.7)  # a batch or two in, workers sending more
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = first + err
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and err.rstrip().endswith("labelranker: interrupted"), err
    assert not (tmp_path / "r.json").exists()


def test_folder_names_a_class_map_cannot_hold_are_refused_before_the_pass(
    timm_checkpoint, tmp_path, capsys, monkeypatch
):
    from labelranker_fast.torch import _extract

    for name in ("ok", " padded"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "data" / name / f"{i}.png")

    def no_pass(*args, **kwargs):
        raise AssertionError("the pass ran before the class map's names were checked")

    monkeypatch.setattr(_extract, "extract_and_rank", no_pass)
    monkeypatch.setattr("labelranker_fast.torch.extract_and_rank", no_pass)
    path, _ = timm_checkpoint
    status, _, err = call(
        capsys, "extract", "--model", f"timm:test_vit@{path}", "--data", tmp_path / "data",
        "--input-size", SIZE, "-o", tmp_path / "r.json", "--class-map", tmp_path / "map.txt",
    )  # fmt: skip
    assert status == 2 and "cannot be written one per line" in err, err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "map.txt").exists()
