"""bench/gpu_check.py in its --smoke mode (so that the GPU script cannot rot between the
sessions that have a GPU), and what its sync check proves on CUDA, checked on the CPU: a
fine-tuning step reads nothing from the device on the host."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import labelranker_fast

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from labelranker_fast.torch import finetune  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # the DataLoader's worker pickles its dataset's class
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_runs_every_part_and_writes_its_json(tmp_path):
    gpu_check = load_gpu_check()
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--smoke", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["environment"]["mode"] == "smoke" and res["environment"]["device"] == "cpu"
    parts = res["parts"]
    assert set(parts) == {"extraction", "finetuning", "correctness", "refilled_buffer"}
    for entry in parts.values():
        assert entry["wall_s"] > 0

    ext = parts["extraction"]
    cfg = res["config"]
    assert ext["images"] == cfg["extract_batches"] * cfg["batch"]
    assert all(v > 0 and math.isfinite(v) for v in ext["images_per_s"].values())
    assert math.isfinite(ext["overhead"]) and ext["bound_by"] in ("loader", "model")
    assert set(ext["seconds"]) == {"plain loop", "extract_and_rank", "loader alone", "model alone"}

    tune = parts["finetuning"]
    assert tune["steps"] == list(cfg["steps"])
    assert all(math.isfinite(v) for v in tune["steps_per_s"].values())
    assert tune["sync_check"] == {"ran": False, "why": "set_sync_debug_mode needs CUDA"}

    ok = parts["correctness"]
    assert ok["orders_equal"] is True
    assert ok["order_extract_and_rank"] == ok["order_cpu_engine"]
    assert sorted(ok["order_cpu_engine"]) == list(range(cfg["classes"]))
    diff = ok["relative_difference"]
    # The same features in one block each way: the same engine gives the same bits.
    assert diff["class_means, extract_and_rank vs cpu engine"] == 0.0
    assert diff["within_scatter, extract_and_rank vs cpu engine"] == 0.0
    assert diff["centroids, extract_and_rank vs cpu engine"] == 0.0
    refilled = parts["refilled_buffer"]
    # On the CPU no copy is asynchronous: with the wait or without, every batch is itself.
    assert refilled["accuracy"] == refilled["accuracy_without_wait"] == 1.0
    assert refilled["asynchronous_copies"] is False
    # Against float64 two-pass statistics: the engine's float32 accuracy on float32 rows.
    assert diff["class_means, extract_and_rank vs float64 two-pass"] < 1e-6
    assert diff["within_scatter, extract_and_rank vs float64 two-pass"] < 1e-5


def test_the_synthetic_images_carry_their_class():
    """The correctness part ranks classes that exist: images of one class are nearer one
    another than images of two classes, and no two images of a batch are the same."""
    gpu_check = load_gpu_check()
    data = gpu_check.SyntheticImages(64, classes=4, size=16)
    images = torch.stack([data[i][0] for i in range(64)]).float().flatten(1)
    labels = np.array([data[i][1] for i in range(64)])
    assert labels.tolist() == [i % 4 for i in range(64)]
    assert images.unique(dim=0).shape[0] == 64
    means = torch.stack([images[labels == c].mean(0) for c in range(4)])
    nearest = torch.cdist(images, means).argmin(1).numpy()
    assert (nearest == labels).mean() > 0.9


HOST_READS = {
    *("item", "tolist", "numpy", "cpu", "nonzero", "equal", "__array__"),
    *("__bool__", "__float__", "__int__", "__index__"),
}
PACKAGE = os.path.dirname(labelranker_fast.__file__)  # the package's own files, not torch's


class HostReads(TorchFunctionMode):
    """Counts calls that bring a tensor's value to the host (on CUDA, a synchronisation)
    made from the files whose path starts with ``where``. It sees calls made in Python;
    a read inside a torch operator (boolean-mask indexing) is not seen."""

    def __init__(self, where: str):
        super().__init__()
        self.where = where
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS and sys._getframe(1).f_code.co_filename.startswith(self.where):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def tiny_loader(steps: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps * 8, 12, generator=g)
    y = torch.arange(steps * 8) % 3
    return DataLoader(TensorDataset(x, y), batch_size=8)


def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.GELU())


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_finetune_step_reads_nothing_on_the_host(epochs):
    """finetune reads the loss and the hits once per epoch and never inside a step: the
    count of host reads from labelranker_fast is the same for 2 and for 7 steps an epoch."""
    counts = []
    for steps in (2, 7):
        with HostReads(PACKAGE) as mode:
            finetune(
                backbone(),
                tiny_loader(steps),
                num_classes=3,
                epochs=epochs,
                warmup_epochs=0,
                device="cpu",
                progress=False,
            )
        counts.append(len(mode.calls))
    assert counts[0] == counts[1] == 2 * epochs, counts


def test_the_host_read_counter_sees_a_read_in_every_step():
    """The counter the test above relies on: a loop that reads its loss every step is
    counted once per step (this test file's own reads)."""
    model = backbone()
    with HostReads(__file__) as mode:
        for x, _ in tiny_loader(5):
            loss = model(x).sum().detach()
            loss.item()
            float(loss)
    assert mode.calls == ["item", "__float__"] * 5


def test_device_batches_gives_each_batch_as_the_loader_does():
    """finetune and evaluate take their batches through device_batches: tuples and dicts,
    tensor and list targets, the values unchanged and in order."""
    from labelranker_fast.torch._batches import device_batches

    xs = [torch.full((3, 2), float(b)) for b in range(4)]
    batches = [(xs[0], torch.tensor([0, 1, 2])), {"pixel_values": xs[1], "labels": [2, 1, 0]}]
    batches += [(xs[2], np.array([1, 1, 0]), "extra"), {"image": xs[3], "target": (0, 0, 1)}]
    got = list(device_batches(batches, torch.device("cpu")))
    assert [x.tolist() for x, _ in got] == [x.tolist() for x in xs]
    assert [y.tolist() for _, y in got] == [[0, 1, 2], [2, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_fresh_batches_names_the_loaders_that_cannot_hand_back_a_buffer_twice():
    """Workers, or default_collate without them, make new tensors; a custom collate_fn,
    batch_size=None and plain iterables may return one buffer every time."""
    from torch.utils.data import default_collate

    from labelranker_fast.torch._batches import fresh_batches

    data = TensorDataset(torch.zeros(8, 2), torch.zeros(8))
    assert fresh_batches(DataLoader(data, batch_size=4))
    assert fresh_batches(DataLoader(data, batch_size=4, num_workers=1))
    assert fresh_batches(DataLoader(data, batch_size=4, collate_fn=default_collate))
    assert not fresh_batches(DataLoader(data, batch_size=4, collate_fn=lambda b: b))
    assert not fresh_batches(DataLoader(data, batch_size=None))
    assert not fresh_batches([(torch.zeros(4, 2), torch.zeros(4))])
    assert not fresh_batches(iter(DataLoader(data, batch_size=4)))


@pytest.mark.parametrize(
    "targets, what",
    [(torch.tensor([0.0, 1.0]), "torch.float32"), (np.array([True, False]), "torch.bool")],
)
def test_float_or_bool_targets_are_refused_by_name(targets, what):
    """A bool target would index the position table as a mask, a float one fail deep in
    torch: both are a TypeError that says what the targets must be."""
    batches = [(torch.zeros(2, 12), targets)]
    with pytest.raises(TypeError, match=f"targets must be integer class indices.*{what}"):
        finetune(backbone(), batches, num_classes=2, epochs=1, device="cpu", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the race needs copies to CUDA")
def test_evaluate_scores_each_batch_of_a_refilled_pinned_buffer_on_its_own_pixels():
    """Without the wait in device_batches the host refills the pinned buffer while the
    copy of the batch before is still queued behind the model's work: the loop without
    the wait must lose batches (else this test shows nothing), evaluate none."""
    gpu_check = load_gpu_check()
    out: dict = {}
    cfg = {**gpu_check.SMOKE, "extract_batches": 24}
    gpu_check.check_refilled_buffer(torch.device("cuda"), cfg, out)
    assert out["asynchronous_copies"] and out["accuracy"] == 1.0
    assert out["accuracy_without_wait"] < 1.0


def test_a_failing_part_of_the_full_run_is_recorded_and_the_next_one_runs():
    """The full run has one chance on the GPU: a part's error goes into the JSON with its
    traceback instead of ending the run; the smoke run raises it."""
    gpu_check = load_gpu_check()
    out: dict = {}
    with gpu_check.part("broken", torch.device("cpu"), out, keep_going=True):
        raise ValueError("planted")
    with gpu_check.part("next", torch.device("cpu"), out, keep_going=True) as entry:
        entry["ran"] = True
    assert out["parts"]["broken"]["error"] == "ValueError: planted"
    assert "planted" in out["parts"]["broken"]["traceback"]
    assert out["parts"]["broken"]["wall_s"] >= 0 and out["parts"]["next"]["ran"]
    with pytest.raises(ValueError, match="planted"):
        with gpu_check.part("smoke", torch.device("cpu"), out, keep_going=False):
            raise ValueError("planted")


def test_float16_training_is_refused_before_anything_runs(tmp_path):
    """float16 without loss scaling loses small gradients with no error: finetune says so
    and names amp; no checkpoint is written and the model is untouched."""
    model = backbone()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="amp=torch.float16 needs loss scaling"):
        finetune(
            model,
            tiny_loader(2),
            num_classes=3,
            epochs=1,
            device="cpu",
            amp=torch.float16,
            progress=False,
            checkpoint_path=tmp_path / "ckpt.pt",
        )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not (tmp_path / "ckpt.pt").exists()


@pytest.mark.parametrize("amp", ["bf16", torch.float32, 1])
def test_an_amp_that_is_not_a_half_precision_dtype_is_refused_by_name(amp):
    from labelranker_fast.torch import extract_and_rank

    with pytest.raises(TypeError, match="amp must be None, a bool, torch.bfloat16"):
        extract_and_rank(backbone(), tiny_loader(1), num_classes=3, amp=amp, progress=False)


class CountingData(torch.utils.data.Dataset):
    """Counts the samples read (num_workers=0: all in this process)."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x, self.y, self.reads = torch.randn(n, 12, generator=g), torch.arange(n) % 3, 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i], self.y[i]


def test_finetune_learns_the_feature_width_from_one_sample_not_a_batch():
    """Before its first epoch finetune runs the backbone once to learn the feature width:
    on one sample read from the data set, not on a batch drawn from the loader (which
    started its workers once more, or drained a persistent pool's prefetch)."""
    data = CountingData(32)
    finetune(
        backbone(),
        DataLoader(data, batch_size=8),
        num_classes=3,
        epochs=2,
        device="cpu",
        progress=False,
    )
    assert data.reads == 2 * 32 + 1


@pytest.mark.parametrize(
    "wrap",
    [lambda x: x, lambda x: (x,), lambda x: [x], lambda x: {"pixel_values": x}],
    ids=["tensor", "1-tuple", "1-list", "dict without labels"],
)
def test_predict_takes_batches_without_targets(wrap):
    """predict ignores targets, so it takes batches that have none (TensorDataset(x) gives
    1-tuples): the same predictions as the model's own argmax."""
    from labelranker_fast.torch import predict

    model = torch.nn.Sequential(backbone(), torch.nn.Linear(16, 3))
    x = torch.randn(10, 12, generator=torch.Generator().manual_seed(1))
    batches = [wrap(x[:6]), wrap(x[6:])]
    got = predict(model, batches, device="cpu")
    with torch.no_grad():
        want = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(got, want)


def test_predict_refuses_a_batch_without_inputs_by_name():
    from labelranker_fast.torch import predict

    with pytest.raises(TypeError, match="'pixel_values' key, got dict"):
        predict(backbone(), [{"labels": torch.zeros(2)}], device="cpu")


def test_the_lightning_callback_refuses_a_bad_amp_when_built():
    pytest.importorskip("lightning")
    from labelranker_fast.lightning import LabelRankerCallback

    with pytest.raises(TypeError, match="amp must be None, a bool, torch.bfloat16"):
        LabelRankerCallback(tiny_loader(1), 3, amp="bf16")
