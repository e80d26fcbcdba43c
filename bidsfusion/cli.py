"""The command line: ``bidsfusion BIDS_DIR OUTPUT_DIR {participant,group}`` and subcommands.

This layer only parses (the options are generated from the settings of
:mod:`bidsfusion.config` by :mod:`bidsfusion.options`), builds a
:class:`~bidsfusion.config.RunConfig`, and maps
:class:`~bidsfusion.errors.BidsFusionError` to its exit code with a one-line
message (a traceback only with ``-v``). ``--config FILE.toml`` fills click's
defaults (``ctx.default_map``), so a file's values go through the same types and
checks as command-line values, after a stricter check of their TOML types.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from bidsfusion import __version__, demo
from bidsfusion.errors import BidsFusionError, UsageError
from bidsfusion.levels import run_level
from bidsfusion.options import (
    SEED,
    level_arguments,
    level_config,
    level_options,
    multi_value_flags,
)

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


@cli.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@level_arguments
@level_options
@click.version_option(__version__, "--version", prog_name="bidsfusion")
def run_command(**options: Any) -> None:
    """Run one analysis level on BIDS_DIR, writing derivatives to OUTPUT_DIR.

    participant: raw T1w + resting BOLD -> brain-masked T1 and fALFF in MNI space
    (3 mm, 64^3). group: pretrain encoders on them with the chosen objectives and
    evaluate the frozen representations (hold-out ROC AUC, AD vs HC).
    """
    _configure_logging(options["verbose"])
    with user_errors(options["verbose"]):
        run_level(level_config(click.get_current_context()))


@cli.command("plugins")
@click.option("-v", "--verbose", count=True, help="Tracebacks on errors.")
def plugins_command(verbose: int) -> None:
    """List every plugin, its distribution and what it registers (objective terms with
    their options and defaults)."""
    from bidsfusion.objectives.options import describe_options
    from bidsfusion.plugins import plugin_infos, registered

    with user_errors(verbose):
        objectives = registered("objectives")
        for info in plugin_infos():
            click.echo(f"{info.name}  [{info.distribution}]")
            for kind, names in info.registrations.items():
                click.echo(f"    {kind}: {', '.join(names)}")
                if kind != "objectives":
                    continue
                for name in names:
                    target = objectives[name]
                    shown = f"= {target}" if isinstance(target, str) else describe_options(target)
                    click.echo(f"        {name}: {shown or '(no options)'}")


@cli.command("synth")
@click.argument("out_dir", type=click.Path(path_type=Path, readable=False))
@click.option(
    "--subjects",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Number of subjects.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed.")
@click.option(
    "--sessions",
    type=click.IntRange(1, 3),
    default=3,
    show_default=True,
    help="Maximum sessions per subject (each subject gets 1..K).",
)
@click.option(
    "--volumes",
    type=click.IntRange(min=1),
    default=120,
    show_default=True,
    help="BOLD volumes per run (at least 50: 100 s at TR 2 s, one period of 0.01 Hz).",
)
@click.option(
    "--effect-strength",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Scale of the planted AD effects (0: none; 1: calibrated to be partly separable).",
)
@click.option(
    "--ad-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Fraction of AD subjects (15 % are 'other', the rest HC).",
)
@click.option(
    "--site-confound",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="How strongly the site (A/B scanner) follows the diagnosis: 0 none, 1 fully.",
)
@click.option(
    "--variability",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Scale of the subjects' individual anatomy and function (0: all alike).",
)
@click.option(
    "--coupling",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Extra scale of the factors T1w and fALFF share (grey-matter density, ventricles).",
)
@click.option(
    "--shared-severity",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Strength of a disease severity both modalities show weakly, each with its own "
    "noise (T1w: temporal grey matter; BOLD: angular amplitude): what fusion can find "
    "(0: none).",
)
@click.option("-v", "--verbose", count=True, help="Tracebacks on errors.")
def synth_command(
    out_dir: Path,
    subjects: int,
    seed: int,
    sessions: int,
    volumes: int,
    effect_strength: float,
    ad_fraction: float,
    site_confound: float,
    variability: float,
    coupling: float,
    shared_severity: float,
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
            ad_fraction=ad_fraction,
            site_confound=site_confound,
            variability=variability,
            coupling=coupling,
            shared_severity=shared_severity,
        )
        click.echo(f"wrote {summary.n_subjects} subjects to {summary.out_dir}")


@cli.command(
    "demo",
    help="Synthesise a calibrated dataset in OUT_DIR/bids, run the participant and group "
    f"levels into OUT_DIR/derivatives ({demo.SUMMARY}), and print the path of the HTML "
    "report. Rerunning reuses what is done.",
)
@click.argument("out_dir", type=click.Path(path_type=Path, readable=False))
@click.option(
    "--subjects",
    type=click.IntRange(min=24),
    default=demo.SUBJECTS,
    show_default=True,
    help="Synthetic subjects (one session each, 40 % AD).",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed.")
@click.option(
    "--nprocs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Processes for the participant level.",
)
@click.option("-v", "--verbose", count=True, help="Tracebacks on errors.")
def demo_command(out_dir: Path, subjects: int, seed: int, nprocs: int, verbose: int) -> None:
    _configure_logging(verbose)
    with user_errors(verbose):
        report = demo.run_demo(out_dir, subjects, seed, nprocs)
        click.echo(f"report: {report}")


@cli.command("export-model")
@click.argument("output_dir", type=click.Path(path_type=Path, readable=False))
@click.argument("dest", type=click.Path(path_type=Path, readable=False))
@click.option("--objective", required=True, metavar="SPEC", help="The trained objective spec.")
@click.option(
    "--fold",
    multiple=True,
    type=click.IntRange(min=0),
    metavar="K",
    help="The fold to export (repeatable). With one --fold DEST is the model folder; with "
    "several, or none (every trained fold), one model folder per fold inside DEST.",
)
@click.option("-v", "--verbose", count=True, help="Tracebacks on errors.")
def export_command(
    output_dir: Path, dest: Path, objective: str, fold: tuple[int, ...], verbose: int
) -> None:
    """Copy the model folder of a trained (objective, fold) out of OUTPUT_DIR into DEST, with
    a model card (README.md): weights (safetensors), model.json (everything that built it
    and that using it needs). Load it with bidsfusion.load_model(DEST) or --pretrained."""
    from bidsfusion.export import export_models

    _configure_logging(verbose)
    with user_errors(verbose):
        for folder in export_models(output_dir.resolve(), objective, fold, dest.resolve()):
            click.echo(f"exported {folder}")


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
    several = multi_value_flags()
    for arg in argv:
        if arg.startswith("-"):
            current = arg if arg in several else None
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
