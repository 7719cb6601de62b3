"""``evaluate_faithfulness``: AS against the comparison methods on the four faithfulness metrics.

Per prompt: :func:`probattr_monitor.probe` gives the response (greedy unless given), the scored
positions and AS; a :class:`ResponseScorer` evaluates ``log P(r | p')`` for the perturbed prompts
(all ``2^n`` subsets of the ``n`` feature tokens up front when ``n <= EXACT_BOUND_TOKENS``); every
method attributes; every metric is computed from the same cached values. Across prompts each
(method, metric) gets its mean and a 95% bootstrap interval (seeded, 2,000 resamples of the
prompts). The AS check compares each token's AS with the observed change of ``log P(r | p)`` when
that token alone is replaced by the baseline token.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Optional, Sequence

from ..errors import MethodUnavailable
from ..monitoring.correlation import pearson, spearman
from ..probes.types.settings import ProbeSettings
from . import metrics
from .methods import (
    CAPTUM_METHODS,
    DEFAULT_METHODS,
    METHODS,
    SET_METHODS,
    attribute,
    require_captum,
    select_sets,
)
from .scorer import ResponseScorer, baseline_token_id


def probability_metric(sparsity: float) -> str:
    """The key of probability faithfulness at ``sparsity``: ``probability_faithfulness@10%``."""
    return f"probability_faithfulness@{100 * sparsity:g}%"


PROBABILITY_METRICS = tuple(probability_metric(s) for s in metrics.SPARSITIES)
METRICS = ("normalised_aopc", "aopc", "comprehensiveness", "sufficiency", "infidelity", *PROBABILITY_METRICS)
BETTER = {"normalised_aopc": "higher", "aopc": "higher", "comprehensiveness": "higher", "sufficiency": "lower",
          "infidelity": "lower", **{name: "higher" for name in PROBABILITY_METRICS}}
INFIDELITY_SUBSETS = 32
BOOTSTRAP = 2000


@dataclass
class FaithfulnessResult:
    """What :func:`evaluate_faithfulness` found.

    Attributes:
        methods: the methods that ran (in order); ``skipped``: ``{method: why}`` for the others.
        per_prompt: one dict per prompt: ``prompt``, ``response``, ``tokens``, ``attributions``
            ``{method: [...]}``, ``metrics`` ``{method: {metric: value}}``, ``bounds_exact`` and
            ``removed_sets`` (``{set method: {size: [features]}}``).
        summary: ``{metric: {method: {"mean", "low", "high"}}}`` over prompts (95% bootstrap).
        as_check: AS against the observed change of one replacement (see :func:`as_check`).
        seconds: ``{method: seconds}`` summed over prompts; ``forwards``: sequences scored for the metrics.
        protocol: the deletion operator, bins, perturbations and bounds used.
    """

    methods: list
    skipped: dict
    per_prompt: list
    summary: dict
    as_check: dict
    seconds: dict
    forwards: int
    protocol: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The result as a JSON object (every field; ``json.dumps`` takes it as it is)."""
        from dataclasses import asdict

        return asdict(self)


def evaluate_faithfulness(model, tokenizer, prompts: Sequence, responses: Optional[Sequence] = None,
                          methods: Sequence[str] = DEFAULT_METHODS, settings: Optional[ProbeSettings] = None,
                          seed: int = 0, samples: int = 50, exact_bound_tokens: int = metrics.EXACT_BOUND_TOKENS,
                          beam_width: int = metrics.BEAM_WIDTH,
                          joint_draws: Optional[int] = None) -> FaithfulnessResult:
    """Score AS and ``methods`` on ``prompts`` and compute every metric of :mod:`.metrics`.

    Args:
        model, tokenizer, prompts, responses: as for :func:`probattr_monitor.probe` (a list of prompts).
        methods: names from :data:`~.methods.METHODS`; ``attribution_score`` is AS. Each runs once,
            in the order first named.
        settings: probe settings (AS's policy, chat template, response length).
        seed: seeds the sampling methods, the infidelity perturbations and the bootstrap.
        samples: LIME / Shapley / GradientShap samples.
        exact_bound_tokens: normalised AOPC's bounds are exact up to this many tokens (``2^n``
            sequences scored); beyond, a beam search of ``beam_width`` (about ``2 x width x n^2``).
        joint_draws: ``joint_as``'s draws per estimate (default ``probes.engines.joint.JOINT_DRAWS``; the
            exactly summed head is an eighth of it).
    """
    from ..api import probe

    methods = list(dict.fromkeys(methods))  # a method named twice runs once
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        from ..errors import ProbeInputError

        raise ProbeInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if any(m in CAPTUM_METHODS for m in methods):
        require_captum()
    baseline = baseline_token_id(tokenizer)  # before any compute: a tokenizer without one is bad input
    settings = (settings or ProbeSettings()).replace(progress=False)
    results = probe(model, tokenizer, list(prompts), responses=responses, settings=settings)
    assert isinstance(results, list)
    seconds = {m: 0.0 for m in methods}
    skipped: dict = {}
    per_prompt: list[dict] = []
    forwards = 0
    rng = random.Random(seed)
    for result in results:
        if not result.valid:  # non-finite logits: nothing to compare
            continue
        positions = [t.position for t in result.tokens]
        scorer = ResponseScorer(model, int(result.start_token_id or 0), result.prompt_token_ids,
                                result.response_token_ids, positions, baseline)
        n = scorer.n_features
        if n <= exact_bound_tokens:
            scorer.prefetch(frozenset(c) for size in range(n + 1) for c in combinations(range(n), size))
        attributions = {"attribution_score": [t.attribution_score for t in result.tokens]}
        seconds["attribution_score"] = seconds.get("attribution_score", 0.0) + float(result.summary["seconds"])
        sizes = {sparsity: metrics.sparsity_size(n, sparsity) for sparsity in metrics.SPARSITIES}
        selections: dict = {}
        for method in methods:
            if method == "attribution_score" or method in skipped:
                continue
            began = time.perf_counter()
            try:
                if method in SET_METHODS:
                    attributions[method], selections[method], _ = select_sets(method, scorer, sizes.values(), seed,
                                                                              settings, joint_draws)
                else:
                    attributions[method] = attribute(method, scorer, seed=seed, samples=samples)
            except MethodUnavailable as why:
                skipped[method] = str(why)
                continue
            seconds[method] += time.perf_counter() - began
        perturbations = [frozenset(j for j in range(n) if rng.random() < 0.5) for _ in range(INFIDELITY_SUBSETS)]
        bounds = metrics.aopc_bounds(n, scorer.value, exact_limit=exact_bound_tokens, beam_width=beam_width)
        scores = {}
        for method, values in attributions.items():
            order = metrics.ranking(values)
            scores[method] = {
                "normalised_aopc": metrics.normalised_aopc(order, scorer.value, bounds),
                "aopc": metrics.aopc(order, scorer.value),
                "comprehensiveness": metrics.comprehensiveness(order, scorer.value),
                "sufficiency": metrics.sufficiency(order, scorer.value),
                "infidelity": metrics.infidelity(values, scorer.value, perturbations),
            }
            for sparsity, size in sizes.items():  # a set method's own set, else the top of the ranking
                removed = selections[method][size] if method in selections else frozenset(order[:size])
                scores[method][probability_metric(sparsity)] = metrics.probability_faithfulness(removed, scorer.value)
        observed = [scorer.value(frozenset()) - scorer.value(frozenset([j])) for j in range(n)]
        per_prompt.append({"prompt": result.prompt, "response": result.response,
                           "tokens": [t.token for t in result.tokens], "attributions": attributions,
                           "observed_single_removal": observed, "metrics": scores, "bounds_exact": bounds[2],
                           "removed_sets": {method: {str(size): sorted(chosen) for size, chosen in found.items()}
                                            for method, found in selections.items()}})
        forwards += scorer.forwards
    if not per_prompt:
        from ..errors import ProbeInputError

        raise ProbeInputError("no prompt gave a valid result (non-finite logits): nothing to compare")
    ran = [m for m in methods if m not in skipped]
    summary = {metric: {m: interval([p["metrics"][m][metric] for p in per_prompt], seed) for m in ran}
               for metric in METRICS}
    return FaithfulnessResult(
        methods=ran, skipped=skipped, per_prompt=per_prompt, summary=summary,
        as_check=as_check(per_prompt), seconds={m: seconds[m] for m in ran}, forwards=forwards,
        protocol={"deletion_operator": f"replace with the baseline token id {baseline} (unk, else pad, else eos)",
                  "deletion_schedule": "one token at a time, in order of decreasing attribution, to the last",
                  "bins": list(metrics.BINS), "infidelity_perturbations": f"{INFIDELITY_SUBSETS} random subsets, "
                  "each token removed with probability 1/2 (seeded)", "aopc_bounds": f"exact over all orderings "
                  f"up to {exact_bound_tokens} tokens, beam search (width {beam_width}) beyond",
                  "value": "log P(response | prompt) in nats", "samples": samples, "seed": seed,
                  "probability_faithfulness": "drop of log P(response) when ceil(sparsity x n) tokens are removed: "
                  "a set method's own set, else the top of the method's ranking",
                  "sparsities": list(metrics.SPARSITIES)})


def interval(values: Sequence[float], seed: int = 0) -> dict:
    """``{"mean", "low", "high", "n"}``: the mean and its 95% percentile-bootstrap interval."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "low": mean, "high": mean, "n": len(values)}
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(values) for _ in values) / len(values) for _ in range(BOOTSTRAP))
    return {"mean": mean, "low": means[int(0.025 * BOOTSTRAP)], "high": means[int(0.975 * BOOTSTRAP) - 1],
            "n": len(values)}


def as_check(per_prompt: Sequence[dict]) -> dict:
    """AS against the observed change ``log P(r|p) - log P(r|p with p_k replaced)``, pooled over tokens:
    Spearman and Pearson correlations, the share of tokens where both have the same sign, and per
    prompt the highest-AS token with both numbers. AS predicts the change when ``p_k`` is
    marginalised over the vocabulary, not replaced by one token: agreement is expected, equality not."""
    scores = [a for p in per_prompt for a in p["attributions"]["attribution_score"]]
    observed = [o for p in per_prompt for o in p["observed_single_removal"]]
    top = []
    for p in per_prompt:
        values = p["attributions"]["attribution_score"]
        k = max(range(len(values)), key=lambda i: values[i])
        top.append({"prompt": p["prompt"], "token": p["tokens"][k], "attribution_score": values[k],
                    "observed_change": p["observed_single_removal"][k]})
    same_sign = sum(1 for a, o in zip(scores, observed) if (a > 0) == (o > 0)) / len(scores) if scores else None
    return {"tokens": len(scores), "spearman": _defined(spearman(scores, observed)),
            "pearson": _defined(pearson(scores, observed)),
            "same_sign_share": same_sign, "top_tokens": top}


def _defined(value: float) -> Optional[float]:
    """``None`` for an undefined (NaN) correlation: strict JSON has no NaN."""
    return None if math.isnan(value) else value
