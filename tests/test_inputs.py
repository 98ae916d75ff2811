"""labelranker_fast._inputs: argument checks and conversions, done once, before the engine."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from labelranker_fast._inputs import (
    INT32_MAX,
    as_class_indices,
    as_features,
    as_weights,
    check_int,
    check_n_features,
    in_memory,
    is_path,
    is_sliceable,
    parse_shrinkage,
)


def test_features_in_place_when_they_already_qualify():
    for dtype in (np.float32, np.float64):
        X = np.ones((5, 3), dtype=dtype)
        assert as_features(X) is X or np.shares_memory(as_features(X), X)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.ones((3, 5))[:, ::2],  # not contiguous
        lambda: np.asfortranarray(np.ones((4, 3))),  # Fortran order
        lambda: np.ones((4, 3), dtype=">f8"),  # byte-swapped
        lambda: np.frombuffer(b"\0" + bytes(8 * 12), dtype=np.float64, offset=1).reshape(4, 3),
        lambda: np.arange(12, dtype=np.int16).reshape(4, 3),  # integers: widened to float64
        lambda: [[1, 2], [3, 4]],  # nested lists
    ],
)
def test_other_layouts_and_dtypes_are_converted_once(make):
    X = make()
    out = as_features(X)
    assert out.flags.c_contiguous and out.flags.aligned and out.dtype.isnative
    assert out.dtype in (np.float32, np.float64)
    np.testing.assert_array_equal(out, np.asarray(X, dtype=np.float64))


@pytest.mark.parametrize(
    "bad, kind, match",
    [
        (np.ones((2, 2), dtype=np.complex64), TypeError, "complex"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
        (np.ones(3), ValueError, "2-D"),
        (np.ones((2, 2, 2)), ValueError, "2-D"),
    ],
)
def test_features_refused_with_a_reason(bad, kind, match):
    with pytest.raises(kind, match=match):
        as_features(bad, name="X")


def test_class_indices_and_weights():
    y = as_class_indices(np.array([0, 2, 1], dtype=np.uint8), 3, 3)
    assert y.dtype == np.int64 and y.tolist() == [0, 2, 1]
    with pytest.raises(TypeError, match="integer class indices"):
        as_class_indices(np.array([0.0, 1.0]), 2, 2)
    with pytest.raises(ValueError, match="3 entries but X has 2"):
        as_class_indices(np.array([0, 1, 1]), 2, 2)
    with pytest.raises(ValueError, match="outside"):
        as_class_indices(np.array([2**63 + 1], dtype=np.uint64), 1, 2)
    assert as_weights(None, 3) is None
    w = as_weights(np.array([1, 2, 3], dtype=np.int32), 3)
    assert w.dtype == np.float64 and w.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="sample_weight has 2 entries"):
        as_weights(np.ones(2), 3)
    with pytest.raises(TypeError, match="sample_weight must be numeric"):
        as_weights(np.array(["a", "b"]), 2)


@pytest.mark.parametrize(
    "value, out",
    [
        (None, ("none", 0.0)),
        ("oas", ("oas", 0.0)),
        ("OAS", ("oas", 0.0)),
        (0, ("fixed", 0.0)),
        (0.25, ("fixed", 0.25)),
        (1, ("fixed", 1.0)),
        (np.float32(0.5), ("fixed", 0.5)),
    ],
)
def test_shrinkage_accepted(value, out):
    assert parse_shrinkage(value) == out


@pytest.mark.parametrize(
    "value, kind",
    [
        ("ledoit", ValueError),
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (True, TypeError),
        ([0.1], TypeError),
        (b"oas", TypeError),
    ],
)
def test_shrinkage_refused(value, kind):
    with pytest.raises(kind, match="shrinkage"):
        parse_shrinkage(value)


def test_check_int_ranges_and_kinds():
    assert check_int(np.int64(5), "k", 1) == 5 and type(check_int(np.int64(5), "k", 1)) is int
    with pytest.raises(TypeError, match="k must be an int"):
        check_int(5.0, "k", 1)
    with pytest.raises(TypeError, match="k must be an int"):
        check_int(True, "k", 0)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        check_int(0, "k", 1)
    with pytest.raises(ValueError, match=f"k must be <= {INT32_MAX}"):
        check_int(2**40, "k", 1, INT32_MAX)
    with pytest.raises(ValueError, match="num_classes must be <="):
        check_int(2**70, "num_classes", 2)
    check_n_features(4, 4)
    with pytest.raises(
        ValueError, match="X has 5 features but the accumulator was created with n_features=4"
    ):
        check_n_features(5, 4)


class Sliceable:
    shape = (3, 2)

    def __getitem__(self, key):
        return np.zeros((3, 2))[key]


def test_input_kinds(tmp_path):
    for p in ("a.npy", b"a.npy", pathlib.Path("a.npy")):
        assert is_path(p) and not in_memory(p)
    assert not is_path(np.zeros(3)) and not is_path(["a.npy"])
    assert in_memory(np.zeros((2, 2))) and in_memory([[1.0, 2.0]])
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    assert not in_memory(np.load(tmp_path / "x.npy", mmap_mode="r"))  # streamed
    assert is_sliceable(Sliceable()) and not in_memory(Sliceable())
    assert not is_sliceable([1, 2]) and not is_sliceable(iter([]))
    assert os.fspath(pathlib.Path("a")) == "a"
