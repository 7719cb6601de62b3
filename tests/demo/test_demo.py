"""The demo's grammar, its exact truth, and the demo command end to end (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from probattr_monitor.demo.grammar import EOS, HiddenMarkovGrammar, word_tokenizer
from probattr_monitor.demo.run import probe_set
from probattr_monitor.demo.truth import next_word_distributions, true_quantities
from probattr_monitor.monitoring.correlation import spearman
from probattr_monitor.probes.maths.quantities import entropy


@pytest.fixture(scope="module")
def grammar():
    return HiddenMarkovGrammar.build()


def log_probability(grammar, words):
    """log P(x_1..x_T) by the forward algorithm (no EOS)."""
    alpha, total = grammar.initial.copy(), 0.0
    for word in words:
        joint = alpha * grammar.emission[:, word]
        if joint.sum() == 0:
            return -np.inf
        total += np.log(joint.sum())
        alpha = joint / joint.sum() @ grammar.transition
    return total


def test_grammar_is_a_proper_hmm(grammar):
    assert np.allclose(grammar.transition.sum(1), 1) and np.allclose(grammar.emission.sum(1), 1)
    assert grammar.initial.sum() == pytest.approx(1)
    corpus = grammar.corpus(50, seed=3)
    assert corpus == grammar.corpus(50, seed=3), "reproducible from the seed"
    assert all(sentence.endswith(" .") for sentence in corpus)


def test_tokens_are_exactly_the_grammar_words(grammar):
    tokenizer = word_tokenizer(grammar)
    for sentence in grammar.corpus(20, seed=1):
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids) == sentence.split()
    assert tokenizer.convert_tokens_to_ids(EOS) == tokenizer.eos_token_id


def test_true_quantities_match_brute_force_enumeration(grammar):
    """q_prompt(v) and q_context(v) by enumerating every word at position k, via the forward algorithm."""
    index = {w: i for i, w in enumerate(grammar.words)}
    prompts, responses = probe_set(grammar, 3, seed=5)
    for prompt, response in zip(prompts, responses):
        p, r = [index[w] for w in prompt.split()], [index[w] for w in response.split()]
        truth = true_quantities(grammar, p, r)
        for k in range(len(p)):
            joint_prompt = torch.tensor(
                [log_probability(grammar, p[:k] + [v] + p[k + 1 :]) for v in range(len(grammar.words))]
            )
            joint_context = torch.tensor(
                [log_probability(grammar, p[:k] + [v] + p[k + 1 :] + r) for v in range(len(grammar.words))]
            )
            q_prompt, q_context = torch.log_softmax(joint_prompt, -1), torch.log_softmax(joint_context, -1)
            assert truth.attribution_score[k].item() == pytest.approx(
                (q_context[p[k]] - q_prompt[p[k]]).item(), abs=1e-9
            )
            assert truth.entropy_prompt[k].item() == pytest.approx(entropy(q_prompt).item(), abs=1e-9)
            assert truth.entropy_context[k].item() == pytest.approx(entropy(q_context).item(), abs=1e-9)


def test_next_word_distributions_are_the_forward_conditionals(grammar):
    index = {w: i for i, w in enumerate(grammar.words)}
    words = [index[w] for w in grammar.corpus(1, seed=7)[0].split()]
    rows = next_word_distributions(grammar, words)
    assert np.allclose(rows.sum(1), 1)
    for t in range(len(words)):
        expected = np.exp(log_probability(grammar, words[: t + 1]) - log_probability(grammar, words[:t]))
        assert rows[t, words[t]] == pytest.approx(expected)
    assert rows[-1, index[EOS]] == pytest.approx(1.0), "after '.' the sentence ends"


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): Pearson = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert np.isnan(spearman([5, 5, 5], [1, 2, 3]))
    assert np.isnan(spearman([1, float("nan"), 3], [1, 2, 3])) and np.isnan(spearman([1], [2]))


@pytest.mark.integration
def test_demo_command_trains_and_prints_the_convergence_table(tmp_path):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "120"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "probattr_monitor",
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--max-steps",
            "60",
            "--save-steps",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "true noise tokens of the process" in out and "convergence by checkpoint" in out
    assert "│   30 │" in out and "│   60 │" in out
    assert "Spearman noise_tokens ~ kl_to_truth" in out
    for step in (30, 60):
        assert (tmp_path / "demo" / f"checkpoint-{step}" / "probattr.json").is_file()
    assert list((tmp_path / "demo" / "runs").rglob("events.out.tfevents.*"))
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text(encoding="utf-8"))
    assert [row["step"] for row in summary["rows"]] == [30, 60]
    for row in summary["rows"]:
        assert {"eval_loss", "kl_to_truth", "noise_tokens", "soft_noise", "log_p_response"} <= set(row)
        assert row["kl_to_truth"] > 0 and row["soft_noise"] is not None
    assert summary["rows"][1]["drift_attribution"] is not None, "the second probe run drifts from the first"
    recommended = summary["recommended"]
    kls = {row["step"]: row["kl_to_truth"] for row in summary["rows"]}
    assert recommended["regret"] == pytest.approx(kls[recommended["step"]] / min(kls.values()))
    assert recommended["reason"] and "regret against the truth" in out
    # a first run that shows what it made, on one screen
    report = tmp_path / "demo" / "probattr_report.html"
    assert report.is_file() and f"open {report}" in out.replace("\n", "")
    assert f"tensorboard --logdir {tmp_path / 'demo' / 'runs'}" in out.replace("\n", "")
    everything = completed.stdout + completed.stderr
    assert "Loading weights" not in everything and "Warning" not in everything and "{'loss'" not in everything
    assert len(everything.splitlines()) <= 50, everything


def test_sampling_loops_are_bounded(grammar):
    """Two loops that waited for a random event: a sentence ends at EOS, and a probe set draws until
    enough sentences of its topic came. A grammar that never emits EOS, and a topic that never
    comes, end all the same (the bound), instead of hanging."""
    import dataclasses

    from probattr_monitor.demo.grammar import MAX_SENTENCE_WORDS

    looping = dataclasses.replace(grammar, transition=np.eye(len(grammar.states)))  # never leaves a state
    start = grammar.states.index(("farm", "s_adj"))
    looping = dataclasses.replace(looping, initial=np.eye(len(grammar.states))[start])
    assert len(looping.sample(np.random.default_rng(0))) == MAX_SENTENCE_WORDS
    assert probe_set(grammar, 2, seed=0, topic="no such topic") == ([], [])
    prompts, responses = probe_set(grammar, 3, seed=0, topic="farm")
    assert len(prompts) == len(responses) == 3
