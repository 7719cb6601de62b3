"""Weights & Biases sink, following transformers' own W&B callback: the x-axis is
``train/global_step``, logged inside the payload (never ``step=``, which drops data when steps are
not monotonic for wandb's own counter); ``define_metric`` keeps the minimum noise count in the run
summary; a fresh ``wandb.Table`` is logged each time (a re-logged table shows its first version)."""

from __future__ import annotations

import os
from typing import Any, Optional

from .base import LogEntry, Sink, SinkOptions, require

STEP_METRIC = "train/global_step"


class WandbSink(Sink):
    """Writes :class:`LogEntry` objects to the active W&B run, or to one it starts.

    Args:
        project: project for a run this sink starts when none is active (default
            ``$WANDB_PROJECT`` or ``"probattr-monitor"``).
        run_name: name of such a run.
        run_id: resume this run (``wandb.init(id=..., resume="allow")``) instead of the active one.
    """

    name = "wandb"

    @classmethod
    def from_options(cls, options: SinkOptions) -> "WandbSink":
        """The active run, else one named ``options.run_name`` in ``options.run_dir``, or the run
        ``options.run_ids["wandb"]`` resumed."""
        return cls(run_name=options.run_name, dir=options.run_dir, run_id=options.run_ids.get("wandb"))

    def __init__(
        self, project: Optional[str] = None, run_name: Optional[str] = None, dir: Optional[str] = None,
        run_id: Optional[str] = None,
    ) -> None:
        require("wandb", "wandb")
        self.project = project or os.getenv("WANDB_PROJECT", "probattr-monitor")
        self.run_name = run_name
        self.dir = dir
        self.run_id = run_id
        self._run: Any = None
        self._owns_run = False

    @property
    def run(self):
        """The active run (reused, as the Trainer's W&B callback leaves it), else a new one."""
        import wandb

        if self._run is None:
            if wandb.run is not None and (self.run_id is None or wandb.run.id == self.run_id):
                self._run = wandb.run
            elif self.run_id is not None:
                self._run = wandb.init(project=self.project, id=self.run_id, resume="allow", dir=self.dir)
                self._owns_run = True
            else:
                self._run = wandb.init(project=self.project, name=self.run_name, dir=self.dir)
                self._owns_run = True
            self._run.define_metric(STEP_METRIC)
            self._run.define_metric("probattr/*", step_metric=STEP_METRIC, step_sync=True)
            self._run.define_metric("probattr/noise_tokens", step_metric=STEP_METRIC, summary="min")
        return self._run

    def write(self, record: LogEntry) -> None:
        """Log the record in one ``run.log`` call with ``train/global_step`` in the payload."""
        import numpy as np
        import wandb

        payload = dict(record.scalars)
        for tag, values in record.histograms.items():
            if len(values):
                payload[tag] = wandb.Histogram(np.asarray(values, dtype=np.float64).tolist())
        for tag, image in record.images.items():
            payload[tag] = wandb.Image(image)
        if record.table_rows:
            payload["probattr/tokens"] = wandb.Table(columns=list(record.table_columns), data=record.table_rows)
        payload[STEP_METRIC] = record.step
        self.run.log(payload)

    def close(self) -> None:
        """Finish the run if this sink started it; idempotent."""
        if self._owns_run and self._run is not None:
            self._run.finish()
        self._run = None
        self._owns_run = False
