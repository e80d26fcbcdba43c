"""User-settable keyword options of objective terms (``--objective-option TERM.KEY=VALUE``).

A term's options are the keyword-only parameters of its factory (``heads`` aside),
with their annotations and defaults: ``clip: float = 20.0``. Values given as text
(the command line, or a TOML config, whose values are written as text too) are
converted with the annotation (``int``, ``float``, ``bool``, ``str`` or a
``Literal`` of strings); an unknown term or key, or a value of the wrong type, is
a UsageError (exit 64) listing what is valid. A factory checks the range of its
own values with :func:`require_at_least`.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bidsfusion.errors import UsageError

NOT_OPTIONS = ("modalities", "dims", "heads")
"""Factory parameters the group level fills itself."""
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")
KINDS = {int: "an integer", float: "a finite number", bool: "true or false", str: "text"}


def factory_options(factory: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """The options of an objective factory: name -> (annotation, default), in order."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):
        hints = {}
    options = {}
    for name, parameter in inspect.signature(factory).parameters.items():
        if name in NOT_OPTIONS or parameter.kind in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
        ):
            continue
        default = None if parameter.default is parameter.empty else parameter.default
        options[name] = (hints.get(name, type(default) if default is not None else str), default)
    return options


def with_defaults(
    terms: Iterable[str], options: Mapping[str, Mapping[str, Any]], registry: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every option of each term: its factory's defaults updated with ``options[term]``
    (what a fold's resume key records, so that a changed default retrains)."""
    return {
        term: {
            **{name: default for name, (_, default) in factory_options(registry[term]).items()},
            **options.get(term, {}),
        }
        for term in terms
    }


def describe_options(factory: Callable[..., Any]) -> str:
    """``clip=20.0, penalty_weight=0.04`` (empty when the factory has none)."""
    return ", ".join(
        f"{name}={default!r}" for name, (_, default) in factory_options(factory).items()
    )


def parse_assignment(text: str) -> tuple[str, str, str]:
    """``"CCA.ridge=1e-3"`` -> ``("CCA", "ridge", "1e-3")``; malformed text: UsageError."""
    target, sep, value = text.partition("=")
    term, dot, key = target.strip().partition(".")
    if not (sep and dot and term and key.strip() and value.strip()):
        raise UsageError(
            f"--objective-option {text!r}: expected TERM.KEY=VALUE, e.g. CCA.ridge=1e-3"
        )
    return term, key.strip(), value.strip()


def term_options(
    assignments: Iterable[str], terms: Iterable[str], registry: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Checked options by term, for the ``terms`` of the requested specs.

    Raises UsageError for a term not among ``terms``, a key the term's factory
    does not take, or a value its annotation does not accept.
    """
    used = sorted(set(terms))
    options: dict[str, dict[str, Any]] = {}
    for text in assignments:
        term, key, value = parse_assignment(text)
        if term not in used:
            raise UsageError(
                f"--objective-option {text}: term {term!r} is not in the requested objectives; "
                f"their terms: {', '.join(used)}"
            )
        known = factory_options(registry[term])
        if key not in known:
            listed = describe_options(registry[term]) or "none"
            raise UsageError(
                f"--objective-option {text}: {term} has no option {key!r}; its options: {listed}"
            )
        options.setdefault(term, {})[key] = convert(
            value, known[key][0], f"--objective-option {text}"
        )
    return options


def convert(text: str, annotation: Any, where: str) -> Any:
    """``text`` as the type ``annotation`` names; UsageError naming ``where`` otherwise."""
    choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
    try:
        if choices:
            if text not in choices:
                raise ValueError
            return text
        if annotation is bool:
            if text.lower() not in TRUE + FALSE:
                raise ValueError
            return text.lower() in TRUE
        if annotation is int:
            return int(text)
        if annotation is float:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError
            return number
    except ValueError:
        expected = f"one of {', '.join(map(str, choices))}" if choices else KINDS[annotation]
        raise UsageError(f"{where}: {text!r} is not {expected}") from None
    return text


def require_at_least(
    term: str, name: str, value: float, low: float, *, strict: bool = False
) -> None:
    """UsageError (exit 64) naming ``term.name`` unless ``value`` is finite and ``>= low``
    (``> low`` when ``strict``)."""
    if not (math.isfinite(value) and (value > low if strict else value >= low)):
        bound = f"{'>' if strict else '>='} {low:g}"
        raise UsageError(f"objective option {term}.{name} must be {bound}, got {value!r}")
