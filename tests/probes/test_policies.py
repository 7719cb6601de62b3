"""Candidate policies are declared once (``probes.types.policies``): a policy registered there is a
valid setting, a CLI choice, scored by its own scorer, costed and capped by its declaration."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbeSettings, probe
from probattr_monitor.api.cost import run_cost
from probattr_monitor.api.inputs import prepare_inputs
from probattr_monitor.cli import build_parser, settings_from_args
from probattr_monitor.errors import ProbeInputError
from probattr_monitor.probes.types.policies import (
    POLICIES,
    CandidatePolicy,
    candidate_policies,
    policy_named,
    register_policy,
    unregister_policy,
)

from ..conftest import build_model


@pytest.fixture
def toy_policy():
    """A policy that scores as the budget one does and counts its calls."""
    calls = []

    def score(model, input_ids, n_prompt, settings, on_position=None, positions=None):
        calls.append(list(positions))
        return policy_named("budget").score(model, input_ids, n_prompt, settings, on_position=on_position,
                                            positions=positions)

    register_policy(CandidatePolicy("toy", score, capped=True, splits="prompts", revision=1))
    yield calls
    unregister_policy("toy")


def test_a_registered_policy_is_a_setting_a_cli_choice_and_scores_with_its_own_scorer(toy_policy, tokenizer):
    assert "toy" in candidate_policies() and ProbeSettings(candidate_policy="toy").candidate_policy == "toy"
    arguments = build_parser().parse_args(["attribute", "--model", "m", "--candidate-policy", "toy"])
    assert settings_from_args(arguments).candidate_policy == "toy"
    model = build_model("gpt2", len(tokenizer), peaked=True)
    result = probe(model, tokenizer, "the cat sat", responses=" on the", candidate_policy="toy",
                   candidate_budget=8, progress=False)
    assert toy_policy == [list(range(len(result.prompt_token_ids)))] and len(result.tokens) > 1
    settings = ProbeSettings(candidate_policy="toy", candidate_budget=8)
    cost = run_cost(prepare_inputs(model, tokenizer, ["the cat sat"], [" on the"], settings), len(tokenizer),
                    settings)
    assert cost["policy"] == "toy" and cost["candidates_per_position"] == 8  # capped: its budget, not |V|


def test_an_unknown_or_unregistered_policy_is_refused_and_the_built_ins_stay():
    with pytest.raises(ProbeInputError, match="candidate_policy should be one of 'auto', 'exact', 'budget'"):
        ProbeSettings(candidate_policy="toy")
    with pytest.raises(ProbeInputError, match="cannot be removed"):
        unregister_policy("exact")
    with pytest.raises(ProbeInputError, match="only the exact engine splits the vocabulary"):
        register_policy(CandidatePolicy("wide", lambda *a, **k: None, capped=False, splits="vocabulary"))
    assert set(POLICIES) == {"exact", "budget"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["attribute", "--model", "m", "--candidate-policy", "toy"])
