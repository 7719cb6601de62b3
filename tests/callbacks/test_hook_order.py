"""The order of the Trainer events the callback sees, recorded with a real Trainer (as
transformers' own callback tests record theirs), and where in that order its probes run."""

from __future__ import annotations

import json

from transformers import TrainerCallback

from probattr_monitor import ProbAttrCallback, ProbeSettings

from .helpers import PROMPTS, make_trainer

EVENTS = ("on_train_begin", "on_epoch_begin", "on_step_end", "on_evaluate", "on_save", "on_epoch_end",
          "on_train_end")


class Recording(ProbAttrCallback):
    """ProbAttrCallback that writes down each event it gets, and each probe run it makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, int]] = []
        self.add_listener(lambda run, state, control: self.seen.append(("probe", run.step)))

    def __getattribute__(self, name):
        attribute = super().__getattribute__(name)
        if name in EVENTS:
            def recorded(args, state, control, **kwargs):
                self.seen.append((name, state.global_step))
                return attribute(args, state, control, **kwargs)
            return recorded
        return attribute


class SavedBefore(TrainerCallback):
    """Reads each checkpoint's trainer_state.json right after the save: the callback's frozen
    responses must already be in it."""

    def __init__(self) -> None:
        self.frozen: dict[int, bool] = {}

    def on_save(self, args, state, control, **kwargs):
        path = f"{args.output_dir}/checkpoint-{state.global_step}/trainer_state.json"
        saved = json.load(open(path, encoding="utf-8"))["stateful_callbacks"]["Recording"]
        self.frozen[state.global_step] = all(r is not None for r in saved["attributes"]["responses"])


def test_the_callback_sees_the_trainers_events_in_order_and_probes_before_the_save(tmp_path):
    callback = Recording(prompts=PROMPTS, report_to="none", probe_on_evaluate=True,
                         settings=ProbeSettings(max_new_tokens=2))
    saved = SavedBefore()
    make_trainer(tmp_path, [callback, saved], max_steps=4, save_steps=2, evaluate=True).train()
    events = [(name, step) for name, step in callback.seen if name not in ("on_epoch_begin", "on_epoch_end")]
    assert events[0] == ("on_train_begin", 0) and events[-1] == ("on_train_end", 4)
    at_two = [name for name, step in events if step == 2]
    # one probe per step, at the end of the step, before the Trainer evaluates and saves
    assert at_two == ["on_step_end", "probe", "on_evaluate", "on_save"], at_two
    assert [step for name, step in events if name == "probe"] == [2, 4]
    assert [step for name, step in events if name == "on_step_end"] == [1, 2, 3, 4]
    assert saved.frozen == {2: True, 4: True}  # the state saved with each checkpoint holds what the probe froze
