"""One result shape for scoring, whatever the candidate policy.

``probe()`` asks :func:`score_prompt` for the per-position quantities of one prompt, and the
policy's own scorer computes them (``probes.types.policies``): the exact policy from the raw
marginals ``a, b, c`` (:func:`score_exact_positions`: ``engine.score_exact`` then
``quantities.position_quantities``, where AS is computed), the budget policy from a sample
(``budgeted.score_budgeted``). Every policy ends as a :class:`PositionScores`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..types.policies import policy_named
from ..types.position_scores import PositionScores, exact_scores
from .engine import score_exact

__all__ = ["PositionScores", "exact_scores", "score_exact_positions", "score_prompt"]


def score_exact_positions(model, input_ids: torch.Tensor, n_prompt: int, settings,
                          on_position: Optional[Callable[[], None]] = None,
                          positions: Optional[Sequence[int]] = None) -> PositionScores:
    """The exact policy's scorer: the raw marginals over the whole vocabulary at ``positions``
    (``engine.score_exact``), turned into the per-position quantities."""
    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    raw = score_exact(model, input_ids, n_prompt, settings, on_position=on_position, positions=positions)
    return exact_scores(raw, input_ids[1:1 + n_prompt].cpu()[positions], settings.top_k)


def score_prompt(model, input_ids: torch.Tensor, n_prompt: int, settings, policy: str,
                 on_position: Optional[Callable[[], None]] = None,
                 positions: Optional[Sequence[int]] = None) -> PositionScores:
    """The probe quantities of ``input_ids = [s] + prompt + response`` (``n_prompt`` prompt tokens)
    under ``policy`` (a registered policy's name, ``ProbeSettings.policy_for`` resolves ``"auto"``),
    at ``positions`` (default: every prompt position; rows follow their order). The other prompt
    tokens stay fixed in the sequence as context."""
    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    return policy_named(policy).score(model, input_ids, n_prompt, settings, on_position=on_position,
                                      positions=positions)
