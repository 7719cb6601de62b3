"""Exact marginalisation over the vocabulary with a shared prefix cache.

For a sequence ``x = [s] + p_1..p_n + r_1..r_m`` (length ``L = 1 + n + m``), prompt position ``k``
sits at sequence index ``j = 1 + k``. The engine produces, for every ``k`` and every candidate ``v``
of the model's output vocabulary, the three log-probability vectors of MATH.md:

    a[k, v] = log P(x_j = v | x_<j)                       from ONE forward pass of the original x
    b[k, v] = sum_{t=j+1..n}   log P(x_t | x_<t, x_j = v)  rest of the prompt
    c[k, v] = sum_{t=n+1..L-1} log P(x_t | x_<t, x_j = v)  the response

How the work is shared:
- The forward pass of the original sequence yields the prior at every position *and* the KV cache
  of every prefix: the prefix ``x_<j`` is the first ``j`` entries of that cache. It is computed once;
  position ``k + 1`` uses the same cache one token longer; nothing before ``j`` is recomputed.
- Per candidate batch only the suffix ``[v, x_{j+1}, .., x_{L-2}]`` (``S = L - 1 - j`` tokens) runs,
  on top of the prefix cache viewed (not copied) across the batch.
- The ``(B, S, V)`` logits of a batch are reduced at once to the ``(B, S)`` log-probabilities of the
  actual next tokens and dropped; ``B`` follows :func:`candidate_batch_size` (a memory budget).

Cost: ``sum_k |V| * (n - k + m - 1)`` suffix tokens, reported as ``token_forwards``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from transformers import DynamicCache

from .errors import NonFiniteLogitsError
from .settings import ProbeSettings


@dataclass
class CandidateScores:
    """The raw marginals of one probe (MATH.md's ``a, b, c``), float64, each ``(n, V)``.

    Attributes:
        prior: ``a``.
        rest_prompt: ``b``.
        response: ``c``.
        log_p_response: ``log P(r | s, p)`` from the original sequence.
        token_forwards: suffix tokens evaluated (the cost), excluding the original forward.
    """

    prior: torch.Tensor
    rest_prompt: torch.Tensor
    response: torch.Tensor
    log_p_response: float
    token_forwards: int


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def next_token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[..., targets]`` in float32 without materialising the log-softmax.

    Args:
        logits: ``(B, S, V)`` in any float dtype.
        targets: ``(S,)`` or ``(B, S)`` token ids.

    Returns:
        ``(B, S)`` float32 log-probabilities; raises :class:`NonFiniteLogitsError` if a logit row
        is not finite (a diverged model).
    """
    logits = logits.float()  # (B, S, V); no copy when the model already runs in float32
    index = targets.expand(logits.shape[:-1]).unsqueeze(-1)  # (B, S, 1)
    picked = logits.gather(-1, index).squeeze(-1)  # (B, S)
    normaliser = torch.logsumexp(logits, dim=-1)  # (B, S)
    if not (torch.isfinite(normaliser).all() and torch.isfinite(picked).all()):
        raise NonFiniteLogitsError("the model produced non-finite logits (a diverged checkpoint?)")
    return picked - normaliser


def kv_bytes_per_token(cache: DynamicCache) -> int:
    """Bytes of keys and values one token occupies in ``cache`` (all layers, batch of one)."""
    total = 0
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            total += (layer.keys.nbytes + layer.values.nbytes) // (layer.keys.shape[0] * layer.keys.shape[-2])
    return total


def candidate_batch_size(
    model: torch.nn.Module,
    vocab_size: int,
    prefix_len: int,
    suffix_len: int,
    kv_token_bytes: int,
    settings: ProbeSettings,
) -> int:
    """How many candidates one forward pass may take under ``settings.memory_budget_mb``.

    Memory model, per candidate, for a suffix of ``S`` tokens after a prefix of ``P``:
        logits and their float32 reduction   S * V * (e + 8)     (e = model element size)
        KV cache grown over the suffix       (P + S) * kv_token_bytes
        activations                           S * e * (8 * hidden + 2 * intermediate + heads * (P + S))
    The batch is the budget divided by that, at least 1, at most ``V`` and ``max_batch_size``.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0) or 0
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1) or 1
    element = next(model.parameters()).element_size()
    per_candidate = (
        suffix_len * vocab_size * (element + 8)
        + (prefix_len + suffix_len) * kv_token_bytes
        + suffix_len * element * (8 * hidden + 2 * intermediate + heads * (prefix_len + suffix_len))
    )
    batch = int(settings.memory_budget_mb * 2**20 // max(per_candidate, 1))
    if settings.max_batch_size is not None:
        batch = min(batch, settings.max_batch_size)
    return max(1, min(batch, vocab_size))


def prefix_cache(cache: DynamicCache, length: int, batch: int, config) -> DynamicCache:
    """A fresh cache holding the first ``length`` tokens of ``cache``, viewed ``batch`` times.

    The view costs no memory; the model's own update concatenates the suffix onto it.
    """
    data = []
    for layer in cache.layers:
        keys = layer.keys[:, :, :length].expand(batch, -1, -1, -1)  # (B, heads, P, d)
        values = layer.values[:, :, :length].expand(batch, -1, -1, -1)  # (B, heads, P, d)
        data.append((keys, values))
    return DynamicCache(ddp_cache_data=data, config=config)


@torch.inference_mode()
def score_exact(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    n_prompt: int,
    settings: ProbeSettings,
    on_position: Optional[Callable[[], None]] = None,
) -> CandidateScores:
    """Exact ``a, b, c`` for every prompt position of ``input_ids = [s] + prompt + response``.

    Args:
        model: a causal LM in eval mode (the caller handles modes and devices).
        input_ids: ``(L,)`` token ids on the model's device.
        n_prompt: ``n``, the number of prompt tokens (``1 <= n``, ``L - 1 - n >= 1``).
        settings: batch sizes follow ``settings.memory_budget_mb`` / ``max_batch_size``.
        on_position: called after each position (progress bars).

    Returns:
        :class:`CandidateScores`.

    Raises:
        NonFiniteLogitsError: a forward pass produced non-finite logits.
    """
    length = input_ids.shape[0]
    n = n_prompt
    output = model(input_ids=input_ids.unsqueeze(0), use_cache=True)
    logits = output.logits[0].float()  # (L, V)
    if not torch.isfinite(logits).all():
        raise NonFiniteLogitsError("the model produced non-finite logits (a diverged checkpoint?)")
    cache = output.past_key_values
    vocab_size = logits.shape[-1]
    log_probs = torch.log_softmax(logits, dim=-1)  # (L, V)
    prior = log_probs[:n].double()  # (n, V): row k predicts x_{k+1} = p_k
    targets = input_ids[1:]  # (L-1,)
    actual = log_probs[:-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1).double()  # (L-1,)
    log_p_response = float(actual[n:].sum())
    del output, logits, log_probs

    rest_prompt = torch.empty(n, vocab_size, dtype=torch.float64)
    response = torch.empty(n, vocab_size, dtype=torch.float64)
    kv_token_bytes = kv_bytes_per_token(cache)
    candidates = torch.arange(vocab_size, device=input_ids.device)
    token_forwards = 0
    for k in range(n):
        j = 1 + k
        suffix = input_ids[j : length - 1]  # (S,): x_j .. x_{L-2}
        suffix_targets = input_ids[j + 1 :]  # (S,): x_{j+1} .. x_{L-1}
        n_rest = n - j  # how many of the targets are prompt tokens
        batch = candidate_batch_size(model, vocab_size, j, suffix.shape[0], kv_token_bytes, settings)
        for start in range(0, vocab_size, batch):
            chunk = candidates[start : start + batch]  # (B,)
            batch_ids = suffix.expand(chunk.shape[0], -1).clone()  # (B, S)
            batch_ids[:, 0] = chunk
            past = prefix_cache(cache, j, chunk.shape[0], model.config)
            batch_logits = model(input_ids=batch_ids, past_key_values=past, use_cache=True).logits  # (B, S, V)
            token_log_probs = next_token_log_probs(batch_logits, suffix_targets)  # (B, S)
            del batch_logits, past
            rest_prompt[k, start : start + batch] = token_log_probs[:, :n_rest].double().sum(-1).cpu()
            response[k, start : start + batch] = token_log_probs[:, n_rest:].double().sum(-1).cpu()
            token_forwards += batch_ids.numel()
        if on_position is not None:
            on_position()
    return CandidateScores(
        prior=prior.cpu(),
        rest_prompt=rest_prompt,
        response=response,
        log_p_response=log_p_response,
        token_forwards=token_forwards,
    )
