"""probattr-monitor: probabilistic-attribution probes that watch a language model learn.

Example:
    >>> from probattr_monitor import probe, ProbeSettings
    >>> ProbeSettings().as_band
    0.2
"""

from .api import probe
from .callbacks import ProbAttrCallback, ProbAttrEarlyStopping
from .probes.errors import ProbeInputError
from .probes.result import ProbeResult, TokenAttribution
from .probes.settings import ProbeSettings
from .prompts import paper_prompts

__version__ = "0.1.0"

__all__ = [
    "ProbAttrCallback",
    "ProbAttrEarlyStopping",
    "probe",
    "ProbeSettings",
    "ProbeResult",
    "TokenAttribution",
    "ProbeInputError",
    "paper_prompts",
]
