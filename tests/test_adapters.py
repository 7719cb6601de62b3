"""A real PEFT LoRA run: the callback probes the PeftModel, ``sweep`` loads the adapter checkpoints
on their base, records carry provenance, and records made with other settings live side by side."""

from __future__ import annotations

import json

import pytest
import torch

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.monitoring.record import RESULTS_FILE, CheckpointRecord, folder_records

from .callbacks.helpers import PROMPTS, make_trainer, tokenizer
from .cli.test_cli import assert_usage_error, cli_main, run_cli
from .run_if import run_if

pytestmark = run_if(packages=("peft",))

SETTINGS = ["--max-new-tokens", "3", "--no-progress"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A LoRA fine-tune of a saved base model, with the callback writing records at steps 2 and 4."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("lora")
    tok = tokenizer()
    base_dir = root / "base"
    tiny_gpt2(len(tok), seed=0).save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM",
                                            init_lora_weights=False))
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    run_dir = root / "run"
    make_trainer(run_dir, callbacks=[callback], tok=tok, model=model, max_steps=4, save_steps=2,
                 learning_rate=1e-2).train()
    return run_dir, base_dir


def numbers(record: CheckpointRecord) -> list[float]:
    return [t["attribution_score"] for r in record.results for t in r["tokens"]] + [
        r["log_p_response"] for r in record.results]


def test_adapter_checkpoints_are_swept_with_numbers_equal_to_the_callbacks(lora_run, tmp_path):
    run_dir, base_dir = lora_run
    assert (run_dir / "checkpoint-4" / "adapter_config.json").is_file()
    callback_record = CheckpointRecord.load(run_dir / "checkpoint-4" / RESULTS_FILE)
    assert callback_record is not None and callback_record.ok
    assert callback_record.provenance["model_class"].startswith("PeftModelForCausalLM")

    out = tmp_path / "fresh"
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    completed = run_cli("sweep", run_dir, "--out", out, *prompts, *SETTINGS)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for step in (2, 4):
        fresh = CheckpointRecord.load(out / f"checkpoint-{step}" / RESULTS_FILE)
        during = CheckpointRecord.load(run_dir / f"checkpoint-{step}" / RESULTS_FILE)
        assert fresh is not None and fresh.ok and during is not None
        assert fresh.key == during.key  # same settings, prompts, dtype and policy
        assert fresh.provenance["base_model"] == str(base_dir)
        assert fresh.provenance["adapter"] == str(run_dir / f"checkpoint-{step}")
        assert [r["response_token_ids"] for r in fresh.results] == [r["response_token_ids"] for r in during.results]
        assert numbers(fresh) == pytest.approx(numbers(during), abs=1e-5)

    # in place with the same settings: the callback's records are reused, not recomputed
    again = run_cli("sweep", run_dir, *prompts, *SETTINGS)
    assert again.returncode == 0, again.stderr
    assert "computed 0, reused 2" in again.stdout


def test_other_settings_and_failed_loads_never_replace_good_records(lora_run):
    run_dir, _ = lora_run
    folder = run_dir / "checkpoint-2"
    before = (folder / RESULTS_FILE).read_text(encoding="utf-8")
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]

    broken = run_cli("sweep", run_dir, *prompts, "--entropy-threshold", "1.5", "--base-model", run_dir / "missing",
                     *SETTINGS)
    assert broken.returncode == 3, broken.stderr
    assert (folder / RESULTS_FILE).read_text(encoding="utf-8") == before  # the ok record is untouched

    other = run_cli("sweep", run_dir, *prompts, "--entropy-threshold", "1.5", *SETTINGS)
    assert other.returncode == 0, other.stdout + other.stderr
    records = folder_records(folder)
    assert sorted(r.settings["entropy_threshold"] for r in records if r.ok) == [1.5, 2.0]
    assert (folder / RESULTS_FILE).read_text(encoding="utf-8") == before

    # a dtype change recomputes, side by side again
    wider = run_cli("sweep", run_dir, *prompts, "--dtype", "float64", *SETTINGS)
    assert wider.returncode == 0, wider.stderr
    assert "computed 2, reused 0" in wider.stdout
    dtypes = sorted(r.provenance["dtype"] for r in folder_records(folder) if r.ok)
    assert dtypes == ["float32", "float32", "float64"]

    report = run_cli("report", run_dir)
    assert report.returncode == 0, report.stderr


def test_adapter_without_reachable_base_says_which_flag(lora_run, tmp_path):
    run_dir, base_dir = lora_run
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for path in (run_dir / "checkpoint-4").iterdir():
        if path.name.startswith("adapter_"):
            adapter.joinpath(path.name).write_bytes(path.read_bytes())
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = "someone/not-on-this-machine"
    (adapter / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert_usage_error(cli_main("attribute", "--model", adapter, "--prompt", "the cat"), "pass --base-model DIR")
    out = tmp_path / "r.json"
    completed = run_cli("attribute", "--model", adapter, "--base-model", base_dir, "--prompt", "the cat", "--json",
                        out, *SETTINGS)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(out.read_text(encoding="utf-8"))[0]["tokens"]


def test_not_a_model_folder_hint_names_a_real_flag(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    tokenizer().save_pretrained(tmp_path)
    completed = run_cli("sweep", "--checkpoints", tmp_path, "--prompt", "x", "--out", tmp_path / "o", *SETTINGS)
    record = CheckpointRecord.load(tmp_path / "o" / tmp_path.name / RESULTS_FILE)
    assert completed.returncode == 3 and record is not None
    assert "attribute --gguf-file model.gguf" in (record.error or "")


def test_provenance_in_callback_records(lora_run):
    run_dir, _ = lora_run
    record = CheckpointRecord.load(run_dir / "checkpoint-2" / RESULTS_FILE)
    assert record is not None
    info = record.provenance
    assert info["dtype"] == "float32" and info["device"] == "cpu" and info["policy"] == "exact"
    assert info["torch_version"] == torch.__version__ and info["probattr_monitor_version"]


def test_an_adapter_swept_on_the_wrong_base_is_recomputed_on_the_right_one(lora_run, tmp_path):
    run_dir, base_dir = lora_run
    wrong = tmp_path / "wrong-base"
    tok = tokenizer()
    tiny_gpt2(len(tok), seed=7).save_pretrained(wrong)
    tok.save_pretrained(wrong)
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    out = tmp_path / "out"
    first = run_cli("sweep", run_dir, "--out", out, "--base-model", wrong, *prompts, *SETTINGS)
    assert first.returncode == 0, first.stdout + first.stderr
    wrong_numbers = numbers(CheckpointRecord.load(out / "checkpoint-4" / RESULTS_FILE))
    right = run_cli("sweep", run_dir, "--out", out, "--base-model", base_dir, *prompts, *SETTINGS)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "computed 2, reused 0" in right.stdout
    fixed = numbers(CheckpointRecord.load(out / "checkpoint-4" / RESULTS_FILE))
    assert fixed == pytest.approx(numbers(CheckpointRecord.load(run_dir / "checkpoint-4" / RESULTS_FILE)), abs=1e-5)
    assert fixed != pytest.approx(wrong_numbers, abs=1e-3)


def test_an_adapter_is_swept_in_the_dtype_it_trained_in(tmp_path):
    """A bfloat16 base (its config.json says so) fine-tuned and probed in float32."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from probattr_monitor.loading import checkpoint_profile

    tok = tokenizer()
    base_dir = tmp_path / "base"
    tiny_gpt2(len(tok), seed=0).to(torch.bfloat16).save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    assert json.loads((base_dir / "config.json").read_text(encoding="utf-8"))["dtype"] == "bfloat16"
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM",
                                            init_lora_weights=False))
    run_dir = tmp_path / "run"
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    make_trainer(run_dir, callbacks=[callback], tok=tok, model=model, max_steps=2, save_steps=2).train()
    checkpoint = run_dir / "checkpoint-2"
    assert CheckpointRecord.load(checkpoint / RESULTS_FILE).provenance["dtype"] == "float32"
    assert checkpoint_profile(checkpoint)[0] == "float32"  # the callback's record says so
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    again = run_cli("sweep", run_dir, *prompts, *SETTINGS)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "computed 0, reused 1" in again.stdout
    (checkpoint / RESULTS_FILE).unlink()
    assert checkpoint_profile(checkpoint)[0] == "float32"  # no record: the adapter's own weights say so


def test_one_truncated_adapter_is_a_failed_row_and_the_others_finish(lora_run, tmp_path):
    """The keys were built up front, outside the per-checkpoint handling: one truncated adapter
    ended the whole sweep with exit 2. Now that checkpoint fails (exit 3) and the others finish."""
    import shutil

    run_dir = shutil.copytree(lora_run[0], tmp_path / "run")
    broken = run_dir / "checkpoint-2"
    for record in broken.glob("probattr*.json"):
        record.unlink()  # no record to read the training dtype from: the adapter's header is read
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    completed = cli_main("sweep", run_dir, "--out", tmp_path / "out", *prompts, *SETTINGS)
    assert completed.returncode == 3, completed.stdout + completed.stderr
    rows = {row["checkpoint"]: row for row in json.loads((tmp_path / "out" / "sweep_summary.json").read_text())["rows"]}
    assert rows["checkpoint-4"]["status"] == "ok"
    assert rows["checkpoint-2"]["status"] == "failed" and "adapter_model.safetensors" in rows["checkpoint-2"]["error"]
