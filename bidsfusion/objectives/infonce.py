"""The InfoNCE estimator of the reference implementation (paper 2.3).

Every same-sample pair is a positive; each positive competes only with the
anchor's scores against all locations of the OTHER samples, never with the
other positives of its own sample. On brain volumes most locations of a feature map
lie outside the brain, where every subject looks the same; a mask drops them (see
:mod:`~bidsfusion.objectives.dim`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bidsfusion.objectives.critic import clip_scores, separable_scores


def infonce_chance(counts: Tensor) -> Tensor:
    """The InfoNCE loss when every score is equal, for ``counts[b]`` usable locations of
    sample ``b``: each positive of sample ``c`` competes with the ``N - counts[c]``
    locations of the other samples, so the mean over positives is
    ``sum_c counts[c] log(1 + N - counts[c]) / N`` (``N = sum counts``); with ``Lx``
    locations everywhere ``log(1 + (B - 1) Lx)``, and 0 for ``B = 1``. A float64 scalar
    on the device of ``counts``: computed there, it costs a training step no wait for
    the device."""
    counts = counts.double()
    total = counts.sum()
    return (counts * torch.log1p(total - counts)).sum() / total


def infonce(
    x: Tensor,
    y: Tensor,
    clip: float = 20.0,
    penalty_weight: float = 4e-2,
    x_mask: Tensor | None = None,
    first: int = 0,
) -> tuple[Tensor, Tensor]:
    """InfoNCE loss and score penalty of ``x[N, d, Lx]`` against the anchors ``y[B, d, Ly]``.

    Anchor sample ``c`` is sample ``first + c`` of ``x``: ``N = B`` and ``first = 0``
    in one process; in a distributed step ``x`` is the global batch and ``y`` this
    rank's rows of it (:mod:`~bidsfusion.objectives.gather`).
    Scores ``f[b, l, c, m] = x[b, :, l] . y[c, :, m] / sqrt(d)``. The penalty is
    ``penalty_weight * mean(f^2)`` over all raw scores; the scores are then
    clipped to ``clip * tanh(f / clip)``. For anchor ``y[c, :, m]`` the positives
    are ``f[first + c, l, c, m]`` for every ``l`` and the negatives ``f[b, l', c, m]``
    for every other ``b`` and every ``l'``. The loss is the mean over the
    ``N * Lx * Ly`` positives of ``log(exp(f+) + sum exp(f-)) - f+``, computed
    with log-sum-exp in the inputs' dtype; with ``N > B`` the sum runs over the
    ``B`` anchors only and is scaled by ``N / B``, so the mean over the ranks is
    the loss of the global batch. ``x_mask`` (bool ``[N, Lx]``) keeps only its
    locations of ``x`` as positives, negatives and in the penalty (a sample without
    any keeps all of its own). The penalty is returned separately (the caller adds
    it); both are scalars.
    """
    N, d, Lx = x.shape
    B, _, Ly = y.shape
    raw = separable_scores(
        x.transpose(1, 2).reshape(N * Lx, d), y.transpose(1, 2).reshape(B * Ly, d)
    ).view(N, Lx, B, Ly)
    keep = usable_locations(x_mask, N, Lx, x.device)
    weights = keep.to(raw.dtype)[:, :, None, None].expand_as(raw)
    penalty = penalty_weight * (raw.square() * weights).sum() / weights.sum()
    scores = clip_scores(raw, clip)
    same_sample = torch.eye(N, dtype=torch.bool, device=x.device)[:, first : first + B]
    excluded = same_sample[:, None, :, None] | ~keep[:, :, None, None]
    negatives = torch.logsumexp(scores.masked_fill(excluded, float("-inf")), dim=(0, 1))
    positives = torch.diagonal(scores[first : first + B], dim1=0, dim2=2)
    loss = torch.logaddexp(positives, negatives.T) - positives
    positive_weights = keep[first : first + B].T.to(loss.dtype)[:, None, :]
    count = keep.to(loss.dtype).sum() * (B / N)
    return (loss * positive_weights).sum() / (count * Ly), penalty


def usable_locations(mask: Tensor | None, B: int, L: int, device: torch.device) -> Tensor:
    """``mask`` (bool ``[B, L]``, None: all) with the rows of samples that keep no
    location set to all."""
    if mask is None:
        return torch.ones(B, L, dtype=torch.bool, device=device)
    return mask | ~mask.any(dim=1, keepdim=True)
