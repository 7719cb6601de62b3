"""Convergence statistics and recommendation rules on hand-made cases (the study measures them on
real runs; these pin down the definitions)."""

from __future__ import annotations

import math

import pytest

from probattr_monitor.monitoring.decision import RULES, recommend
from probattr_monitor.monitoring.statistics import drift, membership, plateau_start, soft_noise
from probattr_monitor.probes.result import ProbeResult, TokenAttribution
from probattr_monitor.probes.settings import ProbeSettings


def token(position, score, entropy):
    return TokenAttribution(position=position, token_id=position, token=f"t{position}", attribution_score=score,
                            entropy_prompt=entropy, entropy_context=entropy, kl_context_prompt=0.0,
                            kl_prompt_context=0.0, band="near_zero", noise=False)


def result(scores_entropies, response_ids=(7, 8)):
    tokens = [token(i, s, h) for i, (s, h) in enumerate(scores_entropies)]
    return ProbeResult(prompt="p", response="r", prompt_token_ids=list(range(len(tokens))),
                       response_token_ids=list(response_ids), log_p_response=-1.0, tokens=tokens, summary={},
                       settings=ProbeSettings().to_dict())


def test_soft_noise_by_hand():
    # default band 0.2, threshold 2 -> floor 1 nat; tokens: (AS 0, H 3) -> 1 * 2; (AS 0.2, H 2) -> e^-0.5 * 1;
    # (AS 5, H 9) -> ~0; (AS 0, H 0.5) -> 0 (below the floor)
    r = result([(0.0, 3.0), (0.2, 2.0), (5.0, 9.0), (0.0, 0.5)])
    expected = (2.0 + math.exp(-0.5) + math.exp(-0.5 * 25 ** 2) * 8.0 + 0.0) / 4
    assert soft_noise([r]) == pytest.approx(expected)
    assert membership(0.0, 0.2) == 1.0 and membership(0.2, 0.2) == pytest.approx(math.exp(-0.5))
    assert soft_noise([r], ProbeSettings(entropy_threshold=6.0)) == pytest.approx(
        (0.0 + 0.0 + math.exp(-0.5 * 25 ** 2) * 6.0 + 0.0) / 4)


def test_drift_by_hand_and_only_on_the_same_ids():
    before = result([(0.0, 3.0), (1.0, 2.0)])
    after = result([(0.5, 2.0), (0.0, 2.5)])
    assert drift([before], [after]) == {"drift_attribution": pytest.approx(0.75), "drift_entropy": pytest.approx(0.75)}
    other_response = result([(0.5, 2.0), (0.0, 2.5)], response_ids=(9,))
    assert drift([before], [other_response]) == {"drift_attribution": None, "drift_entropy": None}


def rows(kind):
    """Hand-made rows: log P(r|p) rises then (forgetting) falls; eval loss keeps falling."""
    logp = {"settling": [-4.0, -3.3, -3.1, -3.2, -3.05, -3.15], "forgetting": [-4.0, -3.0, -2.9, -3.3, -3.8, -4.5]}
    return [{"step": 100 * (i + 1), "checkpoint": f"checkpoint-{100 * (i + 1)}", "status": "ok",
             "log_p_response": value, "eval_loss": 2.0 - 0.1 * i, "noise_tokens": [9, 5, 5, 5, 5, 5][i],
             "soft_noise": 0.5, "drift_attribution": [None, 0.2, 0.1, 0.04, 0.03, 0.02][i]}
            for i, value in enumerate(logp[kind])]


def test_rules_by_hand():
    settling, forgetting = rows("settling"), rows("forgetting")
    assert recommend(settling, "fewest_noise_tokens")["step"] == 200, "the count's floor: the earliest"
    assert recommend(settling, "highest_log_p_response")["step"] == 500
    assert recommend(settling, "latest_not_regressed")["step"] == 600, "-3.15 is within 0.25 of -3.05"
    assert recommend(forgetting, "latest_not_regressed")["step"] == 300, "-3.3 is 0.4 below the best"
    assert recommend(forgetting, "lowest_eval_loss")["step"] == 600, "its own loss keeps falling"
    assert recommend(forgetting, "lowest_eval_loss_not_regressed")["step"] == 300
    assert plateau_start(settling) == 400 and plateau_start(settling, threshold=0.01) is None


def test_the_default_rule_says_why_and_falls_back_without_fixed_responses():
    chosen = recommend(rows("settling"))
    assert set(chosen) == {"step", "checkpoint", "rule", "reason"} and chosen["reason"]
    generated = recommend(rows("settling"), fixed_responses=False)
    assert generated["rule"] != "latest_not_regressed" or "generated" in generated["reason"]
    assert "the responses are generated, not fixed" in generated["reason"]
    failed = [dict(r, status="failed") for r in rows("settling")]
    assert recommend(failed) is None
    with pytest.raises(ValueError, match="unknown rule"):
        recommend(rows("settling"), "magic")
    assert set(RULES) >= {"fewest_noise_tokens", "lowest_eval_loss", "latest_not_regressed"}
