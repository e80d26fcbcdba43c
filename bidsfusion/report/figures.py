"""The report's figures, each returned as PNG bytes (matplotlib's Agg backend; every
figure is closed once saved).

1. :func:`evaluation_figure`: mean hold-out ROC AUC +- sd over folds, one panel per
   modality, objectives sorted (the paper's Fig. 2), the ``Random`` control marked.
2. :func:`similarity_figure`: CKA and SVCCA per objective and group.
3. :func:`training_figure`: one objective's loss terms per epoch, train and validation,
   beside their chance levels, and validation pair retrieval beside its chance.
4. :func:`probe_figure`: the nuisance probes' scores, objectives by variable.
5. :func:`brain_figure`: volumes as slices over nilearn's bundled MNI152 template
   (saliency maps, group-difference maps).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from bidsfusion.objectives.untrained import CONTROL

CHANCE_AUC = 0.5
DPI = 90
TRAIN, VALIDATION, CONTROL_COLOUR, BAR = "tab:blue", "tab:orange", "tab:red", "tab:blue"
SPIKE = 10
"""How far beyond its usual range a training curve's value is a spike the y axis omits."""
GROUP_COLOURS = ("tab:purple", "tab:green", "tab:gray", "tab:olive", "tab:cyan")


class Bar(NamedTuple):
    """One objective's mean hold-out AUC and its sd over folds (None: one fold)."""

    objective: str
    mean: float
    sd: float | None


class ProbeCell(NamedTuple):
    """One nuisance probe of an objective: its ``column`` (variable and modality), the mean
    score over folds, the metric's chance level, and whether it beat its null in every
    fold."""

    objective: str
    column: str
    score: float
    chance: float
    beats: bool


class Measure(NamedTuple):
    """One similarity value: a pair of modalities, measure, objective, group, one fold's
    value (on equal-size subsets of the groups) and the 95th percentile of its null."""

    pair: str
    measure: str
    objective: str
    group: str
    value: float
    null: float = float("nan")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _subplots(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """``plt.subplots(*args, **kwargs)``; the figure is closed on leaving, whatever happened."""
    plt = _pyplot()
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def _png(fig: Any) -> bytes:
    """``fig`` as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def evaluation_figure(bars: Mapping[str, Sequence[Bar]]) -> bytes:
    """Horizontal bars of mean hold-out AUC with sd error bars, one panel per modality,
    best objective on top; ``Random`` in red and named in the legend; chance 0.5 dashed."""
    n = max(len(b) for b in bars.values())
    size = (5.4 * len(bars), 1.2 + 0.32 * n)
    with _subplots(1, len(bars), figsize=size, squeeze=False, sharex=True) as (fig, axes):
        for ax, (modality, rows) in zip(axes[0], bars.items(), strict=True):
            _auc_panel(ax, modality, rows)
        plt = _pyplot()
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=BAR, alpha=0.85),
            plt.Rectangle((0, 0), 1, 1, color=CONTROL_COLOUR, alpha=0.85),
            plt.Line2D([], [], color="k", linestyle="--"),
            plt.Line2D([], [], color=CONTROL_COLOUR, linestyle=":"),
        ]
        labels = [
            "objective",
            f"{CONTROL} (untrained control)",
            "chance (0.5)",
            f"{CONTROL}'s mean",
        ]
        fig.legend(
            handles,
            labels,
            loc="upper center",
            ncol=4,
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )
        fig.tight_layout()
        return _png(fig)


def _auc_panel(ax: Any, modality: str, rows: Sequence[Bar]) -> None:
    """One modality's bars, best on top, with Random's mean dotted and chance dashed."""
    ordered = sorted(rows, key=lambda b: (-b.mean, b.objective))[::-1]
    y = np.arange(len(ordered))
    colours = [CONTROL_COLOUR if b.objective == CONTROL else BAR for b in ordered]
    errors = [0.0 if b.sd is None else b.sd for b in ordered]
    ax.barh(y, [b.mean for b in ordered], xerr=errors, color=colours, capsize=2, alpha=0.85)
    ax.set_yticks(y, [_bar_label(b) for b in ordered], fontsize=8)
    ax.axvline(CHANCE_AUC, color="k", linestyle="--", linewidth=1)
    for i, b in enumerate(ordered):
        ax.text(0.01, i, f"{b.mean:.2f}", va="center", fontsize=7, color="white")
        if b.objective == CONTROL:
            ax.axvline(b.mean, color=CONTROL_COLOUR, linestyle=":", linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_title(modality, fontsize=10)
    ax.set_xlabel("hold-out ROC AUC (mean +- sd over folds)", fontsize=8)


def _bar_label(bar: Bar) -> str:
    return f"{CONTROL} (control)" if bar.objective == CONTROL else bar.objective


def similarity_figure(values: Sequence[Measure]) -> bytes:
    """Grouped bars, mean +- sd over folds: one row of panels per pair of modalities, one
    panel per measure, objectives along x, one bar per group."""
    pairs = list(dict.fromkeys(v.pair for v in values))
    measures = list(dict.fromkeys(v.measure for v in values))
    objectives = sorted({v.objective for v in values})
    groups = list(dict.fromkeys(v.group for v in values))
    width = max(4.5, 0.9 * len(objectives) + 1.5) * len(measures)
    size = (width, 3.2 * len(pairs))
    with _subplots(len(pairs), len(measures), figsize=size, squeeze=False) as (fig, axes):
        for row, pair in enumerate(pairs):
            for col, measure in enumerate(measures):
                _similarity_panel(axes[row, col], values, (pair, measure), objectives, groups)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            title="group",
            fontsize=8,
            title_fontsize=8,
            frameon=False,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
        )
        fig.tight_layout()
        return _png(fig)


def _similarity_panel(
    ax: Any,
    values: Sequence[Measure],
    panel: tuple[str, str],
    objectives: Sequence[str],
    groups: Sequence[str],
) -> None:
    """One (pair, measure): a bar per objective and group, mean +- sd over folds."""
    width = 0.8 / len(groups)
    for g, group in enumerate(groups):
        chosen = [_fold_values(values, *panel, o, group) for o in objectives]
        x = np.arange(len(objectives)) + (g - (len(groups) - 1) / 2) * width
        means = [np.mean(c) if c else np.nan for c in chosen]
        sds = [np.std(c, ddof=1) if len(c) > 1 else 0.0 for c in chosen]
        colour = GROUP_COLOURS[g % len(GROUP_COLOURS)]
        ax.bar(x, means, width, yerr=sds, capsize=2, color=colour, label=group)
        nulls = [_fold_nulls(values, *panel, o, group) for o in objectives]
        ticks = [np.mean(n) if n else np.nan for n in nulls]
        ax.scatter(x, ticks, marker="_", s=160, color="k", zorder=3,
                   label="null 95 %" if g == 0 else None)  # fmt: skip
    ax.set_xticks(np.arange(len(objectives)), objectives, rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="k", linewidth=0.6)
    pair, measure = panel
    ax.set_title(f"{measure.upper()} ({pair})", fontsize=10)


def _fold_nulls(
    values: Sequence[Measure], pair: str, measure: str, objective: str, group: str
) -> list[float]:
    """The finite per-fold null percentiles of one (pair, measure, objective, group)."""
    key = (pair, measure, objective, group)
    return [v.null for v in values if v[:4] == key and np.isfinite(v.null)]


def _fold_values(
    values: Sequence[Measure], pair: str, measure: str, objective: str, group: str
) -> list[float]:
    """The finite per-fold values of one (pair, measure, objective, group)."""
    key = (pair, measure, objective, group)
    return [v.value for v in values if v[:4] == key and np.isfinite(v.value)]


def training_figure(histories: Mapping[int, Mapping[str, np.ndarray]], title: str) -> bytes:
    """Small multiples of one objective: a panel per term (``loss``, each term and
    penalty) with train (blue) and validation (orange) per fold and their chance levels
    dashed, and a panel of validation pair retrieval (latents solid, the objective's critic
    dotted) against its chance level."""
    plt = _pyplot()
    first = next(iter(histories.values()))
    terms = [c[6:] for c in first if c.startswith("train_") and not c.endswith("_chance")]
    retrieval = [
        c
        for c in first
        if c.startswith(("val_retrieval_", "val_critic_")) and c != "val_retrieval_chance"
    ]
    panels = len(terms) + bool(retrieval)
    columns = min(panels, 4)
    rows = -(-panels // columns)
    size = (3.4 * columns, 2.5 * rows)
    with _subplots(rows, columns, figsize=size, squeeze=False) as (fig, axes):
        for ax, term in zip(axes.flat, terms, strict=False):
            _term_panel(ax, histories, term)
        if retrieval:
            _retrieval_panel(axes.flat[len(terms)], histories, retrieval)
        for ax in list(axes.flat)[panels:]:
            ax.set_axis_off()
        handles = [
            plt.Line2D([], [], color=TRAIN),
            plt.Line2D([], [], color=VALIDATION),
            plt.Line2D([], [], color=TRAIN, linestyle="--"),
            plt.Line2D([], [], color=VALIDATION, linestyle="--"),
        ]
        labels = ["train", "validation", "train chance", "validation chance"]
        fig.legend(handles, labels, loc="upper right", ncol=4, fontsize=8, frameon=False)
        folds = ", ".join(str(f) for f in histories)
        fig.suptitle(f"{title} (folds {folds}; one line per fold)", fontsize=10, x=0.01, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        return _png(fig)


def _term_panel(ax: Any, histories: Mapping[int, Mapping[str, np.ndarray]], term: str) -> None:
    for columns in histories.values():
        epoch = columns["epoch"]
        for split, colour in (("train", TRAIN), ("val", VALIDATION)):
            if f"{split}_{term}" in columns:
                ax.plot(epoch, columns[f"{split}_{term}"], color=colour, linewidth=1, alpha=0.8)
            if f"{split}_{term}_chance" in columns:
                chance = columns[f"{split}_{term}_chance"]
                ax.plot(epoch, chance, color=colour, linestyle="--", linewidth=1)
    clipped = _robust_limits(ax, [line.get_ydata() for line in ax.get_lines()])
    ax.set_title(f"{term} (y clipped)" if clipped else term, fontsize=9)
    _epoch_axis(ax)
    ax.tick_params(labelsize=7)


def _epoch_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _robust_limits(ax: Any, series: Sequence[np.ndarray]) -> bool:
    """Leave out of the y range the spikes that would flatten every curve (values beyond
    the 5th-95th percentile range by more than :data:`SPIKE` times its width); whether it
    did."""
    values = np.concatenate([np.asarray(s, dtype=float) for s in series])
    values = values[np.isfinite(values)]
    if values.size < 10:
        return False
    low, high = np.percentile(values, [5, 95])
    spread = max(high - low, 1e-12)
    kept = values[(values >= low - SPIKE * spread) & (values <= high + SPIKE * spread)]
    if len(kept) == len(values):
        return False
    margin = 0.05 * max(kept.max() - kept.min(), 1e-12)
    ax.set_ylim(kept.min() - margin, kept.max() + margin)
    return True


def _retrieval_panel(
    ax: Any, histories: Mapping[int, Mapping[str, np.ndarray]], columns: Sequence[str]
) -> None:
    for history in histories.values():
        epoch = history["epoch"]
        for column in columns:
            style = ":" if column.startswith("val_critic_") else "-"
            ax.plot(epoch, history[column], color=VALIDATION, linewidth=1, alpha=0.8, ls=style)
        if "val_retrieval_chance" in history:
            ax.plot(epoch, history["val_retrieval_chance"], color=VALIDATION, linestyle="--")
    pairs = ", ".join(c[len("val_retrieval_") :] for c in columns if c.startswith("val_retrieval_"))
    critic = ", ".join(c[len("val_critic_") :] for c in columns if c.startswith("val_critic_"))
    title = f"validation pair retrieval ({pairs})" if pairs else "validation pair retrieval"
    ax.set_title(f"{title}\ncritic, dotted: {critic}" if critic else title, fontsize=9)
    _epoch_axis(ax)
    ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=7)


def brain_figure(
    images: Sequence[tuple[str, Any]],
    cmap: str = "hot",
    vmax: float | None = None,
    threshold: float | None = None,
) -> bytes:
    """One row of axial slices per ``(title, 3D image)`` over the MNI152 template
    (nilearn's bundled copy: no download), a colour scale per row. ``vmax``: the colour
    scale's end, symmetric about 0 when given (else the map's largest value);
    ``threshold``: the smallest absolute value shown (else the median of the map's
    non-zero voxels: the upper half of a saliency map)."""
    _pyplot()  # the Agg backend, before nilearn imports pyplot
    from nilearn import plotting

    from bidsfusion.space import mni_template

    background = mni_template(1)
    with _subplots(len(images), 1, figsize=(13, 2.6 * len(images)), squeeze=False) as (fig, axes):
        for ax, (title, image) in zip(axes[:, 0], images, strict=True):
            data = np.abs(np.asarray(image.dataobj, dtype=np.float64))
            inside = data[data > 0]
            plotting.plot_stat_map(
                image,
                bg_img=background,
                axes=ax,
                figure=fig,
                display_mode="z",
                cut_coords=(-36, -21, -6, 9, 24, 39, 54),
                cmap=cmap,
                vmax=vmax if vmax is not None else float(data.max()) or 1.0,
                symmetric_cbar=vmax is not None,
                threshold=_median(inside) if threshold is None else threshold,
                title=title,
                annotate=True,
                black_bg=False,
                draw_cross=False,
            )
        return _png(fig)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else 1e-6


def probe_figure(cells: Sequence[ProbeCell], baseline: str) -> bytes:
    """A heat map, objectives (``Random`` then ``baseline`` last) by variable and modality:
    each cell's mean score, coloured by its share of the way from chance to 1, in bold
    where it beat its null in every fold."""
    objectives = sorted({c.objective for c in cells} - {baseline},
                        key=lambda o: (o == CONTROL, o))  # fmt: skip
    objectives += [baseline] if any(c.objective == baseline for c in cells) else []
    columns = sorted({c.column for c in cells})
    share = np.full((len(objectives), len(columns)), np.nan)
    for c in cells:
        share[objectives.index(c.objective), columns.index(c.column)] = (c.score - c.chance) / (
            1 - c.chance
        )
    size = (1.6 + 0.9 * len(columns), 1.0 + 0.45 * len(objectives))
    with _subplots(figsize=size) as (fig, ax):
        image = ax.imshow(np.clip(share, -0.2, 1), cmap="magma_r", vmin=-0.2, vmax=1,
                          aspect="auto")  # fmt: skip
        for c in cells:
            i, j = objectives.index(c.objective), columns.index(c.column)
            ax.text(j, i, f"{c.score:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.55 else "black",
                    fontweight="bold" if c.beats else "normal")  # fmt: skip
        ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(objectives)), objectives, fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the way from chance to perfect")
        fig.tight_layout()
        return _png(fig)
