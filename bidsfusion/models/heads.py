"""Projection heads applied before the critic (per modality, shared by all terms)."""

from __future__ import annotations

from torch import Tensor, nn


class LocalHead(nn.Module):
    """Residual 1x1x1 projection of a conv feature map.

    ``BN(conv(relu(bn(conv(c)))) + conv_shortcut(c))``: ``[B, in_channels, *S]``
    to ``[B, out_channels, *S]``.
    """

    def __init__(self, in_channels: int, out_channels: int = 64) -> None:
        super().__init__()
        self.path = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 1, bias=False),
        )
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, features: Tensor) -> Tensor:
        """Project ``[B, in_channels, D, H, W]`` to ``[B, out_channels, D, H, W]``."""
        return self.norm(self.path(features) + self.shortcut(features))


class LatentHead(nn.Identity):
    """Head on the latent ``z[B, d]``: the identity, as in the paper."""
