"""Per-step seconds and peak memory of the participant level for one realistic subject.

A ``bidsfusion synth`` subject (one session, 200 volumes) is resampled onto
realistic acquisition grids: T1w 1 mm, 176x240x256 (sagittal slab centred on
the head); bold 64x64x36 at 3.5 mm. Then:

- fALFF alone on the native bold series (inside its EPI mask), best of 3;
- the whole participant level through the CLI in a subprocess (``--nprocs``),
  its wall time, each nipype node's duration (from the node results in the work
  directory) and the peak resident memory of the largest process
  (``ru_maxrss`` of the waited-for children: the CLI and its nipype workers).

    python benchmarks/participant.py --nprocs 2
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn.image import resample_img

from bidsfusion.preprocess.falff import falff
from bidsfusion.preprocess.mask import epi_mask
from bidsfusion.synth.dataset import make_dataset

T1_SHAPE, T1_MM = (176, 240, 256), 1.0
BOLD_SHAPE, BOLD_MM = (64, 64, 36), 3.5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, default=2, help="nipype MultiProc processes")
    parser.add_argument("--volumes", type=int, default=200, help="bold volumes")
    parser.add_argument("--keep", type=Path, help="keep the dataset and outputs in this folder")
    return parser


def _centred_affine(image: nib.Nifti1Image, shape: tuple[int, ...], voxel_mm: float):
    """A RAS-diagonal affine of ``shape`` voxels of ``voxel_mm`` centred on the image's FOV."""
    centre = image.affine @ np.append((np.array(image.shape[:3]) - 1) / 2, 1.0)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = centre[:3] - voxel_mm * (np.array(shape) - 1) / 2
    return affine


def _resample_in_place(path: Path, shape: tuple[int, ...], voxel_mm: float) -> tuple:
    image = nib.load(path)
    out = resample_img(
        image,
        target_affine=_centred_affine(image, shape, voxel_mm),
        target_shape=shape,
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    data = np.asarray(out.dataobj, dtype=np.float32)
    resized = nib.Nifti1Image(np.clip(data, 0, None), out.affine, image.header)
    resized.set_sform(out.affine, code=1)
    resized.set_qform(out.affine, code=1)
    nib.save(resized, path)
    return resized.shape


def make_subject(root: Path, n_volumes: int) -> Path:
    """One synthetic subject at realistic size; returns the BIDS root."""
    bids = root / "bids"
    make_dataset(bids, n_subjects=1, seed=0, max_sessions=1, n_volumes=n_volumes, n_jobs=1)
    (t1w,) = bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz")
    (bold,) = bids.glob("sub-*/ses-*/func/*_bold.nii.gz")
    print(f"T1w  {_resample_in_place(t1w, T1_SHAPE, T1_MM)} at {T1_MM} mm")
    print(f"bold {_resample_in_place(bold, BOLD_SHAPE, BOLD_MM)} at {BOLD_MM} mm")
    return bids


def time_falff(bids: Path) -> float:
    """Best-of-3 seconds of fALFF on the native bold (masked), excluding I/O."""
    (bold,) = bids.glob("sub-*/ses-*/func/*_bold.nii.gz")
    image = nib.load(bold)
    data = np.asarray(image.dataobj, dtype=np.float32)
    mask = epi_mask(data.mean(axis=3))
    tr = float(image.header["pixdim"][4])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        falff(data, tr, mask=mask)
        times.append(time.perf_counter() - start)
    return min(times)


def node_durations(work: Path) -> list[tuple[str, float]]:
    """(node name, seconds) of every executed nipype node in the work directory."""
    from nipype.utils.filemanip import loadpkl

    rows = []
    for result in sorted(work.rglob("result_*.pklz")):
        runtime = getattr(loadpkl(result), "runtime", None)
        if runtime is not None and getattr(runtime, "duration", None) is not None:
            rows.append((result.parent.name, float(runtime.duration)))
    return rows


def run_participant(bids: Path, out: Path, work: Path, nprocs: int) -> float:
    """Wall seconds of ``bidsfusion BIDS OUT participant`` in a subprocess."""
    command = [sys.executable, "-m", "bidsfusion", str(bids), str(out), "participant"]
    command += ["-w", str(work), "--nprocs", str(nprocs), "--omp-nthreads", str(nprocs)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        bids = make_subject(root, args.volumes)
        print(f"fALFF alone: {time_falff(bids):.3f} s")
        wall = run_participant(bids, root / "out", root / "work", args.nprocs)
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        print(f"{'node':<60} seconds")
        for name, seconds in node_durations(root / "work"):
            print(f"{name:<60} {seconds:7.2f}")
        print(f"participant wall time: {wall:.1f} s with --nprocs {args.nprocs}")
        print(f"peak resident memory of one process: {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
