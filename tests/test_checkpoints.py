"""Checkpoints identify their pass: every field is recorded, validated on load, and a
mismatch is refused with a message naming it; identical arguments resume exactly."""

from __future__ import annotations

import numpy as np
import pytest

import labelranker_fast as lrf
from labelranker_fast._api import accumulate

N, D, C, CHUNK = 1200, 6, 4, 100


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    y = rng.integers(0, C, N)
    X = rng.standard_normal((C, D))[y] * 2 + rng.standard_normal((N, D))
    return X, y, rng.uniform(0.5, 2.0, N)


def same_state(a, b):
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


class Interrupting:
    """A sliceable view that raises KeyboardInterrupt on its k-th chunk read (one-row
    fingerprint reads are let through)."""

    def __init__(self, arr, k):
        self.arr, self.k, self.shape, self.dtype = arr, k, arr.shape, arr.dtype

    def __getitem__(self, key):
        part = self.arr[key]
        if len(part) > 1:
            self.k -= 1
            if self.k < 0:
                raise KeyboardInterrupt
        return part


def interrupted(ckpt, X, y, k=4, **kw):
    with pytest.raises(KeyboardInterrupt):
        accumulate(Interrupting(X, k), y, checkpoint=ckpt, **kw)
    assert ckpt.exists()


@pytest.mark.parametrize(
    "case, change, match",
    [
        ("width", lambda X, y, w: (X[:, :-1], y, None), "n_features"),
        ("dtype", lambda X, y, w: (X.astype(np.float32), y, None), "feature_dtype"),
        ("rows", lambda X, y, w: (X[:-1], y[:-1], None), "n_rows"),
        ("content", lambda X, y, w: (X + 1e-9, y, None), "fingerprint"),
        ("labels", lambda X, y, w: (X, (y + 1) % C * 10, None), "classes"),
        ("weights", lambda X, y, w: (X, y, w), "weighted"),
    ],
)
def test_another_pass_is_refused_naming_the_difference(tmp_path, data, case, change, match):
    X, y, w = data
    ckpt = tmp_path / "pass.ckpt"
    interrupted(ckpt, X, y, chunk_size=CHUNK)
    before = ckpt.read_bytes()
    X2, y2, w2 = change(X, y, w)
    with pytest.raises(ValueError, match=f"another pass.*{match}"):
        accumulate(X2, y2, w2, chunk_size=CHUNK, checkpoint=ckpt)
    assert ckpt.read_bytes() == before  # a refused resume changes nothing


def test_other_chunk_boundaries_and_label_modes_are_refused(tmp_path, data):
    X, y, _ = data
    ckpt = tmp_path / "pass.ckpt"
    interrupted(ckpt, X, y, chunk_size=CHUNK)
    with pytest.raises(ValueError, match="rows_per_chunk"):
        accumulate(X, y, chunk_size=CHUNK * 2, checkpoint=ckpt)
    with pytest.raises(ValueError, match="label_mode"):
        accumulate(X, y, num_classes=C, chunk_size=CHUNK, checkpoint=ckpt)
    with pytest.raises(ValueError, match="iterable"):
        accumulate(
            ((X[a : a + CHUNK], y[a : a + CHUNK]) for a in range(0, N, CHUNK)), checkpoint=ckpt
        )


def test_resume_after_the_core_count_changed(tmp_path, data):
    """Default chunk boundaries depend on the thread count; a resumed pass takes the
    checkpoint's, so its statistics are bit-identical to the uninterrupted pass."""
    X, y, _ = data
    X = np.repeat(X, 20, axis=0)  # enough rows for several default (4096-row) chunks
    y = np.repeat(y, 20)
    ckpt = tmp_path / "pass.ckpt"
    with pytest.raises(KeyboardInterrupt):
        accumulate(Interrupting(X, 2), y, n_threads=1, checkpoint=ckpt)
    resumed, _ = accumulate(X, y, n_threads=3, checkpoint=ckpt)
    whole, _ = accumulate(X, y, n_threads=1, checkpoint=tmp_path / "whole.ckpt")
    same_state(resumed, whole)
    assert resumed.n_samples == len(X)


def test_resume_of_mixed_float32_and_float64_chunks_is_bit_identical(tmp_path, data):
    X, y, _ = data

    def chunks(kill_at=None):
        for i, a in enumerate(range(0, N, CHUNK)):
            if i == kill_at:
                raise KeyboardInterrupt
            part = X[a : a + CHUNK]
            yield (part if i % 3 == 1 else part.astype(np.float32)), y[a : a + CHUNK]

    ckpt = tmp_path / "pass.ckpt"
    with pytest.raises(KeyboardInterrupt):
        accumulate(chunks(kill_at=7), checkpoint=ckpt, checkpoint_every=2)
    resumed, classes = accumulate(chunks(), checkpoint=ckpt, checkpoint_every=2)
    whole, _ = accumulate(chunks(), checkpoint=tmp_path / "whole.ckpt", checkpoint_every=2)
    same_state(resumed, whole)
    np.testing.assert_array_equal(classes, np.arange(C))


def test_an_iterable_with_other_content_is_refused(tmp_path, data):
    X, y, _ = data

    def chunks(scale=1.0, stop=None):
        for i, a in enumerate(range(0, N, CHUNK)):
            if i == stop:
                raise KeyboardInterrupt
            yield X[a : a + CHUNK] * scale, y[a : a + CHUNK]

    ckpt = tmp_path / "pass.ckpt"
    with pytest.raises(KeyboardInterrupt):
        accumulate(chunks(stop=5), checkpoint=ckpt)
    with pytest.raises(ValueError, match="another pass"):
        accumulate(chunks(scale=2.0), checkpoint=ckpt)
    with pytest.raises(ValueError, match="fewer"):
        accumulate(
            ((X[a : a + CHUNK], y[a : a + CHUNK]) for a in range(0, 2 * CHUNK, CHUNK)),
            checkpoint=ckpt,
        )
    done, _ = accumulate(chunks(), checkpoint=ckpt)  # the same data still resumes
    assert done.n_samples == N
    # A completed checkpoint of an iterable checks the first chunk before it is reused.
    with pytest.raises(ValueError, match="first chunk"):
        accumulate(chunks(scale=3.0), checkpoint=ckpt)


def _rewrite(path, **changes):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
        np.savez(fh, **arrays)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("chunks_done", None, "missing"),
        ("format", None, "earlier version"),
        ("n_rows", None, "missing"),
        ("fingerprint", None, "missing"),
        ("chunks_done", np.int64(-3), "chunks_done is -3"),
        ("rows_per_chunk", np.int64(-7), "rows_per_chunk is -7"),
        ("n_rows", np.float64(1200), "scalar"),
        ("complete", np.array([True, False]), "scalar"),
        ("version", np.int64(99), "version"),
        ("format", np.str_("something/else"), "format"),
        ("acc_m2", np.zeros((2, 2)), "shape"),
        ("acc_counts", np.full(C, -1.0), "negative|invalid|counts"),
    ],
)
def test_every_field_is_validated(tmp_path, data, field, value, match):
    X, y, _ = data
    ckpt = tmp_path / "pass.ckpt"
    interrupted(ckpt, X, y, chunk_size=CHUNK)
    _rewrite(ckpt, **{field: value})
    with pytest.raises(ValueError, match=match):
        accumulate(X, y, chunk_size=CHUNK, checkpoint=ckpt)


def test_checkpoints_of_the_previous_format_are_refused(tmp_path, data):
    X, y, _ = data
    ckpt = tmp_path / "old.ckpt"
    state = lrf.ScatterAccumulator(D, C).update(X[:CHUNK], y[:CHUNK]).get_state()
    np.savez(
        open(ckpt, "wb"),
        **{f"acc_{k}": v for k, v in state.items()},
        rows_per_chunk=CHUNK,
        source_rows=N,
        chunks_done=1,
        complete=False,
    )
    with pytest.raises(ValueError, match="earlier version"):
        accumulate(X, y, chunk_size=CHUNK, checkpoint=ckpt)


def test_update_with_a_checkpoint_of_another_accumulator_shape(tmp_path, data):
    X, y, _ = data
    ckpt = tmp_path / "pass.ckpt"
    lrf.ScatterAccumulator(D, C).update(X, y, checkpoint=ckpt)
    acc = lrf.ScatterAccumulator(D, C + 2)
    with pytest.raises(ValueError, match="num_classes"):
        acc.update(X, y, checkpoint=ckpt)
    assert acc.n_samples == 0 and acc.num_classes == C + 2
    again = lrf.ScatterAccumulator(D, C).update(X, y, checkpoint=ckpt)  # the same pass
    same_state(again, lrf.ScatterAccumulator(D, C).update(X, y, chunk_size=8192))


class FailsAt:
    """A sliceable view that raises KeyboardInterrupt when a chunk starting at ``row`` is
    read (one-row fingerprint reads pass)."""

    def __init__(self, arr, row):
        self.arr, self.row, self.shape, self.dtype = arr, row, arr.shape, arr.dtype

    def __getitem__(self, key):
        part = self.arr[key]
        if len(part) > 1 and isinstance(key, slice) and key.start == self.row:
            raise KeyboardInterrupt
        return part


def test_a_pass_resumed_twice_counts_every_row_once(tmp_path, data):
    """The second resume of an array pass used to re-read the chunks of the first resume
    (its checkpoint counted chunks from the resume, not from the start)."""
    X, y, _ = data
    ckpt = tmp_path / "pass.ckpt"
    for row in (300, 700):
        with pytest.raises(KeyboardInterrupt):
            accumulate(FailsAt(X, row), y, chunk_size=CHUNK, checkpoint=ckpt, checkpoint_every=2)
    resumed, _ = accumulate(X, y, chunk_size=CHUNK, checkpoint=ckpt, checkpoint_every=2)
    assert resumed.n_samples == N
    np.testing.assert_array_equal(resumed.class_counts, np.bincount(y, minlength=C))
    whole, _ = accumulate(
        X, y, chunk_size=CHUNK, checkpoint=tmp_path / "w.ckpt", checkpoint_every=2
    )
    same_state(resumed, whole)
