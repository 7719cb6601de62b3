"""the maths guide's identities, on engine output from real tiny models (tolerance 1e-5)."""

from __future__ import annotations

import pytest
import torch

from probattr_monitor.probes.engines.engine import score_exact
from probattr_monitor.probes.maths.quantities import (
    attribution_scores,
    attribution_scores_all,
    entropy,
    kl_divergence,
    log_posteriors,
    position_quantities,
)
from probattr_monitor.probes.types.settings import ProbeSettings

from ..conftest import build_model

TOL = 1e-5


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def scored(request, tokenizer):
    model = build_model(request.param, len(tokenizer), peaked=True)
    prompt = tokenizer("the dog ran after", add_special_tokens=False)["input_ids"]
    response = tokenizer(" the cat", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tokenizer.bos_token_id] + prompt + response)
    scores = score_exact(model, ids, len(prompt), ProbeSettings(progress=False))
    return scores, torch.tensor(prompt)


def test_as_is_log_ratio_of_response_likelihoods(scored):
    """AS_k = log P(r|p) - log P(r|p_-k), with N = logsumexp(a+b+c), D = logsumexp(a+b) (eq. 8/9)."""
    scores, prompt = scored
    a, b, c = scores.prior, scores.rest_prompt, scores.response
    log_q_prompt, log_q_context = log_posteriors(a, b, c)
    as_k = attribution_scores(log_q_prompt, log_q_context, prompt)
    log_p_r_without_k = torch.logsumexp(a + b + c, -1) - torch.logsumexp(a + b, -1)  # log P(r | p_-k)
    assert torch.allclose(as_k, scores.log_p_response - log_p_r_without_k, atol=TOL)


def test_log_p_response_is_c_at_the_actual_token_for_every_k(scored):
    scores, prompt = scored
    c_actual = scores.response.gather(-1, prompt.unsqueeze(-1)).squeeze(-1)  # (n,)
    assert torch.allclose(c_actual, torch.full_like(c_actual, scores.log_p_response), atol=TOL)


def test_as_is_pointwise_mutual_information(scored):
    """AS_k = log P(p_k, r | p_-k) - log P(p_k | p_-k) - log P(r | p_-k)."""
    scores, prompt = scored
    a, b, c = scores.prior, scores.rest_prompt, scores.response
    index = prompt.unsqueeze(-1)
    d = torch.logsumexp(a + b, -1)  # log P(p_-k) up to the shared prefix
    log_joint = (a + b + c).gather(-1, index).squeeze(-1) - d  # log P(p_k, r | p_-k)
    log_marginal_token = (a + b).gather(-1, index).squeeze(-1) - d  # log P(p_k | p_-k)
    log_marginal_response = torch.logsumexp(a + b + c, -1) - d  # log P(r | p_-k)
    pmi = log_joint - log_marginal_token - log_marginal_response
    log_q_prompt, log_q_context = log_posteriors(a, b, c)
    assert torch.allclose(pmi, attribution_scores(log_q_prompt, log_q_context, prompt), atol=TOL)


def test_kl_context_prompt_is_expected_as_under_q_context(scored):
    scores, _ = scored
    log_q_prompt, log_q_context = log_posteriors(scores.prior, scores.rest_prompt, scores.response)
    expected_as = (log_q_context.exp() * attribution_scores_all(log_q_prompt, log_q_context)).sum(-1)
    kl = kl_divergence(log_q_context, log_q_prompt)
    assert torch.allclose(kl, expected_as, atol=TOL)
    assert (kl >= -TOL).all() and (kl_divergence(log_q_prompt, log_q_context) >= -TOL).all()


def test_exp_as_averages_to_one_under_q_prompt(scored):
    scores, _ = scored
    log_q_prompt, log_q_context = log_posteriors(scores.prior, scores.rest_prompt, scores.response)
    mean = (log_q_prompt.exp() * attribution_scores_all(log_q_prompt, log_q_context).exp()).sum(-1)
    assert torch.allclose(mean, torch.ones_like(mean), atol=TOL)


def test_response_independent_of_token_gives_zero_as_and_equal_posteriors(scored):
    """If c does not depend on v, AS = 0, KL = 0 and both entropies coincide."""
    scores, prompt = scored
    constant_c = torch.full_like(scores.response, -7.25)
    stats = position_quantities(scores.prior, scores.rest_prompt, constant_c, prompt)
    assert torch.allclose(stats.attribution_score, torch.zeros_like(stats.attribution_score), atol=TOL)
    assert torch.allclose(stats.kl_context_prompt, torch.zeros_like(stats.kl_context_prompt), atol=TOL)
    assert torch.allclose(stats.entropy_prompt, stats.entropy_context, atol=TOL)


def test_entropy_handles_zero_probabilities():
    log_q = torch.log(torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64))
    assert entropy(log_q).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert kl_divergence(log_q, log_q).item() == pytest.approx(0.0)
