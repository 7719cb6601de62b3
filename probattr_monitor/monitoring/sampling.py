"""Standard errors of a run's statistics: from sampling positions (``ProbeSettings.max_positions``)
and from the budget policy's per-token estimates.

A run scores ``n`` of the ``N`` scorable positions of its prompts, a simple random sample without
replacement (``f = n / N``; ``f = 1`` when every position is scored), and each scored token's value
``y_k`` carries the estimator's standard error ``sigma_k`` (0 when exact). The mean over tokens
estimates the mean over all ``N`` positions with the two-stage variance::

    Var = (1 - f) * s^2 / n  +  f * mean_k(sigma_k^2) / n

where ``s^2`` is the sample variance of the ``y_k`` (which already holds their estimation noise: the
second term adds only what the finite-population factor took out). For a sample (``f < 1``) the
error is widened by ``t_{n-1} / 1.96`` (``t_{n-1}`` the 97.5% Student quantile), so that
``value +- 1.96 x stderr``, the package's interval everywhere, is the t-interval a small sample
needs (skewed statistics such as AS under-cover otherwise). With ``f = 1`` it is
``sum_k sigma_k^2 / N^2``. The noise fraction is a mean of 0/1 flags (no estimator term); the noise
count of a sampled run is ``N`` times it, with ``N`` times its error. A sampled run whose sample holds
one token has no estimate of ``s^2``: its errors are ``None`` (unknown), never 0.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..probes.types.result import ProbeResult
from .convergence import soft_noise_terms

STDERR_OF = {  # statistic -> the token field it averages (and its standard error's field)
    "mean_attribution": "attribution_score",
    "mean_entropy_prompt": "entropy_prompt",
    "mean_entropy_context": "entropy_context",
    "mean_kl": "kl_context_prompt",
}
STDERR_KEYS = (*(f"{key}_stderr" for key in STDERR_OF), "noise_fraction_stderr", "noise_tokens_stderr",
               "soft_noise_stderr")


def mean_stderr(values: Sequence[float], errors: Sequence[float], total: int) -> Optional[float]:
    """The two-stage standard error (module docstring) of the mean of ``values`` (``n`` scored
    tokens, per-token standard errors ``errors``) as an estimate of the mean over ``total`` positions."""
    n = len(values)
    if n == 0:
        return None
    fraction = min(1.0, n / total) if total else 1.0
    within = fraction * sum(e * e for e in errors) / n / n
    if fraction >= 1.0:
        return math.sqrt(within)
    if n < 2:
        return None
    mean = sum(values) / n
    between = (1.0 - fraction) * sum((v - mean) ** 2 for v in values) / (n - 1) / n
    return math.sqrt(between + within) * student_t975(n - 1) / Z975


Z975 = 1.959963984540054  # the standard normal's 97.5% quantile


def student_t975(degrees: int) -> float:
    """The 97.5% quantile of Student's t with ``degrees`` of freedom (Cornish-Fisher expansion to
    ``1/nu^2``: within 0.2% of the exact value from 10 degrees, 1.5% at 4)."""
    z, nu = Z975, float(degrees)
    return z + (z ** 3 + z) / (4 * nu) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * nu ** 2)


def sampled_counts(results: Sequence[ProbeResult]) -> tuple[int, int]:
    """``(positions scored, positions scorable)`` over the valid results (results written before
    ``max_positions`` existed count every token as scorable)."""
    valid = [r for r in results if r.valid]
    scored = sum(len(r.tokens) for r in valid)
    total = sum(int(r.summary.get("positions_total", len(r.tokens))) for r in valid)
    return scored, max(total, scored)


def run_stderrs(results: Sequence[ProbeResult]) -> dict:
    """``{<statistic>_stderr}`` of :data:`STDERR_KEYS` for one run, ``None`` where unknown."""
    tokens = [t for r in results if r.valid for t in r.tokens]
    scored, total = sampled_counts(results)
    errors: dict[str, Optional[float]] = {
        f"{key}_stderr": mean_stderr([getattr(t, field) for t in tokens],
                                     [getattr(t, f"{field}_stderr") or 0.0 for t in tokens], total)
        for key, field in STDERR_OF.items()}
    flags = [1.0 if t.noise else 0.0 for t in tokens]
    fraction_error = mean_stderr(flags, [0.0] * len(flags), total)
    errors["noise_fraction_stderr"] = fraction_error
    errors["noise_tokens_stderr"] = None if fraction_error is None else total * fraction_error
    terms = soft_noise_terms(results)
    errors["soft_noise_stderr"] = mean_stderr(terms, [0.0] * len(terms), total)
    return errors
