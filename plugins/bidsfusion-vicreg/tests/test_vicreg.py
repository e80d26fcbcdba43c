"""The VICReg plugin: its loss against an independent formula, its options, specs
that train, the global batch of two ranks, and discovery through the entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bidsfusion_vicreg import VICReg, register_objectives, vicreg_parts

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.models.dcgan import DCGANEncoder
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.objectives import builtin
from bidsfusion.objectives.compose import build_objective, parse_spec
from bidsfusion.objectives.gather import global_batch, local_rows
from bidsfusion.objectives.options import term_options

D = 8
MODALITIES = ("T1w", "falff")


def registry() -> dict[str, object]:
    """The built-in terms and ``VICReg``, registered through their hooks."""
    found: dict[str, object] = {}
    builtin.register_objectives(found.__setitem__)
    register_objectives(found.__setitem__)
    return found


def dims(modalities=MODALITIES) -> dict[str, Dims]:
    return {m: Dims((16, 16, 16), latent_dim=D, local_channels=4, embed_dim=D) for m in modalities}


def outputs(latents: dict[str, torch.Tensor]) -> dict[str, EncoderOutput]:
    return {m: EncoderOutput(z, {}) for m, z in latents.items()}


def numpy_vicreg(zs, lam, mu, nu, gamma, eps) -> float:
    """The paper's loss summed over unordered pairs, written independently in numpy."""

    def v(z):
        return np.maximum(0.0, gamma - np.sqrt(z.var(axis=0, ddof=1) + eps)).mean()

    def c(z):
        cov = np.cov(z, rowvar=False)
        return (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / z.shape[1]

    return sum(
        lam * np.mean((a - b) ** 2) + mu * (v(a) + v(b)) + nu * (c(a) + c(b))
        for a, b in combinations(zs, 2)
    )


@pytest.mark.parametrize("n_modalities", [2, 3])
def test_loss_equals_the_paper_formula(n_modalities: int) -> None:
    rng = np.random.default_rng(0)
    names = ("T1w", "falff", "alff")[:n_modalities]
    scales = np.linspace(0.2, 2.0, D)  # some dimensions below gamma, some above
    zs = [rng.normal(size=(32, D)) * scales + rng.normal(size=(32, 1)) for _ in names]
    options = dict(
        invariance_weight=3.0, variance_weight=5.0, covariance_weight=0.5, gamma=1.2, eps=1e-3
    )
    term = VICReg(names, dims(names), **options)
    values = term(outputs({m: torch.tensor(z) for m, z in zip(names, zs, strict=True)}), {})
    expected = numpy_vicreg(zs, *options.values())
    assert values["loss"].item() == pytest.approx(expected, rel=1e-10)
    assert values["VICReg"].item() == values["loss"].item()
    parts = [values[f"VICReg_{p}"].item() for p in ("invariance", "variance", "covariance")]
    assert 3 * parts[0] + 5 * parts[1] + 0.5 * parts[2] == pytest.approx(expected, rel=1e-10)
    assert min(parts) > 0


def test_default_weights_are_the_papers() -> None:
    zs = [np.random.default_rng(s).normal(size=(16, D)) * 0.5 for s in (1, 2)]
    term = VICReg(MODALITIES, dims())
    value = term(outputs({m: torch.tensor(z) for m, z in zip(MODALITIES, zs, strict=True)}), {})
    assert value["loss"].item() == pytest.approx(numpy_vicreg(zs, 25, 25, 1, 1.0, 1e-4), rel=1e-10)


def test_identical_latents_have_zero_invariance() -> None:
    z = torch.randn(16, D)
    assert vicreg_parts(z, z.clone())["invariance"].item() == 0.0


def test_variance_is_zero_once_every_sd_reaches_gamma() -> None:
    z = torch.randn(64, D, dtype=torch.float64)
    z = z / z.std(dim=0)  # every dimension's sd exactly 1
    assert vicreg_parts(1.5 * z, z, gamma=1.0)["variance"].item() == 0.0
    small = vicreg_parts(0.1 * z, z, gamma=1.0, eps=0.0)["variance"].item()
    assert small == pytest.approx(0.9)


def test_options_are_set_with_objective_option_and_checked() -> None:
    reg = registry()
    assignments = ["VICReg.invariance_weight=10", "VICReg.gamma=0.5"]
    options = term_options(assignments, parse_spec("S-VICReg", reg), reg)
    assert options == {"VICReg": {"invariance_weight": 10.0, "gamma": 0.5}}
    term = build_objective("S-VICReg", MODALITIES, dims(), reg, options).terms["VICReg"]
    assert term.weights["invariance"] == 10.0 and term.gamma == 0.5
    with pytest.raises(UsageError, match="VICReg has no option 'lambda_'; its options: inv"):
        term_options(["VICReg.lambda_=1"], ["VICReg"], reg)
    with pytest.raises(UsageError, match="is not a finite number"):
        term_options(["VICReg.eps=small"], ["VICReg"], reg)
    with pytest.raises(UsageError, match=r"VICReg.covariance_weight must be >= 0, got -1.0"):
        VICReg(MODALITIES, dims(), covariance_weight=-1.0)
    with pytest.raises(UsageError, match="at least two modalities"):
        VICReg(("T1w",), dims(("T1w",)))


@pytest.mark.parametrize("spec", ["S-VICReg", "VICReg-AE"])
def test_specs_train_a_tiny_model(spec: str) -> None:
    torch.manual_seed(0)
    reg = registry()
    assert "VICReg" in parse_spec(spec, reg)
    model = MultimodalModel(MODALITIES, DCGANEncoder, (16, 16, 16), latent_dim=32)
    objective = build_objective(spec, MODALITIES, model.dims(32), reg)
    optimiser = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=1e-3)
    batch = {m: torch.randn(8, 1, 16, 16, 16) for m in MODALITIES}
    batch["label"] = torch.tensor([1, 0, -1, 0, 1, 1, 0, -1])
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        optimiser.zero_grad()
        terms = objective(model(batch), batch)
        terms["loss"].backward()
        optimiser.step()
        assert torch.isfinite(terms["loss"])
        assert {"VICReg", "VICReg_invariance", "VICReg_variance", "VICReg_covariance"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


WORLD = 2


def _latents() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(8, D, generator=g, dtype=torch.float64) * 0.7 for m in MODALITIES}


def _step(latents: dict[str, torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and its gradient with respect to each modality's latents."""
    leaves = {m: z.clone().requires_grad_() for m, z in latents.items()}
    loss = VICReg(MODALITIES, dims())(outputs(leaves), {})["loss"]
    loss.backward()
    return loss.item(), {m: z.grad for m, z in leaves.items()}


def _rank_main(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        with global_batch():
            rows = local_rows(8 // WORLD)
            result = _step({m: z[rows] for m, z in _latents().items()})
        torch.save(result, Path(out) / f"rank-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_use_the_statistics_of_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_rank_main, args=(f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=WORLD)
    loss, grads = _step(_latents())
    for rank in range(WORLD):
        ranked_loss, ranked_grads = torch.load(tmp_path / f"rank-{rank}.pt")
        assert ranked_loss == pytest.approx(loss, rel=1e-12)
        rows = slice(rank * 4, (rank + 1) * 4)
        for m in MODALITIES:  # DDP divides the sum over the ranks by WORLD
            torch.testing.assert_close(ranked_grads[m] / WORLD, grads[m][rows])


def test_entry_point_is_listed_by_bidsfusion_plugins() -> None:
    env = {k: v for k, v in os.environ.items() if k != "BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"}
    listing = subprocess.run(
        [sys.executable, "-m", "bidsfusion", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    block = listing.split("vicreg  [", 1)[1].splitlines()
    assert block[0].startswith("bidsfusion-vicreg 0.1.0")
    assert "objectives: VICReg" in block[1]
    assert block[2].strip() == (
        "VICReg: invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0, "
        "gamma=1.0, eps=0.0001"
    )
