"""``probattr-monitor attribute``: output, JSON and exit codes. Argument and input errors are
checked in process (``cli.main([...])``, no new interpreter); the outputs that a user sees run
through real subprocesses (``run_cli``), as smoke tests of the installed command."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from ..conftest import build_model

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "120"}


def cli_main(*args, timeout=None) -> subprocess.CompletedProcess:
    """``cli.main(args)`` in this process, its exit code and what it printed, shaped like
    :func:`run_cli_process`'s answer (argparse's usage errors exit 2 through ``SystemExit``),
    at the terminal width the subprocesses get. ``timeout`` is accepted and ignored."""
    from probattr_monitor.cli import main

    out, err = io.StringIO(), io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = ENV["COLUMNS"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 2
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


run_cli = cli_main  # the commands' behaviour is checked in process; run_cli_process where the process matters


def run_cli_process(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "probattr_monitor", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    build_model("gpt2", len(tokenizer), peaked=True).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def assert_usage_error(completed, fragment):
    assert completed.returncode == 2, completed.stderr
    assert fragment in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len([line for line in completed.stderr.splitlines() if line.startswith("probattr-monitor")]) == 1


def test_attribute_prints_tables_and_writes_json(model_dir, tmp_path):
    out = tmp_path / "results.json"
    completed = run_cli_process("attribute", "--model", model_dir, "--prompt", "the cat sat", "--prompt", "a bird sang",
                        "--max-new-tokens", "4", "--json", out, "--no-progress")
    assert completed.returncode == 0, completed.stderr
    assert "prompt: the cat sat" in completed.stdout and "prompt: a bird sang" in completed.stdout
    assert "response (generated)" in completed.stdout and "noise tokens" in completed.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [d["prompt"] for d in data] == ["the cat sat", "a bird sang"]
    assert all(len(d["response_token_ids"]) <= 4 and d["tokens"] for d in data)
    for d in data:  # the table shows each token's AS
        for token in d["tokens"]:
            assert f"{token['attribution_score']:+.3f}" in completed.stdout


def test_attribute_with_response_and_prompts_file_via_console_script(model_dir, tmp_path):
    script = shutil.which("probattr-monitor")
    assert script, "the console script is installed with the package"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the dog ran\n", encoding="utf-8")
    out = tmp_path / "r.json"
    completed = subprocess.run([script, "attribute", "--model", str(model_dir), "--prompts-file", str(prompts),
                                "--response", " after it", "--json", str(out), "--no-progress"],
                               capture_output=True, text=True, env=ENV, timeout=300)
    assert completed.returncode == 0, completed.stderr
    (result,) = json.loads(out.read_text(encoding="utf-8"))
    assert result["response"] == " after it" and result["response_source"] == "given"


def test_candidate_policy_flags(model_dir, tmp_path):
    results = {}
    for policy in ("exact", "budget"):
        out = tmp_path / f"{policy}.json"
        completed = run_cli("attribute", "--model", model_dir, "--prompt", "the cat sat", "--response", " on it",
                            "--candidate-policy", policy, "--candidate-budget", "16", "--seed", "3", "--json", out,
                            "--no-progress")
        assert completed.returncode == 0, completed.stderr
        (results[policy],) = json.loads(out.read_text(encoding="utf-8"))
    exact, budget = results["exact"], results["budget"]
    assert exact["summary"]["candidate_policy"] == "exact" and budget["summary"]["candidate_policy"] == "budget"
    assert budget["summary"]["token_forwards"] <= 16 / 100 * exact["summary"]["token_forwards"]
    assert all(t["attribution_score_stderr"] == 0 for t in exact["tokens"])
    assert any(t["attribution_score_stderr"] > 0 for t in budget["tokens"])


def test_bad_inputs_exit_2_with_one_line(model_dir, tmp_path, tokenizer):
    assert_usage_error(cli_main("attribute", "--model", tmp_path / "nope", "--prompt", "x"), "model folder not found")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "a", "--prompt", "b", "--response", "c"),
                       "--response needs exactly one prompt, got 2")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", ""), "the prompt is empty")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "x", "--as-band", "-1"),
                       "as_band should be a finite number > 0, got -1.0")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "x", "--candidate-policy", "magic"),
                       "argument --candidate-policy: invalid choice: 'magic' (choose from 'auto', 'exact', 'budget')")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "x", "--candidate-budget", "0"),
                       "candidate_budget should be an integer >= 2, got 0")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "x", "--gguf-file", "m.gguf"),
                       "GGUF file 'm.gguf' not found")
    weights = model_dir / "model.safetensors"  # a file that is not a .gguf: the message names both forms
    assert_usage_error(cli_main("attribute", "--model", weights, "--prompt", "x"),
                       "a model should be a folder written by save_pretrained or a .gguf file, got the file")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "the cat " * 200),
                       "more than the model's context of 128")


def test_bad_prompt_files_exit_2(model_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompts-file", empty), "holds no prompt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompts-file", latin), "is not UTF-8")


def test_folders_that_are_not_causal_lms_exit_2(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    assert_usage_error(cli_main("attribute", "--model", bert, "--prompt", "x"), "is not a causal language model")
    no_tokenizer = tmp_path / "no-tokenizer"
    build_model("gpt2", len(tokenizer), peaked=False).save_pretrained(no_tokenizer)
    assert_usage_error(cli_main("attribute", "--model", no_tokenizer, "--prompt", "x"), "no tokenizer files in")
    assert_usage_error(cli_main("attribute", "--model", tmp_path, "--prompt", "x"), "has no config.json")


def test_bad_usage_exits_2():
    completed = run_cli("attribute", "--no-such-flag")
    assert completed.returncode == 2
    assert run_cli().returncode == 2


def test_a_hub_id_is_found_in_the_local_cache_and_an_unknown_one_is_one_line(model_dir, tmp_path):
    """``--model org/name`` as ``from_pretrained`` resolves it: the snapshot in the HF cache
    (HF_HUB_OFFLINE=1: nothing is downloaded)."""
    cache = tmp_path / "hub"
    commit = "0" * 40
    snapshot = cache / "models--tiny-org--tiny-gpt2" / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (cache / "models--tiny-org--tiny-gpt2" / "refs").mkdir()
    (cache / "models--tiny-org--tiny-gpt2" / "refs" / "main").write_text(commit, encoding="utf-8")
    env = {**ENV, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "probattr_monitor", "attribute", "--prompt", "the cat", "--max-new-tokens", "2",
           "--no-progress", "--model"]
    found = subprocess.run([*run, "tiny-org/tiny-gpt2"], capture_output=True, text=True, env=env, timeout=300)
    assert found.returncode == 0, found.stderr
    assert "the cat" in found.stdout
    missing = subprocess.run([*run, "tiny-org/not-cached"], capture_output=True, text=True, env=env, timeout=300)
    assert_usage_error(missing, "'tiny-org/not-cached' is neither a local folder nor a model id in the Hugging Face "
                                "cache")


def test_device_auto_resolves_to_what_this_machine_has():
    import torch

    from probattr_monitor.loading import parse_device, resolve_device

    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto") == expected and parse_device("auto").type == expected
    assert resolve_device("cuda:1") == "cuda:1"
