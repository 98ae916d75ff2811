"""One feature vector per sample from whatever a backbone returns.

Backbones and what they return:
- timm models: ``forward_features(x)``: tokens (B, T, D) for ViTs, with
  ``num_prefix_tokens`` class/register tokens first; maps (B, C, H, W) for CNNs ((B, H, W,
  C) where ``output_fmt`` is "NHWC", as Swin's, taken channels first). With
  ``pooling="head"`` timm's own ``forward_head(..., pre_logits=True)`` pools instead.
- Hugging Face models (``ViTMAEModel``, ``VideoMAEModel``, ``ViTModel``, ...): an output
  object whose ``last_hidden_state`` is (B, T, D); the prefix tokens are read off the
  model's embeddings (a class token, DeiT's distillation token, register tokens). A model
  with a head (``*ForImageClassification``, ``*ForVideoClassification``) is pooled as its
  base model; ``pooling="head"`` takes the input of its ``classifier`` (see ``_hf``).
- anything else: a tensor, (B, D) already pooled, or tokens / maps as above; a module may
  declare ``num_prefix_tokens`` (and ``has_class_token``) as timm's do.

Pooling over tokens: ``"cls"`` the class token (an error on a model known to have none),
``"avg"`` the mean of the patch tokens (the prefix tokens left out), ``"max"`` their
maximum, ``"avgmax"`` the mean of those two (as timm defines it); over maps the same over
H x W. A callable gets the raw output.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import torch

from ._hf import classifier_input, hf_backbone

__all__ = [
    "POOLINGS",
    "backbone_features",
    "every_patch",
    "features_module",
    "frozen",
    "input_dtype",
    "pool",
    "token_layout",
]

POOLINGS = ("cls", "avg", "max", "avgmax", "head")


def check_pooling(pooling) -> None:
    if callable(pooling):
        return
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or a callable, got {pooling!r}")


def _embeddings(model):
    """A Hugging Face model's embeddings module (the model's own or its base model's)."""
    for owner in (model, getattr(model, "base_model", None)):
        emb = getattr(owner, "embeddings", None)
        if isinstance(emb, torch.nn.Module):
            return emb
    return None


def token_layout(model) -> tuple[int, bool | None]:
    """(prefix tokens before the patch tokens, whether the first of them is a class token).

    timm models declare ``num_prefix_tokens`` (class and register tokens) and
    ``has_class_token``; Hugging Face models are read from their embeddings' parameters
    (``cls_token`` or CLIP's ``class_embedding``, DeiT's ``distillation_token``,
    ``register_tokens``): a VideoMAE has none. A module that declares nothing gives
    (0, None): no prefix, class token unknown ("cls" then takes its first token).
    """
    n = getattr(model, "num_prefix_tokens", None)
    if n is not None:
        has_cls = getattr(model, "has_class_token", None)
        if has_cls is None:
            has_cls = (
                getattr(model, "cls_token", None) is not None
                if hasattr(model, "cls_token")
                else n > 0
            )
        return int(n), bool(has_cls)
    if getattr(model, "config", None) is None:
        return 0, None
    emb = _embeddings(model)
    if emb is None:
        return 0, False
    has_cls = any(torch.is_tensor(getattr(emb, k, None)) for k in ("cls_token", "class_embedding"))
    prefix = int(has_cls) + int(torch.is_tensor(getattr(emb, "distillation_token", None)))
    registers = getattr(emb, "register_tokens", None)
    if torch.is_tensor(registers):
        prefix += registers.shape[-2]  # (1, n, D)
    return prefix, has_cls


def pool(
    output: Any,
    pooling: str | Callable[[Any], torch.Tensor],
    prefix_tokens: int = 0,
    class_token: bool | None = None,
) -> torch.Tensor:
    """(B, D) features of a backbone output (see the module docstring).

    Parameters
    ----------
    output : tensor or model output with ``last_hidden_state``
    pooling : "cls", "avg", "max", "avgmax" or callable
    prefix_tokens : int
        Tokens before the patch tokens (left out of "avg", "max", "avgmax").
    class_token : bool or None
        Whether the first token is a class token; False makes "cls" an error, None takes
        the first token.

    Returns
    -------
    Tensor of shape (B, D)

    Raises
    ------
    TypeError
        An output that is not a tensor (nor has ``last_hidden_state``) without a callable.
    ValueError
        "cls" without a class token or on maps, an output of another rank, or a callable
        that does not return a (batch, features) tensor.
    """
    if callable(pooling):
        feats = pooling(output)
    else:
        x = getattr(output, "last_hidden_state", output)
        if not torch.is_tensor(x):
            raise TypeError(
                f"cannot pool a backbone output of type {type(output).__name__}; pass "
                "pooling=<callable> that returns a (batch, features) tensor"
            )
        if x.ndim == 2:
            feats = x
        elif x.ndim == 3:  # tokens
            if pooling == "cls":
                if class_token is False:
                    raise ValueError(
                        "pooling='cls' needs a class token, and this model has none (its "
                        "first token is a register or patch token); use pooling='avg', "
                        "'max' or 'avgmax', or a callable"
                    )
                feats = x[:, 0]
            else:
                if x.shape[1] <= prefix_tokens:
                    raise ValueError(
                        f"the backbone returned {x.shape[1]} tokens, no more than "
                        f"its {prefix_tokens} prefix tokens: no patch tokens to pool"
                    )
                feats = _reduce(x[:, prefix_tokens:], pooling, dim=1)
        elif x.ndim == 4:  # maps
            if pooling == "cls":
                raise ValueError(
                    "pooling='cls' needs token outputs (B, T, D), got maps (B, C, H, W)"
                )
            feats = _reduce(x.flatten(2), pooling, dim=2)
        else:
            raise ValueError(f"cannot pool a backbone output of shape {tuple(x.shape)}")
    if not torch.is_tensor(feats) or feats.ndim != 2:
        raise ValueError(
            "pooled features must be a (batch, features) tensor, got "
            f"{tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__}"
        )
    return feats


def _reduce(x: torch.Tensor, pooling: str, dim: int) -> torch.Tensor:
    if pooling == "avg":
        return x.mean(dim)
    if pooling == "max":
        return x.amax(dim)
    return 0.5 * (x.mean(dim) + x.amax(dim))  # avgmax


def input_dtype(model):
    """The one floating dtype of ``model``'s parameters (float inputs are cast to it, so a
    half-precision model takes float32 images), or None when there is no single one."""
    if not isinstance(model, torch.nn.Module):
        return None
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def features_module(model, pooling):
    """The module ``backbone_features`` runs: ``model`` itself for ``"head"``, else the
    base model of a Hugging Face model with a head (``hf_backbone``)."""
    return model if pooling == "head" else hf_backbone(model)


def backbone_features(model, x: torch.Tensor, pooling="avg") -> torch.Tensor:
    """Runs ``model`` on ``x`` and pools to (B, D). A Hugging Face classifier gives its
    backbone's features, or with ``"head"`` the input of its classifier (see ``_hf``)."""
    if pooling == "head":
        if hasattr(model, "forward_head"):
            return pool(model.forward_head(model.forward_features(x), pre_logits=True), "avg")
        return classifier_input(model, x)  # ValueError unless a Hugging Face classifier
    model = hf_backbone(model)
    if hasattr(model, "forward_features"):
        out = model.forward_features(x)
        if torch.is_tensor(out) and out.ndim == 4 and getattr(model, "output_fmt", None) == "NHWC":
            out = out.permute(0, 3, 1, 2)  # timm's Swin & co: channels last
    elif hasattr(model, "config") and hasattr(model, "forward"):  # Hugging Face
        out = model(pixel_values=x)
    else:
        out = model(x)
    return pool(out, pooling, *token_layout(model))


# ------------------------------------------------------------- eval mode, every patch
def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _maskers(model) -> list:
    """Modules that drop a random share of the patches in every mode (Hugging Face
    ViTMAE's embeddings); ValueError for one whose masking cannot be turned off here."""
    found = []
    for m in model.modules():
        if not callable(getattr(m, "random_masking", None)) or getattr(m, "is_mae", True) is False:
            continue  # (a Hiera built with is_mae=False has the method but never masks)
        ratio = getattr(getattr(m, "config", None), "mask_ratio", None)
        if (
            ratio is None
            or getattr(m, "patch_size", None) is None
            or "noise" not in inspect.signature(m.forward).parameters
        ):
            raise ValueError(
                f"{type(m).__name__} in this model drops a random share of its patches in "
                "every mode, and extract_and_rank can turn that off only for ViTMAE-style "
                "embeddings (config.mask_ratio and a noise argument): build the model "
                "without masking (a Hiera: HieraModel(config, is_mae=False) with the same "
                "weights), or pass a module whose forward sees every patch"
            )
        found.append(m)
    return found


class _EveryPatch:
    """Hooks on a ViTMAE embeddings module: increasing noise (with mask_ratio 0, every
    patch is kept in its natural order, so position-dependent pooling is right and
    results are deterministic), then a check of what the masking step returned."""

    def __init__(self, module):
        self.module, self.patches, self.checked = module, None, False
        self.handles = [
            module.register_forward_pre_hook(self.natural_noise, with_kwargs=True),
            module.register_forward_hook(self.check),
        ]
        embed = getattr(module, "patch_embeddings", None)
        if isinstance(embed, torch.nn.Module):
            self.handles.append(embed.register_forward_hook(self.count))

    def natural_noise(self, module, args, kwargs):
        pixels = args[0] if args else kwargs["pixel_values"]
        ph, pw = _pair(module.patch_size)
        n = (pixels.shape[-2] // ph) * (pixels.shape[-1] // pw)
        noise = torch.arange(n, dtype=torch.float32, device=pixels.device).expand(
            pixels.shape[0], n
        )
        if len(args) > 1:
            return (args[0], noise, *args[2:]), kwargs
        return args, {**kwargs, "noise": noise}

    def count(self, module, args, output):
        self.patches = output.shape[1]

    def check(self, module, args, output):
        ok = isinstance(output, tuple) and len(output) == 3 and self.patches is not None
        if ok:
            tokens, mask, restore = output
            ok = tokens.shape[1] == 1 + self.patches and restore.shape[-1] == self.patches
        if ok and not self.checked:  # values once (a host sync on accelerators)
            natural = torch.arange(self.patches, device=restore.device).expand_as(restore)
            ok = not bool(mask.any()) and torch.equal(restore, natural)
            self.checked = True
        if not ok:
            raise ValueError(
                f"{type(module).__name__} still masked or reordered patches with "
                "config.mask_ratio = 0 and increasing noise (this transformers version "
                "masks differently): features would not come from every patch; pass a "
                "model without masking, or pooling=<callable> on outputs you computed"
            )

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@contextlib.contextmanager
def every_patch(model):
    """For the duration, a Hugging Face ViTMAE in ``model`` keeps every patch, in their
    natural order (its masking is on even in eval mode); afterwards, also on an exception
    or Ctrl-C, each masking configuration has its ``mask_ratio`` back and the hooks are
    gone. ValueError (before anything changes) for masking it cannot turn off."""
    maskers = _maskers(model)
    configs = {id(m.config): m.config for m in maskers}.values()
    ratios = [(c, c.mask_ratio) for c in configs]
    hooks = []
    try:
        for c, _ in ratios:
            c.mask_ratio = 0.0
        for m in maskers:
            hooks.append(_EveryPatch(m))
        yield model
    finally:
        for h in hooks:
            h.remove()
        for c, r in ratios:
            c.mask_ratio = r


@contextlib.contextmanager
def frozen(model):
    """``model`` in eval mode and seeing every patch (``every_patch``) for the duration;
    afterwards, also on an exception or Ctrl-C, every submodule has its own training flag
    back. Anything but a module is left alone."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with every_patch(model):
            yield model
    finally:
        for m, t in modes:
            m.training = t  # exactly as recorded: no train() override runs again
