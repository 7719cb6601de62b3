"""What every sink shares: the record it writes, the protocol it follows, the package check."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import MissingPackageError

REPORT_TARGETS = ("tensorboard", "wandb", "mlflow", "trackio")


@dataclass
class LogEntry:
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


@runtime_checkable
class Sink(Protocol):
    """A destination for :class:`LogEntry` objects: ``write`` one record, ``close`` once (idempotent)."""

    name: str

    def write(self, record: LogEntry) -> None:
        """Write ``record`` at ``record.step``."""

    def close(self) -> None:
        """Flush and release what the sink opened (never what it was handed)."""


def require(package: str, extra: str) -> None:
    """Raise :class:`MissingPackageError` (an ``ImportError``) with the install line when ``package``
    is not installed."""
    if importlib.util.find_spec(package) is None:
        raise MissingPackageError(f"logging to {extra}", package, extra)
