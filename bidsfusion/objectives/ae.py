"""``AE``: one DCGAN decoder per modality, mean squared reconstruction error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.models.dcgan import DCGANDecoder
from bidsfusion.objectives.base import Objective
from bidsfusion.objectives.options import require_at_least


class Autoencoder(Objective):
    """Sum over modalities of ``MSE(decoder_m(z_m), batch[m])``.

    The term owns its decoders (``decoders[m]``); ``reconstruct`` exposes them.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        dims: Mapping[str, Dims],
        *,
        decoder_channels: int = 32,
        final_activation: Literal["sigmoid", "none"] = "none",
    ) -> None:
        super().__init__()
        require_at_least("AE", "decoder_channels", decoder_channels, 1)
        self.modalities = tuple(modalities)
        self.decoders = nn.ModuleDict(
            {
                m: DCGANDecoder(
                    dims[m].in_shape, dims[m].latent_dim, decoder_channels, final_activation
                )
                for m in self.modalities
            }
        )

    def reconstruct(self, outputs: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
        """Reconstructions ``[B, 1, D, H, W]`` by modality."""
        return {m: self.decoders[m](outputs[m].latent) for m in self.modalities}

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"AE", "AE_chance", "loss"}``: the summed MSE, and its chance level, the MSE
        of reconstructing every voxel by the batch's mean."""
        recon = self.reconstruct(outputs)
        loss = sum(F.mse_loss(recon[m], batch[m]) for m in self.modalities)
        chance = sum(batch[m].var(correction=0) for m in self.modalities).detach()
        return {"AE": loss, "AE_chance": chance, "loss": loss}
