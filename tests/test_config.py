"""``--config FILE.toml`` through click's own checks, and the RunConfig it builds."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bidsfusion.config import make_config
from bidsfusion.errors import UsageError


@pytest.fixture
def recorded(monkeypatch) -> list:
    """The RunConfig of each CLI call, recorded instead of running a level."""
    configs: list = []
    monkeypatch.setattr("bidsfusion.cli.run_level", configs.append)
    return configs


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('epochs = "ten"', "epochs = 'ten': expected an integer >= 1"),
        ("epochs = 1.5", "epochs = 1.5: expected an integer >= 1"),
        ("epochs = true", "epochs = true: expected an integer >= 1"),
        ("objective = 3", "objective = 3: expected a string, or a list of such values"),
        ('seed = "abc"', "seed = 'abc': expected an integer"),
        ('seed = "5"', "seed = '5': expected an integer"),
        ("input_size = 17", "input_size = 17: expected one of 64, 32, 16"),
        ("input-size = 64.0", "input-size = 64.0: expected one of 64, 32, 16"),
        (
            "falff_band = [0.1, 0.01]",
            "falff_band = [0.1, 0.01]: expected two finite numbers LOW HIGH (Hz) "
            "with 0 < LOW < HIGH",
        ),
        (
            "holdout = 1.5",
            "holdout = 1.5: expected 0 (none), a fraction in (0, 1), or a whole count",
        ),
        ("holdout = true", "holdout = true: expected 0 (none), a fraction"),
        ("skull_strip = 1", "skull_strip = 1: expected one of template, none"),
        ("skip-bids-validation = 1", "skip-bids-validation = 1: expected true or false"),
        ("participant_label = [1]", "participant_label = [1]: expected a string, or a list of"),
        ('mem = "lots"', "mem = 'lots': expected a memory size above 0, such as 8, 8GB or 512MB"),
        ("mem = 0", "mem = 0: expected a memory size above 0"),
        ("seed = -5", "seed = -5: expected an integer >= 0 and <= 4294967295"),
        ("no_such_setting = 1", "unknown setting(s) no_such_setting; see 'bidsfusion run --help'"),
        ("nprocs = 2\nn_cpus = 3", "nprocs and n_cpus both set --nprocs"),
        ("epochs: 3", "is not valid TOML"),
    ],
)
def test_bad_config_value_is_64_in_one_line(run_cli, tiny_bids, tmp_path, toml, message):
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--config", config)
    assert result.code == 64
    assert result.err.startswith(f"bidsfusion: error: config file {config}")
    assert message in result.err
    assert len(result.err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_config_file_is_66(run_cli, tiny_bids, tmp_path):
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--config", tmp_path / "none.toml")
    assert result.code == 66
    assert result.err == f"bidsfusion: error: config file {tmp_path / 'none.toml'} does not exist\n"
    assert not (tmp_path / "out").exists()


def test_an_unreadable_config_file_or_bids_dir_is_66_in_one_line(
    run_cli, tiny_bids, tmp_path, monkeypatch
):
    """What a user without read access meets (the tests run as root, whom modes do not
    stop): click's own check would make it a 64 with a usage text."""
    config = tmp_path / "run.toml"
    config.write_text("epochs = 2\n")
    monkeypatch.setattr("os.access", lambda *args, **kwargs: False)
    real_read = Path.read_text

    def refused(self: Path, *args, **kwargs):
        if self == config:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refused)
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--config", config)
    assert result.code == 66 and result.err.count("\n") == 1 and str(config) in result.err
    real_exists = Path.exists

    def unsearchable(self: Path, *args, **kwargs):
        if self.parent == tiny_bids:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", unsearchable)
    result = run_cli(tiny_bids, tmp_path / "out", "participant")
    assert result.code == 66 and result.err.count("\n") == 1
    assert f"BIDS_DIR {tiny_bids} cannot be read (Permission denied)" in result.err


def test_same_positive_and_negative_in_the_file_is_64(run_cli, tiny_bids, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('positive = "HC"\n')
    result = run_cli(tiny_bids, tmp_path / "out", "group", "--config", config)
    assert result.code == 64 and "both 'HC'" in result.err
    assert not (tmp_path / "out").exists()


def test_config_values_reach_the_run_config(run_cli, recorded, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'input_size = 32\nholdout = 3\nobjective = "L-CL"\nmem = "512MB"\n'
        "falff-band = [0.02, 0.08]\ninclude_flagged = true\nn_cpus = 3\n"
    )
    assert run_cli(tmp_path, tmp_path / "out", "group", "--config", config).code == 0
    run = recorded[0]
    assert (run.model.input_size, run.data.holdout, run.objectives.objective) == (32, 3, ("L-CL",))
    assert type(run.data.holdout) is int
    assert (run.execution.mem_gb, run.participant.falff_band) == (0.5, (0.02, 0.08))
    assert (run.data.include_flagged, run.execution.nprocs) == (True, 3)


def test_command_line_wins_over_the_file(run_cli, recorded, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('epochs = 3\nholdout = 0.5\ninput-size = "16"\nobjective = ["L", "S"]\n')
    args = ("--epochs", "5", "--objective", "CL", "--config", config, "--input-size", "64")
    assert run_cli(tmp_path, tmp_path / "out", "group", *args).code == 0
    run = recorded[0]
    assert (run.train.epochs, run.data.holdout, run.model.input_size) == (5, 0.5, 64)
    assert run.objectives.objective == ("CL",)


def test_make_config_takes_given_values_and_defaults(tmp_path):
    config = make_config(
        {
            "bids_dir": tmp_path / "bids",
            "output_dir": "out",
            "analysis_level": "group",
            "epochs": None,
            "objective": (),
            "holdout": 0,
        }
    )
    assert config.output_dir.is_absolute() and config.train.epochs == 200
    assert config.objectives.objective == ()
    assert config.execution.omp_nthreads is None and config.data.include_flagged is False
    saved = tomllib.loads(config.to_toml())
    assert "omp_nthreads" not in saved["execution"] and "participant" not in saved
    assert saved["data"]["holdout"] == 0 and saved["data"]["include_flagged"] is False
    assert saved["record"]["output_dir"] == str(config.output_dir)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.epochs = 1  # type: ignore[misc]


def test_same_positive_and_negative_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="both 'AD'"):
        make_config(
            {
                "bids_dir": tmp_path,
                "output_dir": tmp_path,
                "analysis_level": "group",
                "negative": "AD",
            }
        )


def test_a_peak_learning_rate_below_the_initial_one_is_a_usage_error(tmp_path):
    base = {"bids_dir": tmp_path, "output_dir": tmp_path, "analysis_level": "group"}
    with pytest.raises(UsageError, match=re.escape("--lr 0.01 and --max-lr 0.0005")):
        make_config({**base, "lr": 0.01})
    with pytest.raises(UsageError, match="both finite"):
        make_config({**base, "max_lr": float("inf")})
    paper = make_config({**base, "max_lr": 0.01})
    assert (paper.train.lr, paper.train.max_lr) == (4e-4, 0.01)


def test_augmentation_options_reach_the_training_settings(tmp_path):
    from bidsfusion.train.settings import TrainSettings

    def train_settings(config, device):
        return TrainSettings.of(config.train, config.execution.seed, torch.device(device))

    base = {"bids_dir": tmp_path, "output_dir": tmp_path, "analysis_level": "group"}
    default = train_settings(make_config(base), "cpu")
    assert (default.flip_axes, default.crop_pad) == ((0,), 0)
    paper = make_config({**base, "flip_axes": "all", "max_shift": 6, "paired_augmentation": True})
    settings = train_settings(paper, "cpu")
    assert (settings.flip_axes, settings.crop_pad, settings.paired_augmentation) == (
        (0, 1, 2),
        2,
        True,
    )
    assert train_settings(make_config({**base, "flip_axes": "none"}), "cpu").flip_axes == ()
    for shift in (5, 51, -3):
        with pytest.raises(UsageError, match=f"--max-shift {shift}: give a multiple of 3"):
            make_config({**base, "max_shift": shift})
    with pytest.raises(UsageError, match="--flip-axes 'up'"):
        make_config({**base, "flip_axes": "up"})


def test_augmentation_options_on_the_command_line(run_cli, tmp_path):
    for option in (["--flip-axes", "up"], ["--max-shift", "60"], ["--max-shift", "5"]):
        result = run_cli(tmp_path / "bids", tmp_path / "out", "group", *option)
        assert result.code == 64, result.err
        assert option[0] in result.err


def test_a_setting_of_the_other_level_on_the_command_line_is_64(run_cli, tiny_bids, tmp_path):
    result = run_cli(tiny_bids, tmp_path / "out", "participant", "--epochs", "5")
    assert result.code == 64 and len(result.err.splitlines()) == 1
    assert "--epochs is a setting of the group level ([train])" in result.err
    assert "participant level does not read it" in result.err
    group = run_cli(tiny_bids, tmp_path / "out", "group", "--falff-band", "0.02", "0.08")
    assert group.code == 64 and "--falff-band is a setting of the participant level" in group.err
    assert not (tmp_path / "out").exists()


def test_a_config_file_may_hold_both_levels_settings(run_cli, recorded, tmp_path):
    config = tmp_path / "both.toml"
    config.write_text('[participant]\ntask = "movie"\n[train]\nepochs = 7\n')
    assert run_cli(tmp_path, tmp_path / "out", "participant", "--config", config).code == 0
    assert run_cli(tmp_path, tmp_path / "out", "group", "--config", config).code == 0
    participant, group = recorded
    assert participant.participant.task == group.participant.task == "movie"
    assert group.train.epochs == 7


def test_a_setting_in_another_section_is_64_naming_both(run_cli, tmp_path):
    config = tmp_path / "wrong.toml"
    config.write_text("[model]\nepochs = 7\n")
    result = run_cli(tmp_path, tmp_path / "out", "group", "--config", config)
    assert result.code == 64
    assert "[model] epochs: epochs is a setting of [train]; move it there" in result.err


def test_the_written_configuration_reads_back_as_the_same_run(run_cli, recorded, tmp_path):
    options = ["--objective", "S", "--objective", "L-CL", "--epochs", "9", "--holdout", "0.3",
               "--input-size", "32", "--objective-option", "S.clip=10", "--flip-axes", "all",
               "--seed", "5", "--fold", "1", "-w", tmp_path / "work"]  # fmt: skip
    assert run_cli(tmp_path / "bids", tmp_path / "out", "group", *options).code == 0
    saved = tmp_path / "config.toml"
    saved.write_text(recorded[0].to_toml({"versions": {"bidsfusion": "x"}}))
    assert run_cli(tmp_path / "bids", tmp_path / "out", "group", "--config", saved).code == 0
    first, again = recorded
    assert again == first
    assert again.objectives.objective_option == ("S.clip=10",) and again.execution.fold == (1,)


def test_every_option_states_its_level_and_default_from_its_setting(run_cli):
    from bidsfusion.config import Train

    text = " ".join(run_cli("run", "--help").out.split())
    assert f"[group] Training epochs. Default: {Train().epochs}." in text
    assert "[participant] BOLD task label to use. Default: rest." in text
    assert "[group] Volume size the model sees. Default: 64 (the paper)." in text
