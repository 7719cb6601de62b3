"""``probattr-monitor watch``: a process beside a real training run probes each checkpoint as it
lands, never a half-written one, logs into the Trainer's TensorBoard folder, stops when training
ends or on a signal, and picks up where it left off."""

from __future__ import annotations

import io
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
from rich.console import Console

from probattr_monitor import ProbeSettings
from probattr_monitor.monitoring import overhead
from probattr_monitor.sweep import SUMMARY_JSON, SweepConfig, run_sweep
from probattr_monitor.watch import STATE_FILE, WatchConfig, Watcher, incomplete

from .callbacks.helpers import PROMPTS, make_trainer
from .readers import tensorboard_scalar_steps
from .run_if import run_if

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
    return Watcher(WatchConfig(sweep=sweep, **{"poll_seconds": 0.05, "settle_seconds": 0.0, "max_overhead": None,
                                               **options}))


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
    itself at the end of training. At its default share (5% of a few seconds of training) the
    likelihoods and ``probattr/overhead`` are logged at every checkpoint it probes (the first and
    the last always), and each record holds the positions its plan scored (``max_positions``),
    which the state keeps for a restart."""
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
    (tensorboard,) = list((run / "runs").iterdir())  # the Trainer's folder, no second one
    steps = tensorboard_scalar_steps(tensorboard)
    state = json.loads((run / STATE_FILE).read_text())
    probed = sorted(entry["step"] for entry in state["logged"].values() if not entry.get("skipped"))
    # the first and the last are never skipped; step 4 may be, when loading it took over a second here
    assert probed in ([2, 4, 6], [2, 6]) and f"stopped after logging {len(probed)} checkpoint(s)" in out
    assert steps["probattr/log_p_response"] == steps["probattr/overhead"] == probed and "train/loss" in steps
    found = records(run)
    assert sorted(found) == [f"checkpoint-{step}" for step in probed]
    assert {name: entry["max_positions"] for name, entry in state["logged"].items() if not entry.get("skipped")} == \
        {name: record["settings"]["max_positions"] for name, record in found.items()}
    assert state["spent"]["probe_seconds"] > 0 and state["spent"]["since"] <= time.time()


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
    (["watch", "{tmp}", "--stop-step", "-1"], "--stop-step should be a step >= 0, got -1"),
    (["watch", "{tmp}", "--max-overhead", "0"], "--max-overhead should be a share of the run's time in (0, 1]"),
    (["watch", "{tmp}", "--max-overhead", "five"], "--max-overhead should be a share in (0, 1] (0.05 is 5%) or 'none'"),
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


def _written_ago(run: Path, seconds: float) -> None:
    """Date every checkpoint's ``trainer_state.json`` ``seconds`` ago (the watcher's clock starts at the oldest)."""
    for state_file in run.glob("checkpoint-*/trainer_state.json"):
        os.utime(state_file, (time.time() - seconds, time.time() - seconds))


def test_the_watchers_share_fits_attribution_into_its_account_and_keys_records_by_the_plan(finished_run, tmp_path):
    """``max_overhead``: with the share's account empty, every checkpoint's likelihoods are scored
    and its attribution at no position, the record says so (``max_positions=0``, no AS statistic),
    and a restart under the share reuses those records; a restart without a share probes them again
    at every position. With a long run behind the checkpoints (their clock from the oldest one), the
    account pays for every position at once."""
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    _written_ago(run, 0)
    assert watcher(run, max_overhead=1e-9).run() == 3
    found = records(run)
    assert {r["settings"]["max_positions"] for r in found.values()} == {0}
    assert all(r["summary"]["log_p_response"] is not None and r["summary"]["mean_attribution"] is None
               for r in found.values())
    state = json.loads((run / STATE_FILE).read_text())
    assert {entry["max_positions"] for entry in state["logged"].values()} == {0}
    assert state["spent"]["probe_seconds"] > 0
    rows = json.loads((run / SUMMARY_JSON).read_text())["rows"]
    assert [(row["step"], row["status"]) for row in rows] == [(2, "ok"), (4, "ok"), (6, "ok")]

    assert watcher(run, max_overhead=1e-9).run() == 0, "the records of the plan are this watcher's: none re-probed"
    assert watcher(run, max_overhead=None).run() == 3, "without a share, every position of every checkpoint"
    rows = json.loads((run / SUMMARY_JSON).read_text())["rows"]  # (the new records beside the first: probattr-<key>)
    assert [row["step"] for row in rows] == [2, 4, 6] and all(row["mean_attribution"] is not None for row in rows)

    fresh = Path(shutil.copytree(finished_run, tmp_path / "long"))
    _written_ago(fresh, 10**6)  # 5% of 11.6 days of training pays for everything
    assert watcher(fresh, max_overhead=0.05).run() == 3
    assert all(r["settings"]["max_positions"] is None and r["summary"]["mean_attribution"] is not None
               for r in records(fresh).values())


def test_a_share_too_small_skips_checkpoints_between_the_first_and_the_last(finished_run, tmp_path, monkeypatch):
    """When neither account pays (the cheap part, loading included, over its half and no position
    affordable), a checkpoint is skipped before its model is loaded: no record, no row, said once
    with how to probe it; never the first probe of a session nor the checkpoint at max_steps. A
    restart under the share leaves it skipped; without a share it is probed. (This tiny model's
    probes take far less than the second below which nothing is skipped: the floor is lowered.)"""
    monkeypatch.setattr(overhead, "NEVER_SKIP_SECONDS", 0.0)
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    _written_ago(run, 0)
    notes = io.StringIO()
    config = WatchConfig(sweep=watcher(run).config.sweep, poll_seconds=0.05, settle_seconds=0.0, max_overhead=1e-9)
    assert Watcher(config, console=Console(file=notes, width=300)).run() == 2
    assert sorted(records(run)) == ["checkpoint-2", "checkpoint-6"]
    logged = json.loads((run / STATE_FILE).read_text())["logged"]
    assert logged["checkpoint-4"]["skipped"] is True and "skipped" not in logged["checkpoint-6"]
    assert [row["step"] for row in json.loads((run / SUMMARY_JSON).read_text())["rows"]] == [2, 6]
    said = [line for line in notes.getvalue().splitlines() if "skipped" in line]
    assert len(said) == 1 and "checkpoint-4 skipped" in said[0] and "probattr-monitor sweep" in said[0]

    assert Watcher(config).run() == 0, "a restart under the share leaves it skipped"
    assert watcher(run, max_overhead=None).run() == 3, "without a share: the skipped one, and every position"
    assert [row["step"] for row in json.loads((run / SUMMARY_JSON).read_text())["rows"]] == [2, 4, 6]


def test_a_restart_with_other_responses_probes_the_logged_checkpoints_again(finished_run, tmp_path):
    """The rows of a watcher restarted with other responses (or settings, or prompts) are all of
    the current key: the checkpoints logged before are probed again, none stays failed as "made
    with other settings", and the recommendation covers them all."""
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    assert watcher(run).run() == 3
    sweep = SweepConfig(run_dir=str(run), prompts=PROMPTS, responses=[" a b"] * len(PROMPTS), settings=SETTINGS,
                        device="cpu", progress=False)
    assert Watcher(WatchConfig(sweep=sweep, poll_seconds=0.05, settle_seconds=0.0)).run() == 3
    rows = json.loads((run / SUMMARY_JSON).read_text())["rows"]
    assert [(row["step"], row["status"]) for row in rows] == [(2, "ok"), (4, "ok"), (6, "ok")]
    for name in ("checkpoint-2", "checkpoint-4", "checkpoint-6"):  # beside the first record: probattr-<key>.json
        made = [json.loads(p.read_text())["prompt_set"]["responses"] for p in (run / name).glob("probattr*.json")]
        assert [" a b"] * len(PROMPTS) in made


def test_a_checkpoint_rewritten_after_it_was_logged_is_probed_again(finished_run, tmp_path):
    """A run retrained into the same folder rewrites checkpoint-6 after the watcher logged it: a
    restarted watcher probes it again (before, it stopped at once: the end of training was logged)."""
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    assert watcher(run).run() == 3
    state_file = run / "checkpoint-6" / "trainer_state.json"
    state_file.write_text(state_file.read_text() + "\n")  # the Trainer writes it last, anew
    assert watcher(run, settle_seconds=0.3).run() == 1
    logged = json.loads((run / STATE_FILE).read_text())["logged"]["checkpoint-6"]
    assert logged["stamp"] == [state_file.stat().st_size, state_file.stat().st_mtime_ns]  # the new one


def test_stop_step_is_honoured_when_several_checkpoints_are_ready_at_once(finished_run, tmp_path):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    assert watcher(run, stop_step=3).run() == 2, "4 is the first step past 3: logged, then stop"
    assert sorted(records(run)) == ["checkpoint-2", "checkpoint-4"]
    from probattr_monitor.errors import InputError

    with pytest.raises(InputError, match="stop_step should be a step >= 0, got -1"):
        watcher(run, stop_step=-1)


@pytest.mark.parametrize("saved, why", [
    ({"format": 1, "prompts": PROMPTS, "responses": [[5, 6]], "logged": {}}, "one non-empty list of token ids"),
    ({"format": 1, "prompts": ["other"], "responses": [[5, 6]], "logged": {}}, "frozen for other prompts"),
    ({"format": 1, "responses": None, "logged": {"checkpoint-2": {"step": "two"}}}, "logged entry 'checkpoint-2'"),
    ({"format": 1, "responses": None, "logged": ["checkpoint-2"]}, "'logged' should be an object"),
    ({"format": 1, "responses": None, "logged": {}, "spent": {"probe_seconds": -1}}, "'spent' should map"),
    ({"format": 1, "responses": None, "logged": {"checkpoint-2": {"step": 2, "stamp": None, "max_positions": "all"}}},
     "logged entry 'checkpoint-2'"),
    ([1, 2], "not a format-1 watch state"),
])
def test_a_bad_state_file_is_a_warning_and_a_fresh_start(finished_run, tmp_path, saved, why):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    (run / STATE_FILE).write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match=f"ignoring .*{STATE_FILE} .*{why}.*starting afresh"):
        assert watcher(run).run() == 3
    rows = json.loads((run / SUMMARY_JSON).read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok", "ok", "ok"]


def test_saved_responses_outside_the_vocabulary_are_frozen_afresh(finished_run, tmp_path):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    saved = {"format": 1, "prompts": PROMPTS, "responses": [[10**6]] * len(PROMPTS), "logged": {}}
    (run / STATE_FILE).write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match="token ids outside checkpoint-2's vocabulary; freezing them afresh"):
        assert watcher(run).run() == 3
    assert [row["status"] for row in json.loads((run / SUMMARY_JSON).read_text())["rows"]] == ["ok"] * 3


def test_a_symlinked_checkpoint_is_refused_as_the_sweep_refuses_it(finished_run, tmp_path):
    from probattr_monitor.errors import RunFolderError

    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    (run / "checkpoint-8").symlink_to(run / "checkpoint-6", target_is_directory=True)
    with pytest.raises(RunFolderError, match=r"several checkpoints hold the same step\(s\) \[6\]"):
        run_sweep(SweepConfig(run_dir=str(run), prompts=PROMPTS, settings=SETTINGS, device="cpu", progress=False))
    with pytest.raises(RunFolderError, match=r"same step\(s\) \[6\] \(6: checkpoint-6, checkpoint-8\)"):
        watcher(run).run()
    assert not (run / "checkpoint-6" / "probattr.json").exists()


def test_a_deleted_run_folder_stops_the_watcher_with_one_line(tmp_path):
    from probattr_monitor.errors import RunFolderError

    run = tmp_path / "run"
    run.mkdir()
    watching, raised = watcher(run), []
    thread = threading.Thread(target=lambda: raised.append(pytest.raises(RunFolderError, watching.run)))
    thread.start()
    time.sleep(0.3)
    shutil.rmtree(run)
    thread.join(timeout=30)
    if thread.is_alive():
        watching.stop()
        thread.join()
        pytest.fail("the watcher kept polling a deleted run folder")
    assert "was deleted; stopping" in str(raised[0].value)


def test_a_truncated_bin_weight_file_is_not_complete(finished_run, tmp_path):
    import torch

    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    shutil.copy(finished_run / "checkpoint-2" / "trainer_state.json", folder)
    torch.save({"w": torch.ones(64, 64)}, folder / "pytorch_model.bin")
    assert incomplete(folder) is None
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert "pytorch_model.bin' is truncated or not a torch.save archive" in incomplete(folder)


@run_if(packages=("mlflow",))
def test_the_watcher_logs_into_the_trainers_mlflow_run_by_its_id(finished_run, tmp_path, monkeypatch):
    """--mlflow-run-id (a flag the MLflow tracker declares: it resumes runs) sends the probes into
    that run of a real local store, at each checkpoint's step, not into a new run."""
    from mlflow.tracking import MlflowClient

    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    uri = (tmp_path / "mlruns").as_uri()
    env = {**ENV, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true"}
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)  # no global tracking state in this process
    trainers = client.create_run(client.create_experiment("trainer"))  # the Trainer's run, ended
    client.log_metric(trainers.info.run_id, "loss", 1.0, step=2)
    client.set_terminated(trainers.info.run_id)
    completed = subprocess.run([sys.executable, "-m", "probattr_monitor", "watch", str(run), "--prompt", PROMPTS[0],
                                "--max-new-tokens", "3", "--poll", "0.05", "--settle", "0", "--report-to", "mlflow",
                                "--mlflow-run-id", trainers.info.run_id, "--device", "cpu"],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = client.search_runs([trainers.info.experiment_id])
    assert [r.info.run_id for r in runs] == [trainers.info.run_id], "no second run"
    history = client.get_metric_history(trainers.info.run_id, "probattr/log_p_response")
    assert sorted(m.step for m in history) == [2, 4, 6]


def test_watch_config_takes_run_ids_of_trackers_that_resume(finished_run):
    import warnings

    from probattr_monitor.errors import InputError

    sweep = SweepConfig(run_dir=str(finished_run), prompts=PROMPTS, settings=SETTINGS, device="cpu")
    assert WatchConfig(sweep=sweep, run_ids={"wandb": "abc"}).run_ids == {"wandb": "abc"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = WatchConfig(sweep=sweep, mlflow_run_id="r1")  # 0.3's spelling, until 0.5
    assert old.run_ids == {"mlflow": "r1"} and "run_ids={'mlflow': ...}" in str(caught[0].message)
    with pytest.raises(InputError, match="run_ids names 'tensorboard', which resumes no run; these do: wandb, mlflow"):
        WatchConfig(sweep=sweep, run_ids={"tensorboard": "x"})


def test_open_sinks_takes_the_old_run_id_keywords_with_a_warning_naming_the_caller(tmp_path):
    import warnings

    from probattr_monitor.sinks import open_sinks

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert open_sinks(["tensorboard"], tensorboard_dir=str(tmp_path), mlflow_run_id="r1") != []
    [warning] = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert "open_sinks: mlflow_run_id= is deprecated and will be removed in 0.5" in str(warning.message)
    assert warning.filename == __file__  # the caller's line, not the package's
