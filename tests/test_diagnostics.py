"""Learning diagnostics: pair retrieval, the shortcut probe, terms that stay at chance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bidsfusion.models.base import EncoderOutput
from bidsfusion.train.diagnostics import (
    AUGMENTATION_GAP,
    FEW_STEPS,
    augmentation_learners,
    critic_retrieval,
    diagnose,
    retrieval,
    shortcut_probe,
    top1,
    unlearned_terms,
)


def test_retrieval_of_matching_and_unrelated_latents() -> None:
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    assert retrieval({"a": z, "b": 3 * z + 0.01 * torch.randn(50, 8)}) == {"a_b": 1.0}
    unrelated = retrieval({"a": z, "b": torch.randn(50, 8)})["a_b"]
    assert unrelated < 0.15  # chance 0.02


class WhereIsTheBrain(nn.Module):
    """An 'encoder' that knows only where the volume's mass sits: the shortcut."""

    def forward(self, batch):
        out = {}
        for m, x in batch.items():
            grid = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"))
            weights = x[:, 0].clamp(min=0)
            centre = (weights[:, None] * grid).flatten(2).sum(2) / weights.flatten(1).sum(1)[
                :, None
            ]
            out[m] = EncoderOutput(centre - 7.5, {})
        return out


def test_the_probe_catches_a_model_that_matches_pairs_by_the_augmentation() -> None:
    """Every subject is the same blob (as the old synthetic data): only a shared draw
    makes the two views of a pair alike."""
    blob = torch.zeros(1, 1, 16, 16, 16)
    blob[..., 4:9, 5:11, 6:10] = 1.0
    volumes = {"T1w": blob.repeat(40, 1, 1, 1, 1), "falff": 2 * blob.repeat(40, 1, 1, 1, 1)}
    shared, independent = shortcut_probe(WhereIsTheBrain(), volumes, 0.5, 16, 8, (0, 1, 2))
    assert shared > 0.5 and independent < 0.2 and shared - independent > 0.2


def test_terms_at_or_above_chance_are_reported() -> None:
    row = {"val_S": 4.2, "val_S_chance": 4.97, "val_L": 17.9, "val_L_chance": 17.89}
    row |= {"val_CCA": -3.0, "val_retrieval_T1w_falff": 0.5, "val_retrieval_chance": 0.06}
    assert unlearned_terms(row) == {"L": (17.9, 17.89)}


def test_a_term_below_chance_only_on_augmented_batches_learned_the_augmentation() -> None:
    last = {"train_L": 12.96, "train_L_chance": 14.90, "train_S": 3.0, "train_S_chance": 4.1}
    last |= {"train_CL": 14.95, "train_CL_chance": 14.90, "train_CCA": -3.0, "train_loss": 1.0}
    last |= {"train_AE": 0.5, "train_AE_chance": 14.0}  # a term its probe value lacks
    plain = {"L": 15.44, "L_chance": 15.11, "S": 3.9, "S_chance": 4.1, "CL": 15.2}
    plain |= {"CL_chance": 15.11, "CCA": -2.0}
    assert augmentation_learners(last, plain) == {"L": (12.96, 14.90, 15.44, 15.11)}
    edge = {"train_L": 14.90 - AUGMENTATION_GAP, "train_L_chance": 14.90}
    assert augmentation_learners(edge, plain) == {}  # not by more than the gap


@pytest.mark.parametrize(("steps", "advised"), [(240, True), (FEW_STEPS, False)])
def test_a_term_that_did_not_learn_is_a_warning_with_its_steps(
    steps: int, advised: bool, caplog: pytest.LogCaptureFixture
) -> None:
    row = {"val_CL": 17.03, "val_CL_chance": 17.02, "val_S": 4.0, "val_S_chance": 4.97}
    unlearned, probe = diagnose(row, nn.Identity(), {}, None, "CL/fold-0", steps)
    assert unlearned == {"CL": (17.03, 17.02)} and probe == (0.0, 0.0)
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert "CL/fold-0: CL did not learn" in record.message
    assert f"after {steps} optimizer steps" in record.message
    assert ("more --epochs or a smaller --batch-size" in record.message) == advised


def test_critic_retrieval_ranks_by_the_critics_products() -> None:
    x = F.normalize(torch.randn(30, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    found = critic_retrieval({"S_a_b": (x, x), "CL_a_b": (x, x.roll(1, dims=0))})
    assert found == {"S_a_b": 1.0, "CL_a_b": 0.0}
    # products, not cosines: the long candidate 1 wins anchor 0 (cosines would be right)
    x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.5, 2.0]])
    assert critic_retrieval({"e": (y, x)})["e"] == 0.75
    assert retrieval({"a": y, "b": x})["a_b"] == 1.0
    scores = torch.tensor([[3.0, 0.0], [2.0, 1.0]])  # row 1 prefers column 0
    assert top1(scores) == 0.75  # rows: 1 of 2 right; columns: 2 of 2 right
