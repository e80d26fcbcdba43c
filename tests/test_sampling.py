"""The class-balanced sampler: balance, determinism per (seed, epoch), rank sharding."""

from __future__ import annotations

from collections import Counter

from bidsfusion.data.sampling import ClassBalancedSampler


def test_sampler_balances_classes_and_is_deterministic():
    labels = [0] * 900 + [-1] * 100
    sampler = ClassBalancedSampler(labels, seed=3)
    assert len(sampler) == 1000
    epochs = [list(sampler) for _ in range(10)]
    drawn = Counter(labels[i] for epoch in epochs for i in epoch)
    assert abs(drawn[-1] / 10_000 - 0.5) < 0.03
    assert epochs[0] != epochs[1]
    same = ClassBalancedSampler(labels, seed=3)
    assert [list(same) for _ in range(2)] == epochs[:2]
    same.set_epoch(0)
    assert list(same) == epochs[0]
    assert list(ClassBalancedSampler(labels, seed=4)) != epochs[0]


def test_sampler_ranks_share_one_draw():
    labels = [0, 0, 0, 1, 2, 2, 2]
    whole = list(ClassBalancedSampler(labels, seed=1, num_samples=8))
    ranks = [
        list(ClassBalancedSampler(labels, seed=1, num_samples=8, rank=r, world_size=2))
        for r in range(2)
    ]
    assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]
