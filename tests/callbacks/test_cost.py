"""Cost you can see and bound: the callback logs what a probe run costs, long runs log progress,
and ``max_token_forwards`` caps the budget policy."""

from __future__ import annotations

import logging
import re

import pytest

import probattr_monitor.api.dispatch as dispatch
from probattr_monitor import ProbAttrCallback, ProbeSettings, probe
from probattr_monitor.demo.tiny_models import tiny_gpt2

from .helpers import PROMPTS, make_trainer, tokenizer


def test_cost_is_logged_at_train_begin_and_time_after_the_first_run(tmp_path, caplog):
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_steps=4, save_steps=2, log_level="info")
    with caplog.at_level(logging.INFO, logger="probattr_monitor"):
        trainer.train()
    lines = [r.getMessage() for r in caplog.records if r.name == "probattr_monitor"]
    begin = next(line for line in lines if "one probe run scores" in line)
    estimate = int(re.search(r"at most ([\d,]+) token-forwards", begin).group(1).replace(",", ""))
    assert estimate == callback.cost["token_forwards"] > 0
    assert "exact policy with 300 candidates per position" in begin
    spent = sum(r.summary["token_forwards"] for r in callback.last_run.results)
    assert spent <= estimate  # responses may stop early at EOS
    assert sum("took" in line for line in lines) == 1  # after the first run only


def test_long_runs_log_their_progress(monkeypatch, caplog):
    monkeypatch.setattr(dispatch, "PROGRESS_LOG_SECONDS", 0.0)  # every position counts as "a while"
    tok = tokenizer()
    with caplog.at_level(logging.INFO, logger="probattr_monitor"):
        probe(tiny_gpt2(len(tok)), tok, "the cat sat on", max_new_tokens=2, progress=False)
    progress = [r.getMessage() for r in caplog.records if "positions scored" in r.getMessage()]
    assert progress and progress[0].startswith("probattr: 1/")


def test_max_token_forwards_caps_the_budget_policy():
    tok = tokenizer()
    model = tiny_gpt2(len(tok))
    free = probe(model, tok, PROMPTS, responses=[" the mat", " in the tree"], candidate_policy="budget", progress=False)
    cap = sum(r.summary["token_forwards"] for r in free) // 3
    capped = probe(model, tok, PROMPTS, responses=[" the mat", " in the tree"], candidate_policy="budget",
                   max_token_forwards=cap, progress=False)
    assert sum(r.summary["token_forwards"] for r in capped) <= cap
    assert capped[0].settings["candidate_budget"] < 60 and capped[0].settings["max_token_forwards"] == cap
    with pytest.raises(ValueError, match="max_token_forwards should be an integer"):
        probe(model, tok, "the cat", max_token_forwards=0)
