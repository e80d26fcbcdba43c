"""Finding the participant-level derivatives of each modality in OUTPUT_DIR."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bidsfusion.bids import GRID_RES, TEMPLATE_SPACE
from bidsfusion.data.pairs import Scan
from bidsfusion.modality import Modality

_ENTITY = re.compile(r"([a-z]+)-([A-Za-z0-9]+)")


def derivative_entities(name: str) -> tuple[dict[str, str], str]:
    """Entities and suffix of a BIDS file name: ``sub-01_desc-brain_T1w.nii.gz`` ->
    ``({"sub": "01", "desc": "brain"}, "T1w")``."""
    parts = name.split(".")[0].split("_")
    entities = dict(m.groups() for p in parts[:-1] if (m := _ENTITY.fullmatch(p)))
    return entities, parts[-1]


def find_scans(
    output_dir: Path,
    modalities: Sequence[Modality],
    days: Mapping[str, Mapping[str, float]],
    subjects: Sequence[str] = (),
) -> list[Scan]:
    """Every grid derivative of ``modalities`` in OUTPUT_DIR as a :class:`Scan`.

    ``days[subject][session]`` gives days since entry (0 when unknown);
    ``subjects`` restricts the search (all when empty).
    """
    wanted = set(subjects)
    scans = []
    for modality in modalities:
        required = {
            "space": TEMPLATE_SPACE,
            "res": GRID_RES,
            **{k: v for k, v in modality.entities.items() if k != "suffix"},
        }
        pattern = f"sub-*/**/{modality.datatype}/*_{modality.entities['suffix']}.nii.gz"
        for path in sorted(output_dir.glob(pattern)):
            entities, suffix = derivative_entities(path.name)
            if any(entities.get(k) != v for k, v in required.items()):
                continue
            if suffix != modality.entities["suffix"] or (wanted and entities["sub"] not in wanted):
                continue
            session = entities.get("ses")
            scans.append(
                Scan(
                    entities["sub"],
                    session,
                    modality.name,
                    path,
                    days.get(entities["sub"], {}).get(session or "", 0.0),
                )
            )
    return scans
