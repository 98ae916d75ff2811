"""A LabelRanking's lookup tables as a ``torch.nn.Module``: ``remap``, ``unmap`` and
``unmap_logits`` run on the device the tensors are on.

The tables are buffers, so ``.to(device)`` moves them once and a training step never copies
them again. Checks of dtype and shape read metadata only; range checks on a CUDA tensor are
asynchronous device-side asserts, so a step never waits for the device. Imported only when
torch is (``LabelRanking.as_module`` and the tensor paths of ``remap``/``unmap``).
"""

from __future__ import annotations

import numpy as np
import torch

ARGMAX_HINT = "for logits or scores take .argmax(-1) first"


def check_integer(t: torch.Tensor, name: str) -> None:
    """TypeError unless ``t`` is a tensor with an integer dtype that ``long()`` keeps."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.is_complex() or t.dtype in (torch.bool, torch.uint64):
        hint = ARGMAX_HINT if t.dtype.is_floating_point else "convert to int64"
        raise TypeError(f"{name} must be an integer tensor, got {t.dtype}; {hint}")


def require(condition: torch.Tensor, message: str) -> None:
    """ValueError(message) unless ``condition`` (a 0-D bool tensor) holds: on the host,
    except on CUDA (``device_assert``, so a training step never waits for the device)."""
    if condition.device.type == "cuda":
        device_assert(condition, message)
    elif not bool(condition):
        raise ValueError(message)


def device_assert(condition: torch.Tensor, message: str) -> None:
    """An asynchronous device-side assert: a failure surfaces at the next synchronisation
    as a RuntimeError carrying ``message`` (and, on CUDA, ends the CUDA context)."""
    torch._assert_async(condition, message)


class LabelRankingModule(torch.nn.Module):
    """Original labels <-> head positions of one ranking, as buffers on a device.

    Built by ``LabelRanking.as_module()``; the ranking's classes must be integers. The
    buffers are not persistent: they stay out of ``state_dict``, so a model that carries
    this module loads checkpoints written without it (keep the ranking itself, e.g. with
    ``to_json`` or the Lightning callback's state).

    Parameters
    ----------
    classes : ndarray of int64, shape (C,)
        The ranking's classes.
    order : ndarray of int64, shape (C,)
        ``order[p]`` is the index of the class at position p.
    """

    positions: torch.Tensor
    ranked: torch.Tensor
    sorted_classes: torch.Tensor
    sorter: torch.Tensor

    def __init__(self, classes: np.ndarray, order: np.ndarray) -> None:
        super().__init__()
        n = int(classes.size)
        positions = np.empty(n, dtype=np.int64)
        positions[order] = np.arange(n, dtype=np.int64)
        sorter = np.argsort(classes, kind="stable")
        self.n_classes = n
        self.indices = bool(np.array_equal(classes, np.arange(n)))  # classes are 0..C-1
        for name, table in (
            ("positions", positions),
            ("ranked", classes[order]),
            ("sorted_classes", classes[sorter]),
            ("sorter", sorter),
        ):
            self.register_buffer(name, torch.from_numpy(np.array(table, dtype=np.int64)), False)

    def remap(self, y: torch.Tensor) -> torch.Tensor:
        """Original labels -> head positions.

        Parameters
        ----------
        y : integer torch.Tensor of shape () or (n,)
            Labels among the ranking's classes, on this module's device.

        Returns
        -------
        torch.Tensor of int64, same shape and device

        Raises
        ------
        TypeError
            Not a tensor, or a float or bool tensor.
        ValueError
            More than one dimension; labels not among the classes (on CUDA an
            asynchronous device-side assert instead, a RuntimeError at the next sync).
        """
        check_integer(y, "labels")
        if y.ndim > 1:
            raise ValueError(
                f"labels must be a 0-D or 1-D tensor, got shape {tuple(y.shape)}; {ARGMAX_HINT}"
            )
        labels, n = y.long(), self.n_classes
        if self.indices:
            require(
                ((labels >= 0) & (labels < n)).all(),
                f"labels must be among the ranked classes 0..{n - 1}",
            )
            return self.positions[labels]
        idx = torch.searchsorted(self.sorted_classes, labels).clamp_(max=n - 1)
        require((self.sorted_classes[idx] == labels).all(), "labels not among the ranked classes")
        return self.positions[self.sorter[idx]]

    def unmap(self, positions: torch.Tensor) -> torch.Tensor:
        """Head positions -> original labels (the inverse of ``remap``).

        Parameters
        ----------
        positions : integer torch.Tensor, any shape
            Positions in [0, n_classes), on this module's device.

        Returns
        -------
        torch.Tensor of int64, same shape and device

        Raises
        ------
        TypeError
            Not a tensor, or a float or bool tensor.
        ValueError
            Positions outside [0, n_classes) (on CUDA a device-side assert).
        """
        check_integer(positions, "positions")
        index = positions.long()
        require(
            ((index >= 0) & (index < self.n_classes)).all(),
            f"positions must be in [0, {self.n_classes})",
        )
        return self.ranked[index]

    def unmap_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logit columns from head positions back to class order.

        Parameters
        ----------
        logits : torch.Tensor of shape (..., n_classes)
            Column p scores the class at ranked position p.

        Returns
        -------
        torch.Tensor of the same shape
            Column k scores class index k: it is column ``positions[k]`` of ``logits``.

        Raises
        ------
        TypeError
            Not a tensor.
        ValueError
            A last dimension other than n_classes.
        """
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
        if logits.ndim < 1 or logits.shape[-1] != self.n_classes:
            raise ValueError(
                f"logits must have {self.n_classes} columns (one per position), "
                f"got shape {tuple(logits.shape)}"
            )
        return logits.index_select(-1, self.positions)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``remap(y)``.

        Parameters
        ----------
        y : integer torch.Tensor of shape () or (n,)

        Returns
        -------
        torch.Tensor of int64

        Raises
        ------
        TypeError, ValueError
            As ``remap``.
        """
        return self.remap(y)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}"
