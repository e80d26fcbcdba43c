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
    """The usable scans, and the flagged ones left out (path -> why)."""

    scans: list[Scan] = field(default_factory=list)
    flagged: dict[Path, str] = field(default_factory=dict)


def find_scans(
    output_dir: Path,
    modalities: Sequence[Modality],
    days: Mapping[str, Mapping[str, float]],
    subjects: Sequence[str] = (),
    sessions: Sequence[str] = (),
    include_flagged: bool = False,
) -> Found:
    """Every grid derivative of ``modalities`` in OUTPUT_DIR as a :class:`Scan`.

    ``days[subject][session]`` gives days since entry (0 when unknown);
    ``subjects`` and ``sessions`` restrict the search (all when empty). Scans the
    registration QC flagged are left out unless ``include_flagged``.
    """
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
            if any(entities.get(k) != v for k, v in required.items()):
                continue
            if suffix != modality.entities["suffix"] or not _selected(entities, subjects, sessions):
                continue
            reason = flag_reason(path)
            if reason and not include_flagged:
                found.flagged[path] = reason
                continue
            session = entities.get("ses")
            found.scans.append(
                Scan(
                    entities["sub"],
                    session,
                    modality.name,
                    path,
                    days.get(entities["sub"], {}).get(session or "", 0.0),
                )
            )
    return found


def _selected(
    entities: Mapping[str, str], subjects: Sequence[str], sessions: Sequence[str]
) -> bool:
    if subjects and entities["sub"] not in subjects:
        return False
    return not sessions or entities.get("ses") in sessions


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
