"""Applying a ranking never gives a wrong answer silently: remap/unmap on numpy and torch,
class maps for timm, RankedTarget and ranked_class_to_idx.

Expected positions come from a plain dict {class: position} built from ``order`` alone.
"""

import subprocess
import sys
import types

import numpy as np
import pytest

import labelranker_fast as lrf

torch = pytest.importorskip("torch")
from labelranker_fast import _ranking_torch  # noqa: E402
from labelranker_fast.torch import RankedDataset, RankedTarget, ranked_class_to_idx  # noqa: E402


def ranking_of(classes, order):
    n = len(classes)
    return lrf.LabelRanking(classes, order, np.arange(n, dtype=float)[np.argsort(order)], [1.0])


def positions_by_dict(ranking, labels):
    table = {c: p for p, c in enumerate(ranking.classes[ranking.order].tolist())}
    return [table[v] for v in labels]


DENSE = ranking_of(np.arange(5), [3, 0, 4, 1, 2])
SPARSE = ranking_of(np.array([-7, 10, 20, 1000]), [2, 3, 0, 1])


# ----------------------------------------------------------------------- torch remap
@pytest.mark.parametrize("ranking", [DENSE, SPARSE], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.int8])
def test_torch_remap_of_integer_tensors_matches_the_dict(ranking, dtype):
    labels = ranking.classes[np.random.default_rng(0).integers(0, ranking.n_classes, 50)]
    if dtype == torch.int8 and labels.max() > 127:
        labels = labels[labels <= 127]
    got = ranking.remap(torch.tensor(labels, dtype=dtype))
    assert got.dtype == torch.int64
    assert got.tolist() == positions_by_dict(ranking, labels.tolist())
    scalar = ranking.remap(torch.tensor(int(labels[0]), dtype=dtype))
    assert scalar.ndim == 0 and int(scalar) == positions_by_dict(ranking, [labels[0]])[0]
    assert ranking.remap(torch.zeros(0, dtype=dtype)).shape == (0,)


@pytest.mark.parametrize("ranking", [DENSE, SPARSE], ids=["dense", "sparse"])
def test_torch_remap_refuses_floats_bools_and_logits(ranking):
    with pytest.raises(TypeError, match="integer tensor.*float32.*argmax"):
        ranking.remap(torch.tensor([1.7]))  # used to be truncated to 1
    with pytest.raises(TypeError, match="integer tensor.*float64"):
        ranking.remap(torch.tensor([1.0], dtype=torch.float64))
    with pytest.raises(TypeError, match="integer tensor.*bool"):
        ranking.remap(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="integer tensor.*uint64"):
        ranking.remap(torch.tensor([1], dtype=torch.uint64))
    with pytest.raises(ValueError, match="0-D or 1-D.*shape \\(4, 5\\).*argmax"):
        ranking.remap(torch.zeros(4, 5, dtype=torch.int64))  # integer one-hot targets
    with pytest.raises((TypeError, ValueError), match="argmax"):
        ranking.remap(torch.randn(4, 5))  # logits


def test_torch_remap_never_wraps_negative_or_unknown_labels():
    for bad in ([-1], [5], [0, 1, -5], [2**40]):
        with pytest.raises(ValueError, match="among the ranked classes"):
            DENSE.remap(torch.tensor(bad))
    for bad in ([-1], [-8], [11], [1001], [2**40]):
        with pytest.raises(ValueError, match="not among the ranked classes"):
            SPARSE.remap(torch.tensor(bad))


def test_torch_remap_and_unmap_refuse_classes_a_tensor_cannot_hold():
    """uint64 classes above 2**63 used to be wrapped into negative int64s, so the label
    -(2**63) + 5 was taken for the class 2**63 + 5."""
    big = ranking_of(np.array([1, 2**63 + 5], dtype=np.uint64), [1, 0])
    with pytest.raises(TypeError, match="integer classes that fit int64"):
        big.remap(torch.tensor([-(2**63) + 5]))
    with pytest.raises(TypeError, match="integer classes that fit int64"):
        big.unmap(torch.tensor([0]))
    for classes in (np.array(["a", "b"]), np.array([0.5, 1.5]), np.array([False, True])):
        with pytest.raises(TypeError, match="integer classes"):
            ranking_of(classes, [1, 0]).remap(torch.tensor([0]))
    assert big.remap(np.array([2**63 + 5], dtype=np.uint64)).tolist() == [0]  # numpy: fine


# ----------------------------------------------------------------------- torch unmap
@pytest.mark.parametrize("ranking", [DENSE, SPARSE], ids=["dense", "sparse"])
def test_torch_unmap_of_positions_of_any_shape(ranking):
    n = ranking.n_classes
    top_k = torch.tensor(np.random.default_rng(1).integers(0, n, (6, 3)))
    got = ranking.unmap(top_k)
    want = ranking.classes[ranking.order][top_k.numpy()]
    assert got.shape == (6, 3) and got.tolist() == want.tolist()
    assert int(ranking.unmap(torch.tensor(1, dtype=torch.uint8))) == int(
        ranking.classes[ranking.order][1]
    )
    assert ranking.remap(ranking.unmap(torch.arange(n))).tolist() == list(range(n))


def test_torch_unmap_refuses_floats_bools_and_out_of_range_positions():
    with pytest.raises(TypeError, match="positions must be an integer tensor.*argmax"):
        DENSE.unmap(torch.tensor([1.7]))  # used to be truncated to 1
    with pytest.raises(TypeError, match="positions must be an integer tensor"):
        DENSE.unmap(torch.randn(4, 5))  # logits: used to be accepted
    with pytest.raises(TypeError, match="positions must be an integer tensor.*bool"):
        DENSE.unmap(torch.tensor([True]))
    for bad in ([-1], [5], [[0, -2]]):  # -1 used to wrap to the last position
        with pytest.raises(ValueError, match=r"positions must be in \[0, 5\)"):
            DENSE.unmap(torch.tensor(bad))


# ------------------------------------------------- the CUDA check, without a device
def test_device_assert_raises_with_the_message_when_it_fails():
    _ranking_torch.device_assert(torch.tensor(True), "never shown")
    with pytest.raises(RuntimeError, match="labels not among"):
        _ranking_torch.device_assert(torch.tensor(False), "labels not among the ranked classes")


def test_cuda_conditions_go_to_the_device_assert_and_are_never_read_on_the_host(monkeypatch):
    calls = []

    class DeviceCondition:  # stands in for a 0-D bool tensor on a CUDA device
        device = types.SimpleNamespace(type="cuda")

        def __bool__(self):
            raise AssertionError("a CUDA condition was read on the host (a synchronisation)")

    monkeypatch.setattr(_ranking_torch, "device_assert", lambda c, m: calls.append((c, m)))
    condition = DeviceCondition()
    _ranking_torch.require(condition, "msg")
    assert calls == [(condition, "msg")]
    with pytest.raises(ValueError, match="msg"):
        _ranking_torch.require(torch.tensor(False), "msg")  # CPU: checked on the host


def test_lookup_tables_are_copied_to_a_device_once():
    """A host-to-device copy synchronises: the tables are made once per device."""
    ranking = ranking_of(np.array([3, 9, 4]), [2, 0, 1])
    first = ranking.remap(torch.tensor([9, 4]))
    tables = dict(ranking._tables)
    again = ranking.remap(torch.tensor([3, 3]))
    ranking.unmap(torch.tensor([0, 2]))
    assert first.tolist() == positions_by_dict(ranking, [9, 4])
    assert again.tolist() == positions_by_dict(ranking, [3, 3])
    assert all(ranking._tables[k] is v for k, v in tables.items())
    import pickle

    copy = pickle.loads(pickle.dumps(ranking))  # DataLoader workers: no device tensors
    assert copy == ranking and copy._tables == {} and not copy.classes.flags.writeable


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_remap_does_not_synchronise_and_bad_labels_fail_at_the_next_sync():
    ranking = SPARSE
    y = torch.tensor([10, -7, 1000], device="cuda")
    ranking.remap(y)  # tables copied to the device here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = ranking.remap(y)
        pos = ranking.unmap(got)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.tolist() == positions_by_dict(ranking, [10, -7, 1000])
    assert pos.tolist() == [10, -7, 1000]
    script = (
        "import numpy as np, torch, labelranker_fast as lrf\n"
        "r = lrf.LabelRanking(np.array([-7, 10, 20, 1000]), [2, 3, 0, 1], [2.,3.,0.,1.], [1.])\n"
        "r.remap(torch.tensor([11], device='cuda'))\n"
        "torch.cuda.synchronize()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert out.returncode != 0 and "not among the ranked classes" in out.stderr


# ---------------------------------------------------------------- numpy remap/unmap
def test_numpy_remap_compares_by_value_and_never_truncates():
    assert DENSE.remap(np.array([1.0, 4.0])).tolist() == positions_by_dict(DENSE, [1, 4])
    assert DENSE.remap([True]).tolist() == positions_by_dict(DENSE, [1])  # True == 1
    for bad in ([1.7], [-0.5], [5.0], [-1], [2**64 - 1], [2.0**70]):
        with pytest.raises(ValueError, match="not among the ranked classes"):
            DENSE.remap(np.array(bad))
    for bad in ([np.nan], [np.inf]):
        with pytest.raises(ValueError, match="NaN or infinity"):
            DENSE.remap(bad)
    with pytest.raises(ValueError, match="0-D or 1-D.*argmax"):
        DENSE.remap(np.zeros((3, 5), dtype=int))  # used to be accepted
    with pytest.raises(TypeError, match="cannot be compared"):
        DENSE.remap(["1"])
    assert DENSE.remap(np.int64(2)) == positions_by_dict(DENSE, [2])[0]


def test_numpy_remap_of_big_integers_is_exact():
    """int64 classes around 2**53 and float labels: a float label equals a class only if
    it is that integer exactly (float64 would make 2**53 + 1 and 2**53 equal)."""
    ranking = ranking_of(np.array([2**53 + 1, 0, 2**62]), [1, 0, 2])
    assert ranking.remap(np.array([2**53 + 1, 2**62])).tolist() == positions_by_dict(
        ranking, [2**53 + 1, 2**62]
    )
    with pytest.raises(ValueError, match="not among"):
        ranking.remap(np.array([float(2**53)]))  # 2**53 is no class
    u = ranking_of(np.array([3, 2**63 + 5], dtype=np.uint64), [1, 0])
    assert u.remap(np.array([3], dtype=np.int8)).tolist() == positions_by_dict(u, [3])
    with pytest.raises(ValueError, match="not among"):
        u.remap(np.array([-(2**63) + 5]))  # the wrapped int64 of 2**63 + 5


def test_numpy_remap_of_text_and_bytes():
    words = ranking_of(np.array(["ant", "bee", "日本"]), [2, 0, 1])
    assert words.remap(["日本", "ant"]).tolist() == positions_by_dict(words, ["日本", "ant"])
    with pytest.raises(TypeError, match="cannot be compared"):
        words.remap([b"ant"])
    raw = ranking_of(np.array([b"\xff", b"a"]), [1, 0])
    assert raw.remap([b"\xff"]).tolist() == positions_by_dict(raw, [b"\xff"])
    with pytest.raises(TypeError, match="cannot be compared"):
        raw.remap(["a"])
    with pytest.raises(TypeError, match="mixes"):
        words.remap(["ant", 1])


def test_numpy_unmap_refuses_floats_bools_and_out_of_range():
    assert DENSE.unmap(np.array([[0, 4]])).tolist() == [[3, 2]]
    for bad, err in (
        ([1.7], TypeError),
        ([1.0], TypeError),
        ([True], TypeError),
        ([-1], ValueError),
        ([5], ValueError),
    ):
        with pytest.raises(err, match="positions"):
            DENSE.unmap(np.array(bad))


# ------------------------------------------------------------------------ class maps
def test_class_map_of_integer_classes_needs_names(tmp_path):
    path = tmp_path / "map.txt"
    ranking = ranking_of(np.arange(12), np.random.default_rng(0).permutation(12))
    with pytest.raises(ValueError, match="timm matches.*folder names.*sorted-name order.*names="):
        ranking.to_class_map(path)  # used to write 0..11, which timm matches against "10" < "2"
    assert not path.exists()
    with pytest.raises(ValueError, match="integers"):
        ranking_of(np.array([3, 7], dtype=np.uint8), [1, 0]).to_class_map(path)
    names = [f"n{c:03d}" for c in range(12)]
    ranking.to_class_map(path, names=names)
    timm_class_map = pytest.importorskip("timm.data.readers.class_map")
    mapping = timm_class_map.load_class_map(str(path))
    assert mapping == {names[c]: p for c, p in enumerate(ranking.positions.tolist())}


def test_class_map_refuses_duplicate_names_and_writes_nothing(tmp_path):
    path = tmp_path / "map.txt"
    path.write_text("before\n")
    ranking = ranking_of(np.arange(3), [2, 0, 1])
    with pytest.raises(ValueError, match="unique.*'a'"):
        ranking.to_class_map(path, names=["a", "b", "a"])  # used to be written
    for names in (["a", "b", " c"], ["a", "", "c"], ["a", "b\nc", "d"], ["a", "b", "\ud800"]):
        with pytest.raises(ValueError, match="one per line|UTF-8|empty"):
            ranking.to_class_map(path, names=names)
    with pytest.raises(TypeError, match="strings"):
        ranking.to_class_map(path, names=["a", "b", b"c"])
    with pytest.raises(TypeError, match="not one string"):
        ranking.to_class_map(path, names="abc")  # three one-letter names by accident
    assert path.read_text() == "before\n"


@pytest.mark.parametrize(
    "classes, lines",
    [
        (np.array([b"cat", b"dog", "\u00e9t\u00e9".encode()]), ["cat", "dog", "\u00e9t\u00e9"]),
        (np.array([False, True]), ["False", "True"]),
        (np.array([0.1, 2.5], dtype=np.float32), ["0.1", "2.5"]),
        (np.array(["日本", "a" * 3000]), ["日本", "a" * 3000]),
    ],
)
def test_class_map_of_text_bools_floats_and_bytes_reads_back_in_timm(classes, lines, tmp_path):
    """bytes used to be written as "b'cat'", which matches no folder."""
    timm_class_map = pytest.importorskip("timm.data.readers.class_map")
    order = np.arange(len(classes))[::-1]
    ranking = ranking_of(classes, order)
    path = tmp_path / "map.txt"
    ranking.to_class_map(path)
    mapping = timm_class_map.load_class_map(str(path))
    assert mapping == {lines[c]: p for c, p in enumerate(ranking.positions.tolist())}


def test_class_map_of_bytes_that_are_not_utf8_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not UTF-8"):
        ranking_of(np.array([b"\xff", b"a"]), [1, 0]).to_class_map(tmp_path / "map.txt")
    assert not (tmp_path / "map.txt").exists()


# ---------------------------------------------------- RankedTarget, class_to_idx
def test_ranked_target_follows_the_remap_rules():
    t = RankedTarget(SPARSE)
    assert [t(c) for c in (-7, 10, 20, 1000)] == positions_by_dict(SPARSE, [-7, 10, 20, 1000])
    assert t(np.int16(20)) == t(20.0) == t(torch.tensor(20)) == positions_by_dict(SPARSE, [20])[0]
    with pytest.raises(ValueError, match="not among"):
        t(10.5)  # never truncated to 10
    with pytest.raises(TypeError, match="integer tensor"):
        t(torch.tensor(10.0))
    with pytest.raises(ValueError, match="one label"):
        t(torch.tensor([10, 20]))
    with pytest.raises(ValueError, match="one label"):
        t([10, 20])
    with pytest.raises(ValueError, match="missing"):
        t(None)
    words = RankedTarget(ranking_of(np.array(["ant", "bee"]), [1, 0]))
    assert words("bee") == 0 and words(np.str_("ant")) == 1
    with pytest.raises(TypeError, match="cannot be compared"):
        words(1)
    ds = RankedDataset([(0, 10), (1, -7)], SPARSE)
    assert [ds[i][1] for i in range(2)] == positions_by_dict(SPARSE, [10, -7])


def test_ranked_class_to_idx_refuses_shared_indices_and_non_integers():
    names = {"ant": 0, "bee": 1, "cat": 2, "dog": 3, "eel": 4}
    assert ranked_class_to_idx(names, DENSE) == dict(zip(names, positions_by_dict(DENSE, range(5))))
    with pytest.raises(ValueError, match="one index to several"):
        ranked_class_to_idx(dict(names, eel=3), DENSE)  # used to give two folders one position
    with pytest.raises(TypeError, match="integer class indices"):
        ranked_class_to_idx(dict(names, eel=4.0), DENSE)
    with pytest.raises(TypeError, match="integer class indices"):
        ranked_class_to_idx(dict(names, eel=True), DENSE)
    with pytest.raises(ValueError, match="not among"):
        ranked_class_to_idx(dict(names, eel=-1), DENSE)
    with pytest.raises(TypeError, match="keys must be folder names"):
        ranked_class_to_idx({0: 0, 1: 1, 2: 2, 3: 3, 4: 4}, DENSE)
    words = ranking_of(np.array(["ant", "bee", "cat"]), [2, 0, 1])
    assert ranked_class_to_idx({"cat": 0, "ant": 1, "bee": 2}, words) == dict(
        zip(["cat", "ant", "bee"], positions_by_dict(words, ["cat", "ant", "bee"]))
    )
    with pytest.raises(ValueError, match="not among"):
        ranked_class_to_idx({"cat": 0, "ant": 1, "yak": 2}, words)
