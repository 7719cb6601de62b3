"""The probes' scalars through the Trainer's own tracker integrations.

transformers reports to 14 trackers through callbacks in its ``CallbackHandler``
(``integrations.INTEGRATION_TO_CALLBACK``: ``CometCallback``, ``ClearMLCallback``,
``DVCLiveCallback``, ``NeptuneCallback``, ``SwanLabCallback``, ...). Four of them have a sink of
this package (:data:`~probattr_monitor.sinks.REPORT_TARGETS`: TensorBoard, W&B, MLflow, trackio),
which also takes histograms, figures and the token table. Every other integration the Trainer
holds gets the probes' scalars the way it gets the loss: its ``on_log(args, state, control,
logs=scalars)``, called once per probed step with ``state.global_step`` at that step. Nothing is
sent to an integration whose tracker already has a sink (so nothing is logged twice), and each
integration logs the keys as it logs the Trainer's (most prefix ``train/``; DVCLive counts one of
its steps per ``on_log`` call).

The handler is the one :meth:`ProbAttrCallback.attach` was given, else the ``CallbackHandler``
whose list holds the callback, found once at ``on_train_begin`` (``Trainer(callbacks=[...])``
passes no handler to its callbacks).
"""

from __future__ import annotations

import copy
import gc
from typing import Any, Optional, Sequence

from transformers.trainer_callback import TrainerControl

from ..errors import one_line, warn_user


def integration_names() -> dict:
    """``{callback class: report_to name}`` of the Trainer's tracker integrations."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return {klass: name for name, klass in INTEGRATION_TO_CALLBACK.items()}


def integration_of(callback) -> Optional[str]:
    """The ``report_to`` name of the integration ``callback`` is an instance of (the most derived
    one: ``DagsHubCallback`` is ``"dagshub"``, though it is an ``MLflowCallback``), or ``None``."""
    names = integration_names()
    for klass in type(callback).__mro__:
        if klass in names:
            return names[klass]
    return None


def handler_holding(callback) -> Any:
    """The ``CallbackHandler`` whose ``callbacks`` list holds ``callback``, or ``None``: one walk
    of the objects that refer to it (a list, then the handler or its ``__dict__``)."""
    from transformers.trainer_callback import CallbackHandler

    for holder in gc.get_referrers(callback):
        if not isinstance(holder, list) or not any(item is callback for item in holder):
            continue
        for owner in gc.get_referrers(holder):
            candidates = [owner] if isinstance(owner, CallbackHandler) else (
                [o for o in gc.get_referrers(owner) if isinstance(o, CallbackHandler)] if isinstance(owner, dict)
                else [])
            for handler in candidates:
                if handler.callbacks is holder:
                    return handler
    return None


class IntegrationForwarder:
    """Send ``{tag: value}`` at a step to the Trainer's integrations that have no sink here.

    ``handler``: the Trainer's ``CallbackHandler`` (or ``None``: nothing is forwarded).
    ``wanted``: the ``report_to`` names to forward to, or ``None`` for every integration the
    Trainer holds. ``covered``: the trackers that have a sink (never forwarded to, nor any
    integration built on one of them). An integration whose ``on_log`` raises is reported once and
    skipped for the rest of the run (with ``strict`` the exception propagates).
    """

    def __init__(self, handler, wanted: Optional[Sequence[str]], covered: Sequence[str], strict: bool = False):
        self.strict = strict
        self.failures = 0
        self.callbacks: list = []
        held = set()
        for callback in (handler.callbacks if handler is not None else []):
            name = integration_of(callback)
            held.add(name)
            if name is None or (wanted is not None and name not in wanted):
                continue
            names = {integration_names().get(klass) for klass in type(callback).__mro__}
            if not names & set(covered):
                self.callbacks.append(callback)
        missing = [name for name in wanted or () if name not in covered and name not in held]
        if handler is not None and missing:
            from ..errors import warn_user

            warn_user(f"probattr-monitor: report_to names {', '.join(missing)}, but the Trainer holds no such "
                      "integration, so the probes are not sent there; add it to TrainingArguments(report_to=...)",
                      stacklevel=2)

    @property
    def names(self) -> list[str]:
        """The ``report_to`` names forwarded to."""
        return [str(integration_of(callback)) for callback in self.callbacks]

    def forward(self, args, state, step: int, scalars: dict, model=None) -> int:
        """Call each integration's ``on_log`` with ``scalars`` as the logs of ``step``; returns how
        many failed."""
        if not self.callbacks or not scalars:
            return 0
        if state.global_step != step:
            state = copy.copy(state)
            state.global_step = step
        failed = 0
        for callback in list(self.callbacks):
            try:
                callback.on_log(args, state, TrainerControl(), model=model, logs=dict(scalars))
            except Exception as error:  # noqa: BLE001 - a tracker must never end the run it logs
                if self.strict:
                    raise
                failed += 1
                self.callbacks.remove(callback)
                warn_user(f"probattr-monitor: forwarding the probes to the Trainer's {integration_of(callback)} "
                              f"integration failed at step {step}; it gets no more probes this run: "
                              f"{one_line(error)}", stacklevel=3)
        self.failures += failed
        return failed
