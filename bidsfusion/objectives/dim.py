"""The four DIM edges between conv features ``c_i`` and latents ``z_i`` (paper 2.3).

For any number of modalities: ``L`` sums over ``i`` of ``(phi_i(c_i), psi_i(z_i))``;
``CL`` over ordered pairs ``i != j`` of ``(phi_i(c_i), psi_j(z_j))``; ``CS`` over
ordered pairs of one random location of ``phi_i(c_i)`` per sample (the anchor)
against all locations of ``phi_j(c_j)``; ``S`` over ordered pairs of
``(psi_i(z_i), psi_j(z_j))``. The anchor is always the second member. Each term
returns ``{name, name_penalty, name_chance, "loss"}``; ``name_chance`` is the
term's value when every score is equal (:func:`~bidsfusion.objectives.infonce.
infonce_chance` summed over the edges): a term that does not go below it has
learned nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import permutations
from typing import ClassVar

import torch
from torch import Tensor

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.base import Heads, Objective
from bidsfusion.objectives.infonce import infonce, infonce_chance


class _InfoNCETerm(Objective):
    """A sum of InfoNCE estimates over edges, on the shared heads.

    ``heads`` is the composed objective's :class:`Heads` (not registered here, its
    owner trains it); without it the term builds and owns its own.
    """

    name: ClassVar[str]
    cross: ClassVar[bool] = True
    uses_local: ClassVar[bool] = True
    uses_latent: ClassVar[bool] = True

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        heads: Heads | None = None,
        clip: float = 20.0,
        penalty_weight: float = 4e-2,
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        if self.cross and len(self.modalities) < 2:
            raise UsageError(f"objective term {self.name} needs at least two modalities")
        if heads is None:
            heads = self.own_heads = Heads(dims)
        self._heads = (heads,)
        heads.require(
            local=self.modalities if self.uses_local else (),
            latent=self.modalities if self.uses_latent else (),
        )
        self.clip, self.penalty_weight = clip, penalty_weight

    @property
    def heads(self) -> Heads:
        """The (shared) projection heads."""
        return self._heads[0]

    def _local(self, outputs: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
        return {m: self.heads.embed_local(m, outputs[m]) for m in self.modalities}

    def _latent(self, outputs: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
        return {m: self.heads.embed_latent(m, outputs[m]) for m in self.modalities}

    def _sum(self, edges: Sequence[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """Sum InfoNCE losses, penalties and chance levels over ``(x, anchor)`` edges."""
        losses, penalties = zip(
            *(infonce(x, y, self.clip, self.penalty_weight) for x, y in edges), strict=True
        )
        loss, penalty = sum(losses), sum(penalties)
        chance = sum(infonce_chance(x.shape[0], x.shape[2]) for x, _ in edges)
        return {
            self.name: loss,
            f"{self.name}_penalty": penalty,
            f"{self.name}_chance": loss.new_tensor(chance),
            "loss": loss + penalty,
        }


class LocalDIM(_InfoNCETerm):
    """``L``: each modality's local embeddings against its own latent."""

    name = "L"
    cross = False

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"L", "L_penalty", "loss"}``."""
        local, latent = self._local(outputs), self._latent(outputs)
        return self._sum([(local[m], latent[m]) for m in self.modalities])


class CrossLocalDIM(_InfoNCETerm):
    """``CL``: local embeddings of modality ``i`` against the latent of ``j != i``."""

    name = "CL"

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"CL", "CL_penalty", "loss"}``."""
        local, latent = self._local(outputs), self._latent(outputs)
        return self._sum([(local[i], latent[j]) for i, j in permutations(self.modalities, 2)])


class CrossSpatialDIM(_InfoNCETerm):
    """``CS``: one random location of ``phi_i(c_i)`` per sample against all of ``phi_j(c_j)``.

    Locations come from ``torch.randint`` on the features' device, so they follow
    ``torch.manual_seed``; a fresh draw for every ordered pair and call.
    """

    name = "CS"
    uses_latent = False

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"CS", "CS_penalty", "loss"}``."""
        local = self._local(outputs)
        return self._sum(
            [(local[j], _random_location(local[i])) for i, j in permutations(self.modalities, 2)]
        )


class SimilarityDIM(_InfoNCETerm):
    """``S``: the latent of modality ``i`` against the latent of ``j != i``."""

    name = "S"
    uses_local = False

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"S", "S_penalty", "loss"}``."""
        latent = self._latent(outputs)
        return self._sum([(latent[i], latent[j]) for i, j in permutations(self.modalities, 2)])


def _random_location(embeddings: Tensor) -> Tensor:
    """One uniformly drawn location per sample: ``[B, d, L] -> [B, d, 1]``."""
    B, d, L = embeddings.shape
    index = torch.randint(L, (B, 1, 1), device=embeddings.device).expand(B, d, 1)
    return embeddings.gather(2, index)
