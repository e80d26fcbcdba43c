"""Seconds per Optuna study and per trial of the linear evaluation of one (objective,
modality, fold), on planted representations.

A ``representations.npz`` of ``--n-train`` train subjects (and a quarter as many
validation and a fifth as many hold-out ones), ``--features`` dims, a positive
fraction of 0.2 (AD among AD + HC), and one of three kinds of z:

- ``signal``: independent features, class means apart along 4 of them;
- ``noise``: no signal;
- ``collinear``: the ``signal`` features mixed through a random matrix with a
  decaying spectrum (condition number ~1e3), like the strongly correlated latents
  of an untrained encoder: the slowest case for saga at large C.

Prints, per storage, the study's wall (and CPU) seconds, seconds per trial, the part
spent in scikit-learn fits and the saga epochs used (median, max); the load of the
machine shows as wall above CPU:

    python benchmarks/evaluate.py --n-train 500 --features 64 --trials 500 \\
        --storage in-memory journal sqlite
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bidsfusion.evaluate import journal_storage, logreg

KINDS = ("signal", "noise", "collinear")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=500, help="train subjects")
    parser.add_argument("--features", type=int, default=64, help="dims of z")
    parser.add_argument("--trials", type=int, default=500, help="Optuna trials")
    parser.add_argument(
        "--storage",
        nargs="+",
        default=["in-memory", "journal", "sqlite"],
        help="in-memory, journal or sqlite (a new file in a temporary folder; journal is "
        "the group level's default), or an RDB URL",
    )
    parser.add_argument("--kind", nargs="+", choices=KINDS, default=["signal"])
    parser.add_argument("--seed", type=int, default=0)
    return parser


def planted(path: Path, n_train: int, features: int, kind: str, seed: int) -> Path:
    """Write a representations.npz of one modality ``m`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    counts = {"train": n_train, "validation": n_train // 4, "holdout": n_train // 5}
    role = np.repeat(list(counts), list(counts.values()))
    label = (rng.random(len(role)) < 0.2).astype(np.int64)
    z = rng.normal(size=(len(role), features))
    if kind != "noise":
        z[:, :4] += 0.6 * label[:, None]
    if kind == "collinear":
        q, _ = np.linalg.qr(rng.normal(size=(features, features)))
        z = z @ (q * np.logspace(0, -3, features)) @ q.T
    np.savez(
        path,
        subject=np.array([f"s{i:04d}" for i in range(len(role))]),
        group=np.where(label == 1, "AD", "HC"),
        label=label,
        role=role,
        z_m=z.astype(np.float32),
    )
    return path


def measure(path: Path, trials: int, storage: str | None, seed: int) -> dict[str, float]:
    """Run one study; wall seconds, seconds in fits, and saga epochs per fit."""
    fit, spent, epochs = logreg.fit, [0.0], []

    def timed_fit(*args, **kwargs):
        start = time.perf_counter()
        model = fit(*args, **kwargs)
        spent[0] += time.perf_counter() - start
        epochs.append(int(model.n_iter_.max()))
        return model

    logreg.fit = timed_fit
    try:
        start, cpu = time.perf_counter(), time.process_time()
        row = logreg.evaluate_representations(path, "bench", 0, "m", trials, seed, storage)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        logreg.fit = fit
    return {
        "wall": wall,
        "cpu": cpu,
        "fits": spent[0],
        "median_epochs": float(np.median(epochs)),
        "max_epochs": max(epochs),
        "holdout_auc": row.holdout_auc,
    }


def main() -> None:
    args = _parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kind:
            path = planted(Path(tmp) / f"{kind}.npz", args.n_train, args.features, kind, args.seed)
            for name in args.storage:
                storage = {
                    "in-memory": None,
                    "sqlite": f"sqlite:///{tmp}/{kind}.db",
                    "journal": journal_storage(Path(tmp) / f"{kind}.journal"),
                }.get(name, name)
                m = measure(path, args.trials, storage, args.seed)
                print(
                    f"{kind:9} {name:9} {args.trials} trials, {args.n_train} x {args.features}:"
                    f" {m['wall']:.1f} s/study ({m['cpu']:.1f} s CPU),"
                    f" {1e3 * m['wall'] / args.trials:.1f} ms/trial"
                    f" ({1e3 * m['fits'] / args.trials:.1f} ms fitting); saga epochs median"
                    f" {m['median_epochs']:.0f}, max {m['max_epochs']}; hold-out AUC"
                    f" {m['holdout_auc']:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
