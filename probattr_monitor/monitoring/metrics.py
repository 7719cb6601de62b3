"""What one run of the probes (a prompt set at one checkpoint) amounts to, as plain numbers.

Pure functions of :class:`ProbeResult` lists: the run summary (shared by the callback's logs and
the sweep's summary rows), the flat ``{tag: value}`` dict the sinks write, and per-token rows.
The sinks only write what these return.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..errors import one_line, warn_user
from ..probes.types.result import ProbeResult
from .sampling import STDERR_KEYS, run_stderrs, sampled_counts
from .statistics import STATISTICS, drift_keys, summary_keys

PREFIX = "probattr"


def __getattr__(name: str):
    """``SUMMARY_KEYS`` and ``DRIFT_KEYS``, derived from ``monitoring.statistics`` when read (so a
    statistic registered later is in them); the package itself calls ``summary_keys()`` and
    ``drift_keys()``."""
    if name == "SUMMARY_KEYS":
        return summary_keys()
    if name == "DRIFT_KEYS":
        return drift_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    """Summary of one probe run over a prompt set: every statistic of one run declared in
    ``monitoring.statistics`` (a registered one whose computation raises is ``None``, with one
    warning), the counts below and the standard errors.

    ``noise_tokens`` is the total over prompts; ``noise_fraction`` and the ``mean_*`` values pool
    every scored token of every valid prompt (token-weighted); ``mean_kl`` is the mean of
    ``KL(q_context || q_prompt)``; ``log_p_response`` is the mean over valid prompts;
    ``invalid_prompts`` counts prompts whose result is invalid (non-finite logits); ``soft_noise``
    is defined in ``monitoring.convergence``; ``mean_replacement_entropy`` and
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
    scored, total = sampled_counts(results)
    return {
        **{name: _computed(statistic, results) for name, statistic in STATISTICS.items()
           if statistic.compute is not None},
        "invalid_prompts": len(results) - len(valid),
        "token_forwards": sum(r.summary.get("token_forwards", 0) for r in valid),
        "positions_scored": scored,
        "positions_total": total,
        **run_stderrs(results),
    }


def _computed(statistic, results: Sequence[ProbeResult]) -> Optional[float]:
    """``statistic.compute(results)``; a registered statistic that raises gives ``None`` and one
    warning (a user's statistic never ends the run it watches), a built-in raises."""
    try:
        return statistic.compute(results)
    except Exception as error:  # noqa: BLE001 - see above
        if statistic.name in STATISTICS.built_in:
            raise
        warn_user(f"probattr-monitor: the statistic {statistic.name!r} failed: {one_line(error)}", stacklevel=3)
        return None


def scalar_logs(results: Sequence[ProbeResult], probe_seconds: float, errors: int = 0,
                drift: Optional[dict] = None) -> dict:
    """The flat ``{tag: value}`` scalars of one probe run, under ``probattr/``.

    Tags: ``probattr/<summary key>`` for each statistic of one run (``monitoring.statistics``) and
    of their standard errors (``monitoring.sampling.STDERR_KEYS``), ``probattr/drift_attribution``
    and ``probattr/drift_entropy`` (``drift``: against the previous run), ``probattr/probe_seconds``,
    ``probattr/invalid_prompts``, ``probattr/errors`` (probe runs that raised, so far) and
    ``probattr/prompt_<i>/noise_tokens``. ``None`` values (nothing valid) are left out.
    """
    summary = run_summary(results)
    logs = {f"{PREFIX}/{key}": summary[key] for key in (*summary_keys(), *STDERR_KEYS)}
    logs.update({f"{PREFIX}/{key}": (drift or {}).get(key) for key in drift_keys()})
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
