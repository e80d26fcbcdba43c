"""Class-balanced sampling of training pairs, reproducible per (seed, epoch)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class ClassBalancedSampler(Sampler[int]):
    """Draw dataset indices with probability inversely proportional to class frequency.

    Every label value (e.g. -1 for "other") is a class, so each class is drawn
    equally often in expectation. An epoch draws ``num_samples`` indices
    (default: one per label) with replacement; epoch e uses a torch.Generator
    seeded from (seed, e), and the epoch advances after every iteration unless
    set with :meth:`set_epoch`. Under DDP every rank draws the same indices and
    keeps every ``world_size``-th one from ``rank``.
    """

    def __init__(
        self,
        labels: Sequence,
        seed: int = 0,
        num_samples: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
        self.weights = torch.as_tensor(1.0 / counts[inverse.ravel()], dtype=torch.float64)
        self.num_samples = len(self.weights) if num_samples is None else num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration draw epoch ``epoch``'s indices."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        self.epoch += 1
        draws = torch.multinomial(
            self.weights, len(self) * self.world_size, replacement=True, generator=generator
        )
        return iter(draws[self.rank :: self.world_size].tolist())
