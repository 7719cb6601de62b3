"""The grammar's own probe values and next-word distributions, exactly (forward-backward).

For prompt position j (1-based word index) with predictive state distribution
``pi_j(z) = P(z_j | x_<j)`` and backward messages ``beta_j(z) = P(x_{j+1..end} | z_j = z)``:

    log q_prompt(v)  = log_softmax_v log sum_z pi_j(z) E[z, v] beta^prompt_j(z)    (end = prompt end)
    log q_context(v) = log_softmax_v log sum_z pi_j(z) E[z, v] beta^full_j(z)      (end = response end)

These are the maths guide's two posteriors for the true process; they go through the same
``position_quantities`` as the model's, so AS, entropies and noise flags are defined identically.
"""

from __future__ import annotations

import numpy as np
import torch

from ..probes.maths.quantities import PositionQuantities, position_quantities
from .grammar import HiddenMarkovGrammar


def predictive_states(grammar: HiddenMarkovGrammar, word_ids: list[int]) -> np.ndarray:
    """``(T + 1, S)``: row t is ``P(z_{t+1} | x_1..x_t)`` (row 0 is the initial distribution)."""
    rows = [grammar.initial]
    for word in word_ids:
        posterior = rows[-1] * grammar.emission[:, word]
        posterior = posterior / posterior.sum()
        rows.append(posterior @ grammar.transition)
    return np.array(rows)


def backward_messages(grammar: HiddenMarkovGrammar, word_ids: list[int]) -> np.ndarray:
    """``(T, S)``: row t is ``P(x_{t+2..T} | z_{t+1})`` up to a per-row constant (0-based rows)."""
    rows = [np.ones(len(grammar.states))]
    for word in reversed(word_ids[1:]):
        message = grammar.transition @ (grammar.emission[:, word] * rows[-1])
        rows.append(message / message.sum())
    return np.array(rows[::-1])


def true_quantities(grammar: HiddenMarkovGrammar, prompt: list[int], response: list[int], top_k: int = 5
                    ) -> PositionQuantities:
    """the maths guide's per-position quantities of the true process for ``prompt`` and ``response``
    (grammar word indices)."""
    predictive = predictive_states(grammar, prompt)  # (n + 1, S)
    beta_prompt = backward_messages(grammar, prompt)  # (n, S)
    beta_full = backward_messages(grammar, prompt + response)[: len(prompt)]  # (n, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        joint_prompt = np.log(np.einsum("ts,sv,ts->tv", predictive[: len(prompt)], grammar.emission, beta_prompt))
        joint_context = np.log(np.einsum("ts,sv,ts->tv", predictive[: len(prompt)], grammar.emission, beta_full))
        shift = np.where(
            np.isfinite(joint_prompt), joint_context - joint_prompt, 0.0
        )  # log P(r | ...) up to a constant
    return position_quantities(
        torch.from_numpy(joint_prompt),
        torch.zeros_like(torch.from_numpy(joint_prompt)),
        torch.from_numpy(shift),
        torch.tensor(prompt),
        top_k=top_k,
    )


def next_word_distributions(grammar: HiddenMarkovGrammar, word_ids: list[int]) -> np.ndarray:
    """``(T + 1, W)``: row t is ``P(x_{t+1} = w | x_1..x_t)``, the last row predicting EOS."""
    return predictive_states(grammar, word_ids) @ grammar.emission
