"""Result objects: one :class:`ProbeResult` per probed prompt, owning the JSON format of the maths guide.

``ProbeResult.to_dict()`` is exactly the maths guide's result object (plus documented extra fields) and
``ProbeResult.from_dict(d)`` reads it back; ``save`` / ``load`` do the same through a file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from ..maths.values import is_finite_number


@dataclass
class Candidate:
    """One of the top candidates of a posterior at a position."""

    token_id: int
    token: str
    prob: float


@dataclass
class TokenAttribution:
    """The probe quantities of one prompt token (the maths guide's names and meanings).

    Attributes:
        position: index among the prompt tokens, from 0 (the start token gets no score).
        token_id: the prompt token ``p_k``.
        token: its text (``tokenizer.decode([token_id])``).
        attribution_score: ``AS_k = log q_context(p_k) - log q_prompt(p_k)`` in nats.
        entropy_prompt: entropy of ``q_prompt`` (rest of the prompt) in nats.
        entropy_context: entropy of ``q_context`` (rest of prompt + response) in nats.
        kl_context_prompt: ``KL(q_context || q_prompt)``.
        kl_prompt_context: ``KL(q_prompt || q_context)``.
        band: ``"negative"``, ``"near_zero"`` or ``"high"`` (see ``noise.attribution_band``).
        noise: the noise-token flag (from the point estimates).
        top_prompt: top candidates of ``q_prompt``.
        top_context: top candidates of ``q_context``.
        attribution_score_stderr: the standard error of the AS (0 for exact results); the 95%
            interval of a quantity is its value +- 1.96 x its ``_stderr``. The same holds for
            ``entropy_prompt_stderr``, ``entropy_context_stderr``, ``kl_context_prompt_stderr``
            and ``kl_prompt_context_stderr``.
        noise_uncertain: the intervals straddle a noise threshold: ``noise`` is then a best guess
            and the token is counted in ``summary["noise_uncertain"]``, not trusted.
        replacement_entropy: response stability (``probes.engines.replacement``), with ``top_p_set_size``,
            ``replacement_entropy_sampled``, ``original_response_share`` and
            ``original_response_share_sampled``, when the ``replacement_entropy`` setting is on;
            else ``None``.
        semantic_scope, fisher_scope, temperature_scope: the Jacobian Scopes of the token
            aggregated over the response (``probes.engines.scopes``), when named in the ``scopes``
            setting; else ``None``.
    """

    position: int
    token_id: int
    token: str
    attribution_score: float
    entropy_prompt: float
    entropy_context: float
    kl_context_prompt: float
    kl_prompt_context: float
    band: str
    noise: bool
    top_prompt: list[Candidate] = field(default_factory=list)
    top_context: list[Candidate] = field(default_factory=list)
    attribution_score_stderr: float = 0.0
    entropy_prompt_stderr: float = 0.0
    entropy_context_stderr: float = 0.0
    kl_context_prompt_stderr: float = 0.0
    kl_prompt_context_stderr: float = 0.0
    noise_uncertain: bool = False
    top_p_set_size: Optional[int] = None
    replacement_entropy: Optional[float] = None
    replacement_entropy_sampled: Optional[float] = None
    original_response_share: Optional[float] = None
    original_response_share_sampled: Optional[float] = None
    semantic_scope: Optional[float] = None
    fisher_scope: Optional[float] = None
    temperature_scope: Optional[float] = None

    @classmethod
    def from_dict(cls, data: dict) -> "TokenAttribution":
        """Inverse of ``dataclasses.asdict`` (the top candidates read back as :class:`Candidate`)."""
        values = dict(data)
        values["top_prompt"] = [Candidate(**c) for c in values.get("top_prompt", [])]
        values["top_context"] = [Candidate(**c) for c in values.get("top_context", [])]
        return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)




# What a stored value of each declared field type must be (the types as the dataclasses spell them).
_TYPES = {
    "int": _is_int,
    "float": is_finite_number,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "Optional[int]": lambda v: v is None or _is_int(v),
    "Optional[float]": lambda v: v is None or is_finite_number(v),
    "Optional[str]": lambda v: v is None or isinstance(v, str),
    "Optional[list]": lambda v: v is None or isinstance(v, list),
}


def _check_fields(cls, data: Any, where: str, nested: Optional[dict] = None) -> None:
    """``data`` is a dict with exactly ``cls``'s fields (those with defaults may be missing), each of
    its declared type; list fields of dataclasses named in ``nested`` are checked item by item."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} should be a JSON object, got {type(data).__name__}")
    declared = {f.name: f for f in fields(cls)}
    extra = sorted(set(data) - set(declared))
    if extra:
        raise ValueError(f"{where} has unknown field(s) {', '.join(extra)}")
    for name, spec in declared.items():
        if name not in data:
            if spec.default is spec.default_factory:  # both MISSING: a required field
                raise ValueError(f"{where} lacks {name}")
            continue
        value, kind = data[name], str(spec.type)
        if kind.startswith("list"):
            if not isinstance(value, list):
                raise ValueError(f"{where}.{name} should be a list, got {type(value).__name__}")
            item = (nested or {}).get(name) or (Candidate if "Candidate" in kind else None)
            if item is not None:
                for index, entry in enumerate(value):
                    _check_fields(item, entry, f"{where}.{name}[{index}]")
        elif kind in _TYPES and not _TYPES[kind](value):
            raise ValueError(f"{where}.{name} should be {kind}, got {value!r}")


def summarize(tokens: Sequence[TokenAttribution]) -> dict:
    """Per-prompt summary statistics of the token rows.

    ``noise_tokens`` (count of noise flags), ``noise_uncertain`` (tokens whose intervals straddle
    a threshold), ``noise_fraction`` (count / tokens), ``n_tokens``, the means of AS, both
    entropies and both KLs (``mean_kl`` is the mean of ``KL(q_context || q_prompt)``), and the
    count of tokens in each AS band (``band_negative``, ``band_near_zero``, ``band_high``); with
    replacement entropy on, ``mean_replacement_entropy`` and ``mean_original_response_share`` (greedy).
    """
    count = len(tokens)

    def mean(name: str) -> Optional[float]:
        return sum(getattr(t, name) for t in tokens) / count if count else None

    noise = sum(1 for t in tokens if t.noise)
    stability = [t for t in tokens if t.replacement_entropy is not None]
    extra = {} if not stability else {
        "mean_replacement_entropy": sum(t.replacement_entropy or 0.0 for t in stability) / len(stability),
        "mean_original_response_share": sum(t.original_response_share or 0.0 for t in stability) / len(stability),
    }
    return {
        **extra,
        "noise_tokens": noise,
        "noise_uncertain": sum(1 for t in tokens if t.noise_uncertain),
        "noise_fraction": noise / count if count else None,
        "n_tokens": count,
        "mean_attribution": mean("attribution_score"),
        "mean_entropy_prompt": mean("entropy_prompt"),
        "mean_entropy_context": mean("entropy_context"),
        "mean_kl": mean("kl_context_prompt"),
        "mean_kl_prompt_context": mean("kl_prompt_context"),
        "band_negative": sum(1 for t in tokens if t.band == "negative"),
        "band_near_zero": sum(1 for t in tokens if t.band == "near_zero"),
        "band_high": sum(1 for t in tokens if t.band == "high"),
    }


@dataclass
class ProbeResult:
    """The probes of one prompt.

    Attributes:
        prompt, response: the texts (a generated response is the decoded continuation).
        prompt_token_ids, response_token_ids: the scored ids (the maths guide's conventions).
        log_p_response: ``log P(r | s, p)`` in nats (``None`` when invalid).
        tokens: one :class:`TokenAttribution` per prompt token.
        summary: :func:`summarize` of the tokens, plus ``token_forwards`` (suffix tokens evaluated)
            and ``seconds`` (wall time of this prompt).
        valid: ``False`` when the model produced non-finite logits; ``error`` then says why.
        response_source: ``"given"`` or ``"generated"``.
        start_token_id: the conditioning token ``s``.
        settings: the settings that produced it, as ``ProbeSettings.to_dict()`` (a JSON object;
            ``ProbeSettings.from_dict(result.settings)`` gives the settings back).
        chat_template: whether the prompt went through the tokenizer's chat template; then
            ``prompt_token_ids`` holds the whole templated prompt and ``tokens`` only the user's
            tokens (their ``position`` indexes ``prompt_token_ids``).
        messages: the conversation, when the prompt was given as chat messages (``prompt`` then
            shows the last user message).
        response_empty: the response holds nothing but end-of-sequence (or special) tokens and
            whitespace: its noise table says little about the model (the CLI warns).
    """

    prompt: str
    response: str
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    log_p_response: Optional[float]
    tokens: list[TokenAttribution]
    summary: dict
    valid: bool = True
    error: Optional[str] = None
    response_source: str = "given"
    start_token_id: Optional[int] = None
    settings: dict = field(default_factory=dict)
    chat_template: bool = False
    messages: Optional[list] = None
    response_empty: bool = False

    @property
    def noise_tokens(self) -> Optional[int]:
        """How many prompt tokens are noise tokens (``None`` for an invalid result)."""
        return self.summary.get("noise_tokens")

    def to_dict(self) -> dict:
        """The result as a JSON object (the fields of the maths guide, and ``band``, ``top_*``, ``valid``,
        ``error``, ...)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ProbeResult":
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["tokens"] = [TokenAttribution.from_dict(t) for t in values.get("tokens", [])]
        if isinstance(values.get("summary"), dict) and "candidates" in values["summary"]:  # written by 0.2
            values["summary"] = {("candidate_policy" if k == "candidates" else k): v
                                 for k, v in values["summary"].items()}
        return cls(**values)

    def to_json(self, **kwargs: Any) -> str:
        """``json.dumps(self.to_dict())``; non-finite floats are refused (strict JSON)."""
        return json.dumps(self.to_dict(), allow_nan=False, ensure_ascii=False, **kwargs)

    def save(self, path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(self.to_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "ProbeResult":
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def checked(cls, data: Any, where: str = "result") -> "ProbeResult":
        """:meth:`from_dict` of a stored object, checked all the way down: every field present with
        its type, every number finite, every token row and candidate well-formed.

        Raises:
            ValueError: naming the first field that is missing, extra, of the wrong type or not finite.
        """
        _check_fields(cls, data, where, nested={"tokens": TokenAttribution})
        result = cls.from_dict(data)
        for name in ("prompt_token_ids", "response_token_ids"):
            if not all(_is_int(i) for i in getattr(result, name)):
                raise ValueError(f"{where}.{name} should hold integer token ids")
        for key, value in result.summary.items():
            if not (value is None or isinstance(value, str) or is_finite_number(value)):
                raise ValueError(f"{where}.summary.{key} should be a finite number, a string or null, got {value!r}")
        return result

    @classmethod
    def invalid(cls, prompt: str, response: str, prompt_ids, response_ids, error: str, **extra: Any) -> "ProbeResult":
        """A result for a probe that could not be scored (e.g. non-finite logits)."""
        return cls(
            prompt=prompt,
            response=response,
            prompt_token_ids=list(prompt_ids),
            response_token_ids=list(response_ids),
            log_p_response=None,
            tokens=[],
            summary={"noise_tokens": None, "noise_fraction": None, "n_tokens": len(prompt_ids)},
            valid=False,
            error=error,
            **extra,
        )

