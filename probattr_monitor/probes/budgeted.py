"""The budget candidate policy: exact head + importance-sampled tail, with standard errors.

Per prompt: one forward of the original sequence (priors, prefix caches) and one forward plus two
backward passes for the first-order estimates; per position: the head and the tail draws scored
exactly on the shared prefix cache (``engine.score_position``), then ``estimator.estimate``.

First-order estimates (the gradient-attribution Jacobian idea): with ``e`` the input embeddings,
    b~[k, v] = b[k, p_k] + grad_{e_j} L_prompt . (E_v - E_{p_k})
    c~[k, v] = c[k, p_k] + grad_{e_j} L_response . (E_v - E_{p_k})
where ``L_prompt = sum_t log P(p_t | ...)`` and ``L_response = log P(r | ...)``. By causality the
gradient of ``L_prompt`` at position ``j`` only involves the prompt terms after ``j`` (= ``b``), so
one backward pass per target serves every position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .engine import SuffixScorer, kv_bytes_per_token, score_position
from .estimator import (QUANTITIES, Estimate, allocate_draws, draw_without_replacement, estimate, mixture_weights,
                        select_head, tail_components)
from .settings import ProbeSettings

# Bumped whenever a change to the head, the proposal or the error bars changes budgeted numbers for
# the same settings; stored records made by another revision are recomputed, not reused.
ESTIMATOR_REVISION = 3


@dataclass
class BudgetedScores:
    """Per-position estimates: ``values[name]`` and ``stderrs[name]`` are ``(n,)`` float64 tensors
    (``estimator.QUANTITIES``); ``top_*`` are ``(n, top_k)`` from the exactly scored head."""

    values: dict
    stderrs: dict
    top_prompt_ids: torch.Tensor
    top_prompt_probs: torch.Tensor
    top_context_ids: torch.Tensor
    top_context_probs: torch.Tensor
    log_p_response: float
    token_forwards: int
    head_sizes: list = field(default_factory=list)


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


def head_size(budget: int) -> int:
    """Ids in a position's exactly scored head: a quarter of its budget (at least ``p_k``)."""
    return max(1, budget // 4)


Score = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, int]]


class PositionSampler:
    """The budget policy at one position, one round of draws at a time.

    The head (``p_k``, then the top ids by prior, by ``a + b~`` and by ``a + b~ + c~`` in turn) is
    scored exactly when the sampler is made. Each :meth:`draw` then draws ids from the tail without
    replacement (:func:`estimator.draw_without_replacement`) from a mixture of the three guesses'
    distributions, scores them, and reweighs the mixture towards the guesses that explain the mass
    found so far (:func:`estimator.mixture_weights`). Every round's proposal depends only on earlier
    rounds, so Des Raj's estimator over the draws after the pilot (:meth:`end_pilot`) stays
    unbiased (:func:`estimator.sequential_terms`).

    Args:
        prior: ``(V,)`` ``a`` = log P(v | x_<j); approx_b, approx_c: ``(V,)`` first-order ``b~, c~``.
        actual: ``p_k``. head_size: ids in the head (at least ``p_k``).
        score: ``ids -> (b, c, token_forwards)``: exact ``b`` and ``c`` of the ids
            (``engine.score_position`` on the model; a lookup in stored vectors for simulations).
    """

    def __init__(self, prior: torch.Tensor, approx_b: torch.Tensor, approx_c: torch.Tensor, actual: int,
                 head_size: int, score: Score) -> None:
        guesses = [prior, prior + approx_b, prior + approx_b + approx_c]
        self.prior, self.actual, self.score = prior, actual, score
        self.head = select_head(guesses, actual, head_size)
        self.components = tail_components(guesses, self.head)  # (J, V)
        self.alpha = torch.full((len(guesses),), 1.0 / len(guesses), dtype=torch.float64)
        self.taken = torch.zeros(prior.shape[0], dtype=torch.bool)
        self.taken[self.head] = True
        b, c, self.token_forwards = score(self.head)
        self.head_lw, self.head_lu, self.head_c = prior[self.head] + b, prior[self.head] + b + c, c
        self.draws = torch.empty(0, dtype=torch.long)
        self.sample = {key: torch.empty(0, dtype=torch.float64) for key in ("lw", "lu", "c", "pi", "q")}
        self.sample_components = torch.empty(0, len(guesses), dtype=torch.float64)
        self.pilot = 0  # the first ``pilot`` draws are summed exactly, not part of the estimator

    def end_pilot(self) -> None:
        """From now on the draws so far count as exactly scored ids (like the head) and the tail's
        estimate rests on the later draws only: their number may then depend on the pilot's
        outcome (as in :func:`run_rounds`) without biasing the estimate."""
        self.pilot = self.draws.shape[0]

    @property
    def open_ids(self) -> int:
        """Tail ids not drawn yet that the mixture can reach."""
        return int(((self.components.sum(0) > 0) & ~self.taken).sum())

    def draw(self, n: int, generator: torch.Generator) -> None:
        """Draw ``n`` more tail ids (fewer if fewer are open), score them, adapt the mixture."""
        proposal = self.alpha @ self.components  # (V,)
        ids, q = draw_without_replacement(proposal, self.taken, n, generator)
        if ids.shape[0] == 0:
            return
        self.taken[ids] = True
        b, c, cost = self.score(ids)
        self.token_forwards += cost
        lw = self.prior[ids] + b
        new = {"lw": lw, "lu": lw + c, "c": c, "pi": proposal[ids], "q": q}
        self.sample = {key: torch.cat([self.sample[key], new[key]]) for key in self.sample}
        self.draws = torch.cat([self.draws, ids])
        self.sample_components = torch.cat([self.sample_components, self.components[:, ids].T])
        # importance weights of w and of u, each normalised, judge the components together
        log_ratio_w = self.sample["lw"] - self.sample["pi"].log()
        log_ratio_u = self.sample["lu"] - self.sample["pi"].log()
        weights = torch.softmax(log_ratio_w, 0) + torch.softmax(log_ratio_u, 0)
        self.alpha = mixture_weights(self.sample_components, self.alpha, weights)

    def estimate(self) -> Estimate:
        """Head and pilot draws summed exactly, plus Des Raj's estimate of the rest of the tail from
        the draws after the pilot (all the draws before :meth:`end_pilot`)."""
        c_actual = float(self.head_c[(self.head == self.actual).nonzero()[0, 0]])
        exact, sampled = slice(0, self.pilot), slice(self.pilot, None)
        sample = self.sample
        return estimate(torch.cat([self.head_lw, sample["lw"][exact]]), torch.cat([self.head_lu, sample["lu"][exact]]),
                        torch.cat([self.head_c, sample["c"][exact]]), sample["lw"][sampled], sample["lu"][sampled],
                        sample["c"][sampled], sample["pi"][sampled], c_actual=c_actual, sample_q=sample["q"][sampled])


def run_rounds(samplers: list[PositionSampler], costs: list[int], budget: int, generator: torch.Generator,
               on_position: Optional[Callable[[], None]] = None) -> list[Estimate]:
    """Spend ``budget`` candidates per position on average; returns each position's estimate.

    Pilot: every position draws until it has scored half its budget (head included). Its standard
    errors decide where the pooled quarter goes; then its draws count as exact
    (:meth:`PositionSampler.end_pilot`), so that the estimate rests on draws whose number was fixed
    before they were made. Main rounds: every position draws a quarter of its budget, then the
    pooled quarter (``costs[k]`` token-forwards per candidate at position ``k``) goes where the
    pilot's attribution-score standard error is largest (:func:`estimator.allocate_draws`): a
    position already pinned down lends its share to one that is not. The mixture adapts after each
    round. The total never exceeds ``budget x sum(costs)``.
    """
    for sampler in samplers:
        sampler.draw(budget // 2 - sampler.head.shape[0], generator)
    pilots = [sampler.estimate() for sampler in samplers]
    even = max(1, budget // 4)
    spent = sum(sampler.token_forwards for sampler in samplers)
    extra = allocate_draws(
        variances=torch.tensor([pilot.stderrs["attribution_score"] ** 2 for pilot in pilots]),
        drawn=torch.tensor([sampler.draws.shape[0] for sampler in samplers]),
        costs=torch.tensor(costs), pool=budget * sum(costs) - spent - even * sum(costs),
        capacity=torch.tensor([max(0, sampler.open_ids - even) for sampler in samplers]))
    estimates = []
    for sampler, more in zip(samplers, extra.tolist()):
        sampler.end_pilot()
        sampler.draw(even, generator)
        sampler.draw(more, generator)
        estimates.append(sampler.estimate())
        if on_position is not None:
            on_position()
    return estimates


def score_budgeted(model, input_ids: torch.Tensor, n_prompt: int, settings: ProbeSettings,
                   on_position: Optional[Callable[[], None]] = None,
                   positions: Optional[Sequence[int]] = None) -> BudgetedScores:
    """Budgeted estimates of every per-position quantity of MATH.md, with standard errors.

    Per position ``k``: a :class:`PositionSampler` with a head of :func:`head_size` ids;
    then :func:`run_rounds` spends ``candidate_budget`` candidates per position on average (three
    quarters at every position, a quarter where the attribution score is least certain). The draws
    come from a private generator seeded with ``settings.seed``. ``positions`` limits the work to
    those prompt positions (rows follow their order; the pooled quarter is shared among them);
    default all. The top candidates are the best of all the ids scored exactly.
    """
    with torch.inference_mode():
        scorer = SuffixScorer(model, input_ids)
        log_probs = torch.log_softmax(scorer.logits.float(), dim=-1).double().cpu()  # (L, V)
        kv_token_bytes = kv_bytes_per_token(scorer.cache)
    vocab = log_probs.shape[-1]
    approx_b, approx_c = first_order_estimates(model, input_ids, n_prompt)
    approx_b, approx_c = approx_b[:, :vocab], approx_c[:, :vocab]
    actual_all = log_probs[:-1].gather(-1, input_ids[1:].cpu().unsqueeze(-1)).squeeze(-1)
    log_p_response = float(actual_all[n_prompt:].sum())
    generator = torch.Generator().manual_seed(settings.seed)

    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    values = {name: torch.empty(len(positions), dtype=torch.float64) for name in QUANTITIES}
    stderrs = {name: torch.empty(len(positions), dtype=torch.float64) for name in QUANTITIES}
    top = {key: [] for key in ("prompt_ids", "prompt_probs", "context_ids", "context_probs")}
    samplers = []
    for k in positions:
        def score(ids: torch.Tensor, k: int = k) -> tuple[torch.Tensor, torch.Tensor, int]:
            return score_position(scorer, input_ids, n_prompt, k, ids, settings, kv_token_bytes)

        samplers.append(PositionSampler(log_probs[k], approx_b[k], approx_c[k], int(input_ids[1 + k]),
                                        head_size(settings.candidate_budget), score))
    costs = [input_ids.shape[0] - 2 - k for k in positions]  # suffix tokens per candidate
    estimates = run_rounds(samplers, costs, settings.candidate_budget, generator, on_position)
    head_sizes = []
    for row, (sampler, result) in enumerate(zip(samplers, estimates)):
        for name in QUANTITIES:
            values[name][row], stderrs[name][row] = result.values[name], result.stderrs[name]
        scored = torch.cat([sampler.head, sampler.draws])  # every id scored exactly, head or drawn
        top_k = min(settings.top_k, scored.shape[0])
        for side, log_scores, log_norm in (("prompt", torch.cat([sampler.head_lw, sampler.sample["lw"]]), result.log_d),
                                           ("context", torch.cat([sampler.head_lu, sampler.sample["lu"]]), result.log_n)):
            best = torch.topk(log_scores, top_k)
            top[f"{side}_ids"].append(scored[best.indices])
            top[f"{side}_probs"].append((best.values - log_norm).exp())
        head_sizes.append(sampler.head.shape[0])
    token_forwards = sum(sampler.token_forwards for sampler in samplers)
    # a small budget can leave some heads smaller than top_k: report the length every position has
    width = min(rows.shape[0] for rows in top["prompt_ids"])
    top = {key: torch.stack([rows[:width] for rows in lists]) for key, lists in top.items()}
    return BudgetedScores(
        values=values, stderrs=stderrs,
        top_prompt_ids=top["prompt_ids"], top_prompt_probs=top["prompt_probs"],
        top_context_ids=top["context_ids"], top_context_probs=top["context_probs"],
        log_p_response=log_p_response, token_forwards=token_forwards, head_sizes=head_sizes,
    )
