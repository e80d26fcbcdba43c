"""The InfoNCE estimator of the reference implementation (paper 2.3).

Every same-sample pair is a positive; each positive competes only with the
anchor's scores against all locations of the OTHER samples, never with the
other positives of its own sample.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bidsfusion.objectives.critic import clip_scores, score_penalty, separable_scores


def infonce_chance(batch_size: int, locations: int) -> float:
    """The InfoNCE loss when every score is equal: ``log(1 + (B - 1) * Lx)`` (each positive
    competes with the ``Lx`` locations of the ``B - 1`` other samples); 0 for ``B = 1``."""
    return math.log(1 + (batch_size - 1) * locations)


def infonce(
    x: Tensor, y: Tensor, clip: float = 20.0, penalty_weight: float = 4e-2
) -> tuple[Tensor, Tensor]:
    """InfoNCE loss and score penalty of ``x[B, d, Lx]`` against the anchors ``y[B, d, Ly]``.

    Scores ``f[b, l, c, m] = x[b, :, l] . y[c, :, m] / sqrt(d)``. The penalty is
    ``penalty_weight * mean(f^2)`` over all raw scores; the scores are then
    clipped to ``clip * tanh(f / clip)``. For anchor ``y[c, :, m]`` the positives
    are ``f[c, l, c, m]`` for every ``l`` and the negatives ``f[b, l', c, m]`` for
    every ``b != c`` and every ``l'``. The loss is the mean over the
    ``B * Lx * Ly`` positives of ``log(exp(f+) + sum exp(f-)) - f+``, computed
    with log-sum-exp in the inputs' dtype. The penalty is returned separately
    (the caller adds it); both are scalars.
    """
    B, d, Lx = x.shape
    Ly = y.shape[2]
    raw = separable_scores(
        x.transpose(1, 2).reshape(B * Lx, d), y.transpose(1, 2).reshape(B * Ly, d)
    ).view(B, Lx, B, Ly)
    penalty = score_penalty(raw, penalty_weight)
    scores = clip_scores(raw, clip)
    same_sample = torch.eye(B, dtype=torch.bool, device=x.device)[:, None, :, None]
    negatives = torch.logsumexp(scores.masked_fill(same_sample, float("-inf")), dim=(0, 1))
    positives = torch.diagonal(scores, dim1=0, dim2=2)
    loss = torch.logaddexp(positives, negatives.T) - positives
    return loss.mean(), penalty
