"""Fit one probe run of a loaded model into what an :class:`~probattr_monitor.monitoring.overhead.OverheadMeter`
holds: the model's token-forward rate, measured once before any attribution scoring, and the
settings :func:`~probattr_monitor.monitoring.overhead.plan_run` leaves. Shared by the callback
(its share of training) and the watcher (its share of its device), so both plan the same way."""

from __future__ import annotations

import time
from typing import Sequence

from ..probes.inputs.tokens import vocab_size_of
from ..probes.types.settings import ProbeSettings
from .overhead import OverheadMeter, plan_run

CALIBRATION_BATCH = 8  # sequences in the forward that measures the first rate (32 took 14 s on SmolLM2 here)


def forward_rate(model, encoded, settings: ProbeSettings) -> float:
    """Token-forwards per second of ``model`` on a batch of :data:`CALIBRATION_BATCH` copies of the
    longest encoded sequence (responses counted at ``max_new_tokens`` when not given), in eval
    mode without gradients: the rate a meter plans its first run with, before any attribution
    scoring was measured (later runs use their own measured rate)."""
    import torch

    from ..api.inputs import eval_mode
    from ..probes.engines.engine import model_device

    length = max(1 + len(p.prompt_ids) + (settings.max_new_tokens if r is None else len(r)) for p, r in encoded)
    ids = torch.full((CALIBRATION_BATCH, length), int(encoded[0][0].start), device=model_device(model))
    with eval_mode(model), torch.inference_mode():
        model(input_ids=ids[:1, :2])  # warm-up: first-call allocations are not the rate
        began = time.perf_counter()
        model(input_ids=ids)
        seconds = time.perf_counter() - began
    return CALIBRATION_BATCH * length / max(seconds, 1e-6)


def fitted_settings(meter: OverheadMeter, model, tokenizer, prompts: Sequence, responses, settings: ProbeSettings
                    ) -> ProbeSettings:
    """``settings`` fitted into the meter's attribution account for one run of ``model`` over
    ``prompts`` / ``responses``: :func:`~probattr_monitor.monitoring.overhead.plan_run` at the
    meter's rate (measured here first, by :func:`forward_rate`, when no run has measured it; those
    seconds are the caller's to count). The run's shape is kept in ``meter.shape``, so that a
    caller can plan the next run before loading its model (the watcher's skip)."""
    from ..api.cost import run_suffix_tokens
    from ..api.inputs import prepare_inputs

    encoded = prepare_inputs(model, tokenizer, prompts, responses, settings)
    if meter.rate is None:
        meter.rate = forward_rate(model, encoded, settings)
    positions = sum(len(prompt_in.positions) for prompt_in, _ in encoded)
    meter.shape = (vocab_size_of(model), positions, run_suffix_tokens(encoded, settings))
    return plan_run(settings, meter.scoring_available(), meter.rate, *meter.shape)
