"""The engine against the naive float64 oracle (the maths guide's equations, whole sequence per candidate)."""

from __future__ import annotations

import copy

import pytest
import torch

from probattr_monitor import probe
from probattr_monitor.probes.maths.quantities import QUANTITIES, position_quantities

from ..conftest import build_model
from ..reference import score_naive

TOL = 1e-4
PROMPTS = ["the cat sat on the mat", "What year did", "a bird sang in the tree"]
RESPONSES = [" and the dog", " Albert", " while the sun rose"]


def oracle(model, result, top_k=5):
    """Quantities straight from the equations, on a float64 copy of ``model``."""
    model64 = copy.deepcopy(model).double()
    ids = torch.tensor([result.start_token_id] + result.prompt_token_ids + result.response_token_ids)
    scores = score_naive(model64, ids, len(result.prompt_token_ids))
    stats = position_quantities(scores.prior, scores.rest_prompt, scores.response,
                                torch.tensor(result.prompt_token_ids), top_k=top_k)
    return scores, stats


def assert_matches_oracle(model, result):
    scores, stats = oracle(model, result)
    assert result.valid
    assert abs(result.log_p_response - scores.log_p_response) < TOL
    assert len(result.tokens) == len(result.prompt_token_ids)
    for k, token in enumerate(result.tokens):
        assert token.position == k and token.token_id == result.prompt_token_ids[k]
        for name in QUANTITIES:
            expected = float(getattr(stats, name)[k])
            assert abs(getattr(token, name) - expected) < TOL, (name, k, getattr(token, name), expected)
        assert [c.prob for c in token.top_prompt] == pytest.approx(stats.top_prompt_probs[k].tolist(), abs=TOL)
        assert [c.prob for c in token.top_context] == pytest.approx(stats.top_context_probs[k].tolist(), abs=TOL)
        assert token.top_prompt[0].token_id == int(stats.top_prompt_ids[k, 0])
        assert token.top_context[0].token_id == int(stats.top_context_ids[k, 0])


@pytest.mark.parametrize("peaked", [True, False], ids=["peaked", "flat"])
def test_given_responses_match_oracle(arch, tokenizer, peaked):
    model = build_model(arch, len(tokenizer), peaked)
    results = probe(model, tokenizer, PROMPTS, responses=RESPONSES, progress=False, max_batch_size=64)
    assert [r.response for r in results] == RESPONSES
    for result in results:
        assert result.response_source == "given"
        assert_matches_oracle(model, result)


def test_peaked_models_are_peaked(arch, tokenizer):
    """The peaked fixture really gives sharp posteriors somewhere (else the oracle test is weak)."""
    model = build_model(arch, len(tokenizer), peaked=True)
    result = probe(model, tokenizer, PROMPTS[0], responses=RESPONSES[0], progress=False)
    assert min(t.entropy_context for t in result.tokens) < 0.5
    assert max(abs(t.attribution_score) for t in result.tokens) > 1.0


def test_generated_responses_match_oracle(arch, tokenizer):
    model = build_model(arch, len(tokenizer), peaked=True)
    results = probe(model, tokenizer, PROMPTS[:2], max_new_tokens=6, progress=False)
    model64 = copy.deepcopy(model).double()
    for result in results:
        assert result.response_source == "generated"
        assert 1 <= len(result.response_token_ids) <= 6
        # the greedy continuation, recomputed in full at each step in float64
        ids = [result.start_token_id] + result.prompt_token_ids
        expected = []
        for _ in range(len(result.response_token_ids)):
            next_id = int(model64(input_ids=torch.tensor([ids + expected])).logits[0, -1].argmax())
            expected.append(next_id)
            if next_id == tokenizer.eos_token_id:
                break
        assert result.response_token_ids == expected
        assert result.response == tokenizer.decode(expected)
        assert_matches_oracle(model, result)


def test_generation_stops_at_eos_and_keeps_it(tokenizer):
    """Greedy continuation stops at EOS, which belongs to the response."""
    model = build_model("gpt2", len(tokenizer), peaked=True)
    calls = []

    def eos_from_third_step(module, inputs, output):  # steps 1-2 free, then EOS wins
        if output.shape[1] == 1:  # a cached one-token generation step (the first step sees the prompt)
            calls.append(1)
        if len(calls) >= 2:
            output[..., tokenizer.eos_token_id] = output.max() + 100.0
        return output

    model.lm_head.register_forward_hook(eos_from_third_step)
    result = probe(model, tokenizer, "the cat", max_new_tokens=10, progress=False)
    assert len(result.response_token_ids) == 3
    assert result.response_token_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in result.response_token_ids[:2]


def test_batch_size_does_not_change_numbers(tokenizer):
    model = build_model("llama", len(tokenizer), peaked=True)
    one = probe(model, tokenizer, PROMPTS[0], responses=RESPONSES[0], progress=False, max_batch_size=1)
    many = probe(model, tokenizer, PROMPTS[0], responses=RESPONSES[0], progress=False, memory_budget_mb=512)
    for a, b in zip(one.tokens, many.tokens):
        assert a.attribution_score == pytest.approx(b.attribution_score, abs=1e-5)
        assert a.entropy_context == pytest.approx(b.entropy_context, abs=1e-5)


def test_only_suffixes_are_evaluated(tokenizer):
    """token_forwards = sum_k |V| (n + m - 1 - k): the prefix before k is never re-run."""
    model = build_model("gpt2", len(tokenizer), peaked=False)
    result = probe(model, tokenizer, PROMPTS[0], responses=RESPONSES[0], progress=False)
    n, m, vocab = len(result.prompt_token_ids), len(result.response_token_ids), model.config.vocab_size
    assert result.summary["token_forwards"] == sum(vocab * (n + m - 1 - k) for k in range(n))


def test_scoring_never_calls_generate(tokenizer):
    model = build_model("gpt2", len(tokenizer), peaked=False)

    def refuse(*args, **kwargs):
        raise AssertionError("generate must not be called")

    model.generate = refuse
    result = probe(model, tokenizer, "the cat", max_new_tokens=3, progress=False)
    assert result.valid and len(result.response_token_ids) >= 1


def test_model_mode_restored_and_no_gradients(tokenizer):
    model = build_model("llama", len(tokenizer), peaked=False).train()
    probe(model, tokenizer, "the cat", responses=" sat", progress=False)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    probe(model, tokenizer, "the cat", responses=" sat", progress=False)
    assert not model.training


def test_single_prompt_returns_result_list_returns_list(tokenizer):
    model = build_model("gpt2", len(tokenizer), peaked=False)
    single = probe(model, tokenizer, "the cat", responses=" sat", progress=False)
    listed = probe(model, tokenizer, ["the cat"], responses=[" sat"], progress=False)
    assert not isinstance(single, list) and isinstance(listed, list) and len(listed) == 1
    assert single.to_dict()["tokens"] == listed[0].to_dict()["tokens"]
