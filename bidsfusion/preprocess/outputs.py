"""A scan's outputs: where each file goes, its JSON sidecar, and the fingerprint it carries.

Every output of one scan is published as a set (see
:func:`bidsfusion.preprocess.sink.publish_set`); each sidecar of the set records
under :data:`bidsfusion.bids.FINGERPRINT_KEY` the fingerprint of what made it (options that
change the output, input file stamps, bidsfusion and library versions), which a
rerun compares before it skips the scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Output:
    """One file to publish: its destination and sidecar (``None``: no sidecar)."""

    path: Path
    sidecar: Mapping[str, Any] | None = None
