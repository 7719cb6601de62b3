"""``log P(r | s, p)`` of fixed responses, one forward per prompt: the guard set's statistic.

The probes' attribution scores cost ``|candidates| x positions`` forwards per prompt; the
likelihood of a fixed response costs one. So the guard set that regression tests compare across
checkpoints (``monitoring.regression``) can hold hundreds of prompts, while AS, entropies and the
noise count are computed on a small probe set. Token conventions are the probes' own (the maths guide:
``[s] + p + r``, the chat template when the settings use it), so a guard prompt scored here and
the same prompt probed give the same ``log_p_response``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from ...errors import NonFiniteLogitsError
from .engine import model_device, next_token_log_probs

LIKELIHOOD_BATCH = 8  # pairs scored in one forward (SmolLM2 on 2 CPU cores: 23 pairs 3.1 s one at a time, 1.8 s by 8)


@torch.inference_mode()
def response_log_likelihoods(model: Any, encoded: Sequence,
                             batch_size: int = LIKELIHOOD_BATCH) -> list[Optional[float]]:
    """``log P(r | s, p) = sum_j log P(r_j | s, p, r_<j)`` in nats for each ``(EncodedPrompt,
    response ids)`` of ``encoded`` (``api.inputs.prepare_inputs``' output, every response given);
    ``None`` for a prompt whose logits are not finite (a diverged model). The model runs in the
    mode it is in: callers put it in eval mode (``monitoring.run.guard_likelihoods`` does).

    Pairs are scored ``batch_size`` at a time, in the order given, left-padded with masked pads
    and positions counted from each row's own first token (``probes.inputs.batched.left_padded``),
    so each row sees what it sees alone; equal to one forward per pair up to float rounding. Only
    the last ``longest response + 1`` positions get logits where the model takes
    ``logits_to_keep``. A batch the model cannot take padded (no ``attention_mask`` or
    ``position_ids``) is scored one pair at a time.

    Examples:
        >>> from probattr_monitor.api.inputs import prepare_inputs
        >>> from probattr_monitor.probes.types.settings import ProbeSettings
        >>> from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2
        >>> tokenizer = byte_bpe_tokenizer(["the cat sat on the mat"], vocab_size=270)
        >>> model = tiny_gpt2(len(tokenizer))
        >>> [value] = response_log_likelihoods(model, prepare_inputs(model, tokenizer, ["the cat"], [" sat"],
        ...                                                            ProbeSettings()))
        >>> value < 0
        True
    """
    for _, response_ids in encoded:
        if not response_ids:
            raise ValueError("every guard prompt needs a fixed response")
    values: list[Optional[float]] = []
    for begin in range(0, len(encoded), max(1, batch_size)):
        group = list(encoded[begin:begin + max(1, batch_size)])
        try:
            values.extend(_batch_log_likelihoods(model, group))
        except TypeError:  # a model whose forward takes no mask or positions: one pair at a time
            if len(group) == 1:
                raise
            values.extend(value for pair in group for value in _batch_log_likelihoods(model, [pair]))
    return values


def _batch_log_likelihoods(model: Any, group: list) -> list[Optional[float]]:
    """:func:`response_log_likelihoods` of ``group`` in one forward."""
    from ..inputs.batched import keeps_last_logits, left_padded

    device = model_device(model)
    rows = [[prompt_in.start, *prompt_in.prompt_ids, *response_ids] for prompt_in, response_ids in group]
    if len(rows) == 1:
        inputs: dict[str, Any] = {"input_ids": torch.tensor(rows, device=device)}
    else:
        ids, mask, positions = left_padded(rows, rows[0][0])
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}
    kept = max(len(response_ids) for _, response_ids in group) + 1
    if keeps_last_logits(model):
        inputs["logits_to_keep"] = kept
    logits = model(**inputs).logits  # (rows, kept or width, V); every row ends at the last column
    last = logits.shape[1] - 1  # the position after the last response token: predicts nothing scored
    values: list[Optional[float]] = []
    for row, (_, response_ids) in enumerate(group):
        predicting = logits[row:row + 1, last - len(response_ids):last]  # the logits of r_1 .. r_m
        try:
            values.append(float(next_token_log_probs(predicting, torch.tensor(response_ids, device=device))
                                .double().sum()))
        except NonFiniteLogitsError:
            values.append(None)
    return values
