"""What every group analysis is handed: :class:`AnalysisContext`.

An analysis is any ``callable(context) -> None`` registered through the
``register_analyses`` hook (built-in ones the same way); it reads what it needs
from the context and writes its outputs under ``context.layout`` atomically
(:func:`bidsfusion.atomic.atomic_path`), overwriting only its own files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bidsfusion.config import RunConfig
from bidsfusion.data.folds import fold_tensors
from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.normalize import PairedVolumes
from bidsfusion.data.splits import Splits
from bidsfusion.data.transforms import HistogramLandmarks
from bidsfusion.evaluate.logreg import EvaluationRow, load_representations
from bidsfusion.layout import GroupLayout
from bidsfusion.models.folder import ModelRecord, load_model_folder, read_record
from bidsfusion.models.multimodal import MultimodalModel


@dataclass(frozen=True)
class AnalysisContext:
    """One group run's results, as analyses see them.

    ``config``: the run's configuration (its sections); ``layout``: where the group files
    are (read the trained folds, write under it); ``inputs``: the derivatives used, their
    pairs and every subject's group; ``splits``: the hold-out and CV folds; ``specs``: the
    objective specs analysed (``Random`` included when trained); ``evaluation``: the rows
    of ``group/evaluation.tsv`` (empty without a hold-out); ``device``: where models run.
    """

    config: RunConfig
    layout: GroupLayout
    inputs: GroupInputs
    splits: Splits
    specs: tuple[str, ...]
    evaluation: tuple[EvaluationRow, ...]
    device: torch.device
    _tensors: dict[tuple[int, tuple[tuple[float, ...], ...]], PairedVolumes] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def group_dir(self) -> Path:
        """``OUTPUT_DIR/group``."""
        return self.layout.root

    @property
    def output_dir(self) -> Path:
        """OUTPUT_DIR."""
        return self.config.output_dir

    @property
    def work_dir(self) -> Path:
        """The work directory (``-w``)."""
        return self.config.work

    @property
    def positive(self) -> str:
        """The positive class (``--positive``, e.g. AD)."""
        return self.config.data.positive

    @property
    def negative(self) -> str:
        """The negative class (``--negative``, e.g. HC)."""
        return self.config.data.negative

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.config.execution.seed

    @property
    def input_size(self) -> int:
        """The side of the volumes the models see (64, 32 or 16)."""
        return self.config.model.input_size

    @property
    def folds(self) -> range:
        """The fold indices."""
        return range(self.splits.n_folds)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The fused modalities, in the model's order."""
        return tuple(self.inputs.caches)

    @property
    def evaluated_subjects(self) -> tuple[str, ...]:
        """The evaluated subjects (one pair each), in the order of :meth:`volumes`."""
        return tuple(p.subject for p in self.inputs.pairs if p.evaluation)

    @property
    def labels(self) -> dict[str, int]:
        """Every subject's label: 1 ``--positive``, 0 ``--negative``, -1 any other group."""
        return self.inputs.labels(self.positive, self.negative)

    def representations(self, spec: str, fold: int) -> dict[str, np.ndarray]:
        """The fold's ``representations.npz``: ``subject``, ``group``, ``label``, ``role``
        and ``z_<modality>`` ``[n, latent]`` per modality, one row per evaluated subject."""
        return load_representations(self.layout.fold(spec, fold).representations)

    def record(self, spec: str, fold: int) -> ModelRecord:
        """What built the model of ``(spec, fold)``: its model folder's ``model.json``."""
        return read_record(self.layout.fold(spec, fold).path)

    def model(self, spec: str, fold: int) -> MultimodalModel:
        """The model of ``(spec, fold)`` from its model folder alone (``Random``: its untrained
        initialisation), on ``device``, frozen (eval mode, no parameter gradients: an input
        gradient then costs half as much)."""
        _, model = load_model_folder(self.layout.fold(spec, fold).path)
        return model.to(self.device).eval().requires_grad_(False)

    def volumes(self, spec: str, fold: int) -> PairedVolumes:
        """Every evaluated subject's volumes (one pair each), normalised as the model of
        ``(spec, fold)`` sees them (with the landmarks its model folder records), on
        ``device``."""
        record = self.record(spec, fold)
        key = (fold, tuple(m.landmarks for m in record.modalities))
        if key not in self._tensors:
            self._tensors.clear()  # one set of volumes at a time
            landmarks = {m: HistogramLandmarks(v) for m, v in record.landmarks().items()}
            self._tensors[key] = fold_tensors(
                self.inputs,
                self.splits.folds[fold],
                self.splits.holdout,
                self.labels,
                self.device,
                landmarks,
            ).evaluation
        return self._tensors[key]


Analysis = Callable[[AnalysisContext], None]
"""What ``register_analyses`` registers: a callable that writes its results under
``context.layout``."""
