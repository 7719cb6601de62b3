"""What a probe run costs in token-forwards (``sum_k (n - k + m - 1)`` suffix tokens per candidate),
and the candidate budget that keeps a budgeted run within ``max_token_forwards``."""

from __future__ import annotations

from ..errors import ProbeInputError
from ..probes.inputs.chat import (
    EncodedPrompt,
)
from ..probes.types.policies import policy_named
from ..probes.types.settings import ProbeSettings


def check_token_forward_cap(encoded, vocab_size: int, settings: ProbeSettings) -> None:
    """Refuse a ``max_token_forwards`` that the budget policy cannot meet: even its floor of 2
    candidates per position costs ``2 x sum_k (n - k + m - 1)`` token-forwards over the run
    (generated responses counted at ``max_new_tokens``), and a cap below that would be exceeded."""
    if settings.max_token_forwards is None or not policy_named(settings.policy_for(vocab_size)).capped:
        return
    floor = 2 * run_suffix_tokens(encoded, settings)
    if settings.max_token_forwards < floor:
        raise ProbeInputError(
            f"max_token_forwards={settings.max_token_forwards:,} is below the {floor:,} token-forwards that the "
            "floor of 2 candidates per position costs for these prompts (responses counted at max_new_tokens); "
            f"raise it to at least {floor:,}, or probe fewer or shorter prompts")


def suffix_tokens(prompt_in: EncodedPrompt, response_len: int) -> int:
    """Suffix tokens one candidate costs summed over the scored positions: ``sum_k (n - k + m - 1)``."""
    n = len(prompt_in.prompt_ids)
    return sum(n - k + response_len - 1 for k in prompt_in.positions)


def run_suffix_tokens(encoded, settings: ProbeSettings) -> int:
    """:func:`suffix_tokens` summed over a run's prompts, generated responses counted at ``max_new_tokens``."""
    return sum(suffix_tokens(p, settings.max_new_tokens if r is None else len(r)) for p, r in encoded)


def run_cost(encoded, vocab_size: int, settings: ProbeSettings) -> dict:
    """What one :func:`probe` call over ``encoded`` (:func:`prepare_inputs`' output) costs at most:
    ``{"prompts", "positions", "policy", "candidates_per_position", "token_forwards"}``, where
    ``token_forwards = candidates x sum over prompts and scored positions of (n - k + m - 1)``,
    generated responses counted at ``max_new_tokens`` (the generation itself is not counted)."""
    policy = settings.policy_for(vocab_size)
    total = run_suffix_tokens(encoded, settings)
    per_position = policy_named(policy).candidates(settings, vocab_size, total)
    return {"prompts": len(encoded), "positions": sum(len(p.positions) for p, _ in encoded), "policy": policy,
            "candidates_per_position": per_position, "token_forwards": per_position * total}


def within_cap(settings: ProbeSettings, policy: str, vocab_size: int, encoded) -> ProbeSettings:
    """``settings`` with the candidate budget lowered so that a budgeted run stays within
    ``max_token_forwards`` (generated responses counted at ``max_new_tokens``)."""
    if not policy_named(policy).capped or settings.max_token_forwards is None:
        return settings
    total = run_suffix_tokens(encoded, settings)
    budget = settings.budget_within(vocab_size, total)
    return settings if budget == settings.budget_for(vocab_size) else settings.replace(candidate_budget=budget)
