"""Statistics of several processes combined with torch.distributed collectives.

The accumulators of different ranks keep their statistics around different per-class
shifts, so their arrays cannot simply be added element by element. ``all_reduce_``
gathers every rank's arrays (one ``all_gather`` of a flat float64 tensor) and merges them
in rank order, exactly as ``ScatterAccumulator.merge`` does; every rank performs the same
merges on the same data, so every rank ends with bit-identical statistics and therefore
the same ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._accumulator import ScatterAccumulator

__all__ = ["all_reduce_", "is_distributed"]


def is_distributed(group=None) -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _device(group):
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":  # NCCL moves CUDA tensors only
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_(acc: ScatterAccumulator, group: Any = None) -> ScatterAccumulator:
    """Replaces ``acc`` (in place) by the merge of every rank's accumulator in ``group``.

    A collective: every rank of the group must call it, with accumulators of the same
    ``n_features`` and ``num_classes``.

    Parameters
    ----------
    acc : ScatterAccumulator
    group : torch.distributed process group, optional (default: the world)

    Returns
    -------
    acc, holding the merge of every rank's statistics (bit-identical on every rank).

    Raises
    ------
    TypeError
        ``acc`` is not a ScatterAccumulator.
    RuntimeError
        torch.distributed is not initialised.
    ValueError
        The ranks' accumulators differ in ``n_features`` or ``num_classes``.
    """
    import torch.distributed as dist

    if not isinstance(acc, ScatterAccumulator):
        raise TypeError(f"acc must be a ScatterAccumulator, got {type(acc).__name__}")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("torch.distributed is not initialised (call init_process_group first)")
    world = dist.get_world_size(group)
    if world == 1:
        return acc
    device = _device(group)
    d, c = acc.n_features, acc.num_classes
    shape = torch.tensor([d, c, acc.n_samples], dtype=torch.int64, device=device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape, group=group)
    sizes = [s.cpu().tolist() for s in shapes]
    if any(s[:2] != [d, c] for s in sizes):
        raise ValueError(
            f"accumulators differ across ranks (n_features, num_classes): "
            f"{[tuple(s[:2]) for s in sizes]}"
        )
    state = acc.get_state()
    flat = np.concatenate([state[k].ravel() for k in ("counts", "shifts", "sums", "m2")])
    mine = torch.from_numpy(flat).to(device)
    parts = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine, group=group)

    merged = ScatterAccumulator(d, c, n_threads=acc.n_threads)
    for part, (_, _, rows) in zip(parts, sizes):
        values = part.cpu().numpy()
        counts, rest = values[:c], values[c:]
        shifts, sums, m2 = rest[: c * d], rest[c * d : 2 * c * d], rest[2 * c * d :]
        merged.merge(
            ScatterAccumulator.from_state(
                {
                    "version": state["version"],
                    "n_features": d,
                    "num_classes": c,
                    "n_rows": rows,
                    "counts": counts,
                    "shifts": shifts.reshape(c, d),
                    "sums": sums.reshape(c, d),
                    "m2": m2.reshape(d, d),
                }
            )
        )
    acc.take_state_of(merged)
    return acc
