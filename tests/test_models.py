"""DCGAN encoder/decoder shapes and layout, projection heads, encoder registration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bidsfusion.models import builtin
from bidsfusion.models.dcgan import DCGANDecoder, DCGANEncoder
from bidsfusion.models.heads import LOCATED_SCALE, LatentHead, LocalHead


@pytest.mark.parametrize(("size", "channels"), [(64, 128), (32, 64), (16, 32)])
def test_encoder_shapes(size: int, channels: int) -> None:
    encoder = DCGANEncoder((size,) * 3, latent_dim=48)
    out = encoder(torch.randn(2, 1, size, size, size))
    assert out.latent.shape == (2, 48)
    assert out.features["local"].shape == (2, channels, 8, 8, 8)
    assert encoder.local_channels == channels and encoder.latent_dim == 48


def test_encoder_matches_the_reference_layout_at_64() -> None:
    encoder = DCGANEncoder()
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv3d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1, 32), (32, 64), (64, 128), (128, 256), (256, 64)
    ]  # fmt: skip
    assert all(c.kernel_size == (4, 4, 4) and c.bias is None for c in convs)
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 1]
    assert sum(isinstance(m, nn.BatchNorm3d) for m in encoder.modules()) == 3
    assert convs[0].weight.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("shape", [(64, 64, 32), (48, 48, 48), (8, 8, 8), (64, 64)])
def test_bad_shapes_are_named(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        DCGANEncoder(shape)
    with pytest.raises(ValueError, match="cubic"):
        DCGANDecoder(shape)


@pytest.mark.parametrize("size", [64, 32, 16])
def test_decoder_reconstructs_the_input_shape(size: int) -> None:
    decoder = DCGANDecoder((size,) * 3, latent_dim=16)
    out = decoder(torch.randn(3, 16))
    assert out.shape == (3, 1, size, size, size)
    assert out.min() < 0  # no final activation by default: z-scored intensities fit


def test_decoder_mirrors_the_encoder_and_offers_the_reference_sigmoid() -> None:
    decoder = DCGANDecoder(final_activation="sigmoid")
    convs = [m for m in decoder.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (64, 256), (256, 128), (128, 64), (64, 32), (32, 1)
    ]  # fmt: skip
    assert isinstance(decoder.net[-1], nn.Sigmoid)
    out = DCGANDecoder((16,) * 3, 8, final_activation="sigmoid")(torch.randn(2, 8))
    assert ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match="tanh"):
        DCGANDecoder(final_activation="tanh")


def test_local_head_projects_channels_with_a_shortcut() -> None:
    head = LocalHead(128)
    out = head(torch.randn(4, 128, 8, 8, 8))
    assert out.shape == (4, 64, 8, 8, 8)
    assert head.shortcut.in_channels == 128 and head.shortcut.out_channels == 64
    features = torch.randn(4, 128, 8, 8, 8)
    expected = head.path(features) + head.shortcut(features)  # no batch norm at the end
    assert torch.allclose(head(features), expected)
    z = torch.randn(4, 64)
    assert LatentHead()(z) is z


def test_a_located_head_starts_location_blind_and_maps_each_location_on_its_own() -> None:
    torch.manual_seed(0)
    head = LocalHead(16, 8, locations=27)
    features = torch.randn(3, 16, 3, 3, 3)
    blind = head.path(features) + head.shortcut(features)
    assert torch.allclose(head(features), blind)  # the maps start at zero
    matrix = torch.randn(8, 8)
    with torch.no_grad():
        head.located[5] = matrix
    out = head(features).flatten(2)
    h = blind.flatten(2)
    expected = h[:, :, 5] + LOCATED_SCALE * h[:, :, 5] @ matrix.T
    assert torch.allclose(out[:, :, 5], expected, atol=1e-5)
    others = [i for i in range(27) if i != 5]
    assert torch.equal(out[:, :, others], h[:, :, others])
    with pytest.raises(ValueError, match=r"27 locations, got a local map of shape \(4, 4, 4\)"):
        head(torch.randn(2, 16, 4, 4, 4))


def test_builtin_registers_dcgan() -> None:
    registry: dict[str, object] = {}
    builtin.register_encoders(registry.__setitem__)
    encoder = registry["dcgan"]((16, 16, 16), 32)
    assert isinstance(encoder, DCGANEncoder) and encoder.latent_dim == 32
