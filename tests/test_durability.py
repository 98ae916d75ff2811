"""Durability: accumulator files that are validated on load and written atomically, and
streaming passes that resume after being killed, with bit-identical statistics."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import reference_scatter
from labelranker_fast._api import accumulate

N, D, C, CHUNK = 2400, 10, 5, 200
NAMES = np.array(["oak", "elm", "ash", "fir", "yew"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(3)
    y = np.sort(rng.integers(0, C, N))  # grouped: later classes appear after checkpoints
    X = rng.standard_normal((N, D)) + 3.0 * rng.standard_normal((C, D))[y]
    folder = tmp_path_factory.mktemp("durability")
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return folder, X, y


def same_state(a, b):
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


# ------------------------------------------------------------------ files
def test_save_load_round_trip_is_exact_and_atomic(tmp_path, data):
    _, X, y = data
    acc = lrf.ScatterAccumulator(D, C).update(X, y)
    acc.save(tmp_path / "acc.npz")
    same_state(lrf.ScatterAccumulator.load(tmp_path / "acc.npz"), acc)
    same_state(pickle.loads(pickle.dumps(acc)), acc)
    assert os.listdir(tmp_path) == ["acc.npz"]  # no temporary file left behind
    acc.save(tmp_path / "plain")  # the path is used as given, no suffix appended
    assert (tmp_path / "plain").exists()


def _corrupt(tmp_path, acc, how):
    path = tmp_path / "bad.npz"
    state = acc.get_state()
    if how == "garbage":
        path.write_bytes(b"not a zip file at all")
        return path
    if how == "truncated":
        acc.save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    if how == "missing key":
        del state["m2"]
    elif how == "wrong version":
        state["version"] = 99
    elif how == "wrong shape":
        state["counts"] = state["counts"][:-1]
    elif how == "strings":
        state["sums"] = np.full(state["sums"].shape, "x")
    elif how == "negative counts":
        state["counts"] = -state["counts"]
    elif how == "non-finite":
        state["m2"] = state["m2"] * np.nan
    elif how == "object":
        state["counts"] = np.array([object()] * C, dtype=object)
    elif how == "array for a scalar":
        state["n_features"] = np.array([D, D])
    np.savez(path, **state)
    return path


# What each refusal must name: the reason, in a word or two, not today's exact wording.
MALFORMED = {
    "garbage": r"not a readable",
    "truncated": r"not a readable",
    "missing key": r"missing",
    "wrong version": r"version",
    "wrong shape": r"shape",
    "strings": r"numeric|dtype",
    "negative counts": r"counts.*(>= ?0|negative)",
    "non-finite": r"finite|nan|inf",
    "object": r"object|pickle",
    "array for a scalar": r"scalar",
}


@pytest.mark.parametrize("how", list(MALFORMED))
def test_malformed_files_are_rejected(tmp_path, data, how):
    _, X, y = data
    acc = lrf.ScatterAccumulator(D, C).update(X, y)
    with pytest.raises(ValueError, match="(?i)" + MALFORMED[how]):
        lrf.ScatterAccumulator.load(_corrupt(tmp_path, acc, how))


# ------------------------------------------------------------------ resume
CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from labelranker_fast._api import accumulate

    folder, ckpt, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    X, y = np.load(folder + "/X.npy"), np.load(folder + "/y.npy")
    names = np.array({names})

    def chunks():
        for i, start in enumerate(range(0, len(X), {chunk})):
            if i == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield X[start:start + {chunk}], names[y[start:start + {chunk}]]

    accumulate(chunks(), checkpoint=ckpt, checkpoint_every=2)
    print("finished")
""").format(names=NAMES.tolist(), chunk=CHUNK)


def chunks_of(X, labels):
    for start in range(0, len(X), CHUNK):
        yield X[start : start + CHUNK], labels[start : start + CHUNK]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_pass_resumes_with_bit_identical_statistics(tmp_path, data, seed):
    folder, X, y = data
    n_chunks = N // CHUNK
    kill_at = int(np.random.default_rng(seed).integers(3, n_chunks))  # a random chunk
    ckpt = tmp_path / "pass.ckpt"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(ckpt), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr  # SIGKILL: no cleanup code ran
    with np.load(ckpt) as saved:
        assert 0 < int(saved["chunks_done"]) < n_chunks and not bool(saved["complete"])

    resumed, classes = accumulate(chunks_of(X, NAMES[y]), checkpoint=ckpt, checkpoint_every=2)
    whole, whole_classes = accumulate(
        chunks_of(X, NAMES[y]), checkpoint=tmp_path / "whole.ckpt", checkpoint_every=2
    )
    same_state(resumed, whole)
    np.testing.assert_array_equal(classes, whole_classes)
    np.testing.assert_array_equal(classes, np.sort(NAMES))
    # ...and both equal a float64 two-pass reference up to rounding.
    Sw, _, means = reference_scatter(X, np.searchsorted(np.sort(NAMES), NAMES[y]), C)
    np.testing.assert_allclose(resumed.within_scatter(), Sw, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(resumed.class_means, means, rtol=1e-12, atol=1e-12)


class Interrupting:
    """A sliceable view of an array that is interrupted on its k-th read."""

    def __init__(self, arr, k):
        self.arr, self.k, self.shape, self.dtype = arr, k, arr.shape, arr.dtype

    def __getitem__(self, key):
        self.k -= 1
        if self.k < 0:
            raise KeyboardInterrupt
        part = self.arr[key]
        self.widest = max(getattr(self, "widest", 0), len(part))
        return part


def test_file_pass_resumes_after_an_interruption(tmp_path, data):
    folder, X, y = data
    ckpt = tmp_path / "file.ckpt"
    with pytest.raises(KeyboardInterrupt):
        accumulate(
            Interrupting(np.load(folder / "X.npy", mmap_mode="r"), 7),
            y,
            chunk_size=CHUNK,
            checkpoint=ckpt,
            checkpoint_every=3,
        )
    resumed, _ = accumulate(
        str(folder / "X.npy"),
        str(folder / "y.npy"),
        chunk_size=CHUNK,
        checkpoint=ckpt,
        checkpoint_every=3,
    )
    whole, _ = accumulate(
        str(folder / "X.npy"),
        str(folder / "y.npy"),
        chunk_size=CHUNK,
        checkpoint=tmp_path / "whole.ckpt",
        checkpoint_every=3,
    )
    same_state(resumed, whole)
    assert resumed.n_samples == N


def test_completed_checkpoint_is_reused_and_mismatches_are_refused(tmp_path, data):
    folder, X, y = data
    ckpt = tmp_path / "done.ckpt"
    first = lrf.rank_labels(X, y, chunk_size=CHUNK, checkpoint=ckpt)
    # A completed pass is not read again: only its 17 fingerprint rows are (this input
    # interrupts on its 18th read, or on any read of more than one row).
    sampled = Interrupting(X, 17)
    again = lrf.rank_labels(sampled, y, chunk_size=CHUNK, checkpoint=ckpt)
    assert again == first and sampled.k == 0 and sampled.widest == 1
    with pytest.raises(ValueError, match="another pass"):
        lrf.rank_labels(X, y, chunk_size=CHUNK + 1, checkpoint=ckpt)
    with pytest.raises(ValueError, match="checkpoint_every needs"):
        lrf.rank_labels(X, y, checkpoint_every=2)
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        lrf.rank_labels(X, y, chunk_size=CHUNK, checkpoint=tmp_path / "junk.ckpt")
