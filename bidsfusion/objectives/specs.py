"""The objectives a group run pretrains: ``--objective`` and ``--objective-option``, parsed once.

``all-dim`` expands to the 15 DIM combinations and ``paper`` to the paper's whole grid
(Fig. 2: the 15, its baselines and the ``Random`` control). Each spec becomes an
:class:`ObjectiveSpec` that knows its terms, their checked options and whether it trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bidsfusion.errors import UsageError
from bidsfusion.models.base import Dims
from bidsfusion.objectives.compose import (
    ComposedObjective,
    Registry,
    compose,
    expand_all_dim,
    parse_spec,
)
from bidsfusion.objectives.options import term_options, with_defaults
from bidsfusion.objectives.untrained import CONTROL

ALL_DIM = "all-dim"
PAPER = "paper"
PAPER_BASELINES = ("AE", "S-AE", "DCCAE", "L-CCA", "MMVAE", "Supervised")
"""The paper's baselines beside the 15 DIM combinations (Fig. 2)."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective spec of the run: its name (``"L-CL"``), its terms (aliases expanded),
    the options given for them, the same with every default (what a fold's resume key
    records) and whether it trains (False for ``Random``)."""

    name: str
    terms: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]]
    all_options: Mapping[str, Mapping[str, Any]]
    trains: bool

    def build(
        self, modalities: Sequence[str], dims: Mapping[str, Dims], registry: Registry
    ) -> ComposedObjective:
        """The objective with fresh parameters (from torch's global generator)."""
        return compose(self.terms, modalities, dims, registry, self.options)


def objective_specs(
    requested: Sequence[str], assignments: Sequence[str], registry: Registry
) -> list[ObjectiveSpec]:
    """The specs of ``--objective`` (``all-dim`` and ``paper`` expanded, each once) with the
    ``--objective-option`` values of their terms; an unknown or malformed spec, term or
    option: UsageError (64)."""
    if not requested:
        raise UsageError(
            "the group level needs at least one --objective, e.g. --objective L-CL (or all-dim)"
        )
    expansions = {ALL_DIM: expand_all_dim(), PAPER: [*expand_all_dim(), *PAPER_BASELINES, CONTROL]}
    names = list(dict.fromkeys(one for spec in requested for one in expansions.get(spec, [spec])))
    terms = {name: tuple(parse_spec(name, registry)) for name in names}
    options = term_options(assignments, [t for ts in terms.values() for t in ts], registry)
    specs = []
    for name in names:
        used = {t: options[t] for t in terms[name] if t in options}
        trains = all(getattr(registry[t], "trains", True) for t in terms[name])
        specs.append(
            ObjectiveSpec(
                name, terms[name], used, with_defaults(terms[name], used, registry), trains
            )
        )
    return specs
