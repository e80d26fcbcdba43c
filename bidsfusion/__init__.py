"""bidsfusion: self-supervised multimodal (T1w + fALFF) brain representations as a BIDS App."""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("bidsfusion")
"""Marker for plugin hook implementations: ``@hookimpl def register_objectives(register): ...``."""

__all__ = ["__version__", "hookimpl"]
