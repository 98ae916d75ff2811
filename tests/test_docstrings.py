"""Every public function and method has numpydoc sections: Parameters when it takes
arguments (Attributes will do for a dataclass), Returns (or Yields) when it returns
something, and Raises when it takes arguments (they are validated). Found by walking
``__all__`` of each public module."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect

import pytest

MODULES = ["labelranker_fast", "labelranker_fast.dask", "labelranker_fast.study"]
OPTIONAL = {"labelranker_fast.torch": "torch", "labelranker_fast.lightning": "lightning"}


def public_callables(module):
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if issubclass(obj, BaseException):
                continue
            yield f"{module.__name__}.{name}", obj
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                if inspect.isfunction(value):
                    yield f"{module.__name__}.{name}.{attr}", value
        elif inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj


def missing_sections(obj) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    params = [p for p in sig.parameters if p not in ("self", "cls")]
    record = dataclasses.is_dataclass(obj)  # fields, no validation: Attributes will do
    missing = []
    if params and "Parameters\n----------" not in doc:
        if not (record and "Attributes\n----------" in doc):
            missing.append("Parameters")
    returns = sig.return_annotation
    if inspect.isclass(obj):
        returns = None
    if returns not in (None, "None", inspect.Signature.empty) and not any(
        f"{s}\n{'-' * len(s)}" in doc for s in ("Returns", "Yields")
    ):
        missing.append("Returns")
    if params and not record and "Raises\n------" not in doc:
        missing.append("Raises")
    return missing


def modules():
    out = [importlib.import_module(name) for name in MODULES]
    for name, needs in OPTIONAL.items():
        try:
            importlib.import_module(needs)
        except ImportError:
            continue
        if importlib.util.find_spec(name) is None:  # an integration not written yet
            continue
        out.append(importlib.import_module(name))
    return out


def test_public_api_has_numpydoc_sections():
    gaps = {}
    for module in modules():
        for qualname, obj in public_callables(module):
            missing = missing_sections(obj)
            if missing:
                gaps[qualname] = missing
    assert gaps == {}


def test_the_check_sees_a_missing_section():
    def documented(x: int) -> int:
        """Doubles.

        Parameters
        ----------
        x : int

        Returns
        -------
        int

        Raises
        ------
        TypeError
        """
        return 2 * x

    def undocumented(x: int) -> int:
        """Doubles x."""
        return 2 * x

    assert missing_sections(documented) == []
    assert missing_sections(undocumented) == ["Parameters", "Returns", "Raises"]


@pytest.mark.parametrize("name", MODULES)
def test_modules_declare_all(name):
    assert importlib.import_module(name).__all__
