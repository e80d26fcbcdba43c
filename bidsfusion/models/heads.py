"""Projection heads applied before the critic (per modality, shared by all terms)."""

from __future__ import annotations

from torch import Tensor, nn


class LocalHead(nn.Module):
    """Residual 1x1x1 projection of a conv feature map.

    ``conv(relu(bn(conv(c)))) + conv_shortcut(c)``: ``[B, in_channels, *S]`` to
    ``[B, out_channels, *S]``. The reference implementation ends with one more batch
    norm; over a batch of brains it normalises each channel by its variance across
    locations, which is mostly anatomy every subject shares, and on planted data
    (tests/planted.py, 16^3, 40 epochs) it held the local terms near their chance
    level: training L 15.44 with it and 14.94 without (chance 15.65), CL 15.58 and
    15.30, and CS stayed at chance on data where every patch shows its subject.
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

    def forward(self, features: Tensor) -> Tensor:
        """Project ``[B, in_channels, D, H, W]`` to ``[B, out_channels, D, H, W]``."""
        return self.path(features) + self.shortcut(features)


class LatentHead(nn.Identity):
    """Head on the latent ``z[B, d]``: the identity, as in the paper."""
