"""Faster input gradients of a frozen model, for saliency on CPU: the same numbers.

While :func:`fast_input_gradients` is active, a frozen model

- keeps its 5-D weights channels-last (oneDNN's fast layout, about 1.3x);
- runs every ``nn.Conv3d`` followed in an ``nn.Sequential`` by an eval-mode
  ``nn.BatchNorm3d`` as one convolution with the normalisation folded into its weight
  and bias, the batch norm an identity: ``gamma (conv(x) - mean) / sqrt(var + eps) +
  beta`` is the convolution with weight ``w gamma / sqrt(var + eps)`` and bias ``(b -
  mean) gamma / sqrt(var + eps) + beta``, so the backward pass skips the batch norm
  (about 1.3x at 64^3);
- back-propagates through every frozen ``nn.Conv3d`` by an explicit transposed
  convolution, or a sub-pixel one for the stem
  (:mod:`~bidsfusion.analyses.frozen_conv`: about 4x for those layers under vmap).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from bidsfusion.analyses.frozen_conv import Geometry, frozen_conv, transposable


@contextlib.contextmanager
def fast_input_gradients(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``model`` (frozen parts only) computes faster input gradients
    as the module doc describes; its layout and forwards are restored on exit."""
    model.to(memory_format=torch.channels_last_3d)
    patched: list[nn.Module] = []
    try:
        folds = _batch_norm_folds(model)
        for module in model.modules():
            forward = _fast_forward(module, folds)
            if forward is not None:
                module.forward = forward
                patched.append(module)
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
        for module in patched:
            del module.forward


def _fast_forward(
    module: nn.Module, folds: dict[nn.Module, tuple[Tensor, ...]]
) -> Callable[[Tensor], Tensor] | None:
    """The replacement forward of ``module``, or None to keep its own."""
    if module in folds and isinstance(module, nn.BatchNorm3d):
        return lambda x: x
    if type(module) is not nn.Conv3d:
        return None
    weight, bias = folds.get(module, (module.weight, module.bias))
    if transposable(module):
        geometry = Geometry.of(module)
        return lambda x: frozen_conv(x, weight, bias, geometry)
    if module in folds:
        return lambda x: module._conv_forward(x, weight, bias)
    return None


def _batch_norm_folds(model: nn.Module) -> dict[nn.Module, tuple[Tensor, ...]]:
    """``{conv: (folded weight, folded bias), batch_norm: ()}`` for every frozen
    ``nn.Conv3d`` -> eval ``nn.BatchNorm3d`` pair that follow each other in a
    ``nn.Sequential`` (the batch norm maps to an empty tuple)."""
    folds: dict[nn.Module, tuple[Tensor, ...]] = {}
    for sequence in model.modules():
        if not isinstance(sequence, nn.Sequential):
            continue
        layers = list(sequence)
        for conv, norm in itertools.pairwise(layers):
            if _foldable(conv, norm):
                folds[conv] = _folded(conv, norm)
                folds[norm] = ()
    return folds


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    frozen = all(not p.requires_grad for p in (*conv.parameters(), *norm.parameters()))
    return (
        type(conv) is nn.Conv3d
        and type(norm) is nn.BatchNorm3d
        and frozen
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    )


def _folded(conv: nn.Conv3d, norm: nn.BatchNorm3d) -> tuple[Tensor, Tensor]:
    """The weight and bias of ``norm(conv(x))`` as one convolution."""
    with torch.no_grad():
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        weight = conv.weight * scale.view(-1, 1, 1, 1, 1)
        weight = weight.contiguous(memory_format=torch.channels_last_3d)
    return weight.to(conv.weight.dtype), shift.to(conv.weight.dtype)
