"""``probattr.json``: the full results of one probe run, stored beside the checkpoint it probed.

This module owns the record: its fields (:class:`RunRecord`), its format version, and the key
that says whether a stored record still describes what a caller asks for (:class:`RecordKey`:
the settings that decide the numbers, a hash of the prompt set, the estimator revision and the
format version). A record of an unknown format version, or of the wrong JSON shape, is never
trusted: :meth:`RunRecord.load` returns ``None`` for it and the caller recomputes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..probes.budgeted import ESTIMATOR_REVISION
from ..probes.settings import ProbeSettings
from ..storage import write_json_atomic

RESULTS_FILE = "probattr.json"
FORMAT_VERSION = 2  # 2: fixed responses are token ids; records carry their prompt set
STATUSES = ("ok", "failed")

# A response entry: None (the model's greedy continuation), a text, or frozen token ids.
Response = Union[None, str, list]


@dataclass(frozen=True)
class PromptSet:
    """The prompts and how their responses are chosen, which (with the settings) decide a record's numbers.

    Attributes:
        prompts: the prompt texts.
        response_mode: ``"generate"`` (each checkpoint's greedy continuation) or ``"fixed"``.
        responses: ``None`` in generate mode; else one entry per prompt: a text, frozen token ids
            (a list of ints), or ``None`` for a prompt whose response is not frozen yet.
    """

    prompts: tuple
    response_mode: str = "generate"
    responses: Optional[tuple] = None

    @classmethod
    def of(cls, prompts: Sequence[str], responses: Optional[Sequence[Response]] = None,
           response_mode: Optional[str] = None) -> "PromptSet":
        """A prompt set; the mode defaults to ``"fixed"`` when responses are given."""
        mode = response_mode or ("generate" if responses is None else "fixed")
        frozen = None if responses is None else tuple(list(r) if isinstance(r, (list, tuple)) else r for r in responses)
        return cls(tuple(prompts), mode, frozen)

    def to_dict(self) -> dict:
        """``{"prompts", "response_mode", "responses"}``, JSON-ready."""
        return {"prompts": list(self.prompts), "response_mode": self.response_mode,
                "responses": None if self.responses is None else list(self.responses)}

    @property
    def hash(self) -> str:
        """SHA-256 of :meth:`to_dict` as JSON: prompts, response mode and fixed responses."""
        text = json.dumps(self.to_dict(), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RecordKey:
    """What must match for a stored record to be reused or summarised with others.

    ``settings`` is :meth:`ProbeSettings.result_key` (the settings that decide the numbers);
    ``prompt_set_hash`` is :attr:`PromptSet.hash`.
    """

    settings: tuple
    prompt_set_hash: str
    estimator_revision: int = ESTIMATOR_REVISION
    format_version: int = FORMAT_VERSION

    @classmethod
    def of(cls, settings: ProbeSettings, prompt_set: PromptSet) -> "RecordKey":
        """The key of records made with ``settings`` on ``prompt_set`` by this version."""
        return cls(tuple(sorted(settings.result_key().items())), prompt_set.hash)

    def describe(self) -> str:
        """A short human-readable form: the settings that differ from the defaults and the hash prefix."""
        defaults = ProbeSettings().result_key()
        changed = {name: value for name, value in self.settings if defaults.get(name) != value}
        settings = ", ".join(f"{name}={value!r}" for name, value in changed.items()) or "default settings"
        return f"{settings}; prompt set {self.prompt_set_hash[:8]}"


@dataclass
class RunRecord:
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
        results: one MATH.md object per prompt.
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
    format_version: int = FORMAT_VERSION
    estimator_revision: int = ESTIMATOR_REVISION
    probattr_monitor_version: str = ""

    @classmethod
    def from_run(cls, run, prompt_set: PromptSet, settings: ProbeSettings,
                 checkpoint: Optional[str] = None) -> "RunRecord":
        """The record of a :class:`~probattr_monitor.monitoring.run.ProbeRun`."""
        from .. import __version__

        return cls(step=run.step, checkpoint=checkpoint, settings=settings.to_dict(), prompt_set=prompt_set.to_dict(),
                   prompt_set_hash=prompt_set.hash, status="ok" if run.error is None else "failed", error=run.error,
                   probe_seconds=run.seconds, summary=run.statistics,
                   results=[result.to_dict() for result in run.results], probattr_monitor_version=__version__)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> Optional[RecordKey]:
        """This record's :class:`RecordKey`, or ``None`` when its settings are not readable."""
        try:
            settings = ProbeSettings.from_dict(self.settings)
        except ValueError:
            return None
        return RecordKey(tuple(sorted(settings.result_key().items())), self.prompt_set_hash, self.estimator_revision,
                         self.format_version)

    def matches(self, key: RecordKey) -> bool:
        """Made with the settings, prompt set, estimator revision and format version of ``key``."""
        return self.key == key

    def is_reusable(self, key: RecordKey) -> bool:
        """A finished (``ok``) record that :meth:`matches` ``key``: it need not be computed again."""
        return self.ok and self.matches(key)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "RunRecord":
        """Read a record; raises ``ValueError`` for the wrong JSON shape or another format version."""
        if not isinstance(data, dict):
            raise ValueError(f"a probattr.json record should be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"probattr.json format version {version!r}; this version reads {FORMAT_VERSION}")
        names = {name for name in cls.__dataclass_fields__}
        try:
            record = cls(**{name: value for name, value in data.items() if name in names})
        except TypeError as error:
            raise ValueError(f"a probattr.json record lacks fields: {error}") from None
        if record.status not in STATUSES or not isinstance(record.step, int) or not isinstance(record.results, list) \
                or not isinstance(record.summary, dict) or not isinstance(record.settings, dict):
            raise ValueError("a probattr.json record has fields of the wrong type")
        return record

    def save(self, folder) -> Path:
        """Write ``folder/probattr.json`` atomically (strict JSON); returns its path."""
        path = Path(folder) / RESULTS_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path) -> Optional["RunRecord"]:
        """The record at ``path``; ``None`` when there is none, or it is unreadable, of the wrong
        shape or of another format version (so the caller recomputes rather than trusts it)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None
