"""probattr-monitor: probabilistic-attribution probes that watch a language model learn.

``probe``, ``ProbAttrCallback`` and ``ProbAttrEarlyStopping`` import torch and transformers on
first use (PEP 562), so ``probattr-monitor --help`` and usage errors answer at once. Every
quantity is defined in the documentation's maths guide (``docs/guides/concepts.md``).

Examples:
    >>> from probattr_monitor import probe, ProbeSettings
    >>> ProbeSettings().as_band
    0.2
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import InputError, MissingPackageError, ProbeInputError, RunFolderError, UnexpectedArgumentError
from .probes.types.result import ProbeResult, TokenAttribution
from .probes.types.settings import ProbeSettings
from .prompts import paper_prompts

if TYPE_CHECKING:
    from .api import probe
    from .callbacks import ProbAttrCallback, ProbAttrEarlyStopping

__version__ = "0.3.0"

_LAZY = {"probe": ".api", "ProbAttrCallback": ".callbacks", "ProbAttrEarlyStopping": ".callbacks"}

__all__ = [
    "ProbAttrCallback",
    "ProbAttrEarlyStopping",
    "probe",
    "ProbeSettings",
    "ProbeResult",
    "TokenAttribution",
    "InputError",
    "ProbeInputError",
    "UnexpectedArgumentError",
    "RunFolderError",
    "MissingPackageError",
    "paper_prompts",
]


def __getattr__(name: str) -> Any:
    """Import the heavy public names (torch, transformers) when first asked for."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
