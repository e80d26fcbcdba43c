"""Whether FSL can run here: its binaries on ``PATH`` and ``FSLDIR`` set."""

from __future__ import annotations

import os
import shutil

from bidsfusion.api import InputMissingError

BINARIES = ("mcflirt", "bet", "flirt")
"""The FSL programs the backend runs."""


def missing_fsl() -> list[str]:
    """What of FSL is missing, each as a phrase (empty: FSL is ready)."""
    absent = [name for name in BINARIES if shutil.which(name) is None]
    missing = [f"no {', '.join(absent)} on PATH"] if absent else []
    return missing + ([] if os.environ.get("FSLDIR") else ["FSLDIR is unset"])


def check_fsl() -> None:
    """Raise :class:`InputMissingError` (exit 66), one line saying what is missing and how
    to fix it, unless FSL is ready."""
    missing = missing_fsl()
    if missing:
        raise InputMissingError(
            f"--backend fsl needs FSL, but {' and '.join(missing)}: install FSL "
            "(https://fsl.fmrib.ox.ac.uk/fsl/docs/#/install/), set FSLDIR to its folder and "
            "source $FSLDIR/etc/fslconf/fsl.sh (it puts FSL's programs on PATH), "
            "or use --backend simpleitk"
        )
