"""bidsfusion: self-supervised multimodal (T1w + fALFF) brain representations as a BIDS App.

The Python API of trained models, ``bidsfusion.load_model(MODEL_DIR)``, is
:mod:`bidsfusion.pretrained` (loaded on first use: importing bidsfusion imports no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("bidsfusion")
"""Marker for plugin hook implementations: ``@hookimpl def register_objectives(register): ...``."""

_PRETRAINED = ("PretrainedModel", "load_model")

__all__ = ["PretrainedModel", "__version__", "hookimpl", "load_model"]


def __getattr__(name: str) -> Any:
    """``load_model`` and ``PretrainedModel``, imported from :mod:`bidsfusion.pretrained`."""
    if name in _PRETRAINED:
        from bidsfusion import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'bidsfusion' has no attribute {name!r}")


if TYPE_CHECKING:
    from bidsfusion.pretrained import PretrainedModel, load_model
