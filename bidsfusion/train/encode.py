"""Frozen representations: the latents of a trained model for a set of volumes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn


def encode(
    model: nn.Module,
    volumes: Mapping[str, Tensor],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Latents ``z`` float32 ``[N, latent_dim]`` by modality for ``volumes[m]`` ``[N, 1, *S]``.

    Eval mode, no gradient, no augmentation, float32; ``model`` is moved to
    ``device`` and its train/eval mode restored afterwards.
    """
    n = len(next(iter(volumes.values())))
    if n == 0:
        raise ValueError("encode needs at least one sample")
    device = torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    chunks: dict[str, list[Tensor]] = {m: [] for m in volumes}
    try:
        with torch.no_grad():
            for index in torch.arange(n).split(batch_size):
                batch = {m: x[index.to(x.device)].to(device) for m, x in volumes.items()}
                for m, output in model(batch).items():
                    chunks[m].append(output.latent.float().cpu())
    finally:
        model.train(was_training)
    return {m: torch.cat(parts).numpy() for m, parts in chunks.items()}
