"""QC figures of the participant level: template outline over a grid image; motion traces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

SLICES = (0.3, 0.4, 0.5, 0.6, 0.7)
"""Slice positions as fractions of each axis."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def registration_figure(grid_file: Path, out_png: Path, title: str) -> Path:
    """Slices of a 64^3 grid image with the template's brain outline and WM edge in red."""
    from bidsfusion.nifti import read_data

    plt = _pyplot()
    from bidsfusion.preprocess.mask import grid_brain_mask
    from bidsfusion.space import grid_template

    data = read_data(grid_file, ndim=3)[0]
    template, mask = grid_template(), grid_brain_mask()
    brain = data[mask > 0] if np.any(mask > 0) else data.ravel()
    # 0 to the 99th percentile; a signed map (a plugin's) from its 1st percentile
    vmin, vmax = min(0.0, np.percentile(brain, 1)), np.percentile(brain, 99)
    fig, axes = plt.subplots(3, len(SLICES), figsize=(2 * len(SLICES), 6.4))
    for row, axis in enumerate((2, 1, 0)):
        for col, fraction in enumerate(SLICES):
            index = int(fraction * data.shape[axis])
            take = lambda volume, a=axis, i=index: np.take(volume, i, axis=a).T  # noqa: E731
            ax = axes[row, col]
            ax.imshow(take(data), cmap="gray", origin="lower", vmin=vmin, vmax=vmax)
            ax.contour(take(mask), levels=[0.5], colors="r", linewidths=0.8)
            ax.contour(take(template), levels=[0.6 * template.max()], colors="y", linewidths=0.5)
            ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def motion_figure(confounds_tsv: Path, out_png: Path, title: str) -> Path:
    """Translations (mm), rotations (degrees) and framewise displacement (mm) over time."""
    plt = _pyplot()
    table = np.genfromtxt(confounds_tsv, names=True, delimiter="\t")
    fig, axes = plt.subplots(3, 1, figsize=(7, 5), sharex=True)
    for name in ("trans_x", "trans_y", "trans_z"):
        axes[0].plot(table[name], label=name)
    for name in ("rot_x", "rot_y", "rot_z"):
        axes[1].plot(np.degrees(table[name]), label=name)
    axes[2].plot(table["framewise_displacement"], color="k")
    for ax, unit in zip(axes, ("mm", "degrees", "FD (mm)"), strict=True):
        ax.set_ylabel(unit)
        if unit != "FD (mm)":
            ax.legend(fontsize=6, loc="upper right")
    axes[2].set_xlabel("volume")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


class _FigureInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="grid image or confounds TSV")
    kind = traits.Enum("registration", "motion", mandatory=True)
    title = traits.Str("", usedefault=True)


class _FigureOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="PNG")


class QCFigure(SimpleInterface):
    """Draw one QC figure (registration outline or motion traces) into the node folder."""

    input_spec = _FigureInputSpec
    output_spec = _FigureOutputSpec

    def _run_interface(self, runtime):
        draw = registration_figure if self.inputs.kind == "registration" else motion_figure
        out = Path(os.getcwd()) / f"{self.inputs.kind}.png"
        self._results["out_file"] = str(draw(Path(self.inputs.in_file), out, self.inputs.title))
        return runtime
