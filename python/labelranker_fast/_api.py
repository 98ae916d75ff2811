"""rank_labels: features and labels in, a LabelRanking out."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal, Union

from numpy.typing import ArrayLike

from ._accumulator import ScatterAccumulator
from ._inputs import check_n_components, parse_shrinkage
from ._ordering import check_method
from ._ranking import LabelRanking
from ._stream import StreamOptions, stream

__all__ = ["rank_labels", "accumulate"]

PathArg = Union[str, "os.PathLike[str]", bytes]  # a file path, as the readers take it


def accumulate(X, y=None, sample_weight=None, **options) -> tuple[ScatterAccumulator, Any]:
    """(ScatterAccumulator, classes) of one pass over ``X`` (any input ``rank_labels``
    takes); ``options`` are ``StreamOptions`` fields."""
    return stream(X, y, sample_weight, StreamOptions(**options))


def rank_labels(
    X: ArrayLike | PathArg | Iterable[Any],
    y: ArrayLike | PathArg | None = None,
    *,
    num_classes: int | None = None,
    shrinkage: Literal["oas"] | float | None = None,
    n_components: int = 1,
    sample_weight: ArrayLike | PathArg | None = None,
    chunk_size: int | None = None,
    n_threads: int | None = None,
    progress: bool = False,
    checkpoint: PathArg | None = None,
    checkpoint_every: int | None = None,
    method: Literal["anchor", "seriation"] = "anchor",
    folds: int | None = None,
) -> LabelRanking:
    """Ranks the classes of ``(X, y)`` by their centroids on the top LDA direction(s).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), path, or iterable of chunks
        Features, in memory (numpy, torch, anything ``np.asarray`` takes; C-contiguous
        float32/float64 is used without a copy) or streamed in chunks without ever being
        held whole: an ``np.memmap``, the path of a ``.npy`` file, an array-like with row
        slicing and a ``shape`` (h5py, zarr), or, with ``y=None``, an iterable of
        ``(X, y)`` or ``(X, y, sample_weight)`` chunks (a generator, a data loader). The
        next chunk is read while the current one is processed.
    y : array-like of shape (n_samples,) or path, optional
        Class labels: bools, integers, floats, str or bytes (numpy arrays, torch tensors,
        Python sequences, pandas Series of object, "string", "category" or nullable
        integer dtype); their sorted unique values become ``classes``. One rule holds in
        memory, for a ``.npy`` file and across the chunks of a stream: numbers of
        different kinds are compared by value (True == 1 == 1.0) and may be mixed when
        one dtype holds them all exactly (bools and integers: an integer dtype, uint64
        above 2**63; with floats: float64, if it holds every integer exactly); text
        never mixes with numbers, nor str with bytes. A mix that breaks this raises
        TypeError (numpy would silently turn ``[1, "a"]`` into the strings "1", "a");
        missing values (None, NaN, pd.NA) and infinities raise ValueError. None when
        ``X`` is an iterable of chunks.
    num_classes : int, optional
        If given, the labels must be class indices in [0, num_classes) and every class
        must have samples.
    shrinkage : None, "oas" or float in [0, 1]
        Regularisation of the within-class covariance; needed when it is singular (fewer
        samples than features, constant features).
    n_components : int, default=1
        Number of discriminant directions; classes are ordered by Euclidean distance to
        the anchor (the class with the smallest first centroid) in that space.
    sample_weight : array-like of shape (n_samples,) or path, optional
        Non-negative per-sample weights.
    chunk_size : int, optional
        Rows per engine call. Default: all at once for arrays in memory (the engine
        blocks internally) unless ``checkpoint`` is given; for streamed or checkpointed
        inputs one 4096-row block per thread, at most 32 MiB. The result does not depend
        on it beyond rounding.
    n_threads : int, optional
        Threads for the pass and the solver (default: all cores). Results are
        identical for every thread count.
    progress : bool, default=False
        Show a progress bar (tqdm) on standard error.
    checkpoint : path, optional
        Save the pass's state there (``.npz``, atomically) every ``checkpoint_every``
        chunks (default 1). Started again with the same arguments after an interruption,
        the pass continues after the last saved chunk, with statistics bit-identical to an
        uninterrupted pass with the same checkpoints (an iterable must yield the same
        chunks again; the chunks already counted are read and skipped). A completed pass
        leaves a complete checkpoint that later calls reuse; delete it to start over.
    checkpoint_every : int, optional
        Chunks between checkpoint saves (default 1; needs ``checkpoint``).
    method : "anchor" or "seriation", default="anchor"
        How the class centroids in the discriminant space become an order. "anchor", the
        paper's rule: by distance to the class with the smallest first centroid (in one
        dimension, the sorted centroids). "seriation": neighbours adjacent, by optimal
        leaf ordering of a Ward linkage of the centroids (Euclidean there is Mahalanobis
        under S), the end with the smaller first centroid first; it differs from the
        anchor rule when the classes do not lie along one line (use ``n_components`` of
        2 or more then). Needs scipy; at most 2048 classes (its cost grows as C^3).
    folds : int, optional
        K >= 2: also measure the ranking's stability, in the same pass. The j-th sample
        of each class (in input order) goes to fold j mod K; each fold is ranked alone
        with the same settings, its directions turned to agree with the full ranking's,
        and ``ranking.stability`` compares the fold orders (mean pairwise Kendall tau,
        each class's position interval, sign flips). The ranking itself is that of the
        merged folds: the same order as without folds. Every class needs at least K
        samples; not with ``checkpoint``.

    Returns
    -------
    LabelRanking
        The class order, the centroids and the eigenvalues.

    Raises
    ------
    ValueError
        Invalid sizes, labels, weights or shrinkage; a class without samples; a singular
        within-class covariance without shrinkage; a checkpoint of another pass.
    TypeError
        Inputs of a kind or dtype that cannot be features, labels or weights.
    FileNotFoundError
        A path that does not exist.
    """
    parse_shrinkage(shrinkage)  # checked before the pass, not after it
    check_n_components(n_components)
    check_method(method)
    acc, classes = accumulate(
        X,
        y,
        sample_weight,
        num_classes=num_classes,
        n_threads=n_threads,
        chunk_size=chunk_size,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        folds=folds,
    )
    return acc.rank(shrinkage, n_components, classes, method)
