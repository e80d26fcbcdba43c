"""Model folders: written and read back from their files alone, and every damaged or foreign
folder refused in one line with its exit code, no pickle ever loaded."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch

from bidsfusion.config import Model
from bidsfusion.errors import InputDataError, InputMissingError, OutputError, UsageError
from bidsfusion.layout import FoldFiles
from bidsfusion.models.folder import (
    FORMAT,
    KIND,
    ModalityRecord,
    ModelRecord,
    load_model_folder,
    read_record,
    write_model_folder,
)
from bidsfusion.models.multimodal import build_model
from bidsfusion.objectives.compose import build_objective
from bidsfusion.plugins import registered

MODALITIES = ("T1w", "falff")


def record() -> ModelRecord:
    """A record of a 16^3 S model with made-up provenance."""
    return ModelRecord(
        format=FORMAT,
        kind=KIND,
        versions={"bidsfusion": "0.1.0", "torch": torch.__version__},
        training_revision=3,
        encoder="dcgan",
        encoder_options={},
        input_size=16,
        latent_dim=8,
        modalities=tuple(
            ModalityRecord(m, "T1w", {"suffix": m}, tuple(float(i) for i in range(13)), {})
            for m in MODALITIES
        ),
        objective="S",
        terms=("S",),
        options={"S": {"clip": 20.0}},
        trains=True,
        training={"epochs": 2},
        data={"fold": 0, "train": ["01"]},
    )


@pytest.fixture
def folder(tmp_path: Path) -> tuple[FoldFiles, dict[str, torch.Tensor]]:
    """A written model folder and the model's states."""
    torch.manual_seed(0)
    model = build_model(Model(input_size=16, latent_dim=8), MODALITIES)
    objective = build_objective("S", MODALITIES, model.dims(8), registered("objectives"))
    files = FoldFiles(tmp_path / "model")
    write_model_folder(files, record(), model, objective)
    return files, model.state_dict()


def test_a_folder_reads_back_from_its_files_alone(folder) -> None:
    files, state = folder
    assert sorted(p.name for p in files.path.iterdir()) == [
        "model.json", "model.safetensors", "objective.safetensors"
    ]  # fmt: skip
    loaded, model = load_model_folder(files.path)
    assert dataclasses.replace(loaded, files={}) == record()
    assert set(loaded.files) == {"model.safetensors", "objective.safetensors"}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert not model.training
    assert loaded.landmarks()["falff"].dtype == torch.float64


def _edit(model_files: FoldFiles, **changes: object) -> None:
    document = json.loads(model_files.metadata.read_text())
    model_files.metadata.write_text(json.dumps({**document, **changes}))


@pytest.mark.parametrize(
    ("damage", "error", "words"),
    [
        (lambda f: f.metadata.unlink(), InputMissingError, "is not a bidsfusion model folder"),
        (lambda f: f.metadata.write_text("{oops"), InputDataError, "is not readable JSON"),
        (lambda f: f.metadata.write_text("[1]"), InputDataError, "is not the model.json"),
        (lambda f: _edit(f, input_size="16"), InputDataError, 'input_size is "16", not int'),
        (lambda f: _edit(f, trains=1), InputDataError, "trains is 1, not bool"),
        (lambda f: _edit(f, latent_dim=True), InputDataError, "latent_dim is true, not int"),
        (lambda f: _edit(f, encoder=None), InputDataError, "encoder is null, not str"),
        (lambda f: _edit(f, terms="S"), InputDataError, 'terms is "S", not tuple'),
        (lambda f: _edit(f, modalities=[{"name": "T1w"}]), InputDataError, "an entry lacks"),
        (lambda f: _edit(f, format=FORMAT + 1), InputDataError, "update bidsfusion"),
        (lambda f: _edit(f, format=0), InputDataError, "export it again with bidsfusion"),
        (lambda f: _edit(f, encoder="nope"), UsageError, "names the encoder 'nope'"),
        (lambda f: f.weights.write_bytes(f.weights.read_bytes()[:-9]), InputDataError,
         "does not match the hash"),
        (lambda f: f.weights.unlink(), InputMissingError, "model.safetensors is missing"),
    ],
)  # fmt: skip
def test_a_damaged_folder_is_refused_in_one_line(folder, damage, error, words) -> None:
    files, _ = folder
    damage(files)
    with pytest.raises(error) as raised:
        load_model_folder(files.path)
    message = str(raised.value)
    assert words in message and "\n" not in message
    assert any(advice in message for advice in ("export", "install", "give a folder", "update"))


def test_wrong_landmarks_are_refused(folder) -> None:
    files, _ = folder
    document = json.loads(files.metadata.read_text())
    document["modalities"][0]["landmarks"] = [1.0, 2.0]
    files.metadata.write_text(json.dumps(document))
    with pytest.raises(InputDataError, match="landmarks are not 13 finite numbers"):
        read_record(files.path)


class _Planted:
    """A pickle that would create a file when loaded."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_a_pickle_in_place_of_the_weights_is_never_loaded(folder, tmp_path) -> None:
    files, _ = folder
    target = tmp_path / "executed"
    files.weights.write_bytes(pickle.dumps(_Planted(target)))
    from bidsfusion.fingerprint import file_sha256

    _edit(files, files={**json.loads(files.metadata.read_text())["files"],
                        "model.safetensors": file_sha256(files.weights)})  # fmt: skip
    with pytest.raises(InputDataError, match="is not a readable safetensors file"):
        load_model_folder(files.path)
    assert not target.exists()


def test_a_missing_folder_and_a_file_are_66(tmp_path) -> None:
    with pytest.raises(InputMissingError, match="does not exist or is not a folder"):
        read_record(tmp_path / "none")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputMissingError, match="does not exist or is not a folder"):
        read_record(tmp_path / "file")


def test_an_interrupted_write_leaves_no_model_json(tmp_path, monkeypatch) -> None:
    import bidsfusion.models.folder as folder_module

    torch.manual_seed(0)
    model = build_model(Model(input_size=16, latent_dim=8), MODALITIES)

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder_module, "save_file", full_disk)
    files = FoldFiles(tmp_path / "model")
    with pytest.raises(OutputError, match="No space left on device"):
        write_model_folder(files, record(), model, torch.nn.Module())
    assert not files.metadata.exists() and not files.weights.exists()


def test_the_run_takes_the_models_settings_unless_a_flag_contradicts_them(tmp_path) -> None:
    from bidsfusion.config import make_config
    from bidsfusion.models.folder import settings_for

    base = {"bids_dir": tmp_path, "output_dir": tmp_path / "out", "analysis_level": "group"}
    where = {tmp_path / "model.json": record()}
    adopted = settings_for(make_config(base), where, "why")
    assert (adopted.model.input_size, adopted.model.latent_dim) == (16, 8)
    assert adopted.data.modality == MODALITIES
    same = settings_for(make_config({**base, "input_size": 16}), where, "why")
    assert same.model.input_size == 16
    with pytest.raises(
        UsageError, match=r"--latent-dim 32 contradicts the models \(.* says 8\): why"
    ):
        settings_for(make_config({**base, "latent_dim": 32}), where, "why")
    alff = dataclasses.replace(record().modalities[0], name="alff")
    foreign = {tmp_path / "model.json": dataclasses.replace(record(), modalities=(alff,))}
    with pytest.raises(UsageError, match="the modality alff, which no installed plugin registers"):
        settings_for(make_config(base), foreign, "why")
