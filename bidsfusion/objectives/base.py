"""The objective contract, the dimensions an objective is built from, and shared heads.

``batch`` (the second argument of every ``Objective.forward``) holds each
modality's input ``[B, 1, D, H, W]`` under the modality's name and ``"label"``,
a LongTensor ``[B]``: 1 = positive (AD), 0 = negative (HC), -1 = other/unlabelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from bidsfusion.models.base import EncoderOutput
from bidsfusion.models.heads import LatentHead, LocalHead

NEEDS = frozenset({"latent", "local", "reconstruction", "label", "input"})
"""What an objective may declare it needs: encoder latents, the ``"local"`` map,
its own decoders (``reconstruction``), ``batch["label"]``, the inputs ``batch[m]``."""


@dataclass(frozen=True)
class Dims:
    """Sizes of one modality's encoder, all an objective needs to build its parts."""

    in_shape: tuple[int, int, int]
    latent_dim: int
    local_channels: int
    embed_dim: int = 64

    @classmethod
    def of(cls, encoder: nn.Module, embed_dim: int = 64) -> Dims:
        """Read ``in_shape``, ``latent_dim`` and ``local_channels`` from an encoder."""
        return cls(tuple(encoder.in_shape), encoder.latent_dim, encoder.local_channels, embed_dim)


class Objective(nn.Module):
    """A loss on encoder outputs: ``forward(outputs, batch) -> {term: Tensor, "loss": Tensor}``.

    ``outputs`` maps each modality to its :class:`EncoderOutput`; the returned
    scalars are logged by name and ``"loss"`` is this objective's total,
    penalties included. ``needs`` is a subset of :data:`NEEDS`.
    """

    needs: ClassVar[frozenset[str]] = frozenset()

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Named loss terms and their total ``"loss"``."""
        raise NotImplementedError


ObjectiveFactory = Callable[..., Objective]
"""``factory(modalities, dims, **options) -> Objective``; unknown options are ignored."""


class Heads(nn.Module):
    """Per-modality projection heads shared by all terms of one composed objective.

    ``local[m]`` is a :class:`LocalHead` ``local_channels -> embed_dim`` and
    ``latent[m]`` a :class:`LatentHead`. A head is created the first time a term
    asks for it (at construction, never in ``forward``), so an objective holds
    only heads it uses and every parameter receives a gradient.
    """

    def __init__(self, dims: Mapping[str, Dims]) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.local = nn.ModuleDict()
        self.latent = nn.ModuleDict()

    def require(self, local: Iterable[str] = (), latent: Iterable[str] = ()) -> None:
        """Create the local heads of modalities ``local`` and latent heads of ``latent``."""
        for m in local:
            if m not in self.local:
                self.local[m] = LocalHead(self.dims[m].local_channels, self.dims[m].embed_dim)
        for m in latent:
            if m not in self.latent:
                if self.dims[m].latent_dim != self.dims[m].embed_dim:
                    raise ValueError(
                        f"modality {m!r}: the identity latent head needs latent_dim == "
                        f"embed_dim, got {self.dims[m].latent_dim} != {self.dims[m].embed_dim}"
                    )
                self.latent[m] = LatentHead()

    def embed_local(self, modality: str, output: EncoderOutput) -> Tensor:
        """Local embeddings ``[B, embed_dim, L]`` (``L`` = locations of the local map)."""
        return self.local[modality](output.features["local"]).flatten(2)

    def embed_latent(self, modality: str, output: EncoderOutput) -> Tensor:
        """Latent embedding ``[B, embed_dim, 1]``."""
        return self.latent[modality](output.latent)[:, :, None]
