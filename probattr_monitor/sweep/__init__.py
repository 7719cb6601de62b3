"""Post-hoc sweeps: the probes over every saved checkpoint, resumable, logged like the callback.

Per checkpoint (in step order) the sweep loads the model, runs :func:`monitoring.run.run_probes` (the
callback's code path) and writes ``probattr.json`` atomically, keyed by the settings and the
prompt-set hash. A rerun reuses records whose key matches and whose status is ``"ok"``, retries
failed ones and recomputes stale ones; a sweep killed at any moment leaves whole files only, and
a rerun finishes the rest. Under ``torchrun`` / ``accelerate launch`` the checkpoints are split
across processes (round robin), and rank 0 merges, logs and summarises.

Outputs (into the run folder, or ``out``): ``sweep_summary.csv`` and ``sweep_summary.json``
(``{"recommended": {"step", "checkpoint", "rule", "reason"}, "rows": [...]}``), and the HTML
report. Summaries use only records made with this sweep's settings and prompt set
(:class:`~monitoring.record.RecordKey`); a sweep holds a lock on the folder it writes records
into, so two sweeps never mix their records. The recommendation follows ``monitoring.decision``.

The parts: ``config`` (what to sweep, keys, file names), ``runner`` (probing, ranks, the lock),
``logs`` (the sinks), ``summary`` (rows, the recommendation, the files); the report is ``probattr_monitor.report``.
"""

from ..errors import renamed_names
from .config import (
    LOCK_FILE,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SweepConfig,
    SweepSummary,
    csv_keys,
    frozen_by_the_run,
    read_record,
    resolve_checkpoints,
    row_keys,
)
from .logs import log_record, open_guarded_sinks
from .runner import probe_checkpoint, records_lock, run_sweep
from .summary import collect_rows, load_records, summarise

__all__ = [
    "LOCK_FILE", "SUMMARY_CSV", "SUMMARY_JSON", "SweepConfig", "SweepSummary", "collect_rows", "csv_keys",
    "frozen_by_the_run", "load_records", "log_record", "open_guarded_sinks", "probe_checkpoint", "read_record",
    "records_lock", "resolve_checkpoints", "row_keys", "run_sweep", "summarise",
]


def _report_run():
    from ..report import report_run

    return report_run


# ``report_run``, which moved to :mod:`probattr_monitor.report`, until 0.5 (``FutureWarning``)
_renamed = renamed_names(__name__, {"report_run": ("probattr_monitor.report.report_run", _report_run)})


def __getattr__(name: str):
    """``ROW_KEYS`` and ``CSV_KEYS`` derived when read (``row_keys()``, ``csv_keys()``: registered
    statistics included); ``report_run`` at its old place until 0.5."""
    if name == "ROW_KEYS":
        return row_keys()
    if name == "CSV_KEYS":
        return csv_keys()
    return _renamed(name)
