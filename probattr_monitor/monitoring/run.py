"""One run of the probes over a prompt set, and what it logs: shared by the callback and the sweep,
so the same checkpoint and settings give the same numbers and the same logs everywhere."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..errors import one_line, warn_user
from ..probes.inputs.tokens import vocab_size_of
from ..probes.types.policies import policy_named
from ..probes.types.result import ProbeResult
from ..probes.types.settings import ProbeSettings
from ..sinks import LogEntry
from .metrics import TOKEN_COLUMNS, histogram_values, run_summary, scalar_logs, token_rows


@dataclass
class ProbeRun:
    """The outcome of probing one model state.

    Attributes:
        step: the training step it belongs to.
        results: one :class:`ProbeResult` per prompt (empty when the run raised).
        seconds: wall time of the run.
        error: ``"Type: message"`` when the run raised, else ``None``.
        drift: ``{"drift_attribution", "drift_entropy"}`` against the previous run, when known
            (``monitoring.convergence.drift``).
        provenance: how it was computed (``monitoring.provenance``); empty when unknown.
        guard_log_p: ``log P(r | p)`` of each guard pair (``probes.engines.likelihood``), when a guard set is given.
        settings: the settings it ran with, when they differ from the caller's own (the callback's
            ``max_overhead`` plan); ``None``: the caller's.
        guard_seconds: wall time of the guard's scoring.
    """

    step: int
    results: list = field(default_factory=list)
    seconds: float = 0.0
    error: Optional[str] = None
    drift: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    guard_log_p: list = field(default_factory=list)
    settings: Optional[ProbeSettings] = None
    guard_seconds: float = 0.0

    @property
    def statistics(self) -> dict:
        """``metrics.run_summary`` of the results with the drift against the previous run."""
        return {**run_summary(self.results), **self.drift}

    @property
    def guard_values(self) -> list:
        """:func:`guard_values` of this run."""
        return guard_values(self.results, self.guard_log_p)


def guard_values(results: Sequence[ProbeResult], guard_log_p: Sequence) -> list:
    """What the guard test compares (``monitoring.regression``): per probe prompt ``log P(r | p)``
    (``None`` when its result is invalid), then each guard pair's."""
    return [r.log_p_response if r.valid else None for r in results] + list(guard_log_p)


def run_probes(model, tokenizer, prompts: Sequence[str], responses, settings: ProbeSettings, step: int,
               strict: bool = False, distributed: bool = False, info: Optional[dict] = None,
               guard: Optional[Sequence] = None, fingerprint: bool = True) -> ProbeRun:
    """``probe(...)`` over the prompt set, timed, with its provenance (``info`` when the caller has
    it already, else ``monitoring.provenance.provenance(model, settings)``); an exception becomes
    ``error`` and a warning unless ``strict``, in which case it propagates.

    The provenance gains ``candidate_budget``: the candidates per position the budget policy ran
    with (lower than the setting's when ``max_token_forwards`` capped it; ``None`` for exact).
    ``guard``: ``(prompt, response)`` pairs scored for ``log P(r | p)`` only, one forward each.
    ``fingerprint=False`` leaves the weights' fingerprint out of the provenance (one pass over the
    weights): the callback adds it only to the runs it writes a record of."""
    from ..api import probe
    from .provenance import provenance

    began = time.perf_counter()
    try:
        info = dict(info) if info is not None else provenance(model, settings, fingerprint=fingerprint)
        results = probe(model, tokenizer, list(prompts), responses=responses, settings=settings,
                        distributed=distributed)
        assert isinstance(results, list)  # a list of prompts gives a list of results
        info["candidate_budget"] = _budget_that_ran(model, results, settings)
        guard_began = time.perf_counter()
        guard_log_p = guard_likelihoods(model, tokenizer, guard, settings) if guard else []
        now = time.perf_counter()
        return ProbeRun(step=step, results=results, seconds=now - began, provenance=info,
                        guard_log_p=guard_log_p, guard_seconds=now - guard_began)
    except Exception as caught:  # noqa: BLE001 - a monitor never kills the run it watches unless strict
        if strict:
            raise
        error = one_line(caught)
        warn_user(f"probattr-monitor: the probes failed at step {step}: {error}", stacklevel=2)
        return ProbeRun(step=step, seconds=time.perf_counter() - began, error=error)


def guard_likelihoods(model, tokenizer, guard: Sequence, settings: ProbeSettings) -> list:
    """``log P(r | p)`` of each ``(prompt, response)`` guard pair, encoded as the probes are, in
    eval mode (the caller's training mode restored)."""
    from ..api.inputs import eval_mode, prepare_inputs
    from ..probes.engines.likelihood import response_log_likelihoods

    prompts, responses = [p for p, _ in guard], [r for _, r in guard]
    encoded = prepare_inputs(model, tokenizer, prompts, responses, settings)
    with eval_mode(model):
        return response_log_likelihoods(model, encoded)


def reference_responses(model, tokenizer, prompts: Sequence, settings: ProbeSettings) -> list[list[int]]:
    """Each prompt's greedy continuation by ``model`` (the reference: the base of a fine-tune, say),
    as token ids, encoded as :func:`probattr_monitor.probe` would (chat template included): frozen,
    they are the fixed responses every checkpoint is scored on. Decoded in left-padded batches
    (``probes.inputs.batched``: the ids one prompt at a time gives)."""
    import torch

    from ..api.inputs import eval_mode, prepare_inputs
    from ..probes.inputs.batched import greedy_continuations
    from ..probes.inputs.tokens import stop_token_ids

    encoded = prepare_inputs(model, tokenizer, list(prompts), None, settings)
    rows = [[p.start, *p.prompt_ids] for p, _ in encoded]
    with eval_mode(model), torch.inference_mode():
        continuations = greedy_continuations(model, rows, settings.max_new_tokens, stop_token_ids(model, tokenizer),
                                             rows[0][0])
    return [[int(i) for i in c.ids] for c in continuations]


def _budget_that_ran(model, results: Sequence[ProbeResult], settings: ProbeSettings) -> Optional[int]:
    """Candidates per position of a budgeted run (``None`` for exact): what each result's settings say."""
    vocab_size = vocab_size_of(model)
    if not policy_named(settings.policy_for(vocab_size)).capped:
        return None
    for result in results:
        if result.settings.get("candidate_budget") is not None:
            return int(result.settings["candidate_budget"])
    return settings.budget_for(vocab_size)


def log_entry_of(
    run: ProbeRun, settings: ProbeSettings, errors: int = 0, figures: Optional[bool] = None
) -> LogEntry:
    """What the sinks write for ``run``: scalars, histograms, images (``figures``: ``None`` means
    when matplotlib is installed) and the per-token table."""
    if figures is None:
        figures = importlib.util.find_spec("matplotlib") is not None
    return LogEntry(
        step=run.step,
        scalars=scalar_logs(run.results, run.seconds, errors=errors, drift=run.drift),
        histograms=histogram_values(run.results),
        images=_images(run.results, settings) if figures and run.results else {},
        table_columns=TOKEN_COLUMNS,
        table_rows=token_rows(run.results),
    )


def _images(results: Sequence[ProbeResult], settings: ProbeSettings) -> dict:
    from ..figures import entropy_vs_attribution, figure_to_array, token_heatmap

    images = {
        "probattr/entropy_vs_attribution": figure_to_array(
            entropy_vs_attribution(results, settings.as_band, settings.entropy_threshold, settings.noise_entropy)
        )
    }
    for index, result in enumerate(results):
        if result.tokens:
            images[f"probattr/prompt_{index}/attribution_heatmap"] = figure_to_array(token_heatmap(result))
    return images
