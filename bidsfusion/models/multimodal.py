"""One encoder per modality behind a single module (what the training engine trains), built
from the run's model settings (:mod:`bidsfusion.models.folder` loads a trained one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from bidsfusion.config import Model
from bidsfusion.errors import PluginError, UsageError
from bidsfusion.models.base import Dims, Encoder, EncoderFactory, EncoderOutput
from bidsfusion.plugins import registered


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
        encoders: dict[str, Any] = {
            m: factory(tuple(in_shape), latent_dim, **options) for m in modalities
        }
        for encoder in encoders.values():
            if not (isinstance(encoder, nn.Module) and isinstance(encoder, Encoder)):
                raise PluginError(
                    f"encoder factory {getattr(factory, '__name__', factory)!r} returned a "
                    f"{type(encoder).__name__}, not an nn.Module with in_shape, latent_dim and "
                    "local_channels (the Encoder protocol of bidsfusion.api)"
                )
        self.encoders = nn.ModuleDict(encoders)

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


def build_model(settings: Model, modalities: Sequence[str]) -> MultimodalModel:
    """The multimodal model of ``--encoder``, ``--input-size`` and ``--latent-dim``, its
    parameters drawn from torch's global generator; an unregistered encoder: UsageError
    (64) listing the registered ones."""
    encoders = registered("encoders")
    if settings.encoder not in encoders:
        raise UsageError(
            f"unknown --encoder {settings.encoder!r}; registered: {', '.join(sorted(encoders))}"
        )
    size = (settings.input_size,) * 3
    return MultimodalModel(modalities, encoders[settings.encoder], size, settings.latent_dim)
