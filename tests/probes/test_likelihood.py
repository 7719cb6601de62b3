"""The guard set's statistic: ``log P(r | p)`` of fixed responses, one forward per prompt, equal to
what the probes report for the same prompt and response."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbeSettings, probe
from probattr_monitor.api.inputs import prepare_inputs
from probattr_monitor.probes.engines.likelihood import response_log_likelihoods

from ..conftest import build_model

PAIRS = [("the cat sat on", " the mat"), ("a bird sang", " in the tree"), ("What year", " did Albert")]


@pytest.mark.parametrize("arch_name", ["gpt2", "llama"])
def test_it_equals_the_probes_log_p_response(tokenizer, arch_name):
    model = build_model(arch_name, len(tokenizer), peaked=True)
    prompts, responses = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    settings = ProbeSettings(progress=False)
    values = response_log_likelihoods(model, prepare_inputs(model, tokenizer, prompts, responses, settings))
    probed = probe(model, tokenizer, prompts, responses=responses, settings=settings)
    assert values == pytest.approx([r.log_p_response for r in probed], abs=1e-5)
    assert model.training is False


def test_a_diverged_model_gives_none(tokenizer):
    import torch

    model = build_model("gpt2", len(tokenizer), peaked=False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    encoded = prepare_inputs(model, tokenizer, ["the cat"], [" sat"], ProbeSettings())
    assert response_log_likelihoods(model, encoded) == [None]


def test_the_guard_is_scored_in_eval_mode_and_training_mode_comes_back(tokenizer):
    from probattr_monitor.monitoring.run import guard_likelihoods

    model = build_model("gpt2", len(tokenizer), peaked=True)  # GPT-2's dropout: train mode would differ
    settings = ProbeSettings(progress=False)
    expected = guard_likelihoods(model, tokenizer, PAIRS, settings)
    model.train()
    assert guard_likelihoods(model, tokenizer, PAIRS, settings) == pytest.approx(expected, abs=1e-6)
    assert model.training is True


@pytest.mark.parametrize("arch_name", ["gpt2", "llama"])
def test_batched_pairs_equal_one_forward_each(tokenizer, arch_name):
    """Pairs of different lengths share a left-padded forward: in float64 each equals its own
    forward (pads masked, positions from each row's first token, the logits kept are the right ones)."""
    import torch

    model = build_model(arch_name, len(tokenizer), peaked=True).to(torch.float64).eval()
    pairs = PAIRS + [("the", " cat sat on the mat and the bird sang in the tree"), ("a bird sang in the tree", " a")]
    encoded = prepare_inputs(model, tokenizer, [p for p, _ in pairs], [r for _, r in pairs], ProbeSettings())
    assert len({len(p.prompt_ids) + len(r) for p, r in encoded}) > 2  # the padding is exercised
    alone = [value for pair in encoded for value in response_log_likelihoods(model, [pair])]
    together = response_log_likelihoods(model, encoded, batch_size=len(encoded))
    assert together == pytest.approx(alone, rel=0, abs=1e-9)
    assert together != pytest.approx([together[0]] * len(together))  # distinct values: rows were not mixed up


def test_a_model_that_takes_no_positions_is_scored_one_pair_at_a_time(tokenizer):
    import torch

    class IdsOnly(torch.nn.Module):  # a causal LM whose forward takes input_ids alone
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids):
            return self.inner(input_ids=input_ids)

    inner = build_model("gpt2", len(tokenizer), peaked=True).eval()
    encoded = prepare_inputs(inner, tokenizer, [p for p, _ in PAIRS], [r for _, r in PAIRS], ProbeSettings())
    assert response_log_likelihoods(IdsOnly(inner), encoded) == pytest.approx(
        response_log_likelihoods(inner, encoded, batch_size=1), abs=1e-6)
