"""The single-stratum estimator the budget policy's stratified one generalises: the tests'
reference (``tail_proposal``, ``estimate``), not used by the package."""

from __future__ import annotations

import torch

from probattr_monitor.probes.maths.estimator import Estimate, TailSample, estimate_strata, tail_components


def tail_proposal(log_scores: list[torch.Tensor], head: torch.Tensor) -> torch.Tensor:
    """``pi``: an equal mixture of ``softmax(score)`` restricted to the tail, one per score; ``(V,)``
    float64, zero on the head, summing to 1 (all zeros when the head is the whole vocabulary).

    A defensive mixture: the prior alone keeps ``pi`` broad; the first-order posteriors put draws
    where the tail's mass is likely to be. :func:`mixture_weights` reweighs it from the draws.
    """
    return tail_components(log_scores, head).mean(0)


def estimate(head_lw: torch.Tensor, head_lu: torch.Tensor, head_c: torch.Tensor, sample_lw: torch.Tensor,
             sample_lu: torch.Tensor, sample_c: torch.Tensor, sample_pi: torch.Tensor, c_actual: float,
             sample_q: torch.Tensor | None = None) -> Estimate:
    """:func:`estimate_strata` with the whole tail as one stratum (the arguments of :class:`TailSample`)."""
    return estimate_strata(head_lw, head_lu, head_c, [TailSample(sample_lw, sample_lu, sample_c, sample_pi, sample_q)],
                           c_actual)
