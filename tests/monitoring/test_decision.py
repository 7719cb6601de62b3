"""Convergence statistics and recommendation rules on hand-made cases (the study measures them on
real runs; these pin down the definitions)."""

from __future__ import annotations

import math

import pytest

from probattr_monitor.errors import InputError
from probattr_monitor.monitoring.convergence import drift, membership, plateau_start, soft_noise
from probattr_monitor.monitoring.decision import RULES, recommend
from probattr_monitor.probes.types.result import ProbeResult, TokenAttribution
from probattr_monitor.probes.types.settings import ProbeSettings


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


def test_drift_compares_the_positions_both_runs_scored():
    """Two sampled runs of one prompt (the plan scores more or fewer positions at each checkpoint):
    the drift is over the positions both hold, matched by position, never token i against token i."""
    whole = result([(0.0, 3.0), (1.0, 2.0), (2.0, 1.0)])
    sampled = result([(0.0, 3.0), (1.0, 2.0), (2.0, 1.0)])
    sampled.tokens = [sampled.tokens[0], sampled.tokens[2]]  # positions 0 and 2
    moved = result([(0.5, 3.0), (1.0, 2.0), (2.0, 0.0)])
    moved.tokens = [moved.tokens[1], moved.tokens[2]]  # positions 1 and 2
    assert drift([sampled], [whole]) == {"drift_attribution": 0.0, "drift_entropy": 0.0}
    assert drift([sampled], [moved]) == {"drift_attribution": 0.0, "drift_entropy": pytest.approx(1.0)}


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
    with pytest.raises(InputError, match="unknown rule"):
        recommend(rows("settling"), "magic")
    assert set(RULES) >= {"fewest_noise_tokens", "lowest_eval_loss", "latest_not_regressed"}


# ---- the guarded rule: the target ranks, the guard vetoes with confidence ----

from probattr_monitor.monitoring.decision import guarded  # noqa: E402
from probattr_monitor.monitoring.regression import (  # noqa: E402
    compare,
    guard_comparisons,
    paired_interval,
    t_quantile_95,
)

# per-prompt offsets: prompts differ a lot in difficulty, which pairing removes
OFFSETS = [0.0, -2.0, -1.0, -3.0, -0.5, -1.5, -2.5, -0.8]
WOBBLE = [[0.05, -0.04, 0.02, -0.03, 0.04, -0.05, 0.01, 0.0], [-0.03, 0.05, -0.02, 0.04, -0.01, 0.02, -0.04, 0.03]]


def guard_rows(levels, eval_losses=None):
    """Rows whose prompt i has log P = OFFSETS[i] + level + a small wobble."""
    return [{"step": 100 * (k + 1), "checkpoint": f"checkpoint-{100 * (k + 1)}", "status": "ok",
             "eval_loss": None if eval_losses is None else eval_losses[k],
             "prompt_log_p": [o + level + WOBBLE[k % 2][i] for i, o in enumerate(OFFSETS)],
             "log_p_response": sum(OFFSETS) / len(OFFSETS) + level, "noise_tokens": 3, "invalid_prompts": 0}
            for k, level in enumerate(levels)]


def test_t_quantiles_and_the_paired_interval():
    assert t_quantile_95(1) == 12.706 and t_quantile_95(30) == 2.042
    assert abs(t_quantile_95(60) - 2.000) < 0.002 and abs(t_quantile_95(1000) - 1.962) < 0.002
    mean, low, high = paired_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 * 1.0 / math.sqrt(3))


def test_pairing_sees_a_small_consistent_loss_that_a_margin_on_the_mean_would_not():
    rows = guard_rows([0.0, -0.2])
    comparison = compare(rows[1], rows[0], tolerance=0.1)
    assert comparison.regressed and comparison.high < -0.1 and comparison.prompts == 8
    assert not compare(rows[1], rows[0], tolerance=0.3).regressed, "-0.2 is within a 0.3 tolerance"


def test_converging_wobble_never_regresses_and_the_target_ranks():
    rows = guard_rows([-1.0, -0.5, -0.3, -0.32, -0.28, -0.3], eval_losses=[2.0, 1.5, 1.3, 1.25, 1.26, 1.24])
    assert not any(c.regressed for c in guard_comparisons(rows))
    row, reason, extra = guarded(rows)
    assert row["step"] == 600 and "lowest eval loss" in reason and extra == {}
    no_target = [dict(r, eval_loss=None) for r in rows]
    assert guarded(no_target)[0]["step"] == 600 and "latest" in guarded(no_target)[1]


def test_forgetting_recommends_the_best_before_the_onset_and_says_target_and_guard_disagree():
    rows = guard_rows([-1.0, -0.2, 0.0, -0.6, -0.9, -1.5], eval_losses=[2.0, 1.8, 1.6, 1.4, 1.2, 1.0])
    comparisons = {c.step: c for c in guard_comparisons(rows)}
    assert [comparisons[s].regressed for s in (200, 300, 400, 500, 600)] == [False, False, True, True, True]
    chosen = recommend(rows, "guarded")
    assert chosen["step"] == 300 and "from step 400 on" in chosen["reason"]
    assert chosen["target_step"] == 600 and "Target and guard disagree" in chosen["reason"]


def test_a_recovered_spike_does_not_veto_what_came_after():
    rows = guard_rows([-1.0, -0.3, -1.2, -0.4, -0.2], eval_losses=[2.0, 1.5, 2.5, 1.4, 1.3])
    assert guarded(rows)[0]["step"] == 500


def test_nan_checkpoints_are_never_recommended_by_the_guard():
    rows = guard_rows([-1.0, -0.5, -0.3], eval_losses=[2.0, 1.5, 1.2])
    rows.append({"step": 400, "checkpoint": "checkpoint-400", "status": "ok", "eval_loss": None,
                 "prompt_log_p": [None] * 8, "log_p_response": None, "noise_tokens": None, "invalid_prompts": 8})
    assert recommend(rows, "guarded")["step"] == 300 and recommend(rows, "last")["step"] == 300


@pytest.mark.parametrize("lost", [float("nan"), float("-inf"), None], ids=["nan", "-inf", "missing"])
def test_a_guard_prompt_that_turned_invalid_is_a_regression_and_is_never_recommended(lost):
    """Invalid or -inf guard values were treated as missing: a checkpoint whose guard turned NaN or
    impossible was never vetoed and could be recommended (here it has the best eval loss)."""
    rows = guard_rows([0.0, 0.0, 0.0], eval_losses=[2.0, 1.9, 1.0])
    rows[2]["prompt_log_p"][3] = lost
    comparison = compare(rows[2], rows[0])
    assert comparison.regressed and comparison.lost == 1 and "invalid now" in comparison.describe()
    assert not compare(rows[1], rows[0]).regressed
    every = guard_rows([0.0, 0.0, 0.0], eval_losses=[2.0, 1.9, 1.0])
    every[2]["prompt_log_p"] = [lost] * len(OFFSETS)  # all of them: the row used to be skipped
    assert [c.step for c in guard_comparisons(every) if c.regressed] == [300]
    for case in (rows, every):
        assert guarded(case)[0]["step"] != 300


def test_without_eval_loss_or_a_confident_guard_the_reason_says_the_probes_could_not_decide():
    """Issue 34: three guard prompts that drop (-0.9 nats on average, spread too wide for 95%) and no
    eval loss: the latest checkpoint used to come back as "the latest checkpoint whose guard set has
    not regressed", which reads like a choice. Now the reason says nothing decided it, and why."""
    drops = [[0.0, 0.0, 0.0], [0.0, 0.1, -0.1], [-0.2, -0.9, -1.6]]
    rows = [{"step": 100 * (k + 1), "checkpoint": f"checkpoint-{100 * (k + 1)}", "status": "ok", "eval_loss": None,
             "prompt_log_p": [o + d for o, d in zip(OFFSETS[:3], drop)], "log_p_response": -1.0, "noise_tokens": 3,
             "invalid_prompts": 0} for k, drop in enumerate(drops)]
    assert not any(c.regressed for c in guard_comparisons(rows))
    chosen = recommend(rows)
    assert chosen["step"] == 300 and chosen["undecided"] is True
    assert chosen["reason"].startswith("the probes could not decide: there is no eval loss")
    assert "the largest drop it saw, at step 300" in chosen["reason"] and "3 guard prompts" in chosen["reason"]
    assert "for want of evidence, not the best one" in chosen["reason"]
    decided = recommend(guard_rows([0.0, 0.1, 0.2], eval_losses=[2.0, 1.9, 1.8]))
    assert "undecided" not in decided and "could not decide" not in decided["reason"]


def test_what_the_recommendation_sees_is_said_and_blind_without_eval_loss_or_a_large_guard():
    from probattr_monitor.monitoring.decision import SMALL_GUARD, what_the_recommendation_sees

    statement, blind = what_the_recommendation_sees(eval_loss=False, guard_prompts=0)
    assert blind and "no eval loss" in statement and "cannot tell forgetting from learning" in statement
    statement, blind = what_the_recommendation_sees(eval_loss=False, guard_prompts=7)
    assert blind and "rarely confirms a regression" in statement
    statement, blind = what_the_recommendation_sees(eval_loss=False, guard_prompts=SMALL_GUARD)
    assert not blind and f"a guard of {SMALL_GUARD} prompts" in statement and "vetoes" in statement
    statement, blind = what_the_recommendation_sees(eval_loss=True, guard_prompts=0)
    assert not blind and "an eval loss ranks the checkpoints" in statement and "no guard set" in statement
