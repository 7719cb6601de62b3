"""Which prompt positions a run scores when ``ProbeSettings.max_positions`` samples them."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch


def sample_positions(encoded: list, count: Optional[int], seed: int) -> list:
    """``encoded`` (``[(EncodedPrompt, response)]``, :func:`prepare_inputs`' output) with each prompt's
    ``positions`` cut to a uniform sample without replacement of ``count`` of the run's positions
    (all prompts pooled): the first ``count`` of one permutation drawn with ``seed``, so the same
    ``seed`` samples the same positions at every checkpoint and a smaller sample is part of a
    larger one. Each prompt keeps its positions in order. ``count`` ``None`` or at least the run's
    positions: ``encoded`` unchanged."""
    pooled = [(index, k) for index, (prompt_in, _) in enumerate(encoded) for k in prompt_in.positions]
    if count is None or count >= len(pooled):
        return encoded
    order = torch.randperm(len(pooled), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    kept = {pooled[i] for i in order}
    return [(dataclasses.replace(prompt_in, positions=[k for k in prompt_in.positions if (index, k) in kept]),
             response) for index, (prompt_in, response) in enumerate(encoded)]
