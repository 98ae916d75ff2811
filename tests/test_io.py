"""Files: one atomic writer for everything, readers that validate before they allocate,
and only ValueError / TypeError / FileNotFoundError / MemoryError from hostile files."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import run_in_threads
from labelranker_fast import _io


@pytest.fixture
def acc():
    rng = np.random.default_rng(3)
    y = np.arange(120) % 3
    return lrf.ScatterAccumulator(4, 3).update(rng.standard_normal((120, 4)) + y[:, None], y)


def test_atomic_write_leaves_no_temporary_file_and_keeps_the_target_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]
    _io.atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["out.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_io._umask())


def test_a_planted_symlink_at_a_predictable_name_is_not_followed(tmp_path, acc):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "acc.npz"
    # The names a writer with a predictable temporary file would use.
    for name in (f"acc.npz.tmp{os.getpid()}", "acc.npz.tmp", ".acc.npz.tmp"):
        os.symlink(victim, tmp_path / name)
    acc.save(target)
    assert victim.read_bytes() == b"precious"
    assert lrf.ScatterAccumulator.load(target).n_samples == acc.n_samples


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    target = tmp_path / "ranking.json"
    rankings = [
        lrf.LabelRanking(
            classes=[0, 1, 2],
            order=np.roll([0, 1, 2], k),
            centroids=np.arange(3.0) * (k + 1),
            eigenvalues=[1.0 + k],
        )
        for k in range(3)
    ]

    def write(r):
        for _ in range(30):
            r.to_json(target)

    assert not run_in_threads(write, [(r,) for r in rankings])
    assert lrf.LabelRanking.from_json(target) in rankings
    assert os.listdir(tmp_path) == ["ranking.json"]


def test_every_writer_goes_through_the_one_helper(tmp_path, acc, monkeypatch):
    calls = []
    real = _io.atomic_write
    monkeypatch.setattr(_io, "atomic_write", lambda *a, **k: (calls.append(a[0]), real(*a, **k)))
    ranking = acc.rank()
    acc.save(tmp_path / "a.npz")
    ranking.to_json(tmp_path / "r.json")
    ranking.to_class_map(tmp_path / "map.txt", names=["a", "b", "c"])
    acc.update(
        np.zeros((3, 4)) + np.arange(3)[:, None],
        np.arange(3),
        chunk_size=2,
        checkpoint=tmp_path / "c.ckpt",
    )
    # Two chunks: a checkpoint after each, then the pass's completed one.
    assert [os.path.basename(os.fspath(p)) for p in calls] == [
        "a.npz",
        "r.json",
        "map.txt",
        "c.ckpt",
        "c.ckpt",
        "c.ckpt",
    ]


def _npz_with(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_an_unused_member_claiming_terabytes_is_never_read(tmp_path, acc):
    path = tmp_path / "acc.npz"
    acc.save(path)
    header = {"descr": "<f8", "fortran_order": False, "shape": (1 << 20, 1 << 20)}
    with zipfile.ZipFile(path, "a") as z:  # 8 TiB claimed, a few bytes present
        with z.open("huge.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
    loaded = lrf.ScatterAccumulator.load(path)
    np.testing.assert_array_equal(loaded.within_scatter(), acc.within_scatter())


def test_a_needed_member_claiming_more_than_it_holds_is_refused(tmp_path, acc):
    state = acc.get_state()
    path = tmp_path / "acc.npz"
    _npz_with(path, **{k: v for k, v in state.items() if k != "m2"})
    header = {"descr": "<f8", "fortran_order": False, "shape": (4, 4)}
    with zipfile.ZipFile(path, "a") as z:
        with z.open("m2.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            fh.write(b"\0" * 40)  # 128 bytes claimed
    with pytest.raises(ValueError, match="truncated or inconsistent"):
        lrf.ScatterAccumulator.load(path)


def test_consistent_but_astronomical_sizes_raise_before_reading(tmp_path, acc):
    state = acc.get_state()
    state["n_features"] = np.int64(1 << 40)
    path = tmp_path / "acc.npz"
    _npz_with(path, **state)
    with pytest.raises(ValueError, match="shape"):
        lrf.ScatterAccumulator.load(path)


@pytest.mark.parametrize("kind", ["empty", "npy", "directory", "text", "truncated zip"])
def test_hostile_files_given_to_load(tmp_path, acc, kind):
    path = tmp_path / "f.npz"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "npy":
        np.save(open(path, "wb"), np.zeros(3))
    elif kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello")
    else:
        acc.save(path)
        path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match="f.npz"):
        lrf.ScatterAccumulator.load(path)


def test_paths_of_every_kind(tmp_path, acc):
    path = tmp_path / "acc.npz"
    acc.save(os.fsencode(path))  # bytes paths work like str ones
    assert lrf.ScatterAccumulator.load(os.fsencode(path)).n_samples == acc.n_samples
    with pytest.raises(FileNotFoundError):
        lrf.ScatterAccumulator.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="path"):
        acc.save(12)
    with pytest.raises(ValueError, match="directory"):
        acc.save(tmp_path)
    with pytest.raises(FileNotFoundError):
        acc.save(tmp_path / "no" / "such" / "dir.npz")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01", b"[" * 100000, b"{" * 5000 + b"}" * 5000, b'{"format": 1}', b"NaN"],
)
def test_hostile_ranking_json(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        lrf.LabelRanking.from_json(path)


def test_ranking_json_given_a_directory_or_nothing(tmp_path):
    with pytest.raises(ValueError, match="r.json"):
        (tmp_path / "r.json").mkdir()
        lrf.LabelRanking.from_json(tmp_path / "r.json")
    with pytest.raises(FileNotFoundError):
        lrf.LabelRanking.from_json(tmp_path / "none.json")


@pytest.mark.parametrize("kind", ["empty", "truncated", "directory", "npz"])
def test_hostile_npy_inputs(tmp_path, kind):
    path = tmp_path / "X.npy"
    y = np.arange(10) % 2
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        np.save(path, np.zeros((10, 3)))
        path.write_bytes(path.read_bytes()[:-40])
    elif kind == "directory":
        path.mkdir()
    else:
        np.savez(open(path, "wb"), a=np.zeros(3))
    with pytest.raises(ValueError, match="X.npy"):
        lrf.rank_labels(path, y)
    with pytest.raises(ValueError, match="X.npy"):
        lrf.rank_labels(os.fsencode(path), y)


def test_json_of_a_ranking_is_strict_json(tmp_path, acc):
    acc.rank().to_json(tmp_path / "r.json")
    json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c))
