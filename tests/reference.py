"""The naive reference: the maths guide's equations with the whole sequence recomputed for every candidate.

No cache, no sharing: for each position k and each candidate v, the sequence with v at k is run
in full and ``a, b, c`` are read off its log-probabilities. It is the oracle of the tests (run on a
float64 copy of the model) and the baseline of ``benchmarks/bench_exact.py``. Never used to probe.
"""

from __future__ import annotations

import torch

from probattr_monitor.probes.engines.engine import CandidateScores, next_token_log_probs


@torch.inference_mode()
def score_naive(
    model: torch.nn.Module, input_ids: torch.Tensor, n_prompt: int, batch_size: int = 256
) -> CandidateScores:
    """``a, b, c`` for ``input_ids = [s] + prompt + response`` by full recomputation.

    For position k (sequence index j = 1 + k) and candidate v, with ``x' = x`` except ``x'_j = v``:
        a[k, v] = log P(x'_j | x'_<j),  b[k, v] = sum_{t=j+1..n} log P(x'_t | x'_<t),
        c[k, v] = sum_{t=n+1..L-1} log P(x'_t | x'_<t).
    Arithmetic in the model's dtype (float64 for the oracle; half types in float32), sums in float64.
    """
    n = n_prompt
    vocab_size = model(input_ids=input_ids[:1].unsqueeze(0)).logits.shape[-1]
    prior = torch.empty(n, vocab_size, dtype=torch.float64)
    rest_prompt = torch.empty(n, vocab_size, dtype=torch.float64)
    response = torch.empty(n, vocab_size, dtype=torch.float64)
    token_forwards = 0
    for k in range(n):
        j = 1 + k
        for start in range(0, vocab_size, batch_size):
            candidates = torch.arange(start, min(start + batch_size, vocab_size), device=input_ids.device)
            sequences = input_ids.expand(candidates.shape[0], -1).clone()  # (B, L)
            sequences[:, j] = candidates
            logits = model(input_ids=sequences).logits[:, :-1]  # (B, L-1, V)
            per_token = next_token_log_probs(logits, sequences[:, 1:]).double()  # (B, L-1)
            # per_token[:, t] = log P(x'_{t+1} | x'_<=t)
            prior[k, start : start + candidates.shape[0]] = per_token[:, j - 1].cpu()
            rest_prompt[k, start : start + candidates.shape[0]] = per_token[:, j:n].sum(-1).cpu()
            response[k, start : start + candidates.shape[0]] = per_token[:, n:].sum(-1).cpu()
            token_forwards += sequences.numel()
    original = torch.log_softmax(model(input_ids=input_ids.unsqueeze(0)).logits[0].double(), dim=-1)
    actual = original[:-1].gather(-1, input_ids[1:].unsqueeze(-1)).squeeze(-1)
    return CandidateScores(
        prior=prior,
        rest_prompt=rest_prompt,
        response=response,
        log_p_response=float(actual[n:].sum()),
        token_forwards=token_forwards,
        positions=list(range(n)),
    )
