"""The lookahead guess and the stratified tail: the one-token lookahead is exactly the first term of
``b`` (checked against the engine and a plain forward pass), and splitting the tail into strata
keeps the estimates unbiased with error bars that match their spread."""

from __future__ import annotations

import pytest
import torch

from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.probes.engines.budgeted import PositionSampler, lookahead, lookahead_guess, lookahead_size
from probattr_monitor.probes.engines.engine import SuffixScorer, score_exact
from probattr_monitor.probes.maths.estimator import TailSample, draw_without_replacement, estimate_strata, select_head
from probattr_monitor.probes.maths.quantities import position_quantities
from probattr_monitor.probes.types.settings import ProbeSettings

FIELDS = ("attribution_score", "entropy_prompt", "entropy_context", "kl_context_prompt", "kl_prompt_context")


def test_lookahead_is_the_first_term_of_the_rest_of_the_prompt():
    torch.manual_seed(0)
    model = tiny_gpt2(300, initializer_range=0.3, seed=4).eval()
    ids = torch.tensor([0, 11, 22, 33, 44, 55, 66])  # start, 4 prompt tokens, 2 response tokens
    n_prompt, settings = 4, ProbeSettings(progress=False)
    candidates = torch.arange(300)
    with torch.inference_mode():
        exact = score_exact(model, ids, n_prompt, settings)
        scorer = SuffixScorer(model, ids)
        # k = n - 2: b has one term, so the lookahead is b itself
        look, cost = lookahead(scorer, ids, n_prompt, 2, candidates, settings)
        assert cost == 300
        torch.testing.assert_close(look, exact.rest_prompt[2], atol=1e-4, rtol=0)
        # k = n - 1: no prompt left, the lookahead is the response's first token
        look_last, _ = lookahead(scorer, ids, n_prompt, 3, candidates[:50], settings)
        # k = 0: log P(x_2 | start, v) from a plain forward pass of [start, v]
        look_first, _ = lookahead(scorer, ids, n_prompt, 0, candidates[:50], settings)
        pairs = torch.stack([ids[0].expand(50), candidates[:50]], dim=1)
        plain = torch.log_softmax(model(pairs).logits[:, -1].float(), -1)[:, ids[2]]
        torch.testing.assert_close(look_first.float(), plain, atol=1e-4, rtol=0)
        window = torch.cat([ids[:4].expand(50, -1), candidates[:50, None]], dim=1)
        plain_last = torch.log_softmax(model(window).logits[:, -1].float(), -1)[:, ids[5]]
        torch.testing.assert_close(look_last.float(), plain_last, atol=1e-4, rtol=0)
    assert (exact.response[3, :50] - look_last).abs().max() > 0.01  # the response has a second token


def test_lookahead_guess_deepens_the_best_ids_and_puts_the_rest_on_their_scale():
    """Stage 1 looks one token ahead for the highest-prior ids; stage 2 runs the whole suffix here
    (3 tokens, under ``DEEP_DEPTH``) for the ids stage 1 ranks highest, so their guess is exact
    ``b + c``; the other ids keep their one-token lookahead shifted by one common offset."""
    torch.manual_seed(0)
    model = tiny_gpt2(300, initializer_range=0.3, seed=4).eval()
    ids = torch.tensor([0, 11, 22, 33, 44, 55, 66])  # start, 4 prompt tokens, 2 response tokens
    n_prompt, k, budget, settings = 4, 2, 128, ProbeSettings(progress=False)
    with torch.inference_mode():
        exact = score_exact(model, ids, n_prompt, settings)
        scorer = SuffixScorer(model, ids)
        prior = exact.prior[k].double()
        looked, guess, cost = lookahead_guess(scorer, ids, n_prompt, k, prior, budget, settings)
        shallow, _ = lookahead(scorer, ids, n_prompt, k, looked, settings)
    n_look, n_deep = budget * 3 // 8 * 3, budget * 3 // 32 // 3  # 144 ids at 1 token, 4 at 3 tokens
    assert looked.tolist() == torch.topk(prior, n_look).indices.tolist()
    assert cost == n_look + 3 * n_deep
    deep = torch.topk(prior[looked] + shallow, n_deep).indices
    exact_guess = (exact.rest_prompt[k] + exact.response[k]).double()[looked]
    torch.testing.assert_close(guess[deep], exact_guess[deep], atol=1e-4, rtol=0)
    others = torch.ones(n_look, dtype=torch.bool)
    others[deep] = False
    offset = guess[others] - shallow[others]
    assert float(offset.max() - offset.min()) < 1e-9 and abs(float(offset[0])) > 0.1


def test_lookahead_size_is_a_share_of_the_allowance_and_none_when_the_budget_is_tiny():
    assert lookahead_size(512, 16, 49152) == 512 * 16 * 3 // 8
    assert lookahead_size(512, 16, 1000) == 1000  # at most the vocabulary
    assert lookahead_size(2, 16, 49152) == 0 and lookahead_size(3, 16, 49152) == 0
    assert lookahead_size(512, 16, 512) == 0  # the budget covers the vocabulary: no guessing needed


def test_select_head_takes_the_lead_ranking_first_and_skips_ids_it_has_no_opinion_on():
    by_prior = torch.tensor([5.0, 4, 3, 2, 1, 0])
    lead = torch.tensor([float("-inf"), float("-inf"), 1.0, float("-inf"), 2.0, float("-inf")])
    assert select_head([by_prior], 5, 3, lead=lead).tolist() == [2, 4, 5]
    assert select_head([by_prior], 5, 5, lead=lead).tolist() == [0, 1, 2, 4, 5]


def test_sampler_strata_split_the_tail_and_count_the_lookahead():
    vocab = 500
    generator = torch.Generator().manual_seed(0)
    a = torch.log_softmax(torch.randn(vocab, generator=generator, dtype=torch.float64), -1)
    b = -3 * torch.rand(vocab, generator=generator, dtype=torch.float64)
    look_ids = torch.topk(a, 200).indices
    actual = int(a.argmin())  # not looked ahead
    sampler = PositionSampler(
        a,
        torch.zeros_like(a),
        torch.zeros_like(a),
        actual,
        20,
        lambda ids: (b[ids], torch.zeros_like(b[ids]), 5 * ids.shape[0]),
        look_ids,
        b[look_ids],
        200,
    )
    inside, outside = (stratum.components.sum(0) > 0 for stratum in sampler.strata)
    in_head = torch.zeros(vocab, dtype=torch.bool)
    in_head[sampler.head] = True
    assert not (inside & outside).any() and not ((inside | outside) & in_head).any()
    assert bool((inside | outside | in_head).all())
    assert set(torch.nonzero(inside).flatten().tolist()) <= set(look_ids.tolist())
    # the head follows the lookahead guess a + look (here exactly a + b) after p_k
    best = torch.topk(torch.full_like(a, float("-inf")).index_put((look_ids,), (a + b)[look_ids]), 19).indices
    assert set(sampler.head.tolist()) == set(best.tolist()) | {actual}
    assert sampler.token_forwards == 200 + 5 * 20


@pytest.mark.parametrize("split", [1, 2, 3])
def test_stratified_estimates_are_unbiased_and_stderrs_match_their_spread(split):
    """The tail of a synthetic position cut into ``split`` strata, each sampled on its own."""
    vocab, actual = 1000, 7
    generator = torch.Generator().manual_seed(0)
    a = torch.log_softmax(torch.randn(vocab, generator=generator, dtype=torch.float64) * 2, -1)
    b = -torch.rand(vocab, generator=generator, dtype=torch.float64) * 3
    c = -torch.rand(vocab, generator=generator, dtype=torch.float64) * 4
    stats = position_quantities(a[None], b[None], c[None], torch.tensor([actual]))
    exact = {name: float(getattr(stats, name)[0]) for name in FIELDS}
    head = select_head([a, a + b, a + b + c], actual, 60)
    tail = torch.ones(vocab, dtype=torch.bool)
    tail[head] = False
    parts = [tail & (torch.arange(vocab) % split == i) for i in range(split)]
    draws = []
    for seed in range(300):
        generator = torch.Generator().manual_seed(seed)
        strata = []
        for part in parts:
            proposal = torch.where(part, a.exp(), torch.zeros_like(a))
            proposal = proposal / proposal.sum()
            ids, q = draw_without_replacement(proposal, ~part, 100 // split, generator)
            strata.append(TailSample((a + b)[ids], (a + b + c)[ids], c[ids], proposal[ids], q))
        draws.append(estimate_strata((a + b)[head], (a + b + c)[head], c[head], strata, float(c[actual])))
    for name in FIELDS:
        values = torch.tensor([d.values[name] for d in draws])
        stderrs = torch.tensor([d.stderrs[name] for d in draws])
        assert abs(values.mean() - exact[name]) < 4 * values.std() / len(draws) ** 0.5 + 1e-3, name
        assert 0.7 < stderrs.mean() / values.std() < 1.3, (name, float(stderrs.mean() / values.std()))
    assert all(len(d.stratum_variances) == split for d in draws)


def test_a_stratum_of_one_draw_is_not_reported_as_exact():
    """One draw says nothing about its own spread: each sum it adds counts as uncertain by its whole
    size, so the quantities it touches get a non-zero standard error."""
    a = torch.log_softmax(torch.tensor([2.0, 1.0, 0.5, 0.0], dtype=torch.float64), -1)
    b = torch.tensor([-1.0, -2.0, -0.5, -3.0], dtype=torch.float64)
    c = torch.tensor([-1.0, -1.5, -4.0, -2.0], dtype=torch.float64)
    head, drawn = torch.tensor([0, 1]), torch.tensor([2])
    one = TailSample(
        (a + b)[drawn],
        (a + b + c)[drawn],
        c[drawn],
        torch.tensor([0.5], dtype=torch.float64),
        torch.tensor([0.5], dtype=torch.float64),
    )
    result = estimate_strata((a + b)[head], (a + b + c)[head], c[head], [one], float(c[0]))
    assert all(result.stderrs[name] > 0 for name in FIELDS)
    assert len(result.stratum_variances) == 1 and result.stratum_variances[0] > 0
