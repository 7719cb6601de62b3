"""Post-hoc sweeps over real checkpoints on disk: order, agreement with the callback, logs read back,
resumption, failures, exit codes, multi-process (torchrun) and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.checkpoints import discover_checkpoints, explicit_checkpoints
from probattr_monitor.monitoring.metrics import SUMMARY_KEYS
from probattr_monitor.sweep import SUMMARY_CSV, SUMMARY_JSON, SweepConfig, run_sweep

from ..callbacks.helpers import PROMPTS, make_trainer
from ..readers import read_tensorboard, read_wandb_history, wandb_run_file

STEPS = [3, 6, 9, 12]  # as strings: "12" < "3" < "6" < "9"
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
SETTINGS = ProbeSettings(max_new_tokens=4, progress=False)
STABLE = ("step", "checkpoint", "status", "noise_tokens", "noise_fraction", "mean_attribution",
          "mean_entropy_prompt", "mean_entropy_context", "mean_kl", "log_p_response", "eval_loss")


@pytest.fixture(scope="module")
def callback_run(tmp_path_factory):
    """The same run (same seed: bit-identical weights) with the callback logging to TensorBoard."""
    folder = tmp_path_factory.mktemp("with-callback") / "run"
    # response_mode="generate": the paper's protocol, as the sweep without responses
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", response_mode="generate",
                                logging_dir=str(folder / "tb"), settings=ProbeSettings(max_new_tokens=4),
                                max_overhead=None)
    make_trainer(folder, [callback], max_steps=12, save_steps=3, evaluate=True).train()
    return folder


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def stable(rows):
    return [{key: row[key] for key in STABLE} for row in rows]


def assert_same_rows(rows, expected):
    """Equal up to float summation order (thread counts differ between processes)."""
    assert len(rows) == len(expected)
    for row, other in zip(stable(rows), stable(expected)):
        numbers = [key for key, value in other.items() if isinstance(value, float)]
        assert {k: v for k, v in row.items() if k not in numbers} == {
            k: v for k, v in other.items() if k not in numbers
        }
        # the probes' forwards are float32: a mean of differences of log-probabilities of size ~10 moves by
        # up to ~10 x float32's epsilon (1.2e-7) when the summation order changes (1.3e-7 seen on 0.052:
        # abs=1e-9 passed only where rounding went its way)
        assert [row[k] for k in numbers] == pytest.approx([other[k] for k in numbers], rel=1e-6, abs=2e-6)


def quiet_config(run, out) -> SweepConfig:
    """The sweep of ``run`` into ``out`` with the test settings, no progress bar and no report."""
    return SweepConfig(run_dir=str(run), out=str(out), prompts=PROMPTS, settings=SETTINGS, progress=False, report=False)


def sweep_cli(*args, timeout=None):
    """``probattr-monitor sweep ARGS``, in process (``test_cli.cli_main``)."""
    from ..cli.test_cli import cli_main

    return cli_main("sweep", *args)


def sweep_cli_process(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "probattr_monitor", "sweep", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def prompt_args():
    return [item for prompt in PROMPTS for item in ("--prompt", prompt)] + ["--max-new-tokens", "4", "--no-progress"]


def test_checkpoints_are_ordered_by_number(plain_run):
    assert sorted(p.name for p in plain_run.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (12, 3, 6, 9)]
    assert [c.step for c in discover_checkpoints(plain_run)] == STEPS


def test_sweep_matches_the_callback_and_logs_at_the_right_steps(plain_run, callback_run, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = run_sweep(
        SweepConfig(
            run_dir=str(plain_run),
            out=str(tmp_path / "out"),
            prompts=PROMPTS,
            settings=SETTINGS,
            report_to=["tensorboard", "wandb"],
            progress=False,
        )
    )
    assert [row["step"] for row in summary.rows] == STEPS
    assert all(row["status"] == "ok" and row["eval_loss"] is not None for row in summary.rows)
    assert summary.computed == STEPS and summary.reused == []
    logged = read_tensorboard(callback_run / "tb")["scalars"]
    for row in summary.rows:
        for key in SUMMARY_KEYS:
            if row[key] is None:  # replacement entropy is off: not measured, not logged
                assert f"probattr/{key}" not in logged, key
                continue
            assert row[key] == pytest.approx(logged[f"probattr/{key}"][row["step"]], rel=1e-5, abs=1e-6), key
    swept = read_tensorboard(tmp_path / "out" / "runs" / "probattr-sweep")["scalars"]
    assert set(swept["probattr/noise_tokens"]) == set(STEPS)
    assert [swept["probattr/noise_tokens"][s] for s in STEPS] == [row["noise_tokens"] for row in summary.rows]
    drifting = {row["step"]: row["drift_attribution"] for row in summary.rows if row["drift_attribution"] is not None}
    assert drifting, "some consecutive checkpoints generated the same responses: their drift is defined"
    assert {s: swept["probattr/drift_attribution"][s] for s in drifting} == pytest.approx(drifting)
    assert set(swept["probattr/drift_attribution"]) == set(drifting), "undefined drift is not logged"
    history = [r for r in read_wandb_history(wandb_run_file(tmp_path / "out")) if "probattr/noise_tokens" in r]
    assert [(r["train/global_step"], r["probattr/noise_tokens"]) for r in history] == [
        (row["step"], row["noise_tokens"]) for row in summary.rows
    ]
    best = min(summary.rows, key=lambda row: (row["eval_loss"], row["step"]))  # generated responses: eval loss
    assert {k: summary.recommended[k] for k in ("step", "checkpoint", "rule")} == \
        {"step": best["step"], "checkpoint": best["checkpoint"], "rule": "lowest_eval_loss"}
    assert "the responses are generated, not fixed" in summary.recommended["reason"]
    on_disk = json.loads((tmp_path / "out" / SUMMARY_JSON).read_text())
    assert on_disk["recommended"] == summary.recommended and stable(on_disk["rows"]) == stable(summary.rows)
    csv_lines = (tmp_path / "out" / SUMMARY_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("step,checkpoint,status,error,noise_tokens,noise_fraction,mean_attribution")
    assert [line.split(",")[0] for line in csv_lines[1:]] == [str(s) for s in STEPS]
    assert not list(plain_run.rglob("probattr.json")), "--out leaves the run folder untouched"


def test_rerun_reuses_finished_checkpoints_and_recomputes_on_new_settings(plain_run, tmp_path):
    run = copy_run(plain_run, tmp_path / "run")
    config = SweepConfig(run_dir=str(run), prompts=PROMPTS, settings=SETTINGS, progress=False, report=False)
    first = run_sweep(config)
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("checkpoint-*/probattr.json")}
    assert len(stamps) == 4
    second = run_sweep(config)
    assert second.computed == [] and second.reused == STEPS
    assert {p: p.stat().st_mtime_ns for p in run.glob("checkpoint-*/probattr.json")} == stamps
    assert stable(second.rows) == stable(first.rows)
    older = run / "checkpoint-6" / "probattr.json"  # a record made by an earlier estimator revision
    record = json.loads(older.read_text(encoding="utf-8"))
    record["estimator_revision"] -= 1
    older.write_text(json.dumps(record), encoding="utf-8")
    assert run_sweep(config).computed == [6]
    record = json.loads(older.read_text(encoding="utf-8"))
    record["format_version"] = 1  # another record format: never trusted
    older.write_text(json.dumps(record), encoding="utf-8")
    assert run_sweep(config).computed == [6]
    bigger_budget = SweepConfig(
        run_dir=str(run), prompts=PROMPTS, settings=SETTINGS.replace(memory_budget_mb=8.0), progress=False, report=False
    )
    assert run_sweep(bigger_budget).computed == [], "memory knobs do not change the numbers"
    stricter = SweepConfig(
        run_dir=str(run),
        prompts=PROMPTS,
        settings=SETTINGS.replace(entropy_threshold=4.0),
        progress=False,
        report=False,
    )
    assert run_sweep(stricter).computed == STEPS
    other_prompts = SweepConfig(
        run_dir=str(run),
        prompts=PROMPTS[:1],
        settings=SETTINGS.replace(entropy_threshold=4.0),
        progress=False,
        report=False,
    )
    assert run_sweep(other_prompts).computed == STEPS


def test_failed_checkpoints_are_recorded_retried_and_reported_by_exit_code(plain_run, tmp_path):
    run = copy_run(plain_run, tmp_path / "run")
    weights = run / "checkpoint-6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated weights
    (run / "checkpoint-9" / "config.json").unlink()  # missing config
    (run / "checkpoint-15").mkdir()  # a half-written folder
    (run / "checkpoint-15" / "optimizer.pt").write_bytes(b"\0" * 16)
    completed = sweep_cli_process(run, *prompt_args())
    assert completed.returncode == 3, completed.stderr[-2000:]
    rows = {row["step"]: row for row in json.loads((run / SUMMARY_JSON).read_text())["rows"]}
    assert [rows[s]["status"] for s in (3, 6, 9, 12, 15)] == ["ok", "failed", "failed", "ok", "failed"]
    assert "no config.json" in rows[9]["error"] and rows[6]["error"] and rows[15]["error"]
    assert "checkpoint-6 failed" in completed.stdout
    shutil.copy(plain_run / "checkpoint-6" / "model.safetensors", weights)  # repaired: retried, not skipped
    shutil.copy(plain_run / "checkpoint-9" / "config.json", run / "checkpoint-9" / "config.json")
    shutil.rmtree(run / "checkpoint-15")
    completed = sweep_cli(run, *prompt_args())
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "computed 2, reused 2" in completed.stdout


def start_sweep_and_wait_for_a_record(run, out, **popen):
    """A sweep in a subprocess, returned once its first checkpoint record exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "probattr_monitor", "sweep", str(run), "--out", str(out), *prompt_args()],
        env=ENV,
        **popen,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("checkpoint-*/probattr.json")) and time.monotonic() < deadline:
        time.sleep(0.005)
    return process


@pytest.mark.integration
def test_a_killed_sweep_resumes_to_the_same_summary(plain_run, tmp_path):
    reference = run_sweep(
        quiet_config(plain_run, tmp_path / "reference")
    )
    out = tmp_path / "out"
    process = start_sweep_and_wait_for_a_record(plain_run, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = list(out.glob("checkpoint-*/probattr.json"))
    assert 1 <= len(done) < 4, "killed half-way"
    for path in done:
        json.loads(path.read_text())  # whole files only
    completed = sweep_cli(plain_run, "--out", out, *prompt_args())
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = json.loads((out / SUMMARY_JSON).read_text())["rows"]
    assert_same_rows(rows, reference.rows)
    assert sum(row["reused"] for row in rows) == len(done)


def test_sigint_exits_130(plain_run, tmp_path):
    out = tmp_path / "out"
    process = start_sweep_and_wait_for_a_record(
        plain_run, out, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode in (130, 0), stderr  # 0 only if it had already finished
    for path in out.glob("checkpoint-*/probattr.json"):
        json.loads(path.read_text())


@pytest.mark.integration
def test_two_processes_equal_one(plain_run, tmp_path):
    single = run_sweep(
        quiet_config(plain_run, tmp_path / "one")
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "probattr_monitor",
            "sweep",
            str(plain_run),
            "--out",
            str(tmp_path / "two"),
            *prompt_args(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "computed 4, reused 0" in completed.stdout
    rows = json.loads((tmp_path / "two" / SUMMARY_JSON).read_text())["rows"]
    assert_same_rows(rows, single.rows)
    for step in STEPS:  # each process wrote its share; per-token numbers agree too
        one = json.loads((tmp_path / "one" / f"checkpoint-{step}" / "probattr.json").read_text())["results"]
        two = json.loads((tmp_path / "two" / f"checkpoint-{step}" / "probattr.json").read_text())["results"]
        assert [t["attribution_score"] for r in one for t in r["tokens"]] == pytest.approx(
            [t["attribution_score"] for r in two for t in r["tokens"]], abs=1e-6
        )


def test_tokenizer_fallback(plain_run, tmp_path):
    run = copy_run(plain_run, tmp_path / "run")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run / "checkpoint-3" / name).unlink()
    completed = sweep_cli(run, *prompt_args())
    assert completed.returncode == 3
    row = json.loads((run / SUMMARY_JSON).read_text())["rows"][0]
    assert row["status"] == "failed" and "has no tokenizer files; pass --tokenizer DIR" in row["error"]
    completed = sweep_cli(run, "--tokenizer", plain_run / "checkpoint-3", *prompt_args())
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_explicit_checkpoints_and_steps(plain_run, tmp_path):
    given = [plain_run / "checkpoint-12", plain_run / "checkpoint-3"]
    assert [c.step for c in explicit_checkpoints(given)] == [3, 12]
    completed = sweep_cli("--checkpoints", *given, "--out", tmp_path / "a", *prompt_args())
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert [r["step"] for r in json.loads((tmp_path / "a" / SUMMARY_JSON).read_text())["rows"]] == [3, 12]
    completed = sweep_cli(plain_run, "--steps", "9", "6", "--out", tmp_path / "b", "--rule", "last", *prompt_args())
    on_disk = json.loads((tmp_path / "b" / SUMMARY_JSON).read_text())
    assert [r["step"] for r in on_disk["rows"]] == [6, 9]
    assert on_disk["recommended"]["rule"] == "last" and on_disk["recommended"]["step"] == 9
    assert "recommended: checkpoint-9 - the last checkpoint" in completed.stdout
    completed = sweep_cli(plain_run, "--steps", "7", "--out", tmp_path / "c", *prompt_args())
    assert (
        completed.returncode == 2 and "no checkpoint at step(s) [7]; available steps: [3, 6, 9, 12]" in completed.stderr
    )


def test_trainer_state_is_the_authority_on_steps(plain_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(plain_run / "checkpoint-3", run / "checkpoint-30")  # misnamed: it holds step 3
    shutil.copytree(plain_run / "checkpoint-6", run / "checkpoint-6")
    with pytest.warns(UserWarning, match="checkpoint-30: trainer_state.json says global_step 3"):
        assert [(c.step, c.name) for c in discover_checkpoints(run)] == [(3, "checkpoint-30"), (6, "checkpoint-6")]


@pytest.mark.parametrize("make", ["missing", "empty", "no-checkpoints"])
def test_no_checkpoints_is_a_usage_error(tmp_path, make):
    folder = tmp_path / "run"
    if make != "missing":
        folder.mkdir()
    if make == "no-checkpoints":
        (folder / "notes.txt").write_text("x")
    completed = sweep_cli(folder, "--prompt", "x", "--no-progress")
    assert completed.returncode == 2
    assert ("run folder not found" if make == "missing" else "no checkpoint-<step> folders") in completed.stderr
    assert "Traceback" not in completed.stderr


# ---- fixed responses on the command line: the probes decide ----

def test_sweep_with_a_reference_freezes_its_responses_and_the_guard_decides(plain_run, tmp_path):
    from probattr_monitor.monitoring.record import CheckpointRecord

    out = tmp_path / "out"
    completed = sweep_cli(plain_run, "--reference", plain_run / "checkpoint-3", "--out", out, *prompt_args())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    assert data["recommended"]["rule"] == "guarded" and "could not decide" not in data["recommended"]["reason"]
    assert "What the recommendation can see: an eval loss ranks the checkpoints; a guard of" in completed.stdout
    frozen = None
    for step in STEPS:
        record = CheckpointRecord.load(out / f"checkpoint-{step}" / "probattr.json")
        assert record.prompt_set["response_mode"] == "fixed"
        ids = [r["response_token_ids"] for r in record.results]
        frozen = frozen or ids
        assert ids == frozen and all(isinstance(i, int) for r in ids for i in r)
    assert all(len(row["prompt_log_p"]) == len(PROMPTS) for row in data["rows"])


def test_a_reference_with_another_tokenizer_is_refused_naming_both(plain_run, tmp_path):
    """Its responses are frozen as its token ids; under another vocabulary they are other text."""
    from transformers import AutoTokenizer

    from ..cli.test_cli import assert_usage_error

    reference = tmp_path / "reference"
    shutil.copytree(plain_run / "checkpoint-3", reference)
    tokenizer = AutoTokenizer.from_pretrained(reference)
    tokenizer.add_tokens(["<not-in-the-run>"])
    tokenizer.save_pretrained(reference)
    out = tmp_path / "out"
    completed = sweep_cli(plain_run, "--reference", reference, "--out", out, *prompt_args())
    assert_usage_error(completed, f"the tokenizer of --reference {reference} and that of checkpoint-3 differ")
    assert not out.exists()  # refused before any checkpoint was probed


def test_a_checkpoint_with_another_tokenizer_fails_its_row_when_the_reference_is_not_checked_up_front(
        plain_run, tmp_path):
    """The runner checks each checkpoint too (the watcher's, adapters'): that row fails, naming both."""
    from transformers import AutoTokenizer

    from probattr_monitor.probes.inputs.vocabulary import Vocabulary
    from probattr_monitor.sweep.config import check_run_vocabulary

    tokenizer = AutoTokenizer.from_pretrained(plain_run / "checkpoint-3")
    same = Vocabulary.of(tokenizer)
    tokenizer.add_tokens(["<not-in-the-run>"])
    other = Vocabulary.of(tokenizer)
    assert same.difference(Vocabulary.of(AutoTokenizer.from_pretrained(plain_run / "checkpoint-6"))) is None
    assert other.difference(same) == f"{len(tokenizer):,} tokens against {len(tokenizer) - 1:,}"
    config = SweepConfig(run_dir=str(plain_run), steps=[3], out=str(tmp_path / "o"), prompts=PROMPTS,
                         responses=[[5, 6], [7]], settings=SETTINGS, progress=False, report=False,
                         reference="REF", reference_vocabulary=other)
    summary = run_sweep(config)
    assert summary.failed == 1
    assert "the tokenizer of --reference REF and that of checkpoint-3 differ" in summary.rows[0]["error"]
    check_run_vocabulary(SweepConfig(run_dir=str(plain_run), reference_vocabulary=same),
                         discover_checkpoints(plain_run))  # the run's own: nothing to refuse


def test_sweep_takes_responses_as_flags_or_a_file(plain_run, tmp_path):
    texts = [" the mat", " in the tree"]
    by_flag = sweep_cli(plain_run, "--steps", "3", "6", "--out", tmp_path / "a", *prompt_args(),
                        *[a for t in texts for a in ("--response", t)])
    assert by_flag.returncode == 0, by_flag.stdout + by_flag.stderr
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in zip(PROMPTS, texts)) + "\n",
                     encoding="utf-8")
    by_file = sweep_cli(plain_run, "--steps", "3", "6", "--out", tmp_path / "b", "--responses-file", pairs,
                        "--max-new-tokens", "4", "--no-progress")
    assert by_file.returncode == 0, by_file.stdout + by_file.stderr
    rows_a = json.loads((tmp_path / "a" / SUMMARY_JSON).read_text(encoding="utf-8"))["rows"]
    rows_b = json.loads((tmp_path / "b" / SUMMARY_JSON).read_text(encoding="utf-8"))["rows"]
    assert [r["log_p_response"] for r in rows_a] == pytest.approx([r["log_p_response"] for r in rows_b])


@pytest.mark.parametrize("args, fragment", [
    (["--response", "only one"], "--response given 1 time(s) for 2 prompt(s)"),
    (["--response", "a", "--response", "b", "--reference", "x"], "give one of --response"),
])
def test_sweep_response_flags_that_do_not_fit_are_usage_errors(plain_run, tmp_path, args, fragment):
    from ..cli.test_cli import assert_usage_error, cli_main

    assert_usage_error(cli_main("sweep", plain_run, "--out", tmp_path / "o", *prompt_args(), *args), fragment)


def test_sweep_scores_a_guard_file_beside_the_probes(plain_run, tmp_path):
    guard = tmp_path / "guard.jsonl"
    pairs = [("the dog sat in the", " sun"), ("a cat and", " a bird"), ("the cat ran", " up the tree")]
    guard.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in pairs) + "\n", encoding="utf-8")
    completed = sweep_cli(plain_run, "--steps", "3", "6", "--out", tmp_path / "o", "--guard-file", guard,
                          "--reference", plain_run / "checkpoint-3", *prompt_args())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = json.loads((tmp_path / "o" / SUMMARY_JSON).read_text(encoding="utf-8"))["rows"]
    assert all(len(row["prompt_log_p"]) == len(PROMPTS) + len(pairs) for row in rows)


def test_a_records_revision_is_its_own_policys(plain_run, tmp_path):
    """Records of the exact policy carry exact's estimator revision, not the budget policy's (a new
    budget estimator would otherwise have thrown away every exact record); a registered policy's
    records carry its own."""
    from probattr_monitor.monitoring.record_key import PromptSet, RecordKey
    from probattr_monitor.probes.types.policies import (
        BUDGET,
        EXACT,
        CandidatePolicy,
        register_policy,
        unregister_policy,
    )

    run = copy_run(plain_run, tmp_path / "run")
    config = SweepConfig(run_dir=str(run), prompts=PROMPTS, settings=SETTINGS, progress=False, report=False)
    run_sweep(config)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in run.glob("checkpoint-*/probattr.json")]
    assert {r["provenance"]["policy"] for r in records} == {"exact"}  # the tiny vocabulary is probed exactly
    assert {r["estimator_revision"] for r in records} == {EXACT.revision} != {BUDGET.revision}
    assert run_sweep(config).reused == STEPS
    prompt_set = PromptSet(prompts=list(PROMPTS))
    register_policy(CandidatePolicy("mine", "probattr_monitor.probes.engines.budgeted:score_budgeted", capped=True,
                                    splits="prompts", revision=7))
    try:
        assert RecordKey.of(SETTINGS, prompt_set, "float32", "mine").estimator_revision == 7
    finally:
        unregister_policy("mine")
    assert RecordKey.of(SETTINGS, prompt_set, "float32", None).estimator_revision == BUDGET.revision  # old records
