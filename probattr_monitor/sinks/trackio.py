"""trackio sink (Hugging Face's local-first tracker): scalars in the current run (the one
transformers' ``TrackioCallback`` started for the Trainer), else in one it starts, with
``train/global_step`` in the payload as that callback logs it; the token table as a
``trackio.Table``."""

from __future__ import annotations

import os
from typing import Optional

from .base import LogEntry, Sink, SinkOptions, require

STEP_METRIC = "train/global_step"


class TrackioSink(Sink):
    """Writes :class:`LogEntry` objects to trackio.

    Args:
        project: the project of a run this sink starts when none is current (default
            ``$TRACKIO_PROJECT`` or ``"probattr-monitor"``).
        run_name: that run's name.
    """

    name = "trackio"

    @classmethod
    def from_options(cls, options: SinkOptions) -> "TrackioSink":
        """The active run, else one named ``options.run_name``."""
        return cls(run_name=options.run_name)

    def __init__(self, project: Optional[str] = None, run_name: Optional[str] = None) -> None:
        require("trackio", "trackio")
        self.project: str = project or os.getenv("TRACKIO_PROJECT") or "probattr-monitor"
        self.run_name = run_name
        self._owns_run = False

    def write(self, record: LogEntry) -> None:
        """One ``trackio.log`` call: the scalars, the token table and ``train/global_step`` (the
        x-axis, as ``TrackioCallback`` logs it: trackio's own step counter is left to trackio)."""
        import trackio

        if trackio.context_vars.current_run.get() is None:
            trackio.init(project=self.project, name=self.run_name, embed=False)
            self._owns_run = True
        payload: dict = {tag: float(value) for tag, value in record.scalars.items()}
        if record.table_rows:
            payload["probattr/tokens"] = trackio.Table(columns=list(record.table_columns), data=record.table_rows)
        payload[STEP_METRIC] = record.step
        trackio.log(payload)

    def close(self) -> None:
        """Finish the run if this sink started it; idempotent."""
        if self._owns_run:
            import trackio

            trackio.finish()
        self._owns_run = False
