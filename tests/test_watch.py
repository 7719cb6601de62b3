"""``probattr-monitor watch``: a process beside a real training run probes each checkpoint as it
lands, never a half-written one, logs into the Trainer's TensorBoard folder, stops when training
ends or on a signal, and picks up where it left off."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from probattr_monitor import ProbeSettings
from probattr_monitor.sweep import SUMMARY_JSON, SweepConfig, run_sweep
from probattr_monitor.watch import STATE_FILE, WatchConfig, Watcher, incomplete

from .callbacks.helpers import PROMPTS, make_trainer
from .readers import tensorboard_scalar_steps

ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
SETTINGS = ProbeSettings(max_new_tokens=3, progress=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run without the callback: checkpoints at 2, 4 and 6 (max_steps 6)."""
    folder = tmp_path_factory.mktemp("plain") / "run"
    make_trainer(folder, [], max_steps=6, save_steps=2).train()
    return folder


def watcher(run_dir, **options) -> Watcher:
    sweep = SweepConfig(run_dir=str(run_dir), prompts=PROMPTS, settings=SETTINGS, device="cpu", progress=False)
    return Watcher(WatchConfig(sweep=sweep, **{"poll_seconds": 0.05, "settle_seconds": 0.0, **options}))


def records(run_dir) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in Path(run_dir).glob("checkpoint-*/probattr.json")}


def test_a_finished_run_is_probed_once_then_the_watcher_stops_at_max_steps(finished_run, tmp_path):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    assert watcher(run).run() == 3, "stops by itself: the checkpoint at max_steps is logged"
    found = records(run)
    assert sorted(found) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert all(r["status"] == "ok" and r["prompt_set"]["response_mode"] == "fixed" for r in found.values())
    frozen = [r["prompt_set"]["responses"] for r in found.values()]
    assert frozen[0] == frozen[1] == frozen[2], "every checkpoint scores the first one's frozen responses"
    summary = json.loads((run / SUMMARY_JSON).read_text())
    assert [row["step"] for row in summary["rows"]] == [2, 4, 6] and summary["recommended"] is not None
    assert (run / "probattr_report.html").is_file()
    stamps = {name: (run / name / "probattr.json").stat().st_mtime_ns for name in found}

    assert watcher(run).run() == 0, "a restarted watcher neither re-probes nor re-logs"
    assert {name: (run / name / "probattr.json").stat().st_mtime_ns for name in found} == stamps
    sweep = run_sweep(SweepConfig(run_dir=str(run), prompts=PROMPTS, responses=frozen[0], settings=SETTINGS,
                                  device="cpu", progress=False, report=False))
    assert sweep.computed == [] and sweep.reused == [2, 4, 6], "the watcher's records are the sweep's"


def test_a_half_written_checkpoint_waits_until_it_is_complete(finished_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(finished_run / "checkpoint-2", run / "checkpoint-2")
    late = run / "checkpoint-4"
    late.mkdir()  # what the Trainer has written so far: half the weights, no trainer_state.json
    weights = (finished_run / "checkpoint-4" / "model.safetensors").read_bytes()
    (late / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert "trainer_state.json" in incomplete(late)
    shutil.copy(finished_run / "checkpoint-4" / "trainer_state.json", late)
    assert "model.safetensors" in incomplete(late), "a truncated weight file is not complete"

    watching = watcher(run, settle_seconds=0.3, stop_step=4)
    thread = threading.Thread(target=watching.run)
    thread.start()
    deadline = time.monotonic() + 60
    while not (run / "checkpoint-2" / "probattr.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert not (late / "probattr.json").exists(), "never probed half-written"
    for item in (finished_run / "checkpoint-4").iterdir():  # the Trainer finishes the checkpoint
        if item.is_file():
            shutil.copy(item, late)
    thread.join(timeout=120)
    assert not thread.is_alive(), "stops at --stop-step 4"
    assert records(run)["checkpoint-4"]["status"] == "ok"
    state = json.loads((run / STATE_FILE).read_text())
    assert sorted(state["logged"]) == ["checkpoint-2", "checkpoint-4"]


def test_the_watch_command_beside_a_real_training_run_logs_into_its_tensorboard_folder(tmp_path):
    """The watcher starts before training, waits for the folder, probes every checkpoint while the
    Trainer runs in another process, logs into the Trainer's own TensorBoard folder and exits 0 by
    itself at the end of training."""
    run = tmp_path / "run"
    watch = subprocess.Popen(
        [sys.executable, "-m", "probattr_monitor", "watch", str(run), "--wait", "120", "--poll", "0.2",
         "--settle", "0.3", "--report-to", "tensorboard", "--device", "cpu", "--max-new-tokens", "3",
         *[arg for prompt in PROMPTS for arg in ("--prompt", prompt)]],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        make_trainer(run, [], report_to="tensorboard", max_steps=6, save_steps=2).train()
        out, err = watch.communicate(timeout=300)
    finally:
        watch.kill()
    assert watch.returncode == 0, err[-3000:]
    assert "stopped after logging 3 checkpoint(s)" in out
    (tensorboard,) = list((run / "runs").iterdir())  # the Trainer's folder, no second one
    steps = tensorboard_scalar_steps(tensorboard)
    assert steps["probattr/noise_tokens"] == [2, 4, 6] and "train/loss" in steps
    assert sorted(records(run)) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_a_signal_stops_the_watcher_cleanly(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    watch = subprocess.Popen([sys.executable, "-m", "probattr_monitor", "watch", str(run), "--poll", "0.2",
                              "--device", "cpu"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # past torch's import: the watcher is polling
    watch.send_signal(signal.SIGTERM)
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err[-2000:]
    assert "stopped after logging 0 checkpoint(s)" in out


@pytest.mark.parametrize("argv, message", [
    (["watch", "{tmp}/absent"], "run folder not found"),
    (["watch", "{tmp}", "--poll", "0"], "--poll should be > 0 seconds, got 0.0"),
    (["watch", "{tmp}", "--settle", "nan"], "--settle should be a finite number of seconds >= 0, got nan"),
])
def test_bad_watch_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    from probattr_monitor.cli import main

    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_a_checkpoint_deleted_before_it_is_probed_is_skipped_with_a_note(finished_run, tmp_path):
    """``save_total_limit`` rotates a checkpoint away between the watcher seeing it complete and
    loading it: a note, no record, no error, and the others are probed as usual."""
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))

    class Rotating(Watcher):
        def _ready(self, state):
            ready = super()._ready(state)
            for checkpoint in ready:
                if checkpoint.name == "checkpoint-4":
                    shutil.rmtree(checkpoint.path)  # what the Trainer's rotation does
            return ready

    import io

    from rich.console import Console

    notes = io.StringIO()
    sweep = SweepConfig(run_dir=str(run), prompts=PROMPTS, settings=SETTINGS, device="cpu", progress=False)
    config = WatchConfig(sweep=sweep, poll_seconds=0.05, settle_seconds=0.0)
    Rotating(config, console=Console(file=notes, width=200)).run()
    assert "checkpoint-4 was deleted before it was probed; skipped" in notes.getvalue()
    assert sorted(records(run)) == ["checkpoint-2", "checkpoint-6"] and not (run / "checkpoint-4").exists()
    summary = json.loads((run / SUMMARY_JSON).read_text())
    assert [row["step"] for row in summary["rows"]] == [2, 6]
    assert json.loads((run / STATE_FILE).read_text())["logged"]["checkpoint-4"]["stamp"] is None
