"""The budgeted estimator's maths: head selection, the tail proposal, and estimates with errors.

At prompt position k, with ``lw_v = a_v + b_v`` and ``lu_v = a_v + b_v + c_v`` (the maths guide), every
probe quantity is a smooth function of six sums over the vocabulary, ``w = exp(lw)``, ``u = exp(lu)``:

    s = (sum w, sum u, sum w lw, sum u lu, sum w c, sum u c)
    log D = log s0,  log N = log s1                     (the normalisers of q_prompt, q_context)
    AS     = c_{p_k} - log N + log D
    H_prompt  = log D - s2 / s0,      H_context = log N - s3 / s1
    KL(qc||qp) = s5 / s1 + log D - log N,   KL(qp||qc) = -s4 / s0 + log N - log D

The *head* (tokens carrying most of both posteriors, and ``p_k`` itself) is summed exactly. The
*tail* may be cut into disjoint strata, each sampled on its own. A stratum's share of each sum is
estimated from ``m`` draws without replacement from a proposal ``pi`` over it
(:func:`draw_without_replacement`), by Des Raj's unbiased estimator (:func:`sequential_terms`;
plain importance sampling, the mean of ``f(v_i) / pi(v_i)`` over draws with replacement, is also
supported). The strata's estimates are independent, so the sample covariances of their terms (each
over its ``m``) add up and propagate to each quantity by the delta method (Jacobian of the map
above), giving the standard error (:func:`estimate_strata`). ``w`` and ``u`` are scaled by
``exp(-max)`` for range; the scale cancels. :func:`mixture_weights` adapts a stratum's proposal
between rounds of draws and :func:`allocate_draws` shares a pooled budget between positions and
strata (``budgeted.run_rounds`` orchestrates both).

Heavy tails: when the likelihood varies over the tail in ways no cheap guess predicts (a random
model with large weights is the extreme), a few of the ``m`` weights ``w / pi`` carry the sum and
their sample variance is far below the true one (the rarer large weights are not in the sample).
The covariance is then widened (:func:`heavy_tail_inflation`) so that the error bar says so
instead of claiming a precision the sample does not have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .quantities import QUANTITIES, quantities_from_sums, sum_terms


def select_head(scores: list[torch.Tensor], actual: int, size: int, lead: torch.Tensor | None = None) -> torch.Tensor:
    """``max(1, size)`` distinct ids (fewer only when the vocabulary is smaller), sorted: ``actual``
    first, then the ids ``lead`` (``(V,)``, ``-inf`` where it has no opinion) ranks highest, then the
    score vectors' (each ``(V,)``) rankings taken in turn, rank by rank (the best of each, then the
    second best of each, ...), skipping ids already taken. Only finite scores rank an id."""
    size = max(1, size)

    def ranking(score: torch.Tensor, count: int) -> torch.Tensor:
        top = torch.topk(score, min(count, score.shape[0]))
        return top.indices[torch.isfinite(top.values)]

    ranked = torch.stack([torch.topk(score, min(size, score.shape[0])).indices for score in scores], dim=1)
    leading = ranking(lead, size) if lead is not None else torch.empty(0, dtype=torch.long)
    candidates = torch.cat([torch.tensor([actual]), leading, ranked.reshape(-1)])  # in order of preference
    distinct, where = torch.unique(candidates, return_inverse=True)
    first_seen = torch.full_like(distinct, candidates.shape[0]).scatter_reduce(
        0, where, torch.arange(candidates.shape[0]), reduce="amin")
    return distinct[first_seen.argsort()[:size]].sort().values


def tail_components(log_scores: list[torch.Tensor], head: torch.Tensor | None = None,
                    support: torch.Tensor | None = None) -> torch.Tensor:
    """``(J, V)`` float64: ``softmax(score)`` restricted to the tail, one row per score (zero on
    the head and outside ``support``, a ``(V,)`` bool mask, default everywhere; each row sums to 1,
    or is all zeros when no id of the tail has a finite score)."""
    vocab = log_scores[0].shape[0]
    in_tail = torch.ones(vocab, dtype=torch.bool) if support is None else support.clone()
    if head is not None:
        in_tail[head] = False
    closed = torch.tensor(float("-inf"), dtype=torch.float64)
    rows = []
    for score in log_scores:
        masked = torch.where(in_tail, score.double(), closed)
        rows.append(torch.softmax(masked, dim=-1) if torch.isfinite(masked).any() else torch.zeros_like(masked))
    return torch.stack(rows)


MIXTURE_FLOOR = 0.1


def mixture_weights(component_probs: torch.Tensor, alpha: torch.Tensor, weights: torch.Tensor,
                    steps: int = 10) -> torch.Tensor:
    """One population Monte Carlo update of the mixture weights (Cappe et al. 2008): the share of
    the target's mass each component explains, judged from draws already scored.

    ``alpha_j <- sum_i wbar_i * alpha_j pi_j(x_i) / sum_l alpha_l pi_l(x_i)``, with ``wbar`` the
    normalised importance weights ``weights`` (``(m,)``, target over the proposal the draw came from)
    and ``component_probs`` ``(m, J)`` the components' probabilities of the draws, iterated ``steps``
    times (EM on the weighted draws, converging to the mixture closest to the target). The result is
    mixed with the uniform weights (``MIXTURE_FLOOR`` of the total) so
    that no component is dropped on a few draws' word. Returns ``alpha`` unchanged without draws.
    """
    total = weights.double().sum()
    if weights.shape[0] == 0 or not total > 0:
        return alpha
    updated = alpha.double()
    for _ in range(steps):
        mixture = component_probs.double() @ updated  # (m,)
        responsibility = component_probs.double() * updated / mixture.clamp(min=1e-300).unsqueeze(-1)
        updated = (weights.double() / total) @ responsibility  # (J,)
        updated = updated / updated.sum()
    return (1 - MIXTURE_FLOOR) * updated + MIXTURE_FLOOR / alpha.shape[0]


def allocate_draws(variances: torch.Tensor, drawn: torch.Tensor, costs: torch.Tensor, pool: float,
                   capacity: torch.Tensor) -> torch.Tensor:
    """Share ``pool`` (token-forwards) out as extra draws over positions, water-filling the largest
    projected variance: position ``k``, whose estimate has variance ``variances[k]`` after
    ``drawn[k]`` draws, is projected at ``variances[k] * drawn[k] / (drawn[k] + e_k)`` after ``e_k``
    more, each costing ``costs[k]``. Finds the level ``V*`` with ``e_k = max(0, variances[k] *
    drawn[k] / V* - drawn[k])`` (at most ``capacity[k]``) and ``sum e_k costs[k] <= pool``.

    Returns ``(P,)`` long: ``e_k``. Positions without draws or variance get none.
    """
    per_draw = variances.double() * drawn.double()  # the variance one draw carries
    capacity = capacity.long()
    wanted = per_draw > 0

    def extra(level: float) -> torch.Tensor:
        counts = torch.where(wanted, per_draw / level - drawn.double(), torch.zeros_like(per_draw))
        # capped while still floats: a tiny level makes counts overflow (inf) a long cannot hold
        return torch.minimum(counts.clamp(min=0), capacity.double()).floor().long()

    if pool <= 0 or not wanted.any():
        return torch.zeros_like(capacity)
    low, high = float(per_draw[wanted].min()) * 1e-12, float(per_draw[wanted].max())  # spend all .. nothing
    for _ in range(100):
        level = math.sqrt(low * high)
        if float((extra(level).double() * costs.double()).sum()) > pool:
            low = level
        else:
            high = level
    return extra(high)


def draw_without_replacement(proposal: torch.Tensor, taken: torch.Tensor, n: int,
                             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Successive sampling: ``n`` ids drawn one after another, each with probability proportional
    to ``proposal`` (``(V,)``, non-negative) among the ids not yet drawn and not ``taken``
    (``(V,)`` bool: the head, earlier rounds). Fewer when fewer ids have positive probability.

    Gumbel-top-n gives the same ordered sample in one go: the order of ``log proposal + Gumbel``.

    Returns:
        ``(ids, q)``: the ``(n,)`` ids in draw order and ``q_i = proposal(v_i) / R_i``, the
        probability draw ``i`` had, ``R_i`` being the proposal mass not taken before it.
    """
    open_mass = torch.where(taken, torch.zeros_like(proposal), proposal.double())
    available = int((open_mass > 0).sum())
    n = min(n, available)
    if n == 0:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.float64)
    uniform = torch.rand(proposal.shape[0], generator=generator, dtype=torch.float64).clamp(min=1e-300)
    keys = open_mass.log() - torch.log(-torch.log(uniform))  # -inf where closed
    ids = torch.topk(keys, n).indices
    mass = open_mass[ids]
    rest = open_mass.sum() - mass.sum()  # mass never drawn; then R_i adds the draws from i on
    remaining = (rest.clamp(min=0) + mass.flip(0).cumsum(0).flip(0))
    return ids, mass / remaining


def sequential_terms(y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Des Raj's (1956) terms for an ordered sample without replacement: ``t_i = sum_{j<i} y_j +
    y_i / q_i`` (``y``: ``(m, d)`` values, ``q``: ``(m,)`` as from :func:`draw_without_replacement`).

    Each ``t_i`` is unbiased for the total over the ids open before the sample, given the draws
    before it, whatever proposal drew ``i`` (so the proposal may adapt as the draws come in); hence
    ``mean t_i`` is unbiased and ``cov(t) / m`` is an unbiased estimate of its covariance.
    """
    before = y.cumsum(0) - y
    return before + y / q.unsqueeze(-1)


@dataclass
class Estimate:
    """Per-position estimates (``QUANTITIES``), their standard errors, and the normalisers;
    ``stratum_variances[i]`` is the variance of the attribution score that tail stratum ``i``
    contributes (what :func:`allocate_draws` levels)."""

    values: dict
    stderrs: dict
    log_d: float
    log_n: float
    stratum_variances: list = field(default_factory=list)


@dataclass
class TailSample:
    """Draws from one stratum of the tail, in draw order: exact ``a+b`` (``lw``), ``a+b+c``
    (``lu``) and ``c`` of each, the probability ``pi`` of the proposal it was drawn from, and
    ``q`` (:func:`draw_without_replacement`) for an ordered sample without replacement, or
    ``None`` for independent draws with replacement. All ``(m,)`` float64."""

    lw: torch.Tensor
    lu: torch.Tensor
    c: torch.Tensor
    pi: torch.Tensor
    q: torch.Tensor | None = None


HEAVY_TAIL_ESS = 0.2


def heavy_tail_inflation(weights: torch.Tensor) -> float:
    """The factor by which the sample variance of the importance weights ``weights`` (``(m,)``,
    non-negative) is widened; 1 unless the weights are heavy-tailed.

    Heavy-tailed means Kish's effective sample size ``(sum f)^2 / sum f^2`` is below
    ``HEAVY_TAIL_ESS`` (20%) of the draws: a few draws carry the estimate, and the sample variance,
    which has not seen the rarer large weights, is too small. The factor is then
    ``V_lognormal / V_sample`` with ``V_lognormal = mean^2 (exp(s^2) - 1)``, the variance of a
    log-normal with the sample's mean and log-variance ``s^2``, kept within ``[1, m]`` (at worst
    the estimate is worth one draw: its standard error is one weight's standard deviation).
    """
    weights = weights.double()
    m = weights.shape[0]
    positive = weights[weights > 0]
    if positive.shape[0] < 3 or float(weights.sum() ** 2 / (weights ** 2).sum()) >= HEAVY_TAIL_ESS * m:
        return 1.0
    sample = float(weights.var())
    lognormal = float(weights.mean()) ** 2 * math.expm1(min(float(positive.log().var()), 700.0))
    return float(m) if sample <= 0 else min(float(m), max(1.0, lognormal / sample))


def estimate_strata(head_lw: torch.Tensor, head_lu: torch.Tensor, head_c: torch.Tensor, strata: list[TailSample],
                    c_actual: float) -> Estimate:
    """Head sums exactly plus each tail stratum's estimated share, with delta-method standard errors.

    The strata split the tail into disjoint parts, each sampled on its own, so their estimates are
    independent: the six sums add up and so do their covariances. Per stratum the estimate is the
    mean of Des Raj's terms (:func:`sequential_terms`, when ``q`` is given) or of ``f / pi``
    (independent draws), with covariance ``cov(terms) / m``, widened by
    :func:`heavy_tail_inflation` of ``f / pi`` (per weight, ``w`` and ``u``); a stratum of one draw
    counts each sum as uncertain by its whole size.

    Args:
        head_lw, head_lu, head_c: ``(H,)`` exact ``a+b``, ``a+b+c``, ``c`` of the ids summed exactly.
        strata: the tail's strata (empty ones are allowed).
        c_actual: ``c`` at the actual token ``p_k`` (in the head).
    """
    everything_w = torch.cat([head_lw.double()] + [sample.lw.double() for sample in strata])
    everything_u = torch.cat([head_lu.double()] + [sample.lu.double() for sample in strata])
    shift_w, shift_u = float(everything_w.max()), float(everything_u.max())
    sums = sum_terms(head_lw.double(), head_lu.double(), head_c.double(), shift_w, shift_u).sum(0)  # (6,)
    covariances = []
    for sample in strata:
        covariance = torch.zeros(6, 6, dtype=torch.float64)
        m = sample.lw.shape[0]
        if m:
            per_draw = sum_terms(sample.lw.double(), sample.lu.double(), sample.c.double(), shift_w, shift_u)
            weights = per_draw / sample.pi.double().unsqueeze(-1)  # (m, 6)
            terms = weights if sample.q is None else sequential_terms(per_draw, sample.q.double())  # unbiased each
            sums = sums + terms.mean(0)
            if m > 1:
                covariance = torch.cov(terms.T) / m  # covariance of the mean
                # w-weighted sums (0, 2, 4) and u-weighted sums (1, 3, 5) each get their weights' factor
                factor = torch.tensor([heavy_tail_inflation(weights[:, 0]), heavy_tail_inflation(weights[:, 1])] * 3,
                                      dtype=torch.float64).sqrt()
                covariance = covariance * factor.unsqueeze(0) * factor.unsqueeze(1)
            else:
                covariance = torch.diag(terms[0] ** 2)
        covariances.append(covariance)
    values = quantities_from_sums(sums, c_actual, shift_w, shift_u)
    jacobian = torch.autograd.functional.jacobian(lambda s: quantities_from_sums(s, c_actual, shift_w, shift_u), sums)
    total = sum(covariances, torch.zeros(6, 6, dtype=torch.float64))
    variances = torch.diagonal(jacobian @ total @ jacobian.T).clamp(min=0)
    return Estimate(
        values={name: float(values[i]) for i, name in enumerate(QUANTITIES)},
        stderrs={name: float(variances[i].sqrt()) for i, name in enumerate(QUANTITIES)},
        log_d=shift_w + float(torch.log(sums[0])),
        log_n=shift_u + float(torch.log(sums[1])),
        stratum_variances=[max(0.0, float(jacobian[0] @ covariance @ jacobian[0])) for covariance in covariances],
    )
