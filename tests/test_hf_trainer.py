"""The README's Hugging Face ``Trainer`` example, run as written on a tiny ViT and a tiny
VideoMAE (random weights from configs, nothing downloaded).

The snippet is read out of README.md (the first python block of the "Hugging Face
transformers" subsection) and executed verbatim; only ``TrainingArguments`` is
shortened for the test (3 steps, CPU, no reports, no checkpoints, in tmp_path). Results are
checked against references computed here: positions from the ranking's ``order`` by hand,
logits from the model's own forward pass.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from labelranker_fast.torch import predict  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = ["heron", "bee", "ant", "cat"]  # not in sorted order: names must follow indices
N_TRAIN, N_VAL = 48, 20


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Hugging Face transformers", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's Hugging Face subsection"
    return match.group(1)


class Clips(torch.utils.data.Dataset):
    """(pixel_values, class index) pairs with ``classes``, as an ImageFolder gives; each
    sample is distinct, so a batch's rows can be traced back to their indices."""

    def __init__(self, shape, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % len(NAMES)
        self.x = torch.randn((n, *shape), generator=g)
        ramp = torch.linspace(-1, 1, shape[-1])
        strength = torch.tensor([2.0, 0.0, 3.0, 1.0])[self.y]  # a ranking far from 0..3
        self.x += 0.7 * strength.view(-1, *([1] * len(shape))) * ramp
        self.classes = list(NAMES)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def tiny(kind):
    from transformers import (
        VideoMAEConfig,
        VideoMAEForVideoClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    common = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "image_size": 16,
        "num_labels": len(NAMES),
    }
    torch.manual_seed(0)
    if kind == "vit":
        return ViTForImageClassification(ViTConfig(patch_size=4, **common)), (3, 16, 16)
    config = VideoMAEConfig(patch_size=8, num_frames=2, tubelet_size=2, **common)
    return VideoMAEForVideoClassification(config), (2, 3, 16, 16)  # (T, C, H, W)


def run_readme_snippet(ns, tmp_path, monkeypatch):
    """Executes the README's snippet in ``ns``, its TrainingArguments cut to 3 CPU steps in
    tmp_path. The patch goes on the module that ``from transformers import`` reads at that
    moment: importing a modeling class can replace ``sys.modules["transformers"]``."""
    module = sys.modules["transformers"]
    real = module.TrainingArguments

    def shortened(output_dir, **kwargs):
        kwargs.update(
            max_steps=3,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            per_device_train_batch_size=8,
        )
        return real(str(tmp_path / output_dir), **kwargs)

    monkeypatch.setattr(module, "TrainingArguments", shortened)
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_snippet(), "README.md", "exec"), ns)
    assert ns["TrainingArguments"] is shortened


@pytest.mark.parametrize("kind", ["vit", "videomae"])
def test_readme_trainer_example(kind, tmp_path, monkeypatch):
    model, shape = tiny(kind)
    train, val = Clips(shape, N_TRAIN, seed=1), Clips(shape, N_VAL, seed=2)
    ns = {"model": model, "train": train, "val": val}
    run_readme_snippet(ns, tmp_path, monkeypatch)
    ranking, trainer = ns["ranking"], ns["trainer"]
    order = np.asarray(ranking.order)
    positions = np.empty(len(order), dtype=np.int64)
    positions[order] = np.arange(len(order))  # position of class c, by hand
    assert trainer.state.global_step == 3
    assert not np.array_equal(order, np.arange(4)), "a test ranking must move classes"
    assert ranking.names == tuple(NAMES)  # taken from train.classes

    # The labels the model trains on are the ranked positions of each sample's class.
    batch = next(iter(trainer.get_train_dataloader()))
    rows = batch["pixel_values"].flatten(1)
    index = [int(torch.nonzero((train.x.flatten(1) == r).all(1))[0, 0]) for r in rows]
    np.testing.assert_array_equal(batch["labels"].numpy(), positions[train.y[index].numpy()])

    # The saved config names position p with the class at position p, after a round trip.
    config = transformers.AutoConfig.from_pretrained(tmp_path / "out" / "final")
    assert config.id2label == {p: NAMES[order[p]] for p in range(len(NAMES))}
    assert config.label2id == {NAMES[order[p]]: p for p in range(len(NAMES))}

    # Predictions: the Trainer's logits are the model's own; mapped back by hand they are
    # the snippet's classes, and unmap_logits permutes columns (column k = positions[k]).
    model.eval()
    with torch.no_grad():
        ref = model(pixel_values=val.x).logits.double().numpy()
    logits = ns["logits"]
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ns["pred_classes"], order[ref.argmax(-1)])
    np.testing.assert_array_equal(ns["scores"], logits[:, positions])
    np.testing.assert_array_equal(ns["scores"].argmax(-1), ns["pred_classes"])
    # and the library's predict on the trained Hugging Face model agrees
    loader = torch.utils.data.DataLoader(val, batch_size=8)
    np.testing.assert_array_equal(
        predict(model, loader, ranking=ranking, device="cpu"), ns["pred_classes"]
    )


def test_trainer_builds_its_train_dataloader_before_on_train_begin(tmp_path):
    """The README's reason to rank before the Trainer: a callback's on_train_begin sees a
    train dataloader that already exists."""
    events = []

    class Recorder(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            events.append("on_train_begin")

    class Recording(transformers.Trainer):
        def get_train_dataloader(self):
            events.append("get_train_dataloader")
            return super().get_train_dataloader()

    model, shape = tiny("vit")
    train = Clips(shape, 16, seed=3)

    def collate(batch):
        pixels, labels = zip(*batch)
        return {"pixel_values": torch.stack(pixels), "labels": torch.tensor(labels)}

    args = transformers.TrainingArguments(
        str(tmp_path),
        max_steps=2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Recording(
        model=model, args=args, train_dataset=train, data_collator=collate, callbacks=[Recorder()]
    )
    trainer.train()
    assert events.index("get_train_dataloader") < events.index("on_train_begin")
