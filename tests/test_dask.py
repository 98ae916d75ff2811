"""labelranker_fast.dask: per-block accumulators merged in a tree, on the threaded
scheduler and on a LocalCluster of separate worker processes, against the in-memory pass."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import labelranker_fast as lrf  # noqa: E402
from conftest import reference_scatter  # noqa: E402
from labelranker_fast import dask as lrf_dask  # noqa: E402

N, D, C = 3000, 16, 7


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    y = rng.integers(0, C, N)
    X = rng.standard_normal((N, D)) + 2.0 * rng.standard_normal((C, D))[y] + 50.0
    names = np.array([f"class-{k}" for k in range(C)])[y]
    return X, y, names


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def check_against_memory(acc, X, y):
    # An independent float64 two-pass reference first, then the in-memory pass.
    Sw, Sb, means = reference_scatter(X, y, C)
    np.testing.assert_array_equal(acc.class_counts, np.bincount(y, minlength=C))
    assert rel(acc.within_scatter(), Sw) < 1e-12
    assert rel(acc.between_scatter(), Sb) < 1e-12
    assert rel(acc.class_means, means) < 1e-12
    whole = lrf.ScatterAccumulator(D, C).update(X, y)
    np.testing.assert_array_equal(acc.class_counts, whole.class_counts)
    assert acc.n_samples == N
    assert rel(acc.within_scatter(), whole.within_scatter()) < 1e-12
    assert rel(acc.between_scatter(), whole.between_scatter()) < 1e-12
    assert rel(acc.class_means, whole.class_means) < 1e-12


def test_threaded_scheduler(data):
    X, y, names = data
    dX = da.from_array(X, chunks=(250, 8))  # column chunks too: rechunked to whole rows
    acc, classes = lrf_dask.accumulate(dX, da.from_array(names, chunks=400), scheduler="threads")
    np.testing.assert_array_equal(classes, np.unique(names))
    check_against_memory(acc, X, y)
    got = lrf_dask.rank_labels(dX, names, shrinkage="oas", scheduler="threads")
    assert got.order.tolist() == lrf.rank_labels(X, names, shrinkage="oas").order.tolist()


def test_local_cluster_of_worker_processes(data):
    distributed = pytest.importorskip("distributed")
    X, y, _ = data
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dX = da.from_array(X, chunks=(300, D))
        with distributed.get_task_stream(client=client) as stream:
            acc, _ = lrf_dask.accumulate(dX, y, num_classes=C)
        # The blocks really ran on the workers: the scheduler's record of every executed
        # task names the worker; each of the two worker processes ran some block tasks.
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        blocks = {}
        for record in stream.data:
            if isinstance(record["key"], str) and record["key"].startswith("_block_state-"):
                blocks.setdefault(record["worker"], set()).add(record["key"])
        assert sum(len(keys) for keys in blocks.values()) == N // 300  # every block once
        assert set(blocks) == workers, f"block tasks per worker: {blocks}"
        ranking = lrf_dask.rank_labels(dX, y, num_classes=C)
    check_against_memory(acc, X, y)
    assert ranking.order.tolist() == lrf.rank_labels(X, y).order.tolist()


def test_weights_and_errors(data):
    X, y, _ = data
    w = np.random.default_rng(0).uniform(0.1, 2.0, N)
    acc, _ = lrf_dask.accumulate(
        da.from_array(X, chunks=500), y, sample_weight=w, scheduler="threads"
    )
    whole = lrf.ScatterAccumulator(D, C).update(X, y, w)
    assert rel(acc.within_scatter(), whole.within_scatter()) < 1e-12
    with pytest.raises(ValueError, match="entries"):
        lrf_dask.accumulate(da.from_array(X, chunks=500), y[:10], scheduler="threads")
    with pytest.raises(ValueError, match="2-D"):
        lrf_dask.accumulate(da.from_array(y, chunks=500), y, scheduler="threads")
    with pytest.raises(ValueError, match="class index"):
        lrf_dask.accumulate(da.from_array(X, chunks=500), y, num_classes=3, scheduler="threads")
