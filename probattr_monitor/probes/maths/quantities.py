"""The probe quantities of the maths guide as pure functions of tensors.

Everything here works on the three per-position log-probability vectors of the maths guide, stacked over
the ``n`` prompt positions of one probe:

    a[k, v] = log P(p_k = v | s, p_<k)                 prior
    b[k, v] = log P(p_>k | s, p_<k, p_k = v)           rest of the prompt, v in place of p_k
    c[k, v] = log P(r | s, p_<k, p_k = v, p_>k)        the response, v in place of p_k

No model, no I/O, no logging: the engine produces ``a, b, c``; this module turns them into the
paper's quantities. All arithmetic is in float64 (the maths guide asks for float32 or wider).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

QUANTITIES = ("attribution_score", "entropy_prompt", "entropy_context", "kl_context_prompt", "kl_prompt_context")


@dataclass(frozen=True)
class PositionQuantities:
    """The per-position probe quantities for one prompt, each a tensor of shape ``(n,)``.

    ``top_prompt_ids`` / ``top_context_ids`` and their ``*_probs`` have shape ``(n, top_k)``.
    """

    attribution_score: torch.Tensor
    entropy_prompt: torch.Tensor
    entropy_context: torch.Tensor
    kl_context_prompt: torch.Tensor
    kl_prompt_context: torch.Tensor
    top_prompt_ids: torch.Tensor
    top_prompt_probs: torch.Tensor
    top_context_ids: torch.Tensor
    top_context_probs: torch.Tensor


def log_posteriors(
    prior: torch.Tensor, rest_prompt: torch.Tensor, response: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bayes' rule over the vocabulary at each prompt position.

    log q_prompt(v)  = log_softmax_v(a + b)      = log P(p_k = v | p_-k)
    log q_context(v) = log_softmax_v(a + b + c)  = log P(p_k = v | p_-k, r)

    Args:
        prior: ``a``, shape ``(..., V)``.
        rest_prompt: ``b``, shape ``(..., V)``.
        response: ``c``, shape ``(..., V)``.

    Returns:
        ``(log_q_prompt, log_q_context)``, each ``(..., V)`` in float64.
    """
    joint_prompt = prior.double() + rest_prompt.double()  # (..., V)
    joint_context = joint_prompt + response.double()  # (..., V)
    return torch.log_softmax(joint_prompt, dim=-1), torch.log_softmax(joint_context, dim=-1)


def entropy(log_q: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats, ``-sum_v q(v) log q(v)``, with ``0 log 0 = 0``.

    Args:
        log_q: normalised log-probabilities, shape ``(..., V)``.

    Returns:
        Shape ``(...)``.
    """
    q = log_q.exp()
    return -torch.where(q > 0, q * log_q, torch.zeros_like(q)).sum(dim=-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_v p(v) (log p(v) - log q(v))`` in nats, with ``0 log 0 = 0``.

    Args:
        log_p: normalised log-probabilities, shape ``(..., V)``.
        log_q: normalised log-probabilities, shape ``(..., V)``.

    Returns:
        Shape ``(...)``; non-negative up to float error.
    """
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=-1)


def attribution_scores(
    log_q_prompt: torch.Tensor, log_q_context: torch.Tensor, token_ids: torch.Tensor
) -> torch.Tensor:
    """``AS_k = log q_context(p_k) - log q_prompt(p_k) = log P(r | p) - log P(r | p_-k)``.

    Args:
        log_q_prompt: shape ``(n, V)``.
        log_q_context: shape ``(n, V)``.
        token_ids: the actual prompt tokens ``p_k``, shape ``(n,)``.

    Returns:
        Shape ``(n,)``.
    """
    index = token_ids.long().unsqueeze(-1)  # (n, 1)
    return (log_q_context.gather(-1, index) - log_q_prompt.gather(-1, index)).squeeze(-1)


def attribution_scores_all(log_q_prompt: torch.Tensor, log_q_context: torch.Tensor) -> torch.Tensor:
    """``AS_k(v)``: the score each candidate ``v`` would get if it stood at position k.

    ``AS_k(v) = log q_context(v) - log q_prompt(v)``; shape ``(..., V)``. Used by the identities
    ``KL(q_context || q_prompt) = E_{q_context}[AS_k(v)]`` and ``E_{q_prompt}[exp AS_k(v)] = 1``.
    """
    return log_q_context - log_q_prompt


def top_candidates(log_q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most probable tokens of each distribution.

    Args:
        log_q: shape ``(n, V)``.
        k: how many; clipped to ``V``.

    Returns:
        ``(ids, probs)``, each ``(n, min(k, V))``, most probable first.
    """
    values, ids = torch.topk(log_q, k=min(k, log_q.shape[-1]), dim=-1)
    return ids, values.exp()


def position_quantities(
    prior: torch.Tensor,
    rest_prompt: torch.Tensor,
    response: torch.Tensor,
    token_ids: torch.Tensor,
    top_k: int = 5,
) -> PositionQuantities:
    """All per-position quantities of the maths guide from ``a, b, c`` (each ``(n, V)``).

    Args:
        prior: ``a``, ``(n, V)``.
        rest_prompt: ``b``, ``(n, V)``.
        response: ``c``, ``(n, V)``.
        token_ids: the prompt tokens ``p_k``, ``(n,)``.
        top_k: how many top candidates of each posterior to keep.

    Returns:
        A :class:`PositionQuantities` of float64 tensors.
    """
    log_q_prompt, log_q_context = log_posteriors(prior, rest_prompt, response)
    top_prompt_ids, top_prompt_probs = top_candidates(log_q_prompt, top_k)
    top_context_ids, top_context_probs = top_candidates(log_q_context, top_k)
    return PositionQuantities(
        attribution_score=attribution_scores(log_q_prompt, log_q_context, token_ids),
        entropy_prompt=entropy(log_q_prompt),
        entropy_context=entropy(log_q_context),
        kl_context_prompt=kl_divergence(log_q_context, log_q_prompt),
        kl_prompt_context=kl_divergence(log_q_prompt, log_q_context),
        top_prompt_ids=top_prompt_ids,
        top_prompt_probs=top_prompt_probs,
        top_context_ids=top_context_ids,
        top_context_probs=top_context_probs,
    )


# ---- the same quantities from six vocabulary sums (what the budget policy estimates) ----
# With lw_v = a_v + b_v, lu_v = a_v + b_v + c_v, w = exp(lw), u = exp(lu):
#   s = (sum w, sum u, sum w lw, sum u lu, sum w c, sum u c)
#   log D = log s0, log N = log s1 (the normalisers of q_prompt and q_context)
#   AS = c_{p_k} - log N + log D;  H_prompt = log D - s2 / s0;  H_context = log N - s3 / s1
#   KL(qc || qp) = s5 / s1 + log D - log N;  KL(qp || qc) = -s4 / s0 + log N - log D


def sum_terms(lw: torch.Tensor, lu: torch.Tensor, c: torch.Tensor, shift_w: float, shift_u: float) -> torch.Tensor:
    """``(C, 6)``: ``w, u, w lw, u lu, w c, u c`` per candidate, with ``w = exp(lw - shift_w)`` and
    ``u = exp(lu - shift_u)`` (the shifts keep the sums in range and cancel in every quantity)."""
    w = torch.exp(lw - shift_w)
    u = torch.exp(lu - shift_u)
    zero = torch.zeros_like(w)
    return torch.stack([w, u, torch.where(w > 0, w * lw, zero), torch.where(u > 0, u * lu, zero),
                        torch.where(w > 0, w * c, zero), torch.where(u > 0, u * c, zero)], dim=-1)


def quantities_from_sums(s: torch.Tensor, c_actual: float, shift_w: float, shift_u: float) -> torch.Tensor:
    """The five :data:`QUANTITIES`, in that order, from the six sums ``s`` (see above) and ``c`` at
    the actual token; differentiable in ``s`` (the delta method takes its Jacobian)."""
    log_d = shift_w + torch.log(s[0])
    log_n = shift_u + torch.log(s[1])
    return torch.stack([
        c_actual - log_n + log_d,  # AS
        log_d - s[2] / s[0],  # H_prompt
        log_n - s[3] / s[1],  # H_context
        s[5] / s[1] + log_d - log_n,  # KL(q_context || q_prompt)
        -s[4] / s[0] + log_n - log_d,  # KL(q_prompt || q_context)
    ])
