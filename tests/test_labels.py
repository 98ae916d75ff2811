"""Label kinds: one rule in memory, from .npy files, in streams and in partial_fit; the
JSON form gives every kind back with its dtype and values.

The reference for every ranking is the same data ranked on integer codes 0..C-1, where
code k stands for the k-th smallest class value (sorted by Python, not by the library):
the classes and their order must not depend on how the labels are spelled.
"""

import json

import numpy as np
import pandas as pd
import pytest

import labelranker_fast as lrf

N, D = 240, 4


def features(C, seed=0):
    """Rows of class k (k = i % C) around a mean that depends on k, well separated."""
    rng = np.random.default_rng(seed)
    codes = np.arange(N) % C
    means = rng.standard_normal((C, D)) * 3.0
    return means[codes] + 0.3 * rng.standard_normal((N, D)), codes


def reference(C, seed=0):
    X, codes = features(C, seed)
    return X, codes, lrf.rank_labels(X, codes)


def chunks(X, y, sizes=(50, 70, 120)):
    start = 0
    for n in sizes:
        yield X[start : start + n], y[start : start + n]
        start += n


# name -> the class values, in increasing order (as Python sorts them), with their dtype
KINDS = {
    "bool": np.array([False, True]),
    "int8_negative": np.array([-128, -3, 127], dtype=np.int8),
    "int64_extremes": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "uint64_above_2_63": np.array([5, 2**63 + 5, 2**64 - 1], dtype=np.uint64),
    "uint8": np.array([0, 7, 255], dtype=np.uint8),
    "float64": np.array([-1.5, 0.0, 2.25]),
    "float32": np.array([0.1, 0.2, 0.3], dtype=np.float32),
    "float16": np.array([-0.5, 0.333, 1e4], dtype=np.float16),
    "str_unicode": np.array(["a" * 5000, "émile", "日本語"]),
    "bytes_not_utf8": np.array([b"\x00lead", b"abc", b"\xff\xfe"]),
}
assert all(list(v) == sorted(v.tolist()) for v in KINDS.values())


def assert_same_classes(got, want):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_ranks_like_its_codes_in_memory_streamed_and_from_npy(kind, tmp_path):
    values = KINDS[kind]
    X, codes, ref = reference(values.size)
    y = values[codes]
    in_memory = lrf.rank_labels(X, y)
    streamed = lrf.rank_labels(chunks(X, y))
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "X.npy", X)
    from_file = lrf.rank_labels(X, tmp_path / "y.npy")
    both_files = lrf.rank_labels(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), chunk_size=64)
    est = lrf.LabelRanker().fit(X, y)
    for ranking in (in_memory, streamed, from_file, both_files, est.ranking_):
        assert_same_classes(ranking.classes, values)
        np.testing.assert_array_equal(ranking.order, ref.order)
    np.testing.assert_allclose(in_memory.centroids, ref.centroids, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_round_trips_through_json_and_dict(kind, tmp_path):
    values = KINDS[kind]
    X, codes, _ = reference(values.size)
    ranking = lrf.rank_labels(X, values[codes], n_components=min(2, values.size - 1))
    path = tmp_path / "r.json"
    ranking.to_json(path)
    data = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no Python objects
    for again in (
        lrf.LabelRanking.from_json(path),
        lrf.LabelRanking.from_dict(data),
        lrf.LabelRanking.from_dict(ranking.to_dict()),
    ):
        assert_same_classes(again.classes, values)
        assert again == ranking
        np.testing.assert_array_equal(again.positions, ranking.positions)
        np.testing.assert_array_equal(again.remap(values[codes]), ranking.remap(values[codes]))


def test_classes_given_directly_are_kept_with_their_dtype_and_not_frozen_in_place():
    classes = np.array([3, 1, 2], dtype=np.int16)
    centroids = np.array([0.5, 0.1, 0.2])
    ranking = lrf.LabelRanking(classes, [1, 2, 0], centroids, [1.0])
    assert_same_classes(ranking.classes, classes)
    assert classes.flags.writeable and centroids.flags.writeable  # the caller's arrays
    classes[0] = 99
    assert ranking.classes.tolist() == [3, 1, 2]
    big_endian = lrf.LabelRanking(np.array([1, 2], dtype=">i8"), [0, 1], [0.0, 1.0], [1.0])
    assert big_endian.classes.dtype == np.dtype("int64")  # the dtype JSON restores
    again = lrf.LabelRanking.from_dict(big_endian.to_dict())
    assert_same_classes(again.classes, big_endian.classes)
    wide = lrf.LabelRanking(np.array(["a", "bb"], dtype="U40"), [0, 1], [0.0, 1.0], [1.0])
    assert wide.classes.dtype == np.dtype("U2")
    assert_same_classes(lrf.LabelRanking.from_dict(wide.to_dict()).classes, wide.classes)


# ------------------------------------------------------------------- the mixing rule
def test_text_mixed_with_numbers_is_refused_in_memory_streamed_and_in_partial_fit():
    X, codes = features(2)
    mixed = [1 if c else "a" for c in codes]  # numpy would make this ["1", "a", ...]
    with pytest.raises(TypeError, match="y mixes int and str"):
        lrf.rank_labels(X, mixed)
    with pytest.raises(TypeError, match="y mixes int and str"):
        lrf.rank_labels(X, np.array(mixed, dtype=object))
    with pytest.raises(TypeError, match="y mixes int and str"):
        lrf.rank_labels(X, pd.Series(mixed))
    with pytest.raises(TypeError, match="y mixes int and str"):
        lrf.rank_labels(iter([(X, mixed)]))
    with pytest.raises(TypeError, match="y mixes int and str"):
        lrf.LabelRanker().fit(X, mixed)
    est = lrf.LabelRanker()
    with pytest.raises(TypeError, match="y mixes int and str"):
        est.partial_fit(X, mixed, classes=np.array(["1", "a"]))
    assert not hasattr(est, "classes_")
    # each chunk of one kind, but the kinds differ between chunks
    strings = np.array(["a", "b"])[codes]
    with pytest.raises(TypeError, match="cannot be compared"):
        lrf.rank_labels(iter([(X[:100], strings[:100]), (X[100:], codes[100:])]))


def test_str_and_bytes_never_mix():
    X, codes = features(2)
    mixed = [b"a" if c else "a" for c in codes]
    with pytest.raises(TypeError, match="bytes and str"):
        lrf.rank_labels(X, mixed)
    text, raw = np.array(["a", "b"])[codes], np.array([b"a", b"b"])[codes]
    with pytest.raises(TypeError, match="cannot be compared"):
        lrf.rank_labels(iter([(X[:100], text[:100]), (X[100:], raw[100:])]))


def test_numbers_of_different_kinds_are_compared_by_value_in_every_path():
    X, codes, ref = reference(3)
    as_list = [(0, 1.5, 3)[c] for c in codes]  # ints and a float: classes float64
    ints, floats = codes != 1, codes == 1
    streamed = lrf.rank_labels(
        iter([(X[ints], np.array([0, 0, 3])[codes[ints]]), (X[floats], np.full(floats.sum(), 1.5))])
    )
    for ranking in (
        lrf.rank_labels(X, as_list),
        streamed,
        lrf.rank_labels(X, np.array(as_list, dtype=object)),
    ):
        assert_same_classes(ranking.classes, np.array([0.0, 1.5, 3.0]))
        np.testing.assert_array_equal(ranking.order, ref.order)
    # bools and integers: an integer dtype, True is 1
    bool_int = [(False, True, 2)[c] for c in codes]
    for ranking in (
        lrf.rank_labels(X, bool_int),
        lrf.rank_labels(iter([(X[i : i + 1], [bool_int[i]]) for i in range(N)])),
    ):
        assert_same_classes(ranking.classes, np.array([0, 1, 2]))
        np.testing.assert_array_equal(ranking.order, ref.order)


def test_big_integers_are_never_rounded_into_floats():
    X, codes = features(3)
    big = 2**53 + 1  # float64 would make it 2**53
    as_list = [(big, 2**53, 0.5)[c] for c in codes]
    with pytest.raises(TypeError, match="float64 cannot hold"):
        lrf.rank_labels(X, as_list)
    ints = np.array([big, 2**53])[codes[codes < 2]]
    stream = [(X[codes < 2], ints), (X[codes == 2], np.full((codes == 2).sum(), 0.5))]
    with pytest.raises(TypeError, match="no one dtype holds exactly"):
        lrf.rank_labels(iter(stream))


def test_uint64_and_int64_chunks_meet_in_the_dtype_that_holds_both():
    X, codes = features(3)
    values = np.array([1, 2, 2**63 + 5], dtype=np.uint64)
    y = values[codes]
    first, second = codes < 2, codes == 2
    stream = [(X[first], y[first].astype(np.int64)), (X[second], y[second])]
    rows = np.concatenate([np.flatnonzero(first), np.flatnonzero(second)])
    want = lrf.rank_labels(X[rows], codes[rows])
    ranking = lrf.rank_labels(iter(stream))
    assert_same_classes(ranking.classes, values)  # numpy's int64 + uint64 is float64: lossy
    np.testing.assert_array_equal(ranking.order, want.order)
    negative = [(X[first], np.where(codes[first] == 0, -1, 2)), (X[second], y[second])]
    with pytest.raises(TypeError, match="no one dtype holds exactly"):
        lrf.rank_labels(iter(negative))
    with pytest.raises(TypeError, match="64-bit"):
        lrf.rank_labels(X, [(-1, 2, 2**63 + 5)[c] for c in codes])
    with pytest.raises(TypeError, match="64-bit"):
        lrf.rank_labels(X, [(0, 1, 2**64)[c] for c in codes])


def test_minus_zero_and_zero_are_one_class_everywhere():
    X, codes, ref = reference(2)
    y = np.where(codes == 1, 1.0, 0.0)  # code 0 is 0.0, or -0.0 in every fourth row
    y[::4] = np.where(codes[::4] == 1, 1.0, -0.0)
    assert np.signbit(y[codes == 0]).any() and not np.signbit(y[codes == 0]).all()
    for ranking in (lrf.rank_labels(X, y), lrf.rank_labels(chunks(X, y))):
        assert ranking.classes.tolist() == [0.0, 1.0]
        np.testing.assert_array_equal(ranking.order, ref.order)


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
def test_missing_labels_raise_value_error_in_every_path(missing):
    X, codes = features(2)
    text = np.array(["a", "b"], dtype=object)[codes]
    numeric = codes.astype(object)
    for labels in (text, numeric):
        labels[170] = missing  # in the second chunk of the stream
        for y in (labels, list(labels), pd.Series(labels)):
            with pytest.raises(ValueError, match="missing|NaN"):
                lrf.rank_labels(X, y)
            with pytest.raises(ValueError, match="missing|NaN"):
                lrf.rank_labels(iter([(X[:100], y[:100]), (X[100:], y[100:])]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_float_labels_raise_value_error(bad):
    X, codes = features(2)
    y = codes.astype(float)
    y[3] = bad
    for labels in (y, y.astype(np.float32), list(y)):
        with pytest.raises(ValueError, match="NaN or infinity"):
            lrf.rank_labels(X, labels)
        with pytest.raises(ValueError, match="NaN or infinity"):
            lrf.rank_labels(chunks(X, np.asarray(labels)))


@pytest.mark.parametrize(
    "labels, kind",
    [
        (np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), "datetime64"),
        (np.array([1 + 1j, 2 + 0j]), "complex"),
        (np.array([np.timedelta64(1, "s"), np.timedelta64(2, "s")]), "timedelta64"),
        (np.array([(1, 2.0), (2, 3.0)], dtype=[("a", "i4"), ("b", "f8")]), r"\[\("),
        (np.array([1, 2], dtype=np.longdouble) + np.longdouble(2) ** -60, "float128|longdouble"),
    ],
)
def test_other_dtypes_are_refused_before_the_pass_naming_y(labels, kind):
    X, codes = features(2)
    with pytest.raises(TypeError, match=f"y has dtype .*({kind})"):
        lrf.rank_labels(X, labels[codes])


def test_integral_longdouble_labels_are_kept_exactly_as_float64():
    X, codes, ref = reference(2)
    ranking = lrf.rank_labels(X, np.array([1.5, 2.0], dtype=np.longdouble)[codes])
    assert_same_classes(ranking.classes, np.array([1.5, 2.0]))
    np.testing.assert_array_equal(ranking.order, ref.order)


def test_text_with_trailing_nul_is_refused_not_merged():
    X, codes = features(3)
    labels = [("a", "a\x00", "b")[c] for c in codes]  # numpy strings would make "a" twice
    with pytest.raises(ValueError, match="NUL"):
        lrf.rank_labels(X, labels)
    with pytest.raises(ValueError, match="NUL"):
        lrf.rank_labels(X, [s.encode() for s in labels])


def test_object_arrays_of_numpy_scalars_and_unsupported_objects():
    X, codes, ref = reference(3)
    scalars = np.array([np.float32(0.25), np.int8(1), np.uint64(2**63)], dtype=object)
    ranking = lrf.rank_labels(X, scalars[codes])
    assert_same_classes(ranking.classes, np.array([0.25, 1.0, 2.0**63]))
    np.testing.assert_array_equal(ranking.order, ref.order)
    from decimal import Decimal

    for bad in (Decimal(1), (1, 2), object()):
        y = np.array([0, 1, 2], dtype=object)[codes]
        y[5] = bad
        with pytest.raises(TypeError, match="y holds values of type"):
            lrf.rank_labels(X, y)


# ------------------------------------------------------------------------------ pandas
PANDAS = {
    "object_str": (lambda v: pd.Series(v, dtype=object), np.array(["ant", "bee", "cat"])),
    "string": (lambda v: pd.Series(v, dtype="string"), np.array(["ant", "bee", "cat"])),
    "category_str": (lambda v: pd.Series(v, dtype="category"), np.array(["ant", "bee", "cat"])),
    "category_int": (lambda v: pd.Series(v, dtype="category"), np.array([-4, 10, 300])),
    "Int64": (lambda v: pd.Series(v, dtype="Int64"), np.array([-4, 10, 300])),
    "boolean": (lambda v: pd.Series(v, dtype="boolean"), np.array([False, True])),
    "object_bytes": (lambda v: pd.Series(v, dtype=object), np.array([b"a", b"b", b"c"])),
    "default_str": (lambda v: pd.Series(v), np.array(["ant", "bee", "cat"])),
    "UInt64_above_2_63": (
        lambda v: pd.Series(v, dtype="UInt64"),
        np.array([0, 7, 2**63 + 5], dtype=np.uint64),
    ),
    "category_float": (lambda v: pd.Series(v, dtype="category"), np.array([-0.5, 0.25, 8.0])),
    "index_str": (lambda v: pd.Index(v), np.array(["ant", "bee", "cat"])),
}


@pytest.mark.parametrize("kind", list(PANDAS))
def test_pandas_series_are_ranked_like_numpy_arrays_of_their_values(kind):
    make, values = PANDAS[kind]
    X, codes, ref = reference(values.size)
    y = values[codes].tolist()
    series = make(y)
    # A reversed index: labels are taken by position, as np.asarray(series) takes them.
    shuffled = make(y)
    shuffled.index = np.arange(N)[::-1]
    rankings = [
        lrf.rank_labels(X, series),
        lrf.rank_labels(X, shuffled, chunk_size=50),
        lrf.rank_labels(chunks(X, series)),
        lrf.LabelRanker().fit(X, series).ranking_,
    ]
    est = lrf.LabelRanker()
    for X_part, y_part in chunks(X, series):
        est.partial_fit(X_part, y_part, classes=make(values.tolist()))
    rankings.append(est.ranking_)
    for ranking in rankings:
        assert_same_classes(ranking.classes, values)
        np.testing.assert_array_equal(ranking.order, ref.order)
    np.testing.assert_array_equal(rankings[0].remap(series), ref.remap(codes))


def test_pandas_categories_that_never_occur_are_not_classes():
    X, codes, ref = reference(2)
    y = pd.Categorical(np.array(["b", "d"])[codes], categories=["a", "b", "c", "d"])
    ranking = lrf.rank_labels(X, pd.Series(y))
    assert_same_classes(ranking.classes, np.array(["b", "d"]))
    np.testing.assert_array_equal(ranking.order, ref.order)


@pytest.mark.parametrize(
    "make",
    [
        lambda: pd.Series(["a", None, "b"] * 80, dtype="string"),
        lambda: pd.Series(["a", None, "b"] * 80, dtype="category"),
        lambda: pd.Series([1, None, 2] * 80, dtype="Int64"),
        lambda: pd.Series([True, None, False] * 80, dtype="boolean"),
        lambda: pd.Series(["a", np.nan, "b"] * 80, dtype=object),
    ],
)
def test_pandas_missing_values_raise_value_error(make):
    X, _ = features(2)
    with pytest.raises(ValueError, match="missing|NaN"):
        lrf.rank_labels(X, make())
    with pytest.raises(ValueError, match="missing|NaN"):
        lrf.LabelRanker().fit(X, make())
    est = lrf.LabelRanker()
    with pytest.raises(ValueError, match="missing|NaN"):
        est.partial_fit(X, make(), classes=np.unique(make().dropna().to_numpy()))
    assert not hasattr(est, "classes_")


# ------------------------------------------------------------------------- JSON files
def test_version_1_files_as_written_before_still_load(tmp_path):
    """The version 1 writer put ``classes.tolist()`` and no dtype; those files load, with
    integers above 2**63 read as uint64 (version 1's reader made them float64)."""
    v1 = {
        "format": "labelranker_fast/ranking",
        "version": 1,
        "order": [1, 0, 2],
        "centroids": [[0.5], [0.0], [1.0]],
        "eigenvalues": [2.0],
        "shrinkage": 0.0,
    }
    cases = [
        ([3, 7, 11], np.array([3, 7, 11])),
        ([0, 2**63 + 5, 2**64 - 1], np.array([0, 2**63 + 5, 2**64 - 1], dtype=np.uint64)),
        ([-0.5, 1.0, 2.5], np.array([-0.5, 1.0, 2.5])),
        (["ant", "bee", "日本"], np.array(["ant", "bee", "日本"])),
    ]
    for classes, want in cases:
        path = tmp_path / "v1.json"
        path.write_text(json.dumps(dict(v1, classes=classes)), encoding="utf-8")
        ranking = lrf.LabelRanking.from_json(path)
        assert_same_classes(ranking.classes, want)
        assert ranking.order.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="malformed ranking.*mixes"):
        lrf.LabelRanking.from_dict(dict(v1, classes=[1, "a", 2]))
    # a dtype field means nothing in version 1 (it had none)
    ranking = lrf.LabelRanking.from_dict(dict(v1, classes=[1, 2, 3], classes_dtype="uint8"))
    assert_same_classes(ranking.classes, np.array([1, 2, 3]))


@pytest.mark.parametrize(
    "dtype, classes, message",
    [
        ("int8", [1, 2, 300], "exactly as int8"),
        ("uint64", [-1, 2, 3], "exactly as uint64"),
        ("uint64", [1, 2, 2**64], "exactly as uint64"),
        ("int64", [1, 2, True], "JSON int"),
        ("bool", [True, False, 1], "JSON bool"),
        ("float32", [0.1, 0.2, 0.3], "exactly as float32"),  # float64 values, not float32's
        ("float64", [0.5, 1.0, float("nan")], "exactly|NaN"),
        ("float64", [0.5, 1.0, float("inf")], "NaN or infinity"),
        ("str", ["a", "b", 3], "JSON str"),
        ("str", ["a", "b", "b\u0000"], "exactly as str"),
        ("bytes", ["a", "b", "\u0100"], "below 256"),
        ("datetime64", ["a", "b", "c"], "classes_dtype must be one of"),
        (["int64"], [1, 2, 3], "classes_dtype must be one of"),
    ],
)
def test_version_2_classes_must_be_exactly_their_dtype(dtype, classes, message):
    X, codes, _ = reference(3)
    data = lrf.rank_labels(X, codes).to_dict()
    data.update(classes=classes, classes_dtype=dtype)
    with pytest.raises(ValueError, match=message):
        lrf.LabelRanking.from_dict(data)


def test_version_2_without_a_dtype_or_with_a_bad_version_is_refused():
    X, codes, _ = reference(3)
    data = lrf.rank_labels(X, codes).to_dict()
    assert data["version"] == 3 and data["classes_dtype"] == "int64"
    del data["names"]
    data["version"] = 2
    assert lrf.LabelRanking.from_dict(data) == lrf.rank_labels(X, codes)  # version 2 still read
    for version in (True, 4, "2", 2.0, None):
        with pytest.raises(ValueError, match="unsupported ranking version"):
            lrf.LabelRanking.from_dict(dict(data, version=version))
    del data["classes_dtype"]
    with pytest.raises(ValueError, match="classes_dtype"):
        lrf.LabelRanking.from_dict(data)
    with pytest.raises(ValueError, match="JSON list"):
        lrf.LabelRanking.from_dict(dict(data, version=1, classes="abc"))
