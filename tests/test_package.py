"""Packaging promises: optional dependencies, zero-copy inputs, thread safety, the CLI."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import labelranker_fast as lrf
from conftest import make_blobs, reference_scatter
from labelranker_fast._inputs import as_features

HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {mods}:
            raise ImportError('hidden: ' + name)
sys.meta_path.insert(0, Hide())
"""


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_imports_and_ranks_without_torch_or_sklearn():
    code = (
        HIDE.format(mods={"torch", "sklearn", "scipy"})
        + """
import numpy as np
import labelranker_fast as lrf
rng = np.random.default_rng(0)
y = np.repeat([0, 1, 2], 50)
X = rng.standard_normal((150, 4)) + 3.0 * np.eye(4)[y]
est = lrf.LabelRanker(shrinkage=None).fit(X, y)
assert est.get_params() == {"n_components": 1, "shrinkage": None, "n_threads": None,
                          "method": "anchor", "folds": None}
assert 'torch' not in sys.modules and 'sklearn' not in sys.modules
assert 'scipy' not in sys.modules
print(json.dumps({"order": est.order_.tolist(), "scalings": est.scalings_.tolist(),
                  "means": est.means_.tolist()}))
"""
    )
    out = run_python(code.replace("import numpy as np", "import json\nimport numpy as np", 1))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # Checked here, where scipy is importable, against an independent reference on the
    # same data (the child's generator, reproduced).
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 50)
    X = rng.standard_normal((150, 4)) + 3.0 * np.eye(4)[y]
    order, W, means = reference_lda(X, y, 3, n_components=1)
    assert got["order"] == order.tolist()
    np.testing.assert_allclose(got["scalings"], W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["means"], means, rtol=1e-12)


def reference_lda(X, y, num_classes, n_components):
    """(order, directions, class means) by float64 two-pass LDA and scipy.linalg.eigh, with
    the conventions of DESIGN.md section 2 (largest-magnitude coefficient positive, W^T S W
    = I with S = S_w / N, classes by distance to the one with the smallest first centroid)."""
    from scipy.linalg import eigh

    Sw, Sb, means = reference_scatter(X, y, num_classes)
    N = len(X)
    evals, evecs = eigh(Sb / N, Sw / N)  # ascending; evecs^T (Sw / N) evecs = I
    W = evecs[:, ::-1][:, :n_components]
    W = W * np.sign(W[np.abs(W).argmax(axis=0), np.arange(n_components)])
    counts = np.bincount(y, minlength=num_classes)
    centroids = (means - counts @ means / N) @ W
    anchor = centroids[:, 0].argmin()
    order = np.argsort(np.linalg.norm(centroids - centroids[anchor], axis=1), kind="stable")
    return order, W, means


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contiguous_float_input_is_not_copied(dtype):
    X = np.ones((10, 3), dtype=dtype)
    assert as_features(X) is X or np.shares_memory(as_features(X), X)
    mm = X[2:7]  # a row slice stays C-contiguous
    assert np.shares_memory(as_features(mm), X)
    # Anything else is converted once, to float64.
    assert as_features(X.T).flags.c_contiguous
    assert as_features(np.ones((4, 2), dtype=np.int32)).dtype == np.float64


def test_torch_tensor_input_without_copy():
    torch = pytest.importorskip("torch")
    X, y = make_blobs(3, n=500, d=6, C=4, dtype=np.float32)
    t = torch.from_numpy(X)
    assert np.shares_memory(as_features(t), X)
    ranking = lrf.rank_labels(t, torch.from_numpy(y))
    np.testing.assert_array_equal(ranking.order, lrf.rank_labels(X, y).order)
    pos = ranking.remap(torch.from_numpy(y))
    assert isinstance(pos, torch.Tensor)
    np.testing.assert_array_equal(pos.numpy(), ranking.remap(y))
    np.testing.assert_array_equal(ranking.unmap(pos).numpy(), y)
    half = torch.from_numpy(X).to(torch.bfloat16)
    assert lrf.rank_labels(half, y).n_classes == 4


def test_concurrent_updates_are_serialised():
    X, y = make_blobs(2, n=40000, d=20, C=5)
    shared = lrf.ScatterAccumulator(20, 5)
    parts = np.array_split(np.arange(len(X)), 8)
    threads = [threading.Thread(target=shared.update, args=(X[p], y[p])) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = lrf.ScatterAccumulator(20, 5).update(X, y)
    assert shared.n_samples == len(X)
    np.testing.assert_allclose(shared.within_scatter(), single.within_scatter(), rtol=1e-10)


def test_cli_default_ranks_digits():
    out = subprocess.run(
        [sys.executable, "-m", "labelranker_fast"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("order: ")
    order = [int(v) for v in last.split()[1:]]
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    assert order == lrf.rank_labels(X, y, shrinkage="oas").ranked_classes.tolist()


def test_cli_rank_files(tmp_path):
    from labelranker_fast._cli import main

    X, y = make_blobs(5, n=300, d=4, C=3)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "r.json"
    assert main(["rank", str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), "-o", str(out)]) == 0
    assert lrf.LabelRanking.from_json(out) == lrf.rank_labels(X, y)
    np.save(tmp_path / "y_short.npy", y[:10])
    assert main(["rank", str(tmp_path / "X.npy"), str(tmp_path / "y_short.npy")]) == 2
