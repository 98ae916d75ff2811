"""LabelRankerCallback against the real Lightning: the ranking it makes equals an independent
``extract_and_rank`` of the same backbone and data, ``training_step`` sees the ranked
positions, checkpoints carry the ranking (resume, validate, test, predict), inconsistent
checkpoints are refused, and under DDP every rank gets the ranking of the whole data set."""

from __future__ import annotations

import copy
import json
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("lightning")
torch = pytest.importorskip("torch")

import lightning.pytorch as pl  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from labelranker_fast import LabelRanking  # noqa: E402
from labelranker_fast.lightning import LabelRankerCallback  # noqa: E402
from labelranker_fast.torch import extract_and_rank  # noqa: E402

C, D = 4, 8
NAMES = ["ant", "bee", "cat", "dog"]


def dataset(seed=0, n=64, permute=None):
    """Blobs of C classes in D dimensions (n samples, every class present)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % C)[torch.randperm(n, generator=g)]
    centers = torch.randn(C, D, generator=g) * 3
    x = centers[y] + torch.randn(n, D, generator=g)
    if permute is not None:
        y = torch.as_tensor(permute)[y]
    return TensorDataset(x, y)


def loader(seed=0, n=64, permute=None, batch_size=8):
    return DataLoader(dataset(seed, n, permute), batch_size=batch_size)


def backbone(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(D, 12),
        torch.nn.BatchNorm1d(12),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(12, 6),
    )


class Net(pl.LightningModule):
    """A backbone and a head; records the targets each step computes."""

    def __init__(self, seed=0, data_seed=0, n=64):
        super().__init__()
        self.backbone = backbone(seed)
        self.head = torch.nn.Linear(6, C)
        self.data_seed, self.n = data_seed, n
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []  # (labels, remapped targets)

    def _targets(self, y):
        ranked = getattr(self, "label_ranking", None)
        t = y if ranked is None else ranked.remap(y)
        self.seen.append((y.numpy().copy(), t.numpy().copy()))
        return t

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.head(self.backbone(x)), self._targets(y))

    def validation_step(self, batch, batch_idx):
        self._targets(batch[1])

    def test_step(self, batch, batch_idx):
        self._targets(batch[1])

    def predict_step(self, batch, batch_idx):
        return self._targets(batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(dataset(self.data_seed, self.n), batch_size=8, shuffle=True)

    def val_dataloader(self):
        return loader(self.data_seed, self.n)

    test_dataloader = predict_dataloader = val_dataloader


def trainer(tmp_path, callbacks=(), max_steps=2, **kw):
    kw.setdefault("limit_val_batches", 0)  # fit: no validation loop
    return pl.Trainer(
        callbacks=list(callbacks),
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        **kw,
    )


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reference(model, data_loader, **kw):
    """An independent extract_and_rank on a copy of the backbone as it was before fit."""
    return extract_and_rank(
        copy.deepcopy(model), data_loader, num_classes=C, progress=False, device="cpu", **kw
    )


def check_targets(seen, ranking):
    assert seen, "no step ran"
    for labels, targets in seen:
        np.testing.assert_array_equal(targets, ranking.positions[labels])


# ---------------------------------------------------------------------------- ranking
def test_ranks_before_training_as_extract_and_rank_does(tmp_path):
    net = Net(seed=1)
    expected = reference(net.backbone, loader(), shrinkage="oas")
    cb = LabelRankerCallback(loader(), C, shrinkage="oas", progress=False)
    trainer(tmp_path, [cb]).fit(net)
    assert cb.ranking == expected
    assert not np.array_equal(expected.positions, np.arange(C))  # remap is not the identity
    check_targets(net.seen, expected)
    assert isinstance(net.label_ranking, torch.nn.Module)
    assert "label_ranking.positions" not in net.state_dict()  # non-persistent buffers


def test_a_callable_loader_is_called_at_fit_start(tmp_path):
    net = Net(seed=1)
    calls = []

    def make():
        calls.append(1)
        return loader()

    cb = LabelRankerCallback(make, C, progress=False)
    assert not calls
    trainer(tmp_path, [cb]).fit(net)
    assert calls == [1] and cb.ranking == reference(Net(seed=1).backbone, loader())


class Probe(pl.Callback):
    """After the ranking callback's on_fit_start: each submodule's mode and grad flags."""

    def on_fit_start(self, trainer, pl_module):
        self.modes = {n: m.training for n, m in pl_module.named_modules()}
        self.grads = {n: p.requires_grad for n, p in pl_module.named_parameters()}


def test_training_flags_and_grads_are_as_before_and_the_backbone_trains(tmp_path):
    net = Net(seed=2)
    net.backbone[1].eval()  # a frozen BatchNorm must stay frozen
    net.backbone[0].bias.requires_grad_(False)
    modes = {n: m.training for n, m in net.named_modules()}
    grads = {n: p.requires_grad for n, p in net.named_parameters()}
    assert not all(modes.values()) and any(modes.values())
    before = copy.deepcopy(net.backbone.state_dict())
    probe = Probe()
    trainer(tmp_path, [LabelRankerCallback(loader(), C, progress=False), probe]).fit(net)
    probe.modes.pop("label_ranking", None)  # added by the callback
    assert probe.modes == modes and probe.grads == grads
    after = net.backbone.state_dict()
    assert not torch.equal(after["4.weight"], before["4.weight"])  # the optimizer trained it
    assert torch.equal(after["0.bias"], before["0.bias"])  # frozen stays frozen


# -------------------------------------------------------------------------- checkpoints
@pytest.fixture
def saved(tmp_path):
    """A checkpoint of a fit with the callback, and that run's ranking."""
    net = Net(seed=3)
    cb = LabelRankerCallback(loader(), C, progress=False, class_names=NAMES)
    t = trainer(tmp_path, [cb])
    t.fit(net)
    path = tmp_path / "ranked.ckpt"
    t.save_checkpoint(path)
    assert cb.ranking.names == tuple(NAMES)
    return path, cb.ranking


def test_resume_restores_the_ranking_and_does_not_rank_again(tmp_path, saved):
    path, ranking = saved
    # What ranking anew would give now: the checkpoint's weights, relabelled data.
    perm = [2, 0, 3, 1]
    net = Net(seed=4)
    net.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
    anew = reference(net.backbone, loader(permute=perm))
    assert not np.array_equal(anew.positions, ranking.positions)
    cb = LabelRankerCallback(loader(permute=perm), C, progress=False)
    trainer(tmp_path, [cb], max_steps=4).fit(Net(seed=4), ckpt_path=path)
    assert cb.ranking == ranking
    assert LabelRanking.from_dict(json.loads(json.dumps(cb.state_dict()["ranking"]))) == ranking


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_evaluation_from_a_checkpoint_gets_its_ranking(tmp_path, saved, stage):
    path, ranking = saved
    net = Net(seed=5)
    cb = LabelRankerCallback(loader(permute=[1, 0, 3, 2]), C, progress=False)
    getattr(trainer(tmp_path, [cb], limit_val_batches=1.0), stage)(net, ckpt_path=path)
    assert cb.ranking == ranking
    check_targets(net.seen, ranking)


def test_a_checkpoint_of_other_classes_is_refused(tmp_path, saved):
    path, _ = saved
    cb = LabelRankerCallback(loader(), C + 1, progress=False)
    with pytest.raises(ValueError, match="4 classes but num_classes is 5"):
        trainer(tmp_path, [cb]).fit(Net(), ckpt_path=path)
    cb = LabelRankerCallback(loader(), C, progress=False, class_names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="but class_names is"):
        trainer(tmp_path, [cb]).validate(Net(), ckpt_path=path)
    renamed = loader()
    renamed.dataset.classes = ["bee", "ant", "cat", "dog"]  # another folder order, say
    cb = LabelRankerCallback(renamed, C, progress=False)
    with pytest.raises(ValueError, match="but loader.dataset.classes is"):
        trainer(tmp_path, [cb]).fit(Net(), ckpt_path=path)
    renamed.dataset.classes = NAMES  # the same names: accepted
    trainer(tmp_path, [LabelRankerCallback(renamed, C)], max_steps=4).fit(Net(), ckpt_path=path)


def test_a_checkpoint_with_another_ranking_than_the_given_one_is_refused(tmp_path, saved):
    path, ranking = saved
    other = LabelRanking(np.arange(C), ranking.order[::-1], -ranking.centroids, [1.0])
    cb = LabelRankerCallback(None, C, ranking=other)
    with pytest.raises(ValueError, match="differs from the one this callback holds"):
        trainer(tmp_path, [cb]).fit(Net(), ckpt_path=path)
    same = LabelRankerCallback(None, C, ranking=LabelRanking.from_dict(ranking.to_dict()))
    net = Net()
    trainer(tmp_path, [same]).test(net, ckpt_path=path)
    check_targets(net.seen, ranking)


@pytest.fixture
def unranked(tmp_path):
    """A checkpoint written without the callback (identity targets)."""
    t = trainer(tmp_path)
    t.fit(Net(seed=6))
    path = tmp_path / "plain.ckpt"
    t.save_checkpoint(path)
    return path


@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_a_checkpoint_without_a_ranking_is_refused(tmp_path, unranked, stage):
    cb = LabelRankerCallback(loader(), C, progress=False)
    with pytest.raises(ValueError, match="holds no ranking"):
        getattr(trainer(tmp_path, [cb], limit_val_batches=1.0), stage)(Net(), ckpt_path=unranked)
    assert cb.ranking is None


def test_a_checkpoint_without_a_ranking_takes_the_given_one(tmp_path, unranked):
    given = reference(Net(seed=7).backbone, loader())
    net = Net()
    cb = LabelRankerCallback(None, C, ranking=given)
    trainer(tmp_path, [cb], max_steps=4).fit(net, ckpt_path=unranked)
    assert cb.ranking == given
    check_targets(net.seen, given)


def test_evaluation_without_any_ranking_is_refused(tmp_path):
    cb = LabelRankerCallback(loader(), C, progress=False)
    with pytest.raises(ValueError, match="has no ranking"):
        trainer(tmp_path, [cb], limit_val_batches=1.0).validate(Net())


def test_a_second_fit_keeps_the_first_ranking(tmp_path):
    net = Net(seed=8)
    cb = LabelRankerCallback(loader(), C, progress=False)
    trainer(tmp_path, [cb]).fit(net)
    first = cb.ranking
    trainer(tmp_path, [cb], max_steps=4).fit(net)  # the backbone has trained since
    assert cb.ranking is first
    check_targets(net.seen, first)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"distributed": True}, TypeError, "sets 'distributed' itself"),
        ({"return_accumulator": True}, TypeError, "sets 'return_accumulator'"),
        ({"poolng": "avg"}, TypeError, "no argument 'poolng'"),
        ({"backbone": 3}, TypeError, "backbone must be"),
        ({"ranking": "r"}, TypeError, "ranking must be a LabelRanking"),
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"loader": None}, ValueError, "give a loader"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"loader": loader(), "num_classes": C, **kwargs}
    with pytest.raises(error, match=match):
        LabelRankerCallback(**args)


def test_a_given_ranking_of_other_classes_is_refused():
    ranking = LabelRanking(np.arange(3), np.arange(3), np.arange(3.0), [1.0])
    with pytest.raises(ValueError, match="3 classes but num_classes is 4"):
        LabelRankerCallback(None, C, ranking=ranking)
    ranking = LabelRanking(np.arange(1, 5), np.arange(4), np.arange(4.0), [1.0])
    with pytest.raises(ValueError, match="class indices 0..3"):
        LabelRankerCallback(None, C, ranking=ranking)


def test_the_core_does_not_import_lightning():
    code = (
        "import sys, labelranker_fast, labelranker_fast.torch\n"
        "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'lightning':\n"
        "            raise ImportError('hidden')\n"
        "sys.meta_path.insert(0, Hide())\n"
        "try:\n"
        "    import labelranker_fast.lightning\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "labelranker_fast[lightning]" in out.stdout


def test_the_readme_test_command_installs_what_ci_installs():
    root = pathlib.Path(__file__).resolve().parents[1]
    command = next(
        line for line in (root / "README.md").read_text().splitlines() if "pytest tests" in line
    )
    ci = (root / ".ci" / "run").read_text()

    def extras(text):
        return [
            set(m.split(",")) for m in re.findall(r'pip install (?:--quiet )?"\.\[([^]]+)\]"', text)
        ]

    assert extras(command) == extras(ci)  # one install each, the same extras
    assert {"test", "lightning", "hf", "dask", "timm"} <= extras(ci)[0]


# -------------------------------------------------------------------------------- DDP
class Logged(torch.utils.data.Dataset):
    """A data set that notes the indices read from it (in the process that reads them)."""

    def __init__(self, data):
        self.data, self.read = data, []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.read.append(int(i))
        return self.data[i]


class Record(pl.Callback):
    """Writes each rank's ranking, targets and samples ranked on (the parent cannot see
    the ranks' callbacks)."""

    def __init__(self, ranker, folder):
        self.ranker, self.folder = ranker, folder

    def on_train_end(self, trainer, pl_module):
        out = {
            "ranking": self.ranker.ranking.to_dict(),
            "seen": [[a.tolist(), b.tolist()] for a, b in pl_module.seen],
            "read": self.ranker.loader.dataset.read,
        }
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(out))


def test_ddp_ranks_agree_with_the_whole_data_set(tmp_path):
    n = 63  # odd: the shards are 32 and 31 samples, every sample ranked once, no padding
    net = Net(seed=9, n=n)
    expected = reference(net.backbone, loader(n=n))
    data = DataLoader(Logged(dataset(n=n)), batch_size=8)
    cb = LabelRankerCallback(data, C, progress=False, n_threads=1)
    t = pl.Trainer(
        callbacks=[cb, Record(cb, tmp_path)],
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        default_root_dir=tmp_path,
    )
    t.fit(net)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    read = [r["read"] for r in ranks]
    assert sorted(read[0] + read[1]) == list(range(n))  # a partition of the data set
    got = [LabelRanking.from_dict(r["ranking"]) for r in ranks]
    assert got[0] == got[1]  # bit-identical on every rank
    np.testing.assert_array_equal(got[0].order, expected.order)
    # float32 features are multiplied in float32 within a chunk, and the shards' chunks hold
    # other samples than the single process's: agreement to float32 rounding.
    np.testing.assert_allclose(got[0].centroids, expected.centroids, rtol=1e-5)
    for r in ranks:
        check_targets([(np.array(a), np.array(b)) for a, b in r["seen"]], expected)


def test_readme_lightning_example_runs_as_written(tmp_path):
    """The README's Lightning block, run as written: only the Trainer's epochs and logging
    are shortened, and the names it leaves to the reader (backbone, loaders) are given."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("### Lightning") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "max_epochs=100" in code
    code = code.replace(
        "max_epochs=100",
        "max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, "
        "enable_model_summary=False, accelerator='cpu', default_root_dir=str(tmp_path)",
    )

    class Backbone(torch.nn.Module):
        num_features = 6

        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 6)

        def forward(self, x):
            return self.net(x)

    class Data(torch.utils.data.TensorDataset):
        classes = ["ant", "bee", "cat"]

    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 4, generator=g) + torch.nn.functional.one_hot(y, 4).float() * 3
    train = Data(x, y)
    namespace = {
        "torch": torch,
        "backbone": Backbone(),
        "train": train,
        "loader": torch.utils.data.DataLoader(train, batch_size=20),
        "train_loader": torch.utils.data.DataLoader(train, batch_size=20, shuffle=True),
        "tmp_path": tmp_path,
    }
    exec(compile(code, "README.md (Lightning)", "exec"), namespace)
    ranker = namespace["ranker"]
    assert ranker.ranking.names == ("ant", "bee", "cat")
    assert set(ranker.ranking.ranked_names) == {"ant", "bee", "cat"}
    assert namespace["trainer"].global_step == 3  # it trained: 60 samples, batches of 20
