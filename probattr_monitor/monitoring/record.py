"""``probattr.json``: the full results of one probe run, stored beside the checkpoint it probed.

This module owns the record: its fields (:class:`CheckpointRecord`) and where it is stored. Its
format version and its key (``record_key``) say whether a stored record still describes what a
caller asks for (:class:`RecordKey`: the settings that decide the numbers, a hash of the prompt set,
the model's dtype, the candidate policy, the estimator revision and the format version). The key
says whether two records are comparable; whether a record belongs to a checkpoint is its *identity*:
the checkpoint's name and step and the fingerprint of the weights it measured
(``provenance["weights"]``, :meth:`CheckpointRecord.measured`). A record is reused only when both
match. A record of an unknown format version, of the wrong JSON shape, or with a wrong value
anywhere inside (a string for a number, NaN, a malformed token row) is never trusted:
:meth:`CheckpointRecord.load` returns ``None`` for it and the caller recomputes.

Records made with different keys live side by side: ``probattr.json`` holds the first, and a record
whose key differs from an ``ok`` record already there goes to ``probattr-<key id>.json``
(:func:`record_file`), so a sweep with other settings, or one whose loads fail, never replaces good
records.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError, renamed_names
from ..probes.engines.budgeted import ESTIMATOR_REVISION
from ..probes.maths.values import is_finite_number
from ..probes.types.policies import revision_of
from ..probes.types.result import ProbeResult
from ..probes.types.settings import ProbeSettings
from ..storage import write_json_atomic
from .record_key import FORMAT_VERSION, PromptSet, RecordKey

RESULTS_FILE = "probattr.json"
RESULTS_GLOB = "probattr*.json"
STATUSES = ("ok", "failed")


@dataclass
class CheckpointRecord:
    """One ``probattr.json``: what a probe run of one checkpoint found, and how it was made.

    Attributes:
        step: the training step.
        checkpoint: the checkpoint folder's name (``None`` when not written into one).
        settings: :meth:`ProbeSettings.to_dict`.
        prompt_set: :meth:`PromptSet.to_dict`.
        prompt_set_hash: :attr:`PromptSet.hash`.
        status: ``"ok"`` or ``"failed"``.
        error: ``"Type: message"`` when failed.
        probe_seconds: wall time of the run.
        summary: ``monitoring.metrics.run_summary`` of the results.
        results: one result object per prompt (the maths guide's format).
        provenance: how it was computed (``monitoring.provenance``): dtype, device, model class,
            candidate policy, library versions, and base model and adapter for a PEFT model.
        guard_log_p: ``log P(r | p)`` of each guard pair (``None`` where the logits were not finite).
        format_version, estimator_revision, probattr_monitor_version: what wrote it.
    """

    step: int
    checkpoint: Optional[str]
    settings: dict
    prompt_set: dict
    prompt_set_hash: str
    status: str
    error: Optional[str] = None
    probe_seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    results: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    guard_log_p: list = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    estimator_revision: int = ESTIMATOR_REVISION
    probattr_monitor_version: str = ""

    @classmethod
    def from_run(cls, run, prompt_set: PromptSet, settings: ProbeSettings,
                 checkpoint: Optional[str] = None, provenance: Optional[dict] = None) -> "CheckpointRecord":
        """The record of a :class:`~probattr_monitor.monitoring.run.ProbeRun`; ``provenance``
        (default: the run's own) says how it was computed, or was to be for a run that failed."""
        from .. import __version__

        return cls(step=run.step, checkpoint=checkpoint, settings=settings.to_dict(), prompt_set=prompt_set.to_dict(),
                   prompt_set_hash=prompt_set.hash, status="ok" if run.error is None else "failed", error=run.error,
                   probe_seconds=run.seconds, summary=run.statistics,
                   results=[result.to_dict() for result in run.results],
                   provenance=dict(provenance if provenance is not None else run.provenance),
                   guard_log_p=list(run.guard_log_p), probattr_monitor_version=__version__,
                   estimator_revision=revision_of((provenance if provenance is not None else run.provenance)
                                                  .get("policy")))

    @property
    def ok(self) -> bool:
        """Whether the probe run succeeded (``status == "ok"``)."""
        return self.status == "ok"

    @property
    def key(self) -> Optional[RecordKey]:
        """This record's :class:`RecordKey`, or ``None`` when its settings are not readable."""
        try:
            settings = ProbeSettings.from_dict(self.settings)
        except ValueError:
            return None
        return RecordKey(tuple(sorted(settings.result_key().items())), self.prompt_set_hash,
                         self.provenance.get("dtype"), self.provenance.get("policy"), self.estimator_revision,
                         self.format_version)

    def matches(self, key: RecordKey) -> bool:
        """Made with the settings, prompt set, estimator revision and format version of ``key``."""
        return self.key == key

    def is_reusable(self, key: RecordKey) -> bool:
        """A finished (``ok``) record that :meth:`matches` ``key``: comparable with the records a
        caller with ``key`` makes (whether it belongs to a given checkpoint is :meth:`measured`)."""
        return self.ok and self.matches(key)

    def measured(self, checkpoint: str, step: int, weights: Optional[str]) -> bool:
        """Whether this record was computed on checkpoint ``checkpoint`` at ``step`` with the
        weights whose fingerprint is ``weights`` (``monitoring.provenance.weights_fingerprint``).
        A record copied or linked from another checkpoint, or left from weights since replaced
        (a run retrained into the same folder, an adapter first swept on another base), is not."""
        return (weights is not None and self.provenance.get("weights") == weights
                and self.checkpoint == checkpoint and self.step == step)

    def to_dict(self) -> dict:
        """The record as the JSON object ``probattr.json`` holds."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "CheckpointRecord":
        """Read a record; raises ``InputError`` for the wrong JSON shape or another format version."""
        if not isinstance(data, dict):
            raise InputError(f"a probattr.json record should be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise InputError(f"probattr.json format version {version!r}; this version reads {FORMAT_VERSION}")
        names = {name for name in cls.__dataclass_fields__}
        try:
            record = cls(**{name: value for name, value in data.items() if name in names})
        except TypeError as error:
            raise InputError(f"a probattr.json record lacks fields: {error}") from None
        if record.status not in STATUSES or not isinstance(record.step, int) or not isinstance(record.results, list) \
                or not isinstance(record.summary, dict) or not isinstance(record.settings, dict) \
                or not isinstance(record.provenance, dict) or not isinstance(record.prompt_set, dict) \
                or not isinstance(record.prompt_set_hash, str) \
                or not (record.checkpoint is None or isinstance(record.checkpoint, str)):
            raise InputError("a probattr.json record has fields of the wrong type")
        for index, result in enumerate(record.results):
            ProbeResult.checked(result, f"results[{index}]")
        for name, value in record.summary.items():
            if not (value is None or isinstance(value, str) or is_finite_number(value)):
                raise InputError(f"a probattr.json record's summary.{name} is {value!r}, not a finite number")
        guard = record.guard_log_p
        if not isinstance(guard, list) or not all(v is None or is_finite_number(v) for v in guard):
            raise InputError("a probattr.json record's guard_log_p should hold finite numbers or null")
        if not is_finite_number(record.probe_seconds):
            raise InputError("a probattr.json record's probe_seconds is not a finite number")
        return record

    def save(self, folder) -> Path:
        """Write the record into ``folder`` atomically (strict JSON), at :func:`record_file`: never
        over an ``ok`` record made with another key. Returns its path."""
        key = self.key
        path = record_file(folder, key) if key is not None else Path(folder) / RESULTS_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path) -> Optional["CheckpointRecord"]:
        """The record at ``path``; ``None`` when there is none, or it is unreadable, of the wrong
        shape or of another format version (so the caller recomputes rather than trusts it)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constant))
        except (OSError, ValueError):
            return None


def _no_constant(name: str):
    """``json.loads`` hook: ``NaN`` and ``Infinity`` are not JSON, and never in a record this writes."""
    raise InputError(f"a probattr.json record holds {name}")


def record_file(folder, key: RecordKey) -> Path:
    """Where a record with ``key`` goes in ``folder``: ``probattr.json`` unless that holds an ``ok``
    record of this estimator revision with another key, then ``probattr-<key.id>.json`` (side by
    side, nothing good replaced). A record no version can reuse (failed, of an older estimator
    revision, unreadable) is replaced."""
    main = Path(folder) / RESULTS_FILE
    present = CheckpointRecord.load(main)
    if (present is None or not present.ok or present.key == key
            or present.estimator_revision != revision_of(present.provenance.get("policy"))):
        return main
    return Path(folder) / f"probattr-{key.id}.json"


def find_record(folder, key: RecordKey) -> Optional[CheckpointRecord]:
    """The record in ``folder`` made with ``key`` (side file first, then ``probattr.json``); when
    none matches, ``probattr.json``'s record (another key's, so callers can say why), or ``None``."""
    main = CheckpointRecord.load(Path(folder) / RESULTS_FILE)
    side = CheckpointRecord.load(Path(folder) / f"probattr-{key.id}.json")
    for record in (side, main):
        if record is not None and record.matches(key):
            return record
    return main


def folder_records(folder) -> list[CheckpointRecord]:
    """Every readable record in ``folder`` (``probattr.json`` and the side-by-side ones)."""
    found = []
    for path in sorted(Path(folder).glob(RESULTS_GLOB)):
        record = CheckpointRecord.load(path)
        if record is not None:
            found.append(record)
    return found


# ``RunRecord``, the 0.2 name of :class:`CheckpointRecord`, until 0.5 (``FutureWarning``)
__getattr__ = renamed_names(__name__, {"RunRecord": ("probattr_monitor.monitoring.record.CheckpointRecord",
                                                     lambda: CheckpointRecord)})
