"""What a sweep (or the watcher) logs to the trackers: each checkpoint's record at its step, with
the drift its summary row holds, through sinks that report a failure and go on."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..checkpoints import Checkpoint
from ..monitoring.record import CheckpointRecord
from ..monitoring.run import ProbeRun, log_entry_of
from ..monitoring.statistics import drift_keys
from ..probes.types.result import ProbeResult
from ..probes.types.settings import ProbeSettings
from .config import SweepConfig


def log_records(config: SweepConfig, checkpoints: Sequence[Checkpoint], records: dict, rows: Sequence[dict],
                keys: dict) -> None:
    """Write every checkpoint's record made with this sweep's key to the sinks at its step, in
    step order, with the drift its summary row holds; a failing sink is reported and disabled,
    never fatal."""
    if not config.report_to:
        return
    folder = Path(config.out) if config.out else Path(config.run_dir or checkpoints[0].path.parent)
    sinks = open_guarded_sinks(config, tensorboard_dir=str(folder / "runs" / "probattr-sweep"), wandb_dir=str(folder),
                               run_name=f"probattr-sweep {folder.name}")
    errors = 0
    rows_by_name = {row["checkpoint"]: row for row in rows}
    try:
        for checkpoint in checkpoints:
            record = records.get(checkpoint.name)
            if record is None or not record.matches(keys[checkpoint.name]):
                continue
            errors += not record.ok
            log_record(sinks, config.settings, checkpoint, record, rows_by_name.get(checkpoint.name, {}), errors)
    finally:
        sinks.close()


def open_guarded_sinks(config: SweepConfig, tensorboard_dir: str, wandb_dir: str, run_name: str,
                       run_ids: Optional[dict] = None):
    """``GuardedSinks`` for ``config.report_to`` (see ``sinks.open_sinks``); ``run_ids``:
    ``{tracker name: run id}`` to resume."""
    from ..sinks import GuardedSinks, open_sinks

    return GuardedSinks(open_sinks(config.report_to, tensorboard_dir=tensorboard_dir, wandb_dir=wandb_dir,
                                   wandb_run_name=run_name, run_ids=run_ids))


def log_record(sinks, settings: ProbeSettings, checkpoint: Checkpoint, record: CheckpointRecord, row: dict,
               errors: int, scalars: Optional[dict] = None) -> None:
    """Write one checkpoint's record to ``sinks`` at its step, with the drift its summary ``row``
    holds, the running count of failed records ``errors`` and any further ``scalars`` (the
    watcher's ``probattr/overhead``)."""
    run = ProbeRun(
        step=checkpoint.step,
        results=[ProbeResult.from_dict(r) for r in record.results],
        seconds=record.probe_seconds,
        error=record.error,
        drift={key: row[key] for key in drift_keys() if row.get(key) is not None},
    )
    entry = log_entry_of(run, settings, errors=errors)
    entry.scalars.update(scalars or {})
    sinks.write(entry)
