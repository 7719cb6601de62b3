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

from probattr_monitor import ProbAttrCallback

from .helpers import PROMPTS, make_trainer

ROOT = Path(__file__).resolve().parents[2]


def test_mlflow_gets_every_probed_step_in_the_trainers_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "probattr-test")
    make_trainer(tmp_path / "out", [ProbAttrCallback(prompts=PROMPTS, max_new_tokens=3)], report_to=["mlflow"],
                 max_steps=4, save_steps=2).train()
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    [experiment] = [e for e in client.search_experiments() if e.name == "probattr-test"]
    [run] = client.search_runs([experiment.experiment_id])  # one run: the Trainer's, shared
    history = client.get_metric_history(run.info.run_id, "probattr/noise_tokens")
    assert sorted(m.step for m in history) == [2, 4], "once per probed step"
    assert "loss" in run.data.metrics, "the Trainer's own metrics are in the same run"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "probattr/tokens")) == [
        "probattr/tokens/step_2.json", "probattr/tokens/step_4.json"]


def test_trackio_gets_every_probed_step_in_the_trainers_run(tmp_path):
    pytest.importorskip("trackio")
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "trackio_train.py"),
                                str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    logged = json.loads(completed.stdout.strip().splitlines()[-1])
    assert sorted(int(step) for step in logged) == [2, 4]
