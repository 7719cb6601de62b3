"""A record is reused only for the weights it measured: a run retrained into the same folder, a
record copied or linked from another checkpoint, and an adapter swept on the wrong base are all
recomputed (real Trainer runs, real sweeps in subprocesses)."""

from __future__ import annotations

import os
import shutil

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.monitoring.record import RESULTS_FILE, CheckpointRecord

from ..callbacks.helpers import PROMPTS, make_trainer
from ..cli.test_cli import run_cli

SETTINGS = ["--max-new-tokens", "3", "--no-progress", *[a for p in PROMPTS for a in ("--prompt", p)]]


def log_p(folder) -> list:
    record = CheckpointRecord.load(folder / RESULTS_FILE)
    assert record is not None and record.ok
    return [r["log_p_response"] for r in record.results]


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    """A run whose callback wrote records at steps 2 and 4."""
    folder = tmp_path_factory.mktemp("identity") / "run"
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    make_trainer(folder, [callback], max_steps=4,
                 save_steps=2).train()
    return folder


def test_a_sweep_of_the_callbacks_run_reuses_its_records(probed_run, tmp_path):
    run = shutil.copytree(probed_run, tmp_path / "run")
    completed = run_cli("sweep", run, *SETTINGS)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "computed 0, reused 2" in completed.stdout


def test_a_run_retrained_into_the_same_folder_is_recomputed(probed_run, tmp_path):
    run = shutil.copytree(probed_run, tmp_path / "run")
    stale = log_p(run / "checkpoint-4")
    make_trainer(run, max_steps=4, save_steps=2, learning_rate=5e-2).train()  # new weights, old records left
    completed = run_cli("sweep", run, *SETTINGS)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "computed 2, reused 0" in completed.stdout
    fresh = run_cli("sweep", run, "--out", tmp_path / "fresh", *SETTINGS)
    assert fresh.returncode == 0, fresh.stderr
    assert log_p(run / "checkpoint-4") == pytest.approx(log_p(tmp_path / "fresh" / "checkpoint-4"), abs=1e-6)
    assert log_p(run / "checkpoint-4") != pytest.approx(stale, abs=1e-3)


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_a_record_from_another_checkpoint_is_recomputed(probed_run, tmp_path, how):
    run = shutil.copytree(probed_run, tmp_path / "run")
    own = log_p(run / "checkpoint-4")
    target = run / "checkpoint-4" / RESULTS_FILE
    target.unlink()
    if how == "copy":
        shutil.copy(run / "checkpoint-2" / RESULTS_FILE, target)
    else:
        os.symlink(run / "checkpoint-2" / RESULTS_FILE, target)
    completed = run_cli("sweep", run, *SETTINGS)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "computed 1, reused 1" in completed.stdout
    assert log_p(run / "checkpoint-4") == pytest.approx(own, abs=1e-6)
    assert CheckpointRecord.load(run / "checkpoint-2" / RESULTS_FILE).checkpoint == "checkpoint-2"  # source untouched


def test_the_callback_fingerprints_only_the_runs_it_writes_a_record_of(tmp_path):
    from transformers import AutoModelForCausalLM

    from probattr_monitor.monitoring.provenance import weights_fingerprint

    monitor = ProbAttrCallback(prompts=PROMPTS, report_to="none", every_n_steps=1,
                               settings=ProbeSettings(max_new_tokens=3), max_overhead=None)
    make_trainer(tmp_path, [monitor], max_steps=3, save_steps=2).train()
    assert monitor.last_run.step == 3 and monitor.last_run.provenance["weights"] is None, "step 3: no save, no pass"
    stored = CheckpointRecord.load(tmp_path / "checkpoint-2" / RESULTS_FILE)
    assert stored.provenance["weights"] == weights_fingerprint(AutoModelForCausalLM.from_pretrained(
        tmp_path / "checkpoint-2"))
