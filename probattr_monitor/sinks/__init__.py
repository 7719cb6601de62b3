"""Logging sinks: thin writers of one probe run's numbers, histograms, images and token table.

Every sink takes the same :class:`ProbeRecord` (built once per run by the caller) and only writes
it. Optional dependencies (tensorboard, wandb) are imported on first use; asking for a sink whose
package is missing fails with the install command.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

REPORT_TARGETS = ("tensorboard", "wandb")


@dataclass
class ProbeRecord:
    """What one run of the probes logs at one global step.

    Attributes:
        step: the Trainer's ``global_step`` (or the checkpoint's step in a sweep).
        scalars: ``{tag: float}`` (see ``metrics.scalar_logs``).
        histograms: ``{tag: [float]}``.
        images: ``{tag: (H, W, 3) uint8 array}``.
        table_columns, table_rows: the per-token rows (``metrics.token_rows``).
    """

    step: int
    scalars: dict
    histograms: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    table_columns: tuple = ()
    table_rows: list = field(default_factory=list)


def require(package: str, extra: str) -> None:
    """Raise ``ImportError`` with the install command when ``package`` is not installed."""
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"logging to {extra} needs the {package!r} package: pip install 'probattr-monitor[{extra}]'")
