"""DCGAN-style 3D encoder and decoder (paper section 3.2, reference layout).

For a 64^3 input the encoder runs 64 -> 32 -> 16 -> 8 -> 4 -> 1 with channels
1 -> 32 -> 64 -> 128 -> 256 -> latent_dim; smaller cubic inputs drop stride-2
stages so the last map is always 4^3. The decoder mirrors it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from bidsfusion.models.base import LOCAL_SIZE, EncoderOutput

_TOP_SIZE = 4


def _cubic_size(shape: Sequence[int]) -> int:
    """The edge of a cubic power-of-two shape >= 16; ValueError naming the shape otherwise."""
    shape = tuple(shape)
    size = shape[0] if shape else 0
    if len(shape) != 3 or len(set(shape)) != 1 or size < 16 or size & (size - 1):
        raise ValueError(
            f"DCGAN needs a cubic power-of-two volume of at least 16^3, got shape {shape}"
        )
    return size


def _n_stride2(size: int) -> int:
    """Number of stride-2 stages from ``size`` down to 4."""
    return (size // _TOP_SIZE).bit_length() - 1


def dcgan_init(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm3d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANEncoder(nn.Module):
    """``x[B, 1, S, S, S] -> EncoderOutput(latent[B, latent_dim], {"local": [B, C, 8, 8, 8]})``.

    ``S`` is a power of two >= 16. Attributes ``in_shape``, ``latent_dim`` and
    ``local_channels`` (``C``: 128 for 64^3, 64 for 32^3, 32 for 16^3 with the
    default ``base_channels=32``) describe it to the objectives.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (64, 64, 64),
        latent_dim: int = 64,
        base_channels: int = 32,
    ) -> None:
        super().__init__()
        size = _cubic_size(in_shape)
        self.in_shape = (size, size, size)
        self.latent_dim = latent_dim
        stages: list[nn.Module] = [
            nn.Sequential(
                nn.Conv3d(1, base_channels, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, inplace=True),
            )
        ]
        channels, size = base_channels, size // 2
        self._local_stage, self.local_channels = 0, channels
        while size > _TOP_SIZE:
            stages.append(
                nn.Sequential(
                    nn.Conv3d(channels, 2 * channels, 4, 2, 1, bias=False),
                    nn.BatchNorm3d(2 * channels),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            channels, size = 2 * channels, size // 2
            if size == LOCAL_SIZE:
                self._local_stage, self.local_channels = len(stages) - 1, channels
        self.stages = nn.ModuleList(stages)
        self.to_latent = nn.Conv3d(channels, latent_dim, 4, 1, 0, bias=False)
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> EncoderOutput:
        """Encode ``x[B, 1, S, S, S]``."""
        local = x
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == self._local_stage:
                local = x
        return EncoderOutput(self.to_latent(x).flatten(1), {"local": local})


class DCGANDecoder(nn.Module):
    """``z[B, latent_dim] -> x[B, 1, S, S, S]``, the mirror of :class:`DCGANEncoder`.

    ConvTranspose3d k4: ``latent -> 4^3`` (s1, p0), then s2/p1 stages halving the
    channels up to ``out_shape``; BatchNorm + ReLU after all but the last.
    ``final_activation="none"`` (default) suits z-normalised inputs; the paper's
    reference decoder ends in a Sigmoid (``"sigmoid"``), which cannot reproduce
    negative intensities.
    """

    def __init__(
        self,
        out_shape: Sequence[int] = (64, 64, 64),
        latent_dim: int = 64,
        base_channels: int = 32,
        final_activation: Literal["sigmoid", "none"] = "none",
    ) -> None:
        super().__init__()
        if final_activation not in ("sigmoid", "none"):
            raise ValueError(
                f"final_activation must be 'sigmoid' or 'none', got {final_activation!r}"
            )
        size = _cubic_size(out_shape)
        self.out_shape = (size, size, size)
        self.latent_dim = latent_dim
        channels = base_channels * 2 ** (_n_stride2(size) - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose3d(latent_dim, channels, 4, 1, 0, bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
        ]
        while channels > base_channels:
            layers += [
                nn.ConvTranspose3d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.BatchNorm3d(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        layers.append(nn.ConvTranspose3d(channels, 1, 4, 2, 1, bias=False))
        if final_activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, latent: Tensor) -> Tensor:
        """Decode ``latent[B, latent_dim]`` to ``[B, 1, S, S, S]``."""
        return self.net(latent[:, :, None, None, None])
