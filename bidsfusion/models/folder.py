"""A model folder: a trained model as a researcher carries it, readable from its files alone.

Three files (named by :class:`~bidsfusion.layout.FoldFiles`):

- ``model.json`` (:class:`ModelRecord`): what built the model and what using it needs:
  the format and versions, the encoder and its options, the input size and latent size,
  the modalities (their derivative entities, the processing that made them, the
  histogram landmarks of the training fold), the objective spec with every term option,
  the training settings and outcome, the data it was trained on (subjects, SHA-256 of
  every derivative), and the SHA-256 of the two weight files;
- ``model.safetensors``: the encoders' states; ``objective.safetensors``: the objective's
  (heads, decoders), for continuing the training.

No pickle: safetensors hold tensors only and model.json is plain JSON, so nothing in a
model folder can execute code. The weights are written first and model.json last, each
under a temporary name, so a folder whose writing was cut off has no model.json (or the
previous one, whose hashes no longer match) and is refused, never half-read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from bidsfusion import __version__
from bidsfusion.atomic import atomic_path, write_text
from bidsfusion.config import Model, RunConfig
from bidsfusion.errors import InputDataError, InputMissingError, UsageError, one_line
from bidsfusion.fingerprint import file_sha256
from bidsfusion.layout import FoldFiles
from bidsfusion.models.multimodal import MultimodalModel, build_model
from bidsfusion.plugins import registered

FORMAT = 1
"""The model folder format this bidsfusion writes and reads."""
KIND = "bidsfusion model"
N_LANDMARKS = 13


@dataclass(frozen=True)
class ModalityRecord:
    """One modality of a model: its name, its source (``T1w``, ``bold``), the entities of
    its derivative, the histogram landmarks its volumes are standardised with (13, of the
    training fold) and the processing that made its derivatives (sidecar values)."""

    name: str
    source: str
    entities: dict[str, str]
    landmarks: tuple[float, ...]
    processing: dict[str, Any]


@dataclass(frozen=True)
class ModelRecord:
    """``model.json``: see the module doc; ``files`` maps each weight file to its SHA-256."""

    format: int
    kind: str
    versions: dict[str, str]
    training_revision: int
    encoder: str
    encoder_options: dict[str, Any]
    input_size: int
    latent_dim: int
    modalities: tuple[ModalityRecord, ...]
    objective: str
    terms: tuple[str, ...]
    options: dict[str, dict[str, Any]]
    trains: bool
    training: dict[str, Any]
    data: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def model_settings(self) -> Model:
        """The :class:`~bidsfusion.config.Model` settings that build this architecture."""
        return Model(encoder=self.encoder, input_size=self.input_size, latent_dim=self.latent_dim)

    @property
    def modality_names(self) -> tuple[str, ...]:
        """The modalities, in the model's order."""
        return tuple(m.name for m in self.modalities)

    def landmarks(self) -> dict[str, Tensor]:
        """Each modality's histogram landmarks, float64 ``[13]``."""
        return {m.name: torch.tensor(m.landmarks, dtype=torch.float64) for m in self.modalities}

    def to_json(self) -> str:
        """The record as indented JSON."""
        return json.dumps(asdict(self), indent=1, sort_keys=False) + "\n"


def write_model_folder(
    files: FoldFiles, record: ModelRecord, model: nn.Module, objective: nn.Module
) -> ModelRecord:
    """Write the weights, then ``model.json`` with their hashes; the record written."""
    files.path.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for path, module in ((files.weights, model), (files.objective_weights, objective)):
        with atomic_path(path) as tmp:
            save_file(_plain_state(module), str(tmp))
        hashes[path.name] = file_sha256(path)
    final = ModelRecord(**{**_fields(record), "files": hashes})
    write_text(files.metadata, final.to_json())
    return final


def _plain_state(module: nn.Module) -> dict[str, Tensor]:
    """A state dict safetensors can hold: every tensor its own contiguous CPU copy (the terms
    of one objective share their heads, which safetensors refuses)."""
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def _fields(record: ModelRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def remedy(folder: Path) -> str:
    """What writes a damaged model folder again: the group level for a fold's folder (it
    keeps its training files), export-model for an exported one."""
    files = FoldFiles(folder)
    if files.last.exists() or files.representations.exists():
        return (
            "the group level without --eval-only writes it again (a trained fold is not retrained)"
        )
    return "export the model again (bidsfusion export-model)"


def read_record(folder: Path) -> ModelRecord:
    """The :class:`ModelRecord` of ``folder``: InputMissingError (66) when it is no model
    folder, InputDataError (65) when model.json is damaged or of another format."""
    files = FoldFiles(Path(folder))
    if not files.path.is_dir():
        raise InputMissingError(f"model folder {files.path} does not exist or is not a folder")
    if not files.metadata.is_file():
        raise InputMissingError(
            f"{files.path} is not a bidsfusion model folder (no {files.metadata.name}): give a "
            "folder that 'bidsfusion export-model' wrote"
        )
    try:
        document = json.loads(files.metadata.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputDataError(
            f"{files.metadata} is not readable JSON ({one_line(error)}): {remedy(files.path)}"
        ) from None
    return _record(document, files.metadata)


def _record(document: Any, path: Path) -> ModelRecord:
    """The record of a parsed model.json, every key's type checked (65 naming the key)."""
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise InputDataError(
            f"{path} is not the model.json of a bidsfusion model folder: {remedy(path.parent)}"
        )
    _check_format(document, path)
    kinds = {f.name: str(f.type) for f in fields(ModelRecord)}
    missing = sorted(set(kinds) - set(document))
    if missing:
        raise InputDataError(f"{path} lacks {', '.join(missing)}: {remedy(path.parent)}")
    for key, kind in kinds.items():
        _check_type(document[key], kind, f"{path}: {key}", path)
    modalities = tuple(_modality(m, path) for m in document["modalities"])
    values = {**document, "modalities": modalities, "terms": tuple(document["terms"])}
    return ModelRecord(**{k: values[k] for k in kinds})


def _check_format(document: dict[str, Any], path: Path) -> None:
    version = document.get("format")
    if version == FORMAT:
        return
    written = (document.get("versions") or {}).get("bidsfusion", "an unknown version")
    advice = (
        "update bidsfusion"
        if isinstance(version, int) and version > FORMAT
        else (f"export it again with bidsfusion {__version__}")
    )
    raise InputDataError(
        f"{path} was written by bidsfusion {written} in model format {version!r}; bidsfusion "
        f"{__version__} reads format {FORMAT}: {advice}"
    )


_TYPES = {"int": int, "str": str, "bool": bool, "dict": dict, "tuple": list}


def _check_type(value: Any, annotation: str, where: str, path: Path) -> None:
    """InputDataError unless ``value`` has the JSON type of ``annotation`` (its first word)."""
    name = annotation.split("[")[0]
    expected = _TYPES.get(name, dict)
    wrong_bool = expected is int and isinstance(value, bool)
    if not isinstance(value, expected) or wrong_bool:
        raise InputDataError(
            f"{where} is {json.dumps(value)[:40]}, not {name}: the model folder was edited "
            f"or damaged; {remedy(path.parent)}"
        )


def _modality(document: Any, path: Path) -> ModalityRecord:
    where = f"{path}: modalities"
    if not isinstance(document, dict):
        raise InputDataError(f"{where}: an entry is not an object: {remedy(path.parent)}")
    kinds = {f.name: str(f.type) for f in fields(ModalityRecord)}
    missing = sorted(set(kinds) - set(document))
    if missing:
        raise InputDataError(f"{where}: an entry lacks {', '.join(missing)}: {remedy(path.parent)}")
    for key, kind in kinds.items():
        _check_type(document[key], kind, f"{where}: {key}", path)
    landmarks = document["landmarks"]
    if len(landmarks) != N_LANDMARKS or not all(_finite(v) for v in landmarks):
        raise InputDataError(
            f"{where}: {document['name']}'s landmarks are not {N_LANDMARKS} finite numbers"
        )
    return ModalityRecord(**{**document, "landmarks": tuple(float(v) for v in landmarks)})


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_weights(files: FoldFiles, record: ModelRecord, path: Path) -> dict[str, Tensor]:
    """The tensors of one weight file of the folder, its SHA-256 checked against model.json
    (65 naming the file when it differs, is truncated or is no safetensors file)."""
    if not path.is_file():
        raise InputMissingError(f"{path} is missing: {remedy(files.path)}")
    expected = record.files.get(path.name)
    if expected is None or file_sha256(path) != expected:
        raise InputDataError(
            f"{path} does not match the hash {files.metadata.name} records for it (altered, "
            f"truncated or from another model): {remedy(files.path)}"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputDataError(
            f"{path} is not a readable safetensors file ({one_line(error)}): {remedy(files.path)}"
        ) from None


def load_model_folder(folder: Path) -> tuple[ModelRecord, MultimodalModel]:
    """The record and the model of a model folder, on the CPU in eval mode, built from the
    record alone (the encoder must be registered: UsageError naming it otherwise)."""
    files = FoldFiles(Path(folder))
    record = read_record(files.path)
    encoders = registered("encoders")
    if record.encoder not in encoders:
        raise UsageError(
            f"{files.metadata} names the encoder {record.encoder!r}, which no installed plugin "
            f"registers (registered: {', '.join(sorted(encoders))}): install its plugin"
        )
    model = build_model(record.model_settings, record.modality_names)
    load_state(model, read_weights(files, record, files.weights), files.weights)
    return record, model.eval()


def load_state(module: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    """``module.load_state_dict(state)``, a mismatch as InputDataError naming ``path``."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise InputDataError(
            f"{path} does not fit the model its model.json describes ({one_line(error)[:200]})"
        ) from None


def settings_for(config: RunConfig, records: Mapping[Path, ModelRecord], why: str) -> RunConfig:
    """``config`` with the model settings and the modalities of the models of ``records``
    (by the path of their model.json), which must agree with each other; a setting the
    user gave that contradicts them is a UsageError (64) naming both values and ``why``
    the models' own apply. No records: ``config`` as it is."""
    if not records:
        return config
    path, record = next(iter(records.items()))
    for other, found in records.items():
        if _fixed_by(found) != _fixed_by(record):
            raise UsageError(
                f"{other} and {path} hold models of other settings or modalities: use them "
                "in separate runs"
            )
    known = registered("modalities")
    missing = [m for m in record.modality_names if m not in known]
    if missing:
        raise UsageError(
            f"{path} is a model of the modality {', '.join(missing)}, which no installed plugin "
            f"registers (registered: {', '.join(sorted(known))}): install its plugin"
        )
    given = {**asdict(config.model), "modality": config.data.modality}
    for name, value in _fixed_by(record).items():
        if name in config.explicit and given[name] != value:
            raise UsageError(
                f"--{name.replace('_', '-')} {_shown(given[name])} contradicts the models "
                f"({path} says {_shown(value)}): {why}; drop the flag"
            )
    data = replace(config.data, modality=record.modality_names)
    return replace(config, model=record.model_settings, data=data)


def _fixed_by(record: ModelRecord) -> dict[str, object]:
    """The settings a model folder fixes: the model section's and the modalities."""
    return {**asdict(record.model_settings), "modality": record.modality_names}


def _shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
