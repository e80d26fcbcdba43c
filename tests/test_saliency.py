"""SmoothGrad saliency: batched gradients equal per-dimension backward passes; the projection
into brain space is finite and in [0, 1] for every degenerate case."""

from __future__ import annotations

import torch
from scipy import ndimage

from bidsfusion.analyses.saliency import (
    brain_saliency,
    gaussian_smooth,
    smoothgrad,
    to_grid,
    unit_range,
)
from bidsfusion.models.dcgan import DCGANEncoder


def _encoder() -> DCGANEncoder:
    torch.manual_seed(0)
    return DCGANEncoder((16, 16, 16), latent_dim=6).eval()


def test_batched_smoothgrad_equals_one_backward_pass_per_dimension() -> None:
    encoder = _encoder()
    x = torch.randn(3, 1, 16, 16, 16)
    found = smoothgrad(lambda v: encoder(v).latent, x, generator=torch.Generator().manual_seed(1))
    noise = torch.Generator().manual_seed(1)
    span = (x.amax(dim=(2, 3, 4), keepdim=True) - x.amin(dim=(2, 3, 4), keepdim=True)).float()
    expected = torch.zeros(3, 6, 16, 16, 16)
    for _ in range(5):
        noisy = (x + 0.05 * span * torch.randn(x.shape, generator=noise)).requires_grad_(True)
        z = encoder(noisy).latent
        for k in range(6):
            (gradient,) = torch.autograd.grad(z[:, k].sum(), noisy, retain_graph=True)
            expected[:, k] += gradient[:, 0] / 5
    torch.testing.assert_close(found, expected.abs(), rtol=1e-4, atol=1e-6)


def test_unit_range_maps_each_map_to_zero_one_inside_the_brain() -> None:
    maps = torch.rand(2, 3, 8, 8, 8) * 5 + 1
    brain = torch.zeros(2, 1, 8, 8, 8, dtype=torch.bool)
    brain[:, :, 2:6, 2:6, 2:6] = True
    out = unit_range(maps, brain)
    inside = out[brain.expand_as(out)].view(2, 3, -1)
    assert torch.allclose(inside.amin(-1), torch.zeros(2, 3))
    assert torch.allclose(inside.amax(-1), torch.ones(2, 3))
    assert (out[~brain.expand_as(out)] == 0).all()


def test_degenerate_maps_give_finite_zeros_never_nan() -> None:
    brain = torch.ones(1, 1, 8, 8, 8, dtype=torch.bool)
    constant = torch.full((1, 2, 8, 8, 8), 3.0)
    tiny = 3.0 + 1e-9 * torch.rand(1, 2, 8, 8, 8, dtype=torch.float64)
    nonfinite = torch.rand(1, 2, 8, 8, 8)
    nonfinite[0, 0, 0, 0, 0], nonfinite[0, 1, 1, 1, 1] = float("nan"), float("inf")
    for maps in (constant, tiny, torch.zeros(1, 2, 8, 8, 8), nonfinite):
        out = unit_range(maps, brain)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (unit_range(constant, brain) == 0).all() and (unit_range(tiny, brain) == 0).all()
    empty = torch.zeros_like(brain)
    assert (unit_range(torch.rand(1, 2, 8, 8, 8), empty) == 0).all()


def test_half_precision_inputs_and_an_all_zero_encoder_are_finite() -> None:
    encoder = _encoder()
    x = torch.randn(2, 1, 16, 16, 16)
    for dtype in (torch.bfloat16, torch.float16):
        out = brain_saliency(lambda v: encoder(v).latent, x.to(dtype))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    dead = brain_saliency(lambda v: 0.0 * encoder(v).latent, x)
    assert (dead == 0).all()


def test_smoothing_equals_scipy_and_the_grid_repeats_blocks() -> None:
    maps = torch.zeros(1, 1, 16, 16, 16, dtype=torch.float64)
    maps[0, 0, 8, 7, 9] = 1.0
    expected = ndimage.gaussian_filter(maps[0, 0].numpy(), 1.5, mode="constant", truncate=3.0)
    torch.testing.assert_close(gaussian_smooth(maps)[0, 0].numpy(), expected, atol=1e-9, rtol=0)
    uneven = torch.rand(1, 2, 12, 16, 10, dtype=torch.float64)
    for k in range(2):
        expected = ndimage.gaussian_filter(uneven[0, k].numpy(), 1.5, mode="constant", truncate=3.0)
        torch.testing.assert_close(
            gaussian_smooth(uneven)[0, k].numpy(), expected, atol=1e-9, rtol=0
        )
    small = torch.arange(8.0).view(1, 1, 2, 2, 2)
    big = to_grid(small, grid_size=4)
    assert big.shape == (1, 1, 4, 4, 4) and (big[0, 0, 2:, :2, 2:] == small[0, 0, 1, 0, 1]).all()


def test_long_saliency_runs_log_the_time_left(monkeypatch, caplog) -> None:
    import logging

    from bidsfusion.analyses import saliency

    monkeypatch.setattr(saliency, "ETA_SECONDS", 0.0)
    clock = iter([100.0, 110.0, 130.0, 140.0])
    monkeypatch.setattr(saliency.time, "monotonic", lambda: next(clock))
    eta = saliency._Eta("saliency of S", 4)
    with caplog.at_level(logging.INFO, logger="bidsfusion.group"):
        eta.done(1)
        eta.done(2)
        eta.done(4)
    assert caplog.messages == [
        "saliency of S: 1/4 subjects, about 30 s left",
        "saliency of S: 2/4 subjects, about 30 s left",
    ]
