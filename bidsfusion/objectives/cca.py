"""``CCA``: deep CCA on the latents of every modality pair ``i < j`` (DCCAE baseline).

``norm``: ``trace`` (the default) is minus the total canonical correlation (the trace
norm of the whitened cross-covariance), once per unordered pair. ``frobenius`` is what the
reference implementation computes: minus the Frobenius norm of that matrix (the root of
the sum of the squared canonical correlations), once per ordered pair, so each pair
counts twice and, in DCCAE, CCA weighs twice as much against AE (docs/deviations.md).

In a distributed training step the covariances are those of the global batch
(:mod:`~bidsfusion.objectives.gather`): every rank computes the same loss, and
DDP's mean of the ranks' gradients, each the sum over the ranks of their gradients of
its rows, is the gradient of the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, permutations
from typing import Literal

import torch
from torch import Tensor

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.base import Objective
from bidsfusion.objectives.gather import all_gather
from bidsfusion.objectives.options import require_at_least


def _whiten(h: Tensor, cross: Tensor, ridge: float) -> Tensor:
    """``L^-1 cross`` with ``L L^T = cov(h) + ridge * I`` (Cholesky), ``h`` centred."""
    cov = h.T @ h / (h.shape[0] - 1)
    cov = cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    return torch.linalg.solve_triangular(torch.linalg.cholesky(cov), cross, upper=False)


def cca_loss(
    h1: Tensor, h2: Tensor, r1: float = 1e-3, r2: float = 1e-3, norm: str = "trace"
) -> Tensor:
    """Minus the canonical correlation of ``h1[N, d1]`` and ``h2[N, d2]``, float64.

    ``-||S11^-1/2 S12 S22^-1/2||`` in the trace norm (the total canonical correlation) or
    the Frobenius norm (``norm``), ridges ``r1``, ``r2`` > 0 on the covariances.
    ``S^-1/2`` and the Cholesky factor ``L^-1`` differ by a rotation, so
    ``L1^-1 S12 L2^-T`` has the same singular values. Whitening by an eigendecomposition
    (as the reference does, eigenvalues <= 1e-9 dropped) gives the same singular values,
    since every eigenvalue of ``S + r I`` is >= r, but its gradient is NaN whenever
    eigenvalues repeat (any batch smaller than the latent size); Cholesky's is not.
    """
    if min(r1, r2) <= 1e-9:
        raise ValueError(f"CCA ridges must be > 1e-9, got r1={r1}, r2={r2}")
    h1, h2 = h1.double(), h2.double()
    h1, h2 = h1 - h1.mean(0), h2 - h2.mean(0)
    s12 = h1.T @ h2 / (h1.shape[0] - 1)
    t = _whiten(h2, _whiten(h1, s12, r1).T, r2)
    correlations = torch.linalg.svdvals(t)
    if norm == "frobenius":
        return -correlations.pow(2).sum().sqrt()
    return -correlations.sum()


class DeepCCA(Objective):
    """Sum of :func:`cca_loss` over modality pairs ``i < j`` of the latents (``trace``), or
    over ordered pairs ``i != j`` (``frobenius``, the reference's)."""

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        ridge: float = 1e-3,
        norm: Literal["trace", "frobenius"] = "trace",
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        if len(self.modalities) < 2:
            raise UsageError("objective term CCA needs at least two modalities")
        require_at_least("CCA", "ridge", ridge, 1e-9, strict=True)
        self.ridge, self.norm = ridge, norm

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"CCA", "loss"}``, float32 (float64 inside)."""
        pairs = (
            permutations(self.modalities, 2)
            if self.norm == "frobenius"
            else combinations(self.modalities, 2)
        )
        loss = sum(
            cca_loss(
                all_gather(outputs[i].latent),
                all_gather(outputs[j].latent),
                self.ridge,
                self.ridge,
                self.norm,
            )
            for i, j in pairs
        )
        loss = loss.float()
        return {"CCA": loss, "loss": loss}
