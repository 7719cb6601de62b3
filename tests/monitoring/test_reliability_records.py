"""Records that are what they say (issue: sixteen faults): NaN and strings where numbers belong,
truncated weights, byte-order marks, settings that cannot hold, through real sweeps and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from probattr_monitor import ProbeInputError, ProbeSettings, probe
from probattr_monitor.monitoring.record import RESULTS_FILE, CheckpointRecord, PromptSet
from probattr_monitor.monitoring.run import run_probes
from probattr_monitor.prompts import read_prompts_file
from probattr_monitor.sweep import SUMMARY_JSON

from ..cli.test_cli import assert_usage_error, cli_main, model_dir, run_cli  # noqa: F401 - model_dir is a fixture
from ..conftest import build_model
from ..sweep.test_sweep import prompt_args, sweep_cli


def summary(folder):
    return json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))  # strict enough: no NaN written


# ---- 5. a diverged evaluation ----

def test_a_nan_or_string_eval_loss_is_a_missing_value(plain_run, tmp_path):
    run = shutil.copytree(plain_run, tmp_path / "run")
    for folder in run.glob("checkpoint-*"):
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        for entry in state["log_history"]:
            if "eval_loss" in entry and entry["step"] == 6:
                entry["eval_loss"] = float("nan")  # what the Trainer writes when evaluation diverges
            elif "eval_loss" in entry and entry["step"] == 9:
                entry["eval_loss"] = "0.1"
        (folder / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")  # NaN, as json writes it
    out = tmp_path / "out"
    completed = sweep_cli(run, "--out", out, "--rule", "lowest_eval_loss", *prompt_args())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"), parse_constant=pytest.fail)
    losses = {row["step"]: row["eval_loss"] for row in data["rows"]}
    assert losses[6] is None and losses[9] is None and losses[3] is not None
    assert data["recommended"]["step"] in (3, 12) and (out / "probattr_report.html").is_file()


def test_no_rule_recommends_a_checkpoint_whose_prompts_are_all_invalid():
    from probattr_monitor.monitoring.decision import RULES, recommend

    rows = [{"step": 1, "checkpoint": "checkpoint-1", "status": "ok", "eval_loss": 2.0, "log_p_response": -5.0,
             "noise_tokens": 3, "soft_noise": 1.0, "invalid_prompts": 0},
            {"step": 2, "checkpoint": "checkpoint-2", "status": "ok", "eval_loss": float("nan"),
             "log_p_response": None, "noise_tokens": None, "soft_noise": None, "invalid_prompts": 2}]
    for rule in RULES:
        assert recommend(rows, rule)["step"] == 1, rule


# ---- 7. records checked all the way down ----

@pytest.mark.parametrize("corrupt", ["string", "nan", "row"])
def test_a_record_with_a_bad_value_inside_is_recomputed(plain_run, tmp_path, corrupt):
    out = tmp_path / "out"
    first = sweep_cli(plain_run, "--steps", "3", "--out", out, *prompt_args())
    assert first.returncode == 0, first.stderr
    path = out / "checkpoint-3" / RESULTS_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    token = data["results"][0]["tokens"][0]
    if corrupt == "string":
        token["attribution_score"] = "high"
    elif corrupt == "nan":
        token["entropy_context"] = float("nan")
    else:
        data["results"][1]["tokens"][0] = ["not", "a", "row"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert CheckpointRecord.load(path) is None
    again = sweep_cli(plain_run, "--steps", "3", "--out", out, *prompt_args())
    assert again.returncode == 0, again.stdout + again.stderr
    assert "computed 1, reused 0" in again.stdout
    assert CheckpointRecord.load(path) is not None
    report = run_cli("report", plain_run, "--out", out)
    assert report.returncode == 0, report.stderr


# ---- 12. a truncated weights file ----

def test_a_truncated_safetensors_file_is_bad_input_naming_the_file(model_dir, tmp_path):
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert_usage_error(cli_main("attribute", "--model", broken, "--prompt", "the cat"), "model.safetensors")
    weights.write_bytes(b"\x05")
    assert_usage_error(cli_main("attribute", "--model", broken, "--prompt", "the cat"), "model.safetensors")


# ---- 13. a byte-order mark ----

def test_a_byte_order_mark_is_not_prompt_text(tmp_path):
    plain, jsonl = tmp_path / "p.txt", tmp_path / "p.jsonl"
    plain.write_bytes("\ufeffthe cat sat\na bird\n".encode("utf-8"))
    jsonl.write_bytes('\ufeff{"prompt": "the cat sat"}\n'.encode("utf-8"))
    assert read_prompts_file(plain) == ["the cat sat", "a bird"]
    assert read_prompts_file(jsonl) == ["the cat sat"]


# ---- 10, 11, 16. settings that cannot hold ----

def test_a_token_forward_cap_below_the_floor_is_refused(tokenizer):
    from probattr_monitor.api.cost import run_suffix_tokens
    from probattr_monitor.api.inputs import prepare_inputs

    model = build_model("gpt2", len(tokenizer), peaked=False)
    prompt, response = "the cat sat on the mat and the dog", " ran after it"
    settings = ProbeSettings(candidate_policy="budget", progress=False)
    floor = 2 * run_suffix_tokens(prepare_inputs(model, tokenizer, [prompt], [response], settings), settings)
    for cap in (1, 50, floor - 1):
        with pytest.raises(ProbeInputError, match="floor of 2 candidates"):
            probe(model, tokenizer, prompt, responses=response, settings=settings, max_token_forwards=cap)
    result = probe(model, tokenizer, prompt, responses=response, settings=settings, max_token_forwards=floor)
    assert result.summary["token_forwards"] <= floor


def test_the_record_says_the_budget_that_ran_under_a_cap(tokenizer):
    model = build_model("gpt2", len(tokenizer), peaked=False)
    settings = ProbeSettings(candidate_policy="budget", max_token_forwards=200, max_new_tokens=3, progress=False)
    run = run_probes(model, tokenizer, ["the cat sat"], None, settings, step=1, strict=True)
    record = CheckpointRecord.from_run(run, PromptSet.of(["the cat sat"]), settings)
    assert record.settings["candidate_budget"] is None  # what was asked (the key)
    ran = record.provenance["candidate_budget"]
    assert ran == run.results[0].settings["candidate_budget"] and 2 <= ran < settings.budget_for(len(tokenizer))
    assert run.results[0].summary["token_forwards"] <= 200


def test_a_system_message_without_a_chat_template_is_refused(model_dir, tokenizer):
    model = build_model("gpt2", len(tokenizer), peaked=False)
    with pytest.raises(ProbeInputError, match="no chat template"):
        probe(model, tokenizer, "the cat", system="Be brief.", progress=False)
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "the cat", "--system", "Be brief."),
                       "no chat template")
