"""Replacement entropy (paper section 4.3) against a brute-force count, one candidate at a time."""

from __future__ import annotations

import math

import pytest
import torch

from probattr_monitor import probe
from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.probes.engines.replacement import (
    candidate_seed,
    continue_batch,
    frequency_entropy,
    top_p_set,
)
from probattr_monitor.probes.inputs.tokens import greedy_continuation, stop_token_ids

from ..cli.test_cli import run_cli


def test_frequency_entropy_by_hand():
    assert frequency_entropy([(1,), (1,), (2,), (3,)]) == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    assert frequency_entropy([(4, 5)] * 3) == 0.0


def test_top_p_set_by_hand():
    log_probs = torch.tensor([0.05, 0.5, 0.15, 0.3]).log()
    assert top_p_set(log_probs, 0.9).tolist() == [1, 3, 2]  # 0.5 + 0.3 + 0.15 = 0.95 >= 0.9
    assert top_p_set(log_probs, 0.75).tolist() == [1, 3]
    assert top_p_set(log_probs, 0.9, max_candidates=2).tolist() == [1, 3]


@pytest.fixture(scope="module")
def peaked(tokenizer):
    return tiny_gpt2(len(tokenizer), seed=3, initializer_range=0.6)


def test_replacement_entropy_equals_a_brute_force_count(peaked, tokenizer):
    result = probe(peaked, tokenizer, "the cat sat", max_new_tokens=4, replacement_entropy=True, progress=False,
                   seed=7)
    start, prompt, response = result.start_token_id, result.prompt_token_ids, tuple(result.response_token_ids)
    stops = stop_token_ids(peaked, tokenizer)
    with torch.no_grad():
        logits = peaked(input_ids=torch.tensor([[start] + prompt + list(response)])).logits[0].float()
    generations = 0
    for token in result.tokens:
        k = token.position
        probs = torch.softmax(logits[k].double(), -1)
        order = sorted(range(len(probs)), key=lambda v: (-float(probs[v]), v))
        mass, members = 0.0, []
        for v in order:  # the fewest most probable candidates reaching 0.9
            members.append(v)
            mass += float(probs[v])
            if mass >= 0.9:
                break
        greedy, sampled = [], []
        for v in members:  # one candidate at a time
            ids = [start] + prompt[:k] + [v] + prompt[k + 1:]
            greedy.append(tuple(greedy_continuation(peaked, ids, len(response), stops)))
            sampled += continue_batch(peaked, torch.tensor([ids]), len(response), stops, top_p=0.9,
                                      seeds=[candidate_seed(7, k, v)])
        assert token.top_p_set_size == len(members)
        assert token.replacement_entropy == pytest.approx(frequency_entropy(greedy), abs=1e-12)
        assert token.replacement_entropy_sampled == pytest.approx(frequency_entropy(sampled), abs=1e-12)
        assert token.original_response_share == pytest.approx(sum(g == response for g in greedy) / len(members))
        assert token.original_response_share_sampled == pytest.approx(
            sum(g == response for g in sampled) / len(members))
        generations += 2 * len(members)
    assert result.summary["generations"] == generations
    assert result.summary["mean_replacement_entropy"] == pytest.approx(
        sum(t.replacement_entropy for t in result.tokens) / len(result.tokens))
    assert any(0 < t.replacement_entropy for t in result.tokens), "a case where replacements change the response"


def test_deterministic_under_a_seed_and_off_by_default(peaked, tokenizer):
    runs = [probe(peaked, tokenizer, "a bird sang", max_new_tokens=4, replacement_entropy=True, progress=False,
                  seed=1) for _ in range(2)]
    assert [vars(t) for t in runs[0].tokens] == [vars(t) for t in runs[1].tokens]
    off = probe(peaked, tokenizer, "a bird sang", max_new_tokens=4, progress=False)
    assert off.tokens[0].replacement_entropy is None and "generations" not in off.summary


def test_cli_flag_shows_the_stability_columns(tmp_path, peaked, tokenizer):
    folder = tmp_path / "model"
    peaked.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    completed = run_cli("attribute", "--model", folder, "--prompt", "the cat", "--max-new-tokens", "3",
                        "--replacement-entropy", "--replacement-max-candidates", "5", "--no-progress")
    assert completed.returncode == 0, completed.stderr
    assert "H rep" in completed.stdout and "orig. share" in completed.stdout


def test_non_finite_logits_met_only_while_regenerating_give_an_invalid_result(tokenizer):
    """The scoring passes are finite; the regenerations (replacement entropy) are not: the prompt's
    result is invalid, no exception ends the probe run."""
    model = tiny_gpt2(len(tokenizer), seed=1)
    calls = [0]

    def count(module, inputs, output):
        calls[0] += 1

    handle = model.register_forward_hook(count)
    options = dict(responses=" on the", candidate_policy="budget", candidate_budget=40, progress=False)
    assert probe(model, tokenizer, "the cat sat", **options).valid
    scoring = calls[0]
    handle.remove()

    def poison(module, inputs, output):
        calls[0] += 1
        if calls[0] > scoring:
            output.logits.fill_(float("nan"))
        return output

    calls[0] = 0
    model.register_forward_hook(poison)
    result = probe(model, tokenizer, "the cat sat", replacement_entropy=True, **options)
    assert not result.valid and "while regenerating" in result.error
