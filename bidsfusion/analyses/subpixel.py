"""Sub-pixel input gradient of a strided stem convolution, for saliency on CPU.

The gradient of ``conv3d(x, w, stride=2, padding=1)`` (kernel 4^3) with respect to
``x`` is a transposed convolution. With one input channel (the first layer of a
DCGAN encoder) oneDNN runs it several times slower than a plain convolution of the
same size. Per axis, output voxel ``2m + r`` of the transposed convolution only sees
the gradient at ``m - 1, m`` (``r = 0``, taps 3, 1) or ``m, m + 1`` (``r = 1``, taps
2, 0), so it equals 8 interleaved 2^3 convolutions ("sub-pixel"), computed here as
one ``conv3d`` with 8 times the output channels: the same numbers (to float
rounding), about 3x faster at 64^3 on 2 CPU cores.
:mod:`~bidsfusion.analyses.fast_gradients` swaps it in.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def strided_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv3d(x, weight, bias, stride=2, padding=1)`` whose input gradient is computed
    by :func:`strided_input_gradient`; no gradient for the weight and bias."""
    return _StridedConv.apply(x, weight, bias)


class _StridedConv(torch.autograd.Function):
    """``conv3d(x, weight, bias, stride=2, padding=1)`` whose input gradient is sub-pixel;
    no gradient for the weight and bias (frozen models only)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv3d(x, weight, bias, stride=2, padding=1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        return strided_input_gradient(grad, weight), None, None


def qualifies(module: nn.Module) -> bool:
    """Whether ``module`` is a frozen ``nn.Conv3d`` (kernel 4, stride 2, padding 1, at
    most :data:`MAX_IN_CHANNELS` inputs) whose input gradient may be sub-pixel."""
    return (
        type(module) is nn.Conv3d
        and module.kernel_size == (4, 4, 4)
        and module.stride == (2, 2, 2)
        and module.padding == (1, 1, 1)
        and module.dilation == (1, 1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and module.in_channels <= MAX_IN_CHANNELS
        and not module.weight.requires_grad
    )
