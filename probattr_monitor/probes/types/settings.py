"""The one settings object shared by every code path (``probe``, the CLI, the callback, the sweep).

The same checkpoint scored with the same :class:`ProbeSettings` gives the same numbers everywhere.

Longer than 300 lines because one frozen dataclass whose fields carry their own CLI help and checks,
with the budget arithmetic that reads them: split, a field would sit apart from its check.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, TypeVar, Union

from ...errors import ProbeInputError, warn_renamed
from ..maths.values import is_finite_number
from .policies import candidate_policies

CANDIDATE_POLICIES = candidate_policies()  # the built-in ones; the check and the CLI read the registry
RENAMED_SETTINGS = {"candidates": "candidate_policy"}  # old spelling -> field (until 0.5)
NOISE_ENTROPIES = ("context", "prompt")

DEFAULT_MAX_NEW_TOKENS = 20
DEFAULT_AS_BAND = 0.2
DEFAULT_ENTROPY_THRESHOLD = 2.0
DEFAULT_CANDIDATE_BUDGET = 768
DEFAULT_COST_SHARE = 5  # by default a budgeted probe costs at most 1/5 of exact
SCOPE_NAMES = ("semantic", "fisher", "temperature")  # the Jacobian Scopes (probes.engines.scopes.SCOPES is this)
CPU_MEMORY_BUDGET_MB = 32.0  # toy: 1.1-1.3x faster than at 64 MB; SmolLM2: within 5% (bench_exact, bench_engine_flops)
ACCELERATOR_MEMORY_BUDGET_MB = 1024.0  # an accelerator whose free memory cannot be read (mps, xpu, ...)
CUDA_FREE_MEMORY_SHARE = 0.25  # of the memory free on a CUDA device when the probe starts
CUDA_MEMORY_BUDGET_RANGE_MB = (256.0, 16384.0)


def cuda_budget_bytes(free_bytes: int) -> int:
    """The default transient budget on a CUDA device with ``free_bytes`` free:
    ``CUDA_FREE_MEMORY_SHARE * free``, clipped to ``CUDA_MEMORY_BUDGET_RANGE_MB`` (the floor never
    above half of what is free)."""
    low, high = (int(mb * 2**20) for mb in CUDA_MEMORY_BUDGET_RANGE_MB)
    return max(min(low, free_bytes // 2), min(high, int(CUDA_FREE_MEMORY_SHARE * free_bytes)))


def _new_spellings(values: Mapping[str, Any], where: str) -> dict:
    """``values`` with each old spelling (:data:`RENAMED_SETTINGS`) renamed, after a ``FutureWarning``."""
    renamed = dict(values)
    for old, new in RENAMED_SETTINGS.items():
        if old in renamed:
            warn_renamed(old, new, where, stacklevel=4)
            if new in renamed:
                raise ProbeInputError(f"give {new} or its old spelling {old}, not both")
            renamed[new] = renamed.pop(old)
    return renamed


_Class = TypeVar("_Class", bound=type)


def _accept_old_spellings(cls: _Class) -> _Class:
    """Let ``cls(...)`` take the old spellings of :data:`RENAMED_SETTINGS` until 0.5 (the
    generated ``__init__`` stays what type checkers and ``inspect.signature`` see)."""
    generated = vars(cls)["__init__"]

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        generated(self, *args, **_new_spellings(kwargs, cls.__name__))

    type.__setattr__(cls, "__init__", __init__)
    return cls


@_accept_old_spellings
@dataclass(frozen=True)
class ProbeSettings:
    """How probes are computed and classified.

    Attributes:
        max_new_tokens: length of the greedy continuation used when no response is given
            (it stops early at EOS, which then belongs to the response). Default 20.
        as_band: half-width of the near-zero AS band in nats; ``|AS| <= as_band`` is near zero,
            below ``-as_band`` negative, above ``as_band`` high. Default 0.2 (the paper's band).
        entropy_threshold: a near-zero-AS token is a noise token when its contextual entropy is
            at least this many nats. Default 2.0 nats: the rest of the text leaves the token spread
            over the equivalent of more than e^2 ~ 7.4 equally likely choices.
        noise_entropy: which entropy the threshold applies to: ``"context"`` (prompt + response,
            the default) or ``"prompt"`` (rest of the prompt only).
        top_k: how many top candidates of q_prompt and q_context are reported per token.
        candidate_policy: the candidate policy. ``"exact"`` marginalises over the whole vocabulary;
            ``"budget"`` scores :meth:`budget_for` candidates per position on average (an exactly
            scored head plus a sampled tail) and reports standard errors; ``"auto"`` (default) is
            exact when the vocabulary is no larger than ``candidate_budget`` (768 when unset),
            else budget.
        candidate_budget: candidates scored per prompt position, on average, under the budget
            policy (the one budget knob). ``None`` (default): 768, or a fifth of the vocabulary
            when that is less (:meth:`budget_for`), so that by default a budgeted probe never costs
            more than a fifth of exact. Cost model: a probe costs at most
            ``min(|V|, budget) * sum_k (n - k + m - 1)`` token-forwards (suffix tokens run), against
            ``|V| * sum_k (n - k + m - 1)`` for exact: 64x fewer for |V| = 49,152 at the default
            768. Up to 3/8 of each position's share buys a one-token lookahead (one token-forward
            per id) and 1/32 a four-token lookahead of the ids it ranks highest; both steer which
            candidates are scored. 7/32 of the budget is pooled over the prompt's positions and goes
            where the attribution score is least certain (``probes.engines.budgeted``). On SmolLM2 the
            default 768 keeps AS within 0.05 nats of exact on the hardest measured positions in
            98-100% of replays; 512 in 96-98% (docs: the budget policy).
        seed: seed of the tail sampler's private generator (the global RNG is never touched).
        memory_budget_mb: transient memory the engine may use per candidate batch (expanded KV
            cache, activations, logits); batch sizes follow from it (see
            ``engine.candidate_batch_size``). ``None`` (default): 32 MB on CPU, where batches that
            stay near the cache run fastest (``benchmarks/bench_exact.py``); on a CUDA device a
            quarter of the memory free when the probe starts (``torch.cuda.mem_get_info``: what
            training leaves), within 256 MB-16 GB; 1024 MB on other accelerators.
        max_batch_size: optional hard cap on candidates per forward pass.
        chat_template: ``"auto"`` (default) builds each prompt with the tokenizer's chat template
            when it has one, ``True`` requires one, ``False`` probes the raw text. With a template
            only the user's tokens are scored; the template's tokens stay fixed in the sequence
            (``probes.inputs.chat``).
        system: a system message for the chat template (default: the template's own, if any).
        max_token_forwards: a cap on the token-forwards of one probe run (all its prompts) under
            the budget policy: when ``budget_for(|V|)`` would cost more, the candidates per
            position are scaled down to fit (:meth:`budget_within`). ``None`` (default): no cap.
            Exact probes are never capped (they would no longer be exact): the callback warns.
        max_positions: score at most this many prompt positions per run (all prompts together): a
            uniform sample without replacement, the first ``max_positions`` of one permutation
            drawn with ``seed``, so every checkpoint of a run scores the same positions (and a
            smaller sample is part of a larger one). The run's statistics then estimate those of
            every position, with sampling standard errors (``monitoring.metrics.run_summary``);
            each result's summary says how many of its positions were scored; those errors were
            checked to hold (>= 90%) for samples of at least half the positions, and AS and KL
            are heavy-tailed enough over real prompts that smaller samples' intervals hold less
            (``benchmarks/bench_sampled_intervals.py``). ``0`` scores no position: only
            ``log P(r | p)`` (one forward per prompt). ``None`` (default): all.
        replacement_entropy: also measure response stability (the paper's section 4.3,
            ``probes.engines.replacement``): per scored token its top-p set size, the replacement entropy
            of greedy and of seeded top-p-sampled regenerations, and the share equal to the
            original response. Off by default: it costs ``2 x |top-p set|`` generations per token
            (``summary["generations"]``).
        replacement_top_p: the top-p mass of the replacement set and of the sampler (0.9).
        replacement_max_candidates: at most this many replacements per token (``None``: the
            whole top-p set, as the paper).
        scopes: Jacobian Scopes to add per scored token (``probes.engines.scopes``: any of ``"semantic"``,
            ``"fisher"``, ``"temperature"``), aggregated over the response; each costs one backward
            pass or a few per prompt (``()``, the default: none). A list is kept as a tuple.
        progress: show a tqdm progress bar.
    """

    max_new_tokens: int = field(default=DEFAULT_MAX_NEW_TOKENS, metadata={
        "help": f"length of the generated response (default {DEFAULT_MAX_NEW_TOKENS})", "metavar": "N"})
    as_band: float = field(default=DEFAULT_AS_BAND, metadata={
        "help": f"half-width of the near-zero AS band in nats (default {DEFAULT_AS_BAND})", "metavar": "NATS"})
    entropy_threshold: float = field(default=DEFAULT_ENTROPY_THRESHOLD, metadata={
        "help": f"entropy at or above which a near-zero token is noise (default {DEFAULT_ENTROPY_THRESHOLD})",
        "metavar": "NATS"})
    noise_entropy: str = field(default="context", metadata={
        "help": "which entropy the threshold applies to (default context)", "choices": NOISE_ENTROPIES})
    top_k: int = field(default=5, metadata={"help": "top candidates reported per token (default 5)", "metavar": "K"})
    candidate_policy: str = field(default="auto", metadata={
        "help": f"auto (default: exact when |V| <= the budget, {DEFAULT_CANDIDATE_BUDGET} unless set, else budget), "
                "or a registered policy (exact, budget, ...)", "choices": candidate_policies})
    candidate_budget: Optional[int] = field(default=None, metadata={
        "help": f"candidates scored per prompt position by the budget policy (default {DEFAULT_CANDIDATE_BUDGET}, "
                "or |V|/5 when less); a probe costs at most N x sum_k (n - k + m - 1) token-forwards",
        "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "seed of the budget policy's tail sampler (default 0)"})
    memory_budget_mb: Optional[float] = field(default=None, metadata={
        "help": f"transient memory per candidate batch in MB (default {CPU_MEMORY_BUDGET_MB:g} on CPU, "
                f"{ACCELERATOR_MEMORY_BUDGET_MB:g} on accelerators)", "metavar": "MB"})
    max_batch_size: Optional[int] = field(default=None, metadata={
        "help": "hard cap on candidates per forward pass (default: none)", "metavar": "N"})
    chat_template: Union[bool, str] = field(default="auto", metadata={
        "help": "build prompts with the tokenizer's chat template and score only the user's tokens: auto "
                "(default: when the tokenizer has one), on, off", "metavar": "{auto,on,off}",
        "parse": "chat_template"})
    system: Optional[str] = field(default=None, metadata={
        "help": "system message for the chat template (default: the template's own)", "metavar": "TEXT"})
    max_token_forwards: Optional[int] = field(default=None, metadata={
        "help": "cap on the token-forwards of one probe run under the budget policy (default: none)",
        "metavar": "N"})
    max_positions: Optional[int] = field(default=None, metadata={
        "help": "score a seeded random sample of at most N prompt positions per run, all prompts together; "
                "statistics carry the sampling's standard errors (default: every position; 0: none, log P(r|p) "
                "only)", "metavar": "N"})
    replacement_entropy: bool = field(default=False, metadata={
        "help": "also measure replacement entropy (response stability, paper section 4.3; costs generations)",
        "flag": "--replacement-entropy"})
    replacement_top_p: float = field(default=0.9, metadata={
        "help": "top-p mass of the replacement set and sampler (default 0.9)", "metavar": "P"})
    replacement_max_candidates: Optional[int] = field(default=None, metadata={
        "help": "at most N replacements per token (default: the whole top-p set)", "metavar": "N"})
    scopes: tuple = field(default=(), metadata={
        "help": "also compute these Jacobian Scopes per token (default: none)", "choices": SCOPE_NAMES,
        "nargs": "+"})
    progress: bool = field(default=True, metadata={"help": "hide the progress bar", "flag": "--no-progress"})

    def __post_init__(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        _check_positive_float("as_band", self.as_band)
        _check_positive_float("entropy_threshold", self.entropy_threshold, allow_zero=True)
        if self.noise_entropy not in NOISE_ENTROPIES:
            raise ProbeInputError(
                f"noise_entropy should be one of {', '.join(map(repr, NOISE_ENTROPIES))}, got {self.noise_entropy!r}"
            )
        _check_int("top_k", self.top_k, minimum=1)
        if self.candidate_policy not in candidate_policies():
            raise ProbeInputError(
                f"candidate_policy should be one of {', '.join(map(repr, candidate_policies()))}, "
                f"got {self.candidate_policy!r}"
            )
        if self.memory_budget_mb is not None:
            _check_positive_float("memory_budget_mb", self.memory_budget_mb)
        if self.candidate_budget is not None:
            _check_int("candidate_budget", self.candidate_budget, minimum=2)
        _check_int("seed", self.seed, minimum=0)
        if self.max_batch_size is not None:
            _check_int("max_batch_size", self.max_batch_size, minimum=1)
        if not (self.chat_template is True or self.chat_template is False or self.chat_template == "auto"):
            raise ProbeInputError(f"chat_template should be 'auto', True or False, got {self.chat_template!r}")
        if self.system is not None and not isinstance(self.system, str):
            raise ProbeInputError(f"system should be a string, got {self.system!r}")
        if self.max_token_forwards is not None:
            _check_int("max_token_forwards", self.max_token_forwards, minimum=1)
        if self.max_positions is not None:
            _check_int("max_positions", self.max_positions, minimum=0)
        if not isinstance(self.replacement_entropy, bool):
            raise ProbeInputError(f"replacement_entropy should be True or False, got {self.replacement_entropy!r}")
        top_p = self.replacement_top_p
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ProbeInputError(f"replacement_top_p should be in (0, 1], got {top_p!r}")
        if self.replacement_max_candidates is not None:
            _check_int("replacement_max_candidates", self.replacement_max_candidates, minimum=1)
        if not isinstance(self.progress, bool):
            raise ProbeInputError(f"progress should be True or False, got {self.progress!r}")
        given: Any = self.scopes  # annotated a tuple; a string or a list arrives from callers too
        scopes = (given,) if isinstance(given, str) else given
        if not isinstance(scopes, (tuple, list)) or any(name not in SCOPE_NAMES for name in scopes):
            raise ProbeInputError(f"scopes should be a list of {', '.join(map(repr, SCOPE_NAMES))}, "
                                  f"got {self.scopes!r}")
        object.__setattr__(self, "scopes", tuple(dict.fromkeys(scopes)))  # frozen: normalised once, here

    def policy_for(self, vocab_size: int) -> str:
        """``"exact"`` or ``"budget"`` for a vocabulary of ``vocab_size`` (resolves ``"auto"``: exact
        when ``vocab_size <= candidate_budget``, 768 when unset)."""
        if self.candidate_policy != "auto":
            return self.candidate_policy
        limit = DEFAULT_CANDIDATE_BUDGET if self.candidate_budget is None else self.candidate_budget
        return "exact" if vocab_size <= limit else "budget"

    def budget_for(self, vocab_size: int) -> int:
        """Candidates per position the budget policy spends on a vocabulary of ``vocab_size``:
        ``candidate_budget`` when set, else ``min(768, vocab_size // 5)`` (at least 2)."""
        if self.candidate_budget is not None:
            return self.candidate_budget
        return max(2, min(DEFAULT_CANDIDATE_BUDGET, vocab_size // DEFAULT_COST_SHARE))

    def budget_within(self, vocab_size: int, suffix_tokens: int) -> int:
        """Candidates per position for a run whose positions run ``suffix_tokens`` suffix tokens per
        candidate in all (``sum_k (n - k + m - 1)`` over every prompt): :meth:`budget_for`, scaled
        down so that ``budget x suffix_tokens <= max_token_forwards`` when a cap is set (at least 2)."""
        budget = self.budget_for(vocab_size)
        if self.max_token_forwards is None or suffix_tokens <= 0:
            return budget
        return max(2, min(budget, self.max_token_forwards // suffix_tokens))

    def memory_budget_bytes(self, device) -> int:
        """The memory budget in bytes for ``device`` (the default depends on its type)."""
        if self.memory_budget_mb is not None:
            return int(self.memory_budget_mb * 2**20)
        kind = getattr(device, "type", str(device).split(":")[0])
        if kind == "cpu":
            return int(CPU_MEMORY_BUDGET_MB * 2**20)
        if kind == "cuda":
            import torch

            free, _ = torch.cuda.mem_get_info(device)
            return cuda_budget_bytes(free)
        return int(ACCELERATOR_MEMORY_BUDGET_MB * 2**20)

    def replace(self, **changes: Any) -> "ProbeSettings":
        """A copy with ``changes`` applied (and validated); unknown names raise ``ProbeInputError``."""
        changes = _new_spellings(changes, "ProbeSettings")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ProbeInputError(
                f"unknown probe setting(s) {', '.join(map(repr, unknown))}; valid settings: {', '.join(sorted(known))}"
            )
        return ProbeSettings(**{**asdict(self), **changes})

    def with_overrides(self, **overrides: Any) -> "ProbeSettings":
        """:meth:`replace` with only the ``overrides`` that were given (``None`` means "not given").

        This is how every front end applies its keyword arguments or flags on top of a settings
        object: ``ProbAttrCallback(settings=s)`` runs with ``s`` unless a keyword names a field.
        A field whose value may legitimately be ``None`` (``candidate_budget``, ...) cannot be reset
        to ``None`` this way; pass a whole settings object for that.
        """
        return self.replace(**{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProbeSettings":
        """Settings from :meth:`to_dict`'s output (a record's ``settings``); fields it lacks take their
        defaults, unknown names raise ``ProbeInputError``."""
        if not isinstance(data, Mapping):
            raise ProbeInputError(f"settings should be a JSON object, got {type(data).__name__}")
        stored = {RENAMED_SETTINGS.get(name, name): value for name, value in data.items()}  # records of 0.2
        return cls().replace(**stored)

    def to_dict(self) -> dict:
        """Every setting but the progress display, JSON-shaped (``scopes`` as a list)."""
        data = asdict(self)
        data.pop("progress")
        data["scopes"] = list(data["scopes"])
        return data

    def result_key(self) -> dict:
        """The settings that decide the numbers: :meth:`to_dict` without the memory knobs
        (``memory_budget_mb``, ``max_batch_size``), which only change batch shapes."""
        data = self.to_dict()
        data.pop("memory_budget_mb")
        data.pop("max_batch_size")
        if not data["scopes"]:  # records made before scopes existed match settings without them
            data.pop("scopes")
        if data["max_positions"] is None:  # nor before max_positions existed (every position)
            data.pop("max_positions")
        return data


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProbeInputError(f"{name} should be an integer >= {minimum}, got {value!r}")


def _check_positive_float(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = is_finite_number(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ProbeInputError(f"{name} should be a finite number {bound}, got {value!r}")
