"""The sub-pixel input gradient of a strided stem convolution equals autograd's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bidsfusion.analyses.saliency import smoothgrad
from bidsfusion.analyses.subpixel import fast_input_gradients, strided_input_gradient
from bidsfusion.models.dcgan import DCGANEncoder


@pytest.mark.parametrize(("in_channels", "size"), [(1, 4), (3, 5), (2, 8)])
def test_equals_the_transposed_convolution(in_channels: int, size: int) -> None:
    torch.manual_seed(in_channels)
    weight = torch.randn(6, in_channels, 4, 4, 4, dtype=torch.float64)
    grad = torch.randn(2, 6, size, size, size, dtype=torch.float64)
    expected = F.conv_transpose3d(grad, weight, stride=2, padding=1)
    assert torch.allclose(strided_input_gradient(grad, weight), expected, atol=1e-12)


def test_saliency_is_unchanged_and_the_model_restored() -> None:
    torch.manual_seed(0)
    encoder = DCGANEncoder((16, 16, 16), 8).eval().requires_grad_(False)
    x = torch.randn(2, 1, 16, 16, 16)

    def maps() -> torch.Tensor:
        generator = torch.Generator().manual_seed(1)
        return smoothgrad(lambda v: encoder(v).latent, x, samples=2, generator=generator)

    plain = maps()
    stem = encoder.stages[0][0]
    with fast_input_gradients(encoder):
        assert "forward" in vars(stem)
        assert stem.weight.is_contiguous(memory_format=torch.channels_last_3d)
        fast = maps()
    assert "forward" not in vars(stem) and stem.weight.is_contiguous()
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-6 * plain.abs().max())
    assert fast.abs().sum() > 0


def test_only_frozen_strided_stems_are_patched() -> None:
    model = nn.Sequential(
        nn.Conv3d(1, 4, 4, 2, 1),
        nn.Conv3d(4, 4, 3, 1, 1),
        nn.Conv3d(4, 8, 4, 2, 1).requires_grad_(False),
        nn.Conv3d(8, 8, 4, 2, 1).requires_grad_(False),
    )
    model[0].requires_grad_(True)
    with fast_input_gradients(model):
        patched = ["forward" in vars(m) for m in model]
    assert patched == [False, False, True, False]
