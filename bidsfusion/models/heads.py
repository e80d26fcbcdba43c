"""Projection heads applied before the critic (per modality, shared by all terms)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

LOCATED_SCALE = 10.0
"""The located maps enter the head as ``LOCATED_SCALE * M_l``. Adam's step does not
depend on the scale of a gradient, so this makes the maps learn at 10x the learning
rate of the rest: at 1x they had barely moved by the end of 150 epochs on the
learning benchmark (fold 0: validation CL 15.05, chance 15.15; critic retrieval
2.8x chance), at 10x they did (14.69; 11x; 3 folds: 11.7x, against 4.1x at 1x)."""


class LocalHead(nn.Module):
    """Residual 1x1x1 projection of a conv feature map, optionally one map per location.

    ``h = conv(relu(bn(conv(c)))) + conv_shortcut(c)``: ``[B, in_channels, *S]`` to
    ``[B, out_channels, *S]``. With ``locations`` (the number of locations of the
    map, ``prod(S)``), each location ``l`` adds its own linear map of ``h``:
    ``h(l) + LOCATED_SCALE * M_l h(l)``, ``M_l`` an ``out_channels x out_channels``
    matrix that starts at zero (the head then starts as the location-blind one).

    Why located: after registration to MNI a patch's meaning depends on where it is,
    and one map for every location cannot tell which part of the other modality's
    latent a patch speaks to. A linear probe of the benchmark's maps (T1w 24 mm block
    to the fALFF latent's 20 principal components, 100 subjects fitted, retrieval
    among 60) found 4.4x chance with a map per location and 1.3x with one map for
    all. On that benchmark (3 folds, 150 epochs) the located head took the critic's
    validation pair retrieval from 2.1x chance to 11.7x for CL and from 3.0x to 11.7x
    for L-CL, the hold-out AUCs within about the fold sd; an additive (position
    embedding) or per-channel (gain) location term did no better than none (fold 0),
    and maps of rank 16 came between the two (folds 0 and 1). The maps hold
    ``locations x out_channels^2`` parameters: 2.1 M at 512 x 64 x 64, more than the
    32^3 encoder.
    ``locations=0`` is the paper's location-blind head.

    The reference implementation ends with one more batch norm; over a batch of
    brains it normalises each channel by its variance across locations, which is
    mostly anatomy every subject shares, and on planted data (tests/planted.py,
    16^3, 40 epochs) it held the local terms near their chance level: training L
    15.44 with it and 14.94 without (chance 15.65), CL 15.58 and 15.30, and CS
    stayed at chance on data where every patch shows its subject.
    """

    def __init__(self, in_channels: int, out_channels: int = 64, locations: int = 0) -> None:
        super().__init__()
        self.path = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 1, bias=False),
        )
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1, bias=False)
        self.locations = locations
        if locations:
            self.located = nn.Parameter(torch.zeros(locations, out_channels, out_channels))

    def forward(self, features: Tensor) -> Tensor:
        """Project ``[B, in_channels, D, H, W]`` to ``[B, out_channels, D, H, W]``.

        A located head raises ValueError when ``D * H * W`` is not its ``locations``.
        """
        h = self.path(features) + self.shortcut(features)
        if not self.locations:
            return h
        flat = h.flatten(2)
        if flat.shape[2] != self.locations:
            raise ValueError(
                f"the located local head was built for {self.locations} locations, "
                f"got a local map of shape {tuple(h.shape[2:])}"
            )
        located = torch.einsum("ldc,bcl->bdl", self.located, flat)
        return (flat + LOCATED_SCALE * located).view_as(h)


class LatentHead(nn.Identity):
    """Head on the latent ``z[B, d]``: the identity, as in the paper."""
