"""Per-epoch history: the mean of every loss term, and ``history.tsv`` written and checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from bidsfusion.errors import BidsFusionError
from bidsfusion.tsv import read_tsv, write_tsv


class TermMeans:
    """Batch-size-weighted means of the scalar terms, accumulated on the device."""

    def __init__(self) -> None:
        self.totals: dict[str, Tensor] = {}
        self.count = 0

    def add(self, terms: Mapping[str, Tensor], size: int) -> None:
        """Add one batch's terms, weighted by its ``size``."""
        for key, value in terms.items():
            weighted = value.detach().float() * size
            self.totals[key] = self.totals[key] + weighted if key in self.totals else weighted
        self.count += size

    def means(self) -> dict[str, float]:
        """Term -> mean, ``"loss"`` first then sorted by name (one device sync)."""
        keys = ["loss", *sorted(k for k in self.totals if k != "loss")]
        values = (torch.stack([self.totals[k] for k in keys]) / self.count).tolist()
        return dict(zip(keys, values, strict=True))


def history_row(
    epoch: int, trained: dict[str, float], validated: dict[str, float], lr: float, seconds: float
) -> dict[str, float]:
    """One history row: epoch, train_<term>..., val_<term>..., lr (the epoch's first), seconds."""
    return {
        "epoch": epoch,
        **{f"train_{k}": v for k, v in trained.items()},
        **{f"val_{k}": v for k, v in validated.items()},
        "lr": lr,
        "seconds": seconds,
    }


def write_history(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """``history.tsv``: one row per epoch, floats in their shortest exact form."""
    write_tsv(path, list(rows[0]), [list(row.values()) for row in rows])


def history_matches(path: Path, rows: Sequence[Mapping[str, float]]) -> bool:
    """Whether ``path`` holds exactly ``rows`` (same columns, one line per epoch)."""
    try:
        columns, written = read_tsv(path)
    except BidsFusionError:
        return False
    return bool(rows) and columns == list(rows[0]) and len(written) == len(rows)


def epoch_summary(row: Mapping[str, float]) -> str:
    """One line of an epoch: losses, each validation term against its chance level,
    validation pair retrieval (latents, then each critic edge) against its chance, seconds."""
    parts = [f"loss {row['train_loss']:.4g} val {row['val_loss']:.4g}"]
    for key, chance in row.items():
        if key.startswith("val_") and key.endswith("_chance") and key != "val_retrieval_chance":
            parts.append(f"{key[4:-7]} {row[key[:-7]]:.4g}/{chance:.4g}")
    for key, value in row.items():
        if key.startswith("val_retrieval_") and key != "val_retrieval_chance":
            parts.append(f"retrieval {key[14:]} {value:.2f}/{row['val_retrieval_chance']:.2f}")
        if key.startswith("val_critic_"):
            parts.append(f"critic {key[11:]} {value:.2f}/{row['val_retrieval_chance']:.2f}")
    return "; ".join(parts) + f" ({row['seconds']:.1f} s; value/chance)"
