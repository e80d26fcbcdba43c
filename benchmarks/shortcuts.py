"""Does an objective take the site shortcut? The same cohort at growing site confounding.

For each ``--site-confound`` c (default 0, 0.5 and 0.9: P(site B | AD) = (1 + c) / 2,
P(site B | HC) = (1 - c) / 2; site B's T1w has less grey/white contrast and its BOLD more
noise), in ``WORK/site-<c>/`` (each stage is reused when its outputs are there):

1. ``bidsfusion synth`` with the demo's data settings (``--subjects``, one session, 60
   volumes, ``--ad-fraction 0.4 --coupling 3 --effect-strength 3``, seed 0) and the site
   confound, then the participant level;
2. one group run of ``--objective`` (Random AE S L-CL S-AE Supervised) with the demo's
   group settings (16^3, 16 latent dimensions, ``--epochs``, batch 8, 3 folds, half
   held out, 20 trials, peak learning rate 2e-3) and the ``confounds`` analysis only;
3. per objective and modality: the AD-vs-HC hold-out AUC, the site probe's hold-out
   AUC (its null's 95th percentile beside), the AUC with the confounds regressed out
   and leaving each site out (``group/confounds.tsv``, ``controlled_evaluation.tsv``);
   means over folds.

The paper's argument, that a supervised model takes the shortcut and a self-supervised
one less so, predicts that Supervised's AUC grows with c and falls most once the site is
controlled. It is a hypothesis this measures, not a target. About 12 minutes per
confound level for 64 subjects on 2 CPU cores::

    python benchmarks/shortcuts.py /tmp/shortcuts
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bidsfusion.layout import GroupLayout

OBJECTIVES = ("Random", "AE", "S", "L-CL", "S-AE", "Supervised")
DATA = ("--sessions", 1, "--volumes", 60, "--ad-fraction", 0.4, "--coupling", 3,
        "--effect-strength", 3, "--seed", 0)  # fmt: skip
GROUP = ("--input-size", 16, "--latent-dim", 16, "--batch-size", 8, "--folds", 3,
         "--holdout", 0.5, "--n-trials", 20, "--max-lr", 0.002,
         "--analysis", "confounds")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="folder for the datasets and every output")
    parser.add_argument("--subjects", type=int, default=64)
    parser.add_argument("--site-confound", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--objective", nargs="+", default=list(OBJECTIVES))
    return parser


def _run(*args: object) -> float:
    """Run ``bidsfusion ARGS``; its seconds. Exits with its code when it fails."""
    command = [sys.executable, "-m", "bidsfusion", *map(str, args)]
    print("$", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    if code := subprocess.call(command):
        sys.exit(f"benchmark: {' '.join(command[2:])} exited {code}")
    return time.perf_counter() - started


def run_level(work: Path, confound: float, args: argparse.Namespace) -> dict[str, float]:
    """Synthesis, participant and group level of one confound level; their seconds (0 for
    a stage found done)."""
    bids, derivatives = work / "bids", work / "derivatives"
    seconds = {"synth": 0.0, "participant": 0.0, "group": 0.0}
    if not (bids / "participants.tsv").exists():
        seconds["synth"] = _run("synth", bids, "--subjects", args.subjects,
                                "--site-confound", confound, *DATA)  # fmt: skip
    if not (derivatives / "qc.tsv").exists():
        seconds["participant"] = _run(bids, derivatives, "participant", "-w", work / "work",
                                      "--nprocs", 2)  # fmt: skip
    if not GroupLayout.of(derivatives).controlled_evaluation.exists():
        objectives = [a for spec in args.objective for a in ("--objective", spec)]
        seconds["group"] = _run(bids, derivatives, "group", "-w", work / "work", *objectives,
                                "--epochs", args.epochs, *GROUP)  # fmt: skip
    return seconds


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def level_table(derivatives: Path, objectives: list[str]) -> list[list[str]]:
    """Rows: objective, modality, AD AUC, site probe (null), the AUC on the subjects whose
    confounds are all known, with them regressed out, and leaving each site out."""
    layout = GroupLayout.of(derivatives)
    ad = {(r["objective"], r["modality"]): float(r["holdout_auc_mean"])
          for r in _table(layout.evaluation_summary)}  # fmt: skip
    probes: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in _table(layout.confounds):
        if r["variable"] == "site":
            probes[r["objective"], r["modality"]].append((float(r["score"]), float(r["null"])))
    controlled: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in _table(layout.controlled_evaluation):
        controlled[r["objective"], r["modality"], r["control"]].append(float(r["holdout_auc"]))
    rows = []
    for objective in [*objectives, "raw voxels"]:
        for modality in ("T1w", "falff"):
            site = probes.get((objective, modality))
            cells = [
                f"{ad[objective, modality]:.2f}" if (objective, modality) in ad else "-",
                f"{np.mean([s for s, _ in site]):.2f} ({np.mean([n for _, n in site]):.2f})"
                if site else "-",
                *(_mean(controlled.get((objective, modality, c)))
                  for c in ("none", "regressed", "leave-site-out")),
            ]  # fmt: skip
            rows.append([objective, modality, *cells])
    return rows


def _mean(values: list[float] | None) -> str:
    return f"{np.mean(values):.2f}" if values else "-"


def main() -> None:
    args = _parser().parse_args()
    lines = [
        "| site confound | objective | modality | AD AUC | site probe AUC (null 95 %) "
        "| AUC, subjects with every confound | confounds regressed | leave site out |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for confound in args.site_confound:
        work = args.work / f"site-{confound:g}"
        seconds = run_level(work, confound, args)
        print(f"site confound {confound:g}: " + ", ".join(f"{k} {v:.0f} s"
                                                          for k, v in seconds.items()))  # fmt: skip
        for row in level_table(work / "derivatives", args.objective):
            lines.append(f"| {confound:g} | " + " | ".join(row) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
