"""Learning diagnostics: did a fold learn the subjects, or a shortcut, or nothing?

- Pair retrieval: for each subject's latent of one modality, is the closest latent
  (cosine) of the other modality the same subject's? Top-1 accuracy, averaged over
  both directions of every pair of modalities; chance is 1/N for N pairs.
- Critic retrieval: the same with the objective's own critic in place of the cosine
  of the latents (:meth:`~bidsfusion.objectives.base.Objective.pair_embeddings`):
  CL pairs a subject's local features with the other modality's latent, which
  latent retrieval does not see.
- The shortcut probe: retrieval on training pairs when both views share one
  augmentation draw versus when each has its own. A model that matches pairs by
  where the brain sits in the field of view (which a shared draw makes identical)
  retrieves far better with the shared draw: a gap above :data:`SHORTCUT_GAP` is
  flagged.
- Chance levels: a term that does not end below its chance level (the value when
  every score is equal, reported by the term as ``<term>_chance``) learned nothing.
- The augmentation probe: a term whose last training value (augmented batches) is
  below its chance level by more than :data:`AUGMENTATION_GAP` while on the same
  subjects un-augmented it is not below it learned the augmentation, not the brain.
  L, whose two sides are one image and so share its draw, did so with random
  translations: it matched locations with their image's latent by the shift.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bidsfusion.data.transforms import augment

log = logging.getLogger(__name__)

SHORTCUT_GAP = 0.2
"""Retrieval with a shared draw minus retrieval with independent draws above which a
model is flagged as matching pairs by the augmentation (absolute accuracy)."""
FEW_STEPS = 1000
"""Fewer optimizer steps than this, and a term that did not learn is told to train
longer: on the learning benchmark (64 training subjects at 32^3, peak learning rate
5e-4) CL's training loss stayed at its chance level through 240 steps (60 epochs of
batch 16) and went 0.85 below it, validation 0.6 below, in 1,200 (150 epochs of 8)."""
AUGMENTATION_GAP = 0.1
"""Nats below its chance level a term's last training value must reach, while its
un-augmented value on the same subjects is not below chance, to be flagged as having
learned the augmentation (L with 12 mm translations: 1.9 below on augmented batches,
0.3 above un-augmented)."""
PROBE_SEED = 12345
"""Seed of the probe's augmentation draws (the same for every fold and objective)."""


def retrieval(latents: Mapping[str, Tensor]) -> dict[str, float]:
    """Top-1 pair retrieval per pair of modalities, ``{"<a>_<b>": accuracy}``.

    ``latents[m]`` [N, d] hold the same N subjects in the same order.
    """
    return {
        f"{a}_{b}": top1(
            F.normalize(latents[a].float(), dim=1) @ F.normalize(latents[b].float(), dim=1).T
        )
        for a, b in combinations(latents, 2)
    }


def critic_retrieval(pairs: Mapping[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Top-1 pair retrieval by the critic's scores ``x @ y.T`` of each edge's pair
    embeddings ``(x [N, d], y [N, d])``, ``{edge: accuracy}``."""
    return {edge: top1(x.float() @ y.float().T) for edge, (x, y) in pairs.items()}


def top1(scores: Tensor) -> float:
    """Top-1 accuracy of ``scores [N, N]`` (row ``i`` and column ``i`` are sample ``i``'s)
    finding the diagonal, averaged over rows and columns."""
    target = torch.arange(len(scores), device=scores.device)
    forward = (scores.argmax(dim=1) == target).float().mean()
    backward = (scores.argmax(dim=0) == target).float().mean()
    return float((forward + backward) / 2)


@torch.no_grad()
def latents_of(
    model: nn.Module, volumes: Mapping[str, Tensor], batch_size: int
) -> dict[str, Tensor]:
    """Eval-mode latents [N, d] by modality, in chunks of at least ``batch_size``."""
    n = len(next(iter(volumes.values())))
    chunks: dict[str, list[Tensor]] = {m: [] for m in volumes}
    for index in torch.arange(n).tensor_split(max(1, n // batch_size)):
        outputs = model({m: x[index.to(x.device)] for m, x in volumes.items()})
        for m, output in outputs.items():
            chunks[m].append(output.latent.float())
    return {m: torch.cat(parts) for m, parts in chunks.items()}


def shortcut_probe(
    model: nn.Module,
    volumes: Mapping[str, Tensor],
    flip_p: float,
    crop_pad: int,
    batch_size: int,
    flip_axes: tuple[int, ...] = (0,),
) -> tuple[float, float]:
    """Mean pair retrieval of training ``volumes`` with a shared and with independent
    draws of the training augmentation (:func:`~bidsfusion.data.transforms.augment`,
    seeded), in eval mode: ``(shared, independent)``."""
    was_training = model.training
    model.eval()
    try:
        scores = []
        for paired in (True, False):
            device = next(iter(volumes.values())).device
            generator = torch.Generator(device=device).manual_seed(PROBE_SEED)
            views = augment(volumes, generator, flip_p, crop_pad, paired, flip_axes)
            found = retrieval(latents_of(model, views, batch_size))
            scores.append(sum(found.values()) / max(len(found), 1))
    finally:
        model.train(was_training)
    return scores[0], scores[1]


def _few_steps_advice(steps: int) -> str:
    """What to try when a term did not learn in ``steps`` optimizer steps ('' for enough)."""
    if steps >= FEW_STEPS:
        return ""
    return (
        f"; a term may need about {FEW_STEPS} steps to learn: more --epochs or a "
        "smaller --batch-size"
    )


def unlearned_terms(row: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Terms of a history row whose validation value is not below its chance level:
    ``{term: (value, chance)}``."""
    return {
        key[4:-7]: (row[key[:-7]], value)
        for key, value in row.items()
        if key.startswith("val_") and key.endswith("_chance") and value > 0
        if not key.startswith("val_retrieval") and not row[key[:-7]] < value
    }


def augmentation_learners(
    last: Mapping[str, float], plain: Mapping[str, float]
) -> dict[str, tuple[float, float, float, float]]:
    """Terms that learned the augmentation: below their chance level by more than
    :data:`AUGMENTATION_GAP` in ``last`` (the last history row: ``train_<term>`` and
    ``train_<term>_chance`` over augmented batches) but not below it in ``plain`` (the
    same model on the same subjects un-augmented: ``<term>``, ``<term>_chance``):
    ``{term: (augmented value, its chance, un-augmented value, its chance)}``."""
    found = {}
    for key, chance in last.items():
        term = key[len("train_") : -len("_chance")]
        if not (key.startswith("train_") and key.endswith("_chance") and chance > 0):
            continue
        value, plain_value = last[f"train_{term}"], plain.get(term)
        plain_chance = plain.get(f"{term}_chance")
        if plain_value is None or plain_chance is None:
            continue
        if value < chance - AUGMENTATION_GAP and not plain_value < plain_chance:
            found[term] = (value, chance, plain_value, plain_chance)
    return found


def report_augmentation_learners(
    found: Mapping[str, tuple[float, float, float, float]], name: str
) -> None:
    """A warning per term of :func:`augmentation_learners`, naming the fold ``name``."""
    for term, (value, chance, plain_value, plain_chance) in found.items():
        log.warning(
            "%s: %s learned the augmentation: on augmented training batches it ended at "
            "%.4g, below its chance level %.4g, but on the same subjects un-augmented it is "
            "%.4g (chance %.4g); lower --max-shift or --flip-axes",
            name, term, value, chance, plain_value, plain_chance,
        )  # fmt: skip


def diagnose(
    best_row: Mapping[str, float],
    model: nn.Module,
    train_volumes: Mapping[str, Tensor],
    settings: Any,
    name: str,
    steps: int,
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """The terms that did not learn (best epoch vs chance) and the shortcut probe on the
    training volumes; each a warning in the log naming the fold ``name``, which trained
    ``steps`` optimizer steps."""
    unlearned = unlearned_terms(best_row)
    for term, (value, chance) in unlearned.items():
        log.warning(
            "%s: %s did not learn: its best-epoch validation value %.4g is not below its "
            "chance level %.4g after %d optimizer steps%s",
            name, term, value, chance, steps, _few_steps_advice(steps),
        )  # fmt: skip
    if len(train_volumes) < 2:
        return unlearned, (0.0, 0.0)
    device = next(model.parameters()).device
    volumes = {m: x.to(device) for m, x in train_volumes.items()}
    shared, independent = shortcut_probe(
        model,
        volumes,
        settings.flip_p,
        settings.crop_pad,
        settings.batch_size,
        settings.flip_axes,
    )
    if shared - independent > SHORTCUT_GAP:
        log.warning(
            "%s: shortcut: training pairs are retrieved %.0f %% of the time with a shared "
            "augmentation draw but %.0f %% with independent draws; the model matches pairs "
            "by the augmentation, not the subject",
            name, 100 * shared, 100 * independent,
        )  # fmt: skip
    return unlearned, (shared, independent)
