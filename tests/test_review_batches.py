"""Review of the PyTorch layer's batches: the feature-width probe of finetune, the
targets of finetune/evaluate, and amp=None's choice on CUDA GPUs before Ampere."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from labelranker_fast.torch import Classifier, evaluate, finetune  # noqa: E402
from labelranker_fast.torch._device import autocast_context  # noqa: E402

G = torch.Generator().manual_seed(0)
X = torch.randn(32, 3, 6, 6, generator=G)
Y = torch.arange(32) % 4


def conv():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.ReLU())


def tune(loader, model=None, **kw):
    kw = {"num_classes": 4, "epochs": 1, "warmup_epochs": 0, "device": "cpu", **kw}
    return finetune(conv() if model is None else model, loader, progress=False, **kw)


# --- the feature-width probe: what worked with a batch drawn from the loader still works


class Keyed(Dataset):
    """Indexed by string keys, which its sampler gives; ds[0] is a TypeError."""

    def __len__(self):
        return 32

    def __getitem__(self, key):
        i = int(key[1:])
        return X[i], Y[i]


def even_only(samples):
    """A collate_fn that needs an even batch, as timm's mixup collate does."""
    assert len(samples) % 2 == 0, "Batch size should be even when using this"
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


class ListIndexed(Dataset):
    """Batches made in the data set: indexed by the lists a BatchSampler gives, with
    batch_size=None; ds[0] is one sample without its batch dimension."""

    def __len__(self):
        return 32

    def __getitem__(self, idx):
        return X[idx], Y[idx]


class Missing0(Dataset):
    """Sample 0 cannot be read, and the sampler never asks for it."""

    def __len__(self):
        return 32

    def __getitem__(self, i):
        if i == 0:
            raise FileNotFoundError("img_0000.jpg")
        return X[i], Y[i]


def loaders():
    from torch.utils.data import BatchSampler, SequentialSampler

    keys = [f"k{i}" for i in range(32)]
    return {
        "keys": DataLoader(Keyed(), batch_size=8, sampler=keys),
        "even collate": DataLoader(TensorDataset(X, Y), batch_size=8, collate_fn=even_only),
        "list-indexed": DataLoader(
            ListIndexed(),
            batch_size=None,
            sampler=BatchSampler(SequentialSampler(range(32)), 8, drop_last=False),
        ),
        "sample 0 unread": DataLoader(Missing0(), batch_size=8, sampler=range(1, 32)),
    }


@pytest.mark.parametrize("name", ["keys", "even collate", "list-indexed", "sample 0 unread"])
def test_the_width_probe_falls_back_to_the_loaders_own_batch(name):
    """Each of these loaders trains (its own batches are fine) but its data set's item
    0 collated alone cannot be read or run: finetune must learn the width (5 conv
    channels) from the loader's batch instead of failing."""
    result = tune(loaders()[name])
    assert result.model.head.in_features == 5
    assert np.isfinite(result.history[0]["train_loss"])


class LazyHandle(Dataset):
    """A data set that opens a per-process handle on its first read (as an HDF5 or LMDB
    one does); a handle opened before the workers fork must not be used in them."""

    def __init__(self):
        self.pid = None

    def __len__(self):
        return 32

    def __getitem__(self, i):
        if self.pid is None:
            self.pid = os.getpid()
        if self.pid != os.getpid():
            raise RuntimeError("a handle opened in another process was inherited")
        return X[i], Y[i]


def test_with_workers_the_main_process_reads_no_sample():
    """With workers the probe must not read the data set in the main process: here
    that read opened the handle that the forked workers then inherited."""
    loader = DataLoader(LazyHandle(), batch_size=8, num_workers=1, multiprocessing_context="fork")
    result = tune(loader)
    assert result.model.head.in_features == 5
    assert loader.dataset.pid is None  # the main process never read it


class NeedsWorkerInit(Dataset):
    data = None  # set by worker_init_fn

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return self.data[0][i], self.data[1][i]


def give_data(_):
    torch.utils.data.get_worker_info().dataset.data = (X, Y)


def test_a_data_set_set_up_by_worker_init_fn_trains():
    loader = DataLoader(NeedsWorkerInit(), batch_size=8, num_workers=1, worker_init_fn=give_data)
    assert tune(loader).model.head.in_features == 5


class Jittered(Dataset):
    """Random augmentation from torch's, numpy's and Python's global generators."""

    def __len__(self):
        return 32

    def __getitem__(self, i):
        noise = torch.rand(X[i].shape) + float(np.random.rand()) + random.random()
        return X[i] + 0.1 * noise, Y[i]


def test_the_probe_leaves_the_random_states_as_it_found_them():
    """finetune(backbone) builds Classifier(backbone, width, ...) after its probe; given
    the same Classifier it runs no probe. With the same seed both runs must be the same
    run: the probe's read of a randomly augmented sample must not shift the shuffling
    or the augmentations that follow."""
    runs = []
    for given in (False, True):
        torch.manual_seed(5)
        np.random.seed(5)
        random.seed(5)
        model = Classifier(conv(), 5, 4) if given else conv()
        loader = DataLoader(Jittered(), batch_size=8, shuffle=True)
        runs.append(tune(loader, model=model, epochs=2))
    assert runs[0].model.head.in_features == 5
    for a, b in zip(runs[0].history, runs[1].history):
        assert a["train_loss"] == b["train_loss"]
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)


# --- targets


def linear():
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(108, 4))


def batches_with(targets):
    return [(X[:4], targets)]


@pytest.mark.parametrize("bad", [-1, -4])
def test_negative_targets_are_refused_not_wrapped_to_another_class(bad):
    """table[-1] is the last class's position: a negative target (an 'ignore' label, say)
    was scored as class 3 with no error."""
    targets = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=r"targets must be class indices 0\.\.3"):
        evaluate(linear(), batches_with(targets), num_classes=4, device="cpu")
    with pytest.raises(ValueError, match=r"targets must be class indices 0\.\.3"):
        tune(batches_with(targets), model=Classifier(conv(), 5, 4))


def test_a_target_past_the_last_class_is_a_value_error():
    with pytest.raises(ValueError, match=r"targets must be class indices 0\.\.3, got \[4\]"):
        evaluate(linear(), batches_with(torch.tensor([0, 1, 4, 2])), num_classes=4, device="cpu")


@pytest.mark.parametrize(
    "targets",
    [
        torch.tensor([[0], [1], [2], [3]]),
        torch.nn.functional.one_hot(torch.arange(4), 4),
        torch.tensor(1),
    ],
    ids=["(n, 1)", "one-hot", "0-d"],
)
def test_targets_of_another_shape_are_a_value_error_naming_them(targets):
    with pytest.raises(ValueError, match=r"one class index per sample, shape \(4,\)"):
        evaluate(linear(), batches_with(targets), num_classes=4, device="cpu")
    with pytest.raises(ValueError, match=r"one class index per sample"):
        tune(batches_with(targets), model=Classifier(conv(), 5, 4))


def test_string_targets_are_a_type_error_naming_them():
    with pytest.raises(TypeError, match="targets must be integer class indices"):
        evaluate(linear(), batches_with(["a", "b", "c", "d"]), num_classes=4, device="cpu")


@pytest.mark.parametrize(
    "make",
    [
        lambda y: y.numpy().astype(np.uint8),
        lambda y: y.to(torch.uint8),
        lambda y: y.to(torch.int8),
        lambda y: [np.int32(v) for v in y.numpy()],
        lambda y: list(y),
    ],
    ids=["numpy uint8", "torch uint8", "torch int8", "numpy int32 list", "0-d tensor list"],
)
def test_small_integer_targets_are_class_indices_not_masks(make):
    """uint8 index tensors are masks to torch; these must score as the int64 targets do
    (reference: F.cross_entropy on the logits in float64)."""
    model = linear()
    y = torch.tensor([3, 0, 2, 1])
    got = evaluate(model, batches_with(make(y)), num_classes=4, device="cpu")
    with torch.no_grad():
        logits = model(X[:4]).double()
    ref = torch.nn.functional.cross_entropy(logits, y).item()
    assert got["loss"] == pytest.approx(ref, rel=1e-5)
    assert got["accuracy"] == float((logits.argmax(1) == y).double().mean())


def test_a_batch_feature_mapping_is_a_batch():
    """Hugging Face processors return a BatchFeature, a UserDict and not a dict."""
    transformers = pytest.importorskip("transformers")
    batch = transformers.BatchFeature({"pixel_values": X[:4], "labels": torch.tensor([0, 1, 2, 3])})
    got = evaluate(linear(), [batch], num_classes=4, device="cpu")
    want = evaluate(linear(), [(X[:4], torch.tensor([0, 1, 2, 3]))], num_classes=4, device="cpu")
    assert got == want


# --- amp=None on CUDA


def fake_cuda(monkeypatch, major):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 5))

    class Props:
        pass

    props = Props()
    props.major = major
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)


def test_amp_none_is_full_precision_on_a_gpu_that_only_emulates_bfloat16(monkeypatch):
    """A T4 (7.5): torch.cuda.is_bf16_supported() says yes (emulation); the README
    promises bfloat16 only on devices that have it, full precision elsewhere."""
    import contextlib

    fake_cuda(monkeypatch, 7)
    assert isinstance(autocast_context(torch.device("cuda"), None), contextlib.nullcontext)


def test_amp_none_is_bfloat16_on_ampere(monkeypatch):
    fake_cuda(monkeypatch, 8)
    ctx = autocast_context(torch.device("cuda"), None)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
