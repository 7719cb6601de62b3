"""Faithfulness (paper section 5): the metrics against hand-computed values, AOPC's bounds against
brute force, and the Captum methods called for real on a tiny model (CLI included)."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys

import pytest

from probattr_monitor import ProbeSettings
from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.errors import ProbeInputError
from probattr_monitor.faithfulness import (
    aopc,
    aopc_bounds,
    comprehensiveness,
    evaluate_faithfulness,
    infidelity,
    normalised_aopc,
    sufficiency,
)

from ..cli.test_cli import run_cli
from ..run_if import run_if

pytestmark = run_if(packages=("captum",))
WEIGHTS = [3.0, 1.0, 0.0]


def additive(removed: frozenset) -> float:
    """log P(r | p) drops by WEIGHTS[j] when token j is removed."""
    return -sum(WEIGHTS[j] for j in removed)


def test_metrics_by_hand():
    best, worst = [0, 1, 2], [2, 1, 0]
    assert aopc(best, additive) == pytest.approx(11 / 3)  # curve 3, 4, 4
    assert aopc(worst, additive) == pytest.approx(5 / 3)  # curve 0, 1, 4
    bounds = aopc_bounds(3, additive)
    assert bounds == pytest.approx((5 / 3, 11 / 3, True))
    assert normalised_aopc(best, additive, bounds) == pytest.approx(1.0)
    assert normalised_aopc(worst, additive, bounds) == pytest.approx(0.0)
    # bins 1, 5, 10, 20, 50% of 3 tokens: top 1, 1, 1, 1, 2
    assert comprehensiveness(best, additive) == pytest.approx((4 * 3 + 4) / 5)
    assert sufficiency(best, additive) == pytest.approx((4 * 1 + 0) / 5)
    subsets = [frozenset({0}), frozenset({1}), frozenset({0, 1, 2})]
    assert infidelity(WEIGHTS, additive, subsets) == pytest.approx(0.0)  # exact attributions
    # a = (1, 1, 1): predicted 1, 1, 3; observed 3, 1, 4; beta = 16/11; squared residuals 289, 25, 16 / 121
    assert infidelity([1.0, 1.0, 1.0], additive, subsets) == pytest.approx(330 / 121 / 3)


def test_aopc_bounds_equal_brute_force_and_the_beam_stays_inside():
    rng = random.Random(0)
    n = 5
    table = {frozenset(c): rng.uniform(-5, 0) for size in range(n + 1) for c in itertools.combinations(range(n), size)}
    table[frozenset()] = 0.0
    value = table.__getitem__
    every = [aopc(list(order), value) for order in itertools.permutations(range(n))]
    low, high, exact = aopc_bounds(n, value)
    assert exact and low == pytest.approx(min(every)) and high == pytest.approx(max(every))
    beam_low, beam_high, beam_exact = aopc_bounds(n, value, exact_limit=0, beam_width=2)
    assert not beam_exact and min(every) - 1e-12 <= beam_low and beam_high <= max(every) + 1e-12


@pytest.fixture(scope="module")
def peaked(tokenizer):
    return tiny_gpt2(len(tokenizer), seed=3, initializer_range=0.6)


def test_captum_methods_run_for_real_and_repeat_under_a_seed(peaked, tokenizer):
    prompts = ["the cat sat on", "a bird sang in the"]
    first = evaluate_faithfulness(peaked, tokenizer, prompts, settings=None, samples=20)
    assert first.methods == ["attribution_score", "occlusion", "lime", "shapley", "input_x_gradient",
                             "gradient_shap", "random"]
    for prompt in first.per_prompt:
        assert prompt["bounds_exact"]
        # occlusion (Captum's FeatureAblation) is exactly the single-removal change: same operator
        assert prompt["attributions"]["occlusion"] == pytest.approx(prompt["observed_single_removal"], abs=1e-5)
        for method, values in prompt["metrics"].items():
            assert -1e-9 <= values["normalised_aopc"] <= 1 + 1e-9, method
            assert values["infidelity"] >= 0
    summary = first.summary["normalised_aopc"]["attribution_score"]
    assert summary["low"] <= summary["mean"] <= summary["high"] and summary["n"] == 2
    assert first.as_check["tokens"] == sum(len(p["tokens"]) for p in first.per_prompt)
    assert -1 <= first.as_check["spearman"] <= 1 and len(first.as_check["top_tokens"]) == 2
    again = evaluate_faithfulness(peaked, tokenizer, prompts, samples=20)
    assert again.summary == first.summary


def test_unknown_method_and_reagent_without_inseq(peaked, tokenizer):
    with pytest.raises(ProbeInputError, match="unknown method"):
        evaluate_faithfulness(peaked, tokenizer, ["the cat"], methods=["magic"])
    result = evaluate_faithfulness(peaked, tokenizer, ["the cat"], methods=["attribution_score", "reagent"])
    if "reagent" in result.skipped:
        assert "Inseq" in result.skipped["reagent"]
    assert result.methods[0] == "attribution_score"


def test_cli_writes_json_and_plot(peaked, tokenizer, tmp_path):
    folder = tmp_path / "model"
    peaked.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out, png = tmp_path / "f.json", tmp_path / "f.png"
    completed = run_cli("faithfulness", "--model", folder, "--prompt", "the cat sat", "--prompt", "a bird",
                        "--max-new-tokens", "3", "--methods", "attribution_score", "occlusion", "random", "--samples",
                        "10", "--json", out, "--plot", png)
    assert completed.returncode == 0, completed.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["methods"] == ["attribution_score", "occlusion", "random"]
    assert set(data["summary"]) == {"normalised_aopc", "aopc", "comprehensiveness", "sufficiency", "infidelity",
                                    "probability_faithfulness@1%", "probability_faithfulness@10%",
                                    "probability_faithfulness@20%"}
    assert "replace with the baseline token" in data["protocol"]["deletion_operator"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "normalised_aopc" in completed.stdout and "Spearman" in completed.stdout


def test_the_plot_leaves_the_callers_matplotlib_backend_alone(peaked, tokenizer, tmp_path):
    """Plotting draws on a ``Figure`` of its own: no ``matplotlib.use`` behind the caller's back."""
    import matplotlib

    from probattr_monitor.faithfulness.output import plot_faithfulness

    result = evaluate_faithfulness(peaked, tokenizer, ["the cat sat"], methods=["attribution_score", "random"],
                                   settings=ProbeSettings(max_new_tokens=2, progress=False), samples=4)
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_faithfulness(result, tmp_path / "f.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_the_package_and_the_metrics_work_without_captum():
    code = ("import sys; sys.modules['captum'] = None  # as if not installed\n"
            "import probattr_monitor.faithfulness as f\n"
            "from probattr_monitor.faithfulness.methods import require_captum\n"
            "assert f.aopc([0], lambda s: -float(len(s))) == 1.0\n"
            "try:\n    require_captum()\nexcept ImportError as error:\n    print(error)\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "pip install 'probattr-monitor[faithfulness]'" in completed.stdout


def test_a_method_named_twice_runs_once(peaked, tokenizer):
    result = evaluate_faithfulness(peaked, tokenizer, ["the cat sat"], methods=["attribution_score", "occlusion",
                                                                                 "occlusion", "random"], samples=5)
    assert result.methods == ["attribution_score", "occlusion", "random"]
    once = evaluate_faithfulness(peaked, tokenizer, ["the cat sat"], methods=["attribution_score", "occlusion",
                                                                               "random"], samples=5)
    assert result.summary == once.summary and result.forwards == once.forwards


def test_a_tokenizer_with_no_baseline_token_is_bad_input(peaked, tokenizer, tmp_path):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.pad_token, bare.eos_token = None, None
    assert bare.unk_token_id is None and bare.pad_token_id is None and bare.eos_token_id is None
    with pytest.raises(ProbeInputError, match="no unk, pad or eos token"):
        evaluate_faithfulness(peaked, bare, ["the cat"], methods=["attribution_score"])
    folder = tmp_path / "model"
    peaked.save_pretrained(folder)
    bare.save_pretrained(folder)
    completed = run_cli("faithfulness", "--model", folder, "--prompt", "the cat", "--methods", "attribution_score")
    assert completed.returncode == 2, completed.stderr
    assert "no unk, pad or eos token" in completed.stderr and "Traceback" not in completed.stderr


def test_the_jacobian_scopes_are_faithfulness_methods_that_need_no_captum(peaked, tokenizer, monkeypatch):
    """The three scopes score the same tokens as AS, through the same deletion metrics, with Captum
    unimportable; each equals ``probes.engines.scopes`` run on the scored sequence directly."""
    import builtins

    import torch

    from probattr_monitor import probe
    from probattr_monitor.probes.engines.scopes import jacobian_scopes

    real_import = builtins.__import__

    def no_captum(name, *args, **kwargs):
        if name == "captum" or name.startswith("captum."):
            raise ImportError("captum hidden by the test")
        return real_import(name, *args, **kwargs)

    methods = ["attribution_score", "semantic_scope", "fisher_scope", "temperature_scope"]
    monkeypatch.setattr(builtins, "__import__", no_captum)
    result = evaluate_faithfulness(peaked, tokenizer, ["the cat sat on"], methods=methods)
    monkeypatch.undo()
    assert result.methods == methods and not result.skipped
    [prompt] = result.per_prompt
    for method in methods[1:]:
        values = prompt["attributions"][method]
        assert len(values) == len(prompt["tokens"]) and all(v >= 0 for v in values), method
        assert -1e-9 <= prompt["metrics"][method]["normalised_aopc"] <= 1 + 1e-9
    [probed] = probe(peaked, tokenizer, ["the cat sat on"])
    ids = torch.tensor([probed.start_token_id, *probed.prompt_token_ids, *probed.response_token_ids])
    direct = jacobian_scopes(peaked, ids, len(probed.prompt_token_ids), scopes=("semantic",))
    assert prompt["attributions"]["semantic_scope"] == pytest.approx(direct.aggregate["semantic"].tolist())
