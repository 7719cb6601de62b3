"""The probes reach MLflow and trackio as they reach TensorBoard and W&B: a real Trainer run with
``report_to=["mlflow"]`` (a local file store) or ``["trackio"]`` (a local store) and the callback,
read back with each tracker's own reader, in the run the Trainer's integration started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.errors import InputError

from ..run_if import run_if
from .helpers import PROMPTS, make_trainer

ROOT = Path(__file__).resolve().parents[2]


@run_if(packages=("mlflow",))
def test_mlflow_gets_every_probed_step_in_the_trainers_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "probattr-test")
    make_trainer(tmp_path / "out", [ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=3),
                                                     max_overhead=None)],
                                                     report_to=["mlflow"],
                 max_steps=4, save_steps=2).train()
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    [experiment] = [e for e in client.search_experiments() if e.name == "probattr-test"]
    [run] = client.search_runs([experiment.experiment_id])  # one run: the Trainer's, shared
    history = client.get_metric_history(run.info.run_id, "probattr/noise_tokens")
    assert sorted(m.step for m in history) == [2, 4], "once per probed step"
    assert "loss" in run.data.metrics, "the Trainer's own metrics are in the same run"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "probattr/tokens")) == [
        "probattr/tokens/step_2.json", "probattr/tokens/step_4.json"]


@run_if(packages=("trackio",))
def test_trackio_gets_every_probed_step_in_the_trainers_run(tmp_path):
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "trackio_train.py"),
                                str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    logged = json.loads(completed.stdout.strip().splitlines()[-1])
    assert sorted(int(step) for step in logged) == [2, 4]


@run_if(packages=("dvclive",))
def test_every_tracker_of_the_trainer_gets_each_scalar_once_per_probed_step(tmp_path, monkeypatch):
    """``Trainer(callbacks=[...])`` with TensorBoard, W&B (offline) and DVCLive: TensorBoard and W&B
    get the probes from their sinks, in the Trainer's own writer and run, once per probed step and
    never again through the Trainer's integrations (no ``train/probattr/*`` key); DVCLive, which has
    no sink here, gets the scalars through its own Trainer callback, beside the loss of the probed
    step."""
    from ..readers import read_dvclive_metric, read_wandb_history, tensorboard_scalar_steps, wandb_run_file

    monkeypatch.chdir(tmp_path)  # DVCLive writes dvclive/ and dvc.yaml into the working folder
    for name, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(name, value)
    callback = ProbAttrCallback(prompts=PROMPTS, log_figures=False, settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    make_trainer(tmp_path / "out", [callback], report_to=["tensorboard", "wandb", "dvclive"],
                 max_steps=4, save_steps=2).train()
    import wandb

    wandb.finish()
    wandb.teardown()  # the next run's WANDB_DIR is read afresh
    assert callback.errors == 0
    (run_dir,) = list((tmp_path / "out" / "runs").iterdir())  # one TensorBoard run: the Trainer's writer
    steps = tensorboard_scalar_steps(run_dir)
    assert steps["probattr/noise_tokens"] == [2, 4] and steps["probattr/mean_kl"] == [2, 4]
    assert "train/loss" in steps and not [tag for tag in steps if tag.startswith("train/probattr")]
    rows = read_wandb_history(wandb_run_file(tmp_path))
    assert [row["train/global_step"] for row in rows if "probattr/noise_tokens" in row] == [2, 4]
    assert not [key for row in rows for key in row if key.startswith("train/probattr")]
    probes = read_dvclive_metric(tmp_path / "dvclive", "probattr/noise_tokens")
    losses = read_dvclive_metric(tmp_path / "dvclive", "loss")  # DVCLive counts one step per log call
    # the probes run at the end of the step, just before the Trainer logs that step's loss
    assert [step for step, _ in probes] == [1, 4] and [step for step, _ in losses] == [0, 2, 3, 5]
    records = [json.loads((tmp_path / "out" / f"checkpoint-{s}" / "probattr.json").read_text()) for s in (2, 4)]
    assert [value for _, value in probes] == [r["summary"]["noise_tokens"] for r in records]


@run_if(packages=("dvclive",))
def test_a_tracker_that_fails_is_reported_once_and_training_goes_on(tmp_path, monkeypatch):
    """The Trainer's DVCLive integration raising on the probes' logs (a full disk, say): one
    warning naming it, one error counted, no more probes sent to it; the run and its records
    are complete."""
    from transformers.integrations import DVCLiveCallback

    class FullDisk(DVCLiveCallback):
        calls = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if any(key.startswith("probattr/") for key in logs or {}):
                FullDisk.calls += 1
                raise OSError("No space left on device")
            return super().on_log(args, state, control, logs=logs, **kwargs)

    monkeypatch.chdir(tmp_path)
    callback = ProbAttrCallback(prompts=PROMPTS, log_figures=False, settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    trainer = make_trainer(tmp_path / "out", [callback], report_to="none", max_steps=4, save_steps=2)
    trainer.add_callback(FullDisk())
    with pytest.warns(UserWarning, match="the Trainer's dvclive integration failed at step 2.*No space left"):
        trainer.train()
    assert FullDisk.calls == 1 and callback.errors == 1
    assert all((tmp_path / "out" / f"checkpoint-{s}" / "probattr.json").is_file() for s in (2, 4))


@run_if(packages=("dvclive",))
def test_the_scopes_alone_run_on_their_own_schedule_between_probe_runs(tmp_path):
    """``scopes_every_n_steps=1``: the Jacobian Scopes are logged at every step, AS only at the
    saves (steps 3 and 6), and the scopes of a probe step come from the probe run itself."""
    from probattr_monitor import ProbeSettings

    from ..readers import tensorboard_scalar_steps

    settings = ProbeSettings(max_new_tokens=3, scopes=("semantic", "temperature"))
    callback = ProbAttrCallback(prompts=PROMPTS, scopes_every_n_steps=1, report_to="tensorboard",
                                logging_dir=str(tmp_path / "tb"), settings=settings, max_overhead=None)
    make_trainer(tmp_path / "run", [callback], max_steps=6, save_steps=3).train()
    steps = tensorboard_scalar_steps(tmp_path / "tb")
    assert steps["probattr/mean_semantic_scope"] == [1, 2, 3, 4, 5, 6]
    assert steps["probattr/mean_temperature_scope"] == [1, 2, 3, 4, 5, 6]
    assert steps["probattr/mean_attribution"] == [3, 6]
    assert "probattr/mean_fisher_scope" not in steps and callback.errors == 0
    with pytest.raises(InputError, match="scopes_every_n_steps needs the Jacobian Scopes"):
        ProbAttrCallback(prompts=PROMPTS, scopes_every_n_steps=2, max_overhead=None)


def test_report_to_naming_a_tracker_the_trainer_does_not_hold_is_a_warning(tmp_path):
    """``report_to=["dvclive"]`` on the callback, none in the Trainer: the probes went nowhere, silently."""
    from probattr_monitor import ProbAttrCallback, ProbeSettings

    from .helpers import PROMPTS, make_trainer

    callback = ProbAttrCallback(prompts=PROMPTS, report_to=["dvclive"], settings=ProbeSettings(max_new_tokens=2),
                                max_overhead=None)
    with pytest.warns(UserWarning, match="report_to names dvclive, but the Trainer holds no such integration"):
        make_trainer(tmp_path / "out", [callback], report_to="none", max_steps=2, save_steps=2).train()
    assert callback.last_run is not None and callback.last_run.error is None  # probed all the same
