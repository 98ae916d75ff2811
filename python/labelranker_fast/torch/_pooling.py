"""One feature vector per sample from whatever a backbone returns.

Backbones and what they return:
- timm models: ``forward_features(x)``: tokens (B, T, D) for ViTs, with
  ``num_prefix_tokens`` class/register tokens first; maps (B, C, H, W) for CNNs. With
  ``pooling="head"`` timm's own ``forward_head(..., pre_logits=True)`` pools instead.
- Hugging Face models (``VideoMAEModel``, ``ViTModel``, ...): an output object whose
  ``last_hidden_state`` is (B, T, D).
- anything else: a tensor, (B, D) already pooled, or tokens / maps as above.

Pooling over tokens: ``"cls"`` the first token, ``"avg"`` the mean of the patch tokens
(the prefix tokens left out), ``"max"`` their maximum, ``"avgmax"`` the mean of those two
(as timm defines it); over maps the same over H x W. A callable gets the raw output.
"""

from __future__ import annotations

import torch

__all__ = ["POOLINGS", "backbone_features", "pool"]

POOLINGS = ("cls", "avg", "max", "avgmax", "head")


def check_pooling(pooling) -> None:
    if callable(pooling):
        return
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or a callable, got {pooling!r}")


def _prefix_tokens(model) -> int:
    n = getattr(model, "num_prefix_tokens", None)  # timm ViTs
    if n is None:
        config = getattr(model, "config", None)  # Hugging Face: ViT has a CLS token, VideoMAE not
        n = 1 if config is not None and getattr(config, "model_type", "") in ("vit", "deit", "dinov2") else 0
    return int(n)


def pool(output, pooling, prefix_tokens: int = 0) -> torch.Tensor:
    """(B, D) features of a backbone output (see the module docstring)."""
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
                feats = x[:, 0]
            else:
                patches = x[:, prefix_tokens:] if x.shape[1] > prefix_tokens else x
                feats = _reduce(patches, pooling, dim=1)
        elif x.ndim == 4:  # maps
            if pooling == "cls":
                raise ValueError("pooling='cls' needs token outputs (B, T, D), got maps (B, C, H, W)")
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


def backbone_features(model, x: torch.Tensor, pooling="avg") -> torch.Tensor:
    """Runs ``model`` on ``x`` and pools to (B, D)."""
    if pooling == "head":
        if not hasattr(model, "forward_head"):
            raise ValueError("pooling='head' needs a timm model (forward_features/forward_head)")
        return pool(model.forward_head(model.forward_features(x), pre_logits=True), "avg")
    if hasattr(model, "forward_features"):
        out = model.forward_features(x)
    elif hasattr(model, "config") and hasattr(model, "forward"):  # Hugging Face
        out = model(pixel_values=x)
    else:
        out = model(x)
    return pool(out, pooling, _prefix_tokens(model))
