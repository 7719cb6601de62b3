"""No call this package makes into transformers or torch is deprecated: every code path that runs a
model (exact and budgeted scoring, generation, replacement entropy, the guard's likelihood, the
reference responses) runs with FutureWarning and DeprecationWarning raised as errors."""

from __future__ import annotations

import warnings

import pytest

from probattr_monitor import ProbeSettings, probe
from probattr_monitor.api.inputs import prepare_inputs
from probattr_monitor.monitoring.run import reference_responses
from probattr_monitor.probes.engines.likelihood import response_log_likelihoods

from ..conftest import build_model
from ..run_if import run_if


@pytest.mark.parametrize("arch_name", ["gpt2", "llama"])
def test_every_model_call_is_free_of_deprecation_warnings(tokenizer, arch_name):
    model = build_model(arch_name, len(tokenizer), peaked=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        probe(model, tokenizer, "the cat sat", max_new_tokens=3, progress=False)
        probe(model, tokenizer, "the cat sat", responses=" on", candidate_policy="budget", candidate_budget=30,
              replacement_entropy=True, replacement_max_candidates=3, progress=False)
        settings = ProbeSettings(max_new_tokens=3, progress=False)
        frozen = reference_responses(model, tokenizer, ["a bird"], settings)
        response_log_likelihoods(model, prepare_inputs(model, tokenizer, ["a bird"], frozen, settings))


@run_if(packages=("peft",))
def test_a_peft_model_is_called_without_deprecated_arguments(tokenizer):
    """``PeftModel.forward`` takes ``**kwargs`` for its base: the cache keyword is the base's."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_model("gpt2", len(tokenizer), peaked=True),
                           LoraConfig(r=2, target_modules=["c_attn"], task_type="CAUSAL_LM", fan_in_fan_out=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        probe(model.eval(), tokenizer, "the cat sat", max_new_tokens=3, progress=False)
