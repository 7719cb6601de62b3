"""Batched greedy generation (``probes.inputs.batched``) against the one-at-a-time continuation."""

from __future__ import annotations

import torch

from probattr_monitor.probes.inputs.batched import greedy_continuations
from probattr_monitor.probes.inputs.tokens import greedy_continuation

from ..conftest import build_model


def entropy_along(model, row, response):
    """Summed next-token entropy along ``response`` after ``row``, from one plain forward."""
    logits = model(input_ids=torch.tensor([row + response])).logits[0, len(row) - 1:-1].double()
    log_probs = torch.log_softmax(logits, -1)
    return float(-(log_probs.exp() * log_probs).sum())


def test_batched_greedy_equals_one_at_a_time_with_its_entropies(arch):
    """Rows of different lengths (left pads), an EOS hit in some rows and not others, and a batch
    smaller than the rows: each row's ids and entropy are what it gets alone (float64, so a tie
    in the argmax cannot split them)."""
    model = build_model(arch, 64, peaked=True, seed=3).double().eval()
    generator = torch.Generator().manual_seed(0)
    rows = [[1, *torch.randint(2, 64, (length,), generator=generator).tolist()] for length in (3, 9, 1, 6, 12, 4, 2)]
    with torch.inference_mode():
        alone = [greedy_continuation(model, row, 8, set()) for row in rows]
    # a stop token row 0 generates and some other row does not: rows stop at different steps
    stop = {next(t for t in alone[0] if any(t not in ids for ids in alone))}
    with torch.inference_mode():
        alone = [greedy_continuation(model, row, 8, stop) for row in rows]
        batched = greedy_continuations(model, rows, 8, stop, pad_id=0, batch_size=3)
    assert [c.ids for c in batched] == alone
    assert len(alone[0]) < 8 and any(len(ids) == 8 for ids in alone)
    with torch.inference_mode():
        for row, ids, continuation in zip(rows, alone, batched):
            assert abs(continuation.entropy - entropy_along(model, row, ids)) < 1e-9


def test_probe_generates_the_responses_of_many_prompts_together_as_each_alone(arch, tokenizer):
    """``probe`` on several prompts without responses decodes them in one batch: the same response
    ids as each prompt probed alone, still reported as generated (float64: no argmax ties)."""
    from probattr_monitor import probe

    model = build_model(arch, len(tokenizer), peaked=True, seed=5).double()
    prompts = ["the cat sat", "a bird sang in the tree while", "What year"]
    rows_decoded = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_decoded.append(kwargs["input_ids"].shape[0])
        if "position_ids" in kwargs else None, with_kwargs=True)
    together = probe(model, tokenizer, prompts, max_new_tokens=6, progress=False, candidate_policy="exact")
    hook.remove()
    assert rows_decoded and set(rows_decoded) == {3}, "the three responses are decoded in one batch"
    alone = [probe(model, tokenizer, prompt, max_new_tokens=6, progress=False, candidate_policy="exact")
             for prompt in prompts]
    assert [r.response_token_ids for r in together] == [r.response_token_ids for r in alone]
    assert all(r.response_source == "generated" for r in together)
    for a, b in zip(together, alone):
        assert abs(a.log_p_response - b.log_p_response) < 1e-9
