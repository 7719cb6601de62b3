"""Candidate policies: how a position's marginal over the vocabulary is computed, declared once.

A policy is a :class:`CandidatePolicy` in :data:`POLICIES`. Everything that depends on the policy
reads it from here: the settings' check and the CLI's ``--candidate-policy`` choices
(:func:`candidate_policies`), the dispatch of the scoring (``probes.engines.scores``), the cost
and the ``max_token_forwards`` cap (``api.cost``), how a distributed run splits its work
(``api``), and what the overhead meter may cut (``monitoring.overhead``). No other module compares
a policy's name with a string.

Two are built in:

- ``exact``: every token of the vocabulary is a candidate at every position; the marginals are
  exact sums (``probes.engines.engine``). Across ranks each rank scores a share of the vocabulary.
- ``budget``: an exact head plus a sampled tail, ``candidate_budget`` candidates per position
  (``probes.engines.budgeted``), every number with its standard error; capped by
  ``max_token_forwards``. Across ranks each rank scores whole prompts.

``"auto"`` is not a policy but a choice between those two (``ProbeSettings.policy_for``). Adding one::

    from probattr_monitor.probes.types.policies import CandidatePolicy, register_policy

    register_policy(CandidatePolicy("mine", scorer=my_score, capped=True, splits="prompts", revision=1))

where ``my_score(model, input_ids, n_prompt, settings, on_position=None, positions=None)`` returns a
``PositionScores`` (``probes.types.position_scores``).

This module imports no torch: the CLI reads the choices without loading a model stack.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Union

from ...errors import ProbeInputError
from .registry import Registry

SPLITS = ("prompts", "vocabulary")


@dataclass(frozen=True)
class CandidatePolicy:
    """One way of choosing the candidates a position's marginals sum over.

    Attributes:
        name: what ``candidate_policy=`` and ``--candidate-policy`` call it.
        scorer: ``score(model, input_ids, n_prompt, settings, on_position=None, positions=None)``
            returning a ``PositionScores``, or its ``"module:function"`` path (imported when first
            used, so declaring a policy imports no torch).
        capped: it spends ``settings.budget_within(...)`` candidates per position (``candidate_budget``,
            lowered to meet ``max_token_forwards``); otherwise every token of the vocabulary.
        splits: how a distributed run shares the work: ``"prompts"`` (whole prompts per rank, each
            prompt's numbers as on one process) or ``"vocabulary"`` (every rank a share of each
            position's candidates, gathered).
        revision: of its estimator; records made by another revision are recomputed, not reused.
        summary: one line for the docs.
    """

    name: str
    scorer: Union[str, Callable[..., Any]]
    capped: bool
    splits: str
    revision: int = 1
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.name or self.name == "auto":
            raise ProbeInputError(f"a candidate policy needs a name other than 'auto', got {self.name!r}")
        if self.splits not in SPLITS:
            raise ProbeInputError(f"splits should be one of {', '.join(map(repr, SPLITS))}, got {self.splits!r}")

    def score(self, model, input_ids, n_prompt: int, settings, on_position=None, positions=None):
        """Score ``input_ids = [s] + prompt + response`` at ``positions`` with :attr:`scorer`."""
        scorer = self.scorer
        if isinstance(scorer, str):
            module, _, function = scorer.partition(":")
            scorer = getattr(importlib.import_module(module), function)
        return scorer(model, input_ids, n_prompt, settings, on_position=on_position, positions=positions)

    def candidates(self, settings, vocab_size: int, suffix_tokens: int) -> int:
        """Candidates per position for a run whose positions cost ``suffix_tokens`` suffix tokens per
        candidate in all: the vocabulary, or (capped) what the settings' budget and cap allow."""
        if not self.capped:
            return vocab_size
        return min(vocab_size, settings.budget_within(vocab_size, suffix_tokens))


POLICIES = Registry("candidate policy", ProbeInputError)  # name -> CandidatePolicy


def register_policy(policy: CandidatePolicy) -> CandidatePolicy:
    """Add ``policy`` to :data:`POLICIES` (replacing one of the same name) and return it. Only the
    exact engine shares a position's vocabulary across ranks (``api.dispatch``), so any other
    policy splits by prompts."""
    if policy.splits == "vocabulary" and policy.name != "exact":
        raise ProbeInputError(f"candidate policy {policy.name!r}: only the exact engine splits the vocabulary "
                              "across ranks; declare splits='prompts'")
    return POLICIES.add(policy.name, policy)


def unregister_policy(name: str) -> None:
    """Remove a policy :func:`register_policy` added (the built-ins stay)."""
    POLICIES.remove(name)


def candidate_policies() -> tuple[str, ...]:
    """Every ``candidate_policy=`` value: ``"auto"`` and each registered policy's name."""
    return ("auto", *POLICIES)


def policy_named(name: str) -> CandidatePolicy:
    """The registered policy called ``name`` (``"auto"`` is resolved first: ``ProbeSettings.policy_for``)."""
    return POLICIES.named(name)


def revision_of(name) -> int:
    """The revision of the estimator of the policy called ``name``, for a record's key: records of
    another revision are recomputed, not reused. A record that names no known policy (written
    before policies were recorded, or by one since unregistered) takes the budget policy's, as
    every record did before each policy kept its own."""
    policy = POLICIES.get(name) if isinstance(name, str) else None
    return (policy or POLICIES["budget"]).revision


EXACT = register_policy(CandidatePolicy(
    "exact", "probattr_monitor.probes.engines.scores:score_exact_positions", capped=False, splits="vocabulary",
    revision=1, summary="every token of the vocabulary at every position; exact sums"))
BUDGET = register_policy(CandidatePolicy(
    "budget", "probattr_monitor.probes.engines.budgeted:score_budgeted", capped=True, splits="prompts",
    revision=5, summary="an exact head plus a sampled tail of candidate_budget candidates, with standard errors"))
POLICIES.seal()
