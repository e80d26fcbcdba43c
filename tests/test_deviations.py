"""docs/deviations.md has a table row for every setting that changes a result: each
configuration field's flag and each built-in objective term's option."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bidsfusion.config import SECTIONS
from bidsfusion.objectives.options import factory_options
from bidsfusion.plugins import owner, registered

DEVIATIONS = Path(__file__).parents[1] / "docs" / "deviations.md"
NOT_RESULTS = {
    "participant_label": "which subjects run, not how",
    "session_label": "which sessions run, not how",
    "skip_bids_validation": "a check of file names",
    "work_dir": "where intermediate files go",
    "nprocs": "parallelism",
    "omp_nthreads": "parallelism",
    "mem_gb": "scheduling",
    "verbose": "logging",
    "device": "where training runs",
    "fold": "which folds run, each the same as in a whole run",
    "eval_only": "reuses what was trained",
    "dist_timeout": "failure detection under torchrun",
    "nipype_plugin": "scheduling",
    "nipype_plugin_args": "scheduling",
    "optuna_storage": "where Optuna's trials are stored",
    "objective_option": "each term's option has its own row",
    "analysis": "which analyses run, not how",
    "channels_last": "a memory format: the same losses to 1e-4 (test_train)",
    "compile": "a compiled step: the same losses to 1e-4 (test_train)",
}
"""Settings that change no result, with the reason."""


def _table_rows() -> str:
    return "\n".join(
        line for line in DEVIATIONS.read_text(encoding="utf-8").splitlines() if line[:1] == "|"
    )


def _flag(field: dataclasses.Field) -> str:
    flags = [f for f in field.metadata["flags"] if f.startswith("--")]
    return flags[0] if flags else "--" + field.name.replace("_", "-")


def _result_settings() -> list[str]:
    return [
        _flag(field)
        for section in SECTIONS.values()
        for field in dataclasses.fields(section)
        if field.name not in NOT_RESULTS
    ]


def _builtin_term_options() -> list[str]:
    return [
        f"{term}.{option}"
        for term, factory in registered("objectives").items()
        if owner("objectives", term).startswith("bidsfusion.") and callable(factory)
        for option in factory_options(factory)
    ]


@pytest.mark.parametrize("name", _result_settings() + _builtin_term_options())
def test_every_result_setting_has_a_row(name: str) -> None:
    assert f"`{name}" in _table_rows(), f"docs/deviations.md has no row naming `{name}`"


def test_the_exclusions_name_real_settings() -> None:
    fields = {f.name for section in SECTIONS.values() for f in dataclasses.fields(section)}
    assert set(NOT_RESULTS) <= fields


def test_the_check_sees_term_options_and_flags() -> None:
    names = _result_settings() + _builtin_term_options()
    assert {"--max-lr", "--tuning", "--seed", "CCA.norm", "AE.final_activation"} <= set(names)
    assert "--nprocs" not in names and not any(n.startswith(("Barlow.", "VICReg.")) for n in names)
