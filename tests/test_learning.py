"""Pretraining learns planted subject factors, not the augmentation (16^3, CPU, ~1 min each).

Planted data (:mod:`planted`): the two modalities of a subject share smooth factors;
64 training and 16 validation pairs, batch 16, the default optimisation and
independent augmentation draws unless a test says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from planted import MODALITIES, planted_pairs, textured_pairs

from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.objectives.compose import build_objective
from bidsfusion.plugins import registered
from bidsfusion.train.diagnostics import AUGMENTATION_GAP, SHORTCUT_GAP, latents_of, retrieval
from bidsfusion.train.loop import FoldData, FoldResult, train_fold
from bidsfusion.train.settings import TrainSettings

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

N_TRAIN, N_VALIDATION, SIZE = 64, 16, 16


def _model() -> MultimodalModel:
    torch.manual_seed(0)
    return MultimodalModel(MODALITIES, registered("encoders")["dcgan"], (SIZE,) * 3, 64)


def _data(shared: float = 1.0) -> tuple[FoldData, FoldData]:
    volumes, labels = planted_pairs(N_TRAIN + N_VALIDATION, SIZE, shared=shared)
    train = FoldData({m: x[:N_TRAIN] for m, x in volumes.items()}, labels[:N_TRAIN])
    validation = FoldData({m: x[N_TRAIN:] for m, x in volumes.items()}, labels[N_TRAIN:])
    return train, validation


def _train(
    spec: str, out: Path, epochs: int, shared: float = 1.0, options=None, **settings
) -> FoldResult:
    train, validation = _data(shared)
    model = _model()
    objective = build_objective(
        spec, list(MODALITIES), model.dims(64), registered("objectives"), options or {}
    )
    options = TrainSettings(epochs=epochs, batch_size=16, device="cpu", progress=False, **settings)
    return train_fold(model, objective, train, validation, options, out)


def test_s_finds_the_partner_of_a_held_out_subject(tmp_path: Path) -> None:
    result = _train("S", tmp_path, epochs=40)
    chance = 1 / N_VALIDATION
    learned = result.best_row["val_retrieval_T1w_falff"]
    _, validation = _data()
    untrained = retrieval(latents_of(_model().eval(), validation.volumes, 16))["T1w_falff"]
    assert learned >= 4 * chance, (learned, chance)
    assert result.best_row["val_critic_S_T1w_falff"] >= 4 * chance  # its critic agrees
    assert untrained <= 2 * chance, untrained
    assert result.best_row["val_S"] < result.best_row["val_S_chance"]
    assert not result.unlearned


def test_local_terms_end_below_their_chance_level_and_further_with_located_heads(
    tmp_path: Path,
) -> None:
    """The planted fields differ location by location (and between the modalities), so
    a patch tells its subject only to a head that knows where the patch is: measured,
    validation L 13.62 located and 15.41 location-blind (chance 15.67), CL 15.42 and 15.62."""
    result = _train("L-CL", tmp_path / "located", epochs=60)
    last = result.history[-1]
    for term in ("L", "CL"):
        assert last[f"train_{term}"] < last[f"train_{term}_chance"] - 0.05, (term, last)
    assert not result.unlearned
    for edge in ("T1w_falff", "falff_T1w"):  # CL's critic pairs held-out subjects (3x chance)
        assert result.best_row[f"val_critic_CL_{edge}"] >= 2 / N_VALIDATION, result.best_row
    blind = {term: {"located": False} for term in ("L", "CL")}
    unlocated = _train("L-CL", tmp_path / "blind", epochs=60, options=blind)
    assert result.best_row["val_L"] < unlocated.best_row["val_L"] - 0.3


def test_cs_ends_below_its_chance_level_where_every_patch_shows_its_subject(
    tmp_path: Path,
) -> None:
    """CS matches one location of a subject's T1w with every location of its fALFF, so it
    can only learn what every patch shows: on the planted factors above (a smooth field,
    different in each patch) it stays at chance; a texture amplitude shared by the two
    modalities of a subject is visible everywhere."""
    volumes = textured_pairs(N_TRAIN + N_VALIDATION, SIZE)
    labels = torch.zeros(N_TRAIN + N_VALIDATION, dtype=torch.long)
    train = FoldData({m: x[:N_TRAIN] for m, x in volumes.items()}, labels[:N_TRAIN])
    validation = FoldData({m: x[N_TRAIN:] for m, x in volumes.items()}, labels[N_TRAIN:])
    model = _model()
    objective = build_objective(
        "CS", list(MODALITIES), model.dims(64), registered("objectives"), {}
    )
    options = TrainSettings(epochs=25, batch_size=16, device="cpu", progress=False)
    result = train_fold(model, objective, train, validation, options, tmp_path)
    margins = [row["train_CS"] - row["train_CS_chance"] for row in result.history[-5:]]
    assert sum(margins) / len(margins) < -0.03, margins
    assert not result.unlearned


def test_the_probe_catches_a_model_trained_with_paired_augmentation(tmp_path: Path) -> None:
    """Nothing is shared but the augmentation draw, as on the old synthetic data: S trained
    with a shared draw matches pairs by it, and the probe says so."""
    strong = {"flip_axes": (0, 1, 2), "crop_pad": 16, "max_lr": 2e-3}  # learns it in 40 epochs
    paired = _train("S", tmp_path / "paired", 40, shared=0.0, paired_augmentation=True, **strong)
    shared, independent = paired.probe
    assert shared - independent > SHORTCUT_GAP, paired.probe
    honest = _train("S", tmp_path / "independent", 40, shared=0.0, **strong)
    assert honest.probe[0] - honest.probe[1] <= SHORTCUT_GAP, honest.probe


def test_the_augmentation_probe_catches_l_matching_locations_by_the_shift(
    tmp_path: Path,
) -> None:
    """Every subject is the same brain: only a random translation, which L's local
    features and latent share (one image), tells one image from another. Trained
    with one, L goes below its chance level on augmented batches only, and the
    probe says so; without one, nothing is flagged."""
    from planted import _brain

    brain = torch.as_tensor(_brain(SIZE), dtype=torch.float32)[None, None]
    noise = torch.Generator().manual_seed(0)
    n = N_TRAIN + N_VALIDATION
    same = {m: brain.repeat(n, 1, 1, 1, 1) + 0.01 * torch.randn(n, 1, *(SIZE,) * 3, generator=noise)
            for m in MODALITIES}  # fmt: skip
    labels = torch.zeros(n, dtype=torch.long)
    train = FoldData({m: x[:N_TRAIN] for m, x in same.items()}, labels[:N_TRAIN])
    validation = FoldData({m: x[N_TRAIN:] for m, x in same.items()}, labels[N_TRAIN:])
    results = {}
    for crop_pad in (16, 0):  # 4 voxels at 16^3; none
        model = _model()
        objective = build_objective(
            "L", list(MODALITIES), model.dims(64), registered("objectives"), {}
        )
        options = TrainSettings(epochs=30, batch_size=16, device="cpu", progress=False,
                                crop_pad=crop_pad, flip_axes=(), max_lr=2e-3)  # fmt: skip
        results[crop_pad] = train_fold(
            model, objective, train, validation, options, tmp_path / str(crop_pad)
        )
    value, chance, plain, plain_chance = results[16].augmentation["L"]
    assert value < chance - AUGMENTATION_GAP and plain >= plain_chance
    assert results[0].augmentation == {}
