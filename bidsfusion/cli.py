"""The command line: ``bidsfusion BIDS_DIR OUTPUT_DIR {participant,group}`` and subcommands.

This layer only parses, builds a :class:`~bidsfusion.config.RunConfig`, and maps
:class:`~bidsfusion.errors.BidsFusionError` to its exit code with a one-line
message (a traceback only with ``-v``).
"""

from __future__ import annotations

import contextlib
import logging
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
            help="Threads per process (SimpleITK, torch).",
        ),
        click.option(
            "--mem",
            "mem_gb",
            metavar="GB",
            callback=_parse_memory,
            help="Memory limit for nipype scheduling, e.g. 8 or 8GB.",
        ),
        click.option("--seed", type=int, help="Seed for every random choice (recorded)."),
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path),
            help="TOML file with default settings (option names as keys).",
        ),
        click.option(
            "-v", "--verbose", count=True, help="More log output; with -v, tracebacks on errors."
        ),
        click.option("--task", help="[participant] BOLD task label to use. Default: rest."),
        click.option(
            "--falff-band",
            type=(float, float),
            metavar="LOW HIGH",
            help="[participant] fALFF band in Hz. Default: 0.01 0.1.",
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
            type=click.Choice(["64", "32", "16"]),
            callback=_to_int,
            help="[group] volume size the model sees. Default: 64 (the paper).",
        ),
        click.option("--folds", type=click.IntRange(min=2), help="[group] CV folds. Default: 5."),
        click.option(
            "--holdout",
            type=click.FloatRange(min=0),
            help="[group] hold-out subjects: a count (>= 1), a fraction, or 0 for none. "
            "Default: 0.15.",
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


def _parse_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(g|gb|m|mb)?\s*", value, re.IGNORECASE)
    if not match:
        raise click.BadParameter(f"{value!r} is not a memory size such as 8 or 8GB")
    amount, unit = float(match.group(1)), (match.group(2) or "g").lower()
    return amount / 1024 if unit.startswith("m") else amount


def _to_int(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else int(value)


@cli.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bids_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.argument("analysis_level", metavar="{participant,group}")
@_level_options
@click.version_option(__version__, "--version", prog_name="bidsfusion")
def run_command(config_file: Path | None, **options: Any) -> None:
    """Run one analysis level on BIDS_DIR, writing derivatives to OUTPUT_DIR.

    participant: raw T1w + resting BOLD -> brain-masked T1 and fALFF in MNI space
    (3 mm, 64^3). group: pretrain encoders on them with the chosen objectives.
    """
    from bidsfusion.config import make_config

    _configure_logging(options["verbose"])
    with user_errors(options["verbose"]):
        config = make_config(options, config_file)
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
        _fail(
            f"bidsfusion: internal error: {type(exc).__name__}: {exc} "
            "(run with -v for the traceback and report it)",
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
