"""Hostile input and faults against ``attribute``, ``sweep`` and ``report``, through real subprocesses:
one clear line and the documented exit code, nothing lost, records never mixed (issue: ten faults)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest

from probattr_monitor import ProbeInputError, probe
from probattr_monitor.sweep import LOCK_FILE, SUMMARY_JSON

from ..callbacks.helpers import PROMPTS
from ..sweep.test_sweep import prompt_args, sweep_cli
from .test_cli import assert_usage_error, cli_main, model_dir, run_cli  # noqa: F401 - model_dir is a fixture


def summary(folder):
    return json.loads((folder / SUMMARY_JSON).read_text(encoding="utf-8"))


# ---- 5. rich markup and control characters in user text ----

def test_markup_and_escape_sequences_in_prompts_print_as_text_after_the_json_is_written(model_dir, tmp_path):
    prompts = ["[INST] the cat [/INST]", "a [/i] bird [white on white]sang[/]", "the \x1b[31mred\x1b[0m dog"]
    out = tmp_path / "r.json"
    completed = run_cli("attribute", "--model", model_dir, *[a for p in prompts for a in ("--prompt", p)],
                        "--max-new-tokens", "2", "--json", out, "--no-progress")
    assert completed.returncode == 0, completed.stderr
    assert [r["prompt"] for r in json.loads(out.read_text(encoding="utf-8"))] == prompts
    assert "prompt: [INST] the cat [/INST]" in completed.stdout
    assert "[white on white]sang[/]" in completed.stdout, "shown, not applied as a style"
    assert "\x1b" not in completed.stdout and "\\x1b[31mred" in completed.stdout


def test_a_sweep_out_folder_with_markup_in_its_name_exits_0(plain_run, tmp_path):
    out = tmp_path / "[/x] results"
    completed = sweep_cli(plain_run, "--steps", "3", "--out", out, *prompt_args())
    assert completed.returncode == 0, completed.stderr
    assert "[/x] results" in completed.stdout and summary(out)["rows"][0]["status"] == "ok"


# ---- 6. the --json target is checked before probing ----

def test_an_unwritable_json_target_is_refused_before_probing(model_dir, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "the cat", "--json", folder),
                       "is a folder; give the path of a file")
    assert_usage_error(cli_main("attribute", "--model", model_dir, "--prompt", "the cat", "--json",
                               "/proc/probattr-monitor-test.json"), "--json: cannot write")
    assert list(folder.iterdir()) == []


# ---- 7. tokenizer exceptions are bad input ----

@pytest.fixture(scope="module")
def word_model_dir(tmp_path_factory):
    from probattr_monitor.demo.grammar import HiddenMarkovGrammar, word_tokenizer
    from probattr_monitor.demo.tiny_models import tiny_gpt2

    folder = tmp_path_factory.mktemp("word-level")
    tokenizer = word_tokenizer(HiddenMarkovGrammar.build())
    tiny_gpt2(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_a_word_missing_from_a_word_level_vocabulary_is_bad_input(word_model_dir):
    from transformers import AutoModelForCausalLM

    folder, tokenizer = word_model_dir
    model = AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(ProbeInputError, match="the tokenizer cannot encode the prompt 'zebra'"):
        probe(model, tokenizer, "zebra", progress=False)
    assert_usage_error(cli_main("attribute", "--model", folder, "--prompt", "zebra"),
                       "the tokenizer cannot encode the prompt 'zebra'")


def test_a_lone_surrogate_in_argv_is_bad_input(model_dir):
    assert_usage_error(run_cli("attribute", "--model", model_dir, "--prompt", "the \udcff cat"),
                       "the tokenizer cannot encode the prompt")


# ---- 8. valid JSON of the wrong shape ----

def test_json_of_the_wrong_shape_fails_one_checkpoint_not_the_sweep(plain_run, tmp_path):
    run = shutil.copytree(plain_run, tmp_path / "run")
    assert sweep_cli(run, "--steps", "6", *prompt_args()).returncode == 0
    (run / "checkpoint-6" / "probattr.json").write_text("[]", encoding="utf-8")
    (run / "checkpoint-3" / "trainer_state.json").write_text("[]", encoding="utf-8")
    completed = sweep_cli(run, *prompt_args())
    assert completed.returncode == 3, completed.stderr
    rows = {row["step"]: row for row in summary(run)["rows"]}
    assert rows[3]["status"] == "failed" and "should hold a JSON object" in rows[3]["error"]
    assert [rows[step]["status"] for step in (6, 9, 12)] == ["ok", "ok", "ok"]
    assert rows[6]["reused"] is False, "a record of the wrong shape is recomputed"


# ---- 9. a checkpoint whose record cannot be written ----

def test_a_record_that_cannot_be_written_fails_that_checkpoint_and_the_sweep_goes_on(plain_run, tmp_path):
    run = shutil.copytree(plain_run, tmp_path / "run")
    (run / "checkpoint-6" / "probattr.json").mkdir()  # the record's path is taken: writing it fails, even as root
    completed = sweep_cli(run, *prompt_args())
    assert completed.returncode == 3, completed.stderr
    rows = {row["step"]: row for row in summary(run)["rows"]}
    assert rows[6]["status"] == "failed" and "could not write" in rows[6]["error"]
    assert "--out DIR" in rows[6]["error"] and rows[6]["noise_tokens"] is not None, "the numbers are kept"
    assert [rows[step]["status"] for step in (3, 9, 12)] == ["ok", "ok", "ok"]
    assert (run / "probattr_report.html").is_file()


# ---- 10. records made with other settings or prompt sets are never mixed ----

@pytest.mark.integration
def test_two_sweeps_of_one_folder_never_mix_their_records(plain_run, tmp_path):
    run = shutil.copytree(plain_run, tmp_path / "run")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    sweeps = [subprocess.Popen([sys.executable, "-m", "probattr_monitor", "sweep", str(run), *prompt_args(),
                                "--entropy-threshold", threshold], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env) for threshold in ("1.0", "3.0")]
    outcomes = [(s.wait(timeout=300), s.stderr.read()) for s in sweeps]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, err in outcomes if code == 2)
    assert "another sweep is writing records in" in loser
    rows = summary(run)["rows"]
    thresholds = {json.loads((run / row["checkpoint"] / "probattr.json").read_text())["settings"]["entropy_threshold"]
                  for row in rows}
    assert len(thresholds) == 1 and all(row["status"] == "ok" for row in rows)


def test_a_sweep_refuses_a_folder_another_sweep_holds(plain_run, tmp_path):
    run = shutil.copytree(plain_run, tmp_path / "run")
    with open(run / LOCK_FILE, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_usage_error(sweep_cli(run, *prompt_args()), "another sweep is writing records in")
    assert not list(run.glob("checkpoint-*/probattr.json"))


def test_summaries_leave_out_records_made_with_other_settings(plain_run, tmp_path):
    from probattr_monitor.checkpoints import discover_checkpoints
    from probattr_monitor.monitoring.record import CheckpointRecord, find_record, folder_records
    from probattr_monitor.sweep import SweepConfig, collect_rows, load_records

    run = shutil.copytree(plain_run, tmp_path / "run")
    assert sweep_cli(run, *prompt_args(), "--entropy-threshold", "1.0").returncode == 0
    assert sweep_cli(run, "--steps", "9", "12", *prompt_args(), "--entropy-threshold", "3.0").returncode == 0
    checkpoints = discover_checkpoints(run)
    kept = {r.settings["entropy_threshold"] for r in folder_records(run / "checkpoint-9")}
    assert kept == {1.0, 3.0}, "the second sweep's records sit beside the first's"
    from probattr_monitor import ProbeSettings

    config = SweepConfig(run_dir=str(run), prompts=PROMPTS,
                         settings=ProbeSettings(max_new_tokens=4, entropy_threshold=3.0, progress=False))
    keys = {c.name: config.key_for(c) for c in checkpoints}
    records = load_records(checkpoints, lambda c: find_record(c.path, keys[c.name]))
    rows = collect_rows(checkpoints, records, keys)
    assert [row["status"] for row in rows] == ["failed", "failed", "ok", "ok"]
    assert "made with other settings, prompts or dtype" in rows[0]["error"]
    assert isinstance(records["checkpoint-3"], CheckpointRecord)


def test_report_after_sweeps_with_other_prompts_shows_one_set_and_names_the_other(plain_run, tmp_path):
    run = shutil.copytree(plain_run, tmp_path / "run")
    assert sweep_cli(run, "--steps", "3", "6", "9", *prompt_args()).returncode == 0
    other = ["--prompt", "the dog", "--prompt", "a cat", "--prompt", "the sun rose", "--max-new-tokens", "4",
             "--no-progress"]
    assert sweep_cli(run, "--steps", "12", *other).returncode == 0
    completed = run_cli("report", run)
    assert completed.returncode == 0, completed.stderr
    page = (run / "probattr_report.html").read_text(encoding="utf-8")
    assert "Not shown: 1 record(s) made with" in page
    assert page.count("<table class='heatmap'") == len(PROMPTS), "only the three checkpoints' prompt set is drawn"


@pytest.mark.parametrize("response", ["", "   "])
def test_an_empty_response_is_refused_up_front_everywhere(tmp_path, response, capsys):
    """``--response ""`` was refused only per checkpoint, after loading each (exit 3, every row
    failed): now the same rule as ``--responses-file`` and the callback, before anything loads."""
    from probattr_monitor import ProbAttrCallback
    from probattr_monitor.cli import main
    from probattr_monitor.errors import InputError

    (tmp_path / "checkpoint-1").mkdir()  # never loaded
    assert main(["sweep", str(tmp_path), "--prompt", "a b", "--response", response]) == 2
    assert "--response 1 is" in capsys.readouterr().err
    with pytest.raises(InputError, match="responses entry 2 is .*a fixed response should be a non-empty text"):
        ProbAttrCallback(prompts=["a b", "c d"], responses=[" e", response], max_overhead=None)


def test_a_prompt_repeated_in_the_responses_file_is_a_warning(tmp_path):
    from probattr_monitor.prompts import read_prompt_response_file

    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "a b", "response": " c"}\n{"prompt": "d", "response": " e"}\n'
                    '{"prompt": "a b", "response": " f"}\n', encoding="utf-8")
    with pytest.warns(UserWarning, match="holds the prompt\\(s\\) 'a b' more than once"):
        assert len(read_prompt_response_file(path)) == 3


@pytest.mark.parametrize("what", ["folder", "dangling symlink"])
def test_the_sweep_lock_is_never_a_folder_nor_followed_through_a_symlink(tmp_path, what):
    from probattr_monitor.errors import RunFolderError
    from probattr_monitor.sweep import records_lock

    lock = tmp_path / LOCK_FILE
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    if what == "folder":
        lock.mkdir()
    else:
        lock.symlink_to(outside)
    with pytest.raises(RunFolderError, match=f"lock file .* is a {what.split()[-1]}"):
        with records_lock(tmp_path, 0, 1):
            pass
    assert not outside.exists(), "nothing created outside the run"
    lock.unlink() if what != "folder" else lock.rmdir()
    with records_lock(tmp_path, 0, 1):
        assert lock.is_file()
