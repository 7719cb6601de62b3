"""The budget candidate policy: exact head + sampled tail, with standard errors.

Per prompt: one forward of the original sequence (priors, prefix caches) and one forward plus two
backward passes for the first-order estimates. Per position ``k`` (``j = 1 + k``):

1. *Lookahead* (:func:`lookahead_guess`): for the highest-prior ids ``v``,
   ``log P(x_{j+1} | x_<j, v)``, the first term of ``b[k, v]`` (:func:`lookahead`), at one
   token-forward per id instead of ``n - k + m - 1``; then, for the few ids it ranks highest, the
   first ``DEEP_DEPTH`` terms. On SmolLM2 the one-token lookahead correlates with ``b`` at
   0.84-0.98 where the first-order estimate below does not at all (0.007); four terms reach 0.995-1.0.
2. *Head*: ``p_k``, then the ids ``a + lookahead`` ranks highest, then the prior's and the
   first-order guesses' rankings; scored exactly on the shared prefix cache (``engine.score_position``).
3. *Tail*, in two strata sampled on their own: the looked-ahead ids (proposal: a mixture of
   ``a + lookahead`` and the other guesses) and the rest (the prior and the first-order guesses).
   ``estimator.estimate_strata`` adds the head's exact sums and each stratum's unbiased estimate.

First-order estimates (the gradient-attribution Jacobian idea): with ``e`` the input embeddings,
    b~[k, v] = b[k, p_k] + grad_{e_j} L_prompt . (E_v - E_{p_k})
    c~[k, v] = c[k, p_k] + grad_{e_j} L_response . (E_v - E_{p_k})
where ``L_prompt = sum_t log P(p_t | ...)`` and ``L_response = log P(r | ...)``. By causality the
gradient of ``L_prompt`` at position ``j`` only involves the prompt terms after ``j`` (= ``b``), so
one backward pass per target serves every position.

Longer than 300 lines because the budget policy is one estimator: the head, the lookahead, the
strata and the sampling rounds all feed one set of error bars.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..maths.estimator import (
    QUANTITIES,
    Estimate,
    TailSample,
    allocate_draws,
    draw_without_replacement,
    estimate_strata,
    mixture_weights,
    select_head,
    tail_components,
)
from ..maths.quantities import PositionQuantities
from ..types.policies import BUDGET
from ..types.position_scores import PositionScores
from ..types.settings import ProbeSettings
from .engine import SuffixScorer, kv_bytes_per_token, score_position

# The budget policy's revision (``probes.types.policies``: bumped there whenever a change to the head,
# the proposal or the error bars changes budgeted numbers for the same settings); stored records
# made by another revision are recomputed, not reused.
ESTIMATOR_REVISION = BUDGET.revision


def first_order_estimates(model, input_ids: torch.Tensor, n_prompt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b~, c~)``, each ``(n, V)`` float64 on the CPU: first-order estimates of ``b`` and ``c``
    for every candidate at every prompt position (see the module docstring). Parameter gradients
    are never touched (``torch.autograd.grad`` with respect to the inputs only)."""
    embedding = model.get_input_embeddings()
    with torch.enable_grad():
        inputs = embedding(input_ids.unsqueeze(0)).detach().requires_grad_(True)  # (1, L, H)
        logits = model(inputs_embeds=inputs).logits[0].float()  # (L, V)
        per_token = torch.log_softmax(logits[:-1], dim=-1).gather(-1, input_ids[1:].unsqueeze(-1)).squeeze(-1)
        # per_token[t] = log P(x_{t+1} | x_<=t); prompt targets t < n, response targets t >= n
        (grad_prompt,) = torch.autograd.grad(per_token[:n_prompt].sum(), inputs, retain_graph=True)
        (grad_response,) = torch.autograd.grad(per_token[n_prompt:].sum(), inputs)
    per_token = per_token.detach().double()
    weights = embedding.weight.detach().double()  # (V_in, H)
    rows = slice(1, n_prompt + 1)  # sequence indices j = 1 + k of the prompt tokens
    actual = input_ids[rows]
    estimates = []
    for gradient, exact in ((grad_prompt, [float(per_token[j:n_prompt].sum()) for j in range(1, n_prompt + 1)]),
                            (grad_response, [float(per_token[n_prompt:].sum())] * n_prompt)):
        g = gradient[0, rows].double()  # (n, H)
        shift = g @ weights.T - (g * weights[actual]).sum(-1, keepdim=True)  # (n, V_in)
        estimates.append(torch.tensor(exact, dtype=torch.float64).unsqueeze(-1) + shift)
    return estimates[0].cpu(), estimates[1].cpu()


# How a position's allowance (the candidate budget x its suffix length, in token-forwards) is spent:
LOOKAHEAD_SHARE = 3 / 8  # at most this much on the one-token lookahead of the highest-prior ids
DEEP_SHARE = 1 / 32  # then this much on a deeper lookahead of the ids the first one ranks highest
DEEP_DEPTH = 4  # suffix tokens the deeper lookahead runs (at most the whole suffix)
HEAD_SHARE = 1 / 16  # ids scored exactly up front: a budget of 768 gives a head of 48
PILOT_UNTIL = 17 / 32  # pilot draws until this much of the allowance is spent (1/16 after the head)
EVEN_SHARE = 1 / 4  # then every position draws this much; the rest is pooled over the prompt
OUTSIDE_PILOT = 1 / 4  # the pilot's share of draws from outside the looked-ahead ids


def lookahead(scorer: SuffixScorer, input_ids: torch.Tensor, n_prompt: int, k: int, ids: torch.Tensor,
              settings: ProbeSettings, kv_token_bytes: Optional[int] = None,
              depth: int = 1) -> tuple[torch.Tensor, int]:
    """The ``depth``-token lookahead of candidates ``ids`` at prompt position ``k`` (``j = 1 + k``):
    ``sum_{t=1..depth} log P(x_{j+t} | x_<j, v, x_{j+1..j+t-1})``, the first ``depth`` terms of
    ``b[k, v] + c[k, v]`` (``b``'s first term at depth 1; ``c``'s when ``k`` is the last prompt
    position). It is ``engine.score_position`` on the sequence cut after ``x_{j+depth}``: ``depth``
    token-forwards per candidate instead of ``n - k + m - 1``.

    Returns ``((C,) float64, token_forwards)``.
    """
    b, c, cost = score_position(scorer, input_ids[: k + 2 + depth], n_prompt, k, ids, settings, kv_token_bytes)
    return b + c, cost


def lookahead_guess(scorer: SuffixScorer, input_ids: torch.Tensor, n_prompt: int, k: int, prior: torch.Tensor,
                    budget: int, settings: ProbeSettings,
                    kv_token_bytes: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The lookahead guess at position ``k``, in two stages, from a position's allowance of
    ``budget x cost`` token-forwards (``cost = len(input_ids) - 2 - k``, its suffix length):

    1. the one-token :func:`lookahead` of the :func:`lookahead_size` highest-prior ids (breadth);
    2. the :func:`lookahead` at depth ``d = min(DEEP_DEPTH, cost)`` of the ``DEEP_SHARE x budget x
       cost / d`` ids that ``prior + stage 1`` ranks highest (depth). On SmolLM2 at ' Albert' the
       one-token lookahead correlates with ``b`` at 0.84 and leaves 1.7 nats of residual; four
       tokens (there, the whole rest of the prompt) leave none.

    The guess of an id is its deeper lookahead where it has one, else its one-token lookahead plus
    the average of ``deep - shallow`` over the deeply looked-at ids (weighted by ``softmax(prior +
    deep)``), so that both stages stand on the same scale. A guess only shapes the proposal: the
    estimate stays unbiased however good it is.

    Returns ``(ids (L,), guess (L,) float64, token_forwards)``; empty when the budget affords no
    lookahead (see :func:`lookahead_size`).
    """
    cost = input_ids.shape[0] - 2 - k
    ids = torch.topk(prior, lookahead_size(budget, cost, prior.shape[0])).indices
    guess, spent = lookahead(scorer, input_ids, n_prompt, k, ids, settings, kv_token_bytes)
    depth = min(DEEP_DEPTH, cost)
    n_deep = min(ids.shape[0], int(budget * DEEP_SHARE * cost / depth)) if depth > 1 else 0
    if n_deep:
        top = torch.topk(prior[ids].double() + guess, n_deep).indices
        deep, more = lookahead(scorer, input_ids, n_prompt, k, ids[top], settings, kv_token_bytes, depth)
        weights = torch.softmax(prior[ids[top]].double() + deep, 0)
        guess = guess + (weights * (deep - guess[top])).sum()
        guess[top] = deep
        spent += more
    return ids, guess, spent


def head_size(budget: int) -> int:
    """Ids in a position's exactly scored head: ``HEAD_SHARE`` of its budget (at least ``p_k``)."""
    return max(1, int(budget * HEAD_SHARE))


def lookahead_size(budget: int, cost: int, vocab: int) -> int:
    """Ids whose one-token lookahead a position affords: ``LOOKAHEAD_SHARE`` of its allowance
    ``budget x cost`` token-forwards at one token each, at most the vocabulary; none when the rest
    of the budget (after the deeper lookahead too) could not pay for the head and a draw from each
    part of the tail, or when the budget covers the vocabulary (every id can then be scored exactly)."""
    affordable = head_size(budget) + 2 <= budget * (1 - LOOKAHEAD_SHARE - DEEP_SHARE)
    return min(vocab, int(budget * LOOKAHEAD_SHARE * cost)) if affordable and budget < vocab else 0


Score = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, int]]


class Stratum:
    """One part of the tail (``support``, ``(V,)`` bool), sampled on its own: ordered draws without
    replacement from a mixture of ``softmax(guess)`` restricted to the part, reweighed after each
    round towards the guesses that explain the mass found so far (:func:`estimator.mixture_weights`).
    Every round's proposal depends only on earlier rounds, so Des Raj's estimator over the draws after
    the pilot (:meth:`end_pilot`) is unbiased (:func:`estimator.sequential_terms`)."""

    def __init__(self, guesses: list[torch.Tensor], support: torch.Tensor, prior: torch.Tensor, score: Score) -> None:
        self.components = tail_components(guesses, support=support)  # (J, V)
        self.alpha = torch.full((len(guesses),), 1.0 / len(guesses), dtype=torch.float64)
        self.taken = ~support
        self.prior, self.score = prior, score
        self.ids = torch.empty(0, dtype=torch.long)
        self.columns = {key: torch.empty(0, dtype=torch.float64) for key in ("lw", "lu", "c", "pi", "q")}
        self.component_probs = torch.empty(0, len(guesses), dtype=torch.float64)
        self.token_forwards = 0
        self.pilot = 0  # the first ``pilot`` draws are summed exactly, not part of the estimator

    @property
    def open_ids(self) -> int:
        """Ids of the part not drawn yet that the mixture can reach."""
        return int(((self.components.sum(0) > 0) & ~self.taken).sum())

    def draw(self, n: int, generator: torch.Generator) -> None:
        """Draw ``n`` more ids (fewer if fewer are open), score them, adapt the mixture."""
        if n <= 0:
            return
        proposal = self.alpha @ self.components  # (V,)
        ids, q = draw_without_replacement(proposal, self.taken, n, generator)
        if ids.shape[0] == 0:
            return
        self.taken[ids] = True
        b, c, cost = self.score(ids)
        self.token_forwards += cost
        lw = self.prior[ids] + b
        new = {"lw": lw, "lu": lw + c, "c": c, "pi": proposal[ids], "q": q}
        self.columns = {key: torch.cat([self.columns[key], new[key]]) for key in self.columns}
        self.ids = torch.cat([self.ids, ids])
        self.component_probs = torch.cat([self.component_probs, self.components[:, ids].T])
        # importance weights of w and of u, each normalised, judge the components together
        log_pi = self.columns["pi"].log()
        weights = torch.softmax(self.columns["lw"] - log_pi, 0) + torch.softmax(self.columns["lu"] - log_pi, 0)
        self.alpha = mixture_weights(self.component_probs, self.alpha, weights)

    def end_pilot(self) -> None:
        """From now on the draws so far count as exactly scored ids and the estimate rests on the
        later draws only, whose number may then depend on the pilot's outcome without bias."""
        self.pilot = self.ids.shape[0]

    def exact(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``lw, lu, c`` of the pilot draws (summed exactly)."""
        return self.columns["lw"][: self.pilot], self.columns["lu"][: self.pilot], self.columns["c"][: self.pilot]

    def sample(self) -> TailSample:
        """The draws after the pilot, for :func:`estimator.estimate_strata`."""
        return TailSample(*(self.columns[key][self.pilot:] for key in ("lw", "lu", "c", "pi", "q")))


class PositionSampler:
    """The budget policy at one position: an exact head and a tail in two strata.

    With a lookahead (``look_ids``, the highest-prior ids, and ``look``, their lookahead guess, see
    :func:`lookahead_guess`), ``a + look`` is a cheap guess of ``a + b`` (from the first terms of
    ``b``; of ``c`` at the last prompt position). The head is ``p_k``, then the ids that guess ranks
    highest, then the prior's and the first-order guesses' rankings in turn
    (:func:`estimator.select_head`); scored exactly when the sampler is made. The tail splits into
    the looked-ahead ids (proposal: a mixture of ``a + look`` and the others) and the rest (a
    mixture of ``a``, ``a + b~`` and ``a + b~ + c~``), each a :class:`Stratum`.

    Args:
        prior: ``(V,)`` ``a`` = log P(v | x_<j); approx_b, approx_c: ``(V,)`` first-order ``b~, c~``.
        actual: ``p_k``. head_size: ids in the head (at least ``p_k``).
        score: ``ids -> (b, c, token_forwards)``: exact ``b`` and ``c`` of the ids
            (``engine.score_position`` on the model; a lookup in stored vectors for simulations).
        look_ids, look, look_cost: the looked-ahead ids ``(L,)``, their lookahead ``(L,)`` and what it
            cost in token-forwards (none by default).
    """

    def __init__(self, prior: torch.Tensor, approx_b: torch.Tensor, approx_c: torch.Tensor, actual: int,
                 head_size: int, score: Score, look_ids: Optional[torch.Tensor] = None,
                 look: Optional[torch.Tensor] = None, look_cost: int = 0) -> None:
        vocab = prior.shape[0]
        guesses = [prior, prior + approx_b, prior + approx_b + approx_c]
        looked = torch.zeros(vocab, dtype=torch.bool)
        guess = torch.full((vocab,), float("-inf"), dtype=torch.float64)
        if look_ids is not None and look is not None and look_ids.shape[0]:
            looked[look_ids] = True
            guess[look_ids] = prior[look_ids].double() + look.double()
        self.prior, self.actual = prior, actual
        self.head = select_head(guesses, actual, head_size, lead=guess)
        outside_head = torch.ones(vocab, dtype=torch.bool)
        outside_head[self.head] = False
        self.strata = [Stratum([guess] + guesses, looked & outside_head, prior, score),
                       Stratum(guesses, ~looked & outside_head, prior, score)]
        b, c, cost = score(self.head)
        self.head_forwards = cost + look_cost
        self.head_lw, self.head_lu, self.head_c = prior[self.head] + b, prior[self.head] + b + c, c

    @property
    def token_forwards(self) -> int:
        """Suffix tokens run so far: lookahead, head and draws."""
        return self.head_forwards + sum(stratum.token_forwards for stratum in self.strata)

    def draw_pilot(self, n: int, generator: torch.Generator) -> None:
        """``n`` pilot draws: ``OUTSIDE_PILOT`` of them outside the looked-ahead ids, the rest inside
        (whichever part runs out of ids passes its share to the other)."""
        inside, outside = self.strata
        n_outside = min(outside.open_ids, max(n - inside.open_ids, round(n * OUTSIDE_PILOT)))
        inside.draw(n - n_outside, generator)
        outside.draw(n_outside, generator)

    def scored(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, lw, lu)`` of every id scored exactly, head or drawn."""
        return (torch.cat([self.head] + [stratum.ids for stratum in self.strata]),
                torch.cat([self.head_lw] + [stratum.columns["lw"] for stratum in self.strata]),
                torch.cat([self.head_lu] + [stratum.columns["lu"] for stratum in self.strata]))

    def estimate(self) -> Estimate:
        """Head and pilot draws summed exactly, plus each stratum's estimate from its later draws."""
        c_actual = float(self.head_c[(self.head == self.actual).nonzero()[0, 0]])
        exact = [stratum.exact() for stratum in self.strata]
        lw, lu, c = (torch.cat([head] + [part[i] for part in exact])
                     for i, head in enumerate((self.head_lw, self.head_lu, self.head_c)))
        return estimate_strata(lw, lu, c, [stratum.sample() for stratum in self.strata], c_actual=c_actual)


def run_rounds(samplers: list[PositionSampler], costs: list[int], budget: int, generator: torch.Generator,
               on_position: Optional[Callable[[], None]] = None) -> list[Estimate]:
    """Spend at most ``budget x sum(costs)`` token-forwards; returns each position's estimate.

    Position ``k``'s allowance is ``budget x costs[k]`` (``costs[k]`` suffix tokens per candidate).
    Pilot: each position draws until ``PILOT_UNTIL`` of its allowance is spent (lookahead and head
    included). The pilot's per-stratum standard errors decide where the pool goes; then its draws
    count as exact (:meth:`Stratum.end_pilot`), so that the estimate rests on draws whose number was
    fixed before they were made. Main rounds: each position draws ``EVEN_SHARE`` of its allowance
    (split over its strata as its pilot was; at least one draw from each part with ids left), then
    the pool, what is left of the total, goes where the projected attribution-score variance is
    largest, stratum by stratum over the whole prompt (:func:`estimator.allocate_draws`): a
    position pinned down early lends to one that is not.
    """
    allowance = [budget * cost for cost in costs]
    for sampler, cost, allowed in zip(samplers, costs, allowance):
        sampler.draw_pilot(int((PILOT_UNTIL * allowed - sampler.token_forwards) // cost), generator)
    units, variances, unit_costs, even = [], [], [], []
    for sampler, cost, allowed in zip(samplers, costs, allowance):
        pilot = sampler.estimate()
        drawn = sum(stratum.ids.shape[0] for stratum in sampler.strata)
        open_ids = sum(stratum.open_ids for stratum in sampler.strata)
        for stratum, variance in zip(sampler.strata, pilot.stratum_variances):
            units.append(stratum)
            variances.append(variance)
            unit_costs.append(cost)
            # split as the pilot was; without pilot draws (a tiny budget), as the ids left are
            share = stratum.ids.shape[0] / drawn if drawn else stratum.open_ids / max(1, open_ids)
            even.append(min(stratum.open_ids, max(1, int(EVEN_SHARE * allowed / cost * share))))
    spent = sum(sampler.token_forwards for sampler in samplers) + sum(e * c for e, c in zip(even, unit_costs))
    extra = allocate_draws(
        variances=torch.tensor(variances, dtype=torch.float64),
        drawn=torch.tensor([unit.ids.shape[0] for unit in units]),
        costs=torch.tensor(unit_costs), pool=sum(allowance) - spent,
        capacity=torch.tensor([max(0, unit.open_ids - e) for unit, e in zip(units, even)]))
    for unit, evenly, more in zip(units, even, extra.tolist()):
        unit.end_pilot()
        unit.draw(evenly, generator)
        unit.draw(more, generator)
    estimates = []
    for sampler in samplers:
        estimates.append(sampler.estimate())
        if on_position is not None:
            on_position()
    return estimates


def score_budgeted(model, input_ids: torch.Tensor, n_prompt: int, settings: ProbeSettings,
                   on_position: Optional[Callable[[], None]] = None,
                   positions: Optional[Sequence[int]] = None) -> PositionScores:
    """Budgeted estimates of every per-position quantity of the maths guide, with standard errors.

    Per position ``k``: the two-stage lookahead of the highest-prior ids (:func:`lookahead_guess`), then
    a :class:`PositionSampler` with a head of :func:`head_size` ids; then :func:`run_rounds` spends
    what is left of ``settings.budget_for(|V|) x`` the suffix length (most of it at every position, the
    rest where the attribution score is least certain). The draws come from a private generator
    seeded with ``settings.seed``. ``positions`` limits the work to those prompt positions (rows
    follow their order; the pool is shared among them); default all. The top candidates are the best
    of all the ids scored exactly.
    """
    with torch.inference_mode():
        scorer = SuffixScorer(model, input_ids)
        log_probs = torch.log_softmax(scorer.logits.float(), dim=-1).double().cpu()  # (L, V)
        kv_token_bytes = kv_bytes_per_token(scorer.cache)
    vocab = log_probs.shape[-1]
    budget = settings.budget_for(vocab)
    approx_b, approx_c = first_order_estimates(model, input_ids, n_prompt)
    approx_b, approx_c = approx_b[:, :vocab], approx_c[:, :vocab]
    actual_all = log_probs[:-1].gather(-1, input_ids[1:].cpu().unsqueeze(-1)).squeeze(-1)
    log_p_response = float(actual_all[n_prompt:].sum())
    generator = torch.Generator().manual_seed(settings.seed)

    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    values = {name: torch.empty(len(positions), dtype=torch.float64) for name in QUANTITIES}
    stderrs = {name: torch.empty(len(positions), dtype=torch.float64) for name in QUANTITIES}
    top: dict[str, list[torch.Tensor]] = {key: [] for key in ("prompt_ids", "prompt_probs", "context_ids",
                                                               "context_probs")}
    costs = [input_ids.shape[0] - 2 - k for k in positions]  # suffix tokens per candidate
    samplers = []
    for k in positions:
        def score(ids: torch.Tensor, k: int = k) -> tuple[torch.Tensor, torch.Tensor, int]:
            return score_position(scorer, input_ids, n_prompt, k, ids, settings, kv_token_bytes)

        look_ids, look, look_cost = lookahead_guess(scorer, input_ids, n_prompt, k, log_probs[k], budget, settings,
                                                    kv_token_bytes)
        samplers.append(PositionSampler(log_probs[k], approx_b[k], approx_c[k], int(input_ids[1 + k]),
                                        head_size(budget), score, look_ids, look, look_cost))
    estimates = run_rounds(samplers, costs, budget, generator, on_position)
    for row, (sampler, result) in enumerate(zip(samplers, estimates)):
        for name in QUANTITIES:
            values[name][row], stderrs[name][row] = result.values[name], result.stderrs[name]
        scored, scored_lw, scored_lu = sampler.scored()  # every id scored exactly, head or drawn
        top_k = min(settings.top_k, scored.shape[0])
        for side, log_scores, log_norm in (("prompt", scored_lw, result.log_d), ("context", scored_lu, result.log_n)):
            best = torch.topk(log_scores, top_k)
            top[f"{side}_ids"].append(scored[best.indices])
            top[f"{side}_probs"].append((best.values - log_norm).exp())
    token_forwards = sum(sampler.token_forwards for sampler in samplers)
    # a small budget can leave some heads smaller than top_k: report the length every position has
    width = min(rows.shape[0] for rows in top["prompt_ids"])
    stacked = {key: torch.stack([rows[:width] for rows in lists]) for key, lists in top.items()}
    quantities = PositionQuantities(**values, top_prompt_ids=stacked["prompt_ids"],
                                    top_prompt_probs=stacked["prompt_probs"], top_context_ids=stacked["context_ids"],
                                    top_context_probs=stacked["context_probs"])
    return PositionScores(quantities, stderrs, log_p_response, token_forwards, "budget")
