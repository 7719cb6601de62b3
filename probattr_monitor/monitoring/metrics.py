"""What one run of the probes (a prompt set at one checkpoint) amounts to, as plain numbers.

Pure functions of :class:`ProbeResult` lists: the run summary (shared by the callback's logs and
the sweep's summary rows), the flat ``{tag: value}`` dict the sinks write, and per-token rows.
The sinks only write what these return.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..probes.types.result import ProbeResult
from ..probes.types.settings import SCOPE_NAMES
from .sampling import STDERR_KEYS, run_stderrs, sampled_counts
from .statistics import soft_noise

PREFIX = "probattr"
SUMMARY_KEYS = (
    "noise_tokens",
    "noise_fraction",
    "mean_attribution",
    "mean_entropy_prompt",
    "mean_entropy_context",
    "mean_kl",
    "log_p_response",
    "soft_noise",
    "mean_replacement_entropy",
    "mean_original_response_share",
    *(f"mean_{name}_scope" for name in SCOPE_NAMES),
)
DRIFT_KEYS = ("drift_attribution", "drift_entropy")
TOKEN_COLUMNS = (
    "prompt",
    "position",
    "token",
    "attribution_score",
    "entropy_prompt",
    "entropy_context",
    "kl_context_prompt",
    "kl_prompt_context",
    "band",
    "noise",
)


def run_summary(results: Sequence[ProbeResult]) -> dict:
    """Summary of one probe run over a prompt set.

    ``noise_tokens`` is the total over prompts; ``noise_fraction`` and the ``mean_*`` values pool
    every scored token of every valid prompt (token-weighted); ``mean_kl`` is the mean of
    ``KL(q_context || q_prompt)``; ``log_p_response`` is the mean over valid prompts;
    ``invalid_prompts`` counts prompts whose result is invalid (non-finite logits); ``soft_noise``
    is defined in ``monitoring.statistics``; ``mean_replacement_entropy`` and
    ``mean_original_response_share`` pool the tokens when replacement entropy is on (else ``None``);
    ``mean_<scope>_scope`` pool the tokens' Jacobian Scopes when the ``scopes`` setting names them.
    Values are ``None`` when no prompt is valid.

    ``positions_scored`` of ``positions_total`` were scored; when fewer (``max_positions``), the
    token statistics estimate those of every position and ``noise_tokens`` is the estimated count
    over all of them (``positions_total x noise_fraction``, a float). Each of ``mean_attribution``,
    ``mean_entropy_prompt``, ``mean_entropy_context``, ``mean_kl``, ``noise_fraction``,
    ``noise_tokens`` and ``soft_noise`` has its standard error under ``<key>_stderr``
    (``monitoring.sampling``: sampling and the budget policy's estimates; ``None`` when unknown).
    """
    valid = [r for r in results if r.valid]
    tokens = [t for r in valid for t in r.tokens]

    def mean(values: list) -> Optional[float]:
        return sum(values) / len(values) if values else None

    noise: Optional[float] = sum(1 for t in tokens if t.noise) if valid else None
    scored, total = sampled_counts(results)
    fraction = noise / len(tokens) if tokens and noise is not None else None
    if scored < total and valid:  # a sample of the positions: the count over all of them, estimated
        noise = None if fraction is None else total * fraction
    return {
        "noise_tokens": noise,
        "noise_fraction": fraction,
        "mean_attribution": mean([t.attribution_score for t in tokens]),
        "mean_entropy_prompt": mean([t.entropy_prompt for t in tokens]),
        "mean_entropy_context": mean([t.entropy_context for t in tokens]),
        "mean_kl": mean([t.kl_context_prompt for t in tokens]),
        "log_p_response": mean([r.log_p_response for r in valid]),
        "soft_noise": soft_noise(results),
        "mean_replacement_entropy": mean([t.replacement_entropy for t in tokens if t.replacement_entropy is not None]),
        "mean_original_response_share": mean([t.original_response_share for t in tokens
                                              if t.original_response_share is not None]),
        **{f"mean_{name}_scope": mean([getattr(t, f"{name}_scope") for t in tokens
                                       if getattr(t, f"{name}_scope") is not None])
           for name in SCOPE_NAMES},
        "invalid_prompts": len(results) - len(valid),
        "token_forwards": sum(r.summary.get("token_forwards", 0) for r in valid),
        "positions_scored": scored,
        "positions_total": total,
        **run_stderrs(results),
    }


def scalar_logs(results: Sequence[ProbeResult], probe_seconds: float, errors: int = 0,
                drift: Optional[dict] = None) -> dict:
    """The flat ``{tag: value}`` scalars of one probe run, under ``probattr/``.

    Tags: ``probattr/<summary key>`` for each of :data:`SUMMARY_KEYS` and of their standard errors
    (``monitoring.sampling.STDERR_KEYS``), ``probattr/drift_attribution``
    and ``probattr/drift_entropy`` (``drift``: against the previous run), ``probattr/probe_seconds``,
    ``probattr/invalid_prompts``, ``probattr/errors`` (probe runs that raised, so far) and
    ``probattr/prompt_<i>/noise_tokens``. ``None`` values (nothing valid) are left out.
    """
    summary = run_summary(results)
    logs = {f"{PREFIX}/{key}": summary[key] for key in (*SUMMARY_KEYS, *STDERR_KEYS)}
    logs.update({f"{PREFIX}/{key}": (drift or {}).get(key) for key in DRIFT_KEYS})
    logs[f"{PREFIX}/probe_seconds"] = probe_seconds
    logs[f"{PREFIX}/invalid_prompts"] = summary["invalid_prompts"]
    logs[f"{PREFIX}/errors"] = errors
    for index, result in enumerate(results):
        logs[f"{PREFIX}/prompt_{index}/noise_tokens"] = result.summary.get("noise_tokens")
    return {tag: float(value) for tag, value in logs.items() if value is not None}


def token_rows(results: Sequence[ProbeResult]) -> list[list]:
    """One row per scored prompt token, columns :data:`TOKEN_COLUMNS` (``prompt`` is its index)."""
    return [
        [index, t.position, t.token, t.attribution_score, t.entropy_prompt, t.entropy_context,
         t.kl_context_prompt, t.kl_prompt_context, t.band, t.noise]
        for index, result in enumerate(results)
        for t in result.tokens
    ]


def histogram_values(results: Sequence[ProbeResult]) -> dict[str, list[float]]:
    """Values for the histograms: AS and both entropies of every scored token."""
    tokens = [t for r in results for t in r.tokens]
    return {
        f"{PREFIX}/attribution_score": [t.attribution_score for t in tokens],
        f"{PREFIX}/entropy_prompt": [t.entropy_prompt for t in tokens],
        f"{PREFIX}/entropy_context": [t.entropy_context for t in tokens],
    }
