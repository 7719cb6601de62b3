"""The probes' share of training time (``max_overhead``): the plan, the meter, sampled positions
and the standard errors of sampled statistics; and the callback with a real Trainer."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from transformers import TrainerCallback

from probattr_monitor import ProbAttrCallback, ProbeSettings, probe
from probattr_monitor.api.positions import sample_positions
from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2
from probattr_monitor.errors import InputError
from probattr_monitor.monitoring import overhead
from probattr_monitor.monitoring.metrics import run_summary
from probattr_monitor.monitoring.overhead import (
    LIKELIHOOD_SHARE,
    MIN_GUARD_PAIRS,
    MIN_POSITIONS,
    OverheadMeter,
    check_share,
    guard_pairs_that_fit,
    plan_run,
    skips_run,
    smallest_sample,
)
from probattr_monitor.monitoring.sampling import VARIANCE_BOUND_Z, mean_stderr, student_t975

from ..callbacks.helpers import PROMPTS, make_trainer
from ..readers import read_tensorboard

SETTINGS = ProbeSettings(progress=False)


# ---- the plan: fewer positions, then nothing; never fewer candidates ----

def test_the_levers_in_order():
    budget = SETTINGS.budget_for(49152)  # 768
    whole = budget * 1000 / 1000.0  # seconds for every position at the budget, 1000 token-forwards/s
    assert plan_run(SETTINGS, whole, 1000.0, 49152, 100, 1000) == SETTINGS.replace(max_positions=None)
    half = plan_run(SETTINGS, whole / 2, 1000.0, 49152, 100, 1000)
    assert half.max_positions == 50 and half.candidate_budget is None  # fewer positions, same budget
    # under half the positions at the settings' candidates: no AS at this checkpoint, and the
    # candidates are never cut to make room (per-token intervals hold 87.5% at 256, 70.5% at 64)
    for share in (0.2, 0.49):
        assert plan_run(SETTINGS, whole * share, 1000.0, 49152, 100, 1000).max_positions == 0
    assert plan_run(SETTINGS, whole * 0.5, 1000.0, 49152, 100, 1000) == SETTINGS.replace(max_positions=50)
    assert smallest_sample(100) == 50 and smallest_sample(20) == MIN_POSITIONS
    assert plan_run(SETTINGS, 0.01, 1000.0, 49152, 100, 1000).max_positions == 0  # nothing fits: no AS
    assert plan_run(SETTINGS, -5.0, 1000.0, 49152, 100, 1000).max_positions == 0  # in debt
    exact = plan_run(SETTINGS, 54 * 10 * 50 / 1000.0, 1000.0, 54, 100, 1000)  # exact stays exact
    assert exact.max_positions == 50 and exact.candidate_budget is None
    capped = plan_run(SETTINGS.replace(max_positions=40), whole, 1000.0, 49152, 100, 1000)
    assert capped.max_positions == 40  # the user's own sample is an upper bound


def test_the_meter_keeps_the_share_over_the_run():
    meter = OverheadMeter(0.05, began=0.0)
    assert meter.likelihood_available(now=100.0) == meter.scoring_available(now=100.0) == pytest.approx(2.5)
    meter.probe_seconds, meter.scoring_seconds = 4.0, 3.0  # 4 s of probes (3 scoring AS) within 104 s
    assert meter.training_seconds(now=104.0) == pytest.approx(100.0)
    assert meter.likelihood_available(now=104.0) == pytest.approx(1.5)
    assert meter.scoring_available(now=104.0) == pytest.approx(-0.5)  # overran: repaid by later runs
    assert meter.overhead(now=104.0) == pytest.approx(0.04)
    with pytest.raises(InputError, match="max_overhead should be a share"):
        check_share("max_overhead", 5)
    for bad in (0, -0.1, True, "5%", math.nan):
        with pytest.raises(ValueError):
            check_share("max_overhead", bad)


def test_the_guard_fits_half_the_share_and_never_shrinks():
    assert guard_pairs_that_fit(10.0, 0.1, 0, 200) == 50  # half of 10 s at 0.1 s a pair
    assert guard_pairs_that_fit(0.0, 0.1, 0, 200) == MIN_GUARD_PAIRS
    assert guard_pairs_that_fit(-3.0, 0.1, 60, 200) == 60  # in debt: the pairs scored before stay
    assert guard_pairs_that_fit(1000.0, 0.1, 0, 200) == 200 and guard_pairs_that_fit(1.0, 0.1, 0, 5) == 5


# ---- sampled positions and their errors ----

def test_sampled_positions_are_seeded_nested_and_keep_order():
    tok = byte_bpe_tokenizer(["the cat sat on the mat"], vocab_size=270)
    from probattr_monitor.api.inputs import prepare_inputs

    encoded = prepare_inputs(tiny_gpt2(len(tok)), tok, ["the cat sat on the mat", "a mat on the cat"], None,
                             SETTINGS)
    small, large = sample_positions(encoded, 3, 7), sample_positions(encoded, 6, 7)
    pooled = lambda sample: {(i, k) for i, (p, _) in enumerate(sample) for k in p.positions}  # noqa: E731
    assert len(pooled(small)) == 3 and pooled(small) <= pooled(large)
    assert pooled(sample_positions(encoded, 3, 7)) == pooled(small) != pooled(sample_positions(encoded, 3, 8))
    assert all(p.positions == sorted(p.positions) for p, _ in large)
    assert sample_positions(encoded, 100, 7) is encoded and sample_positions(encoded, None, 7) is encoded


def test_the_sampling_error_formula():
    values = [0.0, 1.0, 2.0, 3.0]
    # (1 - 4/10) * S^2 / 4, plus (4/10) * mean(0.5^2) / 4, with S^2 = s^2 + z sqrt((m4 - s^4 (n-3)/(n-1)) / n),
    # s^2 = 5/3 and m4 = (2 * 1.5^4 + 2 * 0.5^4) / 4
    bound = 5 / 3 + VARIANCE_BOUND_Z * math.sqrt((2.5625 - (5 / 3) ** 2 / 3) / 4)
    expected = math.sqrt(0.6 * bound / 4 + 0.4 * 0.25 / 4) * student_t975(3) / 1.959963984540054
    assert mean_stderr(values, [0.5] * 4, 10) == pytest.approx(expected)
    plain = math.sqrt(0.6 * (5 / 3) / 4 + 0.4 * 0.25 / 4) * student_t975(3) / 1.959963984540054
    assert mean_stderr(values, [0.5] * 4, 10, bound_z=0.0) == pytest.approx(plain)
    assert mean_stderr(values, [0.5] * 4, 4) == pytest.approx(math.sqrt(4 * 0.25) / 4)  # all scored: estimator only
    assert mean_stderr([1.0], [0.0], 10) is None  # one sampled token: the spread is unknown, not 0
    assert mean_stderr([], [], 10) is None


def test_sampled_intervals_cover_the_mean_of_every_position():
    """Seeded replays of the smallest sample a plan takes (MIN_POSITIONS of 200) from three skewed
    populations (exponential, like AS's tail): the 95% interval holds the population mean in >= 90%
    of them."""
    covered = 0
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        population = torch.empty(200).exponential_(generator=generator).tolist()
        truth = sum(population) / len(population)
        for _ in range(1000):
            sample = [population[i] for i in torch.randperm(200, generator=generator)[:MIN_POSITIONS].tolist()]
            error = mean_stderr(sample, [0.0] * MIN_POSITIONS, 200)
            covered += abs(sum(sample) / MIN_POSITIONS - truth) <= 1.96 * error
    assert covered / 3000 >= 0.9
    assert student_t975(31) == pytest.approx(2.0395, abs=1e-3) and student_t975(1000) == pytest.approx(1.962, abs=1e-3)


def test_sampled_intervals_hold_on_real_heavy_tailed_positions():
    """Every position of three of the paper's prompts on SmolLM2 (AS and KL at 64 candidates, stored
    by ``benchmarks/bench_sampled_intervals.py``; the other four chose the rule), sampled as the
    plan's smallest sample (half of them) 2000 times: the 95% intervals hold the all-position mean
    in >= 90% (91.7% AS, 94.3% KL); with the plain sample variance AS's held 85.0% (5 of the 285
    positions carry 45% of the summed AS, and a sample missing them claims a narrow interval)."""
    import json
    import random
    from pathlib import Path

    rows = json.loads((Path(__file__).parents[2] / "benchmarks" / "data" / "sampled_positions_smollm2.json")
                      .read_text())
    rows = [row for row in rows if row["prompt"] in (1, 3, 5)]  # the reporting part of the study
    total = len(rows)
    count = smallest_sample(total)

    def covered(field: str, bound_z: float) -> float:
        values, errors = [row[field] for row in rows], [row[f"{field}_stderr"] for row in rows]
        truth, rng, hits = sum(values) / total, random.Random(0), 0
        for _ in range(2000):
            picked = rng.sample(range(total), count)
            error = mean_stderr([values[i] for i in picked], [errors[i] for i in picked], total, bound_z=bound_z)
            hits += abs(sum(values[i] for i in picked) / count - truth) <= 1.96 * error
        return hits / 2000

    assert covered("attribution_score", VARIANCE_BOUND_Z) >= 0.9
    assert covered("kl_context_prompt", VARIANCE_BOUND_Z) >= 0.9
    assert covered("attribution_score", 0.0) < 0.88  # what the bound fixes


def test_a_sampled_run_scores_the_same_numbers_at_the_positions_it_keeps():
    """A record never claims what it did not compute: each sampled token is the full run's token."""
    tok = byte_bpe_tokenizer(["the cat sat on the mat and the dog ran"], vocab_size=280)
    model = tiny_gpt2(len(tok), seed=1).eval()
    prompts = ["the cat sat on the mat and", "the dog ran on the mat"]
    full = probe(model, tok, prompts, settings=SETTINGS)
    part = probe(model, tok, prompts, settings=SETTINGS.replace(max_positions=5))
    by_position = {(i, t.position): t for i, r in enumerate(full) for t in r.tokens}
    assert sum(len(r.tokens) for r in part) == 5
    for i, result in enumerate(part):
        assert result.summary["positions_total"] == len(full[i].tokens)
        assert result.log_p_response == pytest.approx(full[i].log_p_response, abs=1e-5)
        for token in result.tokens:
            assert token.attribution_score == pytest.approx(by_position[(i, token.position)].attribution_score,
                                                            abs=1e-6)
    summary = run_summary(part)
    assert summary["positions_scored"] == 5 and summary["positions_total"] == sum(len(r.tokens) for r in full)
    assert summary["mean_attribution_stderr"] > 0 and summary["noise_tokens_stderr"] is not None
    assert isinstance(summary["noise_tokens"], float)  # the estimated count over every position
    whole = run_summary(full)
    assert whole["mean_attribution_stderr"] == 0.0 and whole["noise_tokens"] == int(whole["noise_tokens"])
    nothing = probe(model, tok, prompts, settings=SETTINGS.replace(max_positions=0))
    assert [r.tokens for r in nothing] == [[], []] and all(r.summary["candidate_policy"] == "none" for r in nothing)
    assert [r.log_p_response for r in nothing] == pytest.approx([r.log_p_response for r in full], abs=1e-5)
    assert run_summary(nothing)["mean_attribution"] is None and run_summary(nothing)["log_p_response"] is not None


# ---- the callback, with a real Trainer ----

class Slow(TrainerCallback):
    """Training that takes ``seconds`` a step (a real model's step, on a tiny one)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


def records(folder):
    return {int(p.parent.name.split("-")[1]): json.loads(p.read_text(encoding="utf-8"))
            for p in folder.glob("checkpoint-*/probattr.json")}


def test_a_share_too_small_runs_the_first_probe_cheaply_and_skips_the_rest(tmp_path, caplog, monkeypatch):
    """A share nothing fits in: the first run (it freezes the responses) holds log P(r | p) and no
    token, says so in its settings and positions, logs probattr/overhead, and scores the guard all
    the same; the next is skipped, said once, and its checkpoint has no record. (This tiny model's
    runs take far less than the second below which nothing is skipped: the floor is lowered.)"""
    monkeypatch.setattr(overhead, "NEVER_SKIP_SECONDS", 0.0)
    guard = [(f"the dog sat {word}", " in the sun") for word in "abcdefghijkl"]  # 12 pairs
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", logging_dir=str(tmp_path / "tb"),
                                guard=guard, settings=ProbeSettings(max_new_tokens=3), max_overhead=1e-9)
    with caplog.at_level("WARNING", logger="probattr_monitor"):
        make_trainer(tmp_path / "out", [callback], max_steps=6, save_steps=2).train()
    [(step, record)] = records(tmp_path / "out").items()
    assert step == 2 and record["settings"]["max_positions"] == 0
    assert all(r["tokens"] == [] and r["summary"]["positions_scored"] == 0 for r in record["results"])
    assert record["summary"]["log_p_response"] is not None and record["summary"]["mean_attribution"] is None
    assert len(record["guard_log_p"]) == MIN_GUARD_PAIRS  # the first 8 of 12: what the share allows, at least
    assert record["provenance"]["guard"] == f"given: 12 pairs; the first {MIN_GUARD_PAIRS} scored (max_overhead)"
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4",
                                                                                 "checkpoint-6"]
    scalars = read_tensorboard(tmp_path / "tb")["scalars"]
    assert set(scalars["probattr/overhead"]) == {2} and "probattr/mean_attribution" not in scalars
    assert callback.meter is not None and callback.meter.rate is not None and len(callback.meter.runs) == 1
    assert callback.meter.skipped == [4, 6]
    skipped = [r.getMessage() for r in caplog.records if "is skipped" in r.getMessage()]
    assert len(skipped) == 1 and "step 4" in skipped[0] and "probattr-monitor sweep" in skipped[0]


def test_an_evaluation_that_reads_the_probes_metric_is_never_skipped(tmp_path):
    """metric_for_best_model on a probe statistic: every evaluation needs its run, whatever the share."""
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=1e-9, guard=None)
    trainer = make_trainer(tmp_path / "out", [callback], max_steps=6, save_steps=2, evaluate=True,
                           metric_for_best_model="probattr_log_p_response", greater_is_better=True,
                           load_best_model_at_end=True)
    trainer.train()
    assert callback.meter is not None and callback.meter.skipped == [] and len(callback.meter.runs) == 3
    assert sorted(records(tmp_path / "out")) == [2, 4, 6]


def test_a_run_is_skipped_only_when_neither_account_pays():
    meter = OverheadMeter(0.05, began=time.perf_counter() - 100.0, probe_seconds=2.0, fixed_seconds=1.0)
    assert overhead.NEVER_SKIP_SECONDS <= 1.0
    nothing, some = SETTINGS.replace(max_positions=0), SETTINGS.replace(max_positions=40)
    assert meter.likelihood_available() == pytest.approx(0.5 * 0.05 * 98.0 - 2.0, abs=0.05)  # 0.45 s: < 1 s
    assert skips_run(meter, nothing, first=False, needed=False)
    assert not skips_run(meter, some, first=False, needed=False)  # the attribution account pays: it runs
    assert not skips_run(meter, nothing, first=True, needed=False)  # the first run freezes the responses
    assert not skips_run(meter, nothing, first=False, needed=True)  # an evaluation reads its metric
    meter.fixed_seconds = 0.2
    assert not skips_run(meter, nothing, first=False, needed=False)  # the cheap part fits
    meter.probe_seconds, meter.fixed_seconds = 20.0, 0.9
    assert meter.likelihood_available() < 0.9  # over the account, but under a second: never skipped
    assert not skips_run(meter, nothing, first=False, needed=False)


def test_the_two_accounts_split_the_share():
    meter = OverheadMeter(0.1, began=0.0)
    assert meter.likelihood_available(now=100.0) == pytest.approx(LIKELIHOOD_SHARE * 10.0)
    assert meter.scoring_available(now=100.0) == pytest.approx((1 - LIKELIHOOD_SHARE) * 10.0)
    meter.record(2, 4.0, [])  # a run that scored no attribution: all of it is the cheap part
    assert meter.scoring_seconds == 0.0 and meter.fixed_seconds == 4.0
    assert meter.likelihood_available(now=104.0) == pytest.approx(LIKELIHOOD_SHARE * 10.0 - 4.0)
    assert meter.scoring_available(now=104.0) == pytest.approx((1 - LIKELIHOOD_SHARE) * 10.0)
    meter.count_outside_run(0.5)
    assert meter.probe_seconds == 4.5 and meter.fixed_seconds == 4.5


def test_a_share_with_room_probes_every_position(tmp_path):
    """Five seconds of training a step at max_overhead=1.0 leave room for the whole tiny run (~0.3 s
    uncontended; no base guard, whose freezing and timing at train begin would count against the
    share, so the margin holds on a loaded machine too)."""
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=1.0, guard=None)
    make_trainer(tmp_path / "out", [Slow(5.0), callback], max_steps=2, save_steps=2).train()
    [record] = records(tmp_path / "out").values()
    assert record["settings"]["max_positions"] is None
    summary = record["summary"]
    assert summary["positions_scored"] == summary["positions_total"] > 0
    assert summary["mean_attribution_stderr"] == 0.0  # exact, every position: no error to report
    assert callback.meter.overhead() < 1.0


def test_a_run_over_twice_the_share_is_said_once_with_its_floor_and_what_lowers_it():
    import time

    from probattr_monitor.monitoring.overhead import OverheadMeter, over_share

    over = OverheadMeter(0.05, began=time.perf_counter() - 100.0, probe_seconds=30.0, fixed_seconds=9.5)
    said = over_share(over, guard_pairs=8, prompts=7)
    assert said is not None and "over the 5% asked" in said and "7 prompts and 8 guard pairs" in said
    assert "9.5 s" in said and "save_steps" in said
    within = OverheadMeter(0.05, began=time.perf_counter() - 100.0, probe_seconds=5.0, fixed_seconds=4.0)
    assert over_share(within, guard_pairs=8, prompts=7) is None  # 5.3%: under twice the share
