"""``select_tokens``: the set of prompt tokens a set method removes at a given size, per prompt
(what ``probattr-monitor joint`` prints and writes).

Each prompt is encoded as :func:`probattr_monitor.probe` encodes it (the maths guide's conventions or the
chat template, whose user tokens alone are candidates); the response is the given one or the
greedy continuation. The set is chosen by JoPA (``method="jopa"``) or by the greedy search for the
largest joint attribution score (``"joint_as"``); its *probability faithfulness* is the drop of
``log P(r | p)`` when those tokens are replaced by the baseline token.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..errors import ProbeInputError
from ..probes.types.settings import ProbeSettings
from .methods import SET_METHODS, select_sets
from .metrics import probability_faithfulness, sparsity_size
from .scorer import ResponseScorer, baseline_token_id


def select_tokens(model, tokenizer, prompts: Sequence, responses: Optional[Sequence] = None,
                  method: str = "joint_as", size: Optional[int] = None, sparsity: Optional[float] = None,
                  settings: Optional[ProbeSettings] = None, seed: int = 0) -> list[dict]:
    """One dict per prompt: ``prompt``, ``response``, ``tokens`` (the candidate tokens), ``method``,
    ``size``, ``removed`` (candidate indices) and ``removed_tokens``, ``log_p_response``,
    ``probability_faithfulness`` (nats) and ``search`` (the method's settings, seed and, for
    ``joint_as``, ``AS_S`` with its standard error). Give ``size`` or ``sparsity`` (``size =
    ceil(sparsity x n)``), not both."""
    from ..api.inputs import eval_mode, prepare_inputs, with_responses
    from ..probes.engines.engine import model_device

    if method not in SET_METHODS:
        raise ProbeInputError(f"unknown set method {method!r}; choose from {', '.join(SET_METHODS)}")
    if (size is None) == (sparsity is None):
        raise ProbeInputError("give the set's size or its sparsity (a share of the prompt's tokens), one of them")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ProbeInputError(f"size should be a positive integer, got {size!r}")
    if sparsity is not None and (isinstance(sparsity, bool) or not isinstance(sparsity, (int, float))
                                 or not 0 < sparsity <= 1):
        raise ProbeInputError(f"sparsity should lie in (0, 1], got {sparsity}")
    settings = (settings or ProbeSettings()).replace(progress=False)
    baseline = baseline_token_id(tokenizer)
    encoded = prepare_inputs(model, tokenizer, list(prompts), responses, settings)
    rows = []
    with eval_mode(model):
        for prompt, (prompt_in, response_ids) in zip(prompts, with_responses(model, tokenizer, encoded, settings)):
            scorer = ResponseScorer(model, prompt_in.start, prompt_in.prompt_ids, response_ids, prompt_in.positions,
                                    baseline)
            n = scorer.n_features
            chosen_size = min(n, size) if size is not None else sparsity_size(n, float(sparsity or 0.0))
            _, sets, search = select_sets(method, scorer, [chosen_size], seed, settings)
            removed = sorted(sets[chosen_size])
            tokens = [tokenizer.decode([prompt_in.prompt_ids[k]]) for k in prompt_in.positions]
            rows.append({"prompt": prompt, "response": tokenizer.decode(response_ids), "tokens": tokens,
                         "method": method, "size": chosen_size, "removed": removed,
                         "removed_tokens": [tokens[j] for j in removed],
                         "log_p_response": scorer.value(frozenset()),
                         "probability_faithfulness": probability_faithfulness(frozenset(removed), scorer.value),
                         "search": search, "device": str(model_device(model))})
    return rows
