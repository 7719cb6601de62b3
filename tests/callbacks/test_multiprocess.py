"""ProbAttrCallback under torchrun with 2 CPU processes (gloo): real subprocesses, real checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from probattr_monitor import probe

pytestmark = pytest.mark.integration  # torchrun, two real processes
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ddp_train.py"


def torchrun(out, *extra, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
               str(out), *extra]  # --standalone: a free port, never a rendezvous left over from another run
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_two_processes_give_the_numbers_of_one(tmp_path):
    completed = torchrun(tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "rank 0 of 2 finished: step 4, probe errors 0" in completed.stdout  # 2 processes really ran
    assert "rank 1 of 2 finished: step 4, probe errors 0" in completed.stdout
    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        record = json.loads((folder / "probattr.json").read_text(encoding="utf-8"))
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        single = probe(model, tokenizer, [r["prompt"] for r in record["results"]], max_new_tokens=4, progress=False)
        for shared, alone in zip(record["results"], single):
            assert shared["response_token_ids"] == alone.response_token_ids
            for a, b in zip(shared["tokens"], alone.tokens):
                assert a["attribution_score"] == pytest.approx(b.attribution_score, abs=1e-5)
                assert a["entropy_context"] == pytest.approx(b.entropy_context, abs=1e-5)
                assert a["kl_prompt_context"] == pytest.approx(b.kl_prompt_context, abs=1e-5)
                assert a["noise"] == b.noise
        assert record["summary"]["token_forwards"] >= sum(r.summary["token_forwards"] for r in single)


def test_budget_policy_splits_prompts_across_ranks_with_the_numbers_of_one(tmp_path):
    completed = torchrun(tmp_path, "--budget")
    assert completed.returncode == 0, completed.stderr[-3000:]
    # 2 prompts, 2 probe runs: each rank scored one prompt per run, not both
    assert "rank 0 scored 2 prompts" in completed.stdout and "rank 1 scored 2 prompts" in completed.stdout
    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        record = json.loads((folder / "probattr.json").read_text(encoding="utf-8"))
        assert record["provenance"]["policy"] == "budget"
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        single = probe(model, tokenizer, [r["prompt"] for r in record["results"]], max_new_tokens=4, progress=False,
                       candidate_policy="budget")
        for shared, alone in zip(record["results"], single):
            assert shared["response_token_ids"] == alone.response_token_ids
            assert shared["summary"]["token_forwards"] == alone.summary["token_forwards"]
            for a, b in zip(shared["tokens"], alone.tokens):
                assert a["attribution_score"] == pytest.approx(b.attribution_score, abs=1e-5)
                assert a["attribution_score_stderr"] == pytest.approx(b.attribution_score_stderr, abs=1e-5)
                assert a["entropy_context"] == pytest.approx(b.entropy_context, abs=1e-5)


def test_a_rank_that_raises_does_not_hang_the_run(tmp_path):
    completed = torchrun(tmp_path, "--fail-rank", "1", timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "rank 0 of 2 finished: step 4, probe errors 2" in completed.stdout
    assert "rank 1 of 2 finished: step 4, probe errors 2" in completed.stdout
    record = json.loads((tmp_path / "checkpoint-4" / "probattr.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed" and "another rank failed" in record["error"]


def test_ranks_that_measured_different_seconds_follow_rank_zeros_plan(tmp_path):
    """Each rank meters its own seconds; under max_overhead they must still run the same work
    (a rank scoring positions while another skips would wait forever in a collective)."""
    completed = torchrun(tmp_path, "--skewed-share", timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    plans = [line.split(" ", 2)[2] for line in completed.stdout.splitlines() if " runs [" in line]
    assert len(plans) == 2 and plans[0] == plans[1], completed.stdout
