"""The options of the two analysis levels, generated from the settings of
:mod:`bidsfusion.config`, and the click types that check their values.

``--config FILE.toml`` is an eager option whose values become click's defaults
(:mod:`bidsfusion.config_file`), so a file's values pass the same types, ranges
and callbacks as command-line values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from bidsfusion.config import BOTH, SECTION_OF, SECTIONS, RunConfig, fields, make_config
from bidsfusion.config_file import load_config_file
from bidsfusion.errors import UsageError
from bidsfusion.levels import LEVELS

SEED = click.IntRange(0, 2**32 - 1)
"""Every ``--seed``: what numpy, torch and Optuna all accept."""


CONFIG_OPTION = click.option(
    "--config",
    type=click.Path(path_type=Path, readable=False),
    is_eager=True,
    expose_value=False,
    callback=load_config_file,
    help="TOML file with default settings (setting names as keys, at the top or in their "
    "section's table, as group/config.toml writes them); command-line options override it.",
)
"""``--config FILE.toml``: read before the other options, into click's defaults."""


def level_arguments(fn: Any) -> Any:
    """Decorate a click command with the BIDS App's positional arguments."""
    fn = click.argument("analysis_level", metavar="{participant,group}")(fn)
    fn = click.argument("output_dir", type=click.Path(path_type=Path, readable=False))(fn)
    return click.argument("bids_dir", type=click.Path(path_type=Path, readable=False))(fn)


def level_config(ctx: click.Context) -> RunConfig:
    """The RunConfig of a parsed level command; a setting of the other level given on the
    command line is a UsageError (64) naming it."""
    level = ctx.params["analysis_level"]
    if level in LEVELS:
        check_level(ctx, level)
    return make_config(ctx.params)


def parse_level(args: Sequence[str]) -> RunConfig:
    """The RunConfig of ``BIDS_DIR OUTPUT_DIR LEVEL [OPTIONS]``, parsed and checked exactly
    as the command line is (the demo runs the levels this way)."""
    command = click.command("run")(level_arguments(level_options(lambda **_: None)))
    return level_config(command.make_context("bidsfusion", list(args)))


def level_options(fn: Any) -> Any:
    """Decorate a click command with ``--config`` and an option for every setting of
    :mod:`bidsfusion.config`, in section order."""
    options = [CONFIG_OPTION, *(setting_option(field) for _, field in fields())]
    for option in reversed(options):
        fn = option(fn)
    return fn


def setting_option(field: dataclasses.Field[Any]) -> Any:
    """The click option of one configuration setting: its flags, type, and help with the
    level in brackets and the default (both from the field)."""
    meta = field.metadata
    kwargs: dict[str, Any] = {"help": _help(field), "default": None}
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    hint = _hint(field)
    if meta.get("kind") == "count":
        kwargs.update(count=True, default=0)
    elif hint is bool:
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = _click_type(field, hint)
        kwargs["multiple"] = _repeatable(field)
    return click.option(*_flags(field), field.name, **kwargs)


TUPLE_VALUES = ("falff_band",)
"""Tuple settings given as one option with several values (not a repeatable option)."""


def _flags(field: dataclasses.Field[Any]) -> tuple[str, ...]:
    """A setting's spellings on the command line, ``--<name>`` by default."""
    return field.metadata["flags"] or ("--" + field.name.replace("_", "-"),)


def flag(field: dataclasses.Field[Any]) -> str:
    """A setting's first long flag, the one messages name."""
    return next(f for f in _flags(field) if f.startswith("--"))


def _hint(field: dataclasses.Field[Any]) -> Any:
    """A setting's type, ``None`` taken out of an optional one."""
    hint = typing.get_type_hints(SECTIONS[SECTION_OF[field.name]])[field.name]
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
    return kinds[0] if isinstance(hint, types.UnionType) and len(kinds) == 1 else hint


def _repeatable(field: dataclasses.Field[Any]) -> bool:
    return typing.get_origin(_hint(field)) is tuple and field.name not in TUPLE_VALUES


def _click_type(field: dataclasses.Field[Any], hint: Any) -> click.ParamType | type:
    """The click type of a setting: its ``kind``, else its choices, range or Python type."""
    meta = field.metadata
    kinds = {"seed": SEED, "memory": Memory(), "band": Band(), "holdout": Holdout()}
    if meta.get("kind") in kinds:
        return kinds[meta["kind"]]
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
    if "choices" in meta:
        choices = meta["choices"]
        return IntChoice(choices) if base is int else click.Choice(list(choices))
    if base is int:
        return click.IntRange(min=meta.get("minimum"), max=meta.get("maximum"))
    if base is float:
        return click.FloatRange(min=meta.get("minimum"), min_open=meta.get("open_minimum", False))
    if hint is Path:
        return click.Path(path_type=Path, readable=False)
    return click.STRING


def _help(field: dataclasses.Field[Any]) -> str:
    """``[group] <help> Default: <default> (<why>).``"""
    meta = field.metadata
    level = "" if meta["level"] == BOTH else f"[{meta['level']}] "
    shown = meta["shown"]
    if shown is None:
        shown = "" if field.default is False else _shown(_default(field))
    default = f" Default: {shown}" + (f" ({meta['why']})" if meta["why"] else "") + "."
    return level + meta["help"] + (default if shown else "")


def _default(field: dataclasses.Field[Any]) -> Any:
    """A setting's default value (its factory's value for a tuple)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(_shown, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_level(ctx: click.Context, level: str) -> None:
    """UsageError (64) naming an option given on the command line that ``level`` does not
    read (a ``--config`` file may hold both levels' settings: each level reads its own)."""
    for name, field in fields():
        own = field.metadata["level"]
        source = ctx.get_parameter_source(field.name)
        if own in (BOTH, level) or source is not ParameterSource.COMMANDLINE:
            continue
        raise UsageError(
            f"{flag(field)} is a setting of the {own} level ([{name}]): the {level} level "
            "does not read it; remove it (a --config file may hold both levels' settings)"
        )


def multi_value_flags() -> set[str]:
    """The flags of repeatable settings, which also take several values after one flag."""
    return {spelling for _, field in fields() if _repeatable(field) for spelling in _flags(field)}


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
    rule = "a memory size above 0, such as 8, 8GB or 512MB"
    toml_kinds = (int, float, str)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        size = _gigabytes(value)
        if size is None or size <= 0:
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
