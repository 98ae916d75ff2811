"""Hugging Face models with a head: their backbone, what their head sees, their logits.

A transformers ``*ForImageClassification`` or ``*ForVideoClassification`` holds its base
model under the attribute its class names in ``base_model_prefix`` (``model.vit``,
``model.videomae``) and puts a ``classifier`` module on the base model's tokens, after a
pooling of its own (ViT: the class token; VideoMAE: ``fc_norm`` of the mean token when
``config.use_mean_pooling``; DINOv2: the class token next to the mean patch token).

- Poolings other than ``"head"`` run the base model alone, so a classifier gives exactly
  the features of its backbone (its head, and layers such as ``fc_norm``, take no part).
- ``pooling="head"`` runs the whole model and takes the input of its ``classifier``: the
  pre-logits features, pooled as the model itself pools.
- Its output is an object with ``.logits``, read by ``logits_of``.

transformers itself is never imported here: models are recognised by what they carry.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from .._inputs import check_int

__all__ = [
    "check_label_order",
    "classifier_input",
    "head_width",
    "hf_backbone",
    "is_hf_model",
    "logits_of",
]

_HEAD_CLASS = re.compile(r"For\w*Classification")


def is_hf_model(model) -> bool:
    """Whether ``model`` looks like a transformers ``PreTrainedModel`` (a module with a
    ``config`` and a class-level ``base_model_prefix``)."""
    return (
        isinstance(model, torch.nn.Module)
        and getattr(model, "config", None) is not None
        and isinstance(getattr(type(model), "base_model_prefix", None), str)
    )


def _is_classifier(model) -> bool:
    return bool(_HEAD_CLASS.search(type(model).__name__)) or isinstance(
        getattr(model, "classifier", None), torch.nn.Module
    )


def hf_backbone(model):
    """The module whose outputs are pooled: the base model of a Hugging Face model with a
    head (``getattr(model, model.base_model_prefix)``), else ``model`` itself.

    Raises
    ------
    ValueError
        A Hugging Face classifier whose base model is not under its ``base_model_prefix``
        (as in ``CLIPForImageClassification``, whose prefix is "clip" but whose encoder is
        ``vision_model``): the module to pool cannot be told, so none is guessed.
    """
    if not is_hf_model(model):
        return model
    prefix = type(model).base_model_prefix
    base = getattr(model, prefix, None) if prefix else None
    if isinstance(base, torch.nn.Module) and base is not model:
        return base
    if _is_classifier(model):
        children = ", ".join(name for name, _ in model.named_children()) or "none"
        raise ValueError(
            f"{type(model).__name__} is a Hugging Face model with a head, but its backbone "
            f"is not at model.{prefix or '<empty base_model_prefix>'} (its "
            f"base_model_prefix), so the features to rank on cannot be told: pass the "
            f"backbone module itself (its submodules: {children}), or pooling='head' for "
            "the input of its classifier"
        )
    return model  # a base model itself (ViTModel, VideoMAEModel, ...)


def classifier_input(model, x: torch.Tensor) -> torch.Tensor:
    """(B, D) input of a Hugging Face classifier's ``classifier`` module on ``x``: the
    pre-logits features, pooled as the model pools them. Runs the whole model (gradients
    flow through the result when enabled).

    Raises
    ------
    ValueError
        No single ``classifier`` module (DeiT's distilled classifier has two heads), a head
        not run exactly once, or an input that is not (B, D) (or (B, D, 1, 1) maps).
    """
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Module):
        raise ValueError(
            "pooling='head' needs a timm model (forward_features/forward_head) or a Hugging "
            f"Face classifier with one `classifier` head module, and {type(model).__name__} "
            "has neither; use pooling='avg', 'cls', 'max', 'avgmax' or a callable"
        )
    seen: list[Any] = []

    def grab(module, args, kwargs):
        seen.append(args[0] if args else next(iter(kwargs.values()), None))

    handle = head.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model(pixel_values=x)
    finally:
        handle.remove()
    feats = seen[0] if len(seen) == 1 else None
    if torch.is_tensor(feats) and feats.ndim == 4 and feats.shape[2:] == (1, 1):
        feats = feats.flatten(1)  # pooled maps of a CNN (ResNet's pooler output)
    if not torch.is_tensor(feats) or feats.ndim != 2:
        got = f"{len(seen)} calls" if len(seen) != 1 else _describe(seen[0])
        raise ValueError(
            f"pooling='head': the classifier of {type(model).__name__} must run once on "
            f"(batch, features), got {got}; use another pooling or a callable"
        )
    return feats


def _describe(v) -> str:
    return f"shape {tuple(v.shape)}" if torch.is_tensor(v) else type(v).__name__


def logits_of(output, width: int | None = None, what: str = "num_classes") -> torch.Tensor:
    """The (batch, classes) logits of a model's output: a tensor, or an object with a
    ``.logits`` tensor (a Hugging Face ``ModelOutput``).

    Raises
    ------
    TypeError
        Neither (a tuple, from ``return_dict=False``, included).
    ValueError
        Logits that are not 2-D, or not ``width`` wide when given.
    """
    logits = output if torch.is_tensor(output) else getattr(output, "logits", None)
    if not torch.is_tensor(logits):
        raise TypeError(
            "model must return logits: a (batch, classes) tensor or an output with a "
            f".logits tensor (a Hugging Face ModelOutput), got {type(output).__name__}"
            + (" (build the model with return_dict=True)" if isinstance(output, tuple) else "")
        )
    if logits.ndim != 2:
        raise ValueError(f"model's logits must be (batch, classes), got {tuple(logits.shape)}")
    if width is not None and logits.shape[1] != width:
        raise ValueError(
            f"model returned {logits.shape[1]} logits per sample, but {what} is {width}"
        )
    return logits


def head_width(model, num_classes) -> int:
    """How many logits ``model`` returns: ``num_classes`` when given, else read off a
    ``Classifier``'s Linear ``head`` or a Hugging Face model's ``config.num_labels``."""
    if num_classes is not None:
        return check_int(num_classes, "num_classes", 2)
    head = getattr(model, "head", None)
    if isinstance(head, torch.nn.Linear):
        return head.out_features
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    if isinstance(labels, int):
        return check_int(labels, "model.config.num_labels", 2)
    raise TypeError(
        f"cannot tell how many logits {type(model).__name__} returns (no Linear `head`, "
        "no config.num_labels): pass num_classes="
    )


def check_label_order(model, ranking) -> None:
    """ValueError when ``model.config.id2label`` names its logit columns with the ranking's
    labels in another order than ``ranking.to_hf_label_maps()``: its columns are then not
    the ranking's head positions (a head trained on class indices, or through another
    ranking), and mapping its argmax through ``ranking`` would give wrong classes.

    Labels that are not the ranking's (transformers' default "LABEL_0", ...) say nothing
    about the order and are not checked.
    """
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if ranking is None or not isinstance(id2label, dict):
        return
    try:
        expected, _ = ranking.to_hf_label_maps()
    except ValueError:  # classes whose text is not unique: nothing to compare
        return
    got = {int(k): str(v) for k, v in id2label.items()}
    if set(got.values()) == set(expected.values()) and got != expected:
        wrong = next(p for p in sorted(expected) if got.get(p) != expected[p])
        raise ValueError(
            f"model.config.id2label labels logit column {wrong} {got.get(wrong)!r}, but the "
            f"ranking puts {expected[wrong]!r} at position {wrong}: the model's logits are "
            "not in the ranking's positions (pass ranking=None for a head trained on class "
            "indices, or the ranking it was trained with)"
        )
