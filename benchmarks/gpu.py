"""Training throughput at the paper's scale on one GPU, and what it projects for the paper.

Random volumes of ``--pairs`` pairs at ``--size``^3 are held on the device as training
holds them (:func:`bidsfusion.train.loop.placed`); each configuration then runs the
training loop's own code: one warm-up epoch of a few steps, one timed training epoch
over every pair (class-balanced batches, augmentation on the device, bf16 autocast on
CUDA, RAdam + OneCycle), then the batch-norm refresh over the training pairs and the
validation over ``--validation`` pairs that close every epoch. On CUDA the timed epoch
runs under ``torch.cuda.set_sync_debug_mode("warn")`` and the host synchronisations are
counted (the loss means read at the epoch's end are the one expected). ``encoders`` is
the bare encoders' step (``benchmarks/train_step.py``: the loss the sum of the latents,
no data, no augmentation), the ceiling the objectives are compared with.

The projection for one (objective, fold) of the paper: 200 epochs of the epoch's time
per training pair x 2,815 training pairs (70 % of 4,021) plus the refresh scaled
likewise and the validation scaled to 603 pairs (15 %); the goal it is printed beside
is 5 minutes on one H100.

    python benchmarks/gpu.py                                  # the paper's sizes, CUDA
    python benchmarks/gpu.py --pairs 64 --validation 16 --size 16 --batch 8   # a CPU check
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
from train_step import measure

from bidsfusion.data.sampling import ClassBalancedSampler
from bidsfusion.modality import BUILTIN_MODALITIES
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.objectives.compose import build_objective
from bidsfusion.plugins import registered
from bidsfusion.train.loop import FoldData, _Fold, placed, steps_per_epoch
from bidsfusion.train.settings import TrainSettings

PAPER_TRAINING_PAIRS = 2815
"""70 % of the paper's 4,021 pairs."""
PAPER_VALIDATION_PAIRS = 603
"""15 % of them."""
PAPER_EPOCHS = 200
GOAL_S = 300.0
"""One (objective, fold) of the paper in under 5 minutes on one H100."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4021, help="training pairs of the epoch")
    parser.add_argument("--validation", type=int, default=603, help="validation pairs")
    parser.add_argument("--size", type=int, default=64, help="cubic input edge (voxels)")
    parser.add_argument("--batch", type=int, default=64, help="pairs per step")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--objective", nargs="+", default=["S", "L-CL-CS-S"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    return parser


def random_pairs(n: int, size: int, seed: int) -> FoldData:
    """``n`` pairs of standard-normal volumes, labels alternating AD / HC."""
    generator = torch.Generator().manual_seed(seed)
    volumes = {
        m: torch.randn(n, 1, size, size, size, generator=generator) for m in BUILTIN_MODALITIES
    }
    return FoldData(volumes, torch.arange(n) % 2)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(device: torch.device, work) -> float:  # type: ignore[no-untyped-def]
    _synchronize(device)
    started = time.perf_counter()
    work()
    _synchronize(device)
    return time.perf_counter() - started


def measure_epoch(spec: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Seconds of the training epoch, the refresh and the validation; host syncs per step;
    peak device memory (GiB, CUDA)."""
    torch.manual_seed(0)
    model = MultimodalModel(BUILTIN_MODALITIES, registered("encoders")["dcgan"], (args.size,) * 3)
    objective = build_objective(spec, BUILTIN_MODALITIES, model.dims(), registered("objectives"))
    settings = TrainSettings(
        epochs=2, batch_size=args.batch, device=device, progress=False,
        channels_last=args.channels_last, compile=args.compile,
    )  # fmt: skip
    train, validation = placed(
        (random_pairs(args.pairs, args.size, 0), random_pairs(args.validation, args.size, 1)),
        device,
    )
    steps = steps_per_epoch(len(train), args.batch)
    fold = _Fold(model, objective, settings, device, Path(tempfile.mkdtemp()), steps, {})
    sampler = ClassBalancedSampler(train.labels.tolist(), seed=0)
    fold.steps = min(3, steps)
    fold.train_epoch(train, sampler, 1, lambda step: None)
    fold.steps = steps
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epoch = _timed(device, lambda: fold.train_epoch(train, sampler, 2, lambda step: None))
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return {
        "epoch_s": epoch,
        "refresh_s": _timed(device, lambda: fold.refresh_batch_norm(train)),
        "validate_s": _timed(device, lambda: fold.validate(validation)),
        "syncs_per_step": syncs / steps,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0,
        "pairs_trained": steps * args.batch,
    }


def paper_fold_s(row: dict[str, float], args: argparse.Namespace) -> float:
    """Seconds of one (objective, fold) of the paper, from one measured epoch."""
    per_pair = (row["epoch_s"] + row["refresh_s"]) / row["pairs_trained"]
    validation = row["validate_s"] / args.validation * PAPER_VALIDATION_PAIRS
    return PAPER_EPOCHS * (per_pair * PAPER_TRAINING_PAIRS + validation)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    threads = f"{torch.get_num_threads()} threads"
    hardware = torch.cuda.get_device_name() if name == "cuda" else threads
    print(
        f"# {name} ({hardware}), torch {torch.__version__}, {args.size}^3, batch {args.batch}, "
        f"{args.pairs} training and {args.validation} validation pairs, "
        f"channels_last {args.channels_last}, compile {args.compile}"
    )
    bare = measure("encoders", args.size, args.batch, 5, 2, name)
    print(f"encoders: {args.batch / bare['step_s']:.1f} pairs/s (bare step, random inputs)")
    print(
        f"{'objective':<12}{'pairs/s':>9}{'epoch s':>9}{'refresh s':>11}{'validate s':>12}"
        f"{'syncs/step':>12}{'peak GiB':>10}{'paper fold min':>16}  goal"
    )
    for spec in args.objective:
        row = measure_epoch(spec, args, device)
        fold_s = paper_fold_s(row, args)
        verdict = "met" if fold_s < GOAL_S else "not met"
        print(
            f"{spec:<12}{row['pairs_trained'] / row['epoch_s']:>9.1f}{row['epoch_s']:>9.1f}"
            f"{row['refresh_s']:>11.1f}{row['validate_s']:>12.1f}{row['syncs_per_step']:>12.2f}"
            f"{row['peak_gib']:>10.1f}{fold_s / 60:>16.1f}  < {GOAL_S / 60:.0f} min: {verdict}",
            flush=True,
        )


if __name__ == "__main__":
    main()
