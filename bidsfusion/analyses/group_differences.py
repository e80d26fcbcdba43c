"""Where the two groups' saliency differs, for the dimensions the classifier weighs most (Fig. 4).

Per objective and modality, with the first fold's model (:data:`SALIENCY_FOLD`):

1. The evaluation's best classifier of that fold, refit exactly as the evaluation fit it
   (``C``, ``l1_ratio``, ``seed`` of its ``evaluation.tsv`` row, on the representations
   standardised with the fold's train subjects: :func:`load_fold`, :func:`fit`); the latent
   dimension with the largest positive coefficient (direction ``pos``) and the one with the
   most negative (``neg``). A direction without a coefficient of its sign is left out (an L1
   fit can zero them all: then the modality is skipped).
2. SmoothGrad saliency (:func:`brain_saliency`) of just these dimensions for every evaluated
   subject of ``--positive`` (label 1, n1) and ``--negative`` (label 0, n2), at the model's
   input resolution ``S^3``, **not rescaled**: the smoothed absolute gradients themselves.
   Every subject's input is normalised the same way (histogram standardisation, then z),
   so their gradients are on one scale; rescaling each subject's map to [0, 1], as the
   displayed maps are, divides by its own maximum, and a group whose maxima are lower (AD)
   then looks higher everywhere: the sign of the effect flips.
3. Per voxel, the two-sided Mann-Whitney U test of the two groups' saliencies: ranks over
   the subjects with ties averaged, ``U1 = R1 - n1 (n1 + 1) / 2`` (U of ``--positive``), the
   normal approximation with tie and continuity correction (as ``scipy.stats.mannwhitneyu(
   method="asymptotic")``). Effect size: the rank-biserial correlation
   ``RBC = 2 U1 / (n1 n2) - 1`` (the paper's ``1 - 2U / (n1 n2)`` with U the ``--negative``
   group's U), in [-1, 1]: > 0 where ``--positive`` (AD) saliency tends to be higher, +1 when
   every AD subject's is above every HC subject's. Only voxels that are mostly brain on the
   template (at least :data:`MIN_COVERAGE` of the model voxel inside its brain mask,
   :func:`~bidsfusion.space.brain_coverage`) and whose saliency varies over subjects are
   tested: elsewhere RBC 0 and q 1. Benjamini-Hochberg q-values over the tested voxels of
   each map.
4. The maps are computed at ``S^3`` and then upsampled to the 64^3 3 mm MNI grid by block
   repetition (:func:`to_grid`); peaks: up to :data:`PEAKS` local maxima of ``|RBC|`` among
   tested voxels, :data:`PEAK_DISTANCE_MM` apart or more, at model-voxel centres in MNI mm,
   each with its brain coverage and its regions in the AAL, Harvard-Oxford and
   Desikan-Killiany atlases (:mod:`bidsfusion.atlases`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import maximum_filter
from scipy.special import ndtr
from scipy.stats import rankdata

from bidsfusion.analyses.context import AnalysisContext
from bidsfusion.analyses.fast_gradients import fast_input_gradients
from bidsfusion.analyses.saliency import SALIENCY_FOLD, brain_saliency, to_grid
from bidsfusion.atlases import ATLASES, regions
from bidsfusion.errors import InputDataError
from bidsfusion.layout import map_name
from bidsfusion.space import MNI_GRID_AFFINE, brain_coverage

log = logging.getLogger("bidsfusion.group")

NAME = "group-differences"
"""The analysis's registered name."""
PEAKS = 5
"""Peaks listed per map."""
PEAK_DISTANCE_MM = 12.0
"""Least distance between two peaks of a map."""
VOXEL_CHUNK = 32768
"""Voxels ranked at once (bounds the memory of the ranks to ``n * VOXEL_CHUNK`` floats)."""
MIN_COVERAGE = 0.5
"""The least fraction of a model voxel inside the template brain mask for it to be tested."""
PEAK_COLUMNS = (
    "objective", "modality", "direction", "dim", "coefficient", "rank", "x_mm", "y_mm",
    "z_mm", "rbc", "q", "brain_coverage", *ATLASES,
)  # fmt: skip
"""Columns of ``peaks.tsv``; ``rank`` 1 is the largest ``|rbc|`` of its map; the atlas
columns hold the region at the peak (empty outside every region of that atlas)."""
SIGN = (
    "RBC = 2 U1 / (n1 n2) - 1 with U1 the Mann-Whitney U of the positive group: > 0 where the "
    "positive group's saliency tends to be higher, +1 when all of it is above the negative's"
)
NO_ROWS = (
    f"group-differences needs group/evaluation.tsv rows of fold {SALIENCY_FOLD}: "
    "run with a hold-out (--holdout > 0)"
)


def mann_whitney(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U test of every column: ``positive[n1, V]``, ``negative[n2, V]``
    -> float64 ``(U1[V], p[V])``, U1 that of ``positive``, p as ``scipy.stats.mannwhitneyu(
    x, y, method="asymptotic")`` (1 where every value of a column is equal)."""
    n1, n2 = len(positive), len(negative)
    n = n1 + n2
    ranks = rankdata(np.concatenate([positive, negative]), axis=0)
    u1 = ranks[:n1].sum(axis=0) - n1 * (n1 + 1) / 2
    # sum of t^3 - t over tie groups: average ranks lose (t^3 - t) / 12 of the sum of squared
    # ranks 1..n per group (exact in float64: the ranks are halves of integers)
    ties = 2 * n * (n + 1) * (2 * n + 1) - 12 * (ranks**2).sum(axis=0)
    sd = np.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.maximum(u1, n1 * n2 - u1) - n1 * n2 / 2 - 0.5) / sd
    return u1, np.clip(2 * ndtr(-z), 0.0, 1.0)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of ``p[m]``: ``min_{j >= i} p_(j) m / j``, capped at 1."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.empty(m)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def difference_maps(
    positive: np.ndarray, negative: np.ndarray, inside: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Saliency ``positive[n1, *S]`` versus ``negative[n2, *S]`` -> ``(rbc, q, tested)``, each
    ``[*S]``: RBC (float64, see the module doc), BH q over the tested voxels, the tested
    voxels (bool: inside the brain, ``inside[*S]``, and the saliency varies over subjects)."""
    n1, n2 = len(positive), len(negative)
    shape = positive.shape[1:]
    a, b = positive.reshape(n1, -1), negative.reshape(n2, -1)
    high, low = np.maximum(a.max(0), b.max(0)), np.minimum(a.min(0), b.min(0))
    tested = high > low
    if inside is not None:
        tested &= inside.reshape(-1)
    columns = np.flatnonzero(tested)
    rbc, p, q = np.zeros(len(tested)), np.ones(len(tested)), np.ones(len(tested))
    for start in range(0, len(columns), VOXEL_CHUNK):
        chunk = columns[start : start + VOXEL_CHUNK]
        u1, p[chunk] = mann_whitney(a[:, chunk], b[:, chunk])
        rbc[chunk] = 2 * u1 / (n1 * n2) - 1
    q[columns] = bh_qvalues(p[columns])
    return rbc.reshape(shape), q.reshape(shape), tested.reshape(shape)


def model_affine(size: int, grid_size: int = 64) -> np.ndarray:
    """Voxel-to-MNI-mm affine of the model's ``size^3`` input: voxel ``i`` is the centre of
    grid voxels ``i f .. i f + f - 1``, ``f = grid_size // size``."""
    factor = grid_size // size
    block = np.diag([factor, factor, factor, 1.0])
    block[:3, 3] = (factor - 1) / 2
    return MNI_GRID_AFFINE @ block


def peaks(
    rbc: np.ndarray,
    tested: np.ndarray,
    affine: np.ndarray,
    count: int = PEAKS,
    distance_mm: float = PEAK_DISTANCE_MM,
) -> list[tuple[int, int, int]]:
    """Voxel indices of up to ``count`` local maxima of ``|rbc|`` (26 neighbours; nonzero)
    among ``tested`` voxels, largest first, each ``distance_mm`` or more (through ``affine``) from
    the ones before it."""
    magnitude = np.where(tested, np.abs(rbc), -1.0)
    top = maximum_filter(magnitude, size=3, mode="constant", cval=-1.0)
    local = tested & (magnitude == top) & (magnitude > 0)
    candidates = np.argwhere(local)[np.argsort(-magnitude[local], kind="stable")]
    chosen: list[tuple[int, int, int]] = []
    points: list[np.ndarray] = []
    for voxel in candidates:
        mm = affine[:3, :3] @ voxel + affine[:3, 3]
        if all(np.linalg.norm(mm - other) >= distance_mm for other in points):
            chosen.append(tuple(int(i) for i in voxel))
            points.append(mm)
            if len(chosen) == count:
                break
    return chosen


def extreme_dims(coefficients: np.ndarray) -> list[tuple[str, int, float]]:
    """``(direction, dim, coefficient)`` of the largest positive (``pos``) and the most
    negative (``neg``) of ``coefficients[K]``; a direction with no coefficient of its sign
    is left out."""
    found = []
    if coefficients.max() > 0:
        found.append(("pos", int(coefficients.argmax()), float(coefficients.max())))
    if coefficients.min() < 0:
        found.append(("neg", int(coefficients.argmin()), float(coefficients.min())))
    return found


def write_group_differences(context: AnalysisContext) -> None:
    """The ``group-differences`` analysis (module doc): per objective, maps of RBC and q for
    each modality and direction and ``peaks.tsv`` under
    ``group/group-differences/objective-<SPEC>/``; see :func:`_nothing` when nothing could
    be analysed."""
    rows = {(r.objective, r.modality): r for r in context.evaluation if r.fold == SALIENCY_FOLD}
    if not any((spec, m) in rows for spec in context.specs for m in context.modalities):
        return _nothing(context, NO_ROWS)
    labels = np.array([context.labels[s] for s in context.evaluated_subjects])
    n1, n2 = int((labels == 1).sum()), int((labels == 0).sum())
    if min(n1, n2) < 2:
        return _nothing(
            context,
            f"group-differences needs at least 2 {context.positive} and 2 "
            f"{context.negative} evaluated subjects; found {n1} and {n2}",
        )
    if not sum(_objective(context, spec, rows, labels) for spec in context.specs):
        _nothing(context, "group-differences: no classifier has a nonzero coefficient")


def _nothing(context: AnalysisContext, reason: str) -> None:
    """Nothing to analyse: InputDataError (one line, 65) when ``--analysis group-differences``
    asked for this analysis; a warning when it only ran as one of all the registered analyses
    (a run without a hold-out must not fail for it)."""
    if NAME in context.config.analyses.analysis:
        raise InputDataError(reason)
    log.warning("%s; skipped", reason)


def _targets(
    context: AnalysisContext, spec: str, rows: dict[tuple[str, str], Any]
) -> dict[str, tuple[Any, list[tuple[str, int, float]]]]:
    """Per modality with a fold-0 evaluation row: the row and :func:`extreme_dims` of the
    classifier refit from it; modalities without a row or a nonzero coefficient are logged."""
    from bidsfusion.evaluate.logreg import fit, load_fold

    path = context.layout.fold(spec, SALIENCY_FOLD).representations
    targets = {}
    for modality in context.modalities:
        row = rows.get((spec, modality))
        if row is None:
            log.info("group-differences: %s %s has no evaluation row of fold 0", spec, modality)
            continue
        data = load_fold(path, modality, SALIENCY_FOLD)
        found = extreme_dims(fit(data, row.C, row.l1_ratio, row.seed, row.tuning).coef_[0])
        if len(found) < 2:
            missing = "any nonzero coefficient" if not found else "a coefficient of each sign"
            log.warning("group-differences: %s %s: the refit classifier (C %g, %s) lacks %s",
                     spec, modality, row.C, row.penalty, missing)  # fmt: skip
        if found:
            targets[modality] = (row, found)
    return targets


def _objective(
    context: AnalysisContext, spec: str, rows: dict[tuple[str, str], Any], labels: np.ndarray
) -> int:
    """Maps and peaks of one objective (``labels[n]``: the evaluated subjects' labels, 1,
    0 or -1); the number of files written."""
    from bidsfusion.atomic import remove_stale_temporaries
    from bidsfusion.tsv import write_tsv

    targets = _targets(context, spec, rows)
    if not targets:
        return 0
    folder = context.layout.analysis_objective_dir(NAME, spec)
    model = context.model(spec, SALIENCY_FOLD)
    affine = model_affine(context.input_size)
    coverage = brain_coverage(context.input_size)
    chosen = np.flatnonzero(labels >= 0)
    positive = labels[chosen] == 1
    counts = {context.positive: int(positive.sum()),
              context.negative: int((~positive).sum())}  # fmt: skip
    written: set[str] = set()
    table = []
    for modality, (row, found) in targets.items():
        maps = _saliency(context, spec, model.encoders[modality], modality, chosen, found)
        for j, (direction, dim, coefficient) in enumerate(found):
            rbc, q, tested = difference_maps(
                maps[positive, j], maps[~positive, j], coverage >= MIN_COVERAGE
            )
            target = {"Objective": spec, "Fold": SALIENCY_FOLD, "Modality": modality,
                      "Dimension": dim, "Coefficient": coefficient, "Direction": direction,
                      "Subjects": counts, "TestedVoxels": int(tested.sum()),
                      "Classifier": {"C": row.C, "Penalty": row.penalty,
                                     "L1Ratio": row.l1_ratio, "Seed": row.seed}}  # fmt: skip
            written |= _write_maps(folder, context, target, {"rbc": rbc, "q": q})
            for rank, voxel in enumerate(peaks(rbc, tested, affine), start=1):
                mm = (affine[:3, :3] @ np.array(voxel) + affine[:3, 3]).tolist()
                values = [float(rbc[voxel]), float(q[voxel]), float(coverage[voxel])]
                names = list(regions(tuple(mm)).values())
                table.append(
                    [spec, modality, direction, dim, coefficient, rank, *mm, *values, *names]
                )
    remove_stale_temporaries(folder / "peaks.tsv")
    write_tsv(folder / "peaks.tsv", PEAK_COLUMNS, table)
    for old in folder.glob(map_name(SALIENCY_FOLD, "saliency.*", desc="*", dim="*", stat="*")):
        if old.name not in written:  # a previous run's dimensions
            old.unlink()
    return len(written)


def _saliency(
    context: AnalysisContext,
    spec: str,
    encoder: torch.nn.Module,
    modality: str,
    chosen: np.ndarray,
    found: list[tuple[str, int, float]],
) -> np.ndarray:
    """Saliency ``[len(chosen), len(found), S, S, S]`` (float32) of the ``found`` dimensions
    for the ``chosen`` evaluated subjects, in chunks of subjects as the ``saliency`` analysis
    computes them."""
    volumes = context.volumes(spec, SALIENCY_FOLD).volumes[modality]
    dims = [dim for _, dim, _ in found]
    chunk = max(1, 2 * (64 // context.input_size) ** 3)
    generator = torch.Generator(device=context.device).manual_seed(context.seed)
    parts = []
    with fast_input_gradients(encoder):
        for start in range(0, len(chosen), chunk):
            rows = torch.as_tensor(chosen[start : start + chunk], device=volumes.device)
            maps = brain_saliency(
                lambda v: encoder(v).latent[:, dims], volumes[rows], generator, rescale=False
            )
            parts.append(maps.cpu().numpy())
    return np.concatenate(parts)


def _write_maps(
    folder: Path, context: AnalysisContext, target: dict[str, Any], maps: dict[str, np.ndarray]
) -> set[str]:
    """``fold-0_desc-<modality>_dim-<k>_stat-<rbc|q>_saliency.nii.gz`` (``maps[stat]``
    ``[S, S, S]``) on the 64^3 MNI grid and JSON sidecars (``target`` and the method); the
    names written."""
    from bidsfusion.atomic import remove_stale_temporaries, write_text
    from bidsfusion.nifti import save_image

    size = context.input_size
    written = set()
    for stat, values in maps.items():
        stem = map_name(
            SALIENCY_FOLD, "saliency", desc=target["Modality"], dim=target["Dimension"], stat=stat
        )
        for suffix in (".nii.gz", ".json"):
            remove_stale_temporaries(folder / f"{stem}{suffix}")
            written.add(f"{stem}{suffix}")
        grid = to_grid(torch.from_numpy(values)[None, None])[0, 0].numpy().astype(np.float32)
        save_image(grid, MNI_GRID_AFFINE, folder / f"{stem}.nii.gz", space="mni")
        sidecar = {
            **target,
            "Statistic": {"rbc": "rank-biserial correlation", "q": "Benjamini-Hochberg q"}[stat],
            "SignConvention": SIGN,
            "Test": "two-sided Mann-Whitney U per voxel, normal approximation with tie and "
            "continuity correction",
            "Correction": "Benjamini-Hochberg over the tested voxels of this map",
            "Untested": f"voxels less than {MIN_COVERAGE:g} inside the template brain mask, "
            "or whose saliency is equal for every subject: RBC 0, q 1",
            "Saliency": "SmoothGrad of this dimension (the saliency analysis's method) without "
            "its rescaling to [0, 1] per subject: the smoothed absolute gradients, on one scale "
            "for every subject (their inputs are normalised alike); a per-subject range would "
            "turn a group's lower maxima into higher saliency everywhere",
            "Resolution": f"computed at the model's {size}^3 input, upsampled by block repetition",
            "Space": "MNI152NLin2009aSym, 3 mm 64^3 grid",
        }
        write_text(folder / f"{stem}.json", json.dumps(sidecar, indent=2) + "\n")
    return written
