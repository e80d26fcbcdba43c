"""The separable critic, its clipping and its score penalty (paper 2.2-2.3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def separable_scores(x: Tensor, y: Tensor) -> Tensor:
    """All pairwise scores ``f(u, v) = u . v / sqrt(d)``: ``x[N, d], y[M, d] -> [N, M]``."""
    return (x @ y.transpose(-1, -2)) / math.sqrt(x.shape[-1])


def clip_scores(scores: Tensor, c: float = 20.0) -> Tensor:
    """Soft clipping ``c * tanh(f / c)``, elementwise."""
    return c * torch.tanh(scores / c)


def score_penalty(scores: Tensor, weight: float = 4e-2) -> Tensor:
    """``weight * mean(f^2)`` over all (raw, unclipped) scores; a scalar."""
    return weight * scores.square().mean()
