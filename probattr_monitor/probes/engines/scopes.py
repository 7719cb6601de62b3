"""Jacobian Scopes: gradient-based, token-level attributions, on this project's sequence.

The sequence is ``x = [s] + p + r`` (``s`` the start token at index 0, prompt token ``p_k`` at index
``j = 1 + k``, response token ``r_t`` at index ``n + t``, ``t = 1..m``). Prompt token ``k`` is
perturbed by ``delta`` added to its input embedding ``e_j``. The target of response token ``r_t``
is the hidden state ``h_t`` the LM head reads at index ``n + t - 1`` (after the final norm; logits
``z_t = W h_t + b``, next-token distribution ``q_t = softmax(z_t)``), and
``J_{k,t} = d h_t / d delta`` (``d x d``) at ``delta = 0``. Per prompt token ``k`` and response
token ``t``:

- **semantic**: ``|| d z_t[r_t] / d delta ||_2``, how the token moves the logit of the response
  token (the unnormalised logit, as the Jacobian Scopes code scores it);
- **fisher**: ``tr(J_{k,t}^T F_t J_{k,t})`` with ``F_t = W^T (diag(q_t) - q_t q_t^T) W`` the Fisher
  information of the softmax head at ``h_t``: how the token moves the whole predictive
  distribution (to second order, ``KL(q_t || q_t(delta)) ~ delta^T J^T F J delta / 2``). The same
  number is ``E_{y ~ q_t} || d log q_t(y) / d delta ||^2``. Three ways to compute it: ``"full"``
  (every eigenvector of ``F_t``: exact, ``d`` backward passes per response token), ``"low_rank"``
  (the ``rank`` largest eigenpairs, ``sum_i s_i || J^T u_i ||^2``: a lower bound that rises to the
  exact value as ``rank`` grows) and ``"hutchinson"`` (``E_z (J z)^T F (J z)`` over Rademacher ``z``,
  ``J z`` by central finite differences of the hidden states: ``2 x samples`` forwards per prompt
  token, every response token at once; unbiased up to the difference error);
- **temperature**: ``|| d ||h_t||_2 / d delta ||_2``, how the token moves the model's certainty
  (``||h_t||`` scales the logits: an inverse effective temperature).

Aggregated over the response: the Fisher traces are summed over ``t`` (the sensitivity of the
whole response's distributions); semantic and temperature take the gradient of the summed target
(``sum_t z_t[r_t]``, ``sum_t ||h_t||``), one backward pass each, then its norm. Scores are float64
on the CPU; gradients flow to the inputs only (parameters are never touched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..types.settings import SCOPE_NAMES

SCOPES = SCOPE_NAMES
FISHER_METHODS = ("full", "low_rank", "hutchinson")
DEFAULT_RANK = 8
DEFAULT_SAMPLES = 16
FINITE_DIFFERENCE_STEP = 1e-2  # times the input embeddings' root mean square


@dataclass
class ScopeScores:
    """Per scope, ``(m, P)`` scores (response token x scored prompt position) and the ``(P,)``
    aggregate over the response (see the module docstring for each)."""

    per_response_token: dict
    aggregate: dict
    positions: list


def _forward(model, embeds: torch.Tensor):
    """``(hidden states the LM head reads, logits)`` of a batch of input embeddings."""
    head = model.get_output_embeddings()
    captured = {}

    def keep(_module, inputs):
        captured["hidden"] = inputs[0]

    handle = head.register_forward_pre_hook(keep)
    try:
        logits = model(inputs_embeds=embeds).logits
    finally:
        handle.remove()
    return captured["hidden"], logits


def head_fisher(model, logits_row: torch.Tensor) -> torch.Tensor:
    """``F = W^T (diag(q) - q q^T) W`` (``d x d``, float64) for ``q = softmax(logits_row)``."""
    weight = model.get_output_embeddings().weight.detach().double()  # (V, d)
    q = torch.softmax(logits_row.detach().double(), dim=-1)  # (V,)
    mean = q @ weight  # (d,)
    return (weight * q.unsqueeze(1)).T @ weight - torch.outer(mean, mean)


def jacobian_scopes(model, input_ids: torch.Tensor, n_prompt: int, positions: Optional[Sequence[int]] = None,
                    scopes: Sequence[str] = SCOPES, fisher_method: str = "low_rank", rank: int = DEFAULT_RANK,
                    samples: int = DEFAULT_SAMPLES, seed: int = 0) -> ScopeScores:
    """The scopes of ``scopes`` for the prompt ``positions`` (default: all ``n_prompt``) of
    ``input_ids = [s] + prompt + response`` (1-D); see the module docstring for the definitions."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}")
    if fisher_method not in FISHER_METHODS:
        raise ValueError(f"fisher_method should be one of {', '.join(FISHER_METHODS)}, got {fisher_method!r}")
    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    rows = [1 + k for k in positions]
    m = int(input_ids.shape[0]) - 1 - n_prompt
    if m < 1:
        raise ValueError("the sequence holds no response token to attribute")
    targets = input_ids[1 + n_prompt:]
    per: dict = {}
    aggregate: dict = {}
    embedding = model.get_input_embeddings()
    with torch.enable_grad():
        embeds = embedding(input_ids.unsqueeze(0)).detach().requires_grad_(True)  # (1, L, d)
        hidden, logits = _forward(model, embeds)
        hidden, logits = hidden[0, n_prompt:-1], logits[0, n_prompt:-1]  # (m, d), (m, V): rows predicting r

        def gradient_norms(output: torch.Tensor, retain: bool = True) -> torch.Tensor:
            (grad,) = torch.autograd.grad(output, embeds, retain_graph=retain)
            return grad[0, rows].double().norm(dim=-1).cpu()

        target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (m,)
        norms = hidden.to(torch.promote_types(hidden.dtype, torch.float32)).norm(dim=-1)  # (m,)
        if "semantic" in scopes:
            per["semantic"] = torch.stack([gradient_norms(target_logits[t]) for t in range(m)])
            aggregate["semantic"] = gradient_norms(target_logits.sum())
        if "temperature" in scopes:
            per["temperature"] = torch.stack([gradient_norms(norms[t]) for t in range(m)])
            aggregate["temperature"] = gradient_norms(norms.sum())
        if "fisher" in scopes and fisher_method != "hutchinson":
            fisher = torch.zeros(m, len(rows), dtype=torch.float64)
            for t in range(m):
                values, vectors = torch.linalg.eigh(head_fisher(model, logits[t]))
                keep = values.shape[0] if fisher_method == "full" else min(rank, values.shape[0])
                for i in range(values.shape[0] - 1, values.shape[0] - 1 - keep, -1):  # largest first
                    if values[i] <= 0:
                        break
                    (grad,) = torch.autograd.grad(hidden[t], embeds, grad_outputs=vectors[:, i].to(hidden.dtype),
                                                  retain_graph=True)
                    fisher[t] += values[i] * grad[0, rows].double().pow(2).sum(-1).cpu()
            per["fisher"] = fisher
    if "fisher" in scopes and fisher_method == "hutchinson":
        per["fisher"] = _hutchinson_fisher(model, embeds.detach(), n_prompt, rows, logits.detach(), samples, seed)
    if "fisher" in per:
        aggregate["fisher"] = per["fisher"].sum(0)
    return ScopeScores(per_response_token=per, aggregate=aggregate, positions=positions)


def _hutchinson_fisher(model, embeds: torch.Tensor, n_prompt: int, rows: Sequence[int], logits: torch.Tensor,
                       samples: int, seed: int) -> torch.Tensor:
    """``(m, P)`` Hutchinson estimates ``mean_z (J z)^T F (J z)``, ``J z`` by central differences
    with step ``FINITE_DIFFERENCE_STEP`` times the input embeddings' root mean square."""
    generator = torch.Generator().manual_seed(seed)
    d = embeds.shape[-1]
    fishers = [head_fisher(model, logits[t]) for t in range(logits.shape[0])]
    step = FINITE_DIFFERENCE_STEP * (float(embeds.detach().double().pow(2).mean().sqrt()) or 1.0)
    out = torch.zeros(logits.shape[0], len(rows), dtype=torch.float64)
    with torch.no_grad():
        for column, row in enumerate(rows):
            z = (torch.randint(0, 2, (samples, d), generator=generator) * 2 - 1).to(embeds.dtype).to(embeds.device)
            batch = embeds.repeat(2 * samples, 1, 1)
            batch[:samples, row] += step * z
            batch[samples:, row] -= step * z
            hidden, _ = _forward(model, batch)
            jz = (hidden[:samples, n_prompt:-1] - hidden[samples:, n_prompt:-1]).double().cpu() / (2 * step)
            for t, fisher in enumerate(fishers):
                out[t, column] = torch.einsum("sd,de,se->s", jz[:, t], fisher, jz[:, t]).mean()
    return out
