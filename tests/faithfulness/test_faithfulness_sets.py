"""The set methods of ``faithfulness``: JoPA and the joint-AS search, against the planted
cooperative pair (where per-token methods cannot see it), and probability faithfulness at JoPA's
sparsities in ``evaluate_faithfulness`` (no Captum needed)."""

from __future__ import annotations

import pytest
import torch

from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.faithfulness import evaluate_faithfulness
from probattr_monitor.faithfulness.jopa import jopa, mask_gradient, order_attributions
from probattr_monitor.faithfulness.methods import select_sets
from probattr_monitor.faithfulness.metrics import probability_faithfulness, sparsity_size
from probattr_monitor.faithfulness.run import PROBABILITY_METRICS
from probattr_monitor.faithfulness.scorer import ResponseScorer
from tests.planted import MASK, PROMPT, SLOTS, YES, planted_model

from ..cli.test_cli import run_cli

PAIR = frozenset(SLOTS)  # the slots are prompt positions 1 and 4, features 1 and 4


def planted_scorer() -> ResponseScorer:
    return ResponseScorer(planted_model(), 0, list(PROMPT), [YES], list(range(len(PROMPT))), MASK)


def test_sparsity_sizes_and_probability_faithfulness():
    assert [sparsity_size(10, s) for s in (0.01, 0.1, 0.2)] == [1, 1, 2]
    assert [sparsity_size(40, s) for s in (0.01, 0.1, 0.2)] == [1, 4, 8]
    assert sparsity_size(3, 1.0) == 3
    assert probability_faithfulness(frozenset({0}), lambda removed: -2.0 * len(removed)) == 2.0
    assert order_attributions([2, 0, 1], 3) == [2.0, 1.0, 3.0]


def test_the_mask_gradient_is_the_derivative_of_the_interpolated_deletion():
    scorer = planted_scorer()
    gradient = mask_gradient(scorer, frozenset({1}))
    original = scorer.feature_embeds()
    baseline = scorer.feature_embeds(torch.full_like(scorer.features, MASK))
    step = 1e-3
    for j in (0, 4):
        values = []
        for sign in (1, -1):
            mask = torch.ones(len(PROMPT), dtype=original.dtype)
            mask[1] = 0.0
            mask[j] += sign * step
            weight = mask.view(1, -1, 1)
            with torch.no_grad():
                values.append(float(scorer.log_p_of_embeds(weight * original + (1 - weight) * baseline)))
        assert float(gradient[j]) == pytest.approx((values[0] - values[1]) / (2 * step), rel=0.05, abs=1e-3)


def test_jopa_finds_the_planted_pair_that_occlusion_cannot_rank():
    scorer = planted_scorer()
    single = [scorer.value(frozenset()) - scorer.value(frozenset({j})) for j in range(len(PROMPT))]
    assert max(abs(change) for change in single) < 0.01  # occlusion: every token alone changes nothing
    found = jopa(scorer, [1, 2], seed=0)
    assert found.sets[2] == PAIR
    assert probability_faithfulness(found.sets[2], scorer.value) > 5.0  # log P(YES) collapses
    assert sorted(found.order) == list(range(len(PROMPT))) and set(found.order[:2]) == PAIR
    assert found.settings == {"top_k": 3, "swaps": 24, "seed": 0, "branches": found.settings["branches"]}
    again = jopa(planted_scorer(), [1, 2], seed=0)
    assert again.sets == found.sets and again.order == found.order


def test_joint_as_as_a_set_method_removes_the_pair():
    scores, sets, details = select_sets("joint_as", planted_scorer(), [1, 2], seed=0)
    assert sets[2] == PAIR and len(sets[1]) == 1 and sets[1] < PAIR
    assert details["attribution_score"] > 1.0 and details["policy"] == "exact" and details["seed"] == 0
    assert sorted(range(len(PROMPT)), key=lambda j: -scores[j])[:2] == sorted(PAIR, key=lambda j: -scores[j])


def test_evaluate_faithfulness_reports_probability_faithfulness_for_every_method(tokenizer):
    model = tiny_gpt2(len(tokenizer), seed=3, initializer_range=0.6)
    methods = ["attribution_score", "random", "jopa", "joint_as", "temperature_scope"]
    result = evaluate_faithfulness(model, tokenizer, ["the cat sat on the mat"], methods=methods, seed=1)
    assert result.methods == methods and not result.skipped
    [prompt] = result.per_prompt
    n = len(prompt["tokens"])
    for method in methods:
        for metric in PROBABILITY_METRICS:
            assert metric in prompt["metrics"][method] and metric in result.summary
        assert len(prompt["attributions"][method]) == n
    assert set(prompt["removed_sets"]) == {"jopa", "joint_as"}
    for sizes in prompt["removed_sets"].values():
        assert all(len(chosen) == int(size) for size, chosen in sizes.items())
    assert result.protocol["sparsities"] == [0.01, 0.1, 0.2]


def test_the_joint_command_prints_and_writes_the_sets(tokenizer, tmp_path):
    import json

    folder = tmp_path / "model"
    tiny_gpt2(len(tokenizer), seed=3, initializer_range=0.6).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "sets.json"
    completed = run_cli("joint", "--model", folder, "--prompt", "the cat sat on the mat", "--max-new-tokens", "3",
                        "--method", "jopa", "--size", "2", "--seed", "4", "--json", out)
    assert completed.returncode == 0, completed.stderr
    [row] = json.loads(out.read_text(encoding="utf-8"))
    assert row["method"] == "jopa" and row["size"] == 2 and len(row["removed"]) == 2
    assert row["search"]["seed"] == 4 and row["search"]["top_k"] == 3
    assert "removing them drops log P(response)" in completed.stdout and "seed 4" in completed.stdout


def test_bad_joint_arguments_exit_2_with_one_line(tokenizer, tmp_path, capsys):
    from probattr_monitor.cli import main

    folder = tmp_path / "model"
    tiny_gpt2(len(tokenizer), seed=3).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for flags, message in ((["--sparsity", "1.5"], "--sparsity should lie in (0, 1]"),
                           (["--size", "0"], "--size should be a positive integer"),
                           (["--response", "x", "--prompt", "b"], "--response needs exactly one prompt"),
                           # once ignored (36,794 token-forwards under a cap of 300; exact ran estimate): refused
                           (["--candidate-policy", "exact"], "joint does not take --candidate-policy"),
                           (["--max-token-forwards", "300"], "joint does not take --max-token-forwards")):
        assert main(["joint", "--model", str(folder), "--prompt", "a cat", *flags]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["joint", "--model", str(folder), "--size", "1", "--sparsity", "0.1"])
    assert exited.value.code == 2


@pytest.mark.parametrize("options, message", [
    ({"size": True}, "size should be a positive integer, got True"),
    ({"size": 1.5}, "size should be a positive integer, got 1.5"),
    ({"sparsity": True}, "sparsity should lie in"),
])
def test_select_tokens_refuses_a_size_that_is_not_a_whole_number(options, message):
    """``size=True`` ran a set of 1 and ``size=1.5`` raised a KeyError deep inside: both are refused
    before anything runs (no model is needed to see it)."""
    from probattr_monitor.errors import ProbeInputError
    from probattr_monitor.faithfulness.joint_run import select_tokens

    with pytest.raises(ProbeInputError, match=message):
        select_tokens(None, None, ["a b"], **options)
