"""The 0.2 place of :mod:`probattr_monitor.demo.tiny_models`, for one release: each name still
resolves here, after one ``FutureWarning`` (PEP 562: importing this module does nothing)."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import warn_renamed


def __getattr__(name: str) -> Any:
    """``probattr_monitor.demo.tiny_models.<name>``, after a ``FutureWarning``."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(importlib.import_module(".demo.tiny_models", __package__), name)
    warn_renamed("probattr_monitor.tiny_models", "probattr_monitor.demo.tiny_models", "import")
    return value
