"""One result shape for scoring, whatever the candidate policy.

``probe()`` asks :func:`score_prompt` for the per-position quantities of one prompt; the exact
policy computes them from the raw marginals ``a, b, c`` (``engine.score_exact`` then
``quantities.position_quantities``: this is where AS is computed), the budget policy estimates
them from a sample (``budgeted.score_budgeted``). Both end as a :class:`PositionScores`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..types.position_scores import PositionScores, exact_scores
from .budgeted import score_budgeted
from .engine import score_exact

__all__ = ["PositionScores", "exact_scores", "score_prompt"]


def score_prompt(model, input_ids: torch.Tensor, n_prompt: int, settings, policy: str,
                 on_position: Optional[Callable[[], None]] = None,
                 positions: Optional[Sequence[int]] = None) -> PositionScores:
    """The probe quantities of ``input_ids = [s] + prompt + response`` (``n_prompt`` prompt tokens)
    under ``policy`` (``"exact"`` or ``"budget"``, see ``ProbeSettings.policy_for``), at
    ``positions`` (default: every prompt position; rows follow their order). The other prompt
    tokens stay fixed in the sequence as context."""
    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    if policy == "budget":
        return score_budgeted(model, input_ids, n_prompt, settings, on_position=on_position, positions=positions)
    raw = score_exact(model, input_ids, n_prompt, settings, on_position=on_position, positions=positions)
    return exact_scores(raw, input_ids[1:1 + n_prompt].cpu()[positions], settings.top_k)
