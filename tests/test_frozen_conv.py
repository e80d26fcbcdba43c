"""A frozen convolution's explicit input gradient equals autograd's, also under vmap."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bidsfusion.analyses.frozen_conv import Geometry, frozen_conv, input_gradient

CASES = [
    # (in channels, kernel, stride, padding, dilation, input size)
    (1, 4, 2, 1, 1, 8),  # the DCGAN stem: sub-pixel
    (3, 4, 2, 1, 1, 9),  # odd input: transposed convolution with output padding
    (6, 4, 2, 1, 1, 8),  # too many input channels for sub-pixel
    (2, 3, 1, 1, 1, 7),
    (2, 3, 3, 0, 1, 11),
    (2, 3, 1, 2, 2, 6),
    (2, 4, 1, 0, 1, 4),  # to_latent: the whole map in one output voxel
]


@pytest.mark.parametrize(("channels", "kernel", "stride", "padding", "dilation", "size"), CASES)
def test_the_input_gradient_is_autograds(
    channels: int, kernel: int, stride: int, padding: int, dilation: int, size: int
) -> None:
    torch.manual_seed(size)
    weight = torch.randn(5, channels, kernel, kernel, kernel, dtype=torch.float64)
    x = torch.randn(
        2,
        channels,
        size,
        size - 1 if stride == 1 and size > kernel else size,
        size,
        dtype=torch.float64,
    )
    geometry = Geometry((stride,) * 3, (padding,) * 3, (dilation,) * 3)

    def plain(v: torch.Tensor) -> torch.Tensor:
        return F.conv3d(v, weight, None, *geometry)

    output, pullback = torch.func.vjp(plain, x)
    cotangents = torch.randn(4, *output.shape, dtype=torch.float64)
    (expected,) = torch.func.vmap(pullback)(cotangents)
    _, fast_pullback = torch.func.vjp(lambda v: frozen_conv(v, weight, None, geometry), x)
    (fast,) = torch.func.vmap(fast_pullback)(cotangents)
    torch.testing.assert_close(fast, expected, rtol=1e-10, atol=1e-10)
    direct = input_gradient(cotangents[0], weight, tuple(x.shape[-3:]), geometry)
    torch.testing.assert_close(direct, expected[0], rtol=1e-10, atol=1e-10)


def test_the_forward_is_the_convolution_with_bias() -> None:
    torch.manual_seed(0)
    weight, bias = torch.randn(4, 2, 3, 3, 3), torch.randn(4)
    x = torch.randn(1, 2, 6, 6, 6)
    geometry = Geometry((1, 1, 1), (1, 1, 1), (1, 1, 1))
    expected = F.conv3d(x, weight, bias, *geometry)
    torch.testing.assert_close(frozen_conv(x, weight, bias, geometry), expected)
