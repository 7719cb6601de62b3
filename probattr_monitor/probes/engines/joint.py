"""Joint attribution: a *set* of prompt tokens marginalised over the vocabulary at once.

For a set ``S`` of prompt positions and a joint candidate ``v_S`` (one token per position of ``S``,
every other prompt token kept), with the sequence ``[s] + p + r`` of the maths guide:

    lw(v_S) = log P(p with v_S in place)        the prompt's likelihood (up to a constant in v_S)
    c(v_S)  = log P(r | p with v_S in place)
    q_prompt(v_S)  = softmax over V^|S| of lw        = P(p_S = v_S | p_-S)
    q_context(v_S) = softmax over V^|S| of lw + c    = P(p_S = v_S | p_-S, r)
    AS_S = log q_context(p_S) - log q_prompt(p_S) = log P(r | p) - log P(r | p with S marginalised)

With ``|S| = 1`` this is AS_k. The single-token identities hold for sets over the joint candidates:
``AS_S`` is the pointwise mutual information of ``p_S`` and ``r`` given ``p_-S``;
``E_{q_prompt}[exp AS_S(v_S)] = 1``; ``KL(q_context || q_prompt) = E_{q_context}[AS_S(v_S)]``. The
*interaction* of two tokens is ``I_{k,l} = AS_{k,l} - AS_k - AS_l``: positive when they act
together (removing both costs more than the two removals add up to), negative when either one
carries what the other does.

Two ways to compute ``AS_S`` and the other four quantities of the joint posteriors:

- :func:`exact_joint`: every one of the ``|V|^|S|`` candidates (small vocabularies and pairs);
- :func:`estimate_joint`: the candidates the proposal ranks highest summed exactly (the *head*, the
  actual ``p_S`` first) and the rest sampled with replacement from a mixture of two product proposals
  (each position's prior ``softmax(a_k)``, and its first-order posterior ``softmax(a_k + b~_k +
  c~_k)``, see ``budgeted.first_order_estimates``) and two chains that draw each later position
  from the model's conditional given the earlier ones (:class:`JointProposal`), with the budget
  policy's delta-method standard errors (``estimator.estimate_strata``).

:func:`search_joint` finds a set of a given size with a large ``AS_S``: every single position, then
every pair, then forward selection, each step adding the position whose addition gives the largest
``AS_S``.

Longer than 300 lines because the exact, estimated and searched joint AS share the pair enumeration,
the substitution scoring and the proposal; apart they would be copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..inputs.tokens import vocab_size_of
from ..maths.estimator import TailSample, estimate_strata
from ..maths.quantities import QUANTITIES, position_quantities
from ..types.settings import ProbeSettings
from .budgeted import first_order_estimates
from .cache import with_cache
from .engine import SuffixScorer, candidate_batch_size, kv_bytes_per_token, prefix_cache

JOINT_DRAWS = 512  # sampled joint candidates per estimate (each costs its suffix in token-forwards)
JOINT_HEAD = 32  # joint candidates summed exactly (the actual one included)
EXACT_LIMIT = 2**18  # exact_joint refuses more joint candidates than this


@dataclass
class JointScores:
    """The quantities of one set: ``values`` and ``stderrs`` (``{name: float}``, :data:`QUANTITIES`;
    stderrs are 0 when exact), ``positions`` (sorted prompt positions), ``policy`` (``"exact"`` or
    ``"estimate"``), ``token_forwards`` (suffix tokens run) and ``candidates`` (joint candidates scored)."""

    positions: list
    values: dict
    stderrs: dict
    policy: str
    token_forwards: int
    candidates: int
    details: dict = field(default_factory=dict)

    @property
    def attribution_score(self) -> float:
        """``AS_S = log P(r | p) - log P(r | p without S)`` of the set (nats)."""
        return float(self.values["attribution_score"])


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in its own dtype when that is float32 or wider, else in float32."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def score_substitutions(scorer: SuffixScorer, input_ids: torch.Tensor, n_prompt: int, positions: Sequence[int],
                        candidates: torch.Tensor, settings: ProbeSettings
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``lw`` and ``c`` (module docstring) of joint candidates, on the scorer's prefix cache.

    Args:
        positions: ``s`` sorted prompt positions; the suffix runs from the first, ``k0``.
        candidates: ``(C, s)`` ids, column ``i`` going to ``positions[i]``.

    ``lw = log P(v_{k0} | x_<j0) + sum of the prompt terms after j0`` (``j0 = 1 + k0``; the terms
    before ``j0`` are the same for every candidate and dropped), ``c`` the response terms. Targets at
    later set positions are the candidate's tokens, not the original ones.

    Returns:
        ``(lw (C,), c (C,), set_terms (C, s - 1), token_forwards)``, float64 on the CPU;
        ``set_terms[:, i - 1] = log P(v_i | x_<k_i with v_1 .. v_{i-1} in place)``, the prompt terms
        of ``lw`` at the set's later positions (the chain proposal's density).
    """
    positions = [int(k) for k in positions]
    length, j0 = input_ids.shape[0], 1 + positions[0]
    suffix = input_ids[j0:length - 1]  # (S,): x_j0 .. x_{L-2}
    targets = input_ids[j0 + 1:]  # (S,): x_{j0+1} .. x_{L-1}
    n_rest = n_prompt - j0  # prompt targets among them
    columns = [1 + k - j0 for k in positions]  # in the suffix
    # (V,) predicts x_j0; in the model's dtype, float32 at least (a float64 model keeps its precision)
    prior = torch.log_softmax(at_least_float32(scorer.logits[j0 - 1]), dim=-1).double().cpu()
    batch = candidate_batch_size(scorer.model, scorer.vocab_size, j0, suffix.shape[0],
                                 kv_bytes_per_token(scorer.cache), settings, full_logits=not scorer.chunked,
                                 limit=candidates.shape[0])
    candidates = candidates.long().to(input_ids.device)
    lw, c, set_terms, token_forwards = [], [], [], 0
    for start in range(0, candidates.shape[0], batch):
        chunk = candidates[start:start + batch]  # (B, s)
        batch_ids = suffix.expand(chunk.shape[0], -1).clone()  # (B, S)
        batch_targets = targets.expand(chunk.shape[0], -1).clone()  # (B, S)
        for i, column in enumerate(columns):
            batch_ids[:, column] = chunk[:, i]
            if column > 0:
                batch_targets[:, column - 1] = chunk[:, i]
        past = prefix_cache(scorer.cache, j0, chunk.shape[0], scorer.model.config)
        token_log_probs = scorer.score(batch_ids, past, batch_targets).double().cpu()  # (B, S)
        lw.append(prior[chunk[:, 0].cpu()] + token_log_probs[:, :n_rest].sum(-1))
        c.append(token_log_probs[:, n_rest:].sum(-1))
        set_terms.append(token_log_probs[:, [column - 1 for column in columns[1:]]])
        token_forwards += batch_ids.numel()
    return torch.cat(lw), torch.cat(c), torch.cat(set_terms), token_forwards


def conditional_rows(scorer: SuffixScorer, input_ids: torch.Tensor, positions: Sequence[int],
                     prefixes: torch.Tensor, settings: ProbeSettings) -> tuple[torch.Tensor, int]:
    """``(U, V)`` log-probabilities of the token at ``positions[i]`` (``i = prefixes.shape[1]``) given
    the sequence before it with ``prefixes[u]`` in place at ``positions[:i]``: one forward of the
    tokens from the first set position to just before ``positions[i]`` per row, on the scorer's prefix
    cache. Returns the rows (float64, CPU) and the token-forwards spent."""
    positions = [int(k) for k in positions]
    stage, j0 = prefixes.shape[1], 1 + positions[0]
    suffix = input_ids[j0:1 + positions[stage]]  # x_j0 .. x_{k_i}: the last one predicts position k_i
    columns = [1 + k - j0 for k in positions[:stage]]
    batch = candidate_batch_size(scorer.model, scorer.vocab_size, j0, suffix.shape[0], kv_bytes_per_token(scorer.cache),
                                 settings, full_logits=True, limit=prefixes.shape[0])
    rows, token_forwards = [], 0
    for start in range(0, prefixes.shape[0], batch):
        chunk = prefixes[start:start + batch].long().to(input_ids.device)
        batch_ids = suffix.expand(chunk.shape[0], -1).clone()
        for i, column in enumerate(columns):
            batch_ids[:, column] = chunk[:, i]
        past = prefix_cache(scorer.cache, j0, chunk.shape[0], scorer.model.config)
        logits = scorer.model(input_ids=batch_ids, **with_cache(scorer.model, past), use_cache=True).logits[:, -1]
        rows.append(torch.log_softmax(at_least_float32(logits), -1).double().cpu()[:, :scorer.vocab_size])
        token_forwards += batch_ids.numel()
    return torch.cat(rows), token_forwards


def _checked(positions: Sequence[int], n_prompt: int) -> list[int]:
    ordered = sorted({int(k) for k in positions})
    if not ordered or ordered[0] < 0 or ordered[-1] >= n_prompt:
        raise ValueError(f"positions should be distinct prompt positions in 0..{n_prompt - 1}, got {list(positions)}")
    return ordered


def exact_joint(model, input_ids: torch.Tensor, n_prompt: int, positions: Sequence[int],
                settings: Optional[ProbeSettings] = None, scorer: Optional[SuffixScorer] = None) -> JointScores:
    """``AS_S`` and the joint posteriors' entropies and KLs over all ``|V|^|S|`` joint candidates.

    ``details`` holds ``as_all`` (``(|V|^|S|,)``: ``AS_S(v_S)``, the score each joint candidate
    would get, candidates in row-major order of ``positions``), ``log_q_prompt``, ``log_q_context``
    (same shape) and ``index`` of the actual candidate: the identities are checked on them.
    Raises ``ValueError`` beyond :data:`EXACT_LIMIT` candidates.
    """
    settings = settings or ProbeSettings(progress=False)
    positions = _checked(positions, n_prompt)
    with torch.inference_mode():
        scorer = scorer or SuffixScorer(model, input_ids)
        vocab = scorer.vocab_size
        total = vocab ** len(positions)
        if total > EXACT_LIMIT:
            raise ValueError(f"{total:,} joint candidates (|V|={vocab:,} to the power {len(positions)}) is more than "
                             f"exact_joint enumerates ({EXACT_LIMIT:,}); use estimate_joint")
        grids = torch.meshgrid(*[torch.arange(vocab)] * len(positions), indexing="ij")
        candidates = torch.stack([grid.reshape(-1) for grid in grids], dim=1)  # (V^s, s)
        lw, c, _, token_forwards = score_substitutions(scorer, input_ids, n_prompt, positions, candidates, settings)
    actual = 0
    for k in positions:
        actual = actual * vocab + int(input_ids[1 + k])
    stats = position_quantities(lw[None], torch.zeros_like(lw)[None], c[None], torch.tensor([actual]), top_k=1)
    log_q_prompt, log_q_context = torch.log_softmax(lw, 0), torch.log_softmax(lw + c, 0)
    return JointScores(
        positions=positions, values={name: float(getattr(stats, name)[0]) for name in QUANTITIES},
        stderrs={name: 0.0 for name in QUANTITIES}, policy="exact", token_forwards=token_forwards,
        candidates=total, details={"as_all": log_q_context - log_q_prompt, "log_q_prompt": log_q_prompt,
                                   "log_q_context": log_q_context, "index": actual})


Conditional = Callable[[torch.Tensor], torch.Tensor]  # (U, i) set prefixes -> (U, V) rows of position i


class JointProposal:
    """A mixture over joint candidates ``v_S`` (positions ``k_1 < ... < k_s``), equal weights:

    - two products: every position drawn independently from ``softmax(a_k)`` (the prior) or from
      ``softmax(a_k + b~_k + c~_k)`` (the first-order posterior);
    - with ``conditional`` and ``s >= 2``, two chains that follow the set's dependence: ``v_1`` from
      the prior or the posterior of ``k_1``, then each ``v_i`` from the model's own
      ``P(v_i | x_<k_i with v_1 .. v_{i-1} in place)`` (``conditional``, one forward per distinct
      prefix). Where the set's tokens must agree (a name repeated, a copied token), the products put
      almost no mass on the agreeing candidates that hold ``q_prompt``'s mass; the chains do.

    ``log_prob`` is exact for the mixture; the chains' terms need the ``set_terms`` of
    :func:`score_substitutions` (their conditionals at the candidates)."""

    def __init__(self, prior: torch.Tensor, approx_b: torch.Tensor, approx_c: torch.Tensor,
                 positions: Sequence[int], conditional: Optional[Conditional] = None) -> None:
        rows = [int(k) for k in positions]
        self.components = [torch.log_softmax(prior[rows].double(), -1),
                           torch.log_softmax((prior[rows] + approx_b[rows] + approx_c[rows]).double(), -1)]  # (s, V)
        self.conditional = conditional if len(rows) >= 2 else None
        self.token_forwards = 0  # spent drawing the chains' conditionals

    @property
    def chained(self) -> bool:
        """Whether the two chain components are in the mixture."""
        return self.conditional is not None

    def log_prob(self, candidates: torch.Tensor, set_terms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(C,)`` log-probability of joint candidates ``(C, s)`` under the mixture (``set_terms``:
        ``(C, s - 1)`` from :func:`score_substitutions`, needed when :attr:`chained`)."""
        columns = torch.arange(candidates.shape[1])
        per_component = [component[columns, candidates].sum(-1) for component in self.components]
        if self.chained:
            if set_terms is None:
                raise ValueError("a chained proposal's density needs the candidates' set_terms")
            chain = set_terms.sum(-1)
            per_component += [component[0, candidates[:, 0]] + chain for component in self.components]
        return torch.logsumexp(torch.stack(per_component), 0) - math.log(len(per_component))

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count, s)`` joint candidates drawn from the mixture."""
        n_components = 4 if self.chained else 2
        which = torch.randint(n_components, (count,), generator=generator)
        draws = []
        for index in range(n_components):
            rows = int((which == index).sum())
            if not rows:
                continue
            component = self.components[index % 2]
            if index < 2:
                draws.append(torch.multinomial(component.exp(), rows, replacement=True, generator=generator).T)
            else:
                draws.append(self._chain(component[0], rows, generator))
        return torch.cat(draws)[torch.randperm(count, generator=generator)]

    def _chain(self, first: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count, s)``: ``v_1`` from ``first``, each later ``v_i`` from its conditional."""
        assert self.conditional is not None
        drawn = torch.multinomial(first.exp(), count, replacement=True, generator=generator).unsqueeze(1)
        for _ in range(1, self.components[0].shape[0]):
            prefixes, inverse = torch.unique(drawn, dim=0, return_inverse=True)
            rows = self.conditional(prefixes)  # (U, V)
            column = torch.empty(count, dtype=torch.long)
            for u in range(prefixes.shape[0]):
                members = (inverse == u).nonzero().squeeze(1)
                column[members] = torch.multinomial(rows[u].exp(), members.numel(), replacement=True,
                                                    generator=generator)
            drawn = torch.cat([drawn, column.unsqueeze(1)], dim=1)
        return drawn

    def head(self, actual: torch.Tensor, size: int) -> torch.Tensor:
        """``(H, s)``: ``actual`` first, then the joint candidates made of each position's ``t`` most
        likely ids under the second component, ``t = floor(size^(1/s))`` (at most ``size`` in all)."""
        posterior = self.components[1]
        per_position = max(1, int(math.floor(size ** (1 / posterior.shape[0]) + 1e-9)))
        tops = [torch.topk(row, min(per_position, row.shape[0])).indices for row in posterior]
        grids = torch.meshgrid(*tops, indexing="ij")
        combos = torch.stack([grid.reshape(-1) for grid in grids], dim=1)
        combos = combos[(combos != actual).any(-1)][: max(0, size - 1)]
        return torch.cat([actual.unsqueeze(0), combos])


EMPTY_TAIL_MASS = 1e-12  # a proposal mass outside the head below this is taken as no tail at all
DRAW_ROUNDS = 16  # rounds of redrawing what landed in the head, at most
ROUND_DRAWS = 1 << 16  # joint candidates drawn in one round, at most


def draw_tail(proposal: JointProposal, head_ids: torch.Tensor, tail_mass: float, draws: int,
              generator: torch.Generator) -> torch.Tensor:
    """``(D, s)`` draws from ``proposal`` restricted to the joint candidates outside ``head_ids``.

    Rejection: each round draws ``(draws - D) / tail_mass`` (times 1.25, at most :data:`ROUND_DRAWS`)
    and keeps those outside the head. Bounded: no draws when ``tail_mass`` is below
    :data:`EMPTY_TAIL_MASS` (the head holds all the mass; the caller sets it to 0 when the head holds
    every candidate), and at most :data:`DRAW_ROUNDS` rounds, so ``D`` may fall short of ``draws``
    where the tail's proposal mass is tiny. The first ``D`` kept draws are i.i.d. from the restricted
    proposal whatever ``D`` is (it depends on which draws fell in the head, not on their values).
    """
    tail = torch.empty(0, head_ids.shape[1], dtype=torch.long)
    if tail_mass < EMPTY_TAIL_MASS:
        return tail
    for _ in range(DRAW_ROUNDS):
        missing = draws - tail.shape[0]
        if missing <= 0:
            break
        drawn = proposal.sample(min(ROUND_DRAWS, math.ceil(1.25 * missing / tail_mass)), generator)
        in_head = (drawn.unsqueeze(1) == head_ids.unsqueeze(0)).all(-1).any(-1)
        tail = torch.cat([tail, drawn[~in_head]])
    return tail[:draws]


def estimate_joint(model, input_ids: torch.Tensor, n_prompt: int, positions: Sequence[int],
                   settings: Optional[ProbeSettings] = None, draws: int = JOINT_DRAWS, head: int = JOINT_HEAD,
                   seed: Optional[int] = None, scorer: Optional[SuffixScorer] = None,
                   first_order: Optional[tuple[torch.Tensor, torch.Tensor]] = None, chain: bool = True) -> JointScores:
    """``AS_S`` and the other quantities of the joint posteriors, estimated with standard errors.

    The ``head`` joint candidates of :meth:`JointProposal.head` are summed exactly; ``draws`` more
    are drawn with replacement from the :class:`JointProposal` (with its chains unless
    ``chain=False``: they follow dependence between the set's tokens) restricted to the rest
    (:func:`draw_tail`: draws landing in the head are redrawn, in a bounded number of rounds),
    each weighed by ``1 / pi_tail``, ``pi_tail = pi / (1 - pi(head))``:
    an unbiased estimate of the six sums the quantities are made of, whose covariance propagates to
    each quantity by the delta method (``estimator.estimate_strata``, with its widening for heavy-
    tailed weights). Cost: ``(head + draws) x`` the suffix from the first set position, plus the
    chains' conditionals (one forward from the first set position to each later one per distinct
    prefix drawn; ``details["chain_token_forwards"]``). ``seed``
    defaults to ``settings.seed``; ``scorer`` and ``first_order`` (``first_order_estimates``) may be
    passed in to share them between sets of one prompt.
    """
    settings = settings or ProbeSettings(progress=False)
    positions = _checked(positions, n_prompt)
    generator = torch.Generator().manual_seed(settings.seed if seed is None else seed)
    if first_order is None:
        first_order = first_order_estimates(model, input_ids, n_prompt)
    with torch.inference_mode():
        scorer = scorer or SuffixScorer(model, input_ids)
        vocab = scorer.vocab_size
        log_probs = torch.log_softmax(at_least_float32(scorer.logits), dim=-1).double().cpu()  # (L, V)
        def conditional(prefixes: torch.Tensor) -> torch.Tensor:
            rows, cost = conditional_rows(scorer, input_ids, positions, prefixes, settings)
            proposal.token_forwards += cost
            return rows

        proposal = JointProposal(log_probs[:n_prompt], first_order[0][:, :vocab], first_order[1][:, :vocab],
                                 positions, conditional=conditional if chain else None)
        actual = input_ids[[1 + k for k in positions]].cpu()
        head_ids = proposal.head(actual, head)
        head_lw, head_c, head_terms, head_cost = score_substitutions(scorer, input_ids, n_prompt, positions, head_ids,
                                                                     settings)
        tail_mass = float(-torch.expm1(torch.logsumexp(proposal.log_prob(head_ids, head_terms), 0)))
        if head_ids.shape[0] >= vocab ** len(positions) or tail_mass < EMPTY_TAIL_MASS:
            tail_mass = 0.0  # the head holds every joint candidate: 1 - 1 rounds to +-2e-16, not 0
        tail = draw_tail(proposal, head_ids, tail_mass, draws, generator)
        if tail.shape[0]:
            tail_lw, tail_c, tail_terms, tail_cost = score_substitutions(scorer, input_ids, n_prompt, positions, tail,
                                                                         settings)
            pi = proposal.log_prob(tail, tail_terms).exp() / tail_mass
        else:
            tail_lw = tail_c = pi = torch.empty(0, dtype=torch.float64)
            tail_cost = 0
    result = estimate_strata(head_lw, head_lw + head_c, head_c, [TailSample(tail_lw, tail_lw + tail_c, tail_c, pi)],
                             c_actual=float(head_c[0]))
    return JointScores(positions=positions, values=result.values, stderrs=result.stderrs, policy="estimate",
                       token_forwards=head_cost + tail_cost + proposal.token_forwards,
                       candidates=head_ids.shape[0] + tail.shape[0],
                       details={"head": int(head_ids.shape[0]), "draws": int(tail.shape[0]),
                                "tail_proposal_mass": tail_mass, "chain": proposal.chained,
                                "chain_token_forwards": proposal.token_forwards})


JOINT_POLICIES = ("auto", "exact", "estimate")


def uses_exact(vocab: int, size: int, policy: str, head: int = JOINT_HEAD, draws: int = JOINT_DRAWS) -> bool:
    """Whether :func:`joint_scores` enumerates: ``policy`` is ``"exact"``, or ``"auto"`` and the
    ``vocab^size`` joint candidates are no more than an estimate would score (``head + draws``)."""
    if policy not in JOINT_POLICIES:
        raise ValueError(f"policy should be one of {', '.join(JOINT_POLICIES)}, got {policy!r}")
    return policy == "exact" or (policy == "auto" and vocab ** size <= head + draws)


def joint_scores(model, input_ids: torch.Tensor, n_prompt: int, positions: Sequence[int],
                 settings: Optional[ProbeSettings] = None, policy: str = "auto",
                 scorer: Optional[SuffixScorer] = None, **estimate_options) -> JointScores:
    """:func:`exact_joint` or :func:`estimate_joint`, as :func:`uses_exact` says (``scorer`` and the
    estimate's options passed on)."""
    vocab = vocab_size_of(model)
    head, draws = estimate_options.get("head", JOINT_HEAD), estimate_options.get("draws", JOINT_DRAWS)
    if uses_exact(vocab, len(set(positions)), policy, head, draws):
        return exact_joint(model, input_ids, n_prompt, positions, settings, scorer=scorer)
    return estimate_joint(model, input_ids, n_prompt, positions, settings, scorer=scorer, **estimate_options)


@dataclass
class PairInteraction:
    """``I_{k,l} = AS_{k,l} - AS_k - AS_l`` with its parts; ``stderr`` adds the three (independent)
    estimates' variances (0 when all three are exact)."""

    positions: tuple
    joint: float
    singles: tuple
    interaction: float
    stderr: float


def pair_interaction(model, input_ids: torch.Tensor, n_prompt: int, first: int, second: int,
                     settings: Optional[ProbeSettings] = None, policy: str = "auto",
                     **estimate_options) -> PairInteraction:
    """The interaction of prompt positions ``first`` and ``second`` (module docstring), each of the
    three scores by :func:`joint_scores` under ``policy``."""
    parts = [joint_scores(model, input_ids, n_prompt, positions, settings, policy, **estimate_options)
             for positions in ([first, second], [first], [second])]
    joint, alone_first, alone_second = (part.attribution_score for part in parts)
    variance = sum(part.stderrs["attribution_score"] ** 2 for part in parts)
    return PairInteraction(positions=(min(first, second), max(first, second)), joint=joint,
                           singles=(alone_first, alone_second), interaction=joint - alone_first - alone_second,
                           stderr=math.sqrt(variance))


@dataclass
class JointSearch:
    """What :func:`search_joint` found: the ``positions`` of the set (in the order added), its
    :class:`JointScores` (``scores``), the best ``AS_S`` after each step (``trajectory``), the first
    step's single-token scores ``singles`` (``{position: AS_k}``) and the token-forwards spent."""

    positions: list
    scores: JointScores
    trajectory: list
    token_forwards: int
    singles: dict = field(default_factory=dict)


def search_joint(model, input_ids: torch.Tensor, n_prompt: int, size: int,
                 settings: Optional[ProbeSettings] = None, candidates: Optional[Sequence[int]] = None,
                 policy: str = "auto", all_pairs: bool = True, **estimate_options) -> JointSearch:
    """A set of ``size`` positions (from ``candidates``, default every prompt position) with a large
    ``AS_S``. Step 1 scores every single position (``singles``). With ``all_pairs`` (the default)
    and ``size >= 2``, step 2 scores every pair ``{k, l}`` of the pool and keeps the best, so a pair
    that acts only together (``AS_k, AS_l ~ 0``, ``AS_{k,l}`` large) is found even when another
    token's single score is larger (a distractor); that costs ``n (n - 1) / 2`` pair scores for ``n``
    positions. Each later step (and step 2 without ``all_pairs``: greedy from the single ranking,
    ``n - 1`` scores, which misses such a pair behind a distractor) scores ``S + {k}`` for every
    ``k`` left (:func:`joint_scores`) and keeps the best. Estimates share one seed per step, so the
    comparison within a step uses common random numbers. Larger sets are not guaranteed optimal.
    """
    settings = settings or ProbeSettings(progress=False)
    pool = list(range(n_prompt)) if candidates is None else [int(k) for k in candidates]
    if not 1 <= size <= len(pool):
        raise ValueError(f"size should lie in 1..{len(pool)}, got {size}")
    vocab = vocab_size_of(model)
    head, draws = estimate_options.get("head", JOINT_HEAD), estimate_options.get("draws", JOINT_DRAWS)
    if not all(uses_exact(vocab, s, policy, head, draws) for s in range(1, size + 1)):
        estimate_options.setdefault("first_order", first_order_estimates(model, input_ids, n_prompt))
    with torch.inference_mode():
        scorer = SuffixScorer(model, input_ids)
    spent = 0

    def best_of(sets: list) -> tuple[JointScores, list]:
        """The best-scoring set of ``sets`` (as given, in order) and its scores."""
        nonlocal spent
        best: Optional[tuple[JointScores, list]] = None
        for positions in sets:
            scores = joint_scores(model, input_ids, n_prompt, positions, settings, policy, scorer=scorer,
                                  **estimate_options)
            spent += scores.token_forwards
            if len(positions) == 1:
                singles[positions[0]] = scores.attribution_score
            if best is None or scores.attribution_score > best[0].attribution_score:
                best = scores, positions
        assert best is not None
        return best

    singles: dict = {}
    best, chosen = best_of([[k] for k in pool])
    trajectory = [best.attribution_score]
    if size >= 2 and all_pairs:
        best, pair = best_of([[k, m] for i, k in enumerate(pool) for m in pool[i + 1:]])
        chosen = sorted(pair, key=lambda k: -singles[k])  # in the order a greedy search would add them
        trajectory.append(best.attribution_score)
    while len(chosen) < size:
        best, chosen = best_of([chosen + [k] for k in pool if k not in chosen])
        trajectory.append(best.attribution_score)
    return JointSearch(positions=chosen, scores=best, trajectory=trajectory, token_forwards=spent, singles=singles)
