"""The Python API of a trained model: ``bidsfusion.load_model(MODEL_DIR)``.

A model folder (a group run's ``group/objective-<SPEC>/fold-<k>/``, or what
``bidsfusion export-model`` wrote) holds everything needed to use its model, so this
needs no configuration: the volumes given are block-averaged to the model's input size,
histogram-standardised with the model's own landmarks (never refit) and z-normalised,
exactly as the group level normalised them, then encoded.

Example::

    import bidsfusion

    model = bidsfusion.load_model("models/S")          # a model folder
    z = model.encode({"T1w": t1w_files, "falff": falff_files})
    z["T1w"].shape                                      # (len(t1w_files), model.latent_dim)
    maps = model.saliency({"T1w": t1w_files[:2]}, "T1w", dims=[0, 3])
    maps.shape                                          # (2, 2, 64, 64, 64): MNI grid
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from bidsfusion.analyses.fast_gradients import fast_input_gradients
from bidsfusion.analyses.saliency import brain_saliency, to_grid
from bidsfusion.data.normalize import normalise
from bidsfusion.data.transforms import HistogramLandmarks
from bidsfusion.data.volumes import model_input, read_model_input
from bidsfusion.errors import InputDataError, InputMissingError, UsageError
from bidsfusion.models.folder import ModelRecord, load_model_folder
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.space import MNI_GRID_AFFINE, MNI_GRID_SHAPE
from bidsfusion.train.encode import encode
from bidsfusion.train.settings import resolve_device

Volume = str | Path | nib.Nifti1Image | np.ndarray
"""One input: a NIfTI path or image on the 3 mm 64^3 MNI grid, or its voxel array."""


@dataclass(frozen=True)
class PretrainedModel:
    """A trained model loaded from its model folder (:func:`load_model`).

    Attributes:
        record: its ``model.json`` (:class:`~bidsfusion.models.folder.ModelRecord`).
        network: the encoders (:class:`~bidsfusion.models.multimodal.MultimodalModel`),
            frozen, in eval mode, on ``device``.
        device: where it runs.
    """

    record: ModelRecord
    network: MultimodalModel
    device: torch.device

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities it encodes, in its order."""
        return self.record.modality_names

    @property
    def latent_dim(self) -> int:
        """The size of each modality's representation."""
        return self.record.latent_dim

    def volumes(self, inputs: Mapping[str, Sequence[Volume]]) -> dict[str, Tensor]:
        """The inputs as the model sees them: per modality ``[N, 1, S, S, S]`` float32 on
        ``device``, normalised with the model's landmarks.

        Args:
            inputs: per modality of the model (any subset), its volumes.

        Raises:
            UsageError: a modality the model does not have.
            InputMissingError: a file that does not exist.
            InputDataError: a volume off the model's grid, not finite, or constant.
        """
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise UsageError(
                f"the model encodes {', '.join(self.modalities)}, not {', '.join(unknown)}"
            )
        landmarks = self.record.landmarks()
        out = {}
        for modality, volumes in inputs.items():
            if not len(volumes):
                raise UsageError(f"no {modality} volume given")
            arrays = [self._array(v, f"{modality} volume {i}") for i, v in enumerate(volumes)]
            x = torch.from_numpy(np.stack(arrays))[:, None].to(self.device)
            out[modality] = normalise(x, HistogramLandmarks(landmarks[modality]))
        return out

    def _array(self, volume: Volume, name: str) -> np.ndarray:
        size = self.record.input_size
        if isinstance(volume, str | Path):
            if not Path(volume).is_file():
                raise InputMissingError(f"{volume}: file not found")
            return read_model_input(Path(volume), size)
        if isinstance(volume, nib.Nifti1Image):
            off_grid = volume.shape[:3] != MNI_GRID_SHAPE or not np.allclose(
                volume.affine, MNI_GRID_AFFINE, atol=1e-3
            )
            if off_grid:
                raise InputDataError(
                    f"{name}: not on the 3 mm 64^3 MNI grid of the participant level (shape "
                    f"{volume.shape}); make it with 'bidsfusion BIDS_DIR OUTPUT_DIR participant'"
                )
            volume = np.asarray(volume.dataobj, dtype=np.float32)
        return model_input(np.asarray(volume), size, name)

    def encode(
        self, inputs: Mapping[str, Sequence[Volume]], batch_size: int = 16
    ) -> dict[str, np.ndarray]:
        """The frozen representations: per modality given, float32 ``[N, latent_dim]``, as the
        group level's ``representations.npz`` holds them."""
        return encode(self.network, self.volumes(inputs), batch_size, self.device)

    def saliency(
        self,
        inputs: Mapping[str, Sequence[Volume]],
        modality: str,
        dims: Sequence[int] | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """SmoothGrad saliency of latent dimensions ``dims`` (all: None) of ``modality`` in
        brain space, as the ``saliency`` analysis computes it: float32 ``[N, len(dims), 64,
        64, 64]`` on the MNI grid, each map in [0, 1] inside the subject's brain."""
        chosen = list(range(self.latent_dim)) if dims is None else list(dims)
        if not chosen or not all(0 <= d < self.latent_dim for d in chosen):
            raise UsageError(f"dims {chosen}: give latent dimensions 0 to {self.latent_dim - 1}")
        x = self.volumes({modality: inputs[modality]})[modality]
        encoder = self.network.encoders[modality]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with fast_input_gradients(encoder):
            maps = brain_saliency(lambda v: encoder(v).latent[:, chosen], x, generator)
        return to_grid(maps.cpu(), MNI_GRID_SHAPE[0]).numpy()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PretrainedModel:
    """The trained model of a model folder.

    Args:
        path: a model folder (``model.json`` beside its safetensors weights).
        device: ``cpu``, ``cuda`` or ``auto``.

    Returns:
        The :class:`PretrainedModel`, frozen on ``device``.

    Raises:
        InputMissingError: no model folder at ``path`` (exit 66).
        InputDataError: a damaged, altered or incompatible folder (exit 65).

    Example:
        >>> model = load_model("group/objective-S/fold-0")  # doctest: +SKIP
        >>> model.encode({"T1w": ["sub-01_..._desc-brain_T1w.nii.gz"]})["T1w"].shape
        (1, 64)
    """
    place = resolve_device(device)
    record, network = load_model_folder(Path(path))
    return PretrainedModel(record, network.to(place).eval().requires_grad_(False), place)
