"""torch.distributed: two processes on the gloo backend (loopback) each see half of the
data; after all_reduce_ both hold the statistics of one process over all of it."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

import labelranker_fast as lrf  # noqa: E402

WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler
    import labelranker_fast as lrf
    from labelranker_fast.torch import all_reduce_, extract_and_rank

    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    X, y = load_digits(return_X_y=True)
    X, y = X[:1796], y[:1796]  # a multiple of the world size: the sampler pads nothing

    # 1. all_reduce_ on accumulators of two different shards.
    shard = slice(0, 1000) if rank == 0 else slice(1000, None)
    acc = lrf.ScatterAccumulator(64, 10).update(X[shard], y[shard])
    all_reduce_(acc)

    # 2. extract_and_rank with a DistributedSampler: combined for the caller.
    torch.manual_seed(0)  # float64 features: shards and the whole agree to rounding
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh()).double()
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = DataLoader(data, batch_size=100, sampler=DistributedSampler(data, shuffle=False))
    ranking, facc = extract_and_rank(model, loader, num_classes=10, shrinkage="oas",
                                     device="cpu", progress=False, return_accumulator=True)
    state = {f"acc_{k}": v for k, v in acc.get_state().items()}
    state.update({f"feat_{k}": v for k, v in facc.get_state().items()})
    np.savez(out, order=ranking.order, **state)
    dist.destroy_process_group()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    folder = tmp_path_factory.mktemp("dist")
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(r), port, str(folder / f"{r}.npz")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return [dict(np.load(folder / f"{r}.npz")) for r in range(2)]


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def test_all_reduce_gives_every_rank_the_whole_data_set(two_ranks):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:1796], y[:1796]
    whole = lrf.ScatterAccumulator(64, 10).update(X, y)
    for k in ("counts", "shifts", "sums", "m2", "n_rows"):  # ranks identical, bit for bit
        np.testing.assert_array_equal(two_ranks[0][f"acc_{k}"], two_ranks[1][f"acc_{k}"])
    got = lrf.ScatterAccumulator.from_state(
        {k[4:]: v for k, v in two_ranks[0].items() if k.startswith("acc_")}
    )
    assert got.n_samples == 1796
    np.testing.assert_array_equal(got.class_counts, whole.class_counts)
    assert rel(got.within_scatter(), whole.within_scatter()) < 1e-12
    assert rel(got.between_scatter(), whole.between_scatter()) < 1e-12
    assert rel(got.class_means, whole.class_means) < 1e-12


def test_extract_and_rank_with_a_distributed_sampler(two_ranks):
    from sklearn.datasets import load_digits

    from labelranker_fast.torch import extract_and_rank

    X, y = load_digits(return_X_y=True)
    X, y = X[:1796], y[:1796]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh()).double()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=100
    )
    want, whole = extract_and_rank(
        model,
        loader,
        num_classes=10,
        shrinkage="oas",
        device="cpu",
        progress=False,
        return_accumulator=True,
    )
    np.testing.assert_array_equal(two_ranks[0]["order"], want.order)
    np.testing.assert_array_equal(two_ranks[1]["order"], want.order)
    got = lrf.ScatterAccumulator.from_state(
        {k[5:]: v for k, v in two_ranks[1].items() if k.startswith("feat_")}
    )
    assert got.n_samples == 1796
    assert rel(got.within_scatter(), whole.within_scatter()) < 1e-12


def test_all_reduce_needs_an_initialised_group():
    from labelranker_fast.torch import all_reduce_

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(RuntimeError, match="not initialised"):
        all_reduce_(lrf.ScatterAccumulator(3, 2))
    with pytest.raises(TypeError):
        all_reduce_(object())
