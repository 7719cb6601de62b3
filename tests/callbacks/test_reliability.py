"""The monitor never harms the run it watches, and its records are what they say (issue: ten faults).

Real Trainer runs throughout. Faults are injected where the world would put them: a TensorBoard
writer whose disk is full, W&B online with no API key, a model that diverges or says nothing
useful at one checkpoint, a run interrupted and resumed.
"""

from __future__ import annotations

import errno
import json
import math
import shutil

import pytest
import torch
from transformers import TrainerCallback

from probattr_monitor import ProbAttrCallback, ProbeSettings, probe
from probattr_monitor.errors import InputError

from ..readers import read_tensorboard
from .helpers import PROMPTS, make_trainer, tokenizer


def record(folder, step):
    return json.loads((folder / f"checkpoint-{step}" / "probattr.json").read_text(encoding="utf-8"))


def probattr_warnings(caught, fragment):
    return [w for w in caught if fragment in str(w.message)]


# ---- 1. a failing sink never stops training ----

def full_disk_writer(log_dir):
    from torch.utils.tensorboard import SummaryWriter

    class FullDisk(SummaryWriter):
        def add_scalar(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

    return FullDisk(log_dir=str(log_dir))


def test_a_full_disk_under_tensorboard_does_not_stop_training(tmp_path):
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard",
                                tensorboard_writer=full_disk_writer(tmp_path / "tb"),
                                settings=ProbeSettings(max_new_tokens=2), max_overhead=None)
    trainer = make_trainer(tmp_path / "out", [callback], max_steps=4, save_steps=2)
    with pytest.warns(UserWarning) as caught:
        trainer.train()
    assert trainer.state.global_step == 4
    assert len(probattr_warnings(caught, "the tensorboard sink failed")) == 1, "reported once, then disabled"
    assert "No space left on device" in str(probattr_warnings(caught, "sink failed")[0].message)
    assert callback.errors == 1
    assert [record(tmp_path / "out", step)["status"] for step in (2, 4)] == ["ok", "ok"], "records still written"


def test_a_sink_that_fails_on_another_callbacks_scalars_is_counted_too(tmp_path):
    """``log_scalars`` (what ProbAttrEarlyStopping logs through) counts a failing sink like a probe's log."""
    callback = ProbAttrCallback(prompts=PROMPTS, probe_on_save=False, report_to="tensorboard",
                                tensorboard_writer=full_disk_writer(tmp_path / "tb"),
                                settings=ProbeSettings(max_new_tokens=2), max_overhead=None)

    class Regression(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                callback.log_scalars(1, {"probattr/regression": 1.0})

    trainer = make_trainer(tmp_path / "out", [callback, Regression()], max_steps=2, save_steps=2)
    with pytest.warns(UserWarning, match="the tensorboard sink failed at step 1"):
        trainer.train()
    assert trainer.state.global_step == 2 and callback.errors == 1


def test_wandb_online_without_an_api_key_does_not_stop_training(tmp_path, monkeypatch):
    import wandb

    wandb.teardown()  # forget the settings an earlier offline run in this process left behind
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name in ("HOME", "WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home"))  # no ~/.netrc, no stored key
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="wandb", settings=ProbeSettings(max_new_tokens=2),
                                max_overhead=None)
    trainer = make_trainer(tmp_path / "out", [callback], max_steps=4, save_steps=2)
    with pytest.warns(UserWarning) as caught:
        trainer.train()
    assert trainer.state.global_step == 4
    failures = probattr_warnings(caught, "the wandb sink failed")
    assert len(failures) == 1 and "UsageError" in str(failures[0].message)
    assert callback.errors == 1
    assert [record(tmp_path / "out", step)["status"] for step in (2, 4)] == ["ok", "ok"]
    wandb.teardown()


# ---- 2. checkpoint selection survives a failed probe ----

class Diverge(TrainerCallback):
    """NaN weights from step ``at`` on."""

    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at:
            with torch.no_grad():
                model.transformer.h[0].mlp.c_fc.weight.fill_(float("nan"))


def test_best_model_selection_survives_a_model_that_diverges_at_an_evaluation(tmp_path):
    class Metrics(TrainerCallback):
        def __init__(self):
            self.seen = {}

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.seen[state.global_step] = metrics.get("eval_probattr_noise_tokens")

    seen = Metrics()
    callback = ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=2), max_overhead=None)
    trainer = make_trainer(tmp_path, [Diverge(at=4), callback, seen], max_steps=4, save_steps=2, evaluate=True,
                           metric_for_best_model="probattr_noise_tokens", greater_is_better=False,
                           load_best_model_at_end=True)
    trainer.train()  # raised KeyError (metric missing) before the fix
    assert seen.seen[4] == math.inf and math.isfinite(seen.seen[2])
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    assert record(tmp_path, 4)["summary"]["invalid_prompts"] == len(PROMPTS)


# ---- 3. fixed responses are fixed: valid, non-empty token ids, kept across resume ----

class Break(TrainerCallback):
    """At step ``at`` (before the probes), make the model diverge (``"nan"``) or always predict
    ``token_id``; :class:`Mend` puts the weights back once the checkpoint is saved."""

    def __init__(self, kind, at, token_id=None):
        self.kind, self.at, self.token_id, self.saved = kind, at, token_id, None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != self.at:
            return
        self.saved = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        with torch.no_grad():
            if self.kind == "nan":
                model.transformer.h[0].mlp.c_fc.weight.fill_(float("nan"))
            else:  # every hidden state becomes e_0; the head's column 0 favours token_id
                model.transformer.ln_f.weight.zero_()
                model.transformer.ln_f.bias.zero_()
                model.transformer.ln_f.bias[0] = 1.0
                head = model.get_output_embeddings().weight
                head[:, 0] = 0.0
                head[self.token_id, 0] = 10.0


class Mend(TrainerCallback):
    def __init__(self, broken):
        self.broken = broken

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.broken.at:
            model.load_state_dict(self.broken.saved)


@pytest.mark.parametrize("kind", ["nan", "whitespace"])
def test_fixed_responses_freeze_only_a_valid_non_empty_continuation(tmp_path, kind):
    tok = tokenizer()
    space_id = tok.convert_tokens_to_ids("Ġ")
    assert tok.decode([space_id]) == " "
    broken = Break(kind, at=2, token_id=space_id)
    callback = ProbAttrCallback(prompts=PROMPTS, response_mode="fixed", settings=ProbeSettings(max_new_tokens=4),
                                max_overhead=None)
    make_trainer(tmp_path, [broken, callback, Mend(broken)], max_steps=6, save_steps=2, tok=tok).train()
    first = record(tmp_path, 2)
    if kind == "nan":
        assert first["summary"]["invalid_prompts"] == len(PROMPTS)
    else:
        assert all(not r["response"].strip() for r in first["results"]), "the broken model only says spaces"
    later = [record(tmp_path, step) for step in (4, 6)]
    assert all(r["status"] == "ok" and r["summary"]["invalid_prompts"] == 0 for r in later)
    frozen = [r["response_token_ids"] for r in later[0]["results"]]
    assert all(tok.decode(ids).strip() for ids in frozen), "frozen at step 4, the first useful continuation"
    assert [r["response_token_ids"] for r in later[1]["results"]] == frozen


def test_fixed_responses_are_the_generated_token_ids_not_a_retokenised_text(tmp_path):
    tok = tokenizer()
    e = tok.convert_tokens_to_ids("e")
    assert tok("eeee", add_special_tokens=False)["input_ids"] != [e] * 4, "'e' x 4 re-tokenises as 'ee' x 2"
    says_e = Break("constant", at=2, token_id=e)  # the first checkpoint's continuation: 'e' 'e' 'e' 'e'
    callback = ProbAttrCallback(prompts=PROMPTS, response_mode="fixed", settings=ProbeSettings(max_new_tokens=4),
                                max_overhead=None)
    make_trainer(tmp_path, [says_e, callback, Mend(says_e)], max_steps=4, save_steps=2, tok=tok).train()
    assert [r["response_token_ids"] for r in record(tmp_path, 2)["results"]] == [[e] * 4] * len(PROMPTS)
    assert [r["response_token_ids"] for r in record(tmp_path, 4)["results"]] == [[e] * 4] * len(PROMPTS)
    assert callback.responses == [[e] * 4] * len(PROMPTS)


class StopAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.integration
def test_a_resumed_run_probes_the_same_fixed_responses_and_logs_the_same_values(tmp_path):
    def callback(tb):
        return ProbAttrCallback(prompts=PROMPTS, response_mode="fixed", report_to="tensorboard", logging_dir=str(tb),
                                settings=ProbeSettings(max_new_tokens=4), max_overhead=None)

    options = dict(max_steps=6, save_steps=2, learning_rate=5e-3)
    make_trainer(tmp_path / "whole", [callback(tmp_path / "tb-whole")], **options).train()
    make_trainer(tmp_path / "split", [callback(tmp_path / "tb-split"), StopAfter(2)], **options).train()
    assert not (tmp_path / "split" / "checkpoint-4").exists()
    resumed = callback(tmp_path / "tb-split")
    make_trainer(tmp_path / "split", [resumed], **options).train(
        resume_from_checkpoint=str(tmp_path / "split" / "checkpoint-2"))

    frozen = [r["response_token_ids"] for r in record(tmp_path / "whole", 2)["results"]]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    at_4 = tmp_path / "whole" / "checkpoint-4"
    regenerated = probe(AutoModelForCausalLM.from_pretrained(at_4), AutoTokenizer.from_pretrained(at_4), PROMPTS,
                        max_new_tokens=4, progress=False)
    assert [r.response_token_ids for r in regenerated] != frozen, "generating again after resume would differ"
    assert resumed.responses == frozen
    whole_scalars = read_tensorboard(tmp_path / "tb-whole")["scalars"]
    split_scalars = read_tensorboard(tmp_path / "tb-split")["scalars"]
    for step in (4, 6):
        whole, split = record(tmp_path / "whole", step), record(tmp_path / "split", step)
        assert whole["prompt_set_hash"] == split["prompt_set_hash"]
        assert [r["response_token_ids"] for r in split["results"]] == frozen
        for tag in ("probattr/noise_tokens", "probattr/mean_attribution", "probattr/log_p_response"):
            assert split_scalars[tag][step] == pytest.approx(whole_scalars[tag][step], rel=1e-4, abs=1e-5), tag
    assert sorted(split_scalars["probattr/noise_tokens"]) == [2, 4, 6], "each step logged once"
    drifts = {step: record(tmp_path / "whole", step)["summary"]["drift_attribution"] for step in (4, 6)}
    assert whole_scalars["probattr/drift_attribution"] == pytest.approx(drifts), "fixed responses: drift from step 4"


# ---- 4. settings= is honoured ----

def test_settings_are_honoured(tmp_path):
    callback = ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=3, entropy_threshold=4.5),
                                max_overhead=None)
    assert callback.settings == ProbeSettings(max_new_tokens=3, entropy_threshold=4.5, progress=False)
    make_trainer(tmp_path, [callback], max_steps=2, save_steps=2).train()
    stored = record(tmp_path, 2)
    assert stored["settings"]["max_new_tokens"] == 3 and stored["settings"]["entropy_threshold"] == 4.5
    assert all(len(r["response_token_ids"]) <= 3 for r in stored["results"])


# ---- a corrupted saved state: a warning, never the end of the resumed run ----

@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fixed") / "run"
    callback = ProbAttrCallback(prompts=PROMPTS, response_mode="fixed", report_to="none",
                                settings=ProbeSettings(max_new_tokens=3), max_overhead=None)
    make_trainer(folder, [callback],
                 max_steps=4, save_steps=2).train()
    return folder


@pytest.mark.parametrize("attributes", [
    {"errors": "x"}, {"responses": "garbage"}, {"responses": [[10**6], [3]]}, "not-an-object",
    {"logged_steps": ["a"]}, {"responses": [[5]]}, {"errors": -1}, {"base_guard": [["a prompt", "not ids"]]},
    {"base_guard": "garbage"}, {"base_guard": [["a prompt", [10**6]]]},
], ids=["errors", "responses-string", "out-of-vocabulary", "attributes", "logged-steps", "one-for-two", "negative",
        "base-guard-text", "base-guard-string", "base-guard-out-of-vocabulary"])
def test_a_corrupted_callback_state_is_a_warning_and_the_run_resumes(fixed_run, tmp_path, attributes):
    run = shutil.copytree(fixed_run, tmp_path / "run")
    state_file = run / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    saved = state["stateful_callbacks"]["ProbAttrCallback"]
    saved["attributes"] = attributes if not isinstance(attributes, dict) else {**saved["attributes"], **attributes}
    state_file.write_text(json.dumps(state), encoding="utf-8")
    shutil.rmtree(run / "checkpoint-4")
    resumed = ProbAttrCallback(prompts=PROMPTS, response_mode="fixed", report_to="none",
                               settings=ProbeSettings(max_new_tokens=3), max_overhead=None)
    with pytest.warns(UserWarning, match="no usable state of this callback"):
        make_trainer(run, [resumed], max_steps=4, save_steps=2).train(resume_from_checkpoint=str(run / "checkpoint-2"))
    assert resumed.errors == 0 and all(r is not None for r in resumed.responses)
    assert record(run, 4)["status"] == "ok"


def test_a_model_that_goes_nan_is_warned_about_at_once(tmp_path):
    class Diverge(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                with torch.no_grad():
                    for parameter in model.parameters():
                        parameter.fill_(float("nan"))

    monitor = ProbAttrCallback(prompts=PROMPTS, report_to="none", settings=ProbeSettings(max_new_tokens=3),
                               max_overhead=None)
    with pytest.warns(UserWarning, match="at step 4 the model gives non-finite logits on 2 of 2 probe prompts"):
        make_trainer(tmp_path, [Diverge(), monitor], max_steps=4, save_steps=2).train()
    assert record(tmp_path, 2)["summary"]["invalid_prompts"] == 0
    assert record(tmp_path, 4)["summary"]["invalid_prompts"] == 2


def test_the_guard_set_is_scored_at_every_probe_run_and_recorded(tmp_path):
    from transformers import AutoModelForCausalLM

    from probattr_monitor.monitoring.record import CheckpointRecord
    from probattr_monitor.monitoring.run import guard_likelihoods

    guard = [("the dog sat in the", " sun and the cat"), ("a cat and a bird", " sang on the hill"),
             ("the cat ran up", " the tree")]
    monitor = ProbAttrCallback(prompts=PROMPTS, report_to="none", guard=guard, settings=ProbeSettings(max_new_tokens=3),
                               max_overhead=None)
    make_trainer(tmp_path, [monitor], max_steps=4, save_steps=2).train()
    for step in (2, 4):
        stored = CheckpointRecord.load(tmp_path / f"checkpoint-{step}" / "probattr.json")
        assert stored.prompt_set["guard"] == [list(pair) for pair in guard]
        model = AutoModelForCausalLM.from_pretrained(tmp_path / f"checkpoint-{step}")
        assert stored.guard_log_p == pytest.approx(guard_likelihoods(model, tokenizer(), guard, monitor.settings),
                                                   abs=1e-5)
    with pytest.raises(InputError, match="guard entry 0 should be a"):
        ProbAttrCallback(prompts=PROMPTS, guard=[("a prompt without a response",)], max_overhead=None)
