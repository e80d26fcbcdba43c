"""The run configuration: frozen sections, each setting written once with its default and help.

A :class:`RunConfig` holds the three positional arguments and one section per concern
(fMRIPrep's ``config.py`` does the same): :class:`Execution` (which subjects, where,
how many processes, the seed), :class:`Participant` (preprocessing), :class:`Data`
(what the group level trains and evaluates on), :class:`Model`, :class:`Objectives`,
:class:`Train`, :class:`Evaluate` and :class:`Analyses`. Every field is a
:func:`setting`: its default, its help, the analysis level that reads it and the
constraints of its value live in the field, and the command-line options and their
``Default: ...`` help are generated from them (:mod:`bidsfusion.options`). A stage
takes the sections it reads.

Precedence: built-in defaults < ``--config FILE.toml`` < command-line options (the CLI
merges and checks them, :mod:`bidsfusion.config_file`). Checks that involve several
settings live in each section's ``__post_init__``. The effective configuration is
written by section next to the outputs (:meth:`RunConfig.to_toml`) and can be given
back to ``--config``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from bidsfusion.errors import UsageError
from bidsfusion.modality import BUILTIN_MODALITIES, FALFF_BAND

BOTH, PARTICIPANT, GROUP = "both", "participant", "group"
"""The analysis level(s) that read a setting."""
FLIP_AXES = {"lr": (0,), "all": (0, 1, 2), "none": ()}
"""``--flip-axes`` names -> the volume axes flipped (0: left-right)."""
GRID_MM = 3
"""Voxel size of the participant-level grid, the unit of ``--max-shift``."""
MAX_SHIFT = 48
INPUT_SIZES = (64, 32, 16)
DEVICES = ("auto", "cpu", "cuda")
"""``--device`` values: ``auto`` is CUDA when torch sees a GPU, else the CPU."""
RECORD = "record"
"""The table of a written configuration that holds what is not a setting (paths, versions)."""


def setting(
    default: Any,
    help: str,
    *,
    level: str = GROUP,
    flags: tuple[str, ...] = (),
    shown: str | None = None,
    why: str = "",
    **constraints: Any,
) -> Any:
    """A configuration field: ``default``, one ``help`` sentence, the ``level`` that reads it.

    ``flags``: the option's spellings (default ``--<name>`` with ``-``); ``shown``: the
    default as the help states it (default: the value itself; ``""``: none stated);
    ``why``: a parenthesis after the default; ``constraints``: ``minimum``, ``maximum``,
    ``open_minimum``, ``choices``, ``kind`` (a value type of :mod:`bidsfusion.options`),
    ``metavar`` for the option.
    """
    metadata = {"help": help, "level": level, "flags": flags, "shown": shown, "why": why}
    metadata.update(constraints)
    if isinstance(default, tuple | list | dict):
        frozen = tuple(default)
        return dataclasses.field(default_factory=lambda: frozen, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_learning_rates(lr: float, max_lr: float) -> None:
    """UsageError (64) unless ``0 < lr <= max_lr``, both finite."""
    if not (0 < lr <= max_lr and math.isfinite(max_lr)):
        raise UsageError(f"--lr {lr} and --max-lr {max_lr}: need 0 < lr <= max lr, both finite")


@dataclasses.dataclass(frozen=True)
class Execution:
    """Which subjects, where intermediate files go, how the work is spread, the seed."""

    participant_label: tuple[str, ...] = setting(
        (), "Subjects to process (01 or sub-01); several allowed.", level=BOTH,
        flags=("--participant-label", "--participant_label"), shown="all", metavar="LABEL...",
    )  # fmt: skip
    session_label: tuple[str, ...] = setting(
        (), "Sessions to process (01 or ses-01).", level=BOTH,
        flags=("--session-label", "--session_label"), shown="all", metavar="LABEL...",
    )  # fmt: skip
    skip_bids_validation: bool = setting(
        False, "Do not check file names against BIDS.", level=BOTH,
        flags=("--skip-bids-validation", "--skip_bids_validation"),
    )  # fmt: skip
    work_dir: Path | None = setting(
        None, "Intermediate files (nipype cache, volume cache); never inside BIDS_DIR.",
        level=BOTH, flags=("-w", "--work-dir"), shown="OUTPUT_DIR/.bidsfusion-work",
    )  # fmt: skip
    nprocs: int = setting(
        max(1, os.cpu_count() or 1), "Processes for nipype MultiProc and data loading.",
        level=BOTH, flags=("--nprocs", "--n_cpus"), shown="the CPUs of this machine", minimum=1,
    )  # fmt: skip
    omp_nthreads: int | None = setting(
        None, "Threads per process (SimpleITK, numpy; torch at the group level).", level=BOTH,
        shown="1 at the participant level, --nprocs at the group level", minimum=1,
    )  # fmt: skip
    mem_gb: float | None = setting(
        None, "Memory limit for nipype scheduling, e.g. 8 or 8GB.", level=PARTICIPANT,
        flags=("--mem",), shown="no limit", kind="memory", metavar="GB",
    )  # fmt: skip
    seed: int = setting(
        0, "Seed for every random choice (recorded), 0 to 2^32 - 1.", level=BOTH, kind="seed"
    )
    verbose: int = setting(
        0, "More log output (every training epoch); with -v, tracebacks on errors.", level=BOTH,
        flags=("-v", "--verbose"), shown="", kind="count",
    )  # fmt: skip
    device: str = setting("auto", "Device of training and analyses.", choices=DEVICES)
    fold: tuple[int, ...] = setting(
        (), "Train and evaluate only fold K (0-based; repeatable), e.g. one fold per cluster "
        "job; the analyses then wait for a run without --fold.", shown="every fold",
        minimum=0, metavar="K...",
    )  # fmt: skip
    eval_only: bool = setting(False, "Evaluate existing representations without training.")
    dist_timeout: float = setting(
        30.0, "Under torchrun, how long a process waits for the others before failing (a "
        "dead process ends the run instead of hanging it).", minimum=0, open_minimum=True,
        metavar="MINUTES",
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Participant:
    """How the participant level preprocesses each scan."""

    task: str = setting("rest", "BOLD task label to use.", level=PARTICIPANT)
    falff_band: tuple[float, float] = setting(
        FALFF_BAND, "fALFF band in Hz, 0 < LOW < HIGH.", level=PARTICIPANT, kind="band",
        metavar="LOW HIGH",
    )  # fmt: skip
    skull_strip: str = setting(
        "template", "'template' brain mask, or 'none' for inputs already skull-stripped.",
        level=PARTICIPANT, choices=("template", "none"),
    )  # fmt: skip
    backend: str = setting(
        "simpleitk", "Preprocessing backend (see 'bidsfusion plugins').", level=PARTICIPANT
    )
    nipype_plugin: str = setting(
        "MultiProc", "nipype execution plugin (MultiProc, Linear, SLURM, SGE, ...).",
        level=PARTICIPANT,
    )  # fmt: skip
    nipype_plugin_args: Path | None = setting(
        None, "YAML file of arguments for --nipype-plugin.", level=PARTICIPANT, shown=""
    )


@dataclasses.dataclass(frozen=True)
class Data:
    """What the group level learns from: the fused modalities, the labels, the splits."""

    modality: tuple[str, ...] = setting(
        BUILTIN_MODALITIES, "Registered modalities to fuse, at least two (repeatable; see "
        "'bidsfusion plugins').", metavar="NAME...",
    )  # fmt: skip
    include_flagged: bool = setting(
        False, "Also train on scans whose registration QC flagged them."
    )
    label_column: str = setting("diagnosis", "participants.tsv column with the group.")
    positive: str = setting("AD", "Positive class value.")
    negative: str = setting("HC", "Negative class value.")
    folds: int = setting(5, "Cross-validation folds.", minimum=2)
    holdout: int | float = setting(
        0.15, "Hold-out subjects: 0 for none, a fraction in (0, 1), or a whole count >= 1.",
        kind="holdout", metavar="N",
    )  # fmt: skip
    """0 (none), a fraction in (0, 1) as a float, or a count >= 1 as an int."""

    def __post_init__(self) -> None:
        if self.positive == self.negative:
            raise UsageError(
                f"--positive and --negative are both {self.positive!r}; the two classes must differ"
            )


@dataclasses.dataclass(frozen=True)
class Model:
    """The encoders: which one, the size of the volumes they see, their latent size."""

    encoder: str = setting("dcgan", "Encoder name (see 'bidsfusion plugins').")
    input_size: int = setting(
        64, "Volume size the model sees.", why="the paper", choices=INPUT_SIZES
    )
    latent_dim: int = setting(64, "Latent size.", minimum=1)


@dataclasses.dataclass(frozen=True)
class Objectives:
    """The objective specs pretrained and the options of their terms."""

    objective: tuple[str, ...] = setting(
        (), "Objective spec(s), e.g. L-CL S-AE; all-dim (the 15 DIM combinations); Random "
        "(untrained encoders, the control); paper (the paper's whole grid with Random).",
        shown="", metavar="SPEC...",
    )  # fmt: skip
    objective_option: tuple[str, ...] = setting(
        (), "An objective term's option, e.g. CCA.ridge=1e-3 (repeatable; 'bidsfusion "
        "plugins' lists each term's options).", shown="", metavar="TERM.KEY=VALUE",
    )  # fmt: skip
    pretrained: tuple[Path, ...] = setting(
        (), "A model folder (bidsfusion export-model) to encode and evaluate this cohort with "
        "instead of training, beside Random (repeatable); its own settings and landmarks are "
        "used.", shown="none", metavar="MODEL_DIR",
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Train:
    """How each (objective, fold) is trained."""

    epochs: int = setting(200, "Training epochs.", minimum=1)
    batch_size: int = setting(64, "Batch size (the global batch under torchrun).", minimum=2)
    lr: float = setting(
        4e-4, "OneCycle's initial learning rate.", why="the paper", minimum=0, open_minimum=True
    )
    max_lr: float = setting(
        5e-4, "OneCycle's peak learning rate, >= --lr.",
        why="the paper's 0.01 makes the DIM terms diverge at the peak", minimum=0,
        open_minimum=True,
    )  # fmt: skip
    paired_augmentation: bool = setting(
        False, "One flip/translation draw for both views of a pair, as the reference "
        "implementation.", shown="one draw per modality",
    )  # fmt: skip
    flip_axes: str = setting(
        "lr", "Random flips: lr (left-right, as torchio), all (the three axes, as the "
        "reference implementation) or none.", choices=tuple(FLIP_AXES),
    )  # fmt: skip
    """``lr``, ``all`` or ``none`` (:data:`FLIP_AXES`)."""
    max_shift: int = setting(
        0, "Largest random translation in mm, a multiple of the grid's 3 mm (the reference "
        "implementation: 12 at 64^3).", why="none: with a translation, L learns the shift "
        "instead of the brain", minimum=0, maximum=MAX_SHIFT, metavar="MM",
    )  # fmt: skip
    sync_bn: bool = setting(
        False, "Under torchrun, batch norms over the global batch (SyncBatchNorm; CUDA only).",
        shown="each process normalises its share of the batch",
    )  # fmt: skip
    channels_last: bool = setting(
        False, "Run the encoders' convolutions in the channels_last_3d memory format (faster "
        "with bf16 on recent GPUs; the same losses to 1e-4).", shown="torch's contiguous format",
    )  # fmt: skip
    compile: bool = setting(
        False, "Compile the training step with torch.compile (the first steps wait for the "
        "compilation; the same losses to 1e-4).", shown="eager",
    )  # fmt: skip
    finetune: int = setting(
        0, "Epochs to continue training each --pretrained model on this cohort's folds (with "
        "its own landmarks).", why="none: the models are used as they are", minimum=0,
        metavar="EPOCHS",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_learning_rates(self.lr, self.max_lr)
        if self.flip_axes not in FLIP_AXES:
            raise UsageError(
                f"--flip-axes {self.flip_axes!r}: choose one of {', '.join(FLIP_AXES)}"
            )
        if not 0 <= self.max_shift <= MAX_SHIFT or self.max_shift % GRID_MM:
            raise UsageError(
                f"--max-shift {self.max_shift}: give a multiple of {GRID_MM} mm (the grid's "
                f"voxel) between 0 and {MAX_SHIFT}"
            )

    @property
    def crop_pad(self) -> int:
        """``max_shift`` in voxels of the 3 mm grid."""
        return self.max_shift // GRID_MM

    @property
    def flipped_axes(self) -> tuple[int, ...]:
        """The volume axes of ``flip_axes``."""
        return FLIP_AXES[self.flip_axes]


@dataclasses.dataclass(frozen=True)
class Evaluate:
    """The linear evaluation of the frozen representations."""

    n_trials: int = setting(
        500, "Optuna trials per (objective, modality, fold) evaluation.", why="the paper",
        minimum=1,
    )  # fmt: skip
    tuning: str = setting(
        "cv", "How the classifier's C and penalty are chosen: validation (the trials "
        "scored on each fold's validation subjects, the classifier fit on its train subjects: "
        "the reference code) or cv (scored by an inner stratified 5-fold CV of train and "
        "validation, the classifier fit on both: the paper's text).", choices=("validation", "cv"),
    )  # fmt: skip
    optuna_storage: str | None = setting(
        None, "Optuna RDB URL shared by evaluation jobs (sqlite:///..., postgresql://...).",
        shown="a journal file WORK_DIR/optuna.journal", metavar="URL",
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Analyses:
    """The group analyses run after the evaluation."""

    analysis: tuple[str, ...] = setting(
        (), "Analyses to run after the evaluation (registered names, see 'bidsfusion "
        "plugins'); none to skip them.", shown="all", metavar="NAME...",
    )  # fmt: skip
    """Analyses to run (empty: all registered; ``("none",)``: none)."""
    confound: tuple[str, ...] = setting(
        (), "A participants.tsv column the confounds analysis probes (repeatable); none for "
        "no column. The scanner (sidecars) and the QC's motion and tSNR are probed too.",
        shown="those of age, sex, site present", metavar="COLUMN...",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for option, values in (("--analysis", self.analysis), ("--confound", self.confound)):
            if "none" in values and len(values) > 1:
                raise UsageError(f"{option} {' '.join(values)}: give none alone, or names")


SECTIONS: dict[str, type] = {
    "execution": Execution,
    "participant": Participant,
    "data": Data,
    "model": Model,
    "objectives": Objectives,
    "train": Train,
    "evaluate": Evaluate,
    "analyses": Analyses,
}
"""Section name -> its dataclass, in the order of the help and of a written configuration."""
LEVEL_SECTIONS = {
    "participant": ("execution", "participant"),
    "group": ("execution", "data", "model", "objectives", "train", "evaluate", "analyses"),
}
"""The sections a level's written configuration holds."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one ``bidsfusion`` run needs: the positional arguments (absolute paths)
    and one frozen section per concern."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    execution: Execution = dataclasses.field(default_factory=Execution)
    participant: Participant = dataclasses.field(default_factory=Participant)
    data: Data = dataclasses.field(default_factory=Data)
    model: Model = dataclasses.field(default_factory=Model)
    objectives: Objectives = dataclasses.field(default_factory=Objectives)
    train: Train = dataclasses.field(default_factory=Train)
    evaluate: Evaluate = dataclasses.field(default_factory=Evaluate)
    analyses: Analyses = dataclasses.field(default_factory=Analyses)
    explicit: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)
    """The settings the user gave (command line or ``--config``), not defaults."""

    @property
    def work(self) -> Path:
        """The work directory: ``--work-dir``, else the hidden ``OUTPUT_DIR/.bidsfusion-work``."""
        return self.execution.work_dir or self.output_dir / ".bidsfusion-work"

    def to_toml(self, record: Mapping[str, Any] | None = None) -> str:
        """The configuration as TOML: a ``[record]`` table (the positional arguments and
        ``record``), then the sections of its analysis level, ``None`` values omitted.
        ``--config`` reads it back (the record aside)."""
        document: dict[str, Any] = {
            RECORD: {
                "bids_dir": str(self.bids_dir),
                "output_dir": str(self.output_dir),
                "analysis_level": self.analysis_level,
                **(record or {}),
            }
        }
        for name in LEVEL_SECTIONS.get(self.analysis_level, tuple(SECTIONS)):
            values = dataclasses.asdict(getattr(self, name))
            document[name] = {k: _to_toml_value(v) for k, v in values.items() if v is not None}
        return tomli_w.dumps(document)


def fields() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """``(section name, field)`` of every setting, in section order."""
    for name, section in SECTIONS.items():
        for field in dataclasses.fields(section):
            yield name, field


SECTION_OF = {field.name: name for name, field in fields()}
"""Setting name -> the name of its section."""


def _to_toml_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_to_toml_value(v) for v in value]
    return value


def make_config(options: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from flat values by setting name (the CLI's); ``None`` and ``()`` mean
    "not given" (the default). The three positional arguments are required."""
    given = {k: v for k, v in options.items() if v is not None and v != ()}
    unknown = sorted(set(given) - set(SECTION_OF) - {"bids_dir", "output_dir", "analysis_level"})
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)}")
    by_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in given.items():
        if key in SECTION_OF:
            by_section[SECTION_OF[key]][key] = _coerce(SECTIONS[SECTION_OF[key]], key, value)
    try:
        return RunConfig(
            bids_dir=_path(given["bids_dir"]),
            output_dir=_path(given["output_dir"]),
            analysis_level=str(given["analysis_level"]),
            **{name: SECTIONS[name](**values) for name, values in by_section.items()},
            explicit=frozenset(k for k in given if k in SECTION_OF),
        )
    except KeyError as missing:
        raise UsageError(f"incomplete configuration: no {missing}") from None


def _path(value: Any) -> Path:
    return Path(value).expanduser().absolute()


def _coerce(section: type, name: str, value: Any) -> Any:
    """``value`` as the setting's type: paths absolute, lists (and one value) as tuples."""
    kind = str(typing.get_type_hints(section)[name])
    if kind.startswith("tuple"):
        values = tuple(value) if isinstance(value, list | tuple) else (value,)
        return tuple(_path(v) for v in values) if "Path" in kind else values
    if "Path" in kind:
        return _path(value)
    return value
