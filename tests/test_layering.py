"""The package's layering (DESIGN.md section 6): each module imports only from its own
layer or the layers below, there is no import cycle, and only ``_accumulator`` touches
the compiled ``_core``. Read from the source with ``ast``, so function-level imports
count too."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "python" / "labelranker_fast"
LAYERS = {
    "_core": 0,
    "_inputs": 1,
    "_pages": 1,
    "_io": 1,
    "_ranking_text": 1,
    "_ranking_torch": 1,
    "_ordering": 1,
    "_stability": 1,
    "_folds": 2,
    "_plot": 1,
    "_multilabel": 1,
    "_sklearn_base": 1,
    "_ranking_files": 1,
    "_classifier": 1,  # the LDA classifier maths and the estimator's input checks
    "_accumulator": 2,
    "_ranking": 2,
    "_state": 2,
    "_sources": 3,
    "_labels": 3,
    "_stream": 4,
    "_checkpoint": 4,
}
ENTRY = 5  # _api, _estimator, _cli, dask, torch/, lightning, study/, __init__, __main__


def modules() -> dict[str, pathlib.Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in ROOT.rglob("*.py")}


def layer(name: str) -> int:
    return LAYERS.get(name, ENTRY)


def package_imports(name: str, path: pathlib.Path) -> set[str]:
    """The package modules ``name`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    parts = name.split(".")
    package = parts if path.name == "__init__.py" else parts[:-1]
    if path.name == "__init__.py":
        package = parts[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            if node.module is None or not (
                ROOT.joinpath(*target).with_suffix(".py").exists()
                or ROOT.joinpath(*target).is_dir()
            ):
                # "from . import x" or "from .mod import name": the module is the target
                for alias in node.names:
                    cand = target + [alias.name]
                    if ROOT.joinpath(*cand).with_suffix(".py").exists() or alias.name == "_core":
                        out.add(".".join(cand))
                if node.module is not None:
                    out.add(".".join(target))
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "labelranker_fast"
        ):
            out.add(node.module.split(".", 1)[1] if "." in node.module else "__init__")
    return {m[: -len(".__init__")] if m.endswith(".__init__") else m for m in out} - {name}


@pytest.fixture(scope="module")
def graph():
    return {name: package_imports(name, path) for name, path in modules().items()}


def top(name: str) -> str:
    return name.split(".")[0]


def test_each_module_imports_only_its_layer_or_below(graph):
    wrong = [
        (m, t)
        for m, targets in graph.items()
        for t in targets
        if layer(top(t)) > layer(top(m)) and top(m) not in ("__init__", "__main__")
    ]
    assert not wrong, f"imports that go up a layer: {wrong}"


def test_no_import_cycle(graph):
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            nxt = nxt if nxt in graph else f"{nxt}.__init__" if f"{nxt}.__init__" in graph else nxt
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if nxt in graph and state.get(nxt) is None:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in graph:
        if state.get(node) is None:
            visit(node, [])


def test_only_the_accumulator_touches_the_compiled_core():
    users = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        touches = any(
            isinstance(n, ast.Attribute) and n.attr == "_core" for n in ast.walk(tree)
        ) or any(
            isinstance(n, ast.ImportFrom) and any(a.name == "_core" for a in n.names)
            for n in ast.walk(tree)
        )
        if touches:
            users.append(name)
    assert users == ["_accumulator"]


def test_the_checker_sees_imports(graph):
    """The walk finds what it must, so the tests above can fail."""
    assert "_core" in graph["_accumulator"] and "_io" in graph["_accumulator"]
    assert {"_accumulator", "_checkpoint", "_sources", "_labels"} <= graph["_stream"]
    assert "_api" in graph["torch._extract"]
    assert "study" in graph["_cli"]  # a function-level import


def test_no_source_file_is_over_450_lines():
    src = list(ROOT.rglob("*.py")) + list((ROOT.parents[1] / "cpp").rglob("*.[ch]pp"))
    long = {
        str(p.relative_to(ROOT.parents[1])): n
        for p in src
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, long
