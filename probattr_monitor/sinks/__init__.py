"""Logging sinks: thin writers of one probe run's numbers, histograms, images and token table.

Every sink takes the same :class:`LogEntry` (built once per run by the caller) and only writes
it. :func:`open_sinks` is the one factory (the callback and the sweep both use it) and
:class:`GuardedSinks` the one place where a failing sink is caught: reported once, disabled and
counted, so that a full disk or a missing W&B key never ends the run being watched. Optional
dependencies (tensorboard, wandb, mlflow, trackio) are imported on first use; asking for a sink
whose package is missing fails with the install command.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..errors import one_line, renamed_names, warn_user
from .base import (
    REPORT_TARGETS,
    TRACKERS,
    LogEntry,
    Sink,
    SinkOptions,
    Tracker,
    register_tracker,
    require,
    resuming_trackers,
    tracker_named,
    tracker_names,
    unregister_tracker,
    with_old_run_ids,
)

__all__ = ["REPORT_TARGETS", "TRACKERS", "GuardedSinks", "LogEntry", "Sink", "SinkOptions", "Tracker", "open_sinks",
           "register_tracker", "require", "resuming_trackers", "tracker_named", "tracker_names", "unregister_tracker"]


def open_sinks(targets: Sequence[str], tensorboard_dir: Optional[str] = None, tensorboard_writer: Any = None,
               wandb_dir: Optional[str] = None, wandb_run_name: Optional[str] = None,
               wandb_run_id: Optional[str] = None, mlflow_run_id: Optional[str] = None,
               run_ids: Optional[dict] = None) -> list[Sink]:
    """The sinks for ``targets`` (registered trackers, ``sinks.base.TRACKERS``), in that order.

    ``tensorboard_writer``: a ``SummaryWriter`` to share (never closed by the sink), else one is
    created in ``tensorboard_dir`` on first write. W&B, MLflow and trackio reuse the active run (the
    one the Trainer's integration started), else start one named ``wandb_run_name`` (W&B in
    ``wandb_dir``) on first write; ``run_ids`` (``{tracker name: run id}``, for the trackers that
    resume, ``sinks.base.resuming_trackers``) resume those runs instead (how a process beside the
    training logs into the Trainer's run); ``wandb_run_id`` / ``mlflow_run_id`` are 0.3's spellings
    of ``run_ids`` (a ``FutureWarning``; removed in 0.5). Raises ``MissingPackageError`` (with the install
    command) for a target whose package is missing and ``InputError`` for an unknown target.
    """
    options = SinkOptions(tensorboard_dir=tensorboard_dir, tensorboard_writer=tensorboard_writer, run_dir=wandb_dir,
                          run_name=wandb_run_name,
                          run_ids={**with_old_run_ids(None, "open_sinks", 3, wandb=wandb_run_id, mlflow=mlflow_run_id),
                                   **{name: run_id for name, run_id in (run_ids or {}).items() if run_id}})
    trackers = [tracker_named(target) for target in targets]  # every name checked before any sink opens
    return [tracker.open(options) for tracker in trackers]


class GuardedSinks:
    """Sinks whose faults never reach the caller unless ``strict``.

    A sink whose ``write`` raises (``OSError`` on a full disk, ``wandb.errors.UsageError`` with no
    API key, ...) is reported once with a warning naming it and the error, disabled for the rest of
    the run, and counted in :attr:`failures`; the other sinks still get the record. With
    ``strict=True`` the exception propagates instead.
    """

    def __init__(self, sinks: Sequence[Sink], strict: bool = False) -> None:
        self.sinks = list(sinks)
        self.strict = strict
        self.failures = 0
        self.disabled: dict[str, str] = {}  # sink name -> the error that disabled it

    def write(self, record: LogEntry) -> int:
        """Write ``record`` to every working sink; returns how many sinks failed on it."""
        failed = 0
        for sink in list(self.sinks):
            try:
                sink.write(record)
            except Exception as error:  # noqa: BLE001 - a sink must never end the run it logs
                if self.strict:
                    raise
                failed += 1
                self._disable(sink, error, f"at step {record.step}")
        self.failures += failed
        return failed

    def close(self) -> None:
        """Close every sink; a failure to close is reported, never raised unless ``strict``."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as error:  # noqa: BLE001
                if self.strict:
                    raise
                warn_user(f"probattr-monitor: closing the {sink.name} sink failed: {_describe(error)}",
                              stacklevel=2)
        self.sinks = []

    def _disable(self, sink: Sink, error: BaseException, where: str) -> None:
        self.sinks.remove(sink)
        self.disabled[sink.name] = _describe(error)
        warn_user(f"probattr-monitor: the {sink.name} sink failed {where} and is disabled for the rest of the "
                      f"run: {_describe(error)}", stacklevel=3)
        try:
            sink.close()
        except Exception:  # noqa: BLE001 - already broken; the warning above says so
            pass


def _describe(error: BaseException) -> str:
    """``"Type: first line of the message"``: one line, whatever the exception."""

    return one_line(error)


# ``ProbeRecord``, the 0.2 name of :class:`LogEntry`, until 0.5 (``FutureWarning``)
__getattr__ = renamed_names(__name__, {"ProbeRecord": ("probattr_monitor.sinks.LogEntry", lambda: LogEntry)})
