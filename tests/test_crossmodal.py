"""The cross-modal saliency link: across subjects at each brain voxel, against a
permutation null; pooled voxels, which the shared shape of every map dominates, are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bidsfusion.analyses.crossmodal import cross_modal_link, link_voxels
from bidsfusion.space import brain_coverage


def test_the_link_is_the_mean_over_voxels_of_across_subject_correlations() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 3, 40)), rng.normal(size=(20, 4, 40))
    link = cross_modal_link(torch.from_numpy(a), torch.from_numpy(b), seed=0, permutations=0)
    expected = np.array(
        [[np.mean([np.corrcoef(a[:, i, v], b[:, j, v])[0, 1] for v in range(40)])
          for j in range(4)] for i in range(3)]
    )  # fmt: skip
    np.testing.assert_allclose(link.matrix, expected, atol=1e-12)
    assert link.best == np.unravel_index(np.argmax(expected), expected.shape)


def test_shared_subject_signal_beats_its_null_and_a_shared_shape_does_not() -> None:
    rng = np.random.default_rng(1)
    shape = rng.uniform(0.2, 1.0, size=(1, 1, 200))  # every subject's map has this shape
    subject = rng.normal(size=(40, 1, 1))
    shared_a = shape + 0.3 * subject * shape + 0.05 * rng.normal(size=(40, 2, 200))
    shared_b = shape + 0.3 * subject * shape + 0.05 * rng.normal(size=(40, 2, 200))
    linked = cross_modal_link(torch.from_numpy(shared_a), torch.from_numpy(shared_b), seed=0)
    assert linked.value > 0.5 and linked.p <= 2 / 201
    alone_a = shape + 0.05 * rng.normal(size=(40, 2, 200))
    alone_b = shape + 0.05 * rng.normal(size=(40, 2, 200))
    pooled = np.corrcoef(alone_a[:, 0].ravel(), alone_b[:, 0].ravel())[0, 1]
    unlinked = cross_modal_link(torch.from_numpy(alone_a), torch.from_numpy(alone_b), seed=0)
    assert pooled > 0.9  # what pooling voxels measured: the shared shape
    assert abs(unlinked.value) < 0.1 and unlinked.p > 0.05
    assert linked.null.shape == (200,) and linked.null.max() < linked.value


def test_link_voxels_are_the_brain_blocks_of_the_link_grid() -> None:
    maps = torch.rand(2, 3, 32, 32, 32)
    kept = link_voxels(maps)
    inside = brain_coverage(16) >= 0.5
    assert kept.shape == (2, 3, int(inside.sum())) and kept.dtype == torch.float64
    first = np.argwhere(inside.reshape(-1))[0, 0]
    i, j, k = np.unravel_index(first, (16, 16, 16))
    block = maps[0, 1, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * k : 2 * k + 2]
    assert float(kept[0, 1, 0]) == pytest.approx(float(block.double().mean()), rel=1e-6)
