"""One result shape for scoring, whatever the candidate policy.

``probe()`` asks :func:`score_prompt` for the per-position quantities of one prompt; the exact
policy computes them from the raw marginals ``a, b, c`` (``engine.score_exact`` then
``quantities.position_quantities``: this is where AS is computed), the budget policy estimates
them from a sample (``budgeted.score_budgeted``). Both end as a :class:`PositionScores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .engine import CandidateScores
from .quantities import QUANTITIES, PositionQuantities, position_quantities


@dataclass
class PositionScores:
    """The per-position probe quantities of one prompt, with their standard errors and cost.

    Attributes:
        quantities: values (each ``(n,)``) and top candidates (``(n, top_k)``).
        stderrs: ``{name: (n,) float64}`` for each of :data:`~probattr_monitor.probes.quantities.QUANTITIES`;
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


def score_prompt(model, input_ids: torch.Tensor, n_prompt: int, settings, policy: str,
                 on_position: Optional[Callable[[], None]] = None,
                 positions: Optional[Sequence[int]] = None) -> PositionScores:
    """The probe quantities of ``input_ids = [s] + prompt + response`` (``n_prompt`` prompt tokens)
    under ``policy`` (``"exact"`` or ``"budget"``, see ``ProbeSettings.policy_for``), at
    ``positions`` (default: every prompt position; rows follow their order). The other prompt
    tokens stay fixed in the sequence as context."""
    from .budgeted import score_budgeted
    from .engine import score_exact

    positions = list(range(n_prompt)) if positions is None else [int(k) for k in positions]
    if policy == "budget":
        return score_budgeted(model, input_ids, n_prompt, settings, on_position=on_position, positions=positions)
    raw = score_exact(model, input_ids, n_prompt, settings, on_position=on_position, positions=positions)
    return exact_scores(raw, input_ids[1:1 + n_prompt].cpu()[positions], settings.top_k)
