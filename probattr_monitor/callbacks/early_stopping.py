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

import warnings
from typing import Optional

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..monitoring.metrics import DRIFT_KEYS, SUMMARY_KEYS
from ..probes.errors import one_line
from .probattr_callback import ProbAttrCallback

# Whether a larger value is better, for every statistic one can stop on.
GREATER_IS_BETTER = {"log_p_response": True, "mean_attribution": True, "noise_tokens": False,
                     "noise_fraction": False, "soft_noise": False, "mean_entropy_prompt": False,
                     "mean_entropy_context": False, "mean_kl": False, "drift_attribution": False,
                     "drift_entropy": False}


class ProbAttrEarlyStopping(TrainerCallback, ExportableState):
    """Stop training once a probe statistic has stopped improving, and warn when it regresses.

    Add it after its monitor: ``Trainer(callbacks=[monitor, ProbAttrEarlyStopping(monitor)])``.
    It looks at every probe run the monitor makes (saves, evaluations, ``every_n_steps``).

    Args:
        monitor: the :class:`ProbAttrCallback` whose probe runs it reads.
        statistic: a summary key (``log_p_response``, ``soft_noise``, ``noise_tokens``, ...) or a
            drift key (``drift_attribution``, ``drift_entropy``). Default ``log_p_response``: with
            fixed responses, the held-out likelihood of the probe set (see the README's study).
        patience: probe runs without an improvement after which training stops (``None``: never
            stop, only warn).
        threshold: the smallest change that counts as an improvement, in the statistic's units.
        regression_threshold: how far (in the statistic's units) the statistic may move away from
            its best before a regression is reported; ``None``: never.
        greater_is_better: the statistic's direction; default from :data:`GREATER_IS_BETTER`.

    Attributes:
        best, best_step: the best value so far and its step.
        patience_counter: probe runs since the last improvement.
        regressions: ``[(step, value, best)]`` of every regression reported.
    """

    def __init__(self, monitor: Optional[ProbAttrCallback] = None, statistic: str = "log_p_response",
                 patience: Optional[int] = 3, threshold: float = 0.0,
                 regression_threshold: Optional[float] = None, greater_is_better: Optional[bool] = None) -> None:
        if statistic not in (*SUMMARY_KEYS, *DRIFT_KEYS):
            raise ValueError(f"statistic should be one of {', '.join((*SUMMARY_KEYS, *DRIFT_KEYS))}, got {statistic!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience should be a positive integer or None, got {patience!r}")
        for name, value in (("threshold", threshold), ("regression_threshold", regression_threshold)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} should be a number >= 0, got {value!r}")
        self.monitor = monitor
        self.statistic = statistic
        self.patience = patience
        self.threshold = float(threshold)
        self.regression_threshold = regression_threshold
        self.greater_is_better = GREATER_IS_BETTER[statistic] if greater_is_better is None else greater_is_better
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.patience_counter = 0
        self.regressions: list = []
        self._seen_step: Optional[int] = None
        self._regressing = False

    def state(self) -> dict:
        """``ExportableState``: the arguments (not the monitor) and the best value so far."""
        return {"args": {"statistic": self.statistic, "patience": self.patience, "threshold": self.threshold,
                         "regression_threshold": self.regression_threshold,
                         "greater_is_better": self.greater_is_better},
                "attributes": {"best": self.best, "best_step": self.best_step,
                               "patience_counter": self.patience_counter, "regressions": self.regressions}}

    def on_train_begin(self, args, state, control, **kwargs):
        if self.monitor is None:
            raise ValueError("ProbAttrEarlyStopping needs its ProbAttrCallback: ProbAttrEarlyStopping(monitor=...)")

    def on_step_end(self, args, state, control, **kwargs):
        self._look(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._look(state, control)

    def on_evaluate(self, args, state, control, **kwargs):
        self._look(state, control)

    def on_save(self, args, state, control, **kwargs):
        self._look(state, control)

    def _look(self, state, control) -> None:
        """Read the monitor's run at this step (once), update the best, stop or warn."""
        run = self.monitor.last_run if self.monitor is not None else None
        if run is None or run.step != state.global_step or self._seen_step == run.step or run.error is not None:
            return
        self._seen_step = run.step
        value = run.statistics.get(self.statistic)
        if value is None:
            return
        sign = 1.0 if self.greater_is_better else -1.0
        if self.best is None or sign * (value - self.best) > self.threshold:
            self.best, self.best_step, self.patience_counter, self._regressing = value, run.step, 0, False
            return
        self.patience_counter += 1
        away = sign * (self.best - value)
        if self.regression_threshold is not None and away > self.regression_threshold and not self._regressing:
            self._regressing = True
            self._report_regression(run.step, value)
        if self.patience is not None and self.patience_counter >= self.patience:
            control.should_training_stop = True

    def _report_regression(self, step: int, value: float) -> None:
        self.regressions.append((step, value, self.best))
        text = (f"probattr-monitor: {self.statistic} regressed to {value:.4g} at step {step}, from its best "
                f"{self.best:.4g} at step {self.best_step}: the run may be breaking the model")
        warnings.warn(text, stacklevel=3)
        assert self.monitor is not None
        self.monitor.log_scalars(step, {"probattr/regression": 1.0, f"probattr/best_{self.statistic}": self.best})
        try:
            import wandb

            if wandb.run is not None and not getattr(wandb.run, "offline", False) \
                    and getattr(getattr(wandb.run, "settings", None), "mode", "") not in ("offline", "disabled"):
                wandb.run.alert(title=f"probattr: {self.statistic} regressed", text=text)
        except Exception as error:  # noqa: BLE001 - an alert must never end the run
            warnings.warn(f"probattr-monitor: the W&B alert failed: {one_line(error)}", stacklevel=3)
