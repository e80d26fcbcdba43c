"""SmoothGrad saliency of every latent dimension, projected into brain space (paper Fig. 3).

For a subject's normalised volume ``x`` and an encoder with latent ``z[K]``:

1. SmoothGrad: the mean over :data:`SAMPLES` noisy copies ``x + e``, ``e ~ N(0, (0.05 *
   range(x))^2)`` (``range`` = max - min of the subject's volume), of the gradient of
   ``z[k]`` with respect to the input, for every ``k`` at once (one vector-Jacobian
   product batched over the K cotangents with ``torch.func.vmap``), then its
   absolute value. Computed in float32 whatever the input's dtype, on a frozen model
   in channels-last layout with eval batch norms folded into their convolutions and
   every convolution's input gradient an explicit transposed convolution
   (:mod:`~bidsfusion.analyses.fast_gradients`): the same numbers, faster.
2. The "numerically stable" projection: non-finite values set to 0, the brain mask
   applied (voxels above the volume's minimum, its background), each (subject,
   dimension) map rescaled to [0, 1] inside the mask; a map whose range is below
   :data:`MIN_RANGE` times its maximum (or 0) becomes all zeros instead of dividing
   by almost nothing; then Gaussian smoothing with sigma :data:`SIGMA_VOXELS` voxels of
   the model's input, and the mask again. Never NaN.
3. Brain space: upsampled from the model's input size to the 64^3 3 mm MNI grid
   (each input voxel is the mean of a block of grid voxels, so its saliency is
   repeated over the block).

The ``saliency`` analysis (:func:`write_saliency`) applies this to every evaluated
subject with the first fold's model of each objective.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bidsfusion.analyses.context import AnalysisContext
from bidsfusion.analyses.crossmodal import LINK_SIZE, Link, cross_modal_link, link_voxels
from bidsfusion.analyses.fast_gradients import fast_input_gradients
from bidsfusion.layout import map_name
from bidsfusion.objectives.dim import brain_voxels

NOISE_FRACTION = 0.05
SAMPLES = 5
SIGMA_VOXELS = 1.5
MIN_RANGE = 1e-6
ETA_SECONDS = 30.0

log = logging.getLogger("bidsfusion.group")


def _spatial(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def _fast_layout(x: Tensor) -> torch.memory_format:
    """Channels-last for volumes (faster convolutions), the default layout otherwise."""
    return torch.channels_last_3d if x.ndim == 5 else torch.contiguous_format


def smoothgrad(
    latent: Callable[[Tensor], Tensor],
    x: Tensor,
    samples: int = SAMPLES,
    noise: float = NOISE_FRACTION,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``|mean_s d latent(x + e_s)[:, k] / dx|`` for every ``k``: ``x[B, 1, *S]`` ->
    float32 ``[B, K, *S]`` (see the module doc); ``latent`` maps ``[B, 1, *S]`` to ``[B, K]``."""
    if samples < 1:
        raise ValueError(f"SmoothGrad needs at least one sample, got {samples}")
    x = x.detach().float()
    span = x.amax(dim=_spatial(x), keepdim=True) - x.amin(dim=_spatial(x), keepdim=True)
    total = torch.zeros(())
    for _ in range(samples):
        e = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        noisy = (x + noise * span * e).contiguous(memory_format=_fast_layout(x))
        z, pullback = torch.func.vjp(lambda v: latent(v).float(), noisy)
        B, K = z.shape
        cotangents = torch.eye(K, device=x.device).unsqueeze(1).expand(K, B, K)
        (gradients,) = torch.func.vmap(pullback)(cotangents)  # [K, B, 1, *S]
        total = total + gradients[:, :, 0].transpose(0, 1)
    return (total / samples).abs().detach()


def unit_range(maps: Tensor, brain: Tensor) -> Tensor:
    """Each ``maps[b, k]`` (float ``[B, K, *S]``) rescaled to [0, 1] inside ``brain``
    (bool ``[B, 1, *S]``), 0 outside; a map of (near) zero range becomes all zeros."""
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0) * brain
    dims = _spatial(maps)
    low = torch.where(brain, maps, math.inf).amin(dim=dims, keepdim=True)
    high = torch.where(brain, maps, -math.inf).amax(dim=dims, keepdim=True)
    span = high - low
    usable = torch.isfinite(span) & (span > MIN_RANGE * high.abs().clamp(min=1e-30))
    scaled = (maps - torch.where(usable, low, 0.0)) / torch.where(usable, span, 1.0)
    return torch.where(usable & brain, scaled, 0.0)


def gaussian_smooth(maps: Tensor, sigma: float = SIGMA_VOXELS) -> Tensor:
    """Separable Gaussian smoothing (zero padding, radius ceil(3 sigma)) of ``[B, K, *S]``,
    each axis one matrix product with the banded ``[S, S]`` convolution matrix (a
    one-channel ``conv3d`` is about 20x slower on CPU)."""
    out = maps
    for axis in range(2, maps.ndim):
        band = _gaussian_band(maps.shape[axis], sigma, maps.device, maps.dtype)
        out = torch.movedim(torch.movedim(out, axis, -1) @ band, -1, axis)
    return out.contiguous()


def _gaussian_band(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[size, size]``: entry ``(i, j)`` the normalised Gaussian weight of offset
    ``i - j`` within ``ceil(3 sigma)``, 0 beyond (symmetric)."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    index = torch.arange(size, device=device)
    offset = index[:, None] - index[None, :]
    weights = kernel[(offset + radius).clamp(0, 2 * radius)]
    return torch.where(offset.abs() <= radius, weights, 0.0)


def to_grid(maps: Tensor, grid_size: int = 64) -> Tensor:
    """``[B, K, S, S, S]`` -> ``[B, K, G, G, G]``, each voxel repeated over its block."""
    factor = grid_size // maps.shape[-1]
    for dim in (2, 3, 4):
        maps = maps.repeat_interleave(factor, dim=dim)
    return maps


def brain_saliency(
    latent: Callable[[Tensor], Tensor],
    x: Tensor,
    generator: torch.Generator | None = None,
    rescale: bool = True,
) -> Tensor:
    """Steps 1-2 of the module doc at the model's resolution: ``x[B, 1, *S]`` -> float32
    ``[B, K, *S]``, zero outside the brain: in [0, 1] per (subject, dimension), or, with
    ``rescale`` false, the smoothed absolute gradients themselves, on one scale for every
    subject (their inputs are normalised alike), which group comparisons need."""
    brain = brain_voxels(x.float())
    maps = smoothgrad(latent, x, generator=generator)
    if rescale:
        maps = unit_range(maps, brain)
    else:
        maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0) * brain
    return gaussian_smooth(maps) * brain


NAME = "saliency"
"""The analysis's registered name, and its folder under ``group/``."""
SALIENCY_FOLD = 0
"""The fold whose model is analysed: folds hold different models, whose latent dimensions
do not correspond, so maps are not averaged over folds."""


@dataclass
class _Sums:
    """Running sums over subjects (group map sums and counts) and every subject's maps on
    the cross-modal link's grid (:func:`~bidsfusion.analyses.crossmodal.link_voxels`)."""

    maps: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    linked: dict[str, list[Tensor]] = field(default_factory=dict)

    def add_maps(self, modality: str, group: str, maps: Tensor) -> None:
        key = (modality, group)
        total = maps.sum(dim=0)
        self.maps[key] = self.maps[key] + total if key in self.maps else total

    def add_linked(self, modality: str, maps: Tensor) -> None:
        """Keep ``maps[B, K, *S]`` on the link's grid."""
        self.linked.setdefault(modality, []).append(link_voxels(maps))


def write_saliency(context: AnalysisContext) -> None:
    """The ``saliency`` analysis: per objective, the fold-0 model's SmoothGrad maps of every
    latent dimension, averaged per group (``--positive``, ``--negative``, ``all``) and
    written as 4D NIfTIs on the 64^3 MNI grid (one volume per dimension) with JSON
    sidecars under ``group/saliency/objective-<SPEC>/``; and the cross-modal pair of
    dimensions, one of each of the first two fused modalities, whose saliencies are most
    linked across subjects (:mod:`~bidsfusion.analyses.crossmodal`), with its permutation
    null (``crossmodal.tsv``, ``crossmodal.json``)."""
    for spec in context.specs:
        sums = _saliency_sums(context, spec)
        folder = context.layout.analysis_objective_dir(NAME, spec)
        for (modality, group), total in sums.maps.items():
            _write_maps(folder, context, spec, modality, group, total / sums.counts[group])
        if len(context.modalities) >= 2:
            first, second = (torch.cat(sums.linked[m]) for m in context.modalities[:2])
            _write_crossmodal(folder, context, cross_modal_link(first, second, context.seed))


def _saliency_sums(context: AnalysisContext, spec: str) -> _Sums:
    model = context.model(spec, SALIENCY_FOLD)
    volumes = context.volumes(spec, SALIENCY_FOLD)
    chunk = max(1, 2 * (64 // context.input_size) ** 3)
    generator = torch.Generator(device=context.device).manual_seed(context.seed)
    sums = _Sums()
    eta = _Eta(f"saliency of {spec}", len(volumes))
    with fast_input_gradients(model):
        for start in range(0, len(volumes), chunk):
            rows = slice(start, start + chunk)
            maps = {
                m: brain_saliency(
                    lambda v, e=model.encoders[m]: e(v).latent, volumes.volumes[m][rows], generator
                ).cpu()
                for m in context.modalities
            }
            _add_chunk(
                sums, context, [context.inputs.groups[s] for s in volumes.subjects[rows]], maps
            )
            eta.done(min(start + chunk, len(volumes)))
    return sums


def _add_chunk(
    sums: _Sums, context: AnalysisContext, groups: list[str], maps: dict[str, Tensor]
) -> None:
    """Add one chunk of subjects' maps (``[b, K, *S]`` per modality; ``groups[b]``)."""
    for group in (context.positive, context.negative, "all"):
        chosen = [i for i, g in enumerate(groups) if group in ("all", g)]
        if not chosen:
            continue
        sums.counts[group] = sums.counts.get(group, 0) + len(chosen)
        for m in context.modalities:
            sums.add_maps(m, group, maps[m][chosen])
    for m in context.modalities[:2] if len(context.modalities) >= 2 else ():
        sums.add_linked(m, maps[m])


class _Eta:
    """Logs ``done/total`` subjects and the estimated time left, at most every
    :data:`ETA_SECONDS` (SmoothGrad of every dimension takes about 6 s per subject and
    modality at 64^3 on 2 CPU cores)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = self.logged = time.monotonic()

    def done(self, count: int) -> None:
        now = time.monotonic()
        if count < self.total and now - self.logged >= ETA_SECONDS:
            left = (now - self.started) / count * (self.total - count)
            log.info("%s: %d/%d subjects, about %.0f s left", self.label, count, self.total, left)
            self.logged = now


def _write_maps(
    folder: Path, context: AnalysisContext, spec: str, modality: str, group: str, mean: Tensor
) -> None:
    """``fold-0_desc-<modality>_group-<group>_saliency.nii.gz`` (64^3 x K) and its JSON;
    temporaries a killed run left beside them are removed."""
    from bidsfusion.atomic import remove_stale_temporaries, write_text
    from bidsfusion.nifti import save_image
    from bidsfusion.space import MNI_GRID_AFFINE

    grid = to_grid(mean[None])[0].permute(1, 2, 3, 0).numpy().astype(np.float32)
    stem = map_name(SALIENCY_FOLD, "saliency", desc=modality, group=group)
    for suffix in (".nii.gz", ".json"):
        remove_stale_temporaries(folder / f"{stem}{suffix}")
    save_image(grid, MNI_GRID_AFFINE, folder / f"{stem}.nii.gz", space="mni")
    sidecar = {
        "Objective": spec,
        "Fold": SALIENCY_FOLD,
        "Modality": modality,
        "Group": group,
        "Subjects": _count(context, group),
        "Volumes": "one per latent dimension, in order",
        "Method": "SmoothGrad: |mean gradient of z[k] over noisy inputs|, brain mask, "
        "each map rescaled to [0, 1], Gaussian smoothing, group mean",
        "NoiseFraction": NOISE_FRACTION,
        "Samples": SAMPLES,
        "SmoothingSigmaVoxels": SIGMA_VOXELS,
        "InputSize": context.input_size,
        "Space": "MNI152NLin2009aSym, 3 mm 64^3 grid",
    }
    write_text(folder / f"{stem}.json", json.dumps(sidecar, indent=2) + "\n")


def _count(context: AnalysisContext, group: str) -> int:
    """Evaluated subjects of ``group`` (``all``: every one) in the analysed fold."""
    return sum(group in ("all", context.inputs.groups[s]) for s in context.evaluated_subjects)


def _write_crossmodal(folder: Path, context: AnalysisContext, link: Link) -> None:
    """``crossmodal.tsv`` (every pair of dimensions, most linked first) and
    ``crossmodal.json`` (the best pair, its permutation null and its maps)."""
    from bidsfusion.atomic import write_text
    from bidsfusion.tsv import write_tsv

    first, second = context.modalities[:2]
    columns = link.matrix.shape[1]
    flat = link.matrix.flatten()
    rows = [[int(i) // columns, int(i) % columns, float(flat[i])] for i in np.argsort(-flat)]
    write_tsv(folder / "crossmodal.tsv", [f"{first}_dim", f"{second}_dim", "link"], rows)
    summary = {
        f"{first}_dim": link.best[0],
        f"{second}_dim": link.best[1],
        "link": link.value,
        "p": link.p,
        "permutations": len(link.null),
        "null_mean": float(link.null.mean()) if len(link.null) else None,
        "null_95": float(np.quantile(link.null, 0.95)) if len(link.null) else None,
        "subjects": len(context.evaluated_subjects),
        "method": "mean over template brain voxels of the across-subject Pearson correlation "
        "of the two dimensions' saliency (maps rescaled to [0, 1], block-averaged to at most "
        f"{LINK_SIZE}^3); null: the best link with the second modality's subjects shuffled",
        "maps": {
            m: map_name(SALIENCY_FOLD, "saliency.nii.gz", desc=m, group="all")
            for m in (first, second)
        },
    }
    write_text(folder / "crossmodal.json", json.dumps(summary, indent=2) + "\n")
