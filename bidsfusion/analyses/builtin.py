"""Built-in group analyses, registered through the ``register_analyses`` hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bidsfusion import hookimpl
from bidsfusion.analyses.similarity import write_similarity


@hookimpl
def register_analyses(register: Callable[[str, Callable[[Any], None]], None]) -> None:
    """Register ``similarity`` (CKA and SVCCA between the modalities' representations)."""
    register("similarity", write_similarity)
