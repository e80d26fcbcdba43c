"""Training across processes: two gloo ranks on the CPU against one process.

The equality test runs one DDP step of each contrastive term and CCA on two ranks,
each holding 4 of a global batch of 8, and one step of a single process on the 8:
the loss averaged over the ranks (what history.tsv logs) and the gradients DDP
averages must be those of the global batch. Batch norms run in eval mode: in train
mode each rank normalises its own 4 samples (``--sync-bn`` normalises over the
global batch, but SyncBatchNorm runs on CUDA only). The same two ranks then train a
fold, once straight through and once killed and resumed; and ``torchrun`` runs the
group level with two processes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from runner import run_main
from test_group import GROUP_ARGS, write_group_inputs

from bidsfusion.checkpoint import load_checkpoint
from bidsfusion.errors import UsageError
from bidsfusion.models.dcgan import DCGANEncoder
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.objectives.builtin import register_objectives
from bidsfusion.objectives.compose import build_objective
from bidsfusion.objectives.gather import all_gather, global_batch, local_rows, world
from bidsfusion.train.distributed import (
    local_batch_size,
    mean_over_ranks,
    parallel,
    process_group,
    world_size,
)
from bidsfusion.train.loop import ModelWithObjective, train_fold

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

SIZE = 16
LATENT = 32
MODALITIES = ("T1w", "falff")
SPECS = ("L", "CL", "CS", "S", "CCA")
WORLD = 2
GLOBAL_BATCH = 8


def _batch() -> dict[str, torch.Tensor]:
    """8 samples whose brains (positive voxels on a zero background) differ in size, so
    the ranks keep different numbers of brain locations."""
    g = torch.Generator().manual_seed(3)
    grid = torch.arange(SIZE)
    batch = {}
    for m in MODALITIES:
        volumes = torch.rand(GLOBAL_BATCH, 1, SIZE, SIZE, SIZE, generator=g) + 0.5
        for i, volume in enumerate(volumes):
            outside = (grid < 1 + i % 5) | (grid >= SIZE - 1 - i // 2)
            volume[:, outside] = 0
            volume[:, :, outside] = 0
        batch[m] = volumes
    batch["label"] = torch.tensor([1, 0, -1, 0, 1, 1, 0, -1])
    return batch


def _joint(spec: str) -> ModelWithObjective:
    registry: dict[str, object] = {}
    register_objectives(registry.__setitem__)
    torch.manual_seed(0)
    model = MultimodalModel(MODALITIES, DCGANEncoder, (SIZE,) * 3, latent_dim=LATENT)
    objective = build_objective(spec, MODALITIES, model.dims(LATENT), registry)
    return ModelWithObjective(model, objective).eval()


def _step(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, object]:
    """One forward (a fixed seed: CS's draws) and backward; the terms and gradients."""
    torch.manual_seed(1)
    with global_batch():
        terms = module(batch)
    terms["loss"].backward()
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}
    return {"terms": {k: float(v.detach()) for k, v in terms.items()}, "grads": grads}


def _rank_steps(rank: int) -> dict[str, dict[str, object]]:
    """One DDP step of every spec on this rank's rows of the batch."""
    rows = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
    batch = {k: v[rows] for k, v in _batch().items()}
    results = {}
    for spec in SPECS:
        trained = parallel(_joint(spec), torch.device("cpu"), sync_bn=False)
        step = _step(trained, batch)
        step["terms"] = mean_over_ranks(step["terms"], torch.device("cpu"))
        step["grads"] = {n.removeprefix("module."): g for n, g in step["grads"].items()}
        results[spec] = step
    return results


def _rank_training(out: Path) -> dict[str, object]:
    """A 2-epoch fold trained straight through, and killed after epoch 1 then resumed."""
    from test_train import SETTINGS, TRAIN, VALIDATION, build, without_seconds

    settings = dataclasses.replace(SETTINGS, epochs=2)
    straight = train_fold(*build(), TRAIN, VALIDATION, settings, out / "straight")

    def kill_after_epoch_1(epoch: int) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        train_fold(*build(), TRAIN, VALIDATION, settings, out / "resumed", kill_after_epoch_1)
    dist.barrier()  # rank 0 has written last.pt
    model, objective = build(init_seed=5)
    resumed = train_fold(model, objective, TRAIN, VALIDATION, settings, out / "resumed")
    return {
        "histories": [without_seconds(r.history) for r in (straight, resumed)],
        "model": model.state_dict(),
    }


def _rank_main(rank: int, init: str, out: str) -> None:
    """Rank ``rank`` of 2: the equality steps, then the training runs."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        results = {"steps": _rank_steps(rank), "training": _rank_training(Path(out))}
        try:
            parallel(_joint("S"), torch.device("cpu"), sync_bn=True)
        except UsageError as error:
            results["sync_bn"] = str(error)
        torch.save(results, Path(out) / f"rank-{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    """The output folder of the two ranks and what each returned."""
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_rank_main, args=(f"file://{out / 'store'}", str(out)), nprocs=WORLD)
    return out, [torch.load(out / f"rank-{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("spec", SPECS)
def test_two_ranks_compute_the_loss_and_gradients_of_the_global_batch(spec, two_ranks) -> None:
    single = _step(_joint(spec), _batch())
    for ranked in two_ranks[1]:
        terms, grads = ranked["steps"][spec]["terms"], ranked["steps"][spec]["grads"]
        assert terms.keys() == single["terms"].keys()
        for name, value in single["terms"].items():
            assert terms[name] == pytest.approx(value, rel=1e-5, abs=1e-5), name
        assert grads.keys() == single["grads"].keys()
        for name, expected in single["grads"].items():
            if expected is None:
                assert grads[name] is None, name
            else:  # to 1e-4 of the parameter's largest gradient (those of L are ~1e-4)
                scale = float(expected.abs().max())
                assert float((grads[name] - expected).abs().max()) <= 1e-4 * scale, name
    assert any(g is not None and g.abs().sum() > 0 for g in single["grads"].values())


def test_one_process_is_untouched() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    with global_batch():
        assert all_gather(x) is x and world() == (0, 1) and local_rows(3) == slice(0, 3)
    assert world_size() == 1 and local_batch_size(5) == 5
    with process_group("cpu", 1.0):  # no WORLD_SIZE: nothing to join
        assert not dist.is_initialized()
    module = torch.nn.Linear(2, 2)
    assert parallel(module, torch.device("cpu"), sync_bn=True) is module


def test_a_distributed_fold_resumes_to_identical_results(two_ranks) -> None:
    out, ranks = two_ranks
    (straight, resumed), model = ranks[0]["training"]["histories"], ranks[0]["training"]["model"]
    assert len(straight) == 2 and resumed == straight
    for name in ("last.pt", "checkpoint.pt"):
        a, b = (load_checkpoint(out / run / name)["model"] for run in ("straight", "resumed"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    other = ranks[1]["training"]
    assert other["histories"] == ranks[0]["training"]["histories"]  # the ranks agree
    assert all(torch.equal(model[k], other["model"][k]) for k in model)


def test_sync_bn_needs_cuda(two_ranks) -> None:
    assert all("--sync-bn needs CUDA" in ranked["sync_bn"] for ranked in two_ranks[1])


RUN_ARGS = (
    "--skip-bids-validation",
    *("--objective", "L-CL", "--objective", "Random", "--fold", "0"),
    *GROUP_ARGS,
    *("--epochs", "1", "--n-trials", "2", "--omp-nthreads", "1", "--analysis", "none"),
)


def _group_files(out: Path) -> dict[str, object]:
    """What a group run wrote, structurally: file names, history columns and length,
    evaluated and summarised (objective, fold), representation arrays."""
    group = out / "group"
    fold = group / "objective-L-CL" / "fold-0"
    with (fold / "history.tsv").open() as handle:
        history = [line.rstrip("\n").split("\t") for line in handle]
    with np.load(fold / "representations.npz") as npz:
        arrays = {k: npz[k].shape for k in npz.files}

    def keys(table: str, *columns: str) -> list[tuple[str, ...]]:
        with (group / table).open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        return sorted(tuple(row[c] for c in columns) for row in rows)

    return {
        "files": sorted(
            str(p.relative_to(group))
            for p in group.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        ),
        "history": (history[0], len(history)),
        "evaluated": keys("evaluation.tsv", "objective", "modality", "fold"),
        "trained": keys("training_summary.tsv", "objective", "fold"),
        "representations": arrays,
    }


def test_torchrun_trains_the_group_level_like_one_process(tmp_path: Path) -> None:
    bids, out = write_group_inputs(tmp_path / "distributed")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(WORLD), "-m", "bidsfusion", str(bids), str(out)]
    command += ["group", "-w", str(tmp_path / "work"), *RUN_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("\nL-CL ") == 1  # one summary table: rank 0's
    assert "epoch 1/1" in done.stderr and done.stderr.count("epoch 1/1") == 1

    single_bids, single_out = write_group_inputs(tmp_path / "single")
    work = tmp_path / "single-work"
    assert run_main(single_bids, single_out, "group", "-w", work, *RUN_ARGS).code == 0
    distributed, single = _group_files(out), _group_files(single_out)
    assert distributed == single
    assert "objective-L-CL/fold-0/checkpoint.pt" in distributed["files"]
    assert not any("fold-1" in name or "fold-2" in name for name in distributed["files"])
