"""The group level's stages at the paper's scale: seconds, peak memory and how they grow.

A cohort of the paper's size is made cheaply: the participant-level derivatives of
``--seed-subjects`` synthetic subjects (``bidsfusion synth`` then the participant level,
made once in ``WORK/seed``) are hard-linked into 826 subjects, 717 of them with 5 sessions
and 109 with 4 (``sub-<L>_sessions.tsv``: 180 days apart), so that pairing finds 4,021
pairs, with a participants.tsv of about 70 % HC, 15 % AD and 15 % other (the paper's mix).
Each ``--fraction`` of that cohort (default 1/8, 1/4, 1/2, 1) runs in its own process,
at 64^3 on the CPU, stage by stage, with the group level's own functions:

- ``find``: the derivatives found in OUTPUT_DIR (glob, names, QC sidecars, session days);
- ``labels``, ``pairing``, ``splits`` (5 folds, the default hold-out);
- ``cache cold`` / ``cache warm``: the volume cache built from the NIfTI files, then reused;
- ``fold tensors``: one fold's landmarks and its train, validation and evaluation volumes
  normalised (what training holds in memory);
- ``encode``: the evaluation pairs through an untrained DCGAN model;
- ``evaluation``: one (objective, modality, fold) study of ``--trials`` trials (cv tuning)
  on those representations.

Peak memory is the process's resident peak during the stage (``VmHWM``, reset before each
stage), file pages of the memory-mapped cache included (the kernel drops them under
pressure); beside it the anonymous memory held at the stage's end (``RssAnon``: the
tensors). The growth exponent is the slope
of log seconds over log pairs. One training step of S and of L-CL-CS-S at batch 16
(``benchmarks/train_step.py``) gives the training epoch's projection on this machine.

    python benchmarks/scale.py /tmp/scale
    python benchmarks/scale.py /tmp/scale --fraction 0.125 0.25 --trials 50
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PAPER_SUBJECTS, FIVE_SESSIONS, PAPER_PAIRS = 826, 717, 4021
"""717 subjects with 5 sessions and 109 with 4 give the paper's 4,021 pairs."""
SIZE = 64
GROUPS = ("HC",) * 14 + ("AD",) * 3 + ("other",) * 3
"""70 % HC, 15 % AD, 15 % other, cycled over the subjects."""
STAGES = (
    "find",
    "labels",
    "pairing",
    "splits",
    "cache cold",
    "cache warm",
    "fold tensors",
    "encode",
    "evaluation",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="folder for the seed, the cohorts and the logs")
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--seed-subjects", type=int, default=8)
    parser.add_argument("--trials", type=int, default=500, help="Optuna trials of the study")
    parser.add_argument("--nprocs", type=int, default=2, help="processes for the projection")
    parser.add_argument("--only", type=float, help=argparse.SUPPRESS)
    return parser


def _bidsfusion(*args: object) -> None:
    command = [sys.executable, "-m", "bidsfusion", *map(str, args)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def seed_derivatives(work: Path, subjects: int) -> list[dict[str, Path]]:
    """Per seed subject, its T1w and fALFF grid derivatives and their sidecars."""
    bids, out = work / "seed" / "bids", work / "seed" / "derivatives"
    if not (out / "dataset_description.json").is_file():
        _bidsfusion("synth", bids, "--subjects", subjects, "--sessions", 1, "--volumes", 60)
        _bidsfusion(bids, out, "participant", "--nprocs", 2)
    seeds = []
    for t1w in sorted(out.glob("sub-*/ses-*/anat/*_desc-brain_T1w.nii.gz")):
        falff = next(t1w.parent.parent.glob("func/*_stat-falff_boldmap.nii.gz"))
        seeds.append({"anat": t1w, "func": falff})
    return seeds


def sessions_of(subject: int, n_subjects: int) -> int:
    """5 sessions for the first 717/826 of the subjects, 4 for the others."""
    return 5 if subject < round(FIVE_SESSIONS * n_subjects / PAPER_SUBJECTS) else 4


def build_cohort(root: Path, seeds: list[dict[str, Path]], n_subjects: int) -> tuple[Path, Path]:
    """``root/bids`` and ``root/derivatives`` of ``n_subjects`` (reused when complete)."""
    bids, out = root / "bids", root / "derivatives"
    if (root / "complete").is_file():
        return bids, out
    bids.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    seed_out = seeds[0]["anat"].parents[3]
    for folder in (bids, out):
        (folder / "dataset_description.json").write_bytes(
            (seed_out / "dataset_description.json").read_bytes()
        )
    rows = [["participant_id", "diagnosis"]]
    for i in range(n_subjects):
        subject = f"sub-{i:04d}"
        rows.append([subject, GROUPS[i % len(GROUPS)]])
        sessions = [["session_id", "days_since_entry"]]
        for j in range(sessions_of(i, n_subjects)):
            session = f"ses-{j + 1:02d}"
            sessions.append([session, str(180 * j)])
            seed = seeds[(5 * i + j) % len(seeds)]
            for datatype, source in seed.items():
                _link_derivative(source, out / subject / session / datatype, f"{subject}_{session}")
        (bids / subject).mkdir(exist_ok=True)
        _write_tsv(bids / subject / f"{subject}_sessions.tsv", sessions)
    _write_tsv(bids / "participants.tsv", rows)
    (root / "complete").touch()
    return bids, out


def _link_derivative(source: Path, folder: Path, prefix: str) -> None:
    """Hard-link ``source`` and its sidecar into ``folder``, renamed to ``prefix``."""
    folder.mkdir(parents=True, exist_ok=True)
    old = "_".join(source.name.split("_")[:2])
    for path in (source, source.with_name(source.name.replace(".nii.gz", ".json"))):
        target = folder / path.name.replace(old, prefix, 1)
        if not target.exists():
            os.link(path, target)


def _write_tsv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(rows)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _status_gb(key: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmHWM``, ``RssAnon``) in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024 / 1e9
    return math.nan


def _staged(results: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    """Run ``work``, recording its seconds and the resident peak during it."""
    _reset_peak()
    started = time.perf_counter()
    value = work()
    seconds, peak, anon = time.perf_counter() - started, _status_gb("VmHWM"), _status_gb("RssAnon")
    results[name] = {"s": seconds, "gb": peak, "anon_gb": anon}
    print(f"  {name}: {seconds:.1f} s, peak {peak:.2f} GB, anonymous {anon:.2f} GB", flush=True)
    return value


def measure_fraction(work: Path, fraction: float, trials: int, seeds: int) -> dict[str, Any]:
    """Every stage's seconds and peak GB on ``fraction`` of the paper's cohort."""
    import torch

    from bidsfusion.bids import session_days
    from bidsfusion.data.derivatives import find_scans
    from bidsfusion.data.folds import fold_tensors
    from bidsfusion.data.group_inputs import selected_modalities, subject_groups
    from bidsfusion.data.pairs import build_pairs
    from bidsfusion.data.splits import make_splits
    from bidsfusion.data.volumes import VolumeCache
    from bidsfusion.evaluate.logreg import evaluate_representations
    from bidsfusion.models.multimodal import MultimodalModel
    from bidsfusion.options import parse_level
    from bidsfusion.plugins import registered
    from bidsfusion.train.encode import encode

    n_subjects = round(PAPER_SUBJECTS * fraction)
    root = work / f"cohort-{n_subjects}"
    bids, out = build_cohort(root, seed_derivatives(work, seeds), n_subjects)
    config = parse_level([str(bids), str(out), "group", "--input-size", str(SIZE)])
    modalities = selected_modalities(config.data.modality)
    names = [m.name for m in modalities]
    results: dict[str, Any] = {"subjects": n_subjects}

    def find() -> list[Any]:
        raw = [p.name[4:] for p in bids.glob("sub-*") if p.is_dir()]
        days = {s: session_days(bids, s) for s in raw}
        return find_scans(out, modalities, days).scans

    scans = _staged(results, "find", find)
    subjects = {s.subject for s in scans}
    groups = _staged(results, "labels", lambda: subject_groups(bids, config.data, subjects))
    pairs = _staged(results, "pairing", lambda: build_pairs(scans, names))
    results["pairs"] = len(pairs)
    ordered = sorted(subjects)
    splits = _staged(
        results,
        "splits",
        lambda: make_splits(ordered, [groups[s] for s in ordered], 5, config.data.holdout),
    )

    def cache() -> dict[str, VolumeCache]:
        return {
            m: VolumeCache.build(
                sorted(s.path for s in scans if s.modality == m),
                root / f"{m}-{SIZE}.npy",
                SIZE,
                skip_bad=True,
                workers=2,
            )
            for m in names
        }

    for old in root.glob("*.npy"):
        old.unlink()
    _staged(results, "cache cold", cache)
    caches = _staged(results, "cache warm", cache)
    results["cache_gb"] = sum(p.stat().st_size for p in root.glob("*.npy")) / 1e9
    from bidsfusion.data.group_inputs import GroupInputs
    from bidsfusion.data.pairs import label_of

    inputs = GroupInputs(caches, pairs, groups)
    labels = {s: label_of(g, "AD", "HC") for s, g in groups.items()}
    cpu = torch.device("cpu")
    tensors = _staged(
        results,
        "fold tensors",
        lambda: fold_tensors(inputs, splits.folds[0], splits.holdout, labels, cpu),
    )
    results["train_pairs"] = len(tensors.train)
    torch.manual_seed(0)
    model = MultimodalModel(names, registered("encoders")["dcgan"], (SIZE,) * 3).eval()
    latents = _staged(results, "encode", lambda: encode(model, tensors.evaluation.volumes, 64, cpu))
    path = root / "representations.npz"
    np.savez(
        path,
        subject=np.array(tensors.evaluation.subjects),
        group=np.array([groups[s] for s in tensors.evaluation.subjects]),
        label=tensors.evaluation.labels.numpy(),
        role=np.array([tensors.roles.get(s, "unused") for s in tensors.evaluation.subjects]),
        **{f"z_{m}": z for m, z in latents.items()},
    )
    _staged(
        results,
        "evaluation",
        lambda: evaluate_representations(path, "Random", 0, names[0], trials, tuning="cv"),
    )
    return results


def _exponent(pairs: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log seconds over log pairs."""
    if len(pairs) < 2:
        return math.nan
    return float(np.polyfit(np.log(pairs), np.log(np.maximum(seconds, 1e-3)), 1)[0])


def _training(size: int) -> dict[str, float]:
    """Seconds per pair of one training step, S and L-CL-CS-S, at batch 16 on the CPU."""
    script = Path(__file__).with_name("train_step.py")
    rows = {}
    for config in ("S", "L-CL-CS-S"):
        command = [
            sys.executable,
            str(script),
            "--only",
            config,
            "--device",
            "cpu",
            "--size",
            str(size),
            "--batch",
            "16",
            "--steps",
            "2",
            "--warmup",
            "1",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows[config] = json.loads(done.stdout.strip().splitlines()[-1])["step_s"] / 16
    return rows


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.only is not None:
        result = measure_fraction(args.work, args.only, args.trials, args.seed_subjects)
        print(json.dumps(result))
        return
    runs = []
    for fraction in args.fraction:
        print(f"# fraction {fraction}", flush=True)
        command = [
            sys.executable,
            __file__,
            str(args.work),
            "--only",
            str(fraction),
            "--trials",
            str(args.trials),
            "--seed-subjects",
            str(args.seed_subjects),
        ]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    _print_table(runs, args)


def _print_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    pairs = [run["pairs"] for run in runs]
    header = " | ".join(f"{run['subjects']} subj / {run['pairs']} pairs" for run in runs)
    print(f"\n| stage: s, peak (anonymous) GB | {header} | growth exponent |")
    print("| --- |" + " --- |" * (len(runs) + 1))
    for stage in STAGES:
        cells = " | ".join(
            f"{run[stage]['s']:.1f} s, {run[stage]['gb']:.1f} ({run[stage]['anon_gb']:.1f}) GB"
            for run in runs
        )
        exponent = _exponent(pairs, [run[stage]["s"] for run in runs])
        print(f"| {stage} | {cells} | {exponent:.2f} |")
    print("| cache on disk | " + " | ".join(f"{r['cache_gb']:.1f} GB" for r in runs) + " | |")
    last = runs[-1]
    first_step = sum(
        last[s]["s"] for s in ("find", "labels", "pairing", "splits", "cache warm", "fold tensors")
    )
    peak = max(last[s]["gb"] for s in STAGES)
    anon = max(last[s]["anon_gb"] for s in STAGES)
    study = last["evaluation"]["s"] * 500 / args.trials
    grid = 22 * 2 * 5 * study / args.nprocs
    print(
        f"\nAt {last['pairs']} pairs: peak resident {peak:.1f} GB, "
        f"anonymous {anon:.1f} GB (target < 12 GB); "
        f"time to the first training step with a warm cache {first_step:.0f} s "
        f"(target < 120 s); one 500-trial study {study:.0f} s, the paper's 220 studies on "
        f"{args.nprocs} processes {grid / 3600:.1f} h (target < 1 h)"
    )
    for config, per_pair in _training(SIZE).items():
        epoch = per_pair * last["train_pairs"]
        print(
            f"{config}: {1 / per_pair:.2f} pairs/s at batch 16 on this CPU; an epoch over "
            f"{last['train_pairs']} training pairs {epoch / 60:.0f} min"
        )


if __name__ == "__main__":
    main()
