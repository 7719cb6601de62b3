"""Has the model regressed on the guard set? A statistical statement across prompts, not a margin.

The guard set is the probe prompts with **fixed responses**: at every checkpoint ``c`` each prompt
``i`` has ``x_i(c) = log P(r_i | p_i)`` (nats). A checkpoint is compared with its *reference*, the
earlier checkpoint whose mean over prompts is highest, on the prompts valid in both:

    d_i = x_i(c) - x_i(ref),   mean d = (1/n) sum_i d_i,   se = sd(d) / sqrt(n)

and the two-sided 95% interval of the mean paired difference is ``mean d +- t_{n-1} se`` (Student's
t: with the 7 to 30 prompts of a probe set a normal or bootstrap interval would be too narrow).
The checkpoint has **regressed, with confidence**, when the whole interval lies below
``-tolerance``: the guard's likelihood fell by more than ``tolerance`` nats per prompt, and noise
between neighbouring checkpoints (the same prompts moving up and down together or apart) does not
explain it. Pairing removes the spread between prompts (one prompt is always harder than another),
which is most of the variance of an unpaired mean.

Pure functions over summary rows (``prompt_log_p``: the per-prompt values, ``None`` for a prompt
whose result is invalid); ``monitoring.decision`` and ``callbacks.early_stopping`` act on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from ..probes.maths.values import is_finite_number

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, 1.96 + 2.4 / df
# (within 0.002 of the exact quantile for every df > 30).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)

# Nats per prompt of mean log P(r|p) the guard may lose before a loss counts: chosen on seed 0 of the
# signal study's regimes (the largest tolerance with the lowest worst regret whose warnings fire at the
# truth's onset), reported on seeds 1 and 2 (docs: "Choosing a checkpoint").
DEFAULT_TOLERANCE = 0.3
MIN_PROMPTS = 3  # fewer paired prompts give no interval worth the name: nothing is flagged


def t_quantile_95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (``df >= 1``)."""
    if df < 1:
        raise ValueError(f"degrees of freedom should be >= 1, got {df}")
    return _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df


@dataclass(frozen=True)
class Comparison:
    """A checkpoint against its reference on the guard set.

    Attributes:
        step: the checkpoint's step; ``reference``: the step it is compared with (``None`` for the first).
        prompts: how many prompts were valid at both.
        mean, low, high: the mean paired difference of log P(r|p) and its 95% interval (nats).
        regressed: ``high < -tolerance`` (and at least :data:`MIN_PROMPTS` prompts).
    """

    step: int
    reference: Optional[int]
    prompts: int
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    regressed: bool
    lost: int = 0  # guard prompts valid (finite) at the reference and invalid now (NaN, -inf, None)

    def describe(self) -> str:
        """``"-0.42 nats per prompt [-0.61, -0.23] against step 500 (8 prompts)"``."""
        if self.lost:
            return (f"{self.lost} guard prompt(s) valid at step {self.reference} are invalid now (NaN, -inf or "
                    "missing log P(r|p)): a regression")
        if self.mean is None or self.low is None or self.high is None:
            return f"no paired comparison ({self.prompts} prompts valid at both)"
        return (f"{self.mean:+.3f} nats per prompt [{self.low:+.3f}, {self.high:+.3f}] against step {self.reference} "
                f"({self.prompts} prompts)")


def paired_interval(differences: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``differences`` and its two-sided 95% t-interval.

    Examples:
        >>> mean, low, high = paired_interval([-0.5, -0.4, -0.6, -0.5])
        >>> round(mean, 3), round(low, 3), round(high, 3)
        (-0.5, -0.63, -0.37)
    """
    n = len(differences)
    if n < 2:
        raise ValueError("a paired interval needs at least 2 differences")
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1)
    half = t_quantile_95(n - 1) * math.sqrt(variance / n)
    return mean, mean - half, mean + half




def _mean_of(row: dict) -> Optional[float]:
    values = [v for v in row.get("prompt_log_p") or [] if is_finite_number(v)]
    return sum(values) / len(values) if values else None


def compare(row: dict, reference: dict, tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """``row`` against ``reference`` on the prompts valid (finite) in both; a prompt valid at the
    reference and invalid now (its ``log P(r|p)`` NaN, ``-inf`` or missing) is a regression by itself:
    the model can no longer give that response a finite probability."""
    now, then = list(row.get("prompt_log_p") or []), list(reference.get("prompt_log_p") or [])
    lost = sum(1 for i, b in enumerate(then) if is_finite_number(b) and not (i < len(now) and is_finite_number(now[i])))
    pairs = [(a, b) for a, b in zip(now, then) if is_finite_number(a) and is_finite_number(b)]
    mean: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None
    if len(pairs) >= max(2, MIN_PROMPTS):
        mean, low, high = paired_interval([a - b for a, b in pairs])
    regressed = bool(lost) or (high is not None and high < -tolerance)
    return Comparison(row["step"], reference["step"], len(pairs), mean, low, high, regressed, lost)


def guard_comparisons(rows: Sequence[dict], tolerance: float = DEFAULT_TOLERANCE) -> list[Comparison]:
    """One :class:`Comparison` per row (in step order) that has guard values, each against the
    earlier row with the highest mean guard log P(r|p) (its reference); the first has none."""
    comparisons = []
    best: Optional[dict] = None
    for row in rows:
        mean = _mean_of(row)
        if mean is None:
            if best is not None and row.get("prompt_log_p"):  # every guard prompt invalid: compared, vetoed
                comparisons.append(compare(row, best, tolerance))
            continue
        if best is None:
            comparisons.append(Comparison(row["step"], None, 0, None, None, None, False))
        else:
            comparisons.append(compare(row, best, tolerance))
        if best is None or mean > (_mean_of(best) or -math.inf):
            best = row
    return comparisons
