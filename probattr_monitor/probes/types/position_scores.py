"""The result type every candidate policy ends in: :class:`PositionScores` (the exact engine's
marginals become one through :func:`exact_scores`; the budget policy builds one from its sample)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.engine import CandidateScores
from ..maths.quantities import QUANTITIES, PositionQuantities, position_quantities


@dataclass
class PositionScores:
    """The per-position probe quantities of one prompt, with their standard errors and cost.

    Attributes:
        quantities: values (each ``(n,)``) and top candidates (``(n, top_k)``).
        stderrs: ``{name: (n,) float64}`` for each of :data:`~probattr_monitor.probes.maths.quantities.QUANTITIES`;
            zeros when exact.
        log_p_response: ``log P(r | s, p)``.
        token_forwards: suffix tokens evaluated (the cost).
        policy: ``"exact"`` or ``"budget"``.
    """

    quantities: PositionQuantities
    stderrs: dict
    log_p_response: float
    token_forwards: int
    policy: str


def exact_scores(raw: CandidateScores, prompt_ids: torch.Tensor, top_k: int) -> PositionScores:
    """:class:`PositionScores` of exact marginals (every scored position over the whole vocabulary);
    ``prompt_ids`` holds the original token of each scored position, in row order."""
    quantities = position_quantities(raw.prior, raw.rest_prompt, raw.response, prompt_ids, top_k=top_k)
    zeros = {name: torch.zeros(len(prompt_ids), dtype=torch.float64) for name in QUANTITIES}
    return PositionScores(quantities, zeros, raw.log_p_response, raw.token_forwards, "exact")
