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
from .estimator import QUANTITIES, estimate, select_head, tail_proposal
from .settings import ProbeSettings

# Bumped whenever a change to the head, the proposal or the error bars changes budgeted numbers for
# the same settings; stored records made by another revision are recomputed, not reused.
ESTIMATOR_REVISION = 2


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


def score_budgeted(model, input_ids: torch.Tensor, n_prompt: int, settings: ProbeSettings,
                   on_position: Optional[Callable[[], None]] = None,
                   positions: Optional[Sequence[int]] = None) -> BudgetedScores:
    """Budgeted estimates of every per-position quantity of MATH.md, with standard errors.

    Per position ``k``: a head of ``candidate_budget // 2`` ids (``p_k``, then the top ids by prior,
    by first-order ``a + b~`` and by ``a + b~ + c~`` in turn) scored exactly, and ``candidate_budget - |head|``
    draws from :func:`estimator.tail_proposal` (with replacement; each distinct id scored once).
    The draws come from a private generator seeded with ``settings.seed``. ``positions`` limits
    the work to those prompt positions (rows follow their order); default all.
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
    token_forwards, head_sizes = 0, []
    for row, k in enumerate(positions):
        prior = log_probs[k]  # (V,): row k predicts x_{k+1} = p_k
        actual = int(input_ids[1 + k])
        guesses = [prior, prior + approx_b[k], prior + approx_b[k] + approx_c[k]]
        head = select_head(guesses, actual, settings.candidate_budget // 2)
        proposal = tail_proposal(guesses, head)
        draws = settings.candidate_budget - head.shape[0]
        samples = (torch.multinomial(proposal, draws, replacement=True, generator=generator)
                   if draws > 0 and proposal.sum() > 0 else torch.empty(0, dtype=torch.long))
        distinct, back = torch.unique(samples, return_inverse=True)
        scored = torch.cat([head, distinct])
        b, c, cost = score_position(scorer, input_ids, n_prompt, k, scored, settings, kv_token_bytes)
        token_forwards += cost
        lw, lu = prior[scored] + b, prior[scored] + b + c
        h = head.shape[0]
        result = estimate(lw[:h], lu[:h], c[:h], lw[h:][back], lu[h:][back], c[h:][back], proposal[samples],
                          c_actual=float(c[(head == actual).nonzero()[0, 0]]))
        for name in QUANTITIES:
            values[name][row], stderrs[name][row] = result.values[name], result.stderrs[name]
        top_k = min(settings.top_k, h)
        for side, log_scores, log_norm in (("prompt", lw[:h], result.log_d), ("context", lu[:h], result.log_n)):
            best = torch.topk(log_scores, top_k)
            top[f"{side}_ids"].append(head[best.indices])
            top[f"{side}_probs"].append((best.values - log_norm).exp())
        head_sizes.append(h)
        if on_position is not None:
            on_position()
    # a small budget can leave some heads smaller than top_k: report the length every position has
    width = min(rows.shape[0] for rows in top["prompt_ids"])
    top = {key: torch.stack([rows[:width] for rows in lists]) for key, lists in top.items()}
    return BudgetedScores(
        values=values, stderrs=stderrs,
        top_prompt_ids=top["prompt_ids"], top_prompt_probs=top["prompt_probs"],
        top_context_ids=top["context_ids"], top_context_probs=top["context_probs"],
        log_p_response=log_p_response, token_forwards=token_forwards, head_sizes=head_sizes,
    )
