"""``--config FILE.toml``: a file's settings become click's defaults, checked like CLI values.

Keys are setting names or long flags (``-`` or ``_``), at the top of the file or in their
section's table (``[train] epochs = 5``), as ``group/config.toml`` writes them (its
``[record]`` table, the paths and versions of the run, is not read). Each value is first held to
the TOML types its option takes (no ``true`` or ``1.5`` for an integer, no number
for a string), then to the option's own click type, range, choices and callback.
Any failure is one line naming the file, the key, the value and what was
expected (exit 64), raised while the command line is parsed, before any work.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bidsfusion.config import RECORD, SECTION_OF, SECTIONS
from bidsfusion.errors import InputMissingError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_config_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Eager ``--config`` callback: the file's checked values become click's defaults."""
    if path is not None:
        ctx.default_map = {**(ctx.default_map or {}), **_config_defaults(ctx, path)}


def _config_defaults(ctx: click.Context, path: Path) -> dict[str, Any]:
    """The settings of the TOML file ``path`` by option name, each checked like a CLI value."""
    options = _options_by_key(ctx.command)
    settings = list(_settings(read_toml(path), options, path))
    unknown = sorted(key for key, _ in settings if _key(key) not in options)
    if unknown:
        raise UsageError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            "see 'bidsfusion run --help' for the options"
        )
    defaults: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in settings:
        option = options[_key(key)]
        name = str(option.name)
        if name in keys:
            raise UsageError(
                f"config file {path}: {keys[name]} and {key} both set {option.opts[0]}"
            )
        keys[name] = key
        defaults[name] = _config_value(ctx, option, value, f"config file {path}: {key}")
    return defaults


def _settings(
    document: dict[str, Any], options: dict[str, click.Option], path: Path
) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of every setting of a config file: the top-level keys and those of
    the section tables (``[train] epochs = 5``, named as in the key); ``[record]`` left out."""
    for key, value in document.items():
        if key == RECORD:
            continue
        if key not in SECTIONS or not isinstance(value, dict):
            yield key, value
            continue
        for inner, setting in value.items():
            option = options.get(_key(inner))
            if option is not None and SECTION_OF.get(str(option.name)) != key:
                raise UsageError(
                    f"config file {path}: [{key}] {inner}: {inner} is a setting of "
                    f"[{SECTION_OF.get(str(option.name))}]; move it there or to the top"
                )
            yield f"{key}.{inner}" if option is None else inner, setting


def read_toml(path: Path) -> dict[str, Any]:
    """The top-level table of a TOML file; raises InputMissingError (66) or UsageError (64)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputMissingError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputMissingError(f"config file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc


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
    if option.name == "objective_option" and isinstance(value, dict):
        value = _assignments(value, where)
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


def _assignments(table: dict[str, Any], where: str) -> list[str]:
    """``[objective-option.CCA] ridge = 1e-3`` -> ``["CCA.ridge=0.001"]``: the table's
    values as the command line writes them; the group level checks them against the
    terms' factories."""
    if not all(isinstance(options, dict) for options in table.values()):
        raise UsageError(f"{where}: expected one table per term, e.g. [{where.split()[-1]}.CCA]")
    return [
        f"{term}.{key}={str(value).lower() if isinstance(value, bool) else value}"
        for term, options in table.items()
        for key, value in options.items()
    ]


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
        bounds.append(f"{'>' if getattr(param_type, 'min_open', False) else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if getattr(param_type, 'max_open', False) else '<='} {high}")
    return " " + " and ".join(bounds) if bounds else ""


def _shown(value: Any) -> str:
    """``value`` as one line, booleans as TOML writes them."""
    return str(value).lower() if isinstance(value, bool) else repr(value)
