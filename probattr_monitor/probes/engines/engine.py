"""Exact marginalisation over the vocabulary with a shared prefix cache.

For a sequence ``x = [s] + p_1..p_n + r_1..r_m`` (length ``L = 1 + n + m``), prompt position ``k``
sits at sequence index ``j = 1 + k``. The engine produces, for every ``k`` and every candidate ``v``
of the model's output vocabulary, the three log-probability vectors of the maths guide:

    a[k, v] = log P(x_j = v | x_<j)                       from ONE forward pass of the original x
    b[k, v] = sum_{t=j+1..n}   log P(x_t | x_<t, x_j = v)  rest of the prompt
    c[k, v] = sum_{t=n+1..L-1} log P(x_t | x_<t, x_j = v)  the response

How the work is shared:
- The forward pass of the original sequence yields the prior at every position *and* the KV cache
  of every prefix: the prefix ``x_<j`` is the first ``j`` entries of that cache. It is computed once;
  position ``k + 1`` uses the same cache one token longer; nothing before ``j`` is recomputed.
- Per candidate batch only the suffix ``[v, x_{j+1}, .., x_{L-2}]`` (``S = L - 1 - j`` tokens) runs,
  on top of the prefix cache viewed (not copied) across the batch.
- Where the model's logits are its output head applied to the base model's last hidden state
  (checked numerically on the original forward, see :class:`SuffixScorer`), the head runs on row
  chunks of a few MB and each chunk is reduced at once to the log-probabilities of the actual
  next tokens while it is in cache: no ``(B, S, V)`` tensor ever exists. Otherwise the full
  ``(B, S, V)`` logits of one batch are reduced and dropped. ``B`` follows
  :func:`candidate_batch_size` (a memory budget).

Cost: ``sum_k |V| * (n - k + m - 1)`` suffix tokens, reported as ``token_forwards``.

Longer than 300 lines because the exact engine is one hot path (the shared prefix cache, the chunked
LM head, the batching by memory budget) whose parts share buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from transformers import DynamicCache

from ...errors import NonFiniteLogitsError, ProbeInputError
from ..types.settings import ProbeSettings
from .cache import returned_cache, with_cache


@dataclass
class CandidateScores:
    """The raw marginals of one probe (the maths guide's ``a, b, c``), float64, each ``(len(positions), V)``.

    Attributes:
        positions: the prompt positions scored, in row order (all ``n`` unless asked otherwise).
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
    positions: list = field(default_factory=list)


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def next_token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[..., targets]`` without materialising the log-softmax.

    Args:
        logits: ``(B, S, V)``; half types are upcast to float32, float32/float64 kept as they are.
        targets: ``(S,)`` or ``(B, S)`` token ids.

    Returns:
        ``(B, S)`` log-probabilities (float32 or float64); raises :class:`NonFiniteLogitsError` if
        a logit row is not finite (a diverged model).
    """
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # (B, S, V)
    index = targets.expand(logits.shape[:-1]).unsqueeze(-1)  # (B, S, 1)
    picked = logits.gather(-1, index).squeeze(-1)  # (B, S)
    normaliser = torch.logsumexp(logits, dim=-1)  # (B, S)
    if not (torch.isfinite(normaliser).all() and torch.isfinite(picked).all()):
        raise NonFiniteLogitsError("the model produced non-finite logits (a diverged checkpoint?)")
    return picked - normaliser


def kv_bytes_per_token(cache: DynamicCache) -> int:
    """Bytes of keys and values one token occupies in ``cache`` (all layers, batch of one)."""
    total = 0
    layers: list[Any] = list(cache.layers)  # attention layers: keys, values (B, heads, P, d)
    for layer in layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            total += (layer.keys.nbytes + layer.values.nbytes) // (layer.keys.shape[0] * layer.keys.shape[-2])
    return total


def candidate_batch_size(
    model: Any,
    vocab_size: int,
    prefix_len: int,
    suffix_len: int,
    kv_token_bytes: int,
    settings: ProbeSettings,
    full_logits: bool = True,
    limit: Optional[int] = None,
) -> int:
    """How many candidates one forward pass may take under ``settings.memory_budget_mb``.

    Memory model, per candidate, for a suffix of ``S`` tokens after a prefix of ``P``:
        KV cache grown over the suffix       (P + S) * kv_token_bytes
        activations                           S * e * (8 * hidden + 2 * intermediate + heads * (P + S))
        logits and their float32 reduction   S * V * (e + 8)   (only when ``full_logits``; the
                                             chunked head needs a fixed few MB instead)
    (``e`` = model element size.) The batch is the budget divided by that, at least 1, at most
    ``limit`` (default ``V``: one position's candidates) and ``max_batch_size``.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0) or 0
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1) or 1
    element = next(model.parameters()).element_size()
    per_candidate = (
        (suffix_len * vocab_size * (element + 8) if full_logits else 0)
        + (prefix_len + suffix_len) * kv_token_bytes
        + suffix_len * element * (8 * hidden + 2 * intermediate + heads * (prefix_len + suffix_len))
    )
    batch = settings.memory_budget_bytes(model_device(model)) // max(per_candidate, 1)
    if settings.max_batch_size is not None:
        batch = min(batch, settings.max_batch_size)
    return max(1, min(batch, vocab_size if limit is None else limit))


def prefix_cache(cache: DynamicCache, length: int, batch: int, config) -> DynamicCache:
    """A fresh cache holding the first ``length`` tokens of ``cache``, viewed ``batch`` times.

    The view costs no memory; the model's own update concatenates the suffix onto it.
    """
    data = []
    layers: list[Any] = list(cache.layers)  # attention layers: keys, values (B, heads, P, d)
    for layer in layers:
        keys = layer.keys[:, :, :length].expand(batch, -1, -1, -1)  # (B, heads, P, d)
        values = layer.values[:, :, :length].expand(batch, -1, -1, -1)  # (B, heads, P, d)
        data.append((keys, values))
    return DynamicCache(ddp_cache_data=data, config=config)


HEAD_CHUNK_BYTES = 4 * 2**20  # float32 logits per head chunk: small enough to stay in cache
# ...but never fewer rows than this: the head's matmul against a real vocabulary's (V, H) weight runs at
# 0.6x the rate with 21 rows (4 MB of SmolLM2's 49,152-wide logits) that it reaches with 128 (24 MB)
HEAD_CHUNK_MIN_ROWS = 128


class SuffixScorer:
    """Next-token log-probabilities of candidate suffixes run on top of a shared prefix cache.

    Built from ONE forward pass of the original sequence, which provides the logits of every
    position (the priors) and the KV cache of every prefix. :meth:`score` then runs only suffixes.

    Chunked head: when ``model.base_model`` followed by ``model.get_output_embeddings()``
    reproduces the model's logits on the original sequence (GPT-2, Llama and most decoders; not
    models that scale or soft-cap logits afterwards), suffixes run through the base model and
    the head is applied to ``HEAD_CHUNK_BYTES`` of rows at a time (at least ``HEAD_CHUNK_MIN_ROWS``),
    each chunk reduced at once.
    Otherwise the full model runs and its ``(B, S, V)`` logits are reduced per batch.
    """

    def __init__(self, model: Any, input_ids: torch.Tensor) -> None:
        self.model = model
        output = model(input_ids=input_ids.unsqueeze(0), use_cache=True)
        self.logits = output.logits[0]  # (L, V)
        if not torch.isfinite(self.logits).all():
            raise NonFiniteLogitsError("the model produced non-finite logits (a diverged checkpoint?)")
        self.cache = returned_cache(output)
        if self.cache is None:
            raise ProbeInputError(f"{type(model).__name__} returns no key-value cache (use_cache=True gives none): "
                                  "not a causal language model the engine can probe")
        self.vocab_size = self.logits.shape[-1]
        self.base: Any = getattr(model, "base_model", None)
        self.head = model.get_output_embeddings()
        self.chunked = self._head_reproduces_logits(input_ids)

    def _head_reproduces_logits(self, input_ids: torch.Tensor) -> bool:
        if self.base is None or self.base is self.model or self.head is None:
            return False
        try:
            hidden = self.base(input_ids=input_ids.unsqueeze(0), use_cache=False).last_hidden_state  # (1, L, H)
            logits = self.head(hidden)[0]  # (L, V)
        except (TypeError, ValueError, AttributeError, RuntimeError):
            return False
        if logits.shape != self.logits.shape:
            return False
        scale = float(self.logits.abs().max()) + 1.0
        return torch.allclose(logits.float(), self.logits.float(), rtol=0.0, atol=1e-5 * scale)

    def score(self, suffix_ids: torch.Tensor, past: DynamicCache, targets: torch.Tensor) -> torch.Tensor:
        """``log P(targets[t] | prefix, suffix_ids[:, :t+1])`` for a batch; shape ``(B, S)``."""
        if not self.chunked:
            output = self.model(input_ids=suffix_ids, **with_cache(self.model, past), use_cache=True)
            logits = output.logits  # (B, S, V)
            return next_token_log_probs(logits, targets)
        output = self.base(input_ids=suffix_ids, **with_cache(self.base, past), use_cache=True)
        hidden = output.last_hidden_state  # (B, S, H)
        batch, length = suffix_ids.shape
        rows = hidden.reshape(batch * length, -1)  # (B*S, H)
        row_targets = targets.expand(batch, length).reshape(-1)  # (B*S,)
        step = max(HEAD_CHUNK_MIN_ROWS, HEAD_CHUNK_BYTES // (4 * self.vocab_size))
        pieces = [
            next_token_log_probs(self.head(rows[i : i + step]), row_targets[i : i + step])  # (R, V) -> (R,)
            for i in range(0, rows.shape[0], step)
        ]
        return torch.cat(pieces).view(batch, length)


@torch.inference_mode()
def score_position(
    scorer: SuffixScorer,
    input_ids: torch.Tensor,
    n_prompt: int,
    k: int,
    candidates: torch.Tensor,
    settings: ProbeSettings,
    kv_token_bytes: Optional[int] = None,
    on_batch: Optional[Callable[[int], None]] = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``b[k, v]`` and ``c[k, v]`` for the candidate ids ``v`` at prompt position ``k``.

    The prefix ``x_<j`` (``j = 1 + k``) comes from the scorer's cache; only the suffix runs, in
    batches sized by :func:`candidate_batch_size`.

    Returns:
        ``(b, c, token_forwards)``: two float64 ``(C,)`` tensors on the CPU and the suffix tokens run.
    """
    model = scorer.model
    length, j = input_ids.shape[0], 1 + k
    suffix = input_ids[j : length - 1]  # (S,): x_j .. x_{L-2}
    suffix_targets = input_ids[j + 1 :]  # (S,): x_{j+1} .. x_{L-1}
    n_rest = n_prompt - j  # how many of the targets are prompt tokens
    kv_token_bytes = kv_bytes_per_token(scorer.cache) if kv_token_bytes is None else kv_token_bytes
    batch = candidate_batch_size(
        model, scorer.vocab_size, j, suffix.shape[0], kv_token_bytes, settings, full_logits=not scorer.chunked
    )
    candidates = candidates.to(input_ids.device)
    count = candidates.shape[0]
    rest_prompt = torch.empty(count, dtype=torch.float64)
    response = torch.empty(count, dtype=torch.float64)
    token_forwards = 0
    for start in range(0, count, batch):
        chunk = candidates[start : start + batch]  # (B,)
        batch_ids = suffix.expand(chunk.shape[0], -1).clone()  # (B, S)
        batch_ids[:, 0] = chunk
        past = prefix_cache(scorer.cache, j, chunk.shape[0], model.config)
        token_log_probs = scorer.score(batch_ids, past, suffix_targets)  # (B, S)
        del past
        rest_prompt[start : start + batch] = token_log_probs[:, :n_rest].double().sum(-1).cpu()
        response[start : start + batch] = token_log_probs[:, n_rest:].double().sum(-1).cpu()
        token_forwards += batch_ids.numel()
        if on_batch is not None:
            on_batch(batch_ids.numel())
    return rest_prompt, response, token_forwards


@torch.inference_mode()
def score_exact(
    model: Any,
    input_ids: torch.Tensor,
    n_prompt: int,
    settings: ProbeSettings,
    on_position: Optional[Callable[[], None]] = None,
    positions: Optional[Sequence[int]] = None,
    on_batch: Optional[Callable[[int], None]] = None,
    candidates: Optional[torch.Tensor] = None,
) -> CandidateScores:
    """Exact ``a, b, c`` for the prompt positions of ``input_ids = [s] + prompt + response``.

    Args:
        model: a causal LM in eval mode (the caller handles modes and devices).
        input_ids: ``(L,)`` token ids on the model's device.
        n_prompt: ``n``, the number of prompt tokens (``1 <= n``, ``L - 1 - n >= 1``).
        settings: batch sizes follow ``settings.memory_budget_mb`` / ``max_batch_size``.
        on_position: called after each position (progress bars).
        positions: the prompt positions to score (default: all ``0..n-1``).
        on_batch: called after each candidate batch with its token-forwards.
        candidates: the candidate ids to score, ``(C,)`` (default: the whole vocabulary); the
            columns of ``rest_prompt`` and ``response`` follow this order. ``prior`` stays ``(P, V)``.

    Returns:
        :class:`CandidateScores`.

    Raises:
        NonFiniteLogitsError: a forward pass produced non-finite logits.
    """
    n = n_prompt
    scorer = SuffixScorer(model, input_ids)
    vocab_size = scorer.vocab_size
    log_probs = torch.log_softmax(scorer.logits.float(), dim=-1)  # (L, V)
    positions = list(range(n)) if positions is None else [int(k) for k in positions]
    if any(not 0 <= k < n for k in positions):
        raise ValueError(f"positions should lie in 0..{n - 1}, got {positions}")
    prior = log_probs[positions].double()  # (P, V): row k predicts x_{k+1} = p_k
    targets = input_ids[1:]  # (L-1,)
    actual = log_probs[:-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1).double()  # (L-1,)
    log_p_response = float(actual[n:].sum())
    del log_probs

    if candidates is None:
        candidates = torch.arange(vocab_size, device=input_ids.device)
    candidates = candidates.to(input_ids.device)
    count = candidates.shape[0]
    rest_prompt = torch.empty(len(positions), count, dtype=torch.float64)
    response = torch.empty(len(positions), count, dtype=torch.float64)
    kv_token_bytes = kv_bytes_per_token(scorer.cache)
    token_forwards = 0
    for row, k in enumerate(positions):
        b, c, cost = score_position(scorer, input_ids, n, k, candidates, settings, kv_token_bytes, on_batch)
        rest_prompt[row], response[row] = b, c
        token_forwards += cost
        if on_position is not None:
            on_position()
    return CandidateScores(
        prior=prior.cpu(),
        rest_prompt=rest_prompt,
        response=response,
        log_p_response=log_p_response,
        token_forwards=token_forwards,
        positions=positions,
    )
