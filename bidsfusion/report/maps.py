"""The report's brain-map sections: the cross-modal saliency pair of each objective (the
paper's Fig. 3) and the group-difference maps with their peaks."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bidsfusion.analyses.group_differences import NAME as GROUP_DIFFERENCES
from bidsfusion.analyses.saliency import NAME as SALIENCY
from bidsfusion.errors import InputDataError
from bidsfusion.layout import GroupLayout
from bidsfusion.report.figures import brain_figure
from bidsfusion.report.inputs import read_json, read_table, retrained_after, volume
from bidsfusion.report.markup import (
    figure,
    guarded,
    heading,
    note,
    problem,
    relative,
    stale,
    table,
)

MAX_PEAKS = 20
"""Rows of a peaks table shown."""
RBC_SHOWN = 0.1
"""The smallest absolute rank-biserial correlation drawn on the maps."""


def saliency(layout: GroupLayout) -> str:
    """Per objective, the group-mean saliency maps of its most correlated cross-modal
    pair of latent dimensions (``crossmodal.json``)."""
    root = layout.analysis_dir(SALIENCY)
    if not root.is_dir():
        return note(f"not run: use --analysis {SALIENCY}")
    folders = layout.analysed_objectives(SALIENCY)
    if not folders:
        return problem(f"{relative(root, layout.root)} holds no folder of an objective")
    text = note(
        "SmoothGrad saliency of fold 0's model, mean over all evaluated subjects: for each "
        "objective, the latent dimensions of the first two fused modalities whose maps "
        "correlate most over subjects and voxels; the upper half of each map's non-zero "
        "voxels is shown."
    )
    parts = [
        guarded(partial(_pair, layout, spec, folder), layout.root, f"saliency of {folder.name}")
        for spec, folder in folders.items()
    ]
    return text + "".join(parts)


def _pair(layout: GroupLayout, spec: str, folder: Path) -> str:
    group_dir = layout.root
    path = folder / "crossmodal.json"
    if not path.exists():
        return heading(spec) + problem(
            f"{relative(path, group_dir)} is missing (the cross-modal pair needs two modalities)"
        )
    document = read_json(path)
    try:
        maps = {str(m): folder / str(name) for m, name in document["maps"].items()}
        dims = {m: int(document[f"{m}_dim"]) for m in maps}
        correlation = float(document["correlation"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputDataError(f"{path}: no valid pair of dimensions and maps ({error})") from None
    images = [(f"{m} dimension {dims[m]}", volume(maps[m], dims[m])) for m in maps]
    title = f"{spec}: " + " and ".join(f"{m} dim {dims[m]}" for m in maps)
    names = [relative(path, group_dir), *(relative(p, group_dir) for p in maps.values())]
    retrained = retrained_after(path, layout, spec)
    warning = stale(names[0], [spec], SALIENCY) if retrained else ""
    return (
        heading(f"{title} (r = {correlation:.2f})")
        + warning
        + figure(brain_figure(images), f"saliency maps of {title}", names)
    )


def group_differences(layout: GroupLayout) -> str:
    """Per objective folder of ``group/group-differences``: its rank-biserial correlation
    maps (``*stat-rbc*.nii.gz``) as slices and its peaks tables."""
    group_dir = layout.root
    root = layout.analysis_dir(GROUP_DIFFERENCES)
    if not root.is_dir():
        return note(f"not run: use --analysis {GROUP_DIFFERENCES}")
    found = [*root.rglob("*stat-rbc*.nii.gz"), *root.rglob("*peaks*.tsv")]
    folders = sorted({p.parent for p in found})
    if not folders:
        return problem(f"{relative(root, group_dir)} holds no *stat-rbc*.nii.gz map")
    text = note(
        "Rank-biserial correlation of the two groups' saliency per voxel, on [-1, 1] (red: "
        f"higher in the positive group, blue: lower); |RBC| below {RBC_SHOWN} is not drawn."
    )
    specs = {folder: spec for spec, folder in layout.analysed_objectives(GROUP_DIFFERENCES).items()}
    parts = [
        guarded(partial(_differences, layout, f, specs.get(f)), group_dir, f"maps of {f.name}")
        for f in folders
    ]
    return text + "".join(parts)


def _differences(layout: GroupLayout, folder: Path, spec: str | None) -> str:
    group_dir = layout.root
    out = heading(relative(folder, group_dir))
    maps = sorted(folder.glob("*stat-rbc*.nii.gz"))
    if maps:
        if spec is not None and retrained_after(maps[0], layout, spec):
            out += stale(relative(folder, group_dir), [spec], GROUP_DIFFERENCES)
        images = [(_title(path), volume(path)) for path in maps]
        names = [relative(p, group_dir) for p in maps]
        png = brain_figure(images, cmap="cold_hot", vmax=1.0, threshold=RBC_SHOWN)
        out += figure(png, f"group differences in {folder.name}", names)
    for path in sorted(folder.glob("*peaks*.tsv")):
        out += _peaks(path, group_dir)
    return out


def _title(path: Path) -> str:
    """``<modality> dimension <k>`` from a map's ``desc`` and ``dim`` entities, else its name."""
    stem = path.name.removesuffix(".nii.gz")
    entities = dict(part.split("-", 1) for part in stem.split("_") if "-" in part)
    if "desc" in entities and "dim" in entities:
        return f"{entities['desc']} dimension {entities['dim']}"
    return stem


def _compact(text: str) -> str:
    """A decimal number to 4 significant digits (``-54.0``: ``-54``); other text as it is."""
    try:
        return format(float(text), ".4g") if "." in text else text
    except ValueError:
        return text


def _peaks(path: Path, group_dir: Path) -> str:
    rows = read_table(path, [])
    if not rows:
        return note(f"{relative(path, group_dir)}: no peaks")
    shown = rows[:MAX_PEAKS]
    more = f" (the first {MAX_PEAKS} of {len(rows)})" if len(rows) > MAX_PEAKS else ""
    body = [[_compact(v) for v in r.values()] for r in shown]
    return note(f"peaks from {relative(path, group_dir)}{more}") + table(list(rows[0]), body)
