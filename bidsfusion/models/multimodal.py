"""One encoder per modality behind a single module (what the training engine trains)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from bidsfusion.models.base import Dims, EncoderOutput

EncoderFactory = Callable[..., nn.Module]
"""``factory(in_shape, latent_dim, **options) -> Encoder`` (a ``register_encoders`` value)."""


class MultimodalModel(nn.Module):
    """``encoders[m]`` = ``factory(in_shape, latent_dim, **options)`` for every modality ``m``.

    ``forward(batch)`` encodes every modality present in ``batch`` (other keys,
    such as ``"label"``, are ignored).
    """

    def __init__(
        self,
        modalities: Sequence[str],
        factory: EncoderFactory,
        in_shape: Sequence[int] = (64, 64, 64),
        latent_dim: int = 64,
        **options: object,
    ) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("MultimodalModel needs at least one modality")
        self.encoders = nn.ModuleDict(
            {m: factory(tuple(in_shape), latent_dim, **options) for m in modalities}
        )

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names, in construction order."""
        return tuple(self.encoders)

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, EncoderOutput]:
        """``{m: encoders[m](batch[m])}`` for the modalities in ``batch``; inputs ``[B, 1, *S]``."""
        return {m: encoder(batch[m]) for m, encoder in self.encoders.items() if m in batch}

    def dims(self, embed_dim: int = 64) -> dict[str, Dims]:
        """Each encoder's :class:`Dims`, what objective factories are built from."""
        return {m: Dims.of(encoder, embed_dim) for m, encoder in self.encoders.items()}
