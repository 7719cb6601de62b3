"""Greedy continuations of many prompts at once, with the entropy of each step's distribution.

The batched form of :func:`~probattr_monitor.probes.inputs.tokens.greedy_continuation`, for
freezing many responses (the base guard): sequences are left-padded to a common length, the pads
masked out and the positions counted from each sequence's own first token, so each row sees what
it would see alone; rows are grouped by length to waste few pads. One step decodes every row on
the KV cache; a row stops at EOS (kept) or at ``max_new_tokens``.

Each row also gets ``sum_t H(P(. | x_<t))`` over the steps that produced its response tokens,
``H = -sum_v P(v) log P(v)`` in nats, read from the logits the decoding computed anyway (no second
forward).

Equal to the one-at-a-time continuation up to float rounding (the same logits, computed in a
different batch shape): tests compare them in float64, where ties are out of reach.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ...errors import NonFiniteLogitsError
from ..engines.cache import returned_cache, with_cache
from ..engines.engine import model_device

GENERATION_BATCH = 32  # rows decoded together


@dataclass
class Continuation:
    """One row's greedy continuation.

    Attributes:
        ids: the generated token ids (EOS included when hit).
        entropy: summed next-token entropy (nats) of the distributions that produced ``ids``.
    """

    ids: list
    entropy: float


def keeps_last_logits(model) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (so a prefill returns only the last row)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, mask, positions)``, each ``(len(rows), longest)``: ``rows`` right-aligned after
    ``pad_id``, ``mask`` 1 on real tokens, ``positions`` counting from each row's first real token."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[index, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


@torch.inference_mode()
def greedy_batch(model, rows: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                 pad_id: int) -> list[Continuation]:
    """The greedy continuations of ``rows`` (each ``[start] + prompt ids``), decoded together
    (module docstring). Raises :class:`NonFiniteLogitsError` when a row still decoding gets
    non-finite logits."""
    device = model_device(model)
    ids, mask, positions = left_padded(rows, pad_id)
    extra = {"logits_to_keep": 1} if keeps_last_logits(model) else {}
    out = [Continuation([], 0.0) for _ in rows]
    active = torch.ones(len(rows), dtype=torch.bool)
    past, tokens = None, ids
    for _ in range(max_new_tokens):
        output = model(input_ids=tokens.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), **with_cache(model, past), use_cache=True, **extra)
        last = output.logits[:, -1].double().cpu()  # (rows, V); float64: the entropy sums many terms
        if not torch.isfinite(last[active]).all():
            raise NonFiniteLogitsError("the model produced non-finite logits while generating the response")
        log_probs = torch.log_softmax(last, -1)
        entropy = -(log_probs.exp() * log_probs).nan_to_num().sum(-1)
        chosen = last.argmax(-1)
        for index in torch.nonzero(active).flatten().tolist():
            token = int(chosen[index])
            out[index].ids.append(token)
            out[index].entropy += float(entropy[index])
            if token in stop_ids:
                active[index] = False
        if not active.any():
            break
        past = returned_cache(output)
        tokens = torch.where(active, chosen, torch.full_like(chosen, pad_id))[:, None]
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        positions = positions[:, -1:] + 1
    return out


def greedy_continuations(model, rows: list[list[int]], max_new_tokens: int, stop_ids: set[int], pad_id: int,
                         batch_size: int = GENERATION_BATCH) -> list[Continuation]:
    """:func:`greedy_batch` over ``rows`` in groups of ``batch_size`` rows of similar length;
    the result is in the order of ``rows``."""
    order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
    result: list = [None] * len(rows)
    for begin in range(0, len(order), batch_size):
        group = order[begin:begin + batch_size]
        for index, continuation in zip(group, greedy_batch(model, [rows[i] for i in group], max_new_tokens,
                                                           stop_ids, pad_id)):
            result[index] = continuation
    return result
