"""ProbAttrEarlyStopping in real Trainer runs: it stops a settled run, lets an improving one go on,
and warns (and logs) when a fine-tune makes the probe statistic regress."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbAttrCallback, ProbAttrEarlyStopping, ProbeSettings
from probattr_monitor.errors import InputError

from ..readers import read_tensorboard
from .helpers import PROMPTS, make_trainer

RESPONSES = [" the mat and the dog", " in the tree while"]


def monitored(tmp_path, learning_rate, statistic="log_p_response", **stopping):
    monitor = ProbAttrCallback(prompts=PROMPTS, responses=RESPONSES, report_to="tensorboard",
                               logging_dir=str(tmp_path / "tb"), max_overhead=None)
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
                               logging_dir=str(tmp_path / "tb"), max_overhead=None)
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
    with pytest.raises(InputError, match="statistic should be one of"):
        ProbAttrEarlyStopping(statistic="accuracy")
    with pytest.raises(InputError, match="patience should be a positive integer or None"):
        ProbAttrEarlyStopping(patience=0)
    with pytest.raises(InputError, match="threshold should be a finite number"):
        ProbAttrEarlyStopping(threshold=float("nan"))
    with pytest.raises(InputError, match="regression_threshold should be a finite number"):
        ProbAttrEarlyStopping(regression_threshold=float("inf"))
    with pytest.raises(InputError, match="greater_is_better should be True, False or None"):
        ProbAttrEarlyStopping(greater_is_better="yes")
    with pytest.raises(InputError, match="monitor should be a ProbAttrCallback"):
        ProbAttrEarlyStopping(monitor="callback")


def test_every_statistic_it_lists_can_be_stopped_on():
    from probattr_monitor.callbacks.early_stopping import GREATER_IS_BETTER
    from probattr_monitor.monitoring.metrics import DRIFT_KEYS, SUMMARY_KEYS

    listed = {*SUMMARY_KEYS, *DRIFT_KEYS}
    assert listed <= set(GREATER_IS_BETTER), f"no direction for {sorted(listed - set(GREATER_IS_BETTER))}"
    for statistic in listed:  # the stopper takes each one with its declared direction
        assert ProbAttrEarlyStopping(statistic=statistic).greater_is_better is GREATER_IS_BETTER[statistic]
    # the directions that decide what "better" means, spelled out: more response likelihood is better,
    # more noise tokens, more entropy and more drift are worse
    assert GREATER_IS_BETTER["log_p_response"] and GREATER_IS_BETTER["mean_attribution"]
    assert not any(GREATER_IS_BETTER[s] for s in ("noise_tokens", "noise_fraction", "mean_entropy_context",
                                                  "drift_attribution", "drift_entropy"))
    with pytest.raises(InputError, match="statistic should be one of"):
        ProbAttrEarlyStopping(statistic="no_such_statistic")


class StopAt:
    """Interrupt a run at a step (after its save), as a crash or a pre-emption would."""

    def __new__(cls, step):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    control.should_training_stop = True

        return _Stop()


SETTLED = dict(patience=2, threshold=1e9)  # no change counts as an improvement: the best stays the first probe


def settled_run(folder, order="monitor first", stop_at=None, resume=None, every_n_steps=None, **extra):
    monitor = ProbAttrCallback(prompts=PROMPTS, responses=RESPONSES, report_to="none", every_n_steps=every_n_steps,
                               settings=ProbeSettings(max_new_tokens=3), max_overhead=None)
    stopper = ProbAttrEarlyStopping(monitor if order != "found" else None, **SETTLED)
    callbacks = [stopper, monitor] if order in ("stopper first", "found") else [monitor, stopper]
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    extra.setdefault("save_steps", 2)
    trainer = make_trainer(folder, callbacks, max_steps=12, learning_rate=5e-3, **extra)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.mark.parametrize("order", ["monitor first", "stopper first", "found"])
def test_the_order_of_the_callbacks_does_not_matter(tmp_path, order):
    assert settled_run(tmp_path / "saves", order).state.global_step == 6, "best at 2, none better at 4, 6: stop"
    # probes every 2 steps and no save among them: the stopper hears of each run however it is listed
    assert settled_run(tmp_path / "every", order, every_n_steps=2, save_steps=100).state.global_step == 6


@pytest.mark.parametrize("restore", [False, True], ids=["own-restore", "trainer-restore"])
def test_a_resumed_run_stops_where_the_uninterrupted_one_does(tmp_path, restore):
    extra = {"restore_callback_states_from_checkpoint": True} if restore else {}
    assert settled_run(tmp_path / "whole").state.global_step == 6
    settled_run(tmp_path / "split", stop_at=4, **extra)
    resumed = settled_run(tmp_path / "split", resume=str(tmp_path / "split" / "checkpoint-4"), **extra)
    assert resumed.state.global_step == 6
    stopper = next(c for c in resumed.callback_handler.callbacks if isinstance(c, ProbAttrEarlyStopping))
    assert stopper.best_step == 2 and stopper.patience_counter == 2


def test_without_a_monitor_training_stops_at_once_with_one_line(tmp_path):
    trainer = make_trainer(tmp_path, [ProbAttrEarlyStopping()], max_steps=2, save_steps=2)
    with pytest.raises(InputError, match="found no ProbAttrCallback in this Trainer"):
        trainer.train()
    assert trainer.state.global_step == 0


# ---- the guard test: confident regressions warn, name the checkpoint, and load_best_model_at_end keeps it ----

GUARD_PROMPTS = ["the cat sat on", "a bird sang", "the dog sat in the", "a cat and a bird"]
GUARD_RESPONSES = [" the mat and the dog", " in the tree while", " sun and the cat", " sang on the hill"]


def narrow_fine_tune(tmp_path, **extra):
    """A converged model fine-tuned on text unlike the guard's: it breaks what the guard measures."""
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from .helpers import tokenizer

    make_trainer(tmp_path / "pretrained", [], max_steps=12, save_steps=12, learning_rate=5e-3).train()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "pretrained" / "checkpoint-12")
    monitor = ProbAttrCallback(prompts=GUARD_PROMPTS, responses=GUARD_RESPONSES, report_to="none", max_overhead=None)
    stopper = ProbAttrEarlyStopping(monitor, patience=None)
    tok = tokenizer()
    narrow = [{"input_ids": tok(t)["input_ids"]} for t in ["zz yy xx ww " * 4] * 16]
    args = TrainingArguments(output_dir=str(tmp_path / "fine-tune"), max_steps=10, save_steps=2, learning_rate=2e-2,
                             per_device_train_batch_size=4, use_cpu=True, report_to="none", seed=0,
                             disable_tqdm=True, **extra)
    trainer = Trainer(model=model, args=args, train_dataset=narrow, eval_dataset=narrow[:4], processing_class=tok,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False), callbacks=[monitor, stopper])
    return trainer, stopper


def test_a_confident_guard_regression_warns_once_and_names_the_checkpoint(tmp_path):
    trainer, stopper = narrow_fine_tune(tmp_path)
    with pytest.warns(UserWarning, match="regressed with 95% confidence") as caught:
        trainer.train()
    messages = [str(w.message) for w in caught if "95% confidence" in str(w.message)]
    assert len(messages) == len(stopper.guard_regressions) == 1, "one regression: one warning"
    step, reference, mean, low, high = stopper.guard_regressions[0]
    assert high < -stopper.guard_tolerance and reference < step
    assert f"go back to is checkpoint-{reference}" in messages[0]


def test_load_best_model_at_end_loads_the_checkpoint_before_the_regression(tmp_path):
    from transformers import AutoModelForCausalLM

    from probattr_monitor.monitoring.provenance import weights_fingerprint

    trainer, stopper = narrow_fine_tune(tmp_path, load_best_model_at_end=True, eval_strategy="steps", eval_steps=2)
    with pytest.warns(UserWarning, match="regressed with 95% confidence"):
        trainer.train()
    reference = stopper.guard_regressions[0][1]
    folder = tmp_path / "fine-tune" / f"checkpoint-{reference}"
    assert trainer.state.best_model_checkpoint == str(folder)
    assert weights_fingerprint(trainer.model) == weights_fingerprint(AutoModelForCausalLM.from_pretrained(folder))


def test_a_converging_run_never_warns(tmp_path):
    import warnings

    monitor = ProbAttrCallback(prompts=GUARD_PROMPTS, responses=GUARD_RESPONSES, report_to="none", max_overhead=None)
    stopper = ProbAttrEarlyStopping(monitor, patience=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, [monitor, stopper], max_steps=16, save_steps=2, learning_rate=5e-3).train()
    assert len(stopper.guard) == 8 and stopper.guard_regressions == []
    assert not [w for w in caught if "95% confidence" in str(w.message)]
