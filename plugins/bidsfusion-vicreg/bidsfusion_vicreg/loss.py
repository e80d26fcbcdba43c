"""VICReg (Bardes, Ponce and LeCun, 2022) between the latents of every modality pair.

For each unordered pair ``i < j`` of the term's modalities (the convention of the
built-in ``CCA``: the loss is symmetric in ``i`` and ``j``), with ``z_i``, ``z_j`` the
latents ``[B, d]``, the pair loss is the paper's equation (6)::

    lambda * s(z_i, z_j) + mu * (v(z_i) + v(z_j)) + nu * (c(z_i) + c(z_j))

``s`` the mean squared difference, ``v(z) = mean_k relu(gamma - sqrt(var(z_k) + eps))``
(batch variance, ``B - 1`` in the denominator), ``c(z)`` the sum of the squared
off-diagonal entries of the batch covariance ``[d, d]``, divided by ``d``. The term is
the sum over the pairs, so with ``N`` modalities each modality's variance and
covariance count ``N - 1`` times. It acts on the latents themselves (no expander).

In a distributed training step every statistic is that of the global batch
(:func:`bidsfusion.objectives.gather.all_gather`, as the built-in ``CCA``): every
rank computes the same loss, and DDP's mean of the ranks' gradients is the gradient
of the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor

from bidsfusion.api import Dims, EncoderOutput, Objective, UsageError, all_gather, require_at_least

PARTS = ("invariance", "variance", "covariance")
"""The unweighted parts, logged as ``VICReg_<part>``."""


def variance_hinge(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """``v(z)``, ``z [B, d]``: mean over the dimensions of ``relu(gamma - sqrt(var + eps))``."""
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def off_diagonal_covariance(z: Tensor) -> Tensor:
    """``c(z)``, ``z [B, d]``: the squared off-diagonal entries of the batch covariance, summed,
    divided by ``d``."""
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (z.shape[0] - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / z.shape[1]


def vicreg_parts(
    z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4
) -> dict[str, Tensor]:
    """The unweighted parts of one pair ``z1, z2 [B, d]``: ``invariance`` ``s(z1, z2)``,
    ``variance`` ``v(z1) + v(z2)``, ``covariance`` ``c(z1) + c(z2)``."""
    return {
        "invariance": F.mse_loss(z1, z2),
        "variance": variance_hinge(z1, gamma, eps) + variance_hinge(z2, gamma, eps),
        "covariance": off_diagonal_covariance(z1) + off_diagonal_covariance(z2),
    }


class VICReg(Objective):
    """``VICReg``: the weighted VICReg loss summed over the modality pairs ``i < j``.

    Options: ``invariance_weight`` (lambda), ``variance_weight`` (mu),
    ``covariance_weight`` (nu), the paper's 25, 25 and 1; ``gamma``, the target
    standard deviation of every latent dimension; ``eps``, added to the variance.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.pairs = list(combinations(modalities, 2))
        if not self.pairs:
            raise UsageError("objective term VICReg needs at least two modalities")
        weights = (invariance_weight, variance_weight, covariance_weight)
        for part, weight in zip(PARTS, weights, strict=True):
            require_at_least("VICReg", f"{part}_weight", weight, 0.0)
        require_at_least("VICReg", "gamma", gamma, 0.0, strict=True)
        require_at_least("VICReg", "eps", eps, 0.0, strict=True)
        self.weights = dict(zip(PARTS, weights, strict=True))
        self.gamma, self.eps = gamma, eps

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"VICReg", "VICReg_invariance", "VICReg_variance", "VICReg_covariance", "loss"}``:
        the weighted total and each unweighted part, summed over the pairs."""
        latents = {m: all_gather(outputs[m].latent) for pair in self.pairs for m in pair}
        per_pair = [
            vicreg_parts(latents[a], latents[b], self.gamma, self.eps) for a, b in self.pairs
        ]
        parts = {part: sum(p[part] for p in per_pair) for part in PARTS}
        loss = sum(self.weights[part] * parts[part] for part in PARTS)
        return {"VICReg": loss, **{f"VICReg_{k}": v for k, v in parts.items()}, "loss": loss}
