"""Where a run may write: OUTPUT_DIR and the work directory, checked before any work.

BIDS_DIR is read only. OUTPUT_DIR may be ``BIDS_DIR/derivatives/<name>`` but
nowhere else inside BIDS_DIR, and must be absent, empty, or a bidsfusion
derivatives dataset (its dataset_description.json says so): a raw dataset or any
other folder given by mistake is never written into. The work directory must be a
writable folder outside BIDS_DIR. OUTPUT_DIR's dataset_description.json links the
``bids:raw:`` URIs of the sidecars to BIDS_DIR (``DatasetLinks``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from bidsfusion import __version__
from bidsfusion.atomic import write_text
from bidsfusion.errors import OutputError, UsageError

GENERATOR = "bidsfusion"
WORK_NAME = ".bidsfusion-work"
"""The default work directory's name inside OUTPUT_DIR."""


def check_locations(bids_dir: Path, output_dir: Path, work_dir: Path | None) -> None:
    """Refuse outputs that would write into the raw dataset (exit 64).

    ``OUTPUT_DIR`` may be ``BIDS_DIR/derivatives/<name>``, nowhere else inside
    BIDS_DIR; the work directory may not be inside BIDS_DIR at all.
    """
    bids, out = bids_dir.resolve(), output_dir.resolve()
    if out == bids:
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is BIDS_DIR: choose another folder, "
            f"e.g. {bids_dir / 'derivatives' / 'bidsfusion'}"
        )
    if out.is_relative_to(bids) and not out.is_relative_to(bids / "derivatives"):
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is inside BIDS_DIR; use a folder outside "
            f"it or under {bids_dir / 'derivatives'}"
        )
    if out == bids / "derivatives":
        raise UsageError(
            f"OUTPUT_DIR {output_dir} must be a sub-folder of "
            f"{bids / 'derivatives'}, e.g. {bids / 'derivatives' / 'bidsfusion'}"
        )
    if work_dir is not None and work_dir.resolve().is_relative_to(bids):
        raise UsageError(f"--work-dir {work_dir} is inside BIDS_DIR; BIDS_DIR is read only")


def check_output_dir(output_dir: Path, work_dir: Path) -> None:
    """Refuse an OUTPUT_DIR that is neither absent, empty, nor a bidsfusion dataset (exit 64).

    Hidden entries (another job's temporary dataset_description.json, the default
    work directory) and the work directory do not count as content.
    """
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise UsageError(f"OUTPUT_DIR {output_dir} is a file, not a folder; choose a folder")
    description = output_dir / "dataset_description.json"
    if description.is_file():
        generator = _generator(description)
        if generator == GENERATOR:
            return
        raise UsageError(
            f"OUTPUT_DIR {output_dir} holds a dataset made by {generator or 'no known tool'} "
            f"({description}); bidsfusion writes only into an empty folder or its own "
            "derivatives: choose another OUTPUT_DIR"
        )
    content = sorted(
        p.name
        for p in output_dir.iterdir()
        if not p.name.startswith(".") and p.resolve() != work_dir.resolve()
    )
    if content:
        shown = ", ".join(content[:5]) + (" ..." if len(content) > 5 else "")
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is not empty ({shown}) and is not a bidsfusion "
            "derivatives dataset; choose an empty or new folder"
        )


def _generator(description: Path) -> str | None:
    """``GeneratedBy[0].Name`` of a derivatives dataset_description.json, else None."""
    try:
        content = json.loads(description.read_text(encoding="utf-8"))
        if content.get("DatasetType") != "derivative":
            return None
        return str(content["GeneratedBy"][0]["Name"])
    except (OSError, ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None


def check_work_dir(work_dir: Path) -> None:
    """Create the work directory and prove it writable, or raise OutputError (exit 73),
    naming a file in its place."""
    if work_dir.exists() and not work_dir.is_dir():
        raise OutputError(
            f"work directory {work_dir} is a file, not a folder; choose a folder with --work-dir"
        )
    probe = work_dir / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"work directory {work_dir} cannot be written ({exc.strerror or exc}); "
            "choose a writable folder with --work-dir"
        ) from None


def raw_link(bids_dir: Path, output_dir: Path) -> str:
    """The ``DatasetLinks`` value of ``raw``: BIDS_DIR relative to OUTPUT_DIR when it
    contains it (``../..`` for ``BIDS_DIR/derivatives/<name>``), else a ``file://`` URI."""
    bids, out = bids_dir.resolve(), output_dir.resolve()
    if out.is_relative_to(bids):
        return os.path.relpath(bids, out)
    return bids.as_uri()


def dataset_description(raw: str | None = None, container: str | None = None) -> dict[str, Any]:
    """The derivatives dataset_description.json content (``raw``: the DatasetLinks target)."""
    generated: dict[str, Any] = {
        "Name": GENERATOR,
        "Version": __version__,
        "CodeURL": "https://github.com/bidsfusion/bidsfusion",
    }
    if container:
        generated["Container"] = {
            "Type": "docker" if "docker" in container else "other",
            "Tag": container,
        }
    description: dict[str, Any] = {
        "Name": "bidsfusion derivatives",
        "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    if raw:
        description["DatasetLinks"] = {"raw": raw}
    return description


def write_dataset_description(
    output_dir: Path, raw: str | None = None, container: str | None = None
) -> Path:
    """Create OUTPUT_DIR and its dataset_description.json atomically (exit 73 if impossible).

    Concurrent jobs each write the same content under a temporary name and
    rename it into place, so readers never see a partial file.
    """
    path = output_dir / "dataset_description.json"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(dataset_description(raw, container), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(
            f"cannot create OUTPUT_DIR {output_dir}: {exc.strerror or exc}; "
            "choose a writable folder"
        ) from exc
    return path


def is_bidsfusion_dataset(output_dir: Path) -> bool:
    """Whether OUTPUT_DIR's dataset_description.json says bidsfusion made it."""
    return _generator(output_dir / "dataset_description.json") == GENERATOR
