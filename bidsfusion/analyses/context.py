"""What every group analysis is handed: :class:`AnalysisContext`.

An analysis is any ``callable(context) -> None`` registered through the
``register_analyses`` hook (built-in ones the same way); it reads what it needs
from the context and writes its outputs under ``context.group_dir`` atomically
(:func:`bidsfusion.atomic.atomic_path`), overwriting only its own files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bidsfusion.data.group_inputs import GroupInputs
from bidsfusion.data.normalize import PairedVolumes
from bidsfusion.data.splits import Splits
from bidsfusion.errors import InputDataError
from bidsfusion.evaluate.logreg import EvaluationRow


@dataclass(frozen=True)
class AnalysisContext:
    """One group run's results, as analyses see them.

    ``config``: the run's :class:`~bidsfusion.config.RunConfig` (``positive``,
    ``negative``, ``seed``, ``input_size``, ...); ``inputs``: the derivatives used,
    their pairs and every subject's group; ``splits``: the hold-out and CV folds;
    ``specs``: the objective specs analysed (``Random`` included when trained);
    ``evaluation``: the rows of ``group/evaluation.tsv`` (empty without a hold-out);
    ``device``: where models run.
    """

    config: Any
    group_dir: Path
    inputs: GroupInputs
    splits: Splits
    specs: tuple[str, ...]
    evaluation: tuple[EvaluationRow, ...]
    device: torch.device
    _tensors: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def output_dir(self) -> Path:
        """OUTPUT_DIR."""
        return self.config.output_dir

    @property
    def work_dir(self) -> Path:
        """The work directory (``-w``)."""
        return self.config.work

    @property
    def folds(self) -> range:
        """The fold indices."""
        return range(self.splits.n_folds)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The fused modalities, in the model's order."""
        return tuple(self.inputs.caches)

    @property
    def labels(self) -> dict[str, int]:
        """Every subject's label: 1 ``--positive``, 0 ``--negative``, -1 any other group."""
        from bidsfusion.data.pairs import label_of

        positive, negative = self.config.positive, self.config.negative
        return {s: label_of(g, positive, negative) for s, g in self.inputs.groups.items()}

    def fold_dir(self, spec: str, fold: int) -> Path:
        """``group/objective-<spec>/fold-<fold>``."""
        return self.group_dir / f"objective-{spec}" / f"fold-{fold}"

    def representations(self, spec: str, fold: int) -> dict[str, np.ndarray]:
        """The fold's ``representations.npz``: ``subject``, ``group``, ``label``, ``role``
        and ``z_<modality>`` ``[n, latent]`` per modality, one row per evaluated subject."""
        from bidsfusion.evaluate.logreg import load_representations

        return load_representations(self.fold_dir(spec, fold) / "representations.npz")

    def model(self, spec: str, fold: int) -> torch.nn.Module:
        """The trained model of ``(spec, fold)`` on ``device``, frozen (eval mode, no
        parameter gradients: an input gradient then costs half as much); ``Random``:
        the seeded, untrained initialisation, as it was encoded."""
        from bidsfusion.train.checkpoint import load_checkpoint
        from bidsfusion.train.pretrain import build_model

        torch.manual_seed(self.config.seed)
        model = build_model(self.config, list(self.modalities))
        if spec != "Random":
            path = self.fold_dir(spec, fold) / "checkpoint.pt"
            try:
                model.load_state_dict(load_checkpoint(path)["model"])
            except (KeyError, RuntimeError) as error:
                raise InputDataError(
                    f"{path} does not hold a model of this configuration ({error}); "
                    "retrain it (the group level without --eval-only)"
                ) from error
        return model.to(self.device).eval().requires_grad_(False)

    def volumes(self, fold: int) -> PairedVolumes:
        """Every evaluated subject's volumes (one pair each), normalised exactly as fold
        ``fold``'s model saw them in training, on ``device``."""
        from bidsfusion.train.pretrain import fold_tensors

        if fold not in self._tensors:
            self._tensors.clear()  # one fold's volumes at a time
            self._tensors[fold] = fold_tensors(
                self.config, self.inputs, self.splits.folds[fold], self.splits.holdout, self.device
            ).evaluation
        return self._tensors[fold]
