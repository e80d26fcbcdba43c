"""A Barlow Twins term for bidsfusion: decorrelated, cross-modally invariant latents.

Installed, it adds the objective term ``Barlow`` (use ``--objective S-Barlow``
or ``--objective Barlow``). It uses only bidsfusion's public hooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
from torch import Tensor

from bidsfusion.api import (
    Dims,
    EncoderOutput,
    Objective,
    ObjectiveRegister,
    hookimpl,
    require_at_least,
)


def barlow_twins(z1: Tensor, z2: Tensor, off_diagonal_weight: float = 5e-3) -> Tensor:
    """Barlow Twins loss of two latent batches ``[B, d]`` (Zbontar et al., 2021).

    Each dimension is standardised over the batch; with ``C = z1n.T @ z2n / B``
    the loss is ``sum_i (1 - C_ii)^2 + w * sum_{i != j} C_ij^2``.
    """
    z1n = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + 1e-6)
    z2n = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + 1e-6)
    c = z1n.T @ z2n / z1.shape[0]
    on_diagonal = (1 - torch.diagonal(c)).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + off_diagonal_weight * off_diagonal


class BarlowTwins(Objective):
    """Sum of :func:`barlow_twins` over every pair of modalities' latents."""

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        weight: float = 5e-3,
    ) -> None:
        super().__init__()
        require_at_least("Barlow", "weight", weight, 0.0)
        self.pairs = list(combinations(modalities, 2))
        self.weight = weight

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"Barlow", "loss"}``: the summed pair losses."""
        loss = sum(
            barlow_twins(outputs[a].latent, outputs[b].latent, self.weight) for a, b in self.pairs
        )
        return {"Barlow": loss, "loss": loss}


@hookimpl
def register_objectives(register: ObjectiveRegister) -> None:
    """Register the ``Barlow`` term."""
    register("Barlow", BarlowTwins)
