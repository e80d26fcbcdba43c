"""``Random``: the control every objective must beat, registered like any other term.

Its encoders keep their seeded initialisation (the same one every objective starts from)
and are encoded and evaluated as the trained ones are: it answers "did pretraining help
at all?". It declares ``trains = False`` (zero training steps) and ``standalone = True``
(it composes with nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from torch import Tensor

from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.base import Objective

CONTROL = "Random"
"""The registered name of the untrained control, the baseline of every comparison."""


class Untrained(Objective):
    """No loss and no parameters: the model is never trained with it."""

    standalone: ClassVar[bool] = True
    trains: ClassVar[bool] = False

    def __init__(self, modalities: Sequence[str], dims: Mapping[str, Dims]) -> None:
        super().__init__()

    def forward(
        self, outputs: Mapping[str, EncoderOutput], batch: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """A zero ``"loss"`` (never optimised)."""
        return {"loss": next(iter(outputs.values())).latent.sum() * 0}
