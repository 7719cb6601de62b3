"""The one rank correlation of the package (the demo, the signal study and the faithfulness
checks all use it): Spearman's rho = Pearson's r of the ranks, ties sharing their mean rank.

Undefined cases are ``NaN``, never an error: fewer than two pairs, a constant side, or a
non-finite value on either side.
"""

from __future__ import annotations

import math
from typing import Sequence


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1 in ascending order; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """``r = sum (x - mx)(y - my) / sqrt(sum (x - mx)^2 sum (y - my)^2)``; ``NaN`` when undefined."""
    if len(xs) != len(ys):
        raise ValueError(f"pearson needs pairs, got {len(xs)} and {len(ys)} values")
    if len(xs) < 2 or not all(math.isfinite(float(v)) for v in (*xs, *ys)):
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return math.nan if sxx <= 0 or syy <= 0 else float(sxy / math.sqrt(sxx * syy))


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation: :func:`pearson` of :func:`ranks`; ``NaN`` when undefined.

    Examples:
        >>> spearman([1, 2, 3], [10, 30, 20])
        0.5
    """
    if len(xs) < 2 or not all(math.isfinite(float(v)) for v in (*xs, *ys)):
        return math.nan
    return pearson(ranks(xs), ranks(ys))
