"""MLflow sink: scalars as metrics at the record's step in the active run (the one transformers'
``MLflowCallback`` started for the Trainer), else in a run it starts; the token table as a JSON
artifact and the figures as PNG artifacts, per step. The tracking URI and experiment are
MLflow's own settings (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``)."""

from __future__ import annotations

from typing import Optional

from ..errors import InputError
from .base import LogEntry, Sink, SinkOptions, require


class MlflowSink(Sink):
    """Writes :class:`LogEntry` objects to MLflow.

    Args:
        run_name: the name of a run this sink starts when none is active.
        run_id: log into this existing run (resumed) instead of the active one.
    """

    name = "mlflow"

    @classmethod
    def from_options(cls, options: SinkOptions) -> "MlflowSink":
        """The active run, else one named ``options.run_name``, or ``options.run_ids["mlflow"]``."""
        return cls(run_name=options.run_name, run_id=options.run_ids.get("mlflow"))

    def __init__(self, run_name: Optional[str] = None, run_id: Optional[str] = None) -> None:
        require("mlflow", "mlflow")
        self.run_name = run_name
        self.run_id = run_id
        self._owns_run = False

    def _ensure_run(self):
        import mlflow

        active = mlflow.active_run()
        if active is not None and self.run_id is not None and active.info.run_id != self.run_id:
            raise InputError(f"another MLflow run ({active.info.run_id}) is active, not {self.run_id}")
        if active is None:
            mlflow.start_run(run_id=self.run_id, run_name=None if self.run_id else self.run_name)
            self._owns_run = True
        return mlflow

    def write(self, record: LogEntry) -> None:
        """``log_metrics(scalars, step=record.step)``; the token table and figures as artifacts."""
        mlflow = self._ensure_run()
        mlflow.log_metrics({tag: float(value) for tag, value in record.scalars.items()}, step=record.step)
        if record.table_rows:
            mlflow.log_dict({"columns": list(record.table_columns), "data": record.table_rows},
                            f"probattr/tokens/step_{record.step}.json")
        for tag, image in record.images.items():
            mlflow.log_image(image, f"{tag}/step_{record.step}.png")

    def close(self) -> None:
        """End the run if this sink started it; idempotent."""
        if self._owns_run:
            import mlflow

            mlflow.end_run()
        self._owns_run = False
