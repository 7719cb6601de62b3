"""Joint Prompt Attribution (JoPA, ACL 2025; published code: the ``yuruic/XPrompt`` repository),
on this project's deletion operator.

JoPA looks for the set of prompt tokens whose removal changes the probability of the whole response
most, as a combinatorial search guided by gradients. With a continuous mask ``m`` over the feature
tokens (1 kept, 0 removed) and ``L(m) = log P(r | p with the removed tokens deleted)``:

1. *Gradient candidates.* At the current mask, ``g = dL/dm`` (one backward pass); the candidates
   are the ``top_k`` kept tokens with the largest ``g`` and the ``top_k`` with the smallest (both
   ends, as the published beam search takes them: a first-order guess can be wrong either way).
2. *Beam of greedy paths.* Each of the ``2 top_k`` first-step candidates starts a path; a path
   grows one token at a time: new gradient candidates at its mask, each scored exactly
   (``L`` after removing it), the lowest kept.
3. *Probabilistic update.* For a target size the best path prefix is then refined by ``swaps``
   random swaps (one removed token put back, one kept token removed; seeded), each kept when it
   lowers ``L`` (a stochastic local search; the published code draws its swaps the same way).

Departures from the published code, and why:
- The mask interpolates each token's input embedding between the token's and the *baseline
  token's* (``m e + (1 - m) e_baseline``) instead of scaling it towards zero: the comparison uses
  one deletion operator for every method (the baseline token), and a zero vector is no token.
- The published search records the best mask per depth across its branches; here each size gets
  its best prefix over the branches, refined by the swaps. ``order`` (for the ranking metrics) is
  the path whose deletion curve has the lowest area.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from .scorer import ResponseScorer

JOPA_TOP_K = 3  # gradient candidates at each end per step
JOPA_SWAPS = 24  # random swaps of the probabilistic update per size


def mask_gradient(scorer: ResponseScorer, removed: frozenset) -> torch.Tensor:
    """``dL/dm`` (``(P,)`` float64) at the mask that is 0 on ``removed`` and 1 elsewhere."""
    kept = torch.tensor([0.0 if j in removed else 1.0 for j in range(scorer.n_features)], device=scorer.device)
    mask = kept.clone().requires_grad_(True)
    original = scorer.feature_embeds()  # (1, P, d)
    baseline = scorer.feature_embeds(torch.full_like(scorer.features, scorer.baseline_id))
    with torch.enable_grad():
        weight = mask.view(1, -1, 1).to(original.dtype)
        value = scorer.log_p_of_embeds(weight * original + (1 - weight) * baseline)
        (gradient,) = torch.autograd.grad(value.sum(), mask)
    return gradient.detach().double().cpu()


def gradient_candidates(scorer: ResponseScorer, removed: frozenset, top_k: int) -> list[int]:
    """The kept tokens with the ``top_k`` largest and ``top_k`` smallest ``dL/dm`` (distinct)."""
    gradient = mask_gradient(scorer, removed)
    kept = [j for j in range(scorer.n_features) if j not in removed]
    by_gradient = sorted(kept, key=lambda j: float(gradient[j]))
    return list(dict.fromkeys(by_gradient[::-1][:top_k] + by_gradient[:top_k]))


def greedy_path(scorer: ResponseScorer, first: int, length: int, top_k: int) -> list[int]:
    """A path of ``length`` tokens from ``first``: each step scores the gradient candidates at the
    current mask exactly and removes the one leaving the lowest ``L``."""
    path = [first]
    while len(path) < length:
        removed = frozenset(path)
        options = gradient_candidates(scorer, removed, top_k)
        scorer.prefetch(removed | {j} for j in options)
        path.append(min(options, key=lambda j: scorer.value(removed | {j})))
    return path


@dataclass
class JopaResult:
    """What :func:`jopa` found: ``sets`` ``{size: frozenset}`` (features removed), ``values``
    ``{size: L}`` of each, ``order`` (every feature, for the ranking metrics), the settings."""

    sets: dict
    values: dict
    order: list
    settings: dict = field(default_factory=dict)


def jopa(scorer: ResponseScorer, sizes, top_k: int = JOPA_TOP_K, swaps: int = JOPA_SWAPS, seed: int = 0) -> JopaResult:
    """JoPA's search (module docstring) for each size in ``sizes`` (each ``1..P``), paths run to
    every feature so that ``order`` ranks them all."""
    n = scorer.n_features
    sizes = sorted({min(max(1, int(size)), n) for size in sizes})
    paths = [greedy_path(scorer, first, n, top_k) for first in gradient_candidates(scorer, frozenset(), top_k)]

    def curve(path: list[int]) -> float:
        return sum(scorer.value(frozenset(path[:t])) for t in range(1, n + 1))

    rng = random.Random(seed)
    sets, values = {}, {}
    for size in sizes:
        best = min((frozenset(path[:size]) for path in paths), key=scorer.value)
        if 0 < size < n:
            for _ in range(swaps):
                out = rng.choice(sorted(best))
                into = rng.choice([j for j in range(n) if j not in best])
                proposal = (best - {out}) | {into}
                if scorer.value(proposal) < scorer.value(best):
                    best = proposal
        sets[size], values[size] = best, scorer.value(best)
    return JopaResult(sets=sets, values=values, order=min(paths, key=curve),
                      settings={"top_k": top_k, "swaps": swaps, "seed": seed, "branches": len(paths)})


def order_attributions(order: list[int], n: int) -> list[float]:
    """Scores that rank the features as ``order`` does (first removed highest: ``n - rank``)."""
    scores = [0.0] * n
    for rank, j in enumerate(order):
        scores[j] = float(n - rank)
    return scores
