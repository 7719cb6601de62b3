"""Standard errors of a run's statistics: from sampling positions (``ProbeSettings.max_positions``)
and from the budget policy's per-token estimates.

A run scores ``n`` of the ``N`` scorable positions of its prompts, a simple random sample without
replacement (``f = n / N``; ``f = 1`` when every position is scored), and each scored token's value
``y_k`` carries the estimator's standard error ``sigma_k`` (0 when exact). The mean over tokens
estimates the mean over all ``N`` positions with the two-stage variance::

    Var = (1 - f) * S^2 / n  +  f * mean_k(sigma_k^2) / n

where ``S^2`` bounds the spread of the ``y_k`` over positions (their estimation noise included: the
second term adds only what the finite-population factor took out). AS and the KLs are heavy-tailed
over positions (on SmolLM2 with the paper's prompts, 5 of 285 positions hold 45% of the summed AS),
and a sample that misses the few large values has a sample variance ``s^2`` far below the
population's, so ``S^2`` is an upper bound on it rather than ``s^2`` itself::

    S^2 = s^2 + z * sqrt(Var(s^2)),   Var(s^2) ~ (m_4 - s^4 (n - 3) / (n - 1)) / n,   z = VARIANCE_BOUND_Z

(``m_4`` the sample's fourth central moment: a heavy tail widens the bound, a light one barely).
The error is then widened by ``t_{n-1} / 1.96`` (``t_{n-1}`` the 97.5% Student quantile), so that
``value +- 1.96 x stderr``, the package's interval everywhere, is a t-interval. ``z`` and the
plan's floor of half the positions (``monitoring.overhead.MIN_SAMPLED_SHARE``) were chosen
together on every position of four of the paper's prompts on SmolLM2 (the smallest share, then
the smallest ``z``, whose intervals hold each run statistic's all-position mean in >= 90% of 2000
samples) and reported on the other three: AS 91.7%, KL 94.3%, entropy 99.2%, noise fraction 99.5%,
where plain ``s^2`` holds AS in 85.0% and KL in 89.8% (``benchmarks/bench_sampled_intervals.py``).
With ``f = 1`` it is ``sum_k sigma_k^2 / N^2``. The noise fraction is a mean of 0/1 flags (no estimator term); the noise
count of a sampled run is ``N`` times it, with ``N`` times its error. A sampled run whose sample holds
one token has no estimate of ``s^2``: its errors are ``None`` (unknown), never 0.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..probes.types.result import ProbeResult
from .convergence import soft_noise_terms

VARIANCE_BOUND_Z = 3.0  # S^2's z (module docstring): chosen from 0, 1.645, 3 on half the real positions
STDERR_OF = {  # statistic -> the token field it averages (and its standard error's field)
    "mean_attribution": "attribution_score",
    "mean_entropy_prompt": "entropy_prompt",
    "mean_entropy_context": "entropy_context",
    "mean_kl": "kl_context_prompt",
}
STDERR_KEYS = (*(f"{key}_stderr" for key in STDERR_OF), "noise_fraction_stderr", "noise_tokens_stderr",
               "soft_noise_stderr")


def mean_stderr(values: Sequence[float], errors: Sequence[float], total: int,
                bound_z: float = VARIANCE_BOUND_Z) -> Optional[float]:
    """The two-stage standard error (module docstring) of the mean of ``values`` (``n`` scored
    tokens, per-token standard errors ``errors``) as an estimate of the mean over ``total``
    positions; ``bound_z`` the bound's ``z`` (0: the plain sample variance)."""
    n = len(values)
    if n == 0:
        return None
    fraction = min(1.0, n / total) if total else 1.0
    within = fraction * sum(e * e for e in errors) / n / n
    if fraction >= 1.0:
        return math.sqrt(within)
    if n < 2:
        return None
    between = (1.0 - fraction) * spread_bound(values, bound_z) / n
    return math.sqrt(between + within) * student_t975(n - 1) / Z975


def spread_bound(values: Sequence[float], z: float = VARIANCE_BOUND_Z) -> float:
    """``S^2 = s^2 + z sqrt(Var(s^2))`` of the module docstring: an upper bound on the variance of
    the population ``values`` (``n >= 2``) were sampled from, ``s^2`` itself when ``z = 0``."""
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    fourth = sum((v - mean) ** 4 for v in values) / n
    return variance + z * math.sqrt(max(0.0, (fourth - variance * variance * (n - 3) / (n - 1)) / n))


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
