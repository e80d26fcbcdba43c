"""A pretrained model applied to a new cohort (``--pretrained MODEL_DIR``).

The model folder's encoders, objective and landmarks become a recipe that is not trained
(or fine-tuned for ``--finetune`` epochs) and whose volumes are normalised with the
model's own landmarks, never refit on the new data. Before any of it, the cohort's
derivatives are checked against what the model expects: the same modalities with the
same entities and space (else an error), the same processing (else a warning naming what
differs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bidsfusion.data.derivatives import SPACE_KEYS, processing
from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.transforms import HistogramLandmarks
from bidsfusion.errors import InputDataError, UsageError
from bidsfusion.layout import FoldFiles
from bidsfusion.modality import Modality
from bidsfusion.models.folder import load_model_folder, load_state, read_weights
from bidsfusion.objectives.compose import Registry, compose
from bidsfusion.objectives.specs import ObjectiveSpec
from bidsfusion.train.pretrain import Recipe

log = logging.getLogger("bidsfusion.group")

PREFIX = "pretrained-"
"""The objective name of a pretrained model: this prefix and its folder's name."""


def label(folder: Path) -> str:
    """``pretrained-<folder name>``, characters outside ``[A-Za-z0-9._+-]`` replaced by ``_``."""
    return PREFIX + re.sub(r"[^A-Za-z0-9._+-]", "_", Path(folder).name)


def pretrained_recipe(folder: Path, registry: Registry, finetune: int) -> Recipe:
    """The recipe of a model folder: its trained encoders and objective (every term must be
    registered: UsageError naming it otherwise), its landmarks, trained for ``finetune``
    epochs (0: not at all)."""
    record, model = load_model_folder(folder)
    missing = [t for t in record.terms if t not in registry]
    if missing:
        raise UsageError(
            f"{FoldFiles(folder).metadata} uses the objective term(s) {', '.join(missing)}, "
            "which no installed plugin registers: install their plugin"
        )
    dims = model.dims(record.latent_dim)
    objective = compose(record.terms, list(record.modality_names), dims, registry, record.options)
    files = FoldFiles(Path(folder))
    state = read_weights(files, record, files.objective_weights)
    load_state(objective, state, files.objective_weights)
    spec = ObjectiveSpec(label(folder), record.terms, record.options, record.options, finetune > 0)
    landmarks = {m: HistogramLandmarks(v) for m, v in record.landmarks().items()}
    return Recipe(spec, model, objective, record, landmarks, finetune or None)


def check_applicable(recipe: Recipe, modalities: Sequence[Modality], inputs: GroupInputs) -> None:
    """Whether the cohort's derivatives are what the pretrained model of ``recipe`` expects:
    InputDataError (65) for other entities or another space, a warning naming every other
    processing setting that differs, and every one the cohort's sidecars do not state."""
    source = recipe.source
    if source is None:
        return
    registered = {m.name: m for m in modalities}
    first = inputs.pairs[0]
    for expected in source.modalities:
        here = registered[expected.name]
        if dict(here.entities) != expected.entities:
            raise InputDataError(
                f"{recipe.spec.name} expects {expected.name} derivatives named by "
                f"{expected.entities}; this bidsfusion names them by {dict(here.entities)}"
            )
        made = processing(first.paths[expected.name])
        _compare(recipe.spec.name, expected.name, expected.processing, made)


def _compare(
    name: str, modality: str, expected: Mapping[str, object], found: Mapping[str, object]
) -> None:
    unknown = sorted(k for k in expected if k not in found)
    if unknown:
        log.warning(
            "%s: the %s derivatives' sidecars do not say %s: not checked against the model",
            name,
            modality,
            ", ".join(unknown),
        )
    differing = sorted(k for k in expected if k in found and found[k] != expected[k])
    space = [k for k in differing if k in SPACE_KEYS]
    if space:
        raise InputDataError(
            f"{name} was trained on {modality} derivatives in another space ({', '.join(space)}: "
            f"{expected[space[0]]!r}, here {found.get(space[0])!r}); it applies to derivatives "
            "on its own grid only"
        )
    if differing:
        log.warning(
            "%s was trained on %s derivatives made otherwise (%s differ%s): its "
            "representations of this cohort may suffer from it",
            name,
            modality,
            ", ".join(differing),
            "s" if len(differing) == 1 else "",
        )
