"""How stable a ranking is: the orders of K disjoint folds of the data, compared.

``folds=K`` sends the j-th sample of each class (in input order) to fold j mod K, so each
fold is a balanced, disjoint sample of every class, in one pass. Each fold is ranked
alone with the full ranking's settings, its directions oriented to agree with the full
ranking's, and the fold orders are summarised here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def inversions(values: np.ndarray) -> int:
    """Number of pairs i < j with values[i] > values[j], for a permutation of 0..n-1.

    Bottom-up merge counting, vectorised per level: O(n log^2 n) in numpy, so 100,000
    classes take milliseconds where a Python loop would take seconds.
    """
    a = np.asarray(values, dtype=np.int64).copy()
    n = a.size
    position = np.arange(n, dtype=np.int64)
    stride = np.int64(n + 1)  # key = block * stride + value keeps blocks apart
    count, width = 0, 1
    while width < n:
        block = position // (2 * width)
        right = (position % (2 * width)) >= width
        left_keys = block[~right] * stride + a[~right]  # sorted: blocks ascending, each sorted
        right_keys = block[right] * stride + a[right]
        block_end = np.searchsorted(left_keys, (block[right] + 1) * stride)
        count += int((block_end - np.searchsorted(left_keys, right_keys, side="right")).sum())
        a = np.sort(block * stride + a) - block * stride  # merge every pair of blocks
        width *= 2
    return count


def kendall_tau(order_a: np.ndarray, order_b: np.ndarray) -> float:
    """Kendall's tau between two orders of the same classes (1: equal, -1: reversed)."""
    n = len(order_a)
    if n < 2:
        return 1.0
    positions_b = np.empty(n, dtype=np.int64)
    positions_b[np.asarray(order_b)] = np.arange(n)
    discordant = inversions(positions_b[np.asarray(order_a)])
    return 1.0 - 4.0 * discordant / (n * (n - 1))


@dataclasses.dataclass(frozen=True, eq=False)
class Stability:
    """The agreement of a ranking's fold orders.

    Attributes
    ----------
    kendall_tau : float
        Mean Kendall tau over the pairs of fold orders: 1 when every fold gives the same
        order, near 0 when the labels carry no signal.
    position_interval : ndarray of int64, shape (n_classes, 2)
        The smallest and largest position each class (by class index) takes in the fold
        orders.
    sign_flips : int
        Folds whose own sign rule (largest coefficient positive) oriented a direction
        against the full ranking's; their directions were turned round before ranking.
    fold_orders : ndarray of int64, shape (folds, n_classes)
        Each fold's order, oriented to the full ranking's directions.
    """

    kendall_tau: float
    position_interval: np.ndarray
    sign_flips: int
    fold_orders: np.ndarray

    def __post_init__(self) -> None:
        # Read-only copies, like a LabelRanking's arrays: the caller's stay its own.
        for name in ("position_interval", "fold_orders"):
            arr = np.array(getattr(self, name), dtype=np.int64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def __setstate__(self, state) -> None:  # unpickled arrays are writable again
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    @property
    def folds(self) -> int:
        """Number of folds K."""
        return int(self.fold_orders.shape[0])

    @classmethod
    def of_orders(cls, fold_orders, sign_flips: int) -> Stability:
        """The summary of ``fold_orders`` (one order per fold, K >= 2)."""
        orders = np.array(fold_orders, dtype=np.int64)
        k, n = orders.shape
        positions = np.empty_like(orders)
        for f in range(k):
            positions[f, orders[f]] = np.arange(n)
        taus = [kendall_tau(orders[i], orders[j]) for i in range(k) for j in range(i + 1, k)]
        interval = np.stack([positions.min(0), positions.max(0)], axis=1)
        return cls(float(np.mean(taus)), interval, int(sign_flips), orders)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; ``from_dict`` reads them back."""
        return {
            "kendall_tau": self.kendall_tau,
            "position_interval": self.position_interval.tolist(),
            "sign_flips": self.sign_flips,
            "fold_orders": self.fold_orders.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Any, n_classes: int) -> Stability:
        """The stability ``data`` holds, recomputed from its fold orders and checked
        against the values it states; ValueError if it is not one."""
        if not isinstance(data, dict) or "fold_orders" not in data:
            raise ValueError("stability must be an object with fold_orders")
        orders = data["fold_orders"]
        if (
            not isinstance(orders, list)
            or len(orders) < 2
            or not all(_is_order(o, n_classes) for o in orders)
        ):
            raise ValueError(f"stability fold_orders must be 2 or more orders of {n_classes}")
        flips = data.get("sign_flips")
        if type(flips) is not int or not 0 <= flips <= len(orders):
            raise ValueError("stability sign_flips must be an int in [0, folds]")
        out = cls.of_orders(orders, flips)
        tau = data.get("kendall_tau")
        if (
            data.get("position_interval") != out.position_interval.tolist()
            or not isinstance(tau, (int, float))
            or isinstance(tau, bool)
            or abs(tau - out.kendall_tau) > 1e-12
        ):
            raise ValueError("stability values disagree with its fold orders")
        return out

    def __eq__(self, other) -> bool:
        if not isinstance(other, Stability):
            return NotImplemented
        return self.sign_flips == other.sign_flips and np.array_equal(
            self.fold_orders, other.fold_orders
        )

    __hash__ = None  # type: ignore[assignment]


def _is_order(values, n: int) -> bool:
    """``values`` is a JSON list holding each of 0..n-1 once (ints, not bools)."""
    return (
        isinstance(values, list)
        and all(type(v) is int for v in values)
        and sorted(values) == list(range(n))
    )
