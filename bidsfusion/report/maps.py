"""The report's brain-map sections: the cross-modal saliency pair of each objective (the
paper's Fig. 3) and the group-difference maps with their peaks."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bidsfusion.analyses.group_differences import NAME as GROUP_DIFFERENCES
from bidsfusion.analyses.saliency import NAME as SALIENCY
from bidsfusion.errors import BidsFusionError, InputDataError
from bidsfusion.layout import GroupLayout
from bidsfusion.objectives.untrained import CONTROL
from bidsfusion.report.figures import brain_figure
from bidsfusion.report.inputs import read_json, read_table, retrained_after, volume
from bidsfusion.report.markup import (
    figure,
    guarded,
    heading,
    note,
    problem,
    relative,
    sources,
    stale,
    table,
)

MAX_PEAKS = 20
"""Rows of a peaks table shown."""
ALPHA = 0.05
"""The permutation p below which the report names and draws an objective's cross-modal pair."""
RBC_SHOWN = 0.1
"""The smallest absolute rank-biserial correlation drawn on the maps."""


def saliency(layout: GroupLayout) -> str:
    """Per objective, its most linked cross-modal pair of latent dimensions beside its
    permutation null and Random's link, and the pair's group-mean saliency maps when it beats
    the null (``crossmodal.json``)."""
    root = layout.analysis_dir(SALIENCY)
    if not root.is_dir():
        return note(f"not run: use --analysis {SALIENCY}")
    folders = layout.analysed_objectives(SALIENCY)
    if not folders:
        return problem(f"{relative(root, layout.root)} holds no folder of an objective")
    text = note(
        "SmoothGrad saliency of fold 0's model: for each objective, the latent dimensions of "
        "the first two fused modalities whose saliency is most linked across subjects (at "
        "each brain voxel, the correlation over the evaluated subjects, averaged over the "
        f"voxels), beside its null (the best link with one modality's subjects shuffled) and "
        f"{CONTROL}'s. A pair is named and drawn (mean over all evaluated subjects, the upper "
        f"half of each map's non-zero voxels) only when its permutation p is below {ALPHA}."
    )
    control = _link_of(folders.get(CONTROL))
    parts = [
        guarded(
            partial(_pair, layout, spec, folder, control), layout.root, f"saliency of {folder.name}"
        )
        for spec, folder in folders.items()
    ]
    return text + "".join(parts)


def _link_of(folder: Path | None) -> float | None:
    """The best link an objective's ``crossmodal.json`` records (None when unreadable)."""
    if folder is None:
        return None
    try:
        return float(read_json(folder / "crossmodal.json")["link"])
    except (BidsFusionError, KeyError, TypeError, ValueError):
        return None


def _pair(layout: GroupLayout, spec: str, folder: Path, control: float | None) -> str:
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
        link, p, null = (float(document[k]) for k in ("link", "p", "null_95"))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputDataError(
            f"{path}: no valid pair, link and null ({error}); rerun with --eval-only "
            "--analysis saliency"
        ) from None
    names = [relative(path, group_dir), *(relative(p, group_dir) for p in maps.values())]
    retrained = retrained_after(path, layout, spec)
    warning = stale(names[0], [spec], SALIENCY) if retrained else ""
    beside = "" if control is None or spec == CONTROL else f", {CONTROL} {control:.2f}"
    measured = f"link {link:.2f} (null 95 % {null:.2f}{beside}), p = {p:.3f}"
    if p >= ALPHA:
        return (
            heading(spec)
            + warning
            + note(f"no cross-modal pair beats its null: best {measured}")
            + sources(names[:1])
        )
    title = f"{spec}: " + " and ".join(f"{m} dim {dims[m]}" for m in maps)
    images = [(f"{m} dimension {dims[m]}", volume(maps[m], dims[m])) for m in maps]
    return (
        heading(f"{title} ({measured})")
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
