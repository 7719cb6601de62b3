"""``ProbAttrEarlyStopping``: stop a run whose probe statistic has settled; warn when it regresses.

Orchestration only: it reads the statistic of the probe run its :class:`ProbAttrCallback` made at
this step, keeps the best value, and acts the way transformers' ``EarlyStoppingCallback`` does
with ``metric_for_best_model`` (``patience`` probes without an improvement of more than
``threshold``). A *regression* (the statistic worse than its best by more than
``regression_threshold``, after that best) is what a fine-tune that is breaking the model looks
like: it is warned about, logged as ``probattr/regression`` through the monitor's sinks, and sent
as a ``wandb.alert`` when a W&B run is online.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..errors import InputError, one_line, warn_user
from ..monitoring.regression import DEFAULT_TOLERANCE, guard_comparisons
from ..monitoring.statistics import STATISTICS, statistic_named
from ..probes.maths.values import is_finite_number
from .probattr_callback import ProbAttrCallback, monitors_of


def __getattr__(name: str):
    """``GREATER_IS_BETTER`` (``{statistic: whether larger is better}``), derived when read from
    the statistics declared in ``monitoring.statistics``."""
    if name == "GREATER_IS_BETTER":
        return {n: s.greater_is_better for n, s in STATISTICS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ProbAttrEarlyStopping(TrainerCallback, ExportableState):
    """Stop training once a probe statistic has stopped improving, and warn when it regresses.

    ``Trainer(callbacks=[monitor, ProbAttrEarlyStopping(monitor)])``, in either order: the monitor
    tells it of every probe run it makes (saves, evaluations, ``every_n_steps``) as the run ends.
    Without ``monitor`` it uses the :class:`ProbAttrCallback` of the same Trainer, found when
    training starts; that is how it works when the Trainer rebuilds it from its saved arguments
    (``TrainingArguments(restore_callback_states_from_checkpoint=True)``). On a resumed run it
    takes back its best value, patience counter and regressions from the checkpoint, as
    transformers' ``EarlyStoppingCallback`` keeps going where it stopped.

    Args:
        monitor: the :class:`ProbAttrCallback` whose probe runs it reads (``None``: the one in the
            same Trainer; training stops at its first step with an ``InputError`` if there is none).
        statistic: a summary key (``log_p_response``, ``soft_noise``, ``noise_tokens``, ...) or a
            drift key (``drift_attribution``, ``drift_entropy``). Default ``log_p_response``: with
            fixed responses, the held-out likelihood of the probe set (docs: "Choosing a checkpoint").
        patience: probe runs without an improvement after which training stops (``None``: never
            stop, only warn).
        threshold: the smallest change that counts as an improvement, in the statistic's units.
        regression_threshold: how far (in the statistic's units) the statistic may move away from
            its best before a regression is reported; ``None`` (default): never.
        greater_is_better: the statistic's direction; default the statistic's own (``monitoring.statistics``).
        guard_tolerance: with fixed responses, the guard test of ``monitoring.regression`` on the
            per-prompt ``log P(r | p)``: a regression is reported at the first probe run whose 95%
            paired interval against the best earlier run lies below ``-guard_tolerance`` nats per
            prompt, again at each new regression (after the guard has recovered), naming the
            checkpoint to go back to; with ``load_best_model_at_end`` the Trainer is pointed at that
            checkpoint. ``None``: off. Default: the tolerance the signal study chose.

    Attributes:
        best, best_step: the best value so far and its step.
        patience_counter: probe runs since the last improvement.
        regressions: ``[(step, value, best)]`` of every regression reported.
        regressing: a regression was reported and the statistic has not recovered its best since.
        guard: ``[{"step", "prompt_log_p"}]`` of every probe run with fixed responses.
        guard_regressions: ``[(step, reference step, mean, low, high)]`` of every guard regression reported.
    """

    def __init__(self, monitor: Optional[ProbAttrCallback] = None, statistic: str = "log_p_response",
                 patience: Optional[int] = 3, threshold: float = 0.0,
                 regression_threshold: Optional[float] = None, greater_is_better: Optional[bool] = None,
                 guard_tolerance: Optional[float] = DEFAULT_TOLERANCE) -> None:
        if monitor is not None and not isinstance(monitor, ProbAttrCallback):
            raise InputError(f"monitor should be a ProbAttrCallback or None, got {type(monitor).__name__}")
        if not isinstance(statistic, str) or statistic not in STATISTICS:
            raise InputError(f"statistic should be one of {', '.join(STATISTICS)}, got {statistic!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise InputError(f"patience should be a positive integer or None, got {patience!r}")
        for name, value in (("threshold", threshold), ("regression_threshold", regression_threshold),
                            ("guard_tolerance", guard_tolerance)):
            if value is not None and not (is_finite_number(value) and value >= 0):
                raise InputError(f"{name} should be a finite number >= 0, got {value!r}")
        if greater_is_better is not None and not isinstance(greater_is_better, bool):
            raise InputError(f"greater_is_better should be True, False or None, got {greater_is_better!r}")
        self.monitor = monitor
        self.statistic = statistic
        self.patience = patience
        self.threshold = float(threshold)
        self.regression_threshold = regression_threshold
        self.greater_is_better = (statistic_named(statistic).greater_is_better if greater_is_better is None
                                  else greater_is_better)
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.patience_counter = 0
        self.regressions: list = []
        self.regressing = False
        self.guard_tolerance = guard_tolerance
        self.guard: list = []
        self.guard_regressions: list = []
        self.guard_regressing = False
        self._seen_step: Optional[int] = None
        self._args: Any = None

    def state(self) -> dict:
        """``ExportableState``: the arguments (not the monitor) and what it has seen so far."""
        return {"args": {"statistic": self.statistic, "patience": self.patience, "threshold": self.threshold,
                         "regression_threshold": self.regression_threshold,
                         "greater_is_better": self.greater_is_better, "guard_tolerance": self.guard_tolerance},
                "attributes": {"best": self.best, "best_step": self.best_step,
                               "patience_counter": self.patience_counter, "regressions": self.regressions,
                               "regressing": self.regressing, "guard": self.guard,
                               "guard_regressions": self.guard_regressions,
                               "guard_regressing": self.guard_regressing}}

    def on_train_begin(self, args, state, control, **kwargs):
        """Take back the state saved in the checkpoint the run resumes from, and connect to the monitor."""
        self._args = args
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and saved is not None:
            self._restore(saved)
        self._connect(args, required=False)

    def on_step_begin(self, args, state, control, **kwargs):
        self._connect(args, required=True)  # every callback's on_train_begin has run by now

    def on_save(self, args, state, control, **kwargs):
        """While the guard stays regressed, keep the Trainer pointed at the checkpoint before it (the
        Trainer picks its own best at each save, before this runs)."""
        if self.guard_regressing and self.guard_regressions and args.load_best_model_at_end:
            folder = _saved_checkpoint(args, self.guard_regressions[-1][1])
            if folder is not None:
                state.best_model_checkpoint = str(folder)

    def _connect(self, args, required: bool) -> None:
        if self.monitor is None:
            found = monitors_of(args)
            if not found:
                if required:
                    raise InputError("ProbAttrEarlyStopping found no ProbAttrCallback in this Trainer: add one, or "
                                     "pass ProbAttrEarlyStopping(monitor=...)")
                return
            self.monitor = found[0]
        self.monitor.add_listener(self._observe)

    def _restore(self, saved: Any) -> None:
        """Take back :meth:`state`'s attributes when they were saved for the same statistic and
        every value is usable; else warn and start afresh."""
        for entry in saved if isinstance(saved, list) else [saved]:
            args = entry.get("args") if isinstance(entry, dict) else None
            attributes = entry.get("attributes") if isinstance(entry, dict) else None
            if not isinstance(args, dict) or args.get("statistic") != self.statistic:
                continue
            if isinstance(attributes, dict) and _usable(attributes):
                self.best, self.best_step = attributes.get("best"), attributes.get("best_step")
                self.patience_counter = attributes.get("patience_counter", 0)
                self.regressions = [tuple(r) for r in attributes.get("regressions", [])]
                self.regressing = attributes.get("regressing", False)
                self.guard = list(attributes.get("guard", []))
                self.guard_regressions = [tuple(r) for r in attributes.get("guard_regressions", [])]
                self.guard_regressing = attributes.get("guard_regressing", False)
                return
        self.best, self.best_step, self.patience_counter, self.regressions, self.regressing = None, None, 0, [], False
        self.guard, self.guard_regressions, self.guard_regressing = [], [], False
        warn_user("probattr-monitor: the checkpoint this run resumes from holds no usable state of "
                      f"ProbAttrEarlyStopping for {self.statistic}: its patience starts afresh", stacklevel=3)

    def _observe(self, run, state, control) -> None:
        """A probe run has ended: update the best, stop or warn."""
        if run.error is not None or self._seen_step == run.step:
            return
        self._seen_step = run.step
        self._guard_test(run, state)
        value = run.statistics.get(self.statistic)
        if not is_finite_number(value):
            return
        sign = 1.0 if self.greater_is_better else -1.0
        if self.best is None or sign * (value - self.best) > self.threshold:
            self.best, self.best_step, self.patience_counter, self.regressing = value, run.step, 0, False
            return
        self.patience_counter += 1
        away = sign * (self.best - value)
        if self.regression_threshold is not None and away > self.regression_threshold and not self.regressing:
            self.regressing = True
            self._report_regression(run.step, value)
        if self.patience is not None and self.patience_counter >= self.patience and control is not None:
            control.should_training_stop = True

    def _guard_test(self, run, state) -> None:
        """The paired test of this run's per-prompt ``log P(r | p)`` against the best earlier run."""
        if self.guard_tolerance is None or self.monitor is None or self.monitor.response_mode != "fixed":
            return
        values = run.guard_values
        if self.guard and len(self.guard[-1]["prompt_log_p"]) != len(values):
            return  # another prompt set: nothing to pair with
        self.guard.append({"step": run.step, "prompt_log_p": values})
        comparisons = guard_comparisons(self.guard, self.guard_tolerance)
        latest = comparisons[-1] if comparisons and comparisons[-1].step == run.step else None
        if latest is None or not latest.regressed:
            self.guard_regressing = False
            return
        if self.guard_regressing:
            return
        self.guard_regressing = True
        self.guard_regressions.append((run.step, latest.reference, latest.mean, latest.low, latest.high))
        folder = _saved_checkpoint(self._args, latest.reference)
        go_back = f"checkpoint-{latest.reference}" + ("" if folder is not None else " (not saved)")
        if folder is not None and getattr(self._args, "load_best_model_at_end", False):
            state.best_model_checkpoint = str(folder)  # the Trainer loads it at the end of training
            go_back += "; load_best_model_at_end will load it"
        text = (f"probattr-monitor: the guard set regressed with 95% confidence at step {run.step}: "
                f"{latest.describe()}; the best checkpoint to go back to is {go_back}")
        warn_user(text, stacklevel=3)
        assert self.monitor is not None
        self.monitor.log_scalars(run.step, {"probattr/guard_regression": 1.0,
                                            "probattr/guard_difference": float(latest.mean or 0.0)})
        self._alert(f"probattr: the guard set regressed at step {run.step}", text)

    def _report_regression(self, step: int, value: float) -> None:
        self.regressions.append((step, value, self.best))
        text = (f"probattr-monitor: {self.statistic} regressed to {value:.4g} at step {step}, from its best "
                f"{self.best:.4g} at step {self.best_step}: the run may be breaking the model")
        warn_user(text, stacklevel=3)
        assert self.monitor is not None
        self.monitor.log_scalars(step, {"probattr/regression": 1.0, f"probattr/best_{self.statistic}": self.best})
        self._alert(f"probattr: {self.statistic} regressed", text)

    @staticmethod
    def _alert(title: str, text: str) -> None:
        """``wandb.run.alert`` when a W&B run is online; never raises."""
        try:
            import wandb

            if wandb.run is not None and not getattr(wandb.run, "offline", False) \
                    and getattr(getattr(wandb.run, "settings", None), "mode", "") not in ("offline", "disabled"):
                wandb.run.alert(title=title, text=text)
        except Exception as error:  # noqa: BLE001 - an alert must never end the run
            warn_user(f"probattr-monitor: the W&B alert failed: {one_line(error)}", stacklevel=3)


def _saved_checkpoint(args, step: Optional[int]) -> Optional[Path]:
    """The folder the Trainer saved at ``step`` (``output_dir/checkpoint-<step>``), if it exists."""
    if args is None or step is None:
        return None
    folder = Path(args.output_dir) / f"checkpoint-{step}"
    return folder if folder.is_dir() else None


def _usable(attributes: dict) -> bool:
    """Whether saved attributes hold a best value and step, a count and regressions of the right types."""
    best, step, counter = attributes.get("best"), attributes.get("best_step"), attributes.get("patience_counter", 0)
    regressions = attributes.get("regressions", [])
    return ((best is None and step is None) or (is_finite_number(best) and isinstance(step, int))) \
        and isinstance(counter, int) and not isinstance(counter, bool) and counter >= 0 \
        and isinstance(regressions, list) and all(isinstance(r, list) and len(r) == 3 for r in regressions) \
        and isinstance(attributes.get("regressing", False), bool) \
        and isinstance(attributes.get("guard", []), list) and all(
            isinstance(g, dict) and isinstance(g.get("step"), int) and isinstance(g.get("prompt_log_p"), list)
            for g in attributes.get("guard", []))
