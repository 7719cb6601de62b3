"""guard="base": the model's own answers frozen at train begin as the guard set, off for a model
that has not learnt anything; with a real Trainer, forgetting is seen without a hand-made guard."""

from __future__ import annotations

import logging
import warnings

import pytest

from probattr_monitor import ProbAttrCallback, ProbAttrEarlyStopping, ProbeSettings
from probattr_monitor.callbacks.cost import tokens_per_step
from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama
from probattr_monitor.monitoring.base_guard import UNTRAINED_CHECK_PAIRS, UNTRAINED_ENTROPY_SHARE, freeze_base_guard
from probattr_monitor.monitoring.overhead import (
    FREEZE_SHARE,
    LIKELIHOOD_SHARE,
    freeze_seconds,
    step_seconds_estimate,
)
from probattr_monitor.prompts import general_prompts

from ..callbacks.helpers import make_trainer, tokenizer
from ..callbacks.test_early_stopping import GUARD_PROMPTS, GUARD_RESPONSES

SETTINGS = ProbeSettings(max_new_tokens=6, progress=False)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The tiny GPT-2 after 60 steps at a high learning rate on the helpers' texts (converged on them:
    after 12 steps its loss is still 70% of uniform's and its own answers measure 97%: untrained)."""
    folder = tmp_path_factory.mktemp("pretrained")
    make_trainer(folder, [], max_steps=60, save_steps=60, learning_rate=5e-3).train()
    return folder / "checkpoint-60"


def test_the_pack_is_200_distinct_short_prompts():
    prompts = general_prompts()
    assert len(prompts) == len(set(prompts)) == 200 and max(len(p.split()) for p in prompts) <= 12


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def test_a_randomly_initialised_model_gets_no_base_guard(build):
    """Its answers are noise: measured, the entropy along them is ~100% of uniform, so it is off."""
    tok = tokenizer()
    guard = freeze_base_guard(build(len(tok), seed=0), tok, SETTINGS)
    assert guard.untrained and guard.pairs == [] and guard.entropy_share > 0.97
    assert "guard='base' is off" in guard.describe()


def test_a_trained_model_freezes_its_own_answers_as_token_ids(pretrained):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pretrained)
    was = model.training
    guard = freeze_base_guard(model, tokenizer(), SETTINGS, count=40)
    assert not guard.untrained and guard.entropy_share < UNTRAINED_ENTROPY_SHARE
    assert guard.source == "the model's own samples from its start token"  # no chat template: its own text
    assert 20 <= len(guard.pairs) <= 40 and model.training == was
    assert all(isinstance(p, str) and p and r and all(isinstance(i, int) for i in r) for p, r in guard.pairs)
    again = freeze_base_guard(model, tokenizer(), SETTINGS, count=40)
    assert again.pairs == guard.pairs  # seeded


def test_a_freezing_bounded_in_seconds_freezes_a_prefix_of_the_full_one(pretrained):
    """``seconds=0``: only the first UNTRAINED_CHECK_PAIRS prompts are answered, and they are the
    first pairs of the unbounded freezing (the prompts are taken in one seeded order, so a bounded
    freezing is a uniform sample of the candidates); its description says how many of how many."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pretrained)
    full = freeze_base_guard(model, tokenizer(), SETTINGS, count=40)
    bounded = freeze_base_guard(model, tokenizer(), SETTINGS, count=40, seconds=0.0)
    assert 0 < len(bounded.pairs) <= UNTRAINED_CHECK_PAIRS and bounded.offered == full.offered == 40
    assert bounded.pairs == full.pairs[:len(bounded.pairs)]
    assert f"{len(bounded.pairs)} pairs of 40 (what the share" in bounded.describe()
    assert " of 40 " not in full.describe()


def test_the_freezing_gets_a_share_of_the_runs_expected_training_time():
    """``FREEZE_SHARE x LIKELIHOOD_SHARE x share x max_steps x step seconds``; nothing when the step time or the step
    count is unknown. A step is estimated at 3 forwards of its tokens at the measured rate."""
    assert freeze_seconds(0.05, 1000, 2.0) == pytest.approx(FREEZE_SHARE * LIKELIHOOD_SHARE * 0.05 * 1000 * 2.0)
    assert freeze_seconds(0.05, -1, 2.0) == freeze_seconds(0.05, 1000, None) == 0.0
    assert step_seconds_estimate(400.0, 600.0) == pytest.approx(2.0)
    assert step_seconds_estimate(None, 600.0) is None and step_seconds_estimate(400.0, None) is None


def test_the_tokens_of_a_step_are_read_from_the_dataset_without_touching_its_sampler():
    import torch
    from torch.utils.data import DataLoader, IterableDataset
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="unused", per_device_train_batch_size=4, gradient_accumulation_steps=2,
                             use_cpu=True, report_to="none")
    data = [{"input_ids": list(range(n))} for n in (10, 20, 30)]
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=generator, collate_fn=lambda b: b)
    state = generator.get_state()
    assert tokens_per_step(args, loader) == pytest.approx(4 * 2 * 20)
    assert torch.equal(generator.get_state(), state)  # the data order is what it would have been

    class Stream(IterableDataset):
        def __iter__(self):
            yield {"input_ids": [1, 2]}

    assert tokens_per_step(args, DataLoader(Stream())) is None and tokens_per_step(args, None) is None


def fine_tune(model, tmp_path, monitor, texts):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tok = tokenizer()
    data = [{"input_ids": tok(t)["input_ids"]} for t in texts]
    args = TrainingArguments(output_dir=str(tmp_path / "fine-tune"), max_steps=10, save_steps=2, learning_rate=2e-2,
                             per_device_train_batch_size=4, use_cpu=True, report_to="none", seed=0,
                             disable_tqdm=True)
    stopper = ProbAttrEarlyStopping(monitor, patience=None)
    Trainer(model=model, args=args, train_dataset=data, processing_class=tok,
            data_collator=DataCollatorForLanguageModeling(tok, mlm=False), callbacks=[monitor, stopper]).train()
    return stopper


def test_the_default_callback_sees_forgetting_without_a_guard_set(pretrained, tmp_path):
    """As a README reader adds it (prompts and fixed responses, no guard=): the base guard is frozen
    at train begin and the fine-tune that forgets is warned of, naming where to go back to."""
    from transformers import AutoModelForCausalLM

    monitor = ProbAttrCallback(prompts=GUARD_PROMPTS[:2], responses=GUARD_RESPONSES[:2], max_overhead=None,
                               report_to="none")
    with pytest.warns(UserWarning, match="regressed with 95% confidence"):
        stopper = fine_tune(AutoModelForCausalLM.from_pretrained(pretrained), tmp_path, monitor,
                            ["zz yy xx ww " * 4] * 16)
    assert monitor.base_guard is not None and len(monitor.guard) >= 20
    assert "pairs frozen from the model at train begin" in monitor.base_guard.describe()
    step, reference, *_ = stopper.guard_regressions[0]
    assert step <= 4  # within one checkpoint of the first (the fine-tune breaks it from its first steps)
    record = (tmp_path / "fine-tune" / f"checkpoint-{step}" / "probattr.json").read_text(encoding="utf-8")
    assert "base: " in record and "frozen from the model at train begin" in record


def test_a_run_from_scratch_has_no_base_guard_and_no_warning(tmp_path, caplog):
    monitor = ProbAttrCallback(prompts=GUARD_PROMPTS, responses=GUARD_RESPONSES, max_overhead=None, report_to="none")
    stopper = ProbAttrEarlyStopping(monitor, patience=None)
    with caplog.at_level(logging.WARNING, logger="probattr_monitor"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, [monitor, stopper], max_steps=8, save_steps=2, learning_rate=5e-3).train()
    assert monitor.guard is None and monitor.base_guard.untrained
    assert sum("guard='base' is off" in r.message for r in caplog.records) == 1
    # said at the start: no eval loss, four prompts with fixed responses: the probes cannot decide
    assert sum("what the recommendation can see: no eval loss" in r.getMessage()
               and "cannot tell forgetting from learning" in r.getMessage() for r in caplog.records) == 1
    assert stopper.guard_regressions == [] and not [w for w in caught if "95% confidence" in str(w.message)]


def test_under_max_overhead_a_short_run_freezes_a_small_base_guard(pretrained, tmp_path):
    """A 10-step run of a tiny model: its expected training time pays for no more than the first
    batch of the freezing, and what the freezing took counts against the share."""
    from transformers import AutoModelForCausalLM

    monitor = ProbAttrCallback(prompts=GUARD_PROMPTS[:2], responses=GUARD_RESPONSES[:2], report_to="none")
    fine_tune(AutoModelForCausalLM.from_pretrained(pretrained), tmp_path, monitor, ["zz yy xx ww " * 4] * 16)
    guard = monitor.base_guard
    assert not guard.untrained and 0 < len(guard.pairs) <= UNTRAINED_CHECK_PAIRS < guard.offered
    assert monitor.meter.probe_seconds >= guard.seconds and " of 200 (what the share" in guard.describe()
