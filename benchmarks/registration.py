"""Accuracy and seconds of the T1w -> MNI registration on ``bidsfusion synth`` heads,
against their known placement.

For every T1w of a synthetic dataset (``--bids``, or one synthesised here with
``--subjects``, ``--seed`` and ``--coupling``): the registration of the participant
level (:func:`bidsfusion.preprocess.register.register_to_template`), then

- ``dice``: the subject's true brain carried to the 64^3 MNI grid by the estimated
  transform, against the template brain mask (1: perfect; a template brain on the
  scalp gives ~0.77);
- ``scale_ratio``: the estimated scale over the head's true scale (the phantom's own
  size makes it ~1.02-1.03 when registered; ~1.25 on the scalp);
- seconds per registration.

Prints one row per subject below ``--dice`` and a summary::

    python benchmarks/registration.py --subjects 160 --coupling 3
    python benchmarks/registration.py --bids /data/synth160
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bidsfusion.nifti import read_data
from bidsfusion.preprocess.images import array_to_sitk, matrix_from_transform
from bidsfusion.preprocess.mask import grid_brain_mask
from bidsfusion.preprocess.register import register_to_template
from bidsfusion.space import MNI_GRID_AFFINE, MNI_GRID_SHAPE
from bidsfusion.synth.dataset import MIN_VOLUMES, make_dataset

BRAIN_MASK = "sourcedata/synth/masks/space-MNI152NLin2009aSym_res-2mm_desc-brain_mask.nii.gz"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=Path, help="an existing bidsfusion synth dataset")
    parser.add_argument("--subjects", type=int, default=40, help="subjects to synthesise")
    parser.add_argument("--seed", type=int, default=0, help="synth seed")
    parser.add_argument("--coupling", type=float, default=1.0, help="synth --coupling")
    parser.add_argument("--dice", type=float, default=0.9, help="rows printed below this")
    return parser


def _grid_points() -> np.ndarray:
    """RAS mm of every voxel centre of the 64^3 grid, (4, N) homogeneous."""
    index = np.indices(MNI_GRID_SHAPE).reshape(3, -1)
    return MNI_GRID_AFFINE @ np.vstack([index, np.ones(index.shape[1])])


def true_brain_dice(brain: nib.Nifti1Image, to_mni: np.ndarray, mni_to_native: np.ndarray) -> float:
    """Dice of the template brain mask with the true brain (``brain``, in MNI) carried to
    the grid through the estimate ``mni_to_native`` and the truth ``to_mni`` (4x4, RAS)."""
    voxel = np.linalg.inv(brain.affine) @ to_mni @ mni_to_native @ _grid_points()
    values = ndimage.map_coordinates(np.asarray(brain.dataobj), voxel[:3], order=0)
    carried = values.reshape(MNI_GRID_SHAPE) > 0
    template = grid_brain_mask()
    return float(2 * (carried & template).sum() / (carried.sum() + template.sum()))


def measure(bids: Path, dice_below: float) -> None:
    """Register every T1w of ``bids`` and print the rows below ``dice_below`` and a summary."""
    brain = nib.load(bids / BRAIN_MASK)
    dices, ratios, seconds = [], [], []
    for t1w in sorted(bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz")):
        relative = t1w.relative_to(bids)
        truth_file = relative.parent.parent / relative.name.replace(".nii.gz", "_xfm.json")
        truth = json.loads((bids / "sourcedata/synth" / truth_file).read_text())
        data, image = read_data(t1w, ndim=3)
        start = time.perf_counter()
        transform = register_to_template(array_to_sitk(data, image.affine))
        seconds.append(time.perf_counter() - start)
        dice = true_brain_dice(brain, np.array(truth["to_mni"]), matrix_from_transform(transform))
        dices.append(dice)
        ratios.append(transform.GetScale() / truth["head_scale"])
        if dice < dice_below:
            print(f"{t1w.name}: dice {dice:.3f}, scale ratio {ratios[-1]:.3f}", flush=True)
    dices, ratios = np.array(dices), np.array(ratios)
    print(
        f"{len(dices)} T1w: dice median {np.median(dices):.3f}, min {dices.min():.3f}, "
        f"{int((dices < dice_below).sum())} below {dice_below}; scale ratio "
        f"median {np.median(ratios):.3f}, range {ratios.min():.3f}-{ratios.max():.3f}; "
        f"{np.mean(seconds):.1f} s per registration"
    )


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.bids is not None:
        if not (args.bids / BRAIN_MASK).is_file():
            parser.error(f"{args.bids} is not a bidsfusion synth dataset (no {BRAIN_MASK})")
        measure(args.bids, args.dice)
        return
    with tempfile.TemporaryDirectory() as folder:
        bids = Path(folder) / "bids"
        start = time.perf_counter()
        make_dataset(
            bids, n_subjects=args.subjects, seed=args.seed, max_sessions=1, n_volumes=MIN_VOLUMES,
            coupling=args.coupling,
        )  # fmt: skip
        print(f"synthesised {args.subjects} subjects in {time.perf_counter() - start:.0f} s")
        measure(bids, args.dice)


if __name__ == "__main__":
    main()
