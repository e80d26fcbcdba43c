"""Objective specs: parse ``"L-CL-CS-S"`` or ``"DCCAE"`` and build the summed objective.

A registry maps a term name to its factory or an alias to another spec (a
string), e.g. ``register("DCCAE", "AE-CCA")``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
from torch import Tensor, nn

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.base import Heads, Objective, ObjectiveFactory

DIM_TERMS = ("L", "CL", "CS", "S")
"""The DIM edges in canonical spec order."""

Registry = Mapping[str, ObjectiveFactory | str]
"""Term name -> factory, or alias -> spec."""


def parse_spec(spec: str, registry: Registry) -> list[str]:
    """Term names of ``spec``: split on ``-``, aliases expanded.

    Raises UsageError (one line) on an unknown or empty term (listing the
    registered names), an alias cycle, a term given twice (also via an alias), or
    a standalone term with others: a factory whose ``standalone`` attribute is
    true (a ClassVar, e.g. ``MMVAE``, which owns its own posterior and decoders)
    composes with nothing.
    """
    names = _expand(spec, registry, ())
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        terms = ", ".join(map(repr, dict.fromkeys(repeated)))
        raise UsageError(
            f"objective {spec!r} has the term(s) {terms} more than once "
            "(aliases expanded); give each term once"
        )
    alone = [name for name in names if getattr(registry[name], "standalone", False)]
    if alone and len(names) > 1:
        raise UsageError(
            f"objective {spec!r} combines {alone[0]!r} with other terms; {alone[0]} "
            "is a standalone objective: give it alone (as its own --objective)"
        )
    return names


def _expand(spec: str, registry: Registry, seen: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for part in spec.split("-"):
        if part not in registry:
            known = ", ".join(sorted(registry))
            raise UsageError(f"unknown objective term {part!r} in {spec!r}; registered: {known}")
        target = registry[part]
        if not isinstance(target, str):
            names.append(part)
        elif part in seen:
            raise UsageError(f"objective alias {part!r} refers to itself via {' -> '.join(seen)}")
        else:
            names += _expand(target, registry, (*seen, part))
    return names


def expand_all_dim() -> list[str]:
    """The 15 non-empty combinations of L, CL, CS, S as specs, e.g. ``"L-CL-CS-S"``."""
    return [
        "-".join(terms)
        for size in range(1, len(DIM_TERMS) + 1)
        for terms in combinations(DIM_TERMS, size)
    ]


class ComposedObjective(Objective):
    """The sum of named terms that share one :class:`Heads`.

    ``forward`` returns every term's values (a term's ``"loss"`` under the term's
    name unless the term reports that name itself; a key already taken becomes
    ``"<term>.<key>"``) and ``"loss"``, the sum of the terms' losses. Every term is
    computed in float32, autocast off, from float32 copies of the encoder outputs
    and inputs: under bf16 autocast the scores, log-sum-exp and losses would be
    rounded to bf16 (a loss near 66 to steps of 0.5).
    """

    def __init__(self, terms: Mapping[str, Objective], heads: Heads) -> None:
        super().__init__()
        self.heads = heads
        self.terms = nn.ModuleDict(terms)

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """Every term's named values and the total ``"loss"``, all float32."""
        outputs = {m: _float32_output(output) for m, output in outputs.items()}
        batch = {k: v.float() if v.is_floating_point() else v for k, v in batch.items()}
        values: dict[str, Tensor] = {}
        total: Tensor | int = 0
        for name, term in self.terms.items():
            with torch.autocast(_device_type(outputs), enabled=False):
                result = {k: v.float() for k, v in term(outputs, batch).items()}
            loss = result.pop("loss")
            total = total + loss
            result.setdefault(name, loss)
            for key, value in result.items():
                values[f"{name}.{key}" if key in values else key] = value
        values["loss"] = total
        return values

    def pair_embeddings(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Every term's pair embeddings as ``"<term>_<a>_<b>"``, float32."""
        outputs = {m: _float32_output(output) for m, output in outputs.items()}
        batch = {k: v.float() if v.is_floating_point() else v for k, v in batch.items()}
        with torch.autocast(_device_type(outputs), enabled=False):
            return {
                f"{name}_{edge}": (x.float(), y.float())
                for name, term in self.terms.items()
                for edge, (x, y) in term.pair_embeddings(outputs, batch).items()
            }


def _float32_output(output: EncoderOutput) -> EncoderOutput:
    return EncoderOutput(output.latent.float(), {k: v.float() for k, v in output.features.items()})


def _device_type(outputs: Mapping[str, EncoderOutput]) -> str:
    return next(iter(outputs.values())).latent.device.type


def build_objective(
    spec: str,
    modalities: Sequence[str],
    dims: Mapping[str, Dims],
    registry: Registry,
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> ComposedObjective:
    """Build every term of ``spec`` (:func:`parse_spec`), see :func:`compose`."""
    return compose(parse_spec(spec, registry), modalities, dims, registry, options)


def compose(
    terms: Sequence[str],
    modalities: Sequence[str],
    dims: Mapping[str, Dims],
    registry: Registry,
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> ComposedObjective:
    """Build every term of ``terms`` as ``registry[name](modalities, dims, **options[name])``.

    ``heads``, one :class:`Heads` built here from ``dims`` and shared by all terms, is
    passed to the factories that take it; ``options`` holds each term's keyword options.
    """
    heads = Heads(dims)
    options = options or {}
    built = {}
    for name in terms:
        factory = registry[name]
        shared = {"heads": heads} if "heads" in inspect.signature(factory).parameters else {}
        built[name] = factory(modalities, dims, **shared, **options.get(name, {}))
    return ComposedObjective(built, heads)
