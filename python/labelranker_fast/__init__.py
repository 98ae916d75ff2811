"""labelranker_fast: order classification labels by LDA on pretrained features.

Fast, streaming implementation of the Label Ranker method: accumulate LDA statistics in one
pass (C++/BLAS), solve the generalized eigenproblem, and order the classes by their
centroids on the top discriminant direction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING


def _load_openblas() -> None:
    # The engine links against scipy-openblas32's libscipy_openblas.so. An RPATH finds it in
    # a regular install; loading it by path first also covers other layouts.
    import ctypes
    import os

    try:
        import scipy_openblas32
    except ImportError:  # the RPATH may still find it
        return
    lib_dir = scipy_openblas32.get_lib_dir()
    lib = os.path.join(lib_dir, scipy_openblas32.get_library(fullname=True))
    if os.path.exists(lib):
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


_load_openblas()

from ._accumulator import ScatterAccumulator  # noqa: E402
from ._api import rank_labels  # noqa: E402
from ._ranking import LabelRanking  # noqa: E402
from ._version import __version__  # noqa: E402

if TYPE_CHECKING:  # loaded lazily at run time (see __getattr__)
    from ._estimator import LabelRanker
__all__ = ["rank_labels", "ScatterAccumulator", "LabelRanking", "LabelRanker", "__version__"]


def __getattr__(name):
    # LabelRanker is loaded on first use: it subclasses scikit-learn's BaseEstimator when
    # scikit-learn is installed, and importing that is slow.
    if name == "LabelRanker":
        from ._estimator import LabelRanker

        return LabelRanker
    if name == "torch":  # the PyTorch layer, imported only when asked for
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'labelranker_fast' has no attribute {name!r}")
