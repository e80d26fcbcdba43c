"""The BIDS-App command line: exit codes, messages, entry points (all through the real CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bidsfusion import __version__
from bidsfusion.cli import expand_multi_values


def test_version(run_cli):
    result = run_cli("--version")
    assert result.code == 0
    assert __version__ in result.out


def test_python_dash_m_matches_console_script(tmp_path):
    env = {**os.environ, "BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD": "1"}
    module = subprocess.run(
        [
            sys.executable,
            "-m",
            "bidsfusion",
            str(tmp_path / "none"),
            str(tmp_path / "out"),
            "participant",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert module.returncode == 66
    assert "does not exist" in module.stderr
    assert "Traceback" not in module.stderr


def test_missing_bids_dir_is_66(run_cli, tmp_path):
    result = run_cli(tmp_path / "nope", tmp_path / "out", "participant")
    assert result.code == 66
    assert str(tmp_path / "nope") in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_missing_dataset_description_is_66_naming_it(run_cli, tiny_bids, tmp_path):
    (tiny_bids / "dataset_description.json").unlink()
    result = run_cli(tiny_bids, tmp_path / "out", "participant")
    assert result.code == 66
    assert str(tiny_bids / "dataset_description.json") in result.err


def test_unknown_analysis_level_is_17(run_cli, tiny_bids, tmp_path):
    result = run_cli(tiny_bids, tmp_path / "out", "session")
    assert result.code == 17
    assert "'session'" in result.err


@pytest.mark.parametrize("relative", [".", "sub-01", "code/out", "derivatives"])
def test_output_inside_bids_dir_is_64(run_cli, tiny_bids, relative):
    result = run_cli(tiny_bids, tiny_bids / relative, "participant")
    assert result.code == 64
    assert "OUTPUT_DIR" in result.err


def test_output_under_derivatives_is_allowed(run_cli, tiny_bids):
    out = tiny_bids / "derivatives" / "bidsfusion"
    result = run_cli(tiny_bids, out, "participant", "--participant-label", "09")
    assert result.code == 18, result.err


def test_work_dir_inside_bids_dir_is_64(run_cli, tiny_bids, tmp_path):
    result = run_cli(tiny_bids, tmp_path / "out", "participant", "-w", tiny_bids / "work")
    assert result.code == 64
    assert "--work-dir" in result.err


def test_unknown_participant_is_18_and_lists_known(run_cli, tiny_bids, tmp_path):
    result = run_cli(
        tiny_bids, tmp_path / "out", "participant", "--participant-label", "01", "sub-07"
    )
    assert result.code == 18
    assert "07" in result.err and "01, 02" in result.err


@pytest.mark.parametrize("label", ["../x", "a/b", "sub-0 1"])
def test_path_like_label_is_64(run_cli, tiny_bids, tmp_path, label):
    result = run_cli(tiny_bids, tmp_path / "out", "participant", "--participant-label", label)
    assert result.code == 64
    assert repr(label) in result.err


def test_uncreatable_output_is_73(run_cli, tiny_bids, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli(tiny_bids, blocker / "out", "participant", "--skip-bids-validation")
    assert result.code == 73
    assert str(blocker / "out") in result.err


def test_invalid_bids_names_are_16_unless_skipped(run_cli, tiny_bids, tmp_path):
    (tiny_bids / "sub-01" / "anat" / "notbids.nii.gz").write_bytes(b"x")
    result = run_cli(tiny_bids, tmp_path / "out", "participant")
    assert result.code == 16
    assert "notbids.nii.gz" in result.err
    skipped = run_cli(
        tiny_bids,
        tmp_path / "out",
        "participant",
        "--skip-bids-validation",
        "--participant-label",
        "99",
    )
    assert skipped.code == 18


def test_click_usage_errors_are_64(run_cli, tiny_bids, tmp_path):
    assert run_cli(tiny_bids, tmp_path / "out", "participant", "--bogus").code == 64
    assert run_cli(tiny_bids).code == 64


def test_traceback_only_with_verbose(run_cli, tmp_path):
    quiet = run_cli(tmp_path / "none", tmp_path / "o", "participant")
    loud = run_cli(tmp_path / "none", tmp_path / "o", "participant", "-v")
    assert "Traceback" not in quiet.err
    assert "Traceback" in loud.err
    assert quiet.code == loud.code == 66


def test_config_file_values_and_errors(run_cli, tiny_bids, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('participant-label = ["07"]\n')
    assert run_cli(tiny_bids, tmp_path / "out", "participant", "--config", config).code == 18
    config.write_text("no_such_setting = 1\n")
    bad = run_cli(tiny_bids, tmp_path / "out", "participant", "--config", config)
    assert bad.code == 64 and "no_such_setting" in bad.err


def test_multi_value_options_expand():
    argv = ["b", "o", "participant", "--participant-label", "01", "sub-02", "-v"]
    assert expand_multi_values(argv) == [
        "b",
        "o",
        "participant",
        "--participant-label",
        "01",
        "--participant-label",
        "sub-02",
        "-v",
    ]


def test_help_lists_levels_and_subcommands(run_cli):
    result = run_cli("--help")
    assert result.code == 0
    assert "{participant,group}" in result.out
    for command in ("plugins", "synth"):
        assert command in result.out


@pytest.mark.parametrize("value", ["lots", "0", "0MB", "-5GB"])
def test_bad_memory_is_64_naming_it(run_cli, tiny_bids, tmp_path, value):
    bad = run_cli(tiny_bids, Path(tmp_path / "out"), "participant", "--mem", value)
    assert bad.code == 64
    assert f"'--mem': {value!r}: expected a memory size above 0" in bad.err


@pytest.fixture
def recorded(monkeypatch) -> list:
    """The RunConfig of each CLI call, recorded instead of running a level."""
    configs: list = []
    monkeypatch.setattr("bidsfusion.cli.run_level", configs.append)
    return configs


@pytest.mark.parametrize("value", ["inf", "nan", "1.5", "-1", "abc"])
def test_bad_holdout_is_64_naming_value_and_rule(run_cli, tiny_bids, tmp_path, value):
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--holdout", value)
    assert result.code == 64
    assert (
        f"'{value}': expected 0 (none), a fraction in (0, 1), or a whole count >= 1" in result.err
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0), ("0.0", 0), ("3", 3), ("3.0", 3), ("0.25", 0.25)]
)
def test_holdout_is_an_int_count_or_a_float_fraction(run_cli, recorded, tmp_path, value, expected):
    assert run_cli(tmp_path, tmp_path / "out", "group", "--holdout", value).code == 0
    holdout = recorded[0].data.holdout
    assert holdout == expected and type(holdout) is type(expected)


@pytest.mark.parametrize(
    "band", [("0.1", "0.01"), ("-0.01", "0.1"), ("0", "0.1"), ("0.1", "0.1"), ("0.01", "inf")]
)
def test_bad_falff_band_is_64_naming_values(run_cli, tiny_bids, tmp_path, band):
    result = run_cli(tiny_bids, tmp_path / "out", "participant", "--falff-band", *band)
    assert result.code == 64
    assert (
        f"{band[0]} {band[1]}: expected two finite numbers LOW HIGH (Hz) with 0 < LOW < HIGH"
        in (result.err)
    )
    assert not (tmp_path / "out").exists()


def test_same_positive_and_negative_is_64(run_cli, tiny_bids, tmp_path):
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--positive", "MCI", "--negative", "MCI")
    assert result.code == 64
    assert result.err == (
        "bidsfusion: error: --positive and --negative are both 'MCI'; the two classes must differ\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("spec", "term"), [("L-L", "'L'"), ("DCCAE-AE", "'AE'")])
def test_repeated_objective_term_is_64(run_cli, tiny_bids, tmp_path, spec, term):
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--objective", spec)
    assert result.code == 64
    assert f"objective {spec!r} has the term(s) {term} more than once" in result.err
    assert not (tmp_path / "out").exists()


def test_include_flagged_and_omp_nthreads_defaults(run_cli, recorded, tmp_path):
    run_cli(tmp_path, tmp_path / "out", "group")
    run_cli(tmp_path, tmp_path / "out", "group", "--include-flagged", "--omp-nthreads", "4")
    found = [(c.data.include_flagged, c.execution.omp_nthreads) for c in recorded]
    assert found == [(False, None), (True, 4)]
    help_text = " ".join(run_cli("run", "--help").out.split())
    assert "[group] Also train on scans whose registration QC flagged them" in help_text
    assert (
        "Threads per process (SimpleITK, numpy; torch at the group level). "
        "Default: 1 at the participant level, --nprocs at the group level." in help_text
    )


def test_input_size_is_an_int(run_cli, recorded, tmp_path):
    assert run_cli(tmp_path, tmp_path / "out", "group", "--input-size", "32").code == 0
    assert recorded[0].model.input_size == 32
    assert run_cli(tmp_path, tmp_path / "out", "group", "--input-size", "17").code == 64


@pytest.mark.parametrize(
    ("flags", "advice"),
    [((), "(run with -v for the traceback and report it)"), (("-v",), "(see the traceback above")],
)
def test_internal_error_message(run_cli, monkeypatch, tmp_path, flags, advice):
    def broken(config):
        raise RuntimeError("boom")

    monkeypatch.setattr("bidsfusion.cli.run_level", broken)
    result = run_cli(tmp_path, tmp_path / "out", "participant", *flags)
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("bidsfusion: internal error: RuntimeError: boom " + advice)
    assert last.endswith("report it)")
    assert ("Traceback" in result.err) == bool(flags)
    assert ("run with -v" in result.err) != bool(flags)


def test_unknown_nipype_plugin_is_64_before_any_work(run_cli, tiny_bids, tmp_path):
    result = run_cli(tiny_bids, tmp_path / "out", "participant", "--nipype-plugin", "Nope")
    assert result.code == 64
    assert "Nope" in result.err and "MultiProc" in result.err and "SLURM" in result.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
@pytest.mark.parametrize("command", ["synth", "demo", "group"])
def test_out_of_range_seed_is_64_for_every_command(run_cli, tiny_bids, tmp_path, command, seed):
    where = (
        [tiny_bids, tmp_path / "out", "group"] if command == "group" else [command, tmp_path / "x"]
    )
    result = run_cli(*where, "--seed", seed)
    assert result.code == 64
    assert f"'--seed': {seed} is not in the range 0<=x<=4294967295" in result.err
    assert not (tmp_path / "x").exists() and not (tmp_path / "out").exists()
