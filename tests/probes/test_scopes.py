"""Jacobian Scopes against first principles on tiny float64 models: semantic and temperature equal
finite differences of the embedding, the Fisher trace equals the full Jacobian's and the expected
squared score, low rank rises to it as the rank grows, Hutchinson converges as samples grow."""

from __future__ import annotations

import pytest
import torch

from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama
from probattr_monitor.probes.engines.scopes import _forward, head_fisher, jacobian_scopes

VOCAB, N_PROMPT, N_RESPONSE = 40, 5, 3


@pytest.fixture(params=[tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
def case(request):
    model = request.param(VOCAB, seed=0, initializer_range=0.2).double().eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():  # gains away from 1, as a trained model's: the final norm no longer fixes ||h||
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and name.endswith("weight") and ("norm" in name or "ln_" in name):
                parameter.copy_(torch.rand(parameter.shape, generator=generator, dtype=torch.float64) + 0.5)
    ids = torch.randint(0, VOCAB, (1 + N_PROMPT + N_RESPONSE,), generator=torch.Generator().manual_seed(1))
    return model, ids


def outputs(model, ids, row, delta):
    """``(hidden states the head reads, logits)`` with ``delta`` added to input embedding ``row``."""
    embeds = model.get_input_embeddings()(ids.unsqueeze(0)).detach().clone()
    embeds[0, row] += delta
    with torch.no_grad():
        hidden, logits = _forward(model, embeds)
    return hidden[0, N_PROMPT:-1], logits[0, N_PROMPT:-1]


def finite_difference_gradient(model, ids, row, target, step=1e-3):
    """The gradient of ``target(hidden, logits)`` with respect to input embedding ``row``, by
    central differences over each embedding coordinate (a step above the float32 round-off of
    Llama's RMSNorm, which normalises in float32 even in a float64 model)."""
    d = model.get_input_embeddings().weight.shape[1]
    grad = torch.zeros(d, dtype=torch.float64)
    for i in range(d):
        delta = torch.zeros(d, dtype=torch.float64)
        delta[i] = step
        grad[i] = (target(*outputs(model, ids, row, delta)) - target(*outputs(model, ids, row, -delta))) / (2 * step)
    return grad


def test_semantic_and_temperature_equal_finite_differences(case):
    model, ids = case
    scores = jacobian_scopes(model, ids, N_PROMPT, scopes=("semantic", "temperature"))
    targets = ids[1 + N_PROMPT:]
    for k in (0, N_PROMPT - 1):
        for t in (0, N_RESPONSE - 1):
            logit = finite_difference_gradient(model, ids, 1 + k, lambda h, z, t=t: z[t, targets[t]])
            norm = finite_difference_gradient(model, ids, 1 + k, lambda h, z, t=t: h[t].norm())
            assert scores.per_response_token["semantic"][t, k] == pytest.approx(float(logit.norm()), rel=1e-3)
            assert scores.per_response_token["temperature"][t, k] == pytest.approx(float(norm.norm()), rel=1e-3,
                                                                                  abs=1e-9)
        summed = finite_difference_gradient(model, ids, 1 + k, lambda h, z: z.gather(-1, targets[:, None]).sum())
        assert scores.aggregate["semantic"][k] == pytest.approx(float(summed.norm()), rel=1e-3)


def test_the_fisher_trace_equals_the_full_jacobian_and_the_expected_squared_score(case):
    model, ids = case
    scores = jacobian_scopes(model, ids, N_PROMPT, scopes=("fisher",), fisher_method="full")
    d = model.get_input_embeddings().weight.shape[1]
    for k in (0, N_PROMPT - 1):
        jacobian = torch.autograd.functional.jacobian(lambda delta, k=k: outputs_grad(model, ids, 1 + k, delta)[0],
                                                      torch.zeros(d, dtype=torch.float64))  # (m, d, d)
        _, logits = outputs(model, ids, 1 + k, torch.zeros(d, dtype=torch.float64))
        for t in range(N_RESPONSE):
            fisher = head_fisher(model, logits[t])
            trace = torch.trace(jacobian[t].T @ fisher @ jacobian[t])
            assert scores.per_response_token["fisher"][t, k] == pytest.approx(float(trace), rel=1e-6)
            # tr(J^T F J) = E_{y ~ q} ||d log q(y) / d delta||^2, over the whole (small) vocabulary
            scores_jacobian = torch.autograd.functional.jacobian(
                lambda delta, t=t, k=k: torch.log_softmax(outputs_grad(model, ids, 1 + k, delta)[1][t], -1),
                torch.zeros(d, dtype=torch.float64))  # (V, d)
            q = torch.softmax(logits[t], -1)
            assert float((q * scores_jacobian.pow(2).sum(-1)).sum()) == pytest.approx(float(trace), rel=1e-6)
    assert torch.equal(scores.aggregate["fisher"], scores.per_response_token["fisher"].sum(0))


def outputs_grad(model, ids, row, delta):
    """:func:`outputs` with gradients flowing to ``delta``."""
    embeds = model.get_input_embeddings()(ids.unsqueeze(0)).detach()
    mask = torch.zeros(embeds.shape[1], 1, dtype=embeds.dtype)
    mask[row] = 1.0
    hidden, logits = _forward(model, embeds + mask * delta)
    return hidden[0, N_PROMPT:-1], logits[0, N_PROMPT:-1]


def test_low_rank_rises_to_the_full_trace_as_the_rank_grows(case):
    model, ids = case
    full = jacobian_scopes(model, ids, N_PROMPT, scopes=("fisher",), fisher_method="full").aggregate["fisher"]
    d = model.get_input_embeddings().weight.shape[1]
    previous = torch.zeros_like(full)
    for rank in (1, 2, 4, 8, 16, d):
        low = jacobian_scopes(model, ids, N_PROMPT, scopes=("fisher",), fisher_method="low_rank",
                              rank=rank).aggregate["fisher"]
        assert bool((low >= previous - 1e-12).all()) and bool((low <= full * (1 + 1e-9)).all())
        previous = low
    assert torch.allclose(previous, full, rtol=1e-10), "every eigenpair: the exact trace"


def test_hutchinson_converges_to_the_full_trace_as_samples_grow(case):
    model, ids = case
    full = jacobian_scopes(model, ids, N_PROMPT, scopes=("fisher",), fisher_method="full").per_response_token["fisher"]
    errors = []
    for samples in (4, 64, 1024):
        estimate = jacobian_scopes(model, ids, N_PROMPT, scopes=("fisher",), fisher_method="hutchinson",
                                   samples=samples).per_response_token["fisher"]
        errors.append(float(((estimate - full).abs() / full).mean()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors


def test_scopes_refuse_what_they_cannot_score(case):
    model, ids = case
    with pytest.raises(ValueError, match="unknown scope"):
        jacobian_scopes(model, ids, N_PROMPT, scopes=("colour",))
    with pytest.raises(ValueError, match="no response token"):
        jacobian_scopes(model, ids[: 1 + N_PROMPT], N_PROMPT)
    assert all(p.grad is None for p in model.parameters()), "parameters are never touched"
