"""The budget candidate policy against exact marginalisation (the issue's CI targets) and the
estimator's statistics on synthetic vectors."""

from __future__ import annotations

import math

import pytest
import torch

from probattr_monitor import ProbeSettings, probe
from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama
from probattr_monitor.probes.maths.estimator import (
    MIXTURE_FLOOR,
    allocate_draws,
    draw_without_replacement,
    heavy_tail_inflation,
    mixture_weights,
    select_head,
    sequential_terms,
)
from probattr_monitor.probes.maths.quantities import position_quantities

from ..large_vocabulary import rare_word_tokenizer, trained_tiny_gpt2
from .estimator_reference import estimate, tail_proposal

NUMERICAL = 1e-4  # the exact engine's own accuracy against float64: intervals count as covering within it
FIELDS = ("attribution_score", "entropy_prompt", "entropy_context", "kl_context_prompt", "kl_prompt_context")


def synthetic(vocab=1000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.log_softmax(torch.randn(vocab, generator=generator, dtype=torch.float64) * 2, -1)
    b = -torch.rand(vocab, generator=generator, dtype=torch.float64) * 3
    c = -torch.rand(vocab, generator=generator, dtype=torch.float64) * 4
    return a, b, c


@pytest.mark.parametrize("ordered", [False, True], ids=["with-replacement", "successive"])
def test_estimates_are_unbiased_and_stderrs_match_their_spread(ordered):
    a, b, c = synthetic()
    actual = 7
    stats = position_quantities(a[None], b[None], c[None], torch.tensor([actual]))
    exact = {name: float(getattr(stats, name)[0]) for name in FIELDS}
    head = select_head([a, a + b, a + b + c], actual, 60)
    proposal = tail_proposal([a, a + b, a + b + c], head)
    taken = torch.zeros(1000, dtype=torch.bool)
    taken[head] = True
    draws = []
    for seed in range(300):
        generator = torch.Generator().manual_seed(seed)
        if ordered:
            samples, q = draw_without_replacement(proposal, taken, 100, generator)
        else:
            samples, q = torch.multinomial(proposal, 100, replacement=True, generator=generator), None
        draws.append(estimate((a + b)[head], (a + b + c)[head], c[head], (a + b)[samples], (a + b + c)[samples],
                              c[samples], proposal[samples], float(c[actual]), sample_q=q))
    for name in FIELDS:
        values = torch.tensor([d.values[name] for d in draws])
        stderrs = torch.tensor([d.stderrs[name] for d in draws])
        assert abs(values.mean() - exact[name]) < 4 * values.std() / len(draws) ** 0.5 + 1e-3, name  # (nearly) unbiased
        assert 0.7 < stderrs.mean() / values.std() < 1.3, name  # the error bar is the real spread
        covered = ((values - exact[name]).abs() <= 1.96 * stderrs + 1e-12).float().mean()
        assert covered > 0.88, (name, covered)


def test_successive_sampling_draws_each_id_with_the_probability_it_reports():
    proposal = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0], dtype=torch.float64)
    taken = torch.tensor([True, False, False, False, False])
    generator = torch.Generator().manual_seed(0)
    pairs = {}
    for _ in range(20000):
        ids, q = draw_without_replacement(proposal, taken, 2, generator)
        pairs[tuple(ids.tolist())] = pairs.get(tuple(ids.tolist()), 0) + 1
        first, second = ids.tolist()
        # q_1 = p(v_1) / 0.6 (id 0 is taken), q_2 = p(v_2) / (0.6 - p(v_1))
        p = proposal.tolist()
        assert q.tolist() == pytest.approx([p[first] / 0.6, p[second] / (0.6 - p[first])])
    assert set(pairs) <= {(i, j) for i in (1, 2, 3) for j in (1, 2, 3) if i != j}  # never 0 (taken) nor 4 (p = 0)
    for (i, j), count in pairs.items():
        expected = float(proposal[i] / 0.6 * proposal[j] / (0.6 - proposal[i]))
        assert abs(count / 20000 - expected) < 4 * (expected / 20000) ** 0.5 + 1e-3, (i, j)
    ids, q = draw_without_replacement(proposal, taken, 10, generator)  # only three ids are open
    assert sorted(ids.tolist()) == [1, 2, 3] and float(q[-1]) == pytest.approx(1.0)
    # Des Raj's terms with every open id drawn: the last term is the exact total
    y = torch.tensor([[5.0], [7.0], [11.0]], dtype=torch.float64)
    assert float(sequential_terms(y, q)[-1, 0]) == pytest.approx(23.0)


def test_mixture_weights_move_to_the_component_that_explains_the_target():
    # two components over 100 ids: the first covers ids 0-49, the second 50-99; the target lives on 0-49
    components = torch.zeros(2, 100, dtype=torch.float64)
    components[0, :50], components[1, 50:] = 1 / 50, 1 / 50
    alpha = torch.tensor([0.5, 0.5], dtype=torch.float64)
    draws = torch.multinomial(alpha @ components, 40, replacement=True, generator=torch.Generator().manual_seed(0))
    target = torch.where(torch.arange(100) < 50, 1.0, 0.0).double()
    weights = target[draws] / (alpha @ components)[draws]
    updated = mixture_weights(components[:, draws].T, alpha, weights)
    assert updated.tolist() == pytest.approx([1 - MIXTURE_FLOOR / 2, MIXTURE_FLOOR / 2], abs=1e-6)
    assert torch.equal(mixture_weights(components[:, :0].T, alpha, torch.empty(0)), alpha)  # no draws: unchanged


def test_allocate_draws_levels_the_projected_variances_within_the_pool():
    # variance 4 and 1 after 100 draws each: 300 more draws all go to the first (4 * 100 / 400 = 1)
    extra = allocate_draws(torch.tensor([4.0, 1.0]), torch.tensor([100, 100]), torch.tensor([1, 1]), 300.0,
                           capacity=torch.tensor([10**6, 10**6]))
    assert extra.tolist()[1] == 0 and 295 <= extra.tolist()[0] <= 300
    # a larger pool raises both; the costs are respected
    extra = allocate_draws(torch.tensor([4.0, 1.0]), torch.tensor([100, 100]), torch.tensor([2, 1]), 1000.0,
                           capacity=torch.tensor([10**6, 10**6]))
    assert (extra * torch.tensor([2, 1])).sum() <= 1000 and extra[0] > 300 and extra[1] > 0
    # capacity (ids left to draw) caps a position; no pool or no variance: nothing
    assert allocate_draws(torch.tensor([4.0, 1.0]), torch.tensor([100, 100]), torch.tensor([1, 1]), 300.0,
                          capacity=torch.tensor([50, 10**6])).tolist()[0] == 50
    assert allocate_draws(torch.tensor([4.0, 1.0]), torch.tensor([100, 100]), torch.tensor([1, 1]), 0.0,
                          capacity=torch.tensor([10, 10])).tolist() == [0, 0]
    assert allocate_draws(torch.tensor([0.0, 0.0]), torch.tensor([100, 100]), torch.tensor([1, 1]), 50.0,
                          capacity=torch.tensor([10, 10])).tolist() == [0, 0]
    # a variance next to nothing (1e-300) beside a real one: counts stay within [0, capacity]
    extra = allocate_draws(torch.tensor([1e-300, 1.0], dtype=torch.float64), torch.tensor([100, 100]),
                           torch.tensor([1, 1]), 10**6, capacity=torch.tensor([30, 40]))
    assert extra.tolist() == [30, 40]


def test_run_rounds_lends_the_pool_to_the_uncertain_position():
    """Two positions scored from stored vectors: one whose likelihoods ``b`` and ``c`` are the same
    for every candidate (its AS is known after the pilot) and one where they vary by nats. The pool
    (what the pilot and the even share leave) goes to the second, and the total stays within
    budget x sum(costs)."""
    from probattr_monitor.probes.engines.budgeted import EVEN_SHARE, PILOT_UNTIL, PositionSampler, run_rounds

    a, b, c = synthetic(vocab=2000, seed=3)
    generator = torch.Generator().manual_seed(4)
    noisy_b = -6 * torch.rand(2000, generator=generator, dtype=torch.float64)
    flat = torch.zeros(2000, dtype=torch.float64)
    samplers = [PositionSampler(a, flat, flat, 7, 16, lambda ids, bb=bb, cc=cc: (bb[ids], cc[ids], 3 * ids.shape[0]))
                for bb, cc in ((torch.full_like(b, -2.0), torch.full_like(c, -1.0)), (noisy_b, c))]
    run_rounds(samplers, [3, 3], 64, torch.Generator().manual_seed(0))
    scored = [sampler.scored()[0].shape[0] for sampler in samplers]
    pooled = round(64 * (1 - PILOT_UNTIL - EVEN_SHARE))  # 14 draws
    assert scored == [64 - pooled, 64 + pooled], scored  # the quiet one lent its share of the pool
    assert sum(sampler.token_forwards for sampler in samplers) <= 64 * (3 + 3)


def test_head_covering_the_vocabulary_is_exact():
    a, b, c = synthetic(vocab=50)
    stats = position_quantities(a[None], b[None], c[None], torch.tensor([3]))
    head = torch.arange(50)
    assert tail_proposal([a], head).sum() == 0
    result = estimate((a + b), (a + b + c), c, *(torch.empty(0, dtype=torch.float64),) * 4, float(c[3]))
    assert result.values["attribution_score"] == pytest.approx(float(stats.attribution_score[0]), abs=1e-12)
    assert result.stderrs["entropy_context"] == 0.0


def test_heavy_tail_inflation_leaves_light_tails_alone_and_widens_heavy_ones():
    generator = torch.Generator().manual_seed(0)
    light = torch.exp(0.3 * torch.randn(200, generator=generator, dtype=torch.float64))
    heavy = torch.exp(4.0 * torch.randn(200, generator=generator, dtype=torch.float64))
    assert heavy_tail_inflation(light) == 1.0
    assert 1.0 < heavy_tail_inflation(heavy) <= 200.0
    assert heavy_tail_inflation(torch.tensor([1.0, 0.0])) == 1.0  # too few draws to judge
    # an effective sample size of 14% of the draws is already heavy (the threshold is 20%, not 10%:
    # a stratum has fewer draws than the whole tail had, and its sample variance misses more)
    moderate = torch.exp(1.5 * torch.randn(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert 0.1 < float(moderate.sum() ** 2 / (moderate ** 2).sum()) / 200 < 0.2
    assert heavy_tail_inflation(moderate) > 1.2


def compare(model, tokenizer, prompts, responses, settings):
    """Budget vs exact on the same inputs: AS errors, coverage, cost ratio, noise-flag agreement."""
    budget = probe(model, tokenizer, prompts, responses=responses, settings=settings.replace(candidate_policy="budget"))
    exact = probe(model, tokenizer, prompts, responses=responses, settings=settings.replace(candidate_policy="exact"))
    errors, covered, disagreements = [], [], 0
    for b, e in zip(budget, exact):
        assert b.summary["candidate_policy"] == "budget" and e.summary["candidate_policy"] == "exact"
        for tb, te in zip(b.tokens, e.tokens):
            for name in FIELDS:
                error = abs(getattr(tb, name) - getattr(te, name))
                covered.append(error <= 1.96 * getattr(tb, f"{name}_stderr") + NUMERICAL)
                if name == "attribution_score":
                    errors.append(error)
            if not tb.noise_uncertain and tb.noise != te.noise:
                disagreements += 1
            assert te.attribution_score_stderr == 0.0 and not te.noise_uncertain
    ratio = sum(b.summary["token_forwards"] for b in budget) / sum(e.summary["token_forwards"] for e in exact)
    within = sum(e <= 0.05 for e in errors) / len(errors)
    return within, sum(covered) / len(covered), ratio, disagreements


@pytest.fixture(scope="module")
def big_tokenizer():
    return rare_word_tokenizer(vocab_size=4096)


PROMPTS = ["the big farmer feeds", "a child waits near", "every quiet dog chases the"]
RESPONSES = [" a barn .", " the bus .", " cat slowly ."]


# The three accuracy studies below (exact beside budget on 4,096-token models, minutes each) are the
# slow tier: `pytest -m slow`. benchmarks/bench_estimator.py and estimator_family.py print the same
# figures per model class; the default tier keeps the estimator's unit tests above.
@pytest.mark.slow
@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def test_budget_meets_the_targets_on_flat_models(build, big_tokenizer):
    tokenizer, _ = big_tokenizer
    model = build(len(tokenizer), initializer_range=0.02, seed=1)
    settings = ProbeSettings(progress=False)
    within, coverage, ratio, disagreements = compare(model, tokenizer, PROMPTS, RESPONSES, settings)
    assert within >= 0.95 and coverage >= 0.90 and ratio <= 0.2 and disagreements == 0, (within, coverage, ratio)


@pytest.mark.slow
def test_budget_meets_the_targets_on_a_trained_peaked_model(big_tokenizer, tmp_path):
    tokenizer, corpus = big_tokenizer
    model = trained_tiny_gpt2(tokenizer, corpus, steps=300, output_dir=str(tmp_path))
    exact = probe(model, tokenizer, PROMPTS[0], responses=RESPONSES[0], candidate_policy="exact", progress=False)
    # peaked: every posterior sits on a handful of the 4,096 tokens (flat would be log 4096 = 8.3 nats)
    assert max(t.entropy_context for t in exact.tokens) < 3.0
    within, coverage, ratio, disagreements = compare(
        model, tokenizer, PROMPTS, RESPONSES, ProbeSettings(progress=False)
    )
    assert within >= 0.95 and coverage >= 0.90 and ratio <= 0.2 and disagreements == 0, (within, coverage, ratio)


@pytest.mark.slow
def test_error_bars_stay_honest_on_a_chaotic_model(big_tokenizer):
    """Large random weights make the likelihood vary over the vocabulary in ways neither the prior
    nor the gradients predict: the budget cannot be accurate here, but it must say so (wide
    intervals, uncertain flags) rather than report wrong values with small error bars."""
    tokenizer, _ = big_tokenizer
    model = tiny_gpt2(len(tokenizer), initializer_range=0.5, seed=1)
    within, coverage, ratio, disagreements = compare(
        model, tokenizer, PROMPTS, RESPONSES, ProbeSettings(progress=False)
    )
    assert coverage >= 0.90 and ratio <= 0.2 and disagreements == 0, (within, coverage, ratio, disagreements)


def test_auto_is_exact_for_small_vocabularies_and_budget_for_large_ones(big_tokenizer):
    tokenizer, _ = big_tokenizer
    assert ProbeSettings().policy_for(768) == "exact" and ProbeSettings().policy_for(769) == "budget"
    assert ProbeSettings(candidate_budget=512).policy_for(512) == "exact"
    assert ProbeSettings(candidate_budget=512).policy_for(513) == "budget"
    assert ProbeSettings(candidate_policy="exact").policy_for(10**6) == "exact"
    model = tiny_gpt2(len(tokenizer), seed=2)
    result = probe(model, tokenizer, PROMPTS[0], responses=RESPONSES[0], progress=False)
    assert result.summary["candidate_policy"] == "budget"
    # the default budget is a fifth of these 3,426 tokens (685 candidates), so a fifth of exact's cost
    assert result.summary["token_forwards"] <= len(tokenizer) // 5 * sum(
        len(result.prompt_token_ids) + len(result.response_token_ids) - 1 - k
        for k in range(len(result.prompt_token_ids))
    )


def test_default_budget_is_768_candidates_or_a_fifth_of_the_vocabulary():
    assert ProbeSettings().budget_for(49152) == 768 and ProbeSettings().budget_for(262144) == 768
    assert ProbeSettings().budget_for(3426) == 685 and ProbeSettings().budget_for(1000) == 200
    assert ProbeSettings().budget_for(5) == 2  # never below the smallest valid budget
    assert ProbeSettings(candidate_budget=512).budget_for(49152) == 512
    assert ProbeSettings(candidate_budget=512).budget_for(1000) == 512  # set by hand: taken as given


def test_select_head_fills_its_size_with_the_actual_token_and_each_ranking_in_turn():
    by_prior = torch.tensor([5.0, 4, 3, 2, 1, 0])
    by_guess = torch.tensor([0.0, 1, 2, 3, 4, 5])
    assert select_head([by_prior, by_guess], 2, 1).tolist() == [2]
    assert select_head([by_prior, by_guess], 2, 3).tolist() == [0, 2, 5]
    assert select_head([by_prior, by_guess], 2, 4).tolist() == [0, 1, 2, 5]
    assert select_head([by_prior, by_prior], 3, 3).tolist() == [0, 1, 3]  # duplicates do not shrink the head
    assert select_head([by_prior], 0, 100).tolist() == list(range(6))


@pytest.mark.parametrize("budget", [2, 3, 16])
def test_small_budgets_are_respected(big_tokenizer, budget):
    tokenizer, _ = big_tokenizer
    model = tiny_gpt2(len(tokenizer), seed=2)
    result = probe(
        model,
        tokenizer,
        PROMPTS[0],
        responses=RESPONSES[0],
        candidate_policy="budget",
        candidate_budget=budget,
        top_k=5,
        progress=False,
    )
    suffix_tokens = sum(
        len(result.prompt_token_ids) + len(result.response_token_ids) - 1 - k
        for k in range(len(result.prompt_token_ids))
    )
    assert 0 < result.summary["token_forwards"] <= budget * suffix_tokens
    assert all(math.isfinite(t.attribution_score) and math.isfinite(t.entropy_context_stderr) for t in result.tokens)


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(big_tokenizer):
    tokenizer, _ = big_tokenizer
    model = tiny_gpt2(len(tokenizer), seed=3)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = probe(model, tokenizer, PROMPTS[1], responses=RESPONSES[1], candidate_policy="budget", progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = probe(model, tokenizer, PROMPTS[1], responses=RESPONSES[1], candidate_policy="budget", progress=False)
    other = probe(model, tokenizer, PROMPTS[1], responses=RESPONSES[1], candidate_policy="budget", seed=7,
                  progress=False)
    assert [t.attribution_score for t in first.tokens] == [t.attribution_score for t in again.tokens]
    assert [t.entropy_prompt for t in first.tokens] != [t.entropy_prompt for t in other.tokens]
