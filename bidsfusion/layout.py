"""Where every file of ``OUTPUT_DIR/group`` lives: the one owner of the group-level layout.

What :func:`bidsfusion.bids.derivative_name` is to the participant outputs, this module is
to the group outputs: every writer and reader asks :class:`GroupLayout` for a path, and
nothing else spells ``objective-<SPEC>/fold-<k>`` (docs/outputs.md lists the files).

A trained (objective spec, fold) lives in ``group/objective-<SPEC>/fold-<k>/``
(:class:`FoldFiles`: ``checkpoint.pt``, ``last.pt``, ``history.tsv``,
``representations.npz``); an analysis writes under ``group/<analysis>/`` and, per
objective, ``group/<analysis>/objective-<SPEC>/``, naming its maps with
:func:`map_name` (``fold-0_desc-T1w_group-AD_saliency.nii.gz``). ``<SPEC>`` may itself
hold ``-`` (``objective-L-CL``): these folders are bidsfusion's own, not BIDS entities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GROUP = "group"
"""The group level's folder inside OUTPUT_DIR."""
_OBJECTIVE = "objective-"
_FOLD = "fold-"


def fold_name(fold: int) -> str:
    """``fold-<k>``: a fold's folder, and the label of its analysis maps and Optuna studies."""
    return f"{_FOLD}{fold}"


def map_name(fold: int, suffix: str, **entities: str | int) -> str:
    """An analysis map's file name, ``fold-<k>_<key>-<value>..._<suffix>``, the entities in the
    order given (``"*"`` values and suffixes make the glob of a family of maps)."""
    parts = [fold_name(fold), *(f"{key}-{value}" for key, value in entities.items())]
    return "_".join([*parts, suffix])


def _fold_of(folder: Path) -> int | None:
    """``k`` of a ``fold-<k>`` folder name, None for any other name."""
    label = folder.name.removeprefix(_FOLD)
    if folder.name == label or not label.isdigit():
        return None
    return int(label)


@dataclass(frozen=True)
class FoldFiles:
    """The files of one trained (objective, fold) in its folder ``path``; the three model
    files (``model.json``, ``model.safetensors``, ``objective.safetensors``) make a model
    folder (:mod:`bidsfusion.models.folder`), alone or beside the training files."""

    path: Path

    @property
    def metadata(self) -> Path:
        """``model.json``: everything that built the model and everything needed to use it."""
        return self.path / "model.json"

    @property
    def weights(self) -> Path:
        """``model.safetensors``: the encoders' states."""
        return self.path / "model.safetensors"

    @property
    def objective_weights(self) -> Path:
        """``objective.safetensors``: the objective's states (heads, decoders)."""
        return self.path / "objective.safetensors"

    @property
    def card(self) -> Path:
        """``README.md``: the model card of an exported model folder."""
        return self.path / "README.md"

    @property
    def checkpoint(self) -> Path:
        """``checkpoint.pt``: the best-validation states (weights only)."""
        return self.path / "checkpoint.pt"

    @property
    def last(self) -> Path:
        """``last.pt``: the state after the last finished epoch, to resume from."""
        return self.path / "last.pt"

    @property
    def history(self) -> Path:
        """``history.tsv``: every term per epoch."""
        return self.path / "history.tsv"

    @property
    def representations(self) -> Path:
        """``representations.npz``: the frozen latents of every evaluation subject."""
        return self.path / "representations.npz"


@dataclass(frozen=True)
class Run:
    """A trained (objective spec, fold) found in a group folder."""

    spec: str
    fold: int
    files: FoldFiles


@dataclass(frozen=True)
class GroupLayout:
    """The files of a group run under ``root`` (``OUTPUT_DIR/group``)."""

    root: Path

    @classmethod
    def of(cls, output_dir: Path) -> GroupLayout:
        """The layout of ``OUTPUT_DIR/group``."""
        return cls(Path(output_dir) / GROUP)

    @property
    def config(self) -> Path:
        """``config.toml``: the effective configuration of the last run that pretrained."""
        return self.root / "config.toml"

    @property
    def pairs(self) -> Path:
        """``pairs.tsv``: one row per pair of the fused modalities' derivatives."""
        return self.root / "pairs.tsv"

    @property
    def splits(self) -> Path:
        """``splits.json``: the hold-out and the folds."""
        return self.root / "splits.json"

    @property
    def training_summary(self) -> Path:
        """``training_summary.tsv``: the learning diagnostics of every trained fold."""
        return self.root / "training_summary.tsv"

    @property
    def evaluation(self) -> Path:
        """``evaluation.tsv``: one row per (objective, modality, fold)."""
        return self.root / "evaluation.tsv"

    @property
    def evaluation_summary(self) -> Path:
        """``evaluation_summary.tsv``: mean +- sd over folds, as the paper's Fig. 2."""
        return self.root / "evaluation_summary.tsv"

    @property
    def similarity(self) -> Path:
        """``similarity.tsv``: the ``similarity`` analysis."""
        return self.root / "similarity.tsv"

    @property
    def confounds(self) -> Path:
        """``confounds.tsv``: the ``confounds`` analysis's probes of nuisance variables."""
        return self.root / "confounds.tsv"

    @property
    def controlled_evaluation(self) -> Path:
        """``controlled_evaluation.tsv``: the hold-out AUCs with the confounds controlled."""
        return self.root / "controlled_evaluation.tsv"

    @property
    def report(self) -> Path:
        """``report.html``."""
        return self.root / "report.html"

    def lock(self, table: Path) -> Path:
        """The hidden lock file that serialises concurrent writers of ``table``."""
        return self.root / f".{table.stem}.lock"

    def objective_dir(self, spec: str) -> Path:
        """``objective-<SPEC>``: every fold of one objective."""
        return self.root / f"{_OBJECTIVE}{spec}"

    def fold(self, spec: str, fold: int) -> FoldFiles:
        """The files of ``(spec, fold)``."""
        return FoldFiles(self.objective_dir(spec) / fold_name(fold))

    def objectives(self) -> list[str]:
        """The specs with an ``objective-<SPEC>`` folder, sorted."""
        return [spec for spec, _ in _objective_folders(self.root)]

    def folds(self, spec: str) -> dict[int, FoldFiles]:
        """Every ``fold-<k>`` folder of ``spec``, by ``k``, in order."""
        found = {}
        folder = self.objective_dir(spec)
        if folder.is_dir():
            for path in folder.iterdir():
                k = _fold_of(path)
                if k is not None and path.is_dir():
                    found[k] = FoldFiles(path)
        return dict(sorted(found.items()))

    def runs(self) -> list[Run]:
        """Every (spec, fold) whose folder holds a file: an empty folder (a run killed
        before the fold's training wrote anything) does not count."""
        return [
            Run(spec, k, files)
            for spec in self.objectives()
            for k, files in self.folds(spec).items()
            if any(files.path.iterdir())
        ]

    def analysis_dir(self, analysis: str) -> Path:
        """``<analysis>/``: the folder of an analysis's files."""
        return self.root / analysis

    def analysis_objective_dir(self, analysis: str, spec: str) -> Path:
        """``<analysis>/objective-<SPEC>/``: an analysis's files of one objective."""
        return self.analysis_dir(analysis) / f"{_OBJECTIVE}{spec}"

    def analysed_objectives(self, analysis: str) -> dict[str, Path]:
        """Each spec with a folder under ``<analysis>/``, and that folder, sorted by spec."""
        return dict(_objective_folders(self.analysis_dir(analysis)))


def _spec_of(folder: Path) -> str | None:
    """``<SPEC>`` of an ``objective-<SPEC>`` folder name, None for any other name."""
    spec = folder.name.removeprefix(_OBJECTIVE)
    return spec if spec != folder.name and spec else None


def _objective_folders(root: Path) -> list[tuple[str, Path]]:
    """``(spec, folder)`` of every ``objective-<SPEC>`` folder directly under ``root``."""
    if not root.is_dir():
        return []
    found = ((_spec_of(path), path) for path in sorted(root.iterdir()) if path.is_dir())
    return [(spec, path) for spec, path in found if spec is not None]
