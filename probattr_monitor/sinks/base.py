"""What every sink shares: the record it writes, the class it derives from, and the tracker
registry every ``report_to`` / ``--report-to`` reads.

A tracker is a :class:`Tracker` in :data:`TRACKERS`: its ``report_to`` name, the package it needs
and the extra that installs it, and its :class:`Sink` class, built from one :class:`SinkOptions`
(``Sink.from_options``). ``open_sinks``, the CLI's ``--report-to`` choices (sweep, watch, demo),
the callback's ``report_to`` check and its installed trackers all read the registry. Adding one::

    register_tracker(Tracker("mine", package="mine", extra="mine", sink=MySink))

where ``MySink(Sink)`` has ``name = "mine"``, ``write``, ``close`` and, when its constructor needs
more than ``MySink()``, a ``from_options`` classmethod.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ..errors import InputError, MissingPackageError
from ..probes.types.registry import Registry


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


@dataclass
class SinkOptions:
    """Everything a sink may be opened with (each takes what it needs).

    Attributes:
        tensorboard_dir: where TensorBoard event files go (when no writer is shared).
        tensorboard_writer: a ``SummaryWriter`` to share (never closed by the sink).
        run_dir: where a tracker that keeps local files writes them (W&B's ``dir``).
        run_name: the name of a run a tracker starts (when none is active).
        run_ids: ``{tracker name: run id}`` to resume instead of starting one (how a process beside
            the training logs into the Trainer's run).
    """

    tensorboard_dir: Optional[str] = None
    tensorboard_writer: Any = None
    run_dir: Optional[str] = None
    run_name: Optional[str] = None
    run_ids: dict = field(default_factory=dict)


class Sink(ABC):
    """A destination for :class:`LogEntry` objects: ``write`` one record, ``close`` once (idempotent)."""

    name: str = ""

    @classmethod
    def from_options(cls, options: SinkOptions) -> "Sink":
        """The sink for ``options`` (the default takes none of them)."""
        return cls()

    @abstractmethod
    def write(self, record: LogEntry) -> None:
        """Write ``record`` at ``record.step``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release what the sink opened (never what it was handed)."""


def require(package: str, extra: str) -> None:
    """Raise :class:`MissingPackageError` (an ``ImportError``) with the install line when ``package``
    is not installed."""
    if importlib.util.find_spec(package) is None:
        raise MissingPackageError(f"logging to {extra}", package, extra)


@dataclass(frozen=True)
class Tracker:
    """One ``report_to`` target.

    Attributes:
        name: what ``report_to`` and ``--report-to`` call it.
        package: the package its sink imports; extra: the ``probattr-monitor[...]`` extra that installs it.
        sink: its :class:`Sink` class, or its ``"module:Class"`` path (imported when opened).
        resumes: whether its sink logs into an existing run given by id (``SinkOptions.run_ids[name]``):
            the watcher then offers ``--<name>-run-id`` (how a process beside the training logs
            into the Trainer's run).
    """

    name: str
    package: str
    extra: str
    sink: Union[str, Callable[..., Any]]
    resumes: bool = False

    def sink_class(self) -> Any:
        """The :class:`Sink` class, imported if given as a path."""
        if isinstance(self.sink, str):
            module, _, name = self.sink.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.sink

    def open(self, options: SinkOptions) -> Sink:
        """A new sink for ``options`` (its constructor raises ``MissingPackageError`` when its package is missing)."""
        return self.sink_class().from_options(options)

    def installed(self) -> bool:
        """Whether its package can be imported."""
        return importlib.util.find_spec(self.package) is not None

    def require(self) -> None:
        """:func:`require` for its package and extra."""
        require(self.package, self.extra)


TRACKERS = Registry("tracker", InputError)  # name -> Tracker


def register_tracker(tracker: Tracker) -> Tracker:
    """Add ``tracker`` to :data:`TRACKERS` (replacing one of the same name) and return it."""
    if tracker.name in ("auto", "none", "all"):
        raise InputError(f"{tracker.name!r} is a report_to keyword, not a tracker name")
    return TRACKERS.add(tracker.name, tracker)


def unregister_tracker(name: str) -> None:
    """Remove a tracker :func:`register_tracker` added (the built-ins stay)."""
    TRACKERS.remove(name)


def tracker_names() -> tuple[str, ...]:
    """Every registered tracker's name, built-ins first."""
    return tuple(TRACKERS)


def resuming_trackers() -> tuple[str, ...]:
    """The names of the trackers whose sinks resume a run by id (:attr:`Tracker.resumes`)."""
    return tuple(name for name, tracker in TRACKERS.items() if tracker.resumes)


def with_old_run_ids(run_ids: Optional[dict], where: str, stacklevel: int, **old: Optional[str]) -> dict:
    """``run_ids`` with 0.3's per-tracker keywords (``wandb_run_id=``, ``mlflow_run_id=``, given as
    ``wandb=``, ``mlflow=``) merged over it, each given one after one ``FutureWarning`` naming ``where``."""
    from ..errors import warn_renamed

    merged = dict(run_ids or {})
    for tracker, run_id in old.items():
        if run_id is not None:
            warn_renamed(f"{tracker}_run_id=", f"run_ids={{{tracker!r}: ...}}", where, stacklevel=stacklevel + 1)
            merged[tracker] = run_id
    return merged


def tracker_named(name: str) -> Tracker:
    """The registered tracker called ``name`` (``InputError`` naming the known ones otherwise)."""
    return TRACKERS.named(name)


for _name, _class, _resumes in (("tensorboard", "TensorBoardSink", False), ("wandb", "WandbSink", True),
                                ("mlflow", "MlflowSink", True), ("trackio", "TrackioSink", False)):
    # each package, and its extra, has the tracker's name
    register_tracker(Tracker(_name, _name, _name, f"probattr_monitor.sinks.{_name}:{_class}", resumes=_resumes))
TRACKERS.seal()
REPORT_TARGETS = tracker_names()  # the built-in trackers; code that offers choices reads tracker_names()
