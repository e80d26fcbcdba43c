"""Sub-pixel input gradient of a strided stem convolution, for saliency on CPU.

The gradient of ``conv3d(x, w, stride=2, padding=1)`` (kernel 4^3) with respect to
``x`` is a transposed convolution. With one input channel (the first layer of a
DCGAN encoder) oneDNN runs it several times slower than a plain convolution of the
same size. Per axis, output voxel ``2m + r`` of the transposed convolution only sees
the gradient at ``m - 1, m`` (``r = 0``, taps 3, 1) or ``m, m + 1`` (``r = 1``, taps
2, 0), so it equals 8 interleaved 2^3 convolutions ("sub-pixel"), computed here as
one ``conv3d`` with 8 times the output channels: the same numbers (to float
rounding), about 3x faster at 64^3 on 2 CPU cores.
:mod:`~bidsfusion.analyses.frozen_conv` uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_IN_CHANNELS = 4
"""Above this many input channels oneDNN's own transposed convolution is faster."""
_TAPS = torch.tensor([[3, 1], [2, 0]])
"""``_TAPS[r, t]``: the kernel index along an axis of tap ``t`` for output parity ``r``."""


def subpixel_weight(weight: Tensor) -> Tensor:
    """``weight[C_out, C_in, 4, 4, 4]`` of the strided convolution -> the sub-pixel
    kernels ``[C_in * 8, C_out, 2, 2, 2]``, output channel ``c * 8 + 4 r1 + 2 r2 + r3``."""
    taps = _TAPS.to(weight.device)
    gathered = weight[:, :, taps][:, :, :, :, taps][..., taps]
    return gathered.permute(1, 2, 4, 6, 0, 3, 5, 7).reshape(-1, weight.shape[0], 2, 2, 2)


def strided_input_gradient(grad: Tensor, weight: Tensor) -> Tensor:
    """``conv_transpose3d(grad, weight, stride=2, padding=1)`` by sub-pixel convolution:
    ``grad[N, C_out, S, S, S]`` -> ``[N, C_in, 2S, 2S, 2S]``."""
    n, channels, size = grad.shape[0], weight.shape[1], grad.shape[-1]
    parts = F.conv3d(grad, subpixel_weight(weight).to(grad.dtype), padding=1)
    parts = parts.reshape(n, channels, 2, 2, 2, size + 1, size + 1, size + 1)
    out = grad.new_empty(n, channels, 2 * size, 2 * size, 2 * size)
    for r1, r2, r3 in itertools.product((0, 1), repeat=3):
        window = parts[:, :, r1, r2, r3, r1 : r1 + size, r2 : r2 + size, r3 : r3 + size]
        out[:, :, r1::2, r2::2, r3::2] = window
    return out


def subpixel_fits(
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    input_size: Sequence[int],
    output_size: Sequence[int],
) -> bool:
    """Whether :func:`strided_input_gradient` is the input gradient of this
    convolution (kernel 4, stride 2, padding 1, no dilation, at most
    :data:`MAX_IN_CHANNELS` inputs, an input twice the output size) and the faster one."""
    return (
        tuple(weight.shape[-3:]) == (4, 4, 4)
        and tuple(stride) == (2, 2, 2)
        and tuple(padding) == (1, 1, 1)
        and tuple(dilation) == (1, 1, 1)
        and weight.shape[1] <= MAX_IN_CHANNELS
        and tuple(input_size) == tuple(2 * size for size in output_size)
    )
