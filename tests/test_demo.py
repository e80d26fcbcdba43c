"""``bidsfusion demo``: the steps it runs, their validated options, reuse and refusal.

The demo itself takes minutes (its time is in the README); these tests replace the two
analysis levels by a recorder, so they check everything the demo decides: the dataset it
synthesises, the configurations the levels receive (parsed by the real command line) and
what a rerun does with an existing OUT_DIR.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bidsfusion import levels as app_levels
from bidsfusion.synth import dataset


@pytest.fixture
def levels(monkeypatch: pytest.MonkeyPatch) -> list:
    """The configurations ``run_level`` receives; the synthesis records its arguments and
    writes only dataset_description.json (``make_dataset`` has tests of its own)."""
    received: list = []
    monkeypatch.setattr(app_levels, "run_level", received.append)

    def make_dataset(out_dir: Path, **settings: object) -> None:
        received.append(settings)
        out_dir.mkdir(parents=True)
        entry = dataset.generator_entry(dataset.synth_settings(**settings))
        description = {"Name": "fake", "GeneratedBy": [entry]}
        (out_dir / "dataset_description.json").write_text(json.dumps(description))

    monkeypatch.setattr(dataset, "make_dataset", make_dataset)
    return received


def test_demo_synthesises_and_runs_both_levels(run_cli, tmp_path: Path, levels: list) -> None:
    out = tmp_path / "demo"
    result = run_cli("demo", out, "--subjects", 24, "--seed", 3, "--nprocs", 1)
    assert result.code == 0, result.err
    assert result.out.strip() == f"report: {out / 'derivatives' / 'group' / 'report.html'}"
    synthesised, participant, group = levels
    assert synthesised == {
        "n_subjects": 24,
        "seed": 3,
        "n_volumes": 60,
        "max_sessions": 1,
        "ad_fraction": 0.4,
        "coupling": 3.0,
        "effect_strength": 3.0,
    }
    assert participant.analysis_level == "participant"
    assert group.analysis_level == "group"
    for config in (participant, group):
        assert config.bids_dir == out / "bids"
        assert config.output_dir == out / "derivatives"
        assert config.execution.seed == 3
        assert config.execution.nprocs == 1
    assert list(group.objectives.objective) == ["Random", "S", "L-CL"]
    assert (group.model.input_size, group.model.latent_dim) == (16, 16)
    assert (group.data.folds, group.data.holdout) == (3, 0.5)
    assert (group.train.epochs, group.train.max_lr) == (150, 0.002)
    assert all(f"step {k}/3" in result.err for k in (1, 2, 3))


def test_demo_rerun_reuses_its_dataset(run_cli, tmp_path: Path, levels: list) -> None:
    out = tmp_path / "demo"
    assert run_cli("demo", out, "--subjects", 24).code == 0
    again = run_cli("demo", out, "--subjects", 24)
    assert again.code == 0, again.err
    assert "reusing" in again.err
    assert [type(step).__name__ for step in levels] == ["dict", *["RunConfig"] * 4]


@pytest.mark.parametrize("change", ["subjects", "foreign"])
def test_demo_refuses_another_dataset(
    run_cli, tmp_path: Path, levels: list, tiny_bids: Path, change: str
) -> None:
    out = tmp_path / "demo"
    if change == "subjects":
        assert run_cli("demo", out, "--subjects", 24).code == 0
    else:
        out.mkdir()
        tiny_bids.rename(out / "bids")
    before = json.loads((out / "bids" / "dataset_description.json").read_text())
    result = run_cli("demo", out, "--subjects", 30)
    assert result.code == 73
    assert str(out / "bids") in result.err and "another OUT_DIR" in result.err
    assert [line for line in result.err.splitlines() if "error" in line] == [
        result.err.splitlines()[-1]
    ]
    assert json.loads((out / "bids" / "dataset_description.json").read_text()) == before


def test_demo_rejects_too_few_subjects(run_cli, tmp_path: Path) -> None:
    result = run_cli("demo", tmp_path / "demo", "--subjects", 5)
    assert result.code == 64
    assert "--subjects" in result.err
    assert not (tmp_path / "demo").exists()


def test_demo_into_a_file_is_73_naming_it(run_cli, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    target.write_text("notes")
    result = run_cli("demo", target)
    assert result.code == 73
    assert f"OUT_DIR {target} is a file, not a folder" in result.err
    assert target.read_text() == "notes"
