"""Entry points keep their state on failure, and the command line never shows a
traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import labelranker_fast as lrf

pytest.importorskip("sklearn")


def blobs(seed=0, n=300, d=5, C=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    return rng.standard_normal((C, d))[y] * 3 + rng.standard_normal((n, d)), y


def fitted_state(est) -> dict:
    out = {}
    for k, v in vars(est).items():
        if k == "_accumulator":
            out[k] = {a: np.copy(b) for a, b in v.get_state().items()}
        elif isinstance(v, np.ndarray):
            out[k] = v.copy()
        else:
            out[k] = v
    return out


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert_same(a[k], b[k])
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def test_a_failed_fit_leaves_the_estimator_as_it_was():
    X, y = blobs()
    est = lrf.LabelRanker(shrinkage=None, n_components=2).fit(X, y)
    before = fitted_state(est)
    # New labels, but a singular within-class scatter: the solve fails after the pass.
    X_bad = np.hstack([X, np.zeros((len(X), 1))])
    with pytest.raises(ValueError, match="shrinkage"):
        est.fit(X_bad, np.array(["a", "b", "c"])[y])
    assert_same(fitted_state(est), before)
    with pytest.raises(ValueError):
        est.fit(X, y[:-1])
    assert_same(fitted_state(est), before)


def test_a_failed_partial_fit_keeps_no_rows():
    X, y = blobs()
    est = lrf.LabelRanker().partial_fit(X, y, classes=[0, 1, 2])
    before = fitted_state(est)
    with pytest.raises(ValueError, match="NaN"):
        est.partial_fit(np.full((4, 5), np.nan), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError):
        est.partial_fit(X[:3], np.array([0, 1, 7]))  # an unknown label
    with pytest.raises(ValueError):
        est.partial_fit(np.full((3, 5), np.inf), np.array([0, 1, 2]))
    assert_same(fitted_state(est), before)
    # The solve fails after the rows were added: they must not stay.
    est2 = lrf.LabelRanker()
    with pytest.raises(ValueError, match="shrinkage"):
        est2.partial_fit(X[:3], y[:3], classes=[0, 1, 2])  # 3 rows, 5 features: singular
    assert not hasattr(est2, "_accumulator") and not hasattr(est2, "classes_")
    est2.partial_fit(X, y, classes=[0, 1, 2])
    assert est2._accumulator.n_samples == len(X)


def run_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "labelranker_fast", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


@pytest.mark.parametrize(
    "make", ["missing", "empty", "directory", "mismatch", "singular", "strings"]
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path, make):
    X, y = blobs()
    xp, yp = tmp_path / "X.npy", tmp_path / "y.npy"
    np.save(xp, X)
    np.save(yp, y)
    if make == "missing":
        xp = tmp_path / "nope.npy"
    elif make == "empty":
        xp.write_bytes(b"")
    elif make == "directory":
        xp = tmp_path
    elif make == "mismatch":
        np.save(yp, y[:-1])
    elif make == "singular":
        np.save(xp, np.hstack([X, np.zeros((len(X), 1))]))
    else:
        np.save(xp, np.array(["a", "b"]))
    out = run_cli("rank", str(xp), str(yp), "--no-progress")
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelranker: error:"), out.stderr
    assert "Traceback" not in out.stderr


def test_cli_ctrl_c_exits_130_without_a_traceback(tmp_path):
    X, y = blobs(n=60_000, d=8)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    # One-row chunks make the pass take seconds; the progress bar's first output on
    # standard error says that the pass has started.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labelranker_fast",
            "rank",
            str(tmp_path / "X.npy"),
            str(tmp_path / "y.npy"),
            "--chunk-size",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stderr.read(1)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = first + err
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and err.rstrip().endswith("labelranker: interrupted"), err


def test_cli_bad_arguments_exit_2():
    for args in (
        ("rank", "a.npy"),
        ("rank", "a.npy", "b.npy", "--shrinkage", "lots"),
        ("nonsense",),
        ("study", "--seeds", "x"),
    ):
        out = run_cli(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, (args, out.stderr)
        assert lines[0].startswith("labelranker: error:") and "Traceback" not in out.stderr
    assert run_cli("--help").returncode == 0


def test_cli_version_is_the_package_version():
    out = run_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"labelranker_fast {lrf.__version__}"


def ranked_reference(X, y):
    """The order computed in Python, for the command's files to be checked against."""
    return lrf.rank_labels(X, y)


def test_cli_rank_names_class_map_and_label_maps(tmp_path):
    X, y = blobs(C=4)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    names = ["n0", "zebra", "10", "a b"]  # names[k] names label k
    # A BOM, Windows line ends and no final newline are all read as the same names.
    (tmp_path / "names.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(names).encode())
    files = {f: tmp_path / f for f in ("r.json", "map.txt", "maps.json")}
    out = run_cli(
        "rank", tmp_path / "X.npy", tmp_path / "y.npy", "--no-progress",
        "--names", tmp_path / "names.txt", "-o", files["r.json"],
        "--class-map", files["map.txt"], "--label-maps", files["maps.json"],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    order = ranked_reference(X, y).order
    lines = files["map.txt"].read_text().split("\n")
    assert lines == [names[c] for c in order] + [""]
    ranking = lrf.LabelRanking.from_json(files["r.json"])
    assert ranking.names == tuple(names) and list(ranking.ranked_names) == lines[:-1]
    maps = json.loads(files["maps.json"].read_text())
    assert maps == {
        "id2label": {str(p): names[c] for p, c in enumerate(order)},
        "label2id": {names[c]: p for p, c in enumerate(order)},
    }
    assert "zebra" in out.stdout  # the printed table names the classes


def test_cli_rank_class_map_of_text_labels_needs_no_names(tmp_path):
    X, y = blobs()
    labels = np.array(["cat", "dog", "emu"])[y]
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", labels)
    out = run_cli("rank", tmp_path / "X.npy", tmp_path / "y.npy", "--no-progress",
                  "--class-map", tmp_path / "map.txt")  # fmt: skip
    assert out.returncode == 0, out.stderr
    order = ranked_reference(X, labels).order
    assert tmp_path.joinpath("map.txt").read_text() == "".join(
        f"{['cat', 'dog', 'emu'][c]}\n" for c in order
    )


@pytest.mark.parametrize(
    "case", ["too few", "empty line", "duplicate", "missing", "not utf-8", "no names, int labels"]
)
def test_cli_rank_bad_names_are_one_line_errors_and_write_nothing(tmp_path, case):
    X, y = blobs()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    names = tmp_path / "names.txt"
    text, expect = {
        "too few": (b"a\nb\n", "has 2 entries but the ranking has 3"),
        "empty line": (b"a\n\nc\n", "line 2 is empty"),
        "duplicate": (b"a\nb\na\n", "duplicates"),
        "missing": (None, "no such file"),
        "not utf-8": (b"a\n\xff\nc\n", "not UTF-8"),
        "no names, int labels": (None, "--class-map of integer labels needs --names"),
    }[case]
    if text is not None:
        names.write_bytes(text)
    args = ["rank", tmp_path / "X.npy", tmp_path / "y.npy", "--no-progress",
            "-o", tmp_path / "r.json", "--class-map", tmp_path / "map.txt"]  # fmt: skip
    if case != "no names, int labels":
        args += ["--names", names]
    out = run_cli(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("labelranker: error:") and expect in lines[0], out.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "map.txt").exists()


def test_cli_rank_works_and_extract_says_what_it_needs_without_torch(tmp_path):
    X, y = blobs()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    hide = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'torchvision', 'timm', 'transformers'}:\n"
        "            raise ImportError('hidden: ' + name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from labelranker_fast._cli import main\n"
        "status = main(sys.argv[1:])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(status)\n"
    )

    def run(*args):
        return subprocess.run([sys.executable, "-c", hide, *map(str, args)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    out = run("rank", tmp_path / "X.npy", tmp_path / "y.npy", "--no-progress",
              "-o", tmp_path / "r.json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert lrf.LabelRanking.from_json(tmp_path / "r.json") == ranked_reference(X, y)
    out = run("extract", "--model", "timm:resnet18", "--data", tmp_path, "-o", tmp_path / "e.json")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "extract needs PyTorch" in lines[0] and "Traceback" not in out.stderr


def test_rank_folds_method_and_plot_options(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 3000)
    X = np.outer(y, rng.normal(size=8)) + rng.normal(size=(3000, 8))
    np.save(tmp_path / "f.npy", X)
    np.save(tmp_path / "l.npy", y)
    out = run_cli(
        "rank", str(tmp_path / "f.npy"), str(tmp_path / "l.npy"), "--folds", "4",
        "--method", "seriation", "--n-components", "2", "--plot", str(tmp_path / "r.png"),
        "-o", str(tmp_path / "r.json"), "--no-progress",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    want = lrf.rank_labels(X, y, folds=4, method="seriation", n_components=2)
    got = lrf.LabelRanking.from_json(tmp_path / "r.json")
    assert got == want and got.stability == want.stability
    assert f"mean Kendall tau {want.stability.kendall_tau:.3f}" in out.stdout
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli("rank", str(tmp_path / "f.npy"), str(tmp_path / "l.npy"), "--folds", "1")
    assert bad.returncode == 2 and "folds must be >= 2" in bad.stderr
    missing = run_cli(
        "rank", str(tmp_path / "f.npy"), str(tmp_path / "l.npy"), "--plot", "/no/such/p.png"
    )
    assert missing.returncode == 2 and "--plot" in missing.stderr
