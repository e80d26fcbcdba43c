"""MMVAE: the stratified IWAE bound, its K = 1 ELBO, posterior mean, training, composition."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims
from bidsfusion.models.dcgan import DCGANEncoder
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.objectives import mmvae
from bidsfusion.objectives.compose import build_objective, parse_spec
from bidsfusion.objectives.mmvae import MMVAE
from bidsfusion.objectives.specs import objective_specs
from bidsfusion.train.encode import encode

SIZE = 16
LATENT = 8
MODALITIES = ("T1w", "fALFF")


def _model(modalities=MODALITIES) -> MultimodalModel:
    torch.manual_seed(0)
    return MultimodalModel(modalities, DCGANEncoder, (SIZE,) * 3, LATENT, base_channels=8)


def _objective(model, registry, **options):
    options.setdefault("decoder_channels", 8)
    return build_objective("MMVAE", model.modalities, model.dims(), registry, {"MMVAE": options})


def _batch(modalities=MODALITIES, size=4, seed=1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(size, 1, SIZE, SIZE, SIZE, generator=generator) for m in modalities}
    batch["label"] = torch.arange(size) % 2
    return batch


def _logvar(term: MMVAE, m: str, output) -> torch.Tensor:
    """The documented squash of the head on the pooled local map, written out."""
    raw = term.logvar[m](output.features["local"].mean(dim=(2, 3, 4)))
    return term.logvar_bound * torch.tanh(raw / term.logvar_bound)


def test_k1_bound_is_the_mixture_elbo(registry, monkeypatch) -> None:
    model = _model().eval()
    objective = _objective(model, registry, k=1).eval()
    term = objective.terms["MMVAE"]
    with torch.no_grad():  # non-zero log-variances, so the test sees the head
        for layer in term.logvar.values():
            layer.weight.normal_(0, 0.5)
            layer.bias.uniform_(-2, 0)
    batch = _batch()
    noise = torch.randn(len(MODALITIES), 1, 4, LATENT, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(mmvae, "standard_normal", lambda shape, like: noise.clone())
    with torch.no_grad():
        outputs = model(batch)
        values = objective(outputs, batch)

        # The ELBO of the mixture, written independently with torch.distributions.
        means = torch.stack([outputs[m].latent for m in MODALITIES], dim=1)  # [B, M, d]
        stds = torch.stack([_logvar(term, m, outputs[m]).mul(0.5).exp() for m in MODALITIES], 1)
        moe = MixtureSameFamily(
            Categorical(logits=torch.zeros(4, len(MODALITIES))), Independent(Normal(means, stds), 1)
        )
        prior = Independent(Normal(torch.zeros(LATENT), torch.ones(LATENT)), 1)
        elbo = 0.0
        for index in range(len(MODALITIES)):
            z = means[:, index] + stds[:, index] * noise[index, 0]
            log_lik = sum(
                Independent(Normal(term.decoders[n](z), 1.0), 4).log_prob(batch[n])
                for n in MODALITIES
            )
            elbo += (prior.log_prob(z) + log_lik - moe.log_prob(z)).mean() / len(MODALITIES)
    voxels = len(MODALITIES) * SIZE**3
    assert values["MMVAE"].item() == pytest.approx(-elbo.item() / voxels, rel=1e-6)
    assert values["loss"].item() == values["MMVAE"].item()
    total = values["MMVAE_nll"] + values["MMVAE_kl"]
    assert values["MMVAE"].item() == pytest.approx(total.item(), rel=1e-6)


def test_likelihood_scale_enters_as_documented(registry, monkeypatch) -> None:
    """sigma = 2: squared errors / 4 and V log 2 more per modality (constants kept)."""
    model = _model().eval()
    batch = _batch()
    monkeypatch.setattr(mmvae, "standard_normal", lambda shape, like: torch.zeros(shape))
    state = _objective(model, registry, k=1).state_dict()
    nll = {}
    for sigma in (1.0, 2.0):
        objective = _objective(model, registry, k=1, likelihood_scale=sigma).eval()
        objective.load_state_dict(state)
        with torch.no_grad():
            nll[sigma] = objective(model(batch), batch)["MMVAE_nll"].item()
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    squared_half = nll[1.0] - half_log_2pi  # mean over voxels of (x - xhat)^2 / 2
    assert nll[2.0] == pytest.approx(squared_half / 4 + half_log_2pi + math.log(2.0), rel=1e-5)


def test_bound_does_not_decrease_with_k(registry) -> None:
    model = _model().eval()
    objective = _objective(model, registry).eval()
    term = objective.terms["MMVAE"]
    with torch.no_grad():  # posteriors wider than the prior: importance weights matter
        for layer in term.logvar.values():
            layer.bias.fill_(2.0)
    batch = _batch()
    torch.manual_seed(3)
    means = {}
    with torch.no_grad():
        outputs = model(batch)
        for k in (1, 4, 16):
            term.k = k
            draws = torch.stack([-objective(outputs, batch)["MMVAE"] for _ in range(16)])
            means[k] = (draws.mean().item(), draws.std().item() / math.sqrt(len(draws)))
    (b1, e1), (b4, e4), (b16, e16) = means[1], means[4], means[16]
    # Measured gains: 1 -> 4 about 10 standard errors, 4 -> 16 about 7.
    assert b4 > b1 + 3 * math.hypot(e1, e4)
    assert b16 > b4 + 3 * math.hypot(e4, e16)


def test_hundred_steps_are_finite_and_learn(registry) -> None:
    model = _model().train()
    objective = _objective(model, registry, k=2).train()
    parameters = [*model.parameters(), *objective.parameters()]
    optimizer = torch.optim.RAdam(parameters, lr=2e-3)
    batch = _batch(size=2)
    torch.manual_seed(4)
    losses = []
    for _ in range(100):
        values = objective(model(batch), batch)
        assert all(torch.isfinite(v) for v in values.values())
        optimizer.zero_grad(set_to_none=True)
        values["loss"].backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
        optimizer.step()
        losses.append(values["loss"].item())
    assert sum(losses[-10:]) < sum(losses[:10])
    # Every part trained: decoders, log-variance heads, both encoders to their latent layer.
    term = objective.terms["MMVAE"]
    for m in MODALITIES:
        for part in (term.decoders[m], term.logvar[m], model.encoders[m].to_latent):
            assert any(p.grad.abs().sum() > 0 for p in part.parameters())


def test_posterior_mean_is_the_encoder_latent(registry) -> None:
    model = _model().eval()
    objective = _objective(model, registry).eval()
    batch = _batch(size=5)
    with torch.no_grad():
        outputs = model(batch)
        posterior = objective.terms["MMVAE"].posterior(outputs)
    volumes = {m: batch[m] for m in MODALITIES}
    latents = encode(model, volumes, batch_size=2)  # what group.py stores and evaluates
    for m in MODALITIES:
        mean, logvar = posterior[m]
        assert mean is outputs[m].latent
        torch.testing.assert_close(torch.from_numpy(latents[m]), mean)
        assert logvar.shape == mean.shape
        assert (logvar.abs() <= objective.terms["MMVAE"].logvar_bound).all()


def test_one_modality_is_an_iwae_vae(registry) -> None:
    model = _model(("T1w",))
    objective = _objective(model, registry, k=3)
    batch = _batch(("T1w",))
    values = objective(model(batch), batch)
    values["loss"].backward()
    assert torch.isfinite(values["loss"]) and set(values) == {
        "MMVAE",
        "MMVAE_nll",
        "MMVAE_kl",
        "loss",
    }


@pytest.mark.parametrize("spec", ["MMVAE-AE", "S-MMVAE", "L-CL-MMVAE", "MMVAE-DCCAE"])
def test_mmvae_composes_with_nothing(registry, spec) -> None:
    with pytest.raises(UsageError) as error:
        parse_spec(spec, registry)
    message = str(error.value)
    assert error.value.exit_code == 64 and "\n" not in message
    assert repr(spec) in message and "'MMVAE'" in message and "alone" in message
    with pytest.raises(UsageError):
        objective_specs([spec], [], registry)
    assert parse_spec("MMVAE", registry) == ["MMVAE"]
    assert [s.name for s in objective_specs(["MMVAE", "AE"], [], registry)] == ["MMVAE", "AE"]


def test_mmvae_with_another_term_on_the_cli_is_64(run_cli, tiny_bids, tmp_path) -> None:
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--objective", "MMVAE-S")
    assert result.code == 64
    assert "objective 'MMVAE-S' combines 'MMVAE' with other terms" in result.err
    assert not (tmp_path / "out").exists()


def test_options_are_typed_keywords() -> None:
    parameters = list(inspect.signature(MMVAE).parameters.values())
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in parameters)
    options = {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {"heads", "k", "decoder_channels", "likelihood_scale", "logvar_bound"} == set(options)
    assert all(p.annotation is not inspect.Parameter.empty for p in options.values())
    dims = {"T1w": Dims((SIZE,) * 3, LATENT, 32)}
    bad_options = (
        {"k": 0},
        {"k": 2.0},
        {"likelihood_scale": 0.0},
        {"logvar_bound": -1.0},
        {"decoder_channels": 0},
    )
    for bad in bad_options:
        with pytest.raises(UsageError, match="MMVAE"):
            MMVAE(["T1w"], dims, **bad)
    with pytest.raises(TypeError):
        MMVAE(["T1w"], dims, ridge=1e-3)
