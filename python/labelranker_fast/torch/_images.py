"""What ``labelranker extract`` runs: a model spec made into a model and its eval
transform, and an image folder made into a loader.

Model specs:
- ``timm:NAME`` or ``timm:NAME@CHECKPOINT``: ``timm.create_model(NAME, pretrained=False,
  num_classes=0)``, weights read from CHECKPOINT (a state dict, or a timm ``train.py``
  checkpoint holding one under "state_dict" or "model"); the transform is timm's eval
  transform for the model (``resolve_data_config`` + ``create_transform``).
- ``hf:DIR``: ``transformers.AutoModel.from_pretrained(DIR)``, local files only; the
  transform is the ``AutoImageProcessor`` saved in DIR.

No model is ever run with weights it was silently not given: a checkpoint must fit the
model exactly (only the classifier head's keys, which a ``num_classes=0`` model has no
place for, are dropped), and random weights need ``allow_random_weights``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ImageBatches", "LoadedModel", "load_model", "image_folder", "worker_error"]

# Every model is built after this seed: random weights (allowed) are the same each run.
_SEED = 0


@dataclasses.dataclass
class LoadedModel:
    """A model ready for ``extract_and_rank``, the transform its images need, and a
    one-line description of where its weights came from."""

    model: torch.nn.Module
    transform: Callable[[Any], torch.Tensor]
    description: str


def load_model(
    spec: str, *, input_size: int | None = None, allow_random_weights: bool = False
) -> LoadedModel:
    """The model a ``--model`` spec names (see the module docstring); ValueError for an
    unknown spec, a model or checkpoint that cannot be loaded, or random weights that
    were not allowed; FileNotFoundError for a missing checkpoint or folder."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"--model must be timm:NAME[@CHECKPOINT] or hf:DIR, got {spec!r}")
    kind, rest = spec.split(":", 1)
    if kind not in ("timm", "hf"):
        raise ValueError(f"--model must be timm:NAME[@CHECKPOINT] or hf:DIR, got {spec!r}")
    if kind == "hf" and input_size is not None:
        raise ValueError(
            "--input-size applies to timm models; an hf: model takes the size of the "
            "image processor saved with it"
        )
    # Seeded, and without touching the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        if kind == "hf":
            return _hf_model(rest, allow_random_weights)
        name, _, checkpoint = rest.partition("@")  # timm names never hold "@"; paths may
        return _timm_model(name, checkpoint or None, input_size, allow_random_weights)


# ------------------------------------------------------------------------- timm
def _timm_model(name, checkpoint, input_size, allow_random) -> LoadedModel:
    try:
        import timm
        from timm.data import create_transform, resolve_data_config
    except ImportError as exc:
        raise ValueError(f"timm: models need timm ({exc}): pip install timm") from None
    if not name or not timm.is_model(name):
        raise ValueError(
            f"unknown timm model {name!r} (timm {timm.__version__}; see timm.list_models())"
        )
    if checkpoint is None and not allow_random:
        raise ValueError(
            f"timm:{name} has no checkpoint, so its weights would be random and so would "
            f"the ranking: give timm:{name}@CHECKPOINT, or --allow-random-weights"
        )
    model = _create_timm(timm, name, input_size)
    described = f"timm:{name}, random weights (seed {_SEED})"
    if checkpoint is not None:
        checkpoint = os.path.expanduser(checkpoint)
        dropped = _load_into(model, read_state_dict(checkpoint), checkpoint, input_size)
        described = f"timm:{name}, weights from {checkpoint}"
        if dropped:
            described += f" (classifier head {', '.join(dropped)} dropped)"
    overrides = {} if input_size is None else {"input_size": (3, input_size, input_size)}
    config = resolve_data_config(overrides, model=model)
    return LoadedModel(model.eval(), create_transform(**config), described)


def _create_timm(timm, name: str, input_size: int | None):
    """``create_model(name, num_classes=0)``; with an input size, built at that size when
    the model takes an ``img_size`` (ViTs: their position embeddings depend on it)."""
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if input_size is not None:
        try:
            return timm.create_model(name, img_size=input_size, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise ValueError(f"timm cannot build {name!r}: {exc}") from None
    try:
        return timm.create_model(name, **kwargs)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"timm cannot build {name!r}: {exc}") from None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The parameter tensors in a checkpoint file: a state dict, or a dict holding one
    under "state_dict" (timm's train.py) or "model"; ``module.`` prefixes (DDP) removed.
    Read with ``weights_only=True``: a checkpoint cannot run code."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a directory, not a weights file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj: Any = load_file(path, device="cpu")
        else:
            # timm's train.py saves its argparse.Namespace of arguments with the weights.
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever a foreign file makes the reader raise
        raise ValueError(
            f"checkpoint {path!r} is not a readable weights file "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    ):
        raise ValueError(
            f"checkpoint {path!r} holds no state dict (a mapping of parameter names to "
            "tensors, alone or under 'state_dict' or 'model')"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _head_prefixes(model) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (head,) if isinstance(head, str) else tuple(head)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:6])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > 6 else shown


def _load_into(model, state: dict, path: str, input_size: int | None) -> list[str]:
    """Loads ``state`` into ``model``, all of it: the classifier head's keys (which a
    headless model has no place for) are dropped and returned; any other missing,
    unexpected or misshapen key is a ValueError that names them."""
    expected = model.state_dict()
    heads = _head_prefixes(model)
    extra = [k for k in state if k not in expected]
    dropped = [k for k in extra if any(k == h or k.startswith(h + ".") for h in heads)]
    unexpected = [k for k in extra if k not in dropped]
    missing = [k for k in expected if k not in state]
    shapes = [
        f"{k} {tuple(state[k].shape)} (the model's is {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if shapes:
        problems.append(f"wrong shape {_listed(shapes)}")
    hint = ""
    if shapes:  # a ViT's position embeddings fit the one image size it was built for
        size = "its default image size" if input_size is None else f"--input-size {input_size}"
        hint = (
            f" (the model was built for {size}: a checkpoint trained at another size "
            "needs --input-size of that size)"
        )
    if problems:
        raise ValueError(
            f"checkpoint {path!r} does not fit timm's model built with num_classes=0: "
            + "; ".join(problems)
            + hint
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
    return dropped


# ----------------------------------------------------------------- Hugging Face
class _Processor:
    """An image processor as a per-image transform (a class, so workers can pickle it)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def _hf_model(folder: str, allow_random: bool) -> LoadedModel:
    folder = os.path.expanduser(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"hf:{folder}: no such folder (a save_pretrained folder)")
    try:
        import transformers
        from transformers import AutoImageProcessor, AutoModel
    except ImportError as exc:
        raise ValueError(
            f"hf: models need transformers ({exc}): pip install transformers"
        ) from None
    transformers.utils.logging.set_verbosity_error()  # its load report would be noise here
    transformers.utils.logging.disable_progress_bar()
    saved = "save the model's with processor.save_pretrained(DIR)"
    if not os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        raise ValueError(f"hf:{folder} has no image processor (preprocessor_config.json): {saved}")
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"hf:{folder}: its image processor does not load ({_first_line(exc)}): {saved}"
        ) from None
    try:
        model, info = AutoModel.from_pretrained(
            folder, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ValueError(f"hf:{folder}: cannot load a model: {_first_line(exc)}") from None
    # The pooler is not used (features come from last_hidden_state), and a saved
    # *ForImageClassification model has none: its absence is not random features.
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("pooler."))
    if missing and not allow_random:
        raise ValueError(
            f"hf:{folder} lacks weights for {_listed(missing)}: they would be random, and "
            "so would the ranking (give --allow-random-weights to accept that)"
        )
    described = f"hf:{folder} ({type(model).__name__})"
    if missing:
        described += f", random weights for {len(missing)} tensors (seed {_SEED})"
    return LoadedModel(model.eval(), _Processor(processor), described)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# ----------------------------------------------------------------- image folder
def _open_rgb(path: str):
    """An image file as RGB; ValueError naming the file when it cannot be read."""
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            return Image.open(fh).convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three
        raise ValueError(f"cannot read image {path!r}: {exc}") from None


def image_folder(folder: str, transform):
    """torchvision's ``ImageFolder`` of ``folder`` (one sub-folder per class, named by
    it, numbered in sorted order); ValueError when it is not one with 2 classes or more,
    each holding an image."""
    # torchvision ships no type information (pyproject.toml lists no override for it yet).
    from torchvision.datasets import ImageFolder

    if not os.path.exists(folder):
        raise FileNotFoundError(f"--data {folder!r}: no such folder")
    if not os.path.isdir(folder):
        raise ValueError(f"--data {folder!r} is not a folder")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if len(classes) < 2:
        raise ValueError(
            f"--data {folder!r} has {len(classes)} class sub-folder(s); a ranking needs 2 "
            "or more (one sub-folder of images per class)"
        )
    try:
        return ImageFolder(folder, transform=transform, loader=_open_rgb)
    except FileNotFoundError as exc:  # a class folder without a single image
        raise ValueError(f"--data {folder!r}: {_first_line(exc)}") from None


def _quiet_broken_pipes(kind, value, tb) -> None:
    """A worker's last-resort error report, silent for a reader that went away: on
    Ctrl-C the main process stops receiving a batch mid-transfer, and the worker's
    file-descriptor sender would print that as a traceback."""
    if not issubclass(kind, (BrokenPipeError, ConnectionResetError)):
        sys.__excepthook__(kind, value, tb)


def _init_worker(_worker_id: int) -> None:
    sys.excepthook = _quiet_broken_pipes


class ImageBatches:
    """A DataLoader of an image folder, in the folder's order (never shuffled: reruns see
    the same batches), whose worker processes ``close()`` stops at once. Otherwise an
    iterator left behind by an error, held by the error's traceback, would stop them only
    when the garbage collector frees it, and then wait seconds for them."""

    def __init__(self, dataset, *, batch_size: int, num_workers: int, pin_memory: bool):
        self.dataset = dataset  # extract_and_rank names the classes from dataset.classes
        self._loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=pin_memory,
            worker_init_fn=_init_worker,
        )
        self.sampler = self._loader.sampler
        self._live: list = []

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self):
        it = iter(self._loader)
        self._live.append(it)
        return it

    def close(self) -> None:
        for it in self._live:
            stop = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
            if stop is not None:
                stop()
        self._live.clear()


def worker_error(exc: BaseException) -> str | None:
    """The original message of an error re-raised from a DataLoader worker (whose text
    is a whole traceback), or None for any other error."""
    text = str(exc)
    if "Original Traceback" not in text:
        return None
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last
