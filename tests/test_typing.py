"""The public API as a type checker sees it: mypy flags a wrong argument type in a user's
script and passes a correct one (py.typed and the annotations ship with the package)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest

import labelranker_fast as lrf

HEADER = (
    "import numpy as np\nimport labelranker_fast as lrf\n\n"
    "X, y = np.zeros((4, 2)), np.arange(4) % 2\n"
)


def run_mypy(tmp_path, body: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is not installed (the test extra brings it)")
    script = tmp_path / "user_script.py"
    script.write_text(HEADER + textwrap.dedent(body))
    cmd = [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")]
    cmd += ["--no-error-summary", "--hide-error-context", str(script)]
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)


def test_mypy_flags_a_wrong_argument_type(tmp_path):
    out = run_mypy(tmp_path, 'ranking = lrf.rank_labels(X, y, n_components="two")\n')
    line = HEADER.count("\n") + 1
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [s for s in out.stdout.splitlines() if ": error:" in s]
    assert len(errors) == 1, out.stdout
    assert f"user_script.py:{line}:" in errors[0] and "n_components" in errors[0], errors


def test_mypy_passes_a_correct_script(tmp_path):
    body = """
        ranking: lrf.LabelRanking = lrf.rank_labels(X, y, shrinkage="oas", n_components=1)
        acc = lrf.ScatterAccumulator(2, 2).update(X, y)
        order: np.ndarray = acc.rank(shrinkage=0.1).order
        est = lrf.LabelRanker(shrinkage=None).fit(X, y)
        Z: np.ndarray = est.transform(X)
        reveal_type(lrf.rank_labels)
    """
    out = run_mypy(tmp_path, body)
    assert out.returncode == 0, out.stdout + out.stderr
    # The signature mypy sees is the annotated one, not Any.
    assert "n_components: int =" in out.stdout, out.stdout
    assert "shrinkage: Literal['oas'] | float | None" in out.stdout, out.stdout


def test_version_in_one_place():
    assert lrf.__version__ == importlib.metadata.version("labelranker_fast")
