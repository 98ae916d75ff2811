"""Fine-tuning checkpoints: written atomically, recording their run; read all or nothing.

A checkpoint holds the model, optimizer and schedule states, the epochs done, the
history, and the run's identity (class count, the ranking's positions, the recipe, head
seed, pooling, steps per epoch), so a checkpoint of another run is refused by name.
"""

from __future__ import annotations

import copy
import json
import pickle

import torch

from .._io import as_path, atomic_write

__all__ = ["load_checkpoint", "save_checkpoint"]


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_checkpoint(path, model, optimizer, scheduler, epoch, history, identity) -> None:
    state = {
        "model": _to_cpu(model.state_dict()),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": json.dumps(history),
        "identity": json.dumps(identity, sort_keys=True),
    }
    # Atomic: a crash or Ctrl-C leaves the previous checkpoint intact.
    atomic_write(path, lambda fh: torch.save(state, fh), name="checkpoint_path")


def _read_checkpoint(path) -> dict:
    path = as_path(path, "checkpoint_path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path!r} is not a readable fine-tuning checkpoint: {exc}") from None
    missing = [
        k
        for k in ("model", "optimizer", "scheduler", "epoch", "history")
        if not isinstance(state, dict) or k not in state
    ]
    if missing:
        raise ValueError(f"{path!r} is not a fine-tuning checkpoint: it is missing {missing}")
    return state


def load_checkpoint(
    path, model, optimizer=None, scheduler=None, *, expect=None
) -> tuple[int, list]:
    """Restores a checkpoint written by ``finetune`` (``weights_only=True``: tensors and
    plain values only), all or nothing.

    Parameters
    ----------
    path : path
    model, optimizer, scheduler : the objects to restore (optimizer, scheduler optional)
    expect : dict, optional
        The run's identity (what ``finetune`` records: class count, ranking positions,
        recipe, head seed, pooling, steps per epoch); a checkpoint of another run is refused.

    Returns
    -------
    (epochs completed, history)

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a readable checkpoint, another run's (naming what differs), or one whose
        tensors do not fit ``model``; nothing is changed then.
    """
    state = _read_checkpoint(path)
    if expect is not None:
        if "identity" not in state:
            raise ValueError(
                f"checkpoint {path!r} was written by an earlier version, which "
                "did not record its run; delete it to start over"
            )
        saved = json.loads(state["identity"])
        diffs = [
            f"{k} (checkpoint: {saved.get(k)!r}, this run: {v!r})"
            for k, v in expect.items()
            if saved.get(k) != v
        ]
        if diffs:
            raise ValueError(
                f"checkpoint {path!r} is of another fine-tuning run: it differs in "
                + "; ".join(diffs)
                + ". Delete it to start over"
            )
    parts = [
        (model, state["model"]),
        (optimizer, state["optimizer"]),
        (scheduler, state["scheduler"]),
    ]
    before = [(obj, copy.deepcopy(obj.state_dict())) for obj, _ in parts if obj is not None]
    try:
        for obj, saved_state in parts:
            if obj is not None:
                obj.load_state_dict(saved_state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        for obj, old in before:  # all or nothing
            obj.load_state_dict(old)
        raise ValueError(f"checkpoint {path!r} does not fit this model: {exc}") from None
    return int(state["epoch"]), json.loads(state["history"])
