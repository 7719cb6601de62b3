"""What a record is keyed on: the prompt set it probed (:class:`PromptSet`, with its hash) and
the :class:`RecordKey` that says whether a stored record still describes what a caller asks for."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from ..probes.engines.budgeted import ESTIMATOR_REVISION
from ..probes.types.policies import revision_of
from ..probes.types.settings import ProbeSettings

# 2: fixed responses are token ids, records carry their prompt set; 3: provenance, keyed by dtype;
# 4: the weights' fingerprint in the provenance, records checked all the way down.
FORMAT_VERSION = 4

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
        guard: the guard set, ``(prompt, response)`` pairs scored for ``log P(r | p)`` only
            (``probes.engines.likelihood``), or ``None``.
    """

    prompts: tuple
    response_mode: str = "generate"
    responses: Optional[tuple] = None
    guard: Optional[tuple] = None

    @classmethod
    def of(cls, prompts: Sequence[str], responses: Optional[Sequence[Response]] = None,
           response_mode: Optional[str] = None, guard: Optional[Sequence] = None) -> "PromptSet":
        """A prompt set; the mode defaults to ``"fixed"`` when responses are given."""
        mode = response_mode or ("generate" if responses is None else "fixed")
        frozen = None if responses is None else tuple(list(r) if isinstance(r, (list, tuple)) else r for r in responses)
        pairs = None if not guard else tuple((p if isinstance(p, str) else [dict(m) for m in p],
                                              list(r) if isinstance(r, (list, tuple)) else r) for p, r in guard)
        return cls(tuple(prompts), mode, frozen, pairs)

    def to_dict(self) -> dict:
        """``{"prompts", "response_mode", "responses", "guard"}``, JSON-ready."""
        return {"prompts": list(self.prompts), "response_mode": self.response_mode,
                "responses": None if self.responses is None else list(self.responses),
                "guard": None if self.guard is None else [list(pair) for pair in self.guard]}

    @property
    def hash(self) -> str:
        """SHA-256 of :meth:`to_dict` as JSON: prompts, response mode and fixed responses."""
        text = json.dumps(self.to_dict(), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RecordKey:
    """What must match for a stored record to be reused or summarised with others.

    ``settings`` is :meth:`ProbeSettings.result_key` (the settings that decide the numbers);
    ``prompt_set_hash`` is :attr:`PromptSet.hash`; ``dtype`` the model's weights' dtype and
    ``policy`` the candidate policy that ran (``"exact"`` or ``"budget"``).
    """

    settings: tuple
    prompt_set_hash: str
    dtype: Optional[str] = None
    policy: Optional[str] = None
    estimator_revision: int = ESTIMATOR_REVISION
    format_version: int = FORMAT_VERSION

    @classmethod
    def of(cls, settings: ProbeSettings, prompt_set: PromptSet, dtype: Optional[str] = None,
           policy: Optional[str] = None) -> "RecordKey":
        """The key of records made with ``settings`` on ``prompt_set`` by this version, with the
        revision of ``policy``'s own estimator (``probes.types.policies.revision_of``)."""
        return cls(tuple(sorted(settings.result_key().items())), prompt_set.hash, dtype, policy, revision_of(policy))

    @property
    def id(self) -> str:
        """12 hex digits of SHA-256 over the key: the suffix of a side-by-side record's file name."""
        text = json.dumps([list(self.settings), self.prompt_set_hash, self.dtype, self.policy,
                           self.estimator_revision, self.format_version], default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    def describe(self) -> str:
        """A short human-readable form: the settings that differ from the defaults, dtype, policy
        and the prompt-set hash prefix."""
        defaults = ProbeSettings().result_key()
        changed = {name: value for name, value in self.settings if defaults.get(name) != value}
        settings = ", ".join(f"{name}={value!r}" for name, value in changed.items()) or "default settings"
        return f"{settings}; {self.dtype or 'unknown dtype'}, {self.policy or 'unknown'} policy; " \
               f"prompt set {self.prompt_set_hash[:8]}"
