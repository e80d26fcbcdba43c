"""The objective contract and the projection heads its terms share.

``batch`` (the second argument of every ``Objective.forward``) holds each
modality's input ``[B, 1, D, H, W]`` under the modality's name and ``"label"``,
a LongTensor ``[B]``: 1 = positive (AD), 0 = negative (HC), -1 = other/unlabelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

from torch import Tensor, nn

from bidsfusion.errors import UsageError
from bidsfusion.models.base import LOCAL_SIZE, Dims, EncoderOutput
from bidsfusion.models.heads import LatentHead, LocalHead


class Objective(nn.Module):
    """A loss on encoder outputs: ``forward(outputs, batch) -> {term: Tensor, "loss": Tensor}``.

    ``outputs`` maps each modality to its :class:`EncoderOutput`; the returned
    scalars are logged by name and ``"loss"`` is this objective's total,
    penalties included.

    Two class attributes declare how a term is used: ``trains`` (False: the model is
    never trained with it, as the ``Random`` control) and ``standalone`` (True: it
    composes with no other term, as ``MMVAE``).
    """

    trains: ClassVar[bool] = True
    standalone: ClassVar[bool] = False

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Named loss terms and their total ``"loss"``."""
        raise NotImplementedError

    def pair_embeddings(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """This objective's own measure of which samples pair up across modalities:
        per cross-modal edge ``"<a>_<b>"`` of its critic, embeddings ``(x [B, d],
        y [B, d])`` whose products ``x[i] . y[j]`` rank the candidates ``i`` of anchor
        ``j`` as the critic's mean score over locations does. Validation retrieves
        pairs with them (critic retrieval); empty for objectives without a critic."""
        return {}


ObjectiveFactory = Callable[..., Objective]
"""``factory(modalities, dims, *, heads=None, **options) -> Objective``.

``heads`` (the composed objective's shared :class:`Heads`) is passed only to
factories that declare it; the options are the factory's other keyword-only
parameters, typed and defaulted, which users set with ``--objective-option``."""


class Heads(nn.Module):
    """Per-modality projection heads shared by all terms of one composed objective.

    ``local[m]`` is a :class:`LocalHead` ``local_channels -> embed_dim``, located
    (one map per location of the 8^3 local map) or not, and ``latent[m]`` a
    :class:`LatentHead`. A head is created the first time a term asks for it (at
    construction, never in ``forward``), so an objective holds only heads it uses
    and every parameter receives a gradient.
    """

    def __init__(self, dims: Mapping[str, Dims]) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.local = nn.ModuleDict()
        self.latent = nn.ModuleDict()
        self.local_owner: dict[str, str] = {}

    def require(
        self,
        local: Iterable[str] = (),
        latent: Iterable[str] = (),
        *,
        located: bool = True,
        term: str = "a term",
    ) -> None:
        """Create the local heads of modalities ``local`` (``located`` or not) and the
        latent heads of ``latent``. UsageError naming both terms when ``term`` asks for
        a local head that another term created with the other ``located``: the terms
        of one objective share their local heads."""
        for m in local:
            if m not in self.local:
                locations = LOCAL_SIZE**3 if located else 0
                self.local[m] = LocalHead(
                    self.dims[m].local_channels, self.dims[m].embed_dim, locations
                )
                self.local_owner[m] = term
            elif bool(self.local[m].locations) != located:
                raise UsageError(
                    f"{term}.located={str(located).lower()} but "
                    f"{self.local_owner[m]}.located={str(not located).lower()}: the local "
                    "terms of one objective share their heads: give them the same located option"
                )
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
