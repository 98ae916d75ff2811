"""Class names on a ranking, Hugging Face label maps, ``unmap_logits`` and ``as_module``.

Expected values are built independently of the code under test: from ``order`` by hand
(position p holds class ``order[p]``) and from numpy indexing.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import labelranker_fast as lrf

NAMES = ["zebra", "ant", "cat\x00", "dog", "émeu"]  # a trailing NUL and non-ASCII kept
ORDER = [3, 0, 4, 1, 2]


def ranking(classes=None, names=None, order=ORDER):
    n = len(order)
    classes = np.arange(n) if classes is None else classes
    cents = np.empty(n)
    cents[order] = np.arange(n, dtype=float)  # centroids increase along the order
    return lrf.LabelRanking(classes, order, cents, [1.0], names=names)


def test_names_travel_with_the_ranking_through_json_pickle_and_equality(tmp_path):
    r = ranking(names=NAMES)
    assert r.names == tuple(NAMES)
    assert r.ranked_names == tuple(NAMES[c] for c in ORDER)
    path = tmp_path / "r.json"
    r.to_json(path)
    assert json.loads(path.read_text())["names"] == NAMES
    back = lrf.LabelRanking.from_json(path)
    assert back == r and back.names == tuple(NAMES)
    assert pickle.loads(pickle.dumps(r)) == r
    assert r != ranking() and r.with_names(None) == ranking()
    assert ranking().with_names(NAMES) == r
    assert "dog, zebra, émeu" in repr(r)  # the names, in position order


@pytest.mark.parametrize(
    "names, error, match",
    [
        ("abcde", TypeError, "not one string"),
        (["a", "b", "c", "d", 5], TypeError, "must be strings, got int"),
        (["a", "b", "c", "d"], ValueError, "4 entries but the ranking has 5"),
        (["a", "b", "c", "d", "a"], ValueError, "unique.*'a'"),
        (["a", "b", "", "d", "e"], ValueError, "empty"),
        (7, TypeError, "sequence of str"),
    ],
)
def test_bad_names_are_refused_naming_the_argument(names, error, match):
    with pytest.raises(error, match=match):
        ranking(names=names)
    with pytest.raises(error, match=match):
        ranking().with_names(names)


def test_a_file_with_bad_names_is_a_malformed_ranking(tmp_path):
    data = ranking(names=NAMES).to_dict()
    for names in (NAMES[:4], [1, 2, 3, 4, 5], "abcde"):
        with pytest.raises(ValueError, match="malformed ranking"):
            lrf.LabelRanking.from_dict(dict(data, names=names))
    assert lrf.LabelRanking.from_dict(dict(data, names=None)) == ranking()


def test_class_map_lines_are_the_names_in_position_order(tmp_path):
    r = ranking(names=["e", "a", "c", "d", "b"])
    r.to_class_map(tmp_path / "map.txt")
    assert (tmp_path / "map.txt").read_text().splitlines() == ["d", "e", "b", "a", "c"]
    r.to_class_map(tmp_path / "same.txt", names=["e", "a", "c", "d", "b"])  # agreeing: fine
    assert (tmp_path / "same.txt").read_text() == (tmp_path / "map.txt").read_text()
    with pytest.raises(ValueError, match="differs from the ranking's own names"):
        r.to_class_map(tmp_path / "other.txt", names=["a", "b", "c", "d", "e"])
    assert not (tmp_path / "other.txt").exists()


def test_hf_label_maps_label_each_position_with_its_class():
    id2label, label2id = ranking(names=NAMES).to_hf_label_maps()
    assert id2label == {p: NAMES[c] for p, c in enumerate(ORDER)}
    assert label2id == {NAMES[c]: p for p, c in enumerate(ORDER)}
    text = ranking(classes=np.array(["b", "a", "e", "c", "d"]))
    assert text.to_hf_label_maps()[0] == {0: "c", 1: "b", 2: "d", 3: "a", 4: "e"}
    assert ranking().to_hf_label_maps()[0] == {p: str(c) for p, c in enumerate(ORDER)}


def test_hf_label_maps_survive_save_pretrained_and_from_pretrained(tmp_path):
    transformers = pytest.importorskip("transformers")
    id2label, label2id = ranking(names=NAMES).to_hf_label_maps()
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=8, patch_size=4, id2label=id2label, label2id=label2id,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(tmp_path)
    loaded = transformers.ViTForImageClassification.from_pretrained(tmp_path)
    assert loaded.config.id2label == id2label  # int keys again after the JSON round trip
    assert loaded.config.label2id == label2id
    assert loaded.config.num_labels == 5
    assert loaded.classifier.out_features == 5


def test_unmap_logits_puts_columns_back_in_class_order():
    r = ranking()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 5))  # column p scores the class at position p
    out = r.unmap_logits(logits)
    for k in range(5):  # column k: class k, which sits at the position where order == k
        np.testing.assert_array_equal(out[:, k], logits[:, ORDER.index(k)])
    np.testing.assert_array_equal(out.argmax(1), r.unmap(logits.argmax(1)))
    with pytest.raises(ValueError, match="5 columns"):
        r.unmap_logits(logits[:, :4])


def test_unmap_logits_of_tensors_matches_numpy():
    torch = pytest.importorskip("torch")
    r = ranking()
    logits = torch.randn(3, 2, 5)
    np.testing.assert_array_equal(r.unmap_logits(logits).numpy(), r.unmap_logits(logits.numpy()))


@pytest.mark.parametrize("classes", [None, np.array([-7, 10, 20, 1000, 3])])
def test_as_module_agrees_with_the_ranking_and_keeps_its_tables_in_buffers(classes):
    torch = pytest.importorskip("torch")
    r = ranking(classes=classes)
    module = r.as_module()
    assert isinstance(module, torch.nn.Module)
    assert {name for name, _ in module.named_buffers()} >= {"positions", "ranked"}
    assert module.state_dict() == {}  # not persistent: checkpoints without it still load
    labels = np.asarray(r.classes)[[4, 0, 2, 2, 1]]
    y = torch.from_numpy(labels)
    np.testing.assert_array_equal(module.remap(y).numpy(), r.remap(labels))
    np.testing.assert_array_equal(module(y).numpy(), r.remap(labels))
    p = torch.tensor([[0, 4], [3, 1]])
    np.testing.assert_array_equal(module.unmap(p).numpy(), r.unmap(p.numpy()))
    logits = torch.randn(4, 5)
    np.testing.assert_array_equal(
        module.unmap_logits(logits).numpy(), r.unmap_logits(logits.numpy())
    )
    with pytest.raises(ValueError, match="among the ranked classes"):
        module.remap(torch.tensor([2**40]))
    with pytest.raises(ValueError, match=r"positions must be in \[0, 5\)"):
        module.unmap(torch.tensor([5]))
    with pytest.raises(TypeError, match="integer tensor"):
        module.remap(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="5 columns"):
        module.unmap_logits(torch.randn(2, 6))


def test_as_module_moves_with_to_and_refuses_text_classes():
    torch = pytest.importorskip("torch")
    module = ranking().as_module().to(torch.float64)  # a dtype cast leaves int tables alone
    assert module.positions.dtype == torch.int64
    meta = ranking().as_module().to("meta")
    assert all(b.device.type == "meta" for b in meta.buffers())
    with pytest.raises(TypeError, match="integer classes"):
        ranking(classes=np.array(list("abcde"))).as_module()


# ------------------------------------------------ names from extract_and_rank
def image_folder(root, n_per_class=6, classes=("10", "2", "cat")):
    """A tiny ImageFolder tree: each class a different mean colour, plus noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = np.clip(rng.normal(60 * k + 40, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def channel_means():
    """A backbone stand-in: the mean of each channel (3 features)."""
    import torch

    return torch.nn.AvgPool2d(8)  # (B, 3, 8, 8) -> (B, 3, 1, 1); "avg" pooling flattens it


def test_extract_and_rank_takes_the_names_of_an_image_folder(tmp_path):
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    from labelranker_fast.torch import extract_and_rank

    root = image_folder(tmp_path / "images")
    data = datasets.ImageFolder(root, transform=transforms.ToTensor())
    assert data.classes == ["10", "2", "cat"]  # sorted-name order
    loader = torch.utils.data.DataLoader(data, batch_size=5)
    r = extract_and_rank(channel_means(), loader, num_classes=3, device="cpu", progress=False)
    assert r.names == ("10", "2", "cat")
    np.testing.assert_array_equal(r.classes, [0, 1, 2])
    r.to_class_map(tmp_path / "map.txt")  # no names= needed any more
    lines = (tmp_path / "map.txt").read_text().splitlines()
    assert lines == [data.classes[c] for c in r.order]
    opts = dict(num_classes=3, device="cpu", progress=False)
    explicit = extract_and_rank(channel_means(), loader, class_names=["a", "b", "c"], **opts)
    assert explicit.names == ("a", "b", "c") and explicit.with_names(None) == r.with_names(None)


def test_extract_and_rank_checks_names_before_running_the_model():
    torch = pytest.importorskip("torch")
    from labelranker_fast.torch import extract_and_rank

    class Exploding(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("the model ran before the names were checked")

    class Named(torch.utils.data.TensorDataset):
        classes = ["a", "b", "c"]

    data = Named(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    with pytest.raises(ValueError, match="loader.dataset.classes has 3 names but num_classes is 2"):
        extract_and_rank(Exploding(), loader, num_classes=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="class_names has 1 entries"):
        extract_and_rank(
            Exploding(), loader, num_classes=2, device="cpu", progress=False, class_names=["a"]
        )
    with pytest.raises(TypeError, match="class_names must be strings"):
        extract_and_rank(
            Exploding(), loader, num_classes=2, device="cpu", progress=False, class_names=[0, 1]
        )
