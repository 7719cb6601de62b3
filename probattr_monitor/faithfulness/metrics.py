"""Faithfulness metrics of one attribution vector, as pure functions of a *value function*.

``value(removed)`` is ``log P(r | p with the tokens in ``removed`` replaced)`` for a frozenset of
token indices (``0..n-1``); ``value(frozenset())`` is the original ``log P(r | p)``. Replacement is
the deletion operator: a removed token is put back as the baseline token, so positions never shift.
``order`` ranks the tokens by decreasing attribution (ties by index).

- **Deletion / AOPC** (area over the perturbation curve): remove the tokens one at a time in
  ``order``; ``AOPC = (1/n) sum_{j=1..n} [v(0) - v(first j)]``. **Normalised AOPC** (Edin et al.,
  2025): ``(AOPC - AOPC_min) / (AOPC_max - AOPC_min)``, the bounds over every ordering of the
  tokens (:func:`aopc_bounds`: exact by dynamic programming over subsets up to
  ``EXACT_BOUND_TOKENS`` tokens, a beam search beyond). 1: the best possible ordering, 0: the worst.
- **Comprehensiveness** (DeYoung et al., 2020): ``mean_b [v(0) - v(top k_b removed)]`` over the bins
  ``k_b = ceil(f_b n)``, ``f_b`` in ``BINS`` (1, 5, 10, 20, 50%). Higher is more faithful.
- **Sufficiency** (DeYoung et al., 2020): ``mean_b [v(0) - v(all but the top k_b removed)]``.
  Lower is more faithful.
- **Infidelity** (Yeh et al., 2019) with removal perturbations: for random subsets ``I_i`` (each
  token removed with probability 1/2), ``mean_i (beta * sum_{j in I_i} a_j - [v(0) - v(I_i)])^2``
  with the scale ``beta`` that minimises it (Captum's ``normalize=True``), so methods with different
  scales compare. Lower is more faithful.
- **Probability faithfulness** (JoPA, ACL 2025): at sparsity ``s`` (``SPARSITIES``: 1, 10, 20% of
  the prompt), ``v(0) - v(S)`` for the set ``S`` of ``ceil(s n)`` tokens a method removes: its top
  ``ceil(s n)`` for a ranking method, its own choice for a set method. Higher is more faithful.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

Value = Callable[[frozenset], float]
BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
EXACT_BOUND_TOKENS = 12
BEAM_WIDTH = 4


def ranking(attributions: Sequence[float]) -> list[int]:
    """Token indices by decreasing attribution, ties by index."""
    return sorted(range(len(attributions)), key=lambda i: (-attributions[i], i))


def deletion_curve(order: Sequence[int], value: Value) -> list[float]:
    """``[v(0) - v(first j of order removed) for j = 1..n]``."""
    base = value(frozenset())
    return [base - value(frozenset(order[:j])) for j in range(1, len(order) + 1)]


def aopc(order: Sequence[int], value: Value) -> float:
    """The mean of :func:`deletion_curve`."""
    curve = deletion_curve(order, value)
    return sum(curve) / len(curve)


def aopc_bounds(n: int, value: Value, exact_limit: int = EXACT_BOUND_TOKENS,
                beam_width: int = BEAM_WIDTH) -> tuple[float, float, bool]:
    """``(lowest AOPC, highest AOPC, exact)`` over every ordering of ``n`` tokens.

    An ordering's AOPC is ``(1/n) sum_j g(S_j)`` with ``g(S) = v(0) - v(S)`` over the chain of its
    prefixes, so the best chain ending at ``S`` is ``g(S) + best over i in S of the chain ending
    at S - {i}``: exact over the ``2^n`` subsets for ``n <= exact_limit``; a beam search of width
    ``beam_width`` (then ``exact`` is False and the bounds are inner bounds) beyond.
    """
    base = value(frozenset())

    def gain(subset: frozenset) -> float:
        return base - value(subset)

    if n <= exact_limit:
        best = {0: (0.0, 0.0)}  # bitmask -> (min, max) chain sums
        for mask in range(1, 1 << n):
            members = [i for i in range(n) if mask >> i & 1]
            g = gain(frozenset(members))
            lows = [best[mask & ~(1 << i)][0] for i in members]
            highs = [best[mask & ~(1 << i)][1] for i in members]
            best[mask] = (g + min(lows), g + max(highs))
        low, high = best[(1 << n) - 1]
        return low / n, high / n, True
    return _beam(n, gain, beam_width, lowest=True) / n, _beam(n, gain, beam_width, lowest=False) / n, False


def _beam(n: int, gain: Callable[[frozenset], float], width: int, lowest: bool) -> float:
    sign = 1.0 if lowest else -1.0
    beam: list[tuple[float, frozenset]] = [(0.0, frozenset())]
    for _ in range(n):
        grown: dict[frozenset, float] = {}
        for total, chosen in beam:
            for i in range(n):
                if i not in chosen:
                    subset = chosen | {i}
                    candidate = total + gain(subset)
                    if subset not in grown or sign * candidate < sign * grown[subset]:
                        grown[subset] = candidate
        beam = sorted(((t, s) for s, t in grown.items()), key=lambda item: sign * item[0])[:width]
    return beam[0][0]


def normalised_aopc(order: Sequence[int], value: Value, bounds: tuple[float, float, bool]) -> float:
    """``(AOPC - low) / (high - low)``; 0.5 when every ordering gives the same AOPC."""
    low, high, _ = bounds
    return 0.5 if high - low <= 1e-12 else (aopc(order, value) - low) / (high - low)


def bin_sizes(n: int, bins: Sequence[float] = BINS) -> list[int]:
    """``ceil(f n)`` for each bin fraction, at least 1 and at most ``n``."""
    return [min(n, max(1, math.ceil(f * n))) for f in bins]


def comprehensiveness(order: Sequence[int], value: Value, bins: Sequence[float] = BINS) -> float:
    """``mean_b [v(0) - v(top k_b removed)]``."""
    base = value(frozenset())
    sizes = bin_sizes(len(order), bins)
    return sum(base - value(frozenset(order[:k])) for k in sizes) / len(sizes)


def sufficiency(order: Sequence[int], value: Value, bins: Sequence[float] = BINS) -> float:
    """``mean_b [v(0) - v(everything but the top k_b removed)]``."""
    base = value(frozenset())
    sizes = bin_sizes(len(order), bins)
    return sum(base - value(frozenset(order[k:])) for k in sizes) / len(sizes)


def infidelity(attributions: Sequence[float], value: Value, subsets: Sequence[frozenset]) -> float:
    """Normalised infidelity over the removal perturbations ``subsets`` (see the module docstring)."""
    base = value(frozenset())
    predicted = [sum(attributions[j] for j in subset) for subset in subsets]
    observed = [base - value(subset) for subset in subsets]
    norm = sum(p * p for p in predicted)
    beta = sum(p * o for p, o in zip(predicted, observed)) / norm if norm > 0 else 0.0
    return sum((beta * p - o) ** 2 for p, o in zip(predicted, observed)) / len(subsets)


SPARSITIES = (0.01, 0.1, 0.2)  # JoPA's probability faithfulness: shares of the prompt removed


def sparsity_size(n: int, sparsity: float) -> int:
    """Tokens removed at ``sparsity``: ``ceil(sparsity x n)``, at least 1 and at most ``n``."""
    return min(n, max(1, math.ceil(sparsity * n - 1e-9)))


def probability_faithfulness(removed: frozenset, value: Value) -> float:
    """JoPA's probability faithfulness of a removed set: ``log P(r | p) - log P(r | p without it)``,
    the drop of the response's log-probability in nats (higher: the set mattered more)."""
    return value(frozenset()) - value(frozenset(removed))
