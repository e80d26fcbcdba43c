"""The training engine: history, OneCycle, checkpoints, determinism, resume, encode."""

from __future__ import annotations

import csv
import logging
import math
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from bidsfusion.checkpoint import load_checkpoint, save_checkpoint
from bidsfusion.errors import InputDataError, InputMissingError, OutputError, UsageError
from bidsfusion.models.base import Dims
from bidsfusion.models.dcgan import DCGANEncoder
from bidsfusion.models.multimodal import MultimodalModel
from bidsfusion.objectives.builtin import register_objectives
from bidsfusion.objectives.compose import ComposedObjective, build_objective
from bidsfusion.train.encode import encode
from bidsfusion.train.loop import FoldData, FoldResult, steps_per_epoch, train_fold
from bidsfusion.train.settings import TrainSettings, resolve_device

SIZE = 16
LATENT = 32
MODALITIES = ("T1w", "falff")
SPEC = "L-CL-CS"
SETTINGS = TrainSettings(epochs=3, batch_size=8, device="cpu", progress=False)
FILES = ["checkpoint.pt", "history.tsv", "last.pt"]


def registry() -> dict[str, object]:
    reg: dict[str, object] = {}
    register_objectives(reg.__setitem__)
    return reg


def build(spec: str = SPEC, init_seed: int = 0) -> tuple[MultimodalModel, ComposedObjective]:
    torch.manual_seed(init_seed)
    model = MultimodalModel(MODALITIES, DCGANEncoder, (SIZE,) * 3, latent_dim=LATENT)
    return model, build_objective(spec, MODALITIES, model.dims(LATENT), registry())


def random_data(n: int, seed: int) -> FoldData:
    g = torch.Generator().manual_seed(seed)
    volumes = {m: torch.randn(n, 1, SIZE, SIZE, SIZE, generator=g) for m in MODALITIES}
    return FoldData(volumes, torch.arange(n) % 3 - 1)


def paired_data(n: int, seed: int) -> FoldData:
    """A learnable pairing: each sample has its own level; modality 2 = 2 * flip(modality 1) + 1."""
    g = torch.Generator().manual_seed(seed)
    t1 = torch.randn(n, 1, 1, 1, 1, generator=g) + 0.3 * torch.randn(
        n, 1, SIZE, SIZE, SIZE, generator=g
    )
    return FoldData({"T1w": t1, "falff": 2 * t1.flip(-1) + 1}, torch.arange(n) % 3 - 1)


TRAIN, VALIDATION = random_data(24, 0), random_data(8, 1)


def states_equal(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@dataclass
class Run:
    out_dir: Path
    result: FoldResult
    model: MultimodalModel
    objective: ComposedObjective


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """An uninterrupted 3-epoch L-CL-CS run (3 steps of 8 pairs per epoch)."""
    out_dir = tmp_path_factory.mktemp("reference") / "fold-0"
    model, objective = build()
    result = train_fold(model, objective, TRAIN, VALIDATION, SETTINGS, out_dir)
    return Run(out_dir, result, model, objective)


def read_history(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [{k: float(v) for k, v in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


def test_history_has_a_row_per_epoch_and_every_term(reference: Run) -> None:
    columns, rows = read_history(reference.out_dir / "history.tsv")
    names = [f"{t}{s}" for t in ("CL", "CS", "L") for s in ("", "_chance", "_penalty")]
    terms = ["loss", *names]
    critic = [f"val_critic_{e}" for e in ("CL_T1w_falff", "CL_falff_T1w", "CS_T1w_falff")]
    retrieval = ["val_retrieval_T1w_falff", *critic, "val_retrieval_chance"]
    assert columns == [
        "epoch", *[f"train_{t}" for t in terms], *[f"val_{t}" for t in terms], *retrieval,
        "lr", "seconds",
    ]  # fmt: skip
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows == reference.result.history  # floats written exactly
    for row in rows:
        for split in ("train", "val"):
            parts = sum(row[f"{split}_{t}"] for t in names if not t.endswith("_chance"))
            assert row[f"{split}_loss"] == pytest.approx(parts, rel=1e-5)
            # 8 validation pairs, 512 locations at 16^3: 2 log(1 + 7 * 512) per local term
            if split == "val":
                assert row["val_L_chance"] == pytest.approx(2 * math.log(1 + 7 * 512))
        assert row["val_retrieval_chance"] == 1 / 8 and 0 <= row["val_retrieval_T1w_falff"] <= 1
        assert all(row[c] in {k / 16 for k in range(17)} for c in critic)  # 8 rows + 8 columns
        assert row["seconds"] > 0
    assert reference.result.epochs_run == 3


def test_lr_follows_one_cycle(reference: Run) -> None:
    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=SETTINGS.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=SETTINGS.max_lr, total_steps=9, div_factor=SETTINGS.max_lr / SETTINGS.lr
    )
    expected = []
    for step in range(9):
        if step % 3 == 0:
            expected.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    lrs = [row["lr"] for row in reference.result.history]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[0] == pytest.approx(SETTINGS.lr) and lrs[0] < lrs[1] > lrs[2]


def test_checkpoint_holds_the_best_epoch_as_state_dicts(reference: Run) -> None:
    assert sorted(p.name for p in reference.out_dir.iterdir()) == FILES  # no temp files left
    saved = torch.load(reference.out_dir / "checkpoint.pt", weights_only=True)
    assert saved.keys() == {"model", "objective", "epoch", "validation_loss"}
    losses = [row["val_loss"] for row in reference.result.history]
    assert saved["epoch"] == reference.result.best_epoch == int(np.argmin(losses)) + 1
    assert saved["validation_loss"] == reference.result.best_validation_loss == min(losses)
    assert states_equal(saved["model"], reference.model.state_dict())
    assert states_equal(saved["objective"], reference.objective.state_dict())
    last = load_checkpoint(reference.out_dir / "last.pt")
    assert last["epoch"] == 3 and last["history"] == reference.result.history
    assert states_equal(last["best_model"], saved["model"])
    # the last epoch's weights are the best ones exactly when the last epoch is the best
    assert states_equal(last["model"], saved["model"]) == (saved["epoch"] == 3)


def test_training_is_deterministic_for_a_seed(reference: Run, tmp_path: Path) -> None:
    finals = {}
    for seed in (0, 1):
        model, objective = build()
        settings = TrainSettings(**{**asdict(SETTINGS), "seed": seed})
        result = train_fold(model, objective, TRAIN, VALIDATION, settings, tmp_path / f"{seed}")
        finals[seed] = (load_checkpoint(tmp_path / f"{seed}" / "last.pt")["model"], result)
    reference_final = load_checkpoint(reference.out_dir / "last.pt")["model"]
    assert states_equal(finals[0][0], reference_final)
    assert without_seconds(finals[0][1].history) == without_seconds(reference.result.history)
    assert not states_equal(finals[1][0], reference_final)


def test_a_killed_run_resumes_to_identical_results(
    reference: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out_dir = tmp_path / "fold-0"

    def kill_after_epoch_2(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    model, objective = build()
    with pytest.raises(KeyboardInterrupt):
        train_fold(model, objective, TRAIN, VALIDATION, SETTINGS, out_dir, kill_after_epoch_2)
    assert sorted(p.name for p in out_dir.iterdir()) == FILES
    assert len(read_history(out_dir / "history.tsv")[1]) == 2

    model, objective = build(init_seed=99)  # a fresh process: new modules, states from last.pt
    epochs: list[int] = []
    with caplog.at_level(logging.INFO, logger="bidsfusion.train.loop"):
        result = train_fold(model, objective, TRAIN, VALIDATION, SETTINGS, out_dir, epochs.append)
    assert epochs == [3]
    assert "resuming from last.pt after epoch 2/3" in caplog.text
    assert without_seconds(result.history) == without_seconds(reference.result.history)
    assert (result.best_epoch, result.epochs_run) == (reference.result.best_epoch, 3)
    assert states_equal(model.state_dict(), reference.model.state_dict())
    assert states_equal(objective.state_dict(), reference.objective.state_dict())
    last, reference_last = (load_checkpoint(d / "last.pt") for d in (out_dir, reference.out_dir))
    for key in ("model", "objective"):
        assert states_equal(last[key], reference_last[key])


def test_a_finished_run_is_not_retrained(reference: Run, caplog: pytest.LogCaptureFixture) -> None:
    before = {name: (reference.out_dir / name).read_bytes() for name in FILES}
    model, objective = build(init_seed=7)
    epochs: list[int] = []
    with caplog.at_level(logging.INFO, logger="bidsfusion.train.loop"):
        result = train_fold(
            model, objective, TRAIN, VALIDATION, SETTINGS, reference.out_dir, epochs.append
        )
    assert epochs == [] and "not retraining" in caplog.text  # no epoch ran (no timing)
    assert {**asdict(result), "seconds": 0} == {**asdict(reference.result), "seconds": 0}
    assert states_equal(model.state_dict(), reference.model.state_dict())
    assert before == {name: (reference.out_dir / name).read_bytes() for name in FILES}


@pytest.mark.parametrize(
    ("damaged", "damage"),
    [("checkpoint.pt", lambda p: p.write_bytes(p.read_bytes()[:1000])), ("history.tsv", None)],
)
def test_damaged_outputs_of_a_finished_run_are_rewritten_without_retraining(
    reference: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: str, damage
) -> None:
    out_dir = tmp_path / "fold-0"
    shutil.copytree(reference.out_dir, out_dir)
    intact = (reference.out_dir / damaged).read_bytes()
    (damage or (lambda p: p.write_bytes(b"")))(out_dir / damaged)
    epochs: list[int] = []
    with caplog.at_level(logging.WARNING):
        train_fold(*build(), TRAIN, VALIDATION, SETTINGS, out_dir, epochs.append)
    assert epochs == [] and f"{damaged} is missing, unreadable or stale" in caplog.text
    if damaged == "history.tsv":
        assert (out_dir / damaged).read_bytes() == intact
    else:
        saved = load_checkpoint(out_dir / damaged)
        assert saved["epoch"] == reference.result.best_epoch
        assert states_equal(saved["model"], load_checkpoint(reference.out_dir / damaged)["model"])


def test_an_unreadable_last_checkpoint_trains_from_scratch(
    reference: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out_dir = tmp_path / "fold-0"
    shutil.copytree(reference.out_dir, out_dir)
    (out_dir / "last.pt").write_bytes((out_dir / "last.pt").read_bytes()[:1000])
    epochs: list[int] = []
    with caplog.at_level(logging.WARNING):
        train_fold(*build(), TRAIN, VALIDATION, SETTINGS, out_dir, epochs.append)
    assert epochs == [1, 2, 3] and "training from scratch" in caplog.text
    assert len(read_history(out_dir / "history.tsv")[1]) == 3


@pytest.mark.parametrize("change", ["settings", "data"])
def test_other_settings_or_data_train_from_scratch(
    reference: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    out_dir = tmp_path / "fold-0"
    shutil.copytree(reference.out_dir, out_dir)
    model, objective = build()
    epochs: list[int] = []
    settings, key = SETTINGS, ""
    if change == "settings":
        settings = TrainSettings(**{**asdict(SETTINGS), "flip_p": 0.0, "crop_pad": 0})
    else:
        key = "other subjects"
    with caplog.at_level(logging.WARNING, logger="bidsfusion.train.loop"):
        train_fold(
            model, objective, TRAIN, VALIDATION, settings, out_dir, epochs.append, data_key=key
        )
    assert epochs == [1, 2, 3] and "other settings or data" in caplog.text


def test_the_loss_decreases_on_a_learnable_pairing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model, objective = build("S")
    settings = TrainSettings(epochs=8, batch_size=8, max_lr=0.002, device="cpu", progress=True)
    with caplog.at_level(logging.INFO, logger="bidsfusion.train.loop"):
        result = train_fold(
            model, objective, paired_data(24, 0), paired_data(8, 10), settings, tmp_path / "f"
        )
    train = [row["train_loss"] for row in result.history]
    val = [row["val_loss"] for row in result.history]
    assert train[-1] < train[0] and val[-1] < val[0]
    assert "#" * 30 + "] 3/3" in capsys.readouterr().err
    assert "f: epoch 8/8 loss" in caplog.text and "elapsed, about 0 s left" in caplog.text
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert [m.split()[2] for m in info if ": epoch " in m] == [f"{e}/8" for e in range(1, 9)]


def test_milestones_are_a_tenth_of_the_epochs_and_time_left_is_their_rate() -> None:
    from bidsfusion.timing import duration, time_left
    from bidsfusion.train.progress import is_milestone

    assert [e for e in range(1, 201) if is_milestone(e, 200)] == [1, *range(20, 201, 20)]
    assert [e for e in range(1, 4) if is_milestone(e, 3)] == [1, 2, 3]
    assert duration(45.4) == "45 s" and duration(200) == "3 min 20 s"
    assert duration(3725) == "1 h 2 min"
    import time

    text = time_left(time.perf_counter() - 10.0, 2, 6)
    assert text.startswith("10 s elapsed, about 30 s left")


def test_encode_returns_latents_without_augmentation(reference: Run) -> None:
    model = reference.model
    model.train()
    latents = encode(model, VALIDATION.volumes, batch_size=3, device="cpu")
    assert model.training
    assert set(latents) == set(MODALITIES)
    model.eval()
    with torch.no_grad():
        expected = model(VALIDATION.volumes)
    for m in MODALITIES:
        assert latents[m].shape == (8, LATENT) and latents[m].dtype == np.float32
        np.testing.assert_allclose(latents[m], expected[m].latent.numpy(), rtol=1e-5, atol=1e-5)


def test_multimodal_model_encodes_the_modalities_present() -> None:
    model, _ = build("S")
    assert model.modalities == MODALITIES
    x = torch.randn(2, 1, SIZE, SIZE, SIZE)
    outputs = model({"falff": x, "label": torch.tensor([0, 1])})
    assert list(outputs) == ["falff"] and outputs["falff"].latent.shape == (2, LATENT)
    assert model.dims(LATENT) == {m: Dims((SIZE,) * 3, LATENT, 32, LATENT) for m in MODALITIES}


def test_checkpoint_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_checkpoint(path, {"model": nn.Linear(2, 2).state_dict(), "epoch": 3, "rows": [{}]})
    assert load_checkpoint(path)["epoch"] == 3
    before = path.read_bytes()
    with pytest.raises(Exception, match="pickle"):
        save_checkpoint(path, {"bad": lambda: None})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_a_short_write_is_named_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})

    def short_write(state, target):  # what torch's writer raises when the disk fills
        Path(target).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 40")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(OutputError, match=r"checkpoint.pt: No space left on device \(\d+\.\d MiB"):
        save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"not a checkpoint"),
        lambda p: torch.save({"module": nn.Linear(2, 2)}, p),
    ],
    ids=["truncated", "garbage", "pickled-class"],
)
def test_a_bad_checkpoint_is_an_input_data_error(tmp_path: Path, damage) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "weight": torch.ones(1000)})
    damage(path)
    with pytest.raises(InputDataError, match=re.escape(str(path))) as error:
        load_checkpoint(path)
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)


def test_a_missing_checkpoint_is_an_input_missing_error(tmp_path: Path) -> None:
    with pytest.raises(InputMissingError, match=r"missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize(
    ("n", "batch_size", "steps"), [(24, 8, 3), (23, 8, 2), (5, 8, 1), (2, 8, 1), (1, 8, 0)]
)
def test_steps_per_epoch(n: int, batch_size: int, steps: int) -> None:
    assert steps_per_epoch(n, batch_size) == steps


def test_bad_settings_and_too_little_data_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="batch size must be >= 2"):
        TrainSettings(batch_size=1)
    with pytest.raises(UsageError, match="unknown device 'gpu'; choose one of auto, cpu, cuda"):
        TrainSettings(device="gpu")
    model, objective = build("S")
    with pytest.raises(InputDataError, match="at least 2 training"):
        train_fold(model, objective, random_data(1, 0), VALIDATION, SETTINGS, tmp_path)
    with pytest.raises(ValueError, match="same length"):
        FoldData({"T1w": torch.zeros(3, 1, SIZE, SIZE, SIZE)}, torch.zeros(2, dtype=torch.long))


def test_bar_status_holds_the_validation_loss_retrieval_and_time_left() -> None:
    from bidsfusion.train.progress import bar_status

    row = {"val_loss": 4.12345, "val_retrieval_T1w-falff": 0.3125, "val_retrieval_chance": 0.0625}
    status = bar_status(row, "10 s elapsed, about 5 s left")
    assert status == "val 4.123; retrieval 0.31/0.06; 10 s elapsed, about 5 s left"
    assert bar_status({"val_loss": 1.0}, "x") == "val 1; x"


def test_progress_bar_draws_in_place_only_when_enabled(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bidsfusion.train.progress import ProgressBar

    monkeypatch.setenv("COLUMNS", "200")
    ProgressBar(True).reporter("fold-0: epoch 1/3", 10)(5)
    assert capsys.readouterr().err == "\rfold-0: epoch 1/3 [" + "#" * 15 + "." * 15 + "] 5/10"
    ProgressBar(True).reporter("fold-0: epoch 2/3", 10, "val 4.1; about 5 s left")(10)
    assert capsys.readouterr().err.endswith("] 10/10 | val 4.1; about 5 s left")
    monkeypatch.setenv("COLUMNS", "70")
    ProgressBar(True).reporter("fold-0: epoch 2/3", 10, "val 4.1; about 5 s left")(10)
    drawn = capsys.readouterr().err
    assert len(drawn) == 1 + 69 and drawn.endswith("] 10/10 | val 4.1; a")  # cut to the width
    quiet = ProgressBar(False)
    quiet.reporter("x", 10)(10)
    quiet.clear()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("spec", ["L-S", "DCCAE"])
def test_validation_never_forms_a_one_sample_batch(tmp_path: Path, spec: str) -> None:
    """3 validation pairs at batch size 2: one batch of 3, not 2 + 1 (InfoNCE would give 0
    for the single sample and CCA's Cholesky would fail)."""
    settings = TrainSettings(epochs=1, batch_size=2, device="cpu", progress=False)
    result = train_fold(*build(spec), random_data(4, 0), random_data(3, 1), settings, tmp_path)
    row = result.history[0]
    terms = [k for k in row if k.startswith("val_") and not k.endswith("penalty")]
    assert all(math.isfinite(row[k]) for k in terms)
    assert row.get("val_S", 1.0) > 0.5 and row.get("val_L", 1.0) > 0.5  # about log(4) chance


def test_batch_norm_statistics_are_recomputed_for_evaluation(reference: Run) -> None:
    """Eval-mode outputs keep the scale of train-mode ones on the training data: running
    statistics of a few momentum steps made eval latents ~10x too small (every validation
    score ~0, every DIM term exactly at chance)."""
    model = reference.model
    with torch.no_grad():
        model.train()
        trained = model(TRAIN.volumes)
        model.eval()
        evaluated = model(TRAIN.volumes)
    for m in MODALITIES:
        ratio = evaluated[m].latent.std() / trained[m].latent.std()
        assert 0.8 < ratio < 1.25, (m, ratio)


def test_a_changed_architecture_is_retrained_not_resumed(
    reference: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """last.pt of a model whose parameters differ (here: a larger latent) starts afresh
    instead of failing to load or resuming another network."""
    out_dir = tmp_path / "fold-0"
    shutil.copytree(reference.out_dir, out_dir)
    torch.manual_seed(0)
    model = MultimodalModel(MODALITIES, DCGANEncoder, (SIZE,) * 3, latent_dim=2 * LATENT)
    objective = build_objective(SPEC, MODALITIES, model.dims(2 * LATENT), registry())
    epochs: list[int] = []
    with caplog.at_level(logging.WARNING, logger="bidsfusion.train.loop"):
        train_fold(model, objective, TRAIN, VALIDATION, SETTINGS, out_dir, epochs.append)
    assert epochs == [1, 2, 3] and "other settings or data" in caplog.text


def test_training_data_is_held_on_the_device_where_half_its_free_memory_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bidsfusion.train import loop

    assert TRAIN.nbytes == 2 * 24 * SIZE**3 * 4 + 24 * 8
    assert loop.placed((TRAIN, VALIDATION), torch.device("cpu")) == (TRAIN, VALIDATION)
    moves: list[str] = []
    monkeypatch.setattr(FoldData, "to", lambda self, device: moves.append("device") or self)
    monkeypatch.setattr(FoldData, "pinned", lambda self: moves.append("pinned") or self)
    both = TRAIN.nbytes + VALIDATION.nbytes
    for free, where in [(2 * both, "device"), (2 * both - 1, "pinned")]:
        moves.clear()
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, f=free: (f, 10 * f))
        loop.placed((TRAIN, VALIDATION), torch.device("cuda"))
        assert moves == [where, where]


def test_channels_last_and_a_compiled_step_train_as_eager_steps(
    reference: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same losses to 1e-4 (``aot_eager`` stands for inductor: the same graph
    capture, without its minutes of compiling on a CPU)."""
    compiles: list[object] = []
    original = torch.compile

    def aot_eager(module: nn.Module) -> object:
        compiles.append(module)
        return original(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", aot_eager)
    model, objective = build()
    settings = TrainSettings(**{**asdict(SETTINGS), "channels_last": True, "compile": True})
    result = train_fold(model, objective, TRAIN, VALIDATION, settings, tmp_path / "fold-0")
    assert len(compiles) == 1
    for row, expected in zip(result.history, reference.result.history, strict=True):
        for key in ("train_loss", "val_loss", "val_L", "val_CL", "val_CS"):
            assert row[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), key
    assert all(p.is_contiguous() for p in model.parameters())
    assert states_equal(
        load_checkpoint(tmp_path / "fold-0" / "checkpoint.pt")["model"],
        {k: v.contiguous() for k, v in model.state_dict().items()},
    )
