"""Bad input: one clear ProbeInputError naming the problem; a diverged model gives an invalid result."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

from probattr_monitor import ProbeInputError, ProbeSettings, probe
from probattr_monitor.prompts import read_prompts_file

from ..conftest import build_model


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model("gpt2", len(tokenizer), peaked=False)


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt(model, tokenizer, prompt):
    with pytest.raises(ProbeInputError, match="prompt is empty"):
        probe(model, tokenizer, prompt, progress=False)


def test_response_token_ids_must_be_ids_of_this_model(model, tokenizer):
    assert probe(model, tokenizer, ["the cat"], responses=[[5, 6]], progress=False)[0].response_token_ids == [5, 6]
    with pytest.raises(ProbeInputError, match="not a token id of this model"):
        probe(model, tokenizer, ["the cat"], responses=[[5, 10**6]], progress=False)
    with pytest.raises(ProbeInputError, match="holds no token ids"):
        probe(model, tokenizer, ["the cat"], responses=[[]], progress=False)


def test_empty_response(model, tokenizer):
    with pytest.raises(ProbeInputError, match="response is empty"):
        probe(model, tokenizer, "the cat", responses="", progress=False)


def test_non_string_prompt(model, tokenizer):
    with pytest.raises(ProbeInputError, match="prompt 0 should be a string or a non-empty list of chat messages"):
        probe(model, tokenizer, [3], progress=False)


def test_text_that_tokenizes_to_nothing(model):
    """A BPE without an unknown token drops characters it has never seen."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(["abc abc cab"], trainers.BpeTrainer(special_tokens=["<s>", "</s>"], show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>")
    assert tokenizer("жжж", add_special_tokens=False)["input_ids"] == []
    with pytest.raises(ProbeInputError, match="tokenizes to no tokens"):
        probe(model, tokenizer, "жжж", responses="abc", progress=False)


def test_longer_than_context(model, tokenizer):
    context = model.config.n_positions
    with pytest.raises(ProbeInputError, match=f"more than the model's context of {context}"):
        probe(model, tokenizer, "the cat " * context, responses=" sat", progress=False)
    with pytest.raises(ProbeInputError, match="max_new_tokens"):
        probe(model, tokenizer, "the cat", max_new_tokens=context, progress=False)


def test_model_without_causal_lm_head(tokenizer):
    base = GPT2Model(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2))
    with pytest.raises(ProbeInputError, match="GPT2Model is not a causal language model"):
        probe(base, tokenizer, "the cat", progress=False)


def test_tokenizer_without_bos_or_eos(model, tokenizer):
    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    assert bare.bos_token_id is None and bare.eos_token_id is None
    with pytest.raises(ProbeInputError, match="neither a BOS nor an EOS"):
        probe(model, bare, "the cat", progress=False)


def test_tokenizer_with_eos_only_uses_eos_as_start(model, tokenizer):
    eos_only = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="</s>")
    result = probe(model, eos_only, "the cat", responses=" sat", progress=False)
    assert result.start_token_id == tokenizer.eos_token_id


def test_prompt_and_response_counts_must_match(model, tokenizer):
    with pytest.raises(ProbeInputError, match="2 prompt\\(s\\) but 1 response"):
        probe(model, tokenizer, ["a", "b"], responses=["c"], progress=False)
    with pytest.raises(ProbeInputError, match="one response string"):
        probe(model, tokenizer, ["a", "b"], responses="c", progress=False)
    with pytest.raises(ProbeInputError, match="no prompts"):
        probe(model, tokenizer, [], progress=False)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens should be an integer >= 1, got 0"),
        ({"as_band": -0.1}, "as_band should be a finite number > 0, got -0.1"),
        ({"as_band": float("nan")}, "as_band should be a finite number > 0, got nan"),
        ({"entropy_threshold": -1}, "entropy_threshold should be a finite number >= 0, got -1"),
        ({"noise_entropy": "both"}, "noise_entropy should be one of 'context', 'prompt', got 'both'"),
        ({"candidate_policy": "magic"}, "candidate_policy should be one of 'auto', 'exact', 'budget', got 'magic'"),
        ({"candidate_budget": 0}, "candidate_budget should be an integer >= 2, got 0"),
        ({"candidate_budget": -5}, "candidate_budget should be an integer >= 2, got -5"),
        ({"seed": -1}, "seed should be an integer >= 0, got -1"),
        ({"memory_budget_mb": 0}, "memory_budget_mb should be a finite number > 0, got 0"),
        ({"max_batch_size": 0}, "max_batch_size should be an integer >= 1, got 0"),
        ({"top_k": 2.5}, "top_k should be an integer >= 1, got 2.5"),
        ({"colour": "red"}, "unknown probe setting\\(s\\) 'colour'; valid settings:"),
    ],
)
def test_bad_settings(model, tokenizer, changes, message):
    with pytest.raises(ProbeInputError, match=message):
        ProbeSettings().replace(**changes)
    with pytest.raises(ProbeInputError, match=message):
        probe(model, tokenizer, "the cat", progress=False, **changes)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
@pytest.mark.parametrize("response", [" sat", None], ids=["given", "generated"])
def test_non_finite_logits_give_an_invalid_result(tokenizer, poison, response):
    diverged = build_model("llama", len(tokenizer), peaked=False)
    with torch.no_grad():
        diverged.model.layers[0].mlp.down_proj.weight.fill_(poison)
    result = probe(diverged, tokenizer, "the cat", responses=response, progress=False)
    assert not result.valid
    assert "non-finite logits" in result.error
    assert result.tokens == [] and result.log_p_response is None and result.noise_tokens is None
    result.to_json()  # still strict JSON


def test_prompts_file_errors(tmp_path):
    with pytest.raises(ProbeInputError, match="prompts file not found"):
        read_prompts_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ProbeInputError, match="holds no prompt"):
        read_prompts_file(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProbeInputError, match="is not UTF-8"):
        read_prompts_file(latin)
    good = tmp_path / "good.txt"
    good.write_text("one\n\ntwo\n", encoding="utf-8")
    assert read_prompts_file(good) == ["one", "two"]


def test_paper_prompts_ship_verbatim():
    from probattr_monitor import paper_prompts

    prompts = paper_prompts()
    assert len(prompts) == 7
    assert prompts[-1] == "What year did Albert Einstein visit Mars?"
    assert prompts[0].startswith('Context: "Tim was nervous about his talk.')
    assert prompts[0].endswith("he took deep breaths and tried to remain")
    assert prompts[5] == (
        'Sentence: "The water bottle didn\'t fit into the bag because it was too big." Question: '
        '"What is \'it\' referring to?'
    )


def test_bidirectional_model_is_refused(tokenizer):
    """BERT loads through AutoModelForCausalLM, but without is_decoder it attends both ways."""
    from transformers import BertConfig, BertLMHeadModel

    bert = BertLMHeadModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ProbeInputError, match="BertLMHeadModel is not a causal language model"):
        probe(bert, tokenizer, "the cat", responses=" sat", progress=False)


def test_every_random_bidirectional_model_is_refused_and_causal_ones_pass():
    """A BERT loaded as a causal LM gets a freshly initialised head that can hold NaN (transformers
    says "this checkpoint seem corrupted"): the check skipped non-finite logits and the engine
    then failed on the missing cache (a flaky CLI test). It must refuse it at every seed."""
    import torch
    from transformers import BertConfig, BertLMHeadModel

    from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama
    from probattr_monitor.probes.inputs.tokens import check_causal_attention

    for seed in range(12):
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32)
        bert = BertLMHeadModel(config).eval()
        with torch.no_grad():
            bert.cls.predictions.decoder.bias[seed::7] = float("nan")  # a head with non-finite entries
        with pytest.raises(ProbeInputError, match="is not a causal language model"):
            check_causal_attention(bert, 0)
    for build in (tiny_gpt2, tiny_llama):
        for init in (0.02, 0.5):
            for dtype in (torch.float32, torch.bfloat16):
                check_causal_attention(build(300, initializer_range=init).to(dtype), 0)
