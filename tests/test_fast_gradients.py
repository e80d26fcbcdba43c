"""Within fast_input_gradients a frozen model's input gradients and saliency are
unchanged (batch norms folded, explicit transposed convolutions) and the model is restored after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bidsfusion.analyses.fast_gradients import fast_input_gradients
from bidsfusion.analyses.saliency import smoothgrad
from bidsfusion.models.dcgan import DCGANEncoder


def _trained_statistics(model: nn.Module) -> nn.Module:
    """``model`` with batch-norm statistics and affines far from their initial values."""
    generator = torch.Generator().manual_seed(3)
    for norm in model.modules():
        if isinstance(norm, nn.BatchNorm3d):
            size = norm.num_features
            norm.running_mean.copy_(torch.randn(size, generator=generator))
            norm.running_var.copy_(torch.rand(size, generator=generator) * 3 + 0.2)
            norm.weight.data.copy_(torch.randn(size, generator=generator))
            norm.bias.data.copy_(torch.randn(size, generator=generator))
    return model


def test_the_jacobian_is_exactly_unchanged_with_folded_batch_norms() -> None:
    torch.manual_seed(0)
    encoder = DCGANEncoder((16, 16, 16), 8).double().eval().requires_grad_(False)
    encoder = _trained_statistics(encoder)
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64)

    def jacobian() -> torch.Tensor:
        return torch.func.jacrev(lambda v: encoder(v).latent)(x)

    plain, plain_z = jacobian(), encoder(x).latent
    norm = encoder.stages[1][1]
    with fast_input_gradients(encoder):
        assert "forward" in vars(norm) and "forward" in vars(encoder.stages[1][0])
        fast, fast_z = jacobian(), encoder(x).latent
    assert "forward" not in vars(norm)
    torch.testing.assert_close(fast_z, plain_z, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast, plain, rtol=1e-9, atol=1e-12 * plain.abs().max().item())
    assert plain.abs().max() > 0


def test_training_batch_norms_and_trainable_pairs_are_not_folded() -> None:
    model = nn.Sequential(
        nn.Conv3d(2, 4, 3), nn.BatchNorm3d(4), nn.Conv3d(4, 4, 3), nn.BatchNorm3d(4)
    )
    model.requires_grad_(False)
    model[1].train()
    model[2].weight.requires_grad_(True)
    x = torch.randn(2, 2, 8, 8, 8)
    expected = model(x)
    with fast_input_gradients(model):
        patched = ["forward" in vars(m) for m in model]
        output = model(x)
    assert patched == [True, False, False, False]
    torch.testing.assert_close(output, expected)


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


def test_only_frozen_convolutions_are_patched() -> None:
    model = nn.Sequential(
        nn.Conv3d(1, 4, 4, 2, 1),
        nn.Conv3d(4, 4, 3, 1, 1),
        nn.Conv3d(4, 8, 4, 2, 1).requires_grad_(False),
        nn.Conv3d(8, 8, 4, 2, 1).requires_grad_(False),
    )
    model[0].requires_grad_(True)
    with fast_input_gradients(model):
        patched = ["forward" in vars(m) for m in model]
    assert patched == [False, False, True, True]


def test_the_model_is_restored_when_the_block_fails() -> None:
    encoder = DCGANEncoder((16, 16, 16), 8).eval().requires_grad_(False)
    before = {name: p.clone() for name, p in encoder.state_dict().items()}
    with pytest.raises(RuntimeError, match="inside"), fast_input_gradients(encoder):
        raise RuntimeError("inside")
    assert not any("forward" in vars(m) for m in encoder.modules())
    assert all(p.is_contiguous() for p in encoder.parameters())
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, before[name]), name
