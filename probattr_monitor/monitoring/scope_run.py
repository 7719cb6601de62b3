"""The Jacobian Scopes alone over a prompt set: the callback's cheap statistics between probe runs.

``scope_statistics`` encodes the prompts as ``probe()`` does (the maths guide's conventions, or the chat
template with only the user's tokens scored), takes each prompt's response (given text, frozen
token ids, or the greedy continuation when none is known yet) and returns, per scope named in
``settings.scopes``, the mean over every scored token of every prompt of the scope aggregated over
the response (``probes.engines.scopes``): the same ``mean_<scope>_scope`` a full probe run's summary holds
(``monitoring.metrics.run_summary``). One forward and one or a few backward passes per prompt.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..probes.types.settings import ProbeSettings


def scope_statistics(model, tokenizer, prompts: Sequence, responses: Optional[Sequence],
                     settings: ProbeSettings) -> dict:
    """``{f"mean_{name}_scope": value}`` for each scope of ``settings.scopes`` (see the module
    docstring); ``responses`` is ``None`` (generate) or one entry per prompt (text, ids or ``None``)."""
    from ..api.inputs import eval_mode, prepare_inputs, with_responses
    from ..probes.engines.engine import model_device
    from ..probes.engines.scopes import jacobian_scopes

    if not settings.scopes:
        return {}
    encoded = prepare_inputs(model, tokenizer, list(prompts), None if responses is None else list(responses),
                             settings)
    totals: dict[str, list[float]] = {name: [] for name in settings.scopes}
    with eval_mode(model):
        for prompt_in, response_ids in with_responses(model, tokenizer, encoded, settings):
            if not response_ids:
                continue
            input_ids = torch.tensor([prompt_in.start, *prompt_in.prompt_ids, *response_ids],
                                     device=model_device(model))
            scores = jacobian_scopes(model, input_ids, len(prompt_in.prompt_ids), positions=prompt_in.positions,
                                     scopes=settings.scopes, seed=settings.seed)
            for name in settings.scopes:
                totals[name] += scores.aggregate[name].tolist()
    return {f"mean_{name}_scope": sum(values) / len(values) for name, values in totals.items() if values}
