"""The sub-pixel input gradient of a strided stem convolution equals autograd's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bidsfusion.analyses.subpixel import strided_input_gradient


@pytest.mark.parametrize(("in_channels", "size"), [(1, 4), (3, 5), (2, 8)])
def test_equals_the_transposed_convolution(in_channels: int, size: int) -> None:
    torch.manual_seed(in_channels)
    weight = torch.randn(6, in_channels, 4, 4, 4, dtype=torch.float64)
    grad = torch.randn(2, 6, size, size, size, dtype=torch.float64)
    expected = F.conv_transpose3d(grad, weight, stride=2, padding=1)
    assert torch.allclose(strided_input_gradient(grad, weight), expected, atol=1e-12)
