"""DIM terms, baselines, spec parsing and composition."""

from __future__ import annotations

import math
import re
from itertools import permutations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import fractional_matrix_power
from torch import nn

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.models.dcgan import DCGANEncoder
from bidsfusion.objectives.base import Heads
from bidsfusion.objectives.cca import cca_loss
from bidsfusion.objectives.compose import build_objective, expand_all_dim, parse_spec
from bidsfusion.objectives.dim import SimilarityDIM
from bidsfusion.objectives.infonce import infonce
from bidsfusion.objectives.options import with_defaults

SIZE = 16
MODALITIES = ("T1w", "fALFF")


def _encoders(modalities=MODALITIES) -> dict[str, DCGANEncoder]:
    torch.manual_seed(0)
    return {m: DCGANEncoder((SIZE,) * 3, latent_dim=64) for m in modalities}


def _run(encoders, objective, batch_size=6, labels=None):
    """Forward + backward; returns the objective's values."""
    torch.manual_seed(1)
    batch = {m: torch.randn(batch_size, 1, SIZE, SIZE, SIZE) for m in encoders}
    batch["label"] = (
        torch.tensor(labels) if labels is not None else torch.tensor([1, 0, -1, 0, 1, -1])
    )
    values = objective({m: e(batch[m]) for m, e in encoders.items()}, batch)
    values["loss"].backward()
    return values, batch


def _build(spec, encoders, registry):
    dims = {m: Dims.of(e) for m, e in encoders.items()}
    return build_objective(spec, list(encoders), dims, registry)


def _has_grad(module: nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize(
    ("spec", "to_latent", "local_heads"),
    [("L", True, True), ("CL", True, True), ("CS", False, True), ("S", True, False)],
)
def test_dim_gradients_reach_exactly_their_parts(spec, to_latent, local_heads, registry) -> None:
    encoders = _encoders()
    objective = _build(spec, encoders, registry)
    _run(encoders, objective)
    assert all(p.grad is not None for p in objective.parameters())  # nothing unused
    for m, encoder in encoders.items():
        assert _has_grad(encoder.stages[0])
        assert _has_grad(encoder.to_latent) == to_latent
        assert (m in objective.heads.local) == local_heads
        if local_heads:
            assert _has_grad(objective.heads.local[m])
    if not to_latent:  # CS: nothing past the local map is used
        assert all(p.grad is None for e in encoders.values() for p in e.stages[1].parameters())


def test_s_gives_no_gradient_to_existing_local_heads() -> None:
    encoders = _encoders()
    dims = {m: Dims.of(e) for m, e in encoders.items()}
    heads = Heads(dims)
    heads.require(local=MODALITIES)
    _run(encoders, SimilarityDIM(MODALITIES, dims, heads=heads))
    assert all(p.grad is None for p in heads.local.parameters())
    assert all(_has_grad(e.to_latent) for e in encoders.values())


def test_supervised_trains_classifiers_and_encoders_only(registry) -> None:
    encoders = _encoders()
    objective = _build("Supervised", encoders, registry)
    values, batch = _run(encoders, objective)
    assert list(objective.heads.parameters()) == []
    assert all(_has_grad(objective.terms["Supervised"].classifiers[m]) for m in MODALITIES)
    assert all(_has_grad(e.to_latent) for e in encoders.values())
    labelled = batch["label"] != -1
    expected = sum(
        F.cross_entropy(
            objective.terms["Supervised"].classifiers[m](e(batch[m]).latent)[labelled],
            batch["label"][labelled],
        )
        for m, e in encoders.items()
    )
    assert values["Supervised"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_supervised_without_labels_is_zero_with_a_graph(registry) -> None:
    encoders = _encoders()
    objective = _build("Supervised", encoders, registry)
    values, _ = _run(encoders, objective, labels=[-1] * 6)
    assert values["loss"].item() == 0.0 and values["loss"].requires_grad
    assert all(p.grad is not None for p in objective.parameters())


def test_ae_reconstructs_each_modality(registry) -> None:
    encoders = _encoders()
    objective = _build("AE", encoders, registry)
    values, batch = _run(encoders, objective)
    term = objective.terms["AE"]
    assert all(_has_grad(term.decoders[m]) for m in MODALITIES)
    assert all(_has_grad(e.to_latent) for e in encoders.values())
    with torch.no_grad():
        recon = term.reconstruct({m: e(batch[m]) for m, e in encoders.items()})
        expected = sum(F.mse_loss(recon[m], batch[m]) for m in MODALITIES)
    assert values["AE"].item() == pytest.approx(expected.item(), rel=1e-5)


def _numpy_cca(h1: np.ndarray, h2: np.ndarray, r: float = 1e-3) -> float:
    h1, h2 = h1 - h1.mean(0), h2 - h2.mean(0)
    n = len(h1) - 1
    s11 = h1.T @ h1 / n + r * np.eye(h1.shape[1])
    s22 = h2.T @ h2 / n + r * np.eye(h2.shape[1])
    t = fractional_matrix_power(s11, -0.5) @ (h1.T @ h2 / n) @ fractional_matrix_power(s22, -0.5)
    return -np.linalg.svd(np.real(t), compute_uv=False).sum()


def test_cca_matches_numpy_and_saturates_on_correlated_latents() -> None:
    rng = np.random.default_rng(0)
    h1, h2 = rng.normal(size=(50, 6)), rng.normal(size=(50, 4))
    h2[:, 0] += h1[:, 0]
    value = cca_loss(torch.tensor(h1, dtype=torch.float32), torch.tensor(h2))
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(_numpy_cca(h1, h2), rel=1e-6)
    mixed = 10 * h1 @ rng.normal(size=(6, 6))
    assert cca_loss(torch.tensor(10 * h1), torch.tensor(mixed)).item() == pytest.approx(
        -6, abs=1e-3
    )


def test_cca_gradient_is_finite_for_batches_smaller_than_the_latent() -> None:
    h1 = torch.randn(6, 64, dtype=torch.float64, requires_grad=True)
    h2 = torch.randn(6, 64, dtype=torch.float64, requires_grad=True)
    cca_loss(h1, h2).backward()
    assert torch.isfinite(h1.grad).all() and torch.isfinite(h2.grad).all()
    assert h1.grad.abs().sum() > 0


def test_dccae_trains_decoders_and_encoders(registry) -> None:
    encoders = _encoders()
    objective = _build("DCCAE", encoders, registry)
    values, _ = _run(encoders, objective)
    assert set(values) == {"AE", "AE_chance", "CCA", "loss"}
    assert values["loss"].item() == pytest.approx((values["AE"] + values["CCA"]).item())
    assert all(_has_grad(e.to_latent) for e in encoders.values())


def test_composed_values_and_total(registry) -> None:
    encoders = _encoders()
    objective = _build("L-CL-CS-S", encoders, registry)
    values, _ = _run(encoders, objective)
    names = [f"{t}{s}" for t in ("L", "CL", "CS", "S") for s in ("", "_penalty")]
    chances = [f"{t}_chance" for t in ("L", "CL", "CS", "S")]
    assert set(values) == {*names, *chances, "loss"}
    assert values["loss"].item() == pytest.approx(sum(values[n].item() for n in names), rel=1e-6)
    assert len(objective.heads.local) == 2  # built once, shared by L, CL, CS


def test_three_modalities_sum_all_ordered_pairs(registry) -> None:
    modalities = ("T1w", "fALFF", "ALFF")
    encoders = _encoders(modalities)
    objective = _build("L-CL-CS-S", encoders, registry)
    torch.manual_seed(1)
    batch = {m: torch.randn(5, 1, SIZE, SIZE, SIZE) for m in modalities}
    outputs = {m: e(batch[m]) for m, e in encoders.items()}
    torch.manual_seed(7)
    values = objective(outputs, batch)
    heads = objective.heads
    local = {m: heads.embed_local(m, outputs[m]) for m in modalities}
    latent = {m: heads.embed_latent(m, outputs[m]) for m in modalities}
    pairs = list(permutations(modalities, 2))
    assert len(pairs) == 6

    def total(edges) -> float:
        return sum(infonce(x, y)[0].item() for x, y in edges)

    assert values["L"].item() == pytest.approx(total((local[m], latent[m]) for m in modalities))
    assert values["CL"].item() == pytest.approx(total((local[i], latent[j]) for i, j in pairs))
    assert values["S"].item() == pytest.approx(total((latent[i], latent[j]) for i, j in pairs))
    torch.manual_seed(7)
    anchors = []
    for i, j in pairs:
        where = torch.rand(5, 512).argmax(dim=1).view(5, 1, 1).expand(5, 64, 1)
        anchors.append((local[j], local[i].gather(2, where)))
    assert values["CS"].item() == pytest.approx(total(anchors))


def test_cross_terms_need_two_modalities(registry) -> None:
    encoders = _encoders(("T1w",))
    for spec in ("CL", "CS", "S", "CCA"):
        with pytest.raises(UsageError, match="two modalities"):
            _build(spec, encoders, registry)
    _build("L", encoders, registry)


@pytest.mark.parametrize(
    ("spec", "option", "value", "words"),
    [
        ("S", "clip", 0.0, "S.clip must be > 0, got 0.0"),
        ("CL", "penalty_weight", -0.1, "CL.penalty_weight must be >= 0, got -0.1"),
        ("L", "clip", float("nan"), "L.clip must be > 0, got nan"),
        ("AE", "decoder_channels", 0, "AE.decoder_channels must be >= 1, got 0"),
        ("CCA", "ridge", float("inf"), "CCA.ridge must be > 1e-09, got inf"),
    ],
)
def test_out_of_range_options_are_64_naming_the_option(registry, spec, option, value, words):
    encoders = _encoders()
    dims = {m: Dims.of(e) for m, e in encoders.items()}
    with pytest.raises(UsageError, match=re.escape(words)) as error:
        build_objective(spec, list(encoders), dims, registry, {spec: {option: value}})
    assert error.value.exit_code == 64


def test_local_terms_share_located_heads_unless_told_otherwise(registry) -> None:
    encoders = _encoders()
    dims = {m: Dims.of(e) for m, e in encoders.items()}
    located = build_objective("L-CL-CS", list(encoders), dims, registry)
    blind = build_objective(
        "L-CL", list(encoders), dims, registry, {"L": {"located": False}, "CL": {"located": False}}
    )
    for m in MODALITIES:
        assert located.heads.local[m].located.shape == (8**3, 64, 64)
        assert not hasattr(blind.heads.local[m], "located")
    with pytest.raises(UsageError, match=r"^CL\.located=false but L\.located=true: the local"):
        build_objective("L-CL", list(encoders), dims, registry, {"CL": {"located": False}})


def test_with_defaults_gives_every_option_of_each_term(registry) -> None:
    given = {"CL": {"located": False}}
    assert with_defaults(["S", "CL"], given, registry) == {
        "S": {"clip": 20.0, "penalty_weight": 0.04},
        "CL": {"clip": 20.0, "penalty_weight": 0.04, "located": False},
    }


def test_identity_latent_head_needs_matching_sizes() -> None:
    heads = Heads({"T1w": Dims((16, 16, 16), latent_dim=32, local_channels=32)})
    with pytest.raises(ValueError, match="latent_dim == embed_dim"):
        heads.require(latent=["T1w"])


def test_parse_spec(registry) -> None:
    assert parse_spec("L-CL", registry) == ["L", "CL"]
    assert parse_spec("DCCAE", registry) == ["AE", "CCA"]
    assert parse_spec("L-DCCAE", registry) == ["L", "AE", "CCA"]
    with pytest.raises(UsageError) as error:
        parse_spec("L-XYZ", registry)
    message = str(error.value)
    assert "'XYZ'" in message and "\n" not in message
    assert message.endswith(", ".join(sorted(registry)))
    with pytest.raises(UsageError, match="itself"):
        parse_spec("A", {"A": "B", "B": "A"})


@pytest.mark.parametrize(
    ("spec", "repeated"), [("L-L", "'L'"), ("DCCAE-AE", "'AE'"), ("L-CCA-DCCAE-L", "'CCA', 'L'")]
)
def test_parse_spec_refuses_a_term_twice(registry, spec, repeated) -> None:
    with pytest.raises(UsageError) as error:
        parse_spec(spec, registry)
    message = str(error.value)
    assert repr(spec) in message and f"term(s) {repeated} more than once" in message
    assert error.value.exit_code == 64


def test_expand_all_dim(registry) -> None:
    specs = expand_all_dim()
    assert len(set(specs)) == 15
    assert specs[:4] == ["L", "CL", "CS", "S"] and specs[-1] == "L-CL-CS-S"
    assert "CL-S" in specs and "S-CL" not in specs
    assert all(parse_spec(spec, registry) == spec.split("-") for spec in specs)


@pytest.mark.parametrize("spec", ["L", "CL", "CS", "S", "AE", "CCA", "Supervised", "MMVAE"])
def test_terms_are_float32_under_bf16_autocast(spec, registry) -> None:
    """The same encoder outputs give the same loss with and without bf16 autocast."""
    encoders = _encoders()
    objective = _build(spec, encoders, registry).eval()
    torch.manual_seed(1)
    batch = {m: torch.randn(6, 1, SIZE, SIZE, SIZE) for m in encoders}
    batch["label"] = torch.tensor([1, 0, -1, 0, 1, -1])
    with torch.no_grad():
        outputs = {m: e.eval()(batch[m]) for m, e in encoders.items()}
        torch.manual_seed(2)
        plain = objective(outputs, batch)
        torch.manual_seed(2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = objective(outputs, batch)
    for key, value in plain.items():
        assert mixed[key].dtype == torch.float32, key
        torch.testing.assert_close(mixed[key], value, rtol=1e-3, atol=1e-6)


def test_chance_levels_are_the_losses_of_equal_scores(registry) -> None:
    """With every score equal (all embeddings zero) each DIM term sits at its chance level:
    log(1 + (B - 1) * Lx) per edge, Lx the anchor's competitors per sample."""
    encoders = _encoders()
    objective = _build("L-CL-CS-S", encoders, registry)
    batch = {m: torch.randn(6, 1, SIZE, SIZE, SIZE) for m in encoders}
    outputs = {m: e(batch[m]) for m, e in encoders.items()}
    flat = {
        m: EncoderOutput(o.latent * 0, {"local": o.features["local"] * 0})
        for m, o in outputs.items()
    }
    for head in objective.heads.local.values():
        for parameter in head.parameters():
            torch.nn.init.zeros_(parameter)
    values = objective.eval()(flat, batch)
    locations = outputs["T1w"].features["local"][0, 0].numel()
    expected = {"S": 2 * math.log(6), "L": 2 * math.log(1 + 5 * locations)}
    expected["CL"] = expected["CS"] = expected["L"]
    for term, chance in expected.items():
        assert values[f"{term}_chance"].item() == pytest.approx(chance, rel=1e-6)
        assert values[term].item() == pytest.approx(chance, rel=1e-5)


def test_brain_locations_are_the_blocks_that_hold_brain() -> None:
    from bidsfusion.objectives.dim import brain_locations

    volume = torch.full((2, 1, 16, 16, 16), -0.7)  # z-normalised background
    volume[0, 0, 2:6, 8:10, 0:2] = 1.0
    volume[1] = torch.randn(1, 16, 16, 16)
    found = brain_locations(volume, (8, 8, 8)).view(2, 8, 8, 8)
    expected = torch.zeros(8, 8, 8, dtype=torch.bool)
    expected[1:3, 4, 0] = True
    assert torch.equal(found[0], expected)
    assert found[1].all()  # noise everywhere: every block has voxels above the minimum


def test_cs_anchors_lie_in_the_mask() -> None:
    from bidsfusion.objectives.dim import random_location

    embeddings = torch.arange(4 * 10, dtype=torch.float32).view(4, 1, 10).expand(4, 3, 10)
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[0, 3] = mask[1, 7] = mask[2, 2:4] = True
    for _ in range(20):
        chosen = random_location(embeddings, mask)[:, 0, 0].long() % 10
        assert chosen[0] == 3 and chosen[1] == 7 and chosen[2] in (2, 3)
    assert len({int(random_location(embeddings, mask)[3, 0, 0]) for _ in range(50)}) > 5


def test_pair_embeddings_give_each_critics_mean_score(registry) -> None:
    """x[i] . y[j] / sqrt(d) is the mean raw critic score of sample i's first member
    against sample j's anchor over the brain locations, written out directly here."""
    from bidsfusion.objectives.dim import brain_locations

    encoders = _encoders()
    objective = _build("L-CL-CS-S", encoders, registry)
    torch.manual_seed(1)
    batch = {m: torch.randn(5, 1, SIZE, SIZE, SIZE) for m in encoders}
    batch["T1w"][:, :, :8] = batch["T1w"].amin()  # half the field of view is background
    outputs = {m: e(batch[m]) for m, e in encoders.items()}
    pairs = objective.pair_embeddings(outputs, batch)
    assert set(pairs) == {"CL_T1w_fALFF", "CL_fALFF_T1w", "CS_T1w_fALFF", "S_T1w_fALFF"}
    heads = objective.heads
    local = {m: heads.local[m](outputs[m].features["local"]).flatten(2) for m in MODALITIES}
    latent = {m: outputs[m].latent for m in MODALITIES}
    mask = {
        m: brain_locations(batch[m], outputs[m].features["local"].shape[2:]) for m in MODALITIES
    }
    assert not mask["T1w"].all() and mask["T1w"].any(dim=1).all()
    d = latent["T1w"].shape[1]

    def mean_score(a, i, b, j):  # local of (a, i) against the latent of (b, j)
        scores = torch.einsum("dl,d->l", local[a][i], latent[b][j]) / math.sqrt(d)
        return scores[mask[a][i]].mean()

    def cs_score(a, i, b, j):  # every brain location of (a, i) against every one of (b, j)
        scores = torch.einsum("dl,dm->lm", local[a][i], local[b][j]) / math.sqrt(d)
        return scores[mask[a][i]][:, mask[b][j]].mean()

    for name, formula, a, b in [
        ("CL_T1w_fALFF", mean_score, "T1w", "fALFF"),
        ("CL_fALFF_T1w", mean_score, "fALFF", "T1w"),
        ("CS_T1w_fALFF", cs_score, "T1w", "fALFF"),
        (
            "S_T1w_fALFF",
            lambda a, i, b, j: latent[a][i] @ latent[b][j] / math.sqrt(d),
            "T1w",
            "fALFF",
        ),
    ]:
        x, y = pairs[name]
        expected = torch.stack(
            [torch.stack([formula(a, i, b, j) for j in range(5)]) for i in range(5)]
        )
        torch.testing.assert_close(x @ y.T / math.sqrt(d), expected, rtol=1e-4, atol=1e-5)


def test_objectives_without_a_critic_give_no_pair_embeddings(registry) -> None:
    encoders = _encoders()
    objective = _build("AE-L", encoders, registry)
    _, batch = _run(encoders, objective)
    assert objective.pair_embeddings({m: e(batch[m]) for m, e in encoders.items()}, batch) == {}


def test_cca_frobenius_is_the_references_norm_over_ordered_pairs(registry) -> None:
    from bidsfusion.objectives.cca import cca_loss

    torch.manual_seed(0)
    h1, h2 = torch.randn(40, 4), torch.randn(40, 4)
    h2 = h2 + 0.8 * h1
    trace, frobenius = cca_loss(h1, h2), cca_loss(h1, h2, norm="frobenius")
    correlations = -trace  # total canonical correlation
    assert float(-frobenius) < float(correlations)  # the root of the squares is smaller
    assert torch.allclose(cca_loss(h2, h1, norm="frobenius"), frobenius)  # symmetric
    dims = {m: Dims((16, 16, 16), latent_dim=4, local_channels=8) for m in ("T1w", "falff")}
    outputs = {
        "T1w": EncoderOutput(h1, {"local": torch.zeros(40, 8, 4, 4, 4)}),
        "falff": EncoderOutput(h2, {"local": torch.zeros(40, 8, 4, 4, 4)}),
    }
    reference = registry["CCA"](["T1w", "falff"], dims, norm="frobenius")
    default = registry["CCA"](["T1w", "falff"], dims)
    batch = {"label": torch.zeros(40, dtype=torch.long)}
    assert torch.allclose(reference(outputs, batch)["CCA"], 2 * frobenius.float())
    assert torch.allclose(default(outputs, batch)["CCA"], trace.float())
