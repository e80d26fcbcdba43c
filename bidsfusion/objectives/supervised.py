"""``Supervised``: a linear AD-vs-HC classifier per modality on the latent."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.base import Objective

IGNORE = -1
"""Label of samples that are neither AD (1) nor HC (0); they add nothing to the loss."""


class Supervised(Objective):
    """Sum over modalities of the cross-entropy of ``Linear(z_m) -> 2`` logits.

    The mean runs over labelled samples only; a batch without any gives 0 with the
    graph intact.
    """

    def __init__(self, modalities: Sequence[str], dims: Mapping[str, Dims]) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.classifiers = nn.ModuleDict(
            {m: nn.Linear(dims[m].latent_dim, 2) for m in self.modalities}
        )

    def logits(self, outputs: Mapping[str, EncoderOutput]) -> dict[str, Tensor]:
        """Class logits ``[B, 2]`` (0 = HC, 1 = AD) by modality."""
        return {m: self.classifiers[m](outputs[m].latent) for m in self.modalities}

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """``{"Supervised", "Supervised_chance", "loss"}``: the summed cross-entropy and
        its chance level, log 2 per modality (0 without labelled samples)."""
        labels = batch["label"]
        count = (labels != IGNORE).sum().clamp(min=1)
        loss = sum(
            F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum") / count
            for logits in self.logits(outputs).values()
        )
        labelled = (labels != IGNORE).any()
        chance = labelled.to(loss.dtype) * (len(self.modalities) * math.log(2))
        return {"Supervised": loss, "Supervised_chance": chance, "loss": loss}
