"""The command line: ``bidsfusion BIDS_DIR OUTPUT_DIR {participant,group}`` and subcommands.

This layer only parses, builds a :class:`~bidsfusion.config.RunConfig`, and maps
:class:`~bidsfusion.errors.BidsFusionError` to its exit code with a one-line
message (a traceback only with ``-v``). ``--config FILE.toml`` fills click's
defaults (``ctx.default_map``), so a file's values go through the same types and
checks as command-line values, after a stricter check of their TOML types.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from bidsfusion import __version__
from bidsfusion.errors import BidsFusionError, UsageError

LEVELS = ("participant", "group")
MULTI_VALUE_OPTIONS = {
    "--participant-label",
    "--participant_label",
    "--session-label",
    "--session_label",
    "--objective",
}
USAGE_EXIT = 64


class BidsAppGroup(click.Group):
    """A group whose default command is the BIDS App itself (``run``)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("bidsfusion", "BIDS_DIR OUTPUT_DIR {participant,group} [OPTIONS]")
        formatter.write_usage("bidsfusion", "COMMAND [ARGS]...", prefix="   or: ")


@click.group(cls=BidsAppGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bidsfusion")
def cli() -> None:
    """bidsfusion: self-supervised multimodal (T1w + fALFF) representations, as a BIDS App.

    Run ``bidsfusion run --help`` (or ``bidsfusion BIDS_DIR OUTPUT_DIR LEVEL --help``)
    for the options of the two analysis levels.
    """


def _level_options(fn: Any) -> Any:
    options = [
        click.option(
            "--participant-label",
            "--participant_label",
            "participant_label",
            multiple=True,
            metavar="LABEL...",
            help="Subjects to process (01 or sub-01); several allowed. Default: all.",
        ),
        click.option(
            "--session-label",
            "--session_label",
            "session_label",
            multiple=True,
            metavar="LABEL...",
            help="Sessions to process (01 or ses-01).",
        ),
        click.option(
            "--skip-bids-validation",
            "--skip_bids_validation",
            "skip_bids_validation",
            is_flag=True,
            default=None,
            help="Do not check file names against BIDS.",
        ),
        click.option(
            "-w",
            "--work-dir",
            type=click.Path(path_type=Path),
            help="Intermediate files (nipype cache, volume cache); never inside BIDS_DIR.",
        ),
        click.option(
            "--nprocs",
            "--n_cpus",
            "nprocs",
            type=click.IntRange(min=1),
            help="Processes for nipype MultiProc and data loading.",
        ),
        click.option(
            "--omp-nthreads",
            type=click.IntRange(min=1),
            help="Threads per process (SimpleITK, numpy; torch at the group level). "
            "Default: 1 at the participant level, --nprocs at the group level.",
        ),
        click.option(
            "--mem",
            "mem_gb",
            type=Memory(),
            metavar="GB",
            help="Memory limit for nipype scheduling, e.g. 8 or 8GB.",
        ),
        click.option("--seed", type=int, help="Seed for every random choice (recorded)."),
        click.option(
            "--config",
            type=click.Path(path_type=Path),
            is_eager=True,
            expose_value=False,
            callback=_load_config,
            help="TOML file with default settings (option names as keys); "
            "command-line options override it.",
        ),
        click.option(
            "-v", "--verbose", count=True, help="More log output; with -v, tracebacks on errors."
        ),
        click.option("--task", help="[participant] BOLD task label to use. Default: rest."),
        click.option(
            "--falff-band",
            type=Band(),
            metavar="LOW HIGH",
            help="[participant] fALFF band in Hz, 0 < LOW < HIGH. Default: 0.01 0.1.",
        ),
        click.option(
            "--skull-strip",
            type=click.Choice(["template", "none"]),
            help="[participant] 'template' brain mask, or 'none' for inputs "
            "already skull-stripped.",
        ),
        click.option(
            "--backend",
            help="[participant] preprocessing backend (see "
            "'bidsfusion plugins'). Default: simpleitk.",
        ),
        click.option(
            "--nipype-plugin",
            help="[participant] nipype execution plugin (MultiProc, Linear, SLURM, SGE, ...).",
        ),
        click.option(
            "--nipype-plugin-args",
            type=click.Path(path_type=Path),
            help="[participant] YAML file of arguments for --nipype-plugin.",
        ),
        click.option(
            "--objective",
            multiple=True,
            metavar="SPEC...",
            help="[group] objective spec(s), e.g. L-CL S-AE, or all-dim.",
        ),
        click.option("--encoder", help="[group] encoder name. Default: dcgan."),
        click.option(
            "--latent-dim", type=click.IntRange(min=1), help="[group] latent size. Default: 64."
        ),
        click.option("--epochs", type=click.IntRange(min=1), help="[group] Default: 200."),
        click.option("--batch-size", type=click.IntRange(min=2), help="[group] Default: 64."),
        click.option(
            "--input-size",
            type=IntChoice([64, 32, 16]),
            help="[group] volume size the model sees. Default: 64 (the paper).",
        ),
        click.option("--folds", type=click.IntRange(min=2), help="[group] CV folds. Default: 5."),
        click.option(
            "--holdout",
            type=Holdout(),
            metavar="N",
            help="[group] hold-out subjects: 0 for none, a fraction in (0, 1), "
            "or a whole count >= 1. Default: 0.15.",
        ),
        click.option(
            "--include-flagged",
            is_flag=True,
            default=None,
            help="[group] also train on scans whose registration QC flagged them",
        ),
        click.option(
            "--label-column",
            help="[group] participants.tsv column with the group. Default: diagnosis.",
        ),
        click.option("--positive", help="[group] positive class value. Default: AD."),
        click.option("--negative", help="[group] negative class value. Default: HC."),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            help="[group] training device. Default: auto.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


class Holdout(click.ParamType):
    """``--holdout``: 0 (none), a fraction in (0, 1), or a whole count >= 1.

    Converts to an ``int`` for 0 and counts, a ``float`` for fractions.
    """

    name = "holdout"
    rule = "0 (none), a fraction in (0, 1), or a whole count >= 1"
    toml_kinds = (int, float)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = _finite_number(value)
        if number is None or number < 0 or (number >= 1 and not number.is_integer()):
            self.fail(f"{value!r}: expected {self.rule}", param, ctx)
        return int(number) if number.is_integer() else number


class Band(click.Tuple):
    """``--falff-band LOW HIGH``: two finite frequencies in Hz with 0 < LOW < HIGH."""

    rule = "two finite numbers LOW HIGH (Hz) with 0 < LOW < HIGH"

    def __init__(self) -> None:
        super().__init__([float, float])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        low, high = super().convert(value, param, ctx)
        if not (math.isfinite(high) and 0 < low < high):
            self.fail(f"{' '.join(map(str, value))}: expected {self.rule}", param, ctx)
        return low, high


class Memory(click.ParamType):
    """``--mem``: a size in GB, as a number or text such as 8, 8GB or 512MB."""

    name = "memory"
    rule = "a memory size such as 8, 8GB or 512MB"
    toml_kinds = (int, float, str)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        size = _gigabytes(value)
        if size is None:
            self.fail(f"{value!r}: expected {self.rule}", param, ctx)
        return size


class IntChoice(click.Choice):
    """One of a few integers, as a TOML integer or its command-line text."""

    toml_kinds = (int, str)

    def __init__(self, choices: Sequence[int]) -> None:
        super().__init__([str(choice) for choice in choices])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return int(super().convert(str(value), param, ctx))


def _gigabytes(value: Any) -> float | None:
    """A memory size in GB from a number (GB) or text such as 8GB or 512MB, else None."""
    if not isinstance(value, str):
        number = _finite_number(value)
        return number if number is not None and number >= 0 else None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(g|gb|m|mb)?\s*", value, re.IGNORECASE)
    if not match:
        return None
    amount, unit = float(match.group(1)), (match.group(2) or "g").lower()
    return amount / 1024 if unit.startswith("m") else amount


def _finite_number(value: Any) -> float | None:
    """``value`` (a number or its text) as a finite float, else None; booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _load_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Eager ``--config`` callback: the file's checked values become click's defaults."""
    if path is not None:
        ctx.default_map = {**(ctx.default_map or {}), **_config_defaults(ctx, path)}


def _config_defaults(ctx: click.Context, path: Path) -> dict[str, Any]:
    """The settings of the TOML file ``path`` by option name, each checked like a CLI value."""
    from bidsfusion.config import read_toml

    settings = read_toml(path)
    options = _options_by_key(ctx.command)
    unknown = sorted(key for key in settings if _key(key) not in options)
    if unknown:
        raise UsageError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            "see 'bidsfusion run --help' for the options"
        )
    defaults: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in settings.items():
        option = options[_key(key)]
        name = str(option.name)
        if name in keys:
            raise UsageError(
                f"config file {path}: {keys[name]} and {key} both set {option.opts[0]}"
            )
        keys[name] = key
        defaults[name] = _config_value(ctx, option, value, f"config file {path}: {key}")
    return defaults


def _options_by_key(command: click.Command) -> dict[str, click.Option]:
    """Each option by every key a config file may name it with: its name and long flags."""
    options: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.expose_value:
            names = [str(param.name), *(flag for flag in param.opts if flag.startswith("--"))]
            options.update({_key(name): param for name in names})
    return options


def _key(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


def _config_value(ctx: click.Context, option: click.Option, value: Any, where: str) -> Any:
    """``value`` ready for ``ctx.default_map``; raises UsageError (64) unless the option takes it.

    Stricter than click about TOML types (no ``true`` or ``1.5`` for an integer),
    then the option's own type, range, choices and callback.
    """
    problem = UsageError(f"{where} = {_shown(value)}: expected {_expected(option)}")
    if option.multiple and isinstance(value, str):
        value = [value]
    if not _fits_toml(option, value):
        raise problem
    try:
        checked = option.type_cast_value(ctx, value)
        if option.callback is not None:
            option.callback(ctx, option, checked)
    except click.UsageError:
        raise problem from None
    return value


def _fits_toml(option: click.Option, value: Any) -> bool:
    """Whether ``value`` has the TOML type(s) ``option`` takes."""
    if option.multiple:
        return isinstance(value, list) and all(_is_kind(v, _toml_kinds(option.type)) for v in value)
    if isinstance(option.type, click.Tuple):
        types = option.type.types
        return (
            isinstance(value, list)
            and len(value) == len(types)
            and all(_is_kind(v, _toml_kinds(t)) for v, t in zip(value, types, strict=True))
        )
    return _is_kind(value, _toml_kinds(option.type))


def _is_kind(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def _toml_kinds(param_type: click.ParamType) -> tuple[type, ...]:
    """The Python types of the TOML values a click type accepts."""
    kinds = getattr(param_type, "toml_kinds", None)
    if kinds is not None:
        return kinds
    if isinstance(param_type, click.types.BoolParamType):
        return (bool,)
    if isinstance(param_type, click.types.IntParamType):
        return (int,)
    if isinstance(param_type, click.types.FloatParamType):
        return (int, float)
    return (str,)


def _expected(option: click.Option) -> str:
    """What ``option`` takes, e.g. ``an integer >= 1``."""
    one = _describe(option.type)
    return f"{one}, or a list of such values" if option.multiple else one


def _describe(param_type: click.ParamType) -> str:
    rule = getattr(param_type, "rule", None)
    if rule is not None:
        return rule
    if isinstance(param_type, click.types.BoolParamType):
        return "true or false"
    if isinstance(param_type, click.Choice):
        return f"one of {', '.join(map(str, param_type.choices))}"
    if isinstance(param_type, click.types.IntParamType):
        return "an integer" + _bounds(param_type)
    if isinstance(param_type, click.types.FloatParamType):
        return "a number" + _bounds(param_type)
    if isinstance(param_type, click.Path):
        return "a path"
    return "a string"


def _bounds(param_type: click.ParamType) -> str:
    """A range type's bounds, e.g. `` >= 1``; empty for a plain number type."""
    low, high = getattr(param_type, "min", None), getattr(param_type, "max", None)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if param_type.min_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if param_type.max_open else '<='} {high}")
    return " " + " and ".join(bounds) if bounds else ""


def _shown(value: Any) -> str:
    """``value`` as one line, booleans as TOML writes them."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


@cli.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bids_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.argument("analysis_level", metavar="{participant,group}")
@_level_options
@click.version_option(__version__, "--version", prog_name="bidsfusion")
def run_command(**options: Any) -> None:
    """Run one analysis level on BIDS_DIR, writing derivatives to OUTPUT_DIR.

    participant: raw T1w + resting BOLD -> brain-masked T1 and fALFF in MNI space
    (3 mm, 64^3). group: pretrain encoders on them with the chosen objectives.
    """
    from bidsfusion.config import make_config

    _configure_logging(options["verbose"])
    with user_errors(options["verbose"]):
        config = make_config(options)
        run_level(config)


def run_level(config: Any) -> None:
    """Dispatch a validated configuration to its analysis level (exit 17 if unknown)."""
    from bidsfusion.errors import AnalysisLevelError

    if config.analysis_level == "participant":
        from bidsfusion import participant

        participant.run(config)
    elif config.analysis_level == "group":
        from bidsfusion import group

        group.run(config)
    else:
        raise AnalysisLevelError(
            f"unknown analysis level {config.analysis_level!r}; choose one of: {', '.join(LEVELS)}"
        )


@cli.command("plugins")
@click.option("-v", "--verbose", count=True, help="Tracebacks on errors.")
def plugins_command(verbose: int) -> None:
    """List every plugin, its distribution and what it registers."""
    from bidsfusion.plugins import plugin_infos

    with user_errors(verbose):
        for info in plugin_infos():
            click.echo(f"{info.name}  [{info.distribution}]")
            for kind, names in info.registrations.items():
                click.echo(f"    {kind}: {', '.join(names)}")


@cli.command("synth")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--subjects",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Number of subjects.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--sessions",
    type=click.IntRange(1, 3),
    default=3,
    show_default=True,
    help="Maximum sessions per subject (each subject gets 1..K).",
)
@click.option(
    "--volumes",
    type=click.IntRange(min=16),
    default=120,
    show_default=True,
    help="BOLD volumes per run.",
)
@click.option(
    "--effect-strength",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Scale of the planted AD effects (0: none).",
)
@click.option("-v", "--verbose", count=True, help="Tracebacks on errors.")
def synth_command(
    out_dir: Path,
    subjects: int,
    seed: int,
    sessions: int,
    volumes: int,
    effect_strength: float,
    verbose: int,
) -> None:
    """Write a synthetic BIDS dataset (real NIfTI content, planted AD effects) to OUT_DIR."""
    from bidsfusion.synth.dataset import make_dataset

    _configure_logging(verbose)
    with user_errors(verbose):
        summary = make_dataset(
            out_dir,
            n_subjects=subjects,
            seed=seed,
            max_sessions=sessions,
            effect_strength=effect_strength,
            n_volumes=volumes,
        )
        click.echo(f"wrote {summary.n_subjects} subjects to {summary.out_dir}")


@contextlib.contextmanager
def user_errors(verbose: int) -> Iterator[None]:
    """Turn errors into one stderr line and the matching exit code (traceback with -v)."""
    try:
        yield
    except BidsFusionError as exc:
        _fail(f"bidsfusion: error: {exc}", exc.exit_code, verbose)
    except KeyboardInterrupt:
        _fail("bidsfusion: interrupted", 130, verbose)
    except Exception as exc:
        advice = "see the traceback above" if verbose else "run with -v for the traceback"
        _fail(
            f"bidsfusion: internal error: {type(exc).__name__}: {exc} ({advice} and report it)",
            1,
            verbose,
        )


def _fail(message: str, code: int, verbose: int) -> None:
    if verbose:
        traceback.print_exc()
    click.echo(message.replace("\n", " "), err=True)
    sys.exit(code)


def _configure_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s [%(name)s] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("bidsschematools").setLevel(logging.WARNING)


def expand_multi_values(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--opt a b`` as ``--opt a --opt b`` for the several-value options."""
    out: list[str] = []
    current: str | None = None
    for arg in argv:
        if arg.startswith("-"):
            current = arg if arg in MULTI_VALUE_OPTIONS else None
            out.append(arg)
        elif current and out[-1] != current:
            out += [current, arg]
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; exits with the BIDS-Apps exit code."""
    args = expand_multi_values(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=args, prog_name="bidsfusion", standalone_mode=False)
    except BidsFusionError as exc:  # raised while parsing, by --config
        _fail(f"bidsfusion: error: {exc}", exc.exit_code, verbose=0)
    except click.UsageError as exc:
        exc.show()
        code = USAGE_EXIT
    except click.ClickException as exc:
        exc.show()
        code = UsageError.exit_code
    except click.Abort:
        click.echo("bidsfusion: aborted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
