"""Throughput of one training step (forward + backward + RAdam step) per objective.

Each configuration runs in a fresh subprocess so that its peak memory is its
own: ``ru_maxrss`` of the process on the CPU (the Python and torch baseline
included), ``torch.cuda.max_memory_allocated`` on CUDA (bf16 autocast there,
as in training). ``encoders`` is the two bare encoders, the loss the sum of
their latents; every other row adds that objective and its heads/decoders.
Inputs are random, already on the device: no data loading, no augmentation.
The ratio to the bare encoders uses wall time on CUDA and the process's CPU
time on the CPU (steadier than wall time on a shared machine).

    python benchmarks/train_step.py --size 64 --batch 16 --steps 10 --device auto
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch

from bidsfusion.modality import BUILTIN_MODALITIES

CONFIGS = ("encoders", "L", "CL", "CS", "S", "L-CL-CS-S", "AE", "S-AE", "MMVAE")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="cubic input edge (voxels)")
    parser.add_argument("--batch", type=int, default=16, help="pairs per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--only", choices=CONFIGS, help=argparse.SUPPRESS)
    return parser


def _build(config: str, size: int, device: torch.device) -> tuple[Any, Any, list[Any]]:
    """Model, objective (None for ``encoders``) and their parameters, on ``device``."""
    from bidsfusion.models.multimodal import MultimodalModel
    from bidsfusion.objectives.compose import build_objective
    from bidsfusion.plugins import registered

    torch.manual_seed(0)
    model = MultimodalModel(BUILTIN_MODALITIES, registered("encoders")["dcgan"], (size,) * 3).to(
        device
    )
    if config == "encoders":
        return model, None, list(model.parameters())
    objective = build_objective(config, BUILTIN_MODALITIES, model.dims(), registered("objectives"))
    objective.to(device)
    return model, objective, list(dict.fromkeys([*model.parameters(), *objective.parameters()]))


def measure(config: str, size: int, batch: int, steps: int, warmup: int, name: str) -> dict:
    """Wall and process CPU seconds per step and peak memory (MiB) of ``config``."""
    device = torch.device(name)
    model, objective, parameters = _build(config, size, device)
    optimizer = torch.optim.RAdam(parameters, lr=4e-4)
    inputs = {m: torch.randn(batch, 1, size, size, size, device=device) for m in BUILTIN_MODALITIES}
    inputs["label"] = torch.arange(batch, device=device) % 2
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            outputs = model(inputs)
            if objective is None:
                loss = sum(output.latent.float().sum() for output in outputs.values())
            else:
                loss = objective(outputs, inputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {
        "config": config,
        "step_s": (time.perf_counter() - started) / steps,
        "cpu_s": (time.process_time() - cpu_started) / steps,
        "peak_mib": peak,
    }


def _run_isolated(config: str, args: argparse.Namespace, device: str) -> dict:
    command = [sys.executable, __file__, "--only", config, "--device", device]
    command += ["--size", str(args.size), "--batch", str(args.batch)]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.only:
        print(
            json.dumps(measure(args.only, args.size, args.batch, args.steps, args.warmup, device))
        )
        return
    configs = ["encoders", *(c for c in args.configs if c != "encoders")]
    cuda = device == "cuda"
    hardware = torch.cuda.get_device_name() if cuda else f"{torch.get_num_threads()} threads"
    print(
        f"# {device} ({hardware}), torch {torch.__version__}, {args.size}^3, batch {args.batch}, "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    basis = "step_s" if cuda else "cpu_s"
    memory = "peak MiB (cuda allocated)" if cuda else "peak MiB (maxrss)"
    print(
        f"{'config':<12}{'pairs/s':>9}{'s/step':>9}{'cpu s/step':>12}{'x encoders':>12}  {memory}"
    )
    base = None
    for config in configs:
        row = _run_isolated(config, args, device)
        base = base or row[basis]
        print(
            f"{config:<12}{args.batch / row['step_s']:>9.2f}{row['step_s']:>9.3f}"
            f"{row['cpu_s']:>12.3f}{row[basis] / base:>12.2f}  {row['peak_mib']:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
