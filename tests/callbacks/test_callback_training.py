"""ProbAttrCallback in real training runs: real Trainer, event files and wandb run files read back."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from probattr_monitor import ProbAttrCallback, ProbeResult, ProbeSettings
from probattr_monitor.errors import InputError

from ..readers import read_tensorboard, read_wandb_history, wandb_run_file
from .helpers import PROMPTS, make_trainer

SCALARS = ["probattr/noise_tokens", "probattr/noise_fraction", "probattr/mean_attribution",
           "probattr/mean_entropy_prompt", "probattr/mean_entropy_context", "probattr/mean_kl",
           "probattr/log_p_response", "probattr/soft_noise", "probattr/probe_seconds", "probattr/prompt_0/noise_tokens",
           "probattr/prompt_1/noise_tokens"]
HISTOGRAMS = ["probattr/attribution_score", "probattr/entropy_prompt", "probattr/entropy_context"]
IMAGES = ["probattr/entropy_vs_attribution", "probattr/prompt_0/attribution_heatmap",
          "probattr/prompt_1/attribution_heatmap"]
CHECKPOINT_STEPS = {2, 4, 6}


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One run reporting to TensorBoard and W&B (offline), checkpoints at steps 2, 4, 6."""
    root = tmp_path_factory.mktemp("logged")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("WANDB_MODE", "offline")
    monkey.setenv("WANDB_DIR", str(root))
    monkey.setenv("WANDB_SILENT", "true")
    callback = ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=4), max_overhead=None)
    trainer = make_trainer(root / "out", [], report_to=["tensorboard", "wandb"])
    callback.attach(trainer)  # shares the Trainer's own TensorBoard writer
    trainer.train()
    import wandb

    wandb.finish()  # transformers leaves the run open; a script's exit would flush and close it
    monkey.undo()
    return root, trainer, callback


def test_tensorboard_events_hold_every_tag_at_every_checkpoint(logged_run):
    root, _, callback = logged_run
    (run_dir,) = list((root / "out" / "runs").iterdir())
    logs = read_tensorboard(run_dir)
    for tag in SCALARS:
        assert set(logs["scalars"][tag]) == CHECKPOINT_STEPS, tag
    for tag in HISTOGRAMS:
        assert logs["histograms"][tag] == CHECKPOINT_STEPS, tag
    for tag in IMAGES:
        assert logs["images"][tag] == CHECKPOINT_STEPS, tag
    assert "train/loss" in logs["scalars"], "the Trainer's own writer is shared, not replaced"
    assert callback.errors == 0


def test_checkpoints_hold_valid_results_matching_the_logs(logged_run):
    root, _, _ = logged_run
    (run_dir,) = list((root / "out" / "runs").iterdir())
    scalars = read_tensorboard(run_dir)["scalars"]
    for step in CHECKPOINT_STEPS:
        record = json.loads((root / "out" / f"checkpoint-{step}" / "probattr.json").read_text(encoding="utf-8"))
        assert record["step"] == step and record["status"] == "ok" and record["checkpoint"] == f"checkpoint-{step}"
        results = [ProbeResult.from_dict(r) for r in record["results"]]
        assert [r.prompt for r in results] == PROMPTS and all(r.valid for r in results)
        assert record["summary"]["noise_tokens"] == sum(r.noise_tokens for r in results)
        assert scalars["probattr/noise_tokens"][step] == record["summary"]["noise_tokens"]
        assert scalars["probattr/mean_attribution"][step] == pytest.approx(
            record["summary"]["mean_attribution"], rel=1e-6
        )
        assert scalars["probattr/prompt_1/noise_tokens"][step] == results[1].noise_tokens
    assert not list((root / "out").rglob(".probattr.json.*.tmp")), "no temporary file left behind"


def test_wandb_offline_run_holds_the_same_values_at_the_same_steps(logged_run):
    root, _, _ = logged_run
    (run_dir,) = list((root / "out" / "runs").iterdir())
    scalars = read_tensorboard(run_dir)["scalars"]
    rows = [row for row in read_wandb_history(wandb_run_file(root)) if "probattr/noise_tokens" in row]
    assert {row["train/global_step"] for row in rows} == CHECKPOINT_STEPS
    for row in rows:
        step = row["train/global_step"]
        for tag in SCALARS:
            assert row[tag] == pytest.approx(scalars[tag][step], rel=1e-5, abs=1e-6), (tag, step)
        assert row["probattr/attribution_score"]["_type"] == "histogram"
        assert row["probattr/entropy_vs_attribution"]["_type"] == "image-file"
        assert row["probattr/tokens"]["_type"] == "table-file"
        record = json.loads((root / "out" / f"checkpoint-{step}" / "probattr.json").read_text(encoding="utf-8"))
        assert row["probattr/tokens"]["nrows"] == sum(len(r["tokens"]) for r in record["results"])


def test_best_checkpoint_is_the_one_with_fewest_noise_tokens(tmp_path):
    """Evaluation at save steps; the Trainer keeps the checkpoint with the fewest noise tokens."""

    class Recorder(TrainerCallback):  # runs after ProbAttrCallback: sees what it added and wrote
        def __init__(self):
            self.events = []

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.events.append(("evaluate", state.global_step, metrics.get("eval_probattr_noise_tokens")))

        def on_save(self, args, state, control, **kwargs):
            written = (tmp_path / f"checkpoint-{state.global_step}" / "probattr.json").is_file()
            self.events.append(("save", state.global_step, written))

    recorder = Recorder()
    callback = ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=4, entropy_threshold=5.5),
                                max_overhead=None)
    trainer = make_trainer(
        tmp_path,
        [callback, recorder],
        max_steps=8,
        save_steps=2,
        learning_rate=2e-2,
        evaluate=True,
        metric_for_best_model="probattr_noise_tokens",
        greater_is_better=False,
        load_best_model_at_end=True,
    )
    trainer.train()
    counts = {
        step: json.loads((tmp_path / f"checkpoint-{step}" / "probattr.json").read_text())["summary"]["noise_tokens"]
        for step in (2, 4, 6, 8)
    }
    assert len(set(counts.values())) > 1, f"the counts should differ in this run: {counts}"
    best_step = min(counts, key=lambda step: (counts[step], step))  # the first minimum wins ties
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    assert trainer.state.best_metric == counts[best_step]
    assert [e for e in recorder.events if e[0] == "evaluate"] == [("evaluate", s, counts[s]) for s in (2, 4, 6, 8)]
    assert all(written for kind, _, written in recorder.events if kind == "save")


def final_weights(tmp_path, callbacks):
    trainer = make_trainer(tmp_path, callbacks, max_steps=5, save_steps=2)
    assert trainer.model.config.resid_pdrop > 0, "dropout on: RNG state matters"
    trainer.train()
    return {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}


def test_training_is_bit_for_bit_identical_with_the_callback(tmp_path):
    without = final_weights(tmp_path / "without", [])
    callback = ProbAttrCallback(prompts=PROMPTS, every_n_steps=1, settings=ProbeSettings(max_new_tokens=4),
                                max_overhead=None)
    with_callback = final_weights(tmp_path / "with", [callback])
    assert callback.errors == 0
    assert without.keys() == with_callback.keys()
    for name in without:
        assert torch.equal(without[name], with_callback[name]), name


def test_a_failing_probe_does_not_stop_training(tmp_path, monkeypatch):
    import probattr_monitor.probes.engines.scores as scores

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(scores, "score_exact", broken)
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", logging_dir=str(tmp_path / "tb"),
                                settings=ProbeSettings(max_new_tokens=2), max_overhead=None)
    trainer = make_trainer(tmp_path / "out", [callback], max_steps=4, save_steps=2)
    with pytest.warns(UserWarning, match="injected failure"):
        trainer.train()
    assert trainer.state.global_step == 4 and callback.errors == 2
    record = json.loads((tmp_path / "out" / "checkpoint-4" / "probattr.json").read_text())
    assert record["status"] == "failed" and "injected failure" in record["error"]
    assert read_tensorboard(tmp_path / "tb")["scalars"]["probattr/errors"] == {2: 1.0, 4: 2.0}


def test_strict_reraises(tmp_path, monkeypatch):
    import probattr_monitor.probes.engines.scores as scores

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(scores, "score_exact", broken)
    callback = ProbAttrCallback(prompts=PROMPTS, strict=True, settings=ProbeSettings(max_new_tokens=2),
                                max_overhead=None)
    trainer = make_trainer(tmp_path, [callback], max_steps=2)
    with pytest.raises(RuntimeError, match="injected failure"):
        trainer.train()


def test_a_diverged_model_is_logged_as_invalid(tmp_path):
    class Diverge(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 4:
                with torch.no_grad():
                    model.transformer.h[0].mlp.c_fc.weight.fill_(float("nan"))

    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", logging_dir=str(tmp_path / "tb"),
                                settings=ProbeSettings(max_new_tokens=2), max_overhead=None)
    trainer = make_trainer(tmp_path / "out", [Diverge(), callback], max_steps=4, save_steps=2)
    trainer.train()
    record = json.loads((tmp_path / "out" / "checkpoint-4" / "probattr.json").read_text())
    assert record["status"] == "ok" and record["summary"]["invalid_prompts"] == 2
    assert all(not r["valid"] and "non-finite" in r["error"] for r in record["results"])
    scalars = read_tensorboard(tmp_path / "tb")["scalars"]
    assert scalars["probattr/invalid_prompts"] == {2: 0.0, 4: 2.0}
    assert 4 not in scalars["probattr/noise_tokens"]


def test_fixed_responses_score_every_checkpoint_on_the_same_text(tmp_path):
    callback = ProbAttrCallback(prompts=PROMPTS, responses=[" the mat", " in the tree"], max_overhead=None)
    make_trainer(tmp_path, [callback], max_steps=4, save_steps=2).train()
    for step in (2, 4):
        record = json.loads((tmp_path / f"checkpoint-{step}" / "probattr.json").read_text())
        assert [r["response"] for r in record["results"]] == [" the mat", " in the tree"]


def test_tensorboard_dir_follows_the_environment_without_a_trainer_writer(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "env-tb"))
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", settings=ProbeSettings(max_new_tokens=2),
                                max_overhead=None)
    make_trainer(tmp_path / "out", [callback], max_steps=2, save_steps=2).train()
    assert set(read_tensorboard(tmp_path / "env-tb")["scalars"]["probattr/noise_tokens"]) == {2}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"report_to": "comet"},
            "report_to should be one or a list of 'auto', 'none', 'all', 'tensorboard', 'wandb', 'mlflow', 'trackio', "
            "'azure_ml', 'clearml', 'codecarbon', 'comet_ml', 'dagshub', 'dvclive', 'flyte', 'kubeflow', 'neptune', "
            "'swanlab', got 'comet'",
        ),
        ({"prompts": []}, "prompts should hold at least one prompt, got an empty list"),
        ({"prompts_file": "no-such-file.txt"}, "prompts file not found: 'no-such-file.txt'"),
        ({"prompts": "a", "prompts_file": "p.txt"}, "give prompts or prompts_file, not both"),
        ({"settings": {"as_band": -1.0}}, "as_band should be a finite number > 0, got -1.0"),
        ({"every_n_steps": 0}, "every_n_steps should be a positive integer or None, got 0"),
        ({"response_mode": "sample"}, "response_mode should be one of 'generate', 'fixed', got 'sample'"),
        ({"responses": "sample"}, "responses should hold one response text per prompt \\(a list\\), got a string"),
        ({"responses": ["a"]}, "responses should hold one response per prompt \\(7\\), got 1"),
        ({"responses": ["a"], "prompts": "b", "response_mode": "generate"}, "given responses are fixed"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(InputError, match=message):
        ProbAttrCallback(**kwargs, max_overhead=None)


def test_prompt_longer_than_context_fails_at_train_start(tmp_path):
    callback = ProbAttrCallback(prompts=["the cat " * 100], max_overhead=None)
    trainer = make_trainer(tmp_path, [callback], max_steps=2)
    with pytest.raises(ValueError, match="more than the model's context of 128"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_missing_tokenizer_fails_at_train_start(tmp_path):
    trainer = make_trainer(tmp_path, [ProbAttrCallback(prompts=PROMPTS, max_overhead=None)], max_steps=2)
    trainer.processing_class = None
    trainer.callback_handler.processing_class = None
    with pytest.raises(InputError, match="ProbAttrCallback needs a tokenizer"):
        trainer.train()


def test_missing_integration_package_names_the_install_command():
    from probattr_monitor.sinks import require

    with pytest.raises(ImportError, match=r"pip install 'probattr-monitor\[wandb\]'"):
        require("no_such_package_for_probattr", "wandb")
