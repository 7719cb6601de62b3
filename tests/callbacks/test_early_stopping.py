"""ProbAttrEarlyStopping in real Trainer runs: it stops a settled run, lets an improving one go on,
and warns (and logs) when a fine-tune makes the probe statistic regress."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbAttrCallback, ProbAttrEarlyStopping

from ..readers import read_tensorboard
from .helpers import PROMPTS, make_trainer

RESPONSES = [" the mat and the dog", " in the tree while"]


def monitored(tmp_path, learning_rate, statistic="log_p_response", **stopping):
    monitor = ProbAttrCallback(prompts=PROMPTS, responses=RESPONSES, report_to="tensorboard",
                               logging_dir=str(tmp_path / "tb"))
    stopper = ProbAttrEarlyStopping(monitor, statistic=statistic, **stopping)
    trainer = make_trainer(tmp_path / "out", [monitor, stopper], max_steps=16, save_steps=2,
                           learning_rate=learning_rate)
    return trainer, monitor, stopper


def test_a_settled_run_is_stopped_after_patience_probes_without_improvement(tmp_path):
    trainer, _, stopper = monitored(tmp_path, learning_rate=0.0, patience=2)  # nothing moves: settled
    trainer.train()
    assert trainer.state.global_step == 6, "best at step 2, no improvement at 4 and 6: stop"
    assert stopper.best_step == 2 and stopper.patience_counter == 2


def test_a_run_that_is_still_improving_is_not_stopped(tmp_path):
    trainer, _, stopper = monitored(tmp_path, learning_rate=5e-3, patience=1)
    trainer.train()
    assert trainer.state.global_step == 16
    assert stopper.best_step == 16 and stopper.regressions == []


def test_a_fine_tune_that_breaks_the_model_is_warned_about_and_logged(tmp_path):
    from transformers import AutoModelForCausalLM

    make_trainer(tmp_path / "pretrained", [], max_steps=12, save_steps=12, learning_rate=5e-3).train()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "pretrained" / "checkpoint-12")
    monitor = ProbAttrCallback(prompts=PROMPTS, responses=RESPONSES, report_to="tensorboard",
                               logging_dir=str(tmp_path / "tb"))
    stopper = ProbAttrEarlyStopping(monitor, patience=None, regression_threshold=0.5)
    narrow = ["zz yy xx ww " * 4] * 16  # a slice of text unlike anything the probe responses hold
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from .helpers import tokenizer

    tok = tokenizer()
    args = TrainingArguments(output_dir=str(tmp_path / "fine-tune"), max_steps=10, save_steps=2, learning_rate=2e-2,
                             per_device_train_batch_size=4, use_cpu=True, report_to="none", seed=0,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": tok(t)["input_ids"]} for t in narrow],
                      processing_class=tok, data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
                      callbacks=[monitor, stopper])
    with pytest.warns(UserWarning, match="log_p_response regressed"):
        trainer.train()
    assert trainer.state.global_step == 10, "patience=None: warn, never stop"
    (step, value, best) = stopper.regressions[0]
    assert value < best - 0.5 and stopper.best_step < step
    logged = read_tensorboard(tmp_path / "tb")["scalars"]
    assert logged["probattr/regression"] == {step: 1.0}


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="statistic should be one of"):
        ProbAttrEarlyStopping(statistic="accuracy")
    with pytest.raises(ValueError, match="patience should be a positive integer or None"):
        ProbAttrEarlyStopping(patience=0)
