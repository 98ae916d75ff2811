"""The order of the classes, the LabelRanking object and its JSON form."""

import json

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import make_blobs


def line_data(seed, C=8, d=16, per_class=300, noise=0.3):
    """Class means at known positions t_k along a random unit direction u."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    t = rng.permutation(C) * 2.0
    y = np.repeat(np.arange(C), per_class)
    X = t[y, None] * u + noise * rng.standard_normal((y.size, d)) + 5.0
    return X, y, t, u


@pytest.mark.parametrize("seed", range(5))
def test_recovers_order_along_a_line(seed):
    X, y, t, u = line_data(seed)
    ranking = lrf.rank_labels(X, y)
    # The direction is +-u; the sign rule makes the largest |coefficient| positive.
    sign = np.sign(u[np.argmax(np.abs(u))])
    expected = np.argsort(sign * t, kind="stable")
    np.testing.assert_array_equal(ranking.order, expected)
    np.testing.assert_array_equal(ranking.positions[ranking.order], np.arange(8))


def test_sign_rule_is_independent_of_class_numbering():
    X, y, t, u = line_data(11)
    ranking = lrf.rank_labels(X, y)
    perm = np.random.default_rng(1).permutation(8)
    relabelled = lrf.rank_labels(X, perm[y])
    # Same classes at the same positions.
    np.testing.assert_array_equal(perm[ranking.order], relabelled.order)
    np.testing.assert_allclose(relabelled.centroids[perm], ranking.centroids, rtol=1e-9)


def test_ties_are_broken_by_class_index():
    # Classes 0 and 2 have identical samples, hence identical centroids.
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 3))
    X = np.concatenate([base + [0, 0, 0], base + [5, 1, 0], base + [0, 0, 0], base + [-4, 2, 1]])
    y = np.repeat([0, 1, 2, 3], 50)
    ranking = lrf.rank_labels(X, y)
    p = ranking.positions
    assert ranking.centroids[0, 0] == ranking.centroids[2, 0]
    assert p[2] == p[0] + 1


def test_multi_component_order_is_distance_to_anchor():
    X, y = make_blobs(2, n=1500, d=6, C=7)
    ranking = lrf.rank_labels(X, y, n_components=3)
    c = ranking.centroids
    anchor = np.argmin(c[:, 0])
    dist = np.linalg.norm(c - c[anchor], axis=1)
    np.testing.assert_array_equal(ranking.order, np.argsort(dist, kind="stable"))
    assert ranking.order[0] == anchor


def test_string_labels_and_remap():
    X, y = make_blobs(4, n=400, d=5, C=4)
    names = np.array(["cat", "dog", "emu", "ant"])[y]
    ranking = lrf.rank_labels(X, names)
    np.testing.assert_array_equal(ranking.classes, ["ant", "cat", "dog", "emu"])
    pos = ranking.remap(names)
    assert pos.dtype == np.int64
    np.testing.assert_array_equal(ranking.ranked_classes[pos], names)
    np.testing.assert_array_equal(ranking.unmap(pos), names)
    with pytest.raises(ValueError, match="not among"):
        ranking.remap(["cat", "yak"])


def test_remap_integer_labels_not_starting_at_zero():
    X, y = make_blobs(5, n=300, d=4, C=3)
    labels = np.array([10, 20, 30])[y]
    ranking = lrf.rank_labels(X, labels)
    pos = ranking.remap(labels)
    np.testing.assert_array_equal(ranking.classes[ranking.order][pos], labels)
    with pytest.raises(ValueError):
        ranking.remap([15])
    with pytest.raises(ValueError):
        ranking.unmap([3])


def test_json_round_trip(tmp_path):
    X, y = make_blobs(6, n=500, d=5, C=5)
    for labels in (y, np.array(list("abcde"))[y]):
        ranking = lrf.rank_labels(X, labels, n_components=2)
        path = tmp_path / "r.json"
        ranking.to_json(path)
        again = lrf.LabelRanking.from_json(path)
        assert again == ranking
        np.testing.assert_array_equal(again.positions, ranking.positions)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("order"),
        lambda d: d.update(order=[0, 0, 1, 2, 3]),
        lambda d: d.update(order=[0, 1, 2]),
        lambda d: d.update(format="something else"),
        lambda d: d.update(version=99),
        lambda d: d.update(classes=[1, 1, 2, 3, 4]),
        lambda d: d.update(centroids=[[0.0]] * 4),
        lambda d: d.update(eigenvalues=[1.0, 2.0]),
        lambda d: d.update(shrinkage=2.0),
    ],
)
def test_malformed_json_is_rejected(tmp_path, mutate):
    X, y = make_blobs(7, n=300, d=4, C=5)
    data = lrf.rank_labels(X, y).to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError):
        lrf.LabelRanking.from_json(path)


def test_not_json_is_rejected(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        lrf.LabelRanking.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError):
        lrf.LabelRanking.from_json(path)


def test_class_map_with_folder_names(tmp_path):
    """A ranking of class indices written with folder names: line p is the name of the
    class at position p, read back as timm reads it (name -> line number)."""
    names = ["n015", "n002", "n113", "n040"]
    ranking = lrf.LabelRanking(
        np.arange(4),
        order=[2, 0, 3, 1],
        centroids=np.array([1.0, 3.0, 0.0, 2.0]),
        eigenvalues=[1.0],
    )
    path = tmp_path / "class_map.txt"
    ranking.to_class_map(path, names=names)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["n113", "n015", "n040", "n002"]
    as_timm = {line.strip(): i for i, line in enumerate(lines)}
    assert [as_timm[n] for n in names] == ranking.positions.tolist()
    with pytest.raises(ValueError, match="3 entries"):
        ranking.to_class_map(path, names=names[:3])
    with pytest.raises(TypeError, match="strings"):
        ranking.to_class_map(path, names=[1, 2, 3, 4])
    strings = lrf.LabelRanking(
        np.array(["a", "b", "c", "d"]),
        order=[2, 0, 3, 1],
        centroids=np.array([1.0, 3.0, 0.0, 2.0]),
        eigenvalues=[1.0],
    )
    with pytest.raises(ValueError, match="class indices"):
        strings.to_class_map(path, names=names)
    assert path.read_text(encoding="utf-8").splitlines() == lines  # untouched by refusals
