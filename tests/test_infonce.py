"""InfoNCE and the critic against direct, loop-based formulas."""

from __future__ import annotations

import math

import pytest
import torch

from bidsfusion.objectives.critic import clip_scores, score_penalty, separable_scores
from bidsfusion.objectives.infonce import infonce, infonce_chance


def _reference(x: torch.Tensor, y: torch.Tensor, c: float = 20.0, w: float = 4e-2, keep=None):
    """The estimator written out with Python loops over samples and locations; ``keep``
    (a set of (sample, location)) limits the locations of ``x``."""
    B, d, Lx = x.shape
    Ly = y.shape[2]
    keep = keep or {(b, p) for b in range(B) for p in range(Lx)}

    def raw(b: int, p: int, a: int, m: int) -> float:
        return float(x[b, :, p] @ y[a, :, m]) / math.sqrt(d)

    def f(b: int, p: int, a: int, m: int) -> float:
        return c * math.tanh(raw(b, p, a, m) / c)

    squares = [raw(b, p, a, m) ** 2 for b, p in sorted(keep) for a in range(B) for m in range(Ly)]
    losses = []
    for a in range(B):
        for m in range(Ly):
            negatives = [f(b, p, a, m) for b, p in sorted(keep) if b != a]
            for p in (p for b, p in sorted(keep) if b == a):
                positive = f(a, p, a, m)
                denominator = math.exp(positive) + sum(math.exp(n) for n in negatives)
                losses.append(-(positive - math.log(denominator)))
    return sum(losses) / len(losses), w * sum(squares) / len(squares)


@pytest.mark.parametrize(("B", "d", "Lx", "Ly"), [(3, 4, 5, 1), (4, 3, 2, 3), (2, 5, 1, 1)])
def test_infonce_matches_loop_reference(B: int, d: int, Lx: int, Ly: int) -> None:
    gen = torch.Generator().manual_seed(B * 100 + Lx)
    x = 3 * torch.randn(B, d, Lx, generator=gen, dtype=torch.float64)
    y = 3 * torch.randn(B, d, Ly, generator=gen, dtype=torch.float64)
    loss, penalty = infonce(x, y)
    expected_loss, expected_penalty = _reference(x, y)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert penalty.item() == pytest.approx(expected_penalty, rel=1e-12)


def test_masked_infonce_matches_loop_reference() -> None:
    gen = torch.Generator().manual_seed(5)
    x = 3 * torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    y = 3 * torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    loss, penalty = infonce(x, y, x_mask=mask)
    keep = {(b, p) for b in range(3) for p in range(5) if mask[b, p]}
    expected_loss, expected_penalty = _reference(x, y, keep=keep)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert penalty.item() == pytest.approx(expected_penalty, rel=1e-12)
    everything, _ = infonce(x, y)
    nothing_in_one = mask.clone()
    nothing_in_one[1] = False  # a sample without any location keeps all of its own
    keep = {(b, p) for b in range(3) for p in range(5) if nothing_in_one[b, p] or b == 1}
    assert infonce(x, y, x_mask=nothing_in_one)[0].item() == pytest.approx(
        _reference(x, y, keep=keep)[0], rel=1e-12
    )
    assert everything.item() != pytest.approx(loss.item())


def test_chance_is_the_loss_of_equal_scores() -> None:
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    zeros = torch.zeros(3, 4, 5, dtype=torch.float64)
    loss, _ = infonce(zeros, torch.randn(3, 4, 1, dtype=torch.float64), x_mask=mask)
    assert infonce_chance(mask.sum(1)) == pytest.approx(loss.item(), rel=1e-12)
    assert infonce_chance(torch.full((16,), 512)) == pytest.approx(math.log(1 + 15 * 512))


def test_infonce_clips_before_the_loss_and_penalises_raw_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    x = 40 * torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    y = 40 * torch.randn(3, 4, 1, generator=gen, dtype=torch.float64)
    loss, penalty = infonce(x, y, clip=5.0, penalty_weight=0.5)
    expected_loss, expected_penalty = _reference(x, y, c=5.0, w=0.5)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert penalty.item() == pytest.approx(expected_penalty, rel=1e-12)
    assert penalty.item() > 0.5 * 5.0**2  # raw scores exceed the clip: not clipped first


def test_critic_pieces() -> None:
    u = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    v = torch.tensor([[2.0, 0.0, 1.0, -1.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    assert separable_scores(u, v).tolist() == [[1.0 / 2.0, 10.0 / 2.0]]
    assert clip_scores(torch.tensor(100.0, dtype=torch.float64)).item() == pytest.approx(
        20 * math.tanh(5.0), rel=1e-15
    )
    scores = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert score_penalty(scores).item() == pytest.approx(4e-2 * 14.0 / 4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_infonce_keeps_the_dtype(dtype: torch.dtype) -> None:
    x, y = torch.randn(4, 8, 5, dtype=dtype), torch.randn(4, 8, 1, dtype=dtype)
    loss, penalty = infonce(x, y)
    assert loss.dtype == dtype and penalty.dtype == dtype


def test_infonce_gradcheck() -> None:
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: sum(infonce(a, b)), (x, y))


def test_aligned_embeddings_score_better_than_shuffled() -> None:
    torch.manual_seed(0)
    local = torch.randn(16, 64, 27)
    latent = local.mean(2, keepdim=True) * 5
    aligned, _ = infonce(local, latent)
    shuffled, _ = infonce(local, latent[torch.roll(torch.arange(16), 1)])
    assert aligned.item() < shuffled.item() - 1.0


def test_infonce_at_paper_scale_is_finite_and_bounded() -> None:
    torch.manual_seed(0)
    x, y = 1e3 * torch.randn(64, 64, 512), 1e3 * torch.randn(64, 64, 1)
    loss, penalty = infonce(x, y)
    assert torch.isfinite(loss) and torch.isfinite(penalty)
    assert loss.item() <= 40 + math.log(63 * 512 + 1)  # scores are clipped to [-20, 20]


def test_single_sample_has_no_negatives_and_zero_loss() -> None:
    x = torch.randn(1, 4, 3, requires_grad=True)
    loss, _ = infonce(x, torch.randn(1, 4, 1))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()
