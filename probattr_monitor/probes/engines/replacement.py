"""Replacement entropy (the paper's section 4.3, "response stability"), per prompt position.

For a scored position ``k`` of ``x = [s] + p + r``:

1. the *top-p set* ``T_k``: the fewest candidates, by decreasing prior probability
   ``P(p_k = v | s, p_<k)`` (one forward pass of ``x``), whose cumulative probability reaches
   ``top_p`` (0.9);
2. for every ``v`` in ``T_k``, the prompt with ``v`` in place of ``p_k`` is continued for
   ``|r|`` tokens (stopping at EOS), greedily and by top-p sampling (temperature 1, the same
   ``top_p``); each candidate's sampler has its own generator, seeded from
   ``(seed, k, v)``, so a draw never depends on which other candidates share its batch;
3. with ``c_j`` the number of continuations equal to the ``j``-th distinct one,
   ``H_rep = -sum_j (c_j / |T_k|) log(c_j / |T_k|)`` (nats) is the replacement entropy, and
   ``c_r / |T_k|`` (continuations identical to ``r``) the original-response share.

All candidates of a position have the same length, so a batch needs no padding: one batched
decode per chunk of candidates, on the KV cache. Cost: ``|T_k|`` generations per position per
mode, each ``n + 1 + |r|`` tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ...errors import NonFiniteLogitsError
from .cache import returned_cache, with_cache
from .engine import model_device

DEFAULT_TOP_P = 0.9
GENERATION_BATCH = 64  # candidates decoded together


@dataclass
class ReplacementStats:
    """Per scored position (rows follow ``positions``).

    Attributes:
        set_size: ``|T_k|``.
        entropy_greedy, entropy_sampled: replacement entropy of greedy / sampled continuations.
        share_greedy, share_sampled: share of continuations identical to the original response.
        generations: continuations generated in all (both modes).
    """

    set_size: list
    entropy_greedy: list
    entropy_sampled: list
    share_greedy: list
    share_sampled: list
    generations: int


def top_p_set(log_probs: torch.Tensor, top_p: float, max_candidates: Optional[int] = None) -> torch.Tensor:
    """Ids of the fewest most probable candidates whose probability sums to at least ``top_p``
    (ties broken by id), at most ``max_candidates`` of them."""
    probs = log_probs.double().exp()
    order = torch.argsort(-probs, stable=True)
    cumulative = probs[order].cumsum(0)
    size = int((cumulative < top_p).sum()) + 1
    size = min(size, probs.shape[0], max_candidates or probs.shape[0])
    return order[:size]


def frequency_entropy(responses: Sequence[tuple]) -> float:
    """Entropy (nats) of the frequency distribution of identical items in ``responses``."""
    total = len(responses)
    return -sum(c / total * math.log(c / total) for c in Counter(responses).values()) if total else 0.0


def candidate_seed(seed: int, position: int, candidate: int) -> int:
    """The seed of one candidate's sampler: a function of ``(seed, position, candidate)`` only."""
    return ((seed * 1_000_003 + position) * 1_000_003 + candidate) % (2**63 - 1)


@torch.inference_mode()
def continue_batch(model, batch: torch.Tensor, max_new_tokens: int, stop_ids: set, top_p: Optional[float] = None,
                   seeds: Optional[Sequence[int]] = None) -> list[tuple]:
    """Continue every row of ``batch`` (``(B, L)`` ids, same length) for up to ``max_new_tokens``
    tokens, stopping a row at a stop id (kept). Greedy when ``top_p`` is ``None``; else top-p
    sampling, row ``i`` drawing one uniform per token from a generator seeded with ``seeds[i]``.

    Raises:
        NonFiniteLogitsError: non-finite logits.
    """
    rows = batch.shape[0]
    generators = None if top_p is None else [torch.Generator().manual_seed(int(s)) for s in (seeds or [])]
    tokens, past = batch, None
    out: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    for _ in range(max_new_tokens):
        output = model(input_ids=tokens, **with_cache(model, past), use_cache=True)
        logits = output.logits[:, -1].float()
        if not torch.isfinite(logits).all():
            raise NonFiniteLogitsError("the model produced non-finite logits while regenerating")
        if generators is None:
            chosen = logits.argmax(-1).cpu()
        else:
            chosen = _sample_top_p(logits, top_p or 1.0, generators, done)
        for i in range(rows):
            if not done[i]:
                out[i].append(int(chosen[i]))
                done[i] = int(chosen[i]) in stop_ids
        if all(done):
            break
        past = returned_cache(output)
        tokens = chosen.to(batch.device).unsqueeze(-1)
    return [tuple(row) for row in out]


def _sample_top_p(logits: torch.Tensor, top_p: float, generators: list, done: list) -> torch.Tensor:
    """One top-p draw per row (inverse CDF over the kept, renormalised candidates); finished rows
    draw nothing and get 0."""
    probs = torch.softmax(logits.double(), dim=-1).cpu()
    chosen = torch.zeros(probs.shape[0], dtype=torch.long)
    for i, generator in enumerate(generators):
        if done[i]:
            continue
        kept = top_p_set(probs[i].log(), top_p)
        weights = probs[i][kept]
        cumulative = (weights / weights.sum()).cumsum(0)
        u = float(torch.rand(1, generator=generator, dtype=torch.float64))
        chosen[i] = kept[min(int(torch.searchsorted(cumulative, torch.tensor([u], dtype=torch.float64))),
                             kept.shape[0] - 1)]
    return chosen


@torch.inference_mode()
def replacement_entropy(model, input_ids: torch.Tensor, n_prompt: int, positions: Sequence[int], stop_ids: set,
                        top_p: float = DEFAULT_TOP_P, seed: int = 0, max_candidates: Optional[int] = None,
                        batch_size: int = GENERATION_BATCH) -> ReplacementStats:
    """:class:`ReplacementStats` of ``input_ids = [s] + prompt + response`` (``(L,)``) at
    ``positions`` (see the module docstring for the definitions)."""
    device = model_device(model)
    input_ids = input_ids.to(device)
    response = tuple(int(i) for i in input_ids[1 + n_prompt:])
    prefix_end = 1 + n_prompt
    log_probs = torch.log_softmax(model(input_ids=input_ids.unsqueeze(0)).logits[0].float(), dim=-1)
    stats = ReplacementStats([], [], [], [], [], 0)
    for k in positions:
        ids = top_p_set(log_probs[k], top_p, max_candidates)
        greedy: list[tuple] = []
        sampled: list[tuple] = []
        for chunk in ids.split(batch_size):
            batch = input_ids[:prefix_end].repeat(chunk.shape[0], 1)
            batch[:, 1 + k] = chunk.to(device)
            greedy += continue_batch(model, batch, len(response), stop_ids)
            seeds = [candidate_seed(seed, k, int(v)) for v in chunk]
            sampled += continue_batch(model, batch, len(response), stop_ids, top_p=top_p, seeds=seeds)
        stats.set_size.append(int(ids.shape[0]))
        stats.entropy_greedy.append(frequency_entropy(greedy))
        stats.entropy_sampled.append(frequency_entropy(sampled))
        stats.share_greedy.append(sum(g == response for g in greedy) / len(greedy))
        stats.share_sampled.append(sum(g == response for g in sampled) / len(sampled))
        stats.generations += 2 * int(ids.shape[0])
    return stats
