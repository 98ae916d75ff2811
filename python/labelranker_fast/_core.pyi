"""
Compiled engine of labelranker_fast (private: use the labelranker_fast API).
"""
from __future__ import annotations
import numpy
import numpy.typing
import typing
__all__: list[str] = ['Accumulator', 'BLOCK_ROWS', 'blas_n_threads', 'set_blas_n_threads']
class Accumulator:
    """
    Streaming LDA statistics in float64 (engine object; use labelranker_fast.ScatterAccumulator).
    """
    @staticmethod
    def from_state(state: dict) -> Accumulator:
        """
        Rebuilds an accumulator from get_state()'s arrays (validated).
        """
    def __init__(self, n_features: typing.SupportsInt | typing.SupportsIndex, num_classes: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        An empty accumulator for n_features >= 1 features and num_classes >= 2 classes.
        """
    def abort_pass(self) -> None:
        """
        Drops the open pass's statistics.
        """
    def begin_pass(self) -> None:
        """
        Opens a pass: the following update() calls are committed together.
        """
    def between_scatter(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        """
        (d, d) float64 between-class scatter S_b = sum_k n_k (mu_k - mu)(mu_k - mu)^T.
        """
    def class_means(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        """
        (C, d) float64 class means; rows of classes without weight are NaN.
        """
    def commit_pass(self) -> None:
        """
        Adds the open pass's statistics to the accumulator.
        """
    def get_state(self) -> dict:
        """
        The whole state as plain arrays: a dict with n_features, num_classes, n_rows (ints), counts (C,), shifts (C, d), sums (C, d) and m2 (d, d), all float64.
        """
    def global_mean(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        """
        (d,) float64 weighted global mean (NaN while empty).
        """
    def merge(self, other: Accumulator) -> None:
        """
        Adds other's statistics (in place).
        """
    def release_buffers(self) -> None:
        """
        Frees the buffers update() keeps between calls.
        """
    def solve(self, shrinkage_kind: str, shrinkage_value: typing.SupportsFloat | typing.SupportsIndex, n_components: typing.SupportsInt | typing.SupportsIndex) -> dict:
        """
        Top n_components discriminant directions and the ranking of the classes. shrinkage_kind is 'none', 'fixed' (shrinkage_value in [0, 1]) or 'oas'. Returns a dict: directions (d, k), eigenvalues (k,) descending, eigenvalue_sum, shrinkage (the intensity used), centroids (C, k), order (C,) int64 position -> class, positions (C,) int64 class -> position, mean (d,).
        """
    def update(self, X: numpy.ndarray, y: numpy.ndarray, sample_weight: numpy.ndarray | None = None) -> None:
        """
        Adds rows X (C-contiguous float32/float64) with int64 class indices y and optional float64 weights. All or nothing: on error the state is unchanged.
        """
    def update_labels(self, X: numpy.ndarray, indptr: numpy.ndarray, cols: numpy.ndarray, vals: numpy.ndarray) -> None:
        """
        Adds rows of X with label weights given as CSR (indptr, cols, vals).
        """
    def update_rows(self, X: numpy.ndarray, index: numpy.ndarray, y: numpy.ndarray, sample_weight: numpy.ndarray | None = None) -> None:
        """
        Adds rows X[index] with classes y and weights (like update(X[index], y, w)).
        """
    def within_scatter(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        """
        (d, d) float64 within-class scatter S_w = sum_k sum_(x in k) w (x - mu_k)(x - mu_k)^T.
        """
    @property
    def class_counts(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        """
        (C,) float64 weighted class counts n_k (a copy).
        """
    @property
    def n_features(self) -> int:
        """
        Number of features d.
        """
    @property
    def n_samples(self) -> int:
        """
        Rows accumulated, whatever their weights.
        """
    @property
    def n_threads(self) -> int:
        """
        Worker threads of update() and threads of solve(); statistics and solutions are bit-identical for every count.
        """
    @n_threads.setter
    def n_threads(self, n: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def num_classes(self) -> int:
        """
        Number of classes C.
        """
    @property
    def pass_open(self) -> bool:
        """
        Whether a pass is open (begin_pass() without commit or abort).
        """
def _fail_thread_starts(k: typing.SupportsInt | typing.SupportsIndex, after: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
    """
    Test hook: after `after` successful worker-thread starts, the engine's next k fail as under a thread limit (the work then runs on fewer threads). Returns the refusals still pending before the call.
    """
def blas_n_threads() -> int:
    """
    Number of threads of the engine's OpenBLAS pool.
    """
def set_blas_n_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Sets the number of threads of the engine's OpenBLAS pool (while a solve or a pass holds the pool at one thread, from when it ends).
    """
BLOCK_ROWS: int = 4096
