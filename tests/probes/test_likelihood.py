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
