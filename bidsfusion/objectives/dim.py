"""The four DIM edges between conv features ``c_i`` and latents ``z_i`` (paper 2.3).

For any number of modalities: ``L`` sums over ``i`` of ``(phi_i(c_i), psi_i(z_i))``;
``CL`` over ordered pairs ``i != j`` of ``(phi_i(c_i), psi_j(z_j))``; ``CS`` over
ordered pairs of one random location of ``phi_i(c_i)`` per sample (the anchor)
against all locations of ``phi_j(c_j)``; ``S`` over ordered pairs of
``(psi_i(z_i), psi_j(z_j))``. The anchor is always the second member. Each term
returns ``{name, name_penalty, name_chance, "loss"}``; ``name_chance`` is the
term's value when every score is equal (:func:`~bidsfusion.objectives.infonce.
infonce_chance` summed over the edges): a term that does not go below it has
learned nothing. :meth:`pair_embeddings` gives, per cross-modal edge, the critic's
mean score over brain locations as a product of two embeddings: validation pair
retrieval by the critic (:func:`~bidsfusion.train.diagnostics.critic_retrieval`).

In a distributed training step the candidates (the first member of every edge),
their brain locations and the CS draws cover the global batch
(:mod:`~bidsfusion.objectives.gather`) and the anchors are this rank's samples:
the terms, their gradients and their chance levels are those of the global batch.

Only locations that see the brain take part (:func:`brain_locations`): a location
of the 8^3 map whose block of the input holds no voxel above the volume's minimum
(the background of a brain-masked map, also the fill of a translation) is neither
a positive, a negative nor a CS anchor. At 64^3 about two thirds of the locations
are background: unmasked, they are positives that nothing can tell apart, and CS
stayed at its chance level even when every patch showed which subject it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, permutations
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.base import Heads, Objective
from bidsfusion.objectives.gather import all_gather, local_rows
from bidsfusion.objectives.infonce import infonce, infonce_chance, usable_locations
from bidsfusion.objectives.options import require_at_least

CLIP, PENALTY_WEIGHT = 20.0, 4e-2
"""The critic's default soft clip and score-penalty weight (paper 2.2)."""


class _InfoNCETerm(Objective):
    """A sum of InfoNCE estimates over edges, on the shared heads.

    ``heads`` is the composed objective's :class:`Heads` (not registered here, its
    owner trains it); without it the term builds and owns its own.
    """

    name: ClassVar[str]
    cross: ClassVar[bool] = True
    uses_local: ClassVar[bool] = False
    uses_latent: ClassVar[bool] = True
    located: bool = False

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        heads: Heads | None = None,
        clip: float = CLIP,
        penalty_weight: float = PENALTY_WEIGHT,
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
            located=self.located,
            term=self.name,
        )
        require_at_least(self.name, "clip", clip, 0.0, strict=True)
        require_at_least(self.name, "penalty_weight", penalty_weight, 0.0)
        self.clip, self.penalty_weight = clip, penalty_weight

    @property
    def heads(self) -> Heads:
        """The (shared) projection heads."""
        return self._heads[0]

    def _local(self, outputs: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
        return {m: self.heads.embed_local(m, outputs[m]) for m in self.modalities}

    def _masks(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor | None]:
        """Each modality's brain locations ``[B, L]`` on its local map (None when the batch
        lacks its volume)."""
        return {
            m: brain_locations(batch[m], outputs[m].features["local"].shape[2:])
            if m in batch
            else None
            for m in self.modalities
        }

    def _latent(self, outputs: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
        return {m: self.heads.embed_latent(m, outputs[m]) for m in self.modalities}

    def _sum(self, edges: Sequence[tuple[Tensor, Tensor, Tensor | None]]) -> dict[str, Tensor]:
        """Sum InfoNCE losses, penalties and chance levels over ``(x, anchor, x_mask)`` edges,
        ``x`` and ``x_mask`` of the global batch, the anchors this rank's rows of it."""
        losses, penalties = zip(
            *(
                infonce(x, y, self.clip, self.penalty_weight, mask, local_rows(len(y)).start)
                for x, y, mask in edges
            ),
            strict=True,
        )
        loss, penalty = sum(losses), sum(penalties)
        chance = torch.stack(
            [
                infonce_chance(usable_locations(mask, x.shape[0], x.shape[2], x.device).sum(1))
                for x, _, mask in edges
            ]
        ).sum()
        return {
            self.name: loss,
            f"{self.name}_penalty": penalty,
            f"{self.name}_chance": chance.to(loss.dtype),
            "loss": loss + penalty,
        }


class _LocalTerm(_InfoNCETerm):
    """A term on local embeddings; ``located`` (default true) gives each location of the
    local map its own linear map in the shared local head
    (:class:`~bidsfusion.models.heads.LocalHead`), false the paper's location-blind head.
    """

    uses_local = True

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        heads: Heads | None = None,
        clip: float = CLIP,
        penalty_weight: float = PENALTY_WEIGHT,
        located: bool = True,
    ) -> None:
        self.located = located
        super().__init__(modalities, dims, heads=heads, clip=clip, penalty_weight=penalty_weight)


class LocalDIM(_LocalTerm):
    """``L``: each modality's local embeddings against its own latent."""

    name = "L"
    cross = False

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"L", "L_penalty", "L_chance", "loss"}``."""
        local, latent = _gathered(self._local(outputs)), self._latent(outputs)
        masks = _gathered(self._masks(outputs, batch))
        return self._sum([(local[m], latent[m], masks[m]) for m in self.modalities])


class CrossLocalDIM(_LocalTerm):
    """``CL``: local embeddings of modality ``i`` against the latent of ``j != i``."""

    name = "CL"

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"CL", "CL_penalty", "CL_chance", "loss"}``."""
        local, latent = _gathered(self._local(outputs)), self._latent(outputs)
        masks = _gathered(self._masks(outputs, batch))
        return self._sum(
            [(local[i], latent[j], masks[i]) for i, j in permutations(self.modalities, 2)]
        )

    def pair_embeddings(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """``"<i>_<j>"``: the mean brain-location embedding of ``i`` against ``j``'s latent."""
        local, latent = self._local(outputs), self._latent(outputs)
        masks = self._masks(outputs, batch)
        return {
            f"{i}_{j}": (location_mean(local[i], masks[i]), latent[j][:, :, 0])
            for i, j in permutations(self.modalities, 2)
        }


class CrossSpatialDIM(_LocalTerm):
    """``CS``: one random brain location of ``phi_i(c_i)`` per sample against all brain
    locations of ``phi_j(c_j)``.

    Locations come from ``torch.rand`` on the features' device, so they follow
    ``torch.manual_seed``; a fresh draw for every ordered pair and call.
    """

    name = "CS"
    uses_latent = False

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"CS", "CS_penalty", "CS_chance", "loss"}``."""
        rows = local_rows(len(outputs[self.modalities[0]].latent))
        local = _gathered(self._local(outputs))
        masks = _gathered(self._masks(outputs, batch))
        return self._sum(
            [
                (local[j], random_location(local[i], masks[i])[rows], masks[j])
                for i, j in permutations(self.modalities, 2)
            ]
        )

    def pair_embeddings(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """``"<i>_<j>"``: the mean brain-location embeddings of ``i`` and ``j`` (the mean
        score over anchor and candidate locations is symmetric: one per unordered pair)."""
        local, masks = self._local(outputs), self._masks(outputs, batch)
        return {
            f"{i}_{j}": (location_mean(local[i], masks[i]), location_mean(local[j], masks[j]))
            for i, j in combinations(self.modalities, 2)
        }


class SimilarityDIM(_InfoNCETerm):
    """``S``: the latent of modality ``i`` against the latent of ``j != i``."""

    name = "S"

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"S", "S_penalty", "S_chance", "loss"}``."""
        latent = self._latent(outputs)
        gathered = _gathered(latent)
        return self._sum(
            [(gathered[i], latent[j], None) for i, j in permutations(self.modalities, 2)]
        )

    def pair_embeddings(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """``"<i>_<j>"``: the two latent embeddings (one per unordered pair: S is symmetric)."""
        latent = self._latent(outputs)
        return {
            f"{i}_{j}": (latent[i][:, :, 0], latent[j][:, :, 0])
            for i, j in combinations(self.modalities, 2)
        }


def _gathered(values: Mapping[str, Tensor | None]) -> dict[str, Tensor | None]:
    """Each value gathered across the ranks of a distributed step (:func:`all_gather`)."""
    return {m: None if v is None else all_gather(v) for m, v in values.items()}


def random_location(embeddings: Tensor, mask: Tensor | None = None) -> Tensor:
    """One location per sample, uniform among its ``mask`` ones (bool ``[B, L]``; None or
    an empty row: all): ``[B, d, L] -> [B, d, 1]``."""
    B, d, L = embeddings.shape
    keep = usable_locations(mask, B, L, embeddings.device)
    draws = torch.rand(B, L, device=embeddings.device).masked_fill(~keep, -1.0)
    index = draws.argmax(dim=1).view(B, 1, 1).expand(B, d, 1)
    return embeddings.gather(2, index)


def location_mean(embeddings: Tensor, mask: Tensor | None) -> Tensor:
    """The mean over each sample's ``mask`` locations (None or an empty row: all):
    ``[B, d, L] -> [B, d]``; with a separable critic, the mean score of the locations."""
    B, _, L = embeddings.shape
    weights = usable_locations(mask, B, L, embeddings.device).to(embeddings.dtype)[:, None]
    return (embeddings * weights).sum(2) / weights.sum(2)


def brain_voxels(volume: Tensor) -> Tensor:
    """The brain of brain-masked volumes: voxels above each volume's minimum (its
    background, also the fill of a translation): ``[B, C, *S]`` -> bool, same shape."""
    return volume > volume.amin(dim=tuple(range(1, volume.ndim)), keepdim=True)


def brain_locations(volume: Tensor, size: Sequence[int]) -> Tensor:
    """Which locations of a ``size`` feature map see the brain: bool ``[B, prod(size)]``.

    ``volume`` ``[B, 1, D, H, W]``; a location counts when its block of the volume
    (adaptive max pooling) holds a :func:`brain_voxels` voxel.
    """
    above = brain_voxels(volume).to(torch.float32)
    return F.adaptive_max_pool3d(above, tuple(size)).flatten(1) > 0
