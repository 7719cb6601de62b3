"""The result object owns the the maths guide's JSON format, and reads it back."""

from __future__ import annotations

import json

import pytest

from probattr_monitor import ProbeResult, probe
from probattr_monitor.probes.maths.noise import attribution_band, is_noise

from ..conftest import build_model

MATH_TOP_LEVEL = {"prompt", "response", "prompt_token_ids", "response_token_ids", "log_p_response", "tokens", "summary"}
MATH_TOKEN = {"position", "token_id", "token", "attribution_score", "entropy_prompt", "entropy_context",
              "kl_context_prompt", "kl_prompt_context", "noise"}


@pytest.fixture(scope="module")
def result(tokenizer):
    model = build_model("gpt2", len(tokenizer), peaked=True)
    return probe(model, tokenizer, "the cat sat", max_new_tokens=4, progress=False)


def test_to_dict_has_the_math_md_fields_with_their_types(result):
    data = json.loads(result.to_json())
    assert MATH_TOP_LEVEL <= set(data)
    assert isinstance(data["prompt"], str) and isinstance(data["response"], str)
    assert all(isinstance(i, int) for i in data["prompt_token_ids"] + data["response_token_ids"])
    assert isinstance(data["log_p_response"], float)
    assert isinstance(data["summary"]["noise_tokens"], int)
    for k, token in enumerate(data["tokens"]):
        assert MATH_TOKEN <= set(token)
        assert token["position"] == k and isinstance(token["noise"], bool)
        assert len(token["top_prompt"]) == 5 and len(token["top_context"]) == 5
        assert token["band"] in {"negative", "near_zero", "high"}
    assert data["summary"]["noise_tokens"] == sum(t["noise"] for t in data["tokens"])


def test_json_round_trip(result, tmp_path):
    assert ProbeResult.from_dict(json.loads(result.to_json())) == result
    path = tmp_path / "r.json"
    result.save(path)
    assert ProbeResult.load(path) == result
    assert ProbeResult.load(path).to_dict() == result.to_dict()


def test_bands_and_noise_follow_settings(tokenizer):
    model = build_model("llama", len(tokenizer), peaked=False)
    wide = probe(model, tokenizer, "the cat sat", responses=" on", progress=False, as_band=100.0, entropy_threshold=0.0)
    assert all(t.noise and t.band == "near_zero" for t in wide.tokens)
    strict = probe(model, tokenizer, "the cat sat", responses=" on", progress=False, entropy_threshold=1e6)
    assert not any(t.noise for t in strict.tokens)
    by_prompt = probe(model, tokenizer, "the cat sat", responses=" on", progress=False, noise_entropy="prompt")
    for t in by_prompt.tokens:
        assert t.noise == is_noise(t.attribution_score, t.entropy_prompt, 0.2, 2.0)


@pytest.mark.parametrize("value, band", [(-0.21, "negative"), (-0.2, "near_zero"), (0.0, "near_zero"),
                                         (0.2, "near_zero"), (0.2001, "high")])
def test_band_edges(value, band):
    assert attribution_band(value, 0.2) == band


def test_noise_definition():
    assert is_noise(0.1, 3.0, 0.2, 2.0)
    assert not is_noise(0.3, 3.0, 0.2, 2.0)
    assert not is_noise(-0.3, 3.0, 0.2, 2.0)
    assert not is_noise(0.0, 1.9, 0.2, 2.0)
