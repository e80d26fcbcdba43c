"""Finding the participant-level derivatives of each modality in OUTPUT_DIR.

A derivative is found by its modality's entities on the grid (``space``, ``res``
and the modality's own, e.g. ``stat-falff``) in its datatype folder; its JSON
sidecar tells whether the registration QC flagged it
(:mod:`bidsfusion.preprocess.qc`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bidsfusion.bids import GRID_RES, QC_KEY, TEMPLATE_SPACE, parse_name, sidecar_path
from bidsfusion.data.pairs import Scan
from bidsfusion.modality import Modality


@dataclass
class Found:
    """The scans found: usable ones, and those the QC flagged (scan -> why)."""

    scans: list[Scan] = field(default_factory=list)
    flagged: dict[Scan, str] = field(default_factory=dict)


def find_scans(
    output_dir: Path, modalities: Sequence[Modality], days: Mapping[str, Mapping[str, float]]
) -> Found:
    """Every grid derivative of ``modalities`` in OUTPUT_DIR as a :class:`Scan`, the ones the
    registration QC flagged apart; ``days[subject][session]`` gives days since entry
    (0 when unknown)."""
    found = Found()
    for modality in modalities:
        required = {
            "space": TEMPLATE_SPACE,
            "res": GRID_RES,
            **{k: v for k, v in modality.entities.items() if k != "suffix"},
        }
        pattern = f"sub-*/**/{modality.datatype}/*_{modality.entities['suffix']}.nii.gz"
        for path in sorted(output_dir.glob(pattern)):
            entities, suffix = parse_name(path.name)
            if suffix != modality.entities["suffix"]:
                continue
            if any(entities.get(k) != v for k, v in required.items()):
                continue
            session = entities.get("ses")
            days_in = days.get(entities["sub"], {}).get(session or "", 0.0)
            scan = Scan(entities["sub"], session, modality.name, path, days_in)
            reason = flag_reason(path)
            if reason:
                found.flagged[scan] = reason
            else:
                found.scans.append(scan)
    return found


def flag_reason(path: Path) -> str | None:
    """Why the QC in ``path``'s sidecar flagged it, or None (not flagged, or no QC recorded)."""
    try:
        qc = json.loads(sidecar_path(path).read_text(encoding="utf-8")).get(QC_KEY, {})
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(qc, dict) or not qc.get("Flagged"):
        return None
    return (
        f"registration flagged by QC (similarity {qc.get('RegistrationSimilarity')} "
        f"< {qc.get('SimilarityThreshold')})"
    )


PROCESSING_KEYS = (
    "Resolution", "SpatialReference", "Template", "Backend", "SkullStripping", "Band",
    "Parameters", "Description",
)  # fmt: skip
"""The sidecar keys that say how a derivative was made (a model records them)."""
SPACE_KEYS = ("Resolution", "SpatialReference", "Template")
"""Of those, the ones that fix the space: a model applies only to derivatives that share them."""


def processing(path: Path) -> dict[str, object]:
    """The :data:`PROCESSING_KEYS` of a derivative's sidecar (those it has; none when the
    sidecar cannot be read)."""
    try:
        sidecar = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(sidecar, dict):
        return {}
    return {key: sidecar[key] for key in PROCESSING_KEYS if key in sidecar}
