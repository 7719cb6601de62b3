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


@torch.inference_mode()
def response_log_likelihoods(model: Any, encoded: Sequence) -> list[Optional[float]]:
    """``log P(r | s, p) = sum_j log P(r_j | s, p, r_<j)`` in nats for each ``(EncodedPrompt,
    response ids)`` of ``encoded`` (``api.inputs.prepare_inputs``' output, every response given);
    ``None`` for a prompt whose logits are not finite (a diverged model). The model runs in the
    mode it is in: callers put it in eval mode (``monitoring.run.guard_likelihoods`` does).

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
    device = model_device(model)
    values: list[Optional[float]] = []
    for prompt_in, response_ids in encoded:
        if not response_ids:
            raise ValueError("every guard prompt needs a fixed response")
        ids = [prompt_in.start, *prompt_in.prompt_ids, *response_ids]
        logits = model(input_ids=torch.tensor([ids], device=device)).logits  # (1, L, V)
        first = 1 + len(prompt_in.prompt_ids)  # the first response position
        targets = torch.tensor(response_ids, device=device)  # (m,)
        try:
            values.append(float(next_token_log_probs(logits[:, first - 1:-1], targets).double().sum()))
        except NonFiniteLogitsError:
            values.append(None)
    return values
