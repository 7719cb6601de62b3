"""Instruct models: prompts through the chat template, only the user's tokens scored, JSONL
prompt files, empty responses flagged; with a real TRL ``SFTTrainer``."""

from __future__ import annotations

import json

import pytest
import torch

from probattr_monitor import probe
from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, chat_tokenizer, tiny_gpt2
from probattr_monitor.errors import ProbeInputError
from probattr_monitor.probes.engines.scores import score_prompt
from probattr_monitor.probes.inputs.chat import encode_chat
from probattr_monitor.probes.types.settings import ProbeSettings

from ..cli.test_cli import assert_usage_error, cli_main, run_cli

QA = [("what sat on the mat", "the cat sat on the mat"), ("where did the dog run", "the dog ran up the hill")] * 4
CORPUS = [q + " " + a for q, a in QA] + ["system user assistant You are a helpful assistant. Be brief."]


@pytest.fixture(scope="module")
def chat_tok():
    return chat_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def chat_model(chat_tok):
    return tiny_gpt2(len(chat_tok), seed=0, initializer_range=0.5)


def test_template_never_doubles_the_start_token(chat_tok):
    """<|im_start|> is both the BOS and the template's first token: it is s, once."""
    encoded = encode_chat(chat_tok, "what sat on the mat", None, chat_tok.bos_token_id, "prompt")
    rendered = chat_tok.apply_chat_template([{"role": "user", "content": "what sat on the mat"}], tokenize=False,
                                            add_generation_prompt=True)
    assert [encoded.start] + encoded.prompt_ids == chat_tok(rendered, add_special_tokens=False)["input_ids"]
    assert encoded.prompt_ids[0] != chat_tok.bos_token_id
    assert chat_tok.decode([encoded.prompt_ids[k] for k in encoded.positions]) == "what sat on the mat"


def test_only_user_tokens_are_scored_and_template_tokens_stay_fixed(chat_model, chat_tok):
    result = probe(chat_model, chat_tok, "what sat on the mat", max_new_tokens=3, progress=False)
    assert result.chat_template
    assert "".join(t.token for t in result.tokens) == "what sat on the mat"
    assert result.summary["n_tokens"] == len(result.tokens) < len(result.prompt_token_ids)
    # the same sequence scored at every position: the user's rows are the same numbers
    ids = torch.tensor([result.start_token_id] + result.prompt_token_ids + result.response_token_ids)
    full = score_prompt(chat_model, ids, len(result.prompt_token_ids), ProbeSettings(), "exact")
    for token in result.tokens:
        assert token.attribution_score == pytest.approx(float(full.quantities.attribution_score[token.position]),
                                                         abs=1e-9)
        assert token.entropy_context == pytest.approx(float(full.quantities.entropy_context[token.position]),
                                                      abs=1e-9)
    # the scored positions' cost only: fewer token-forwards than all positions
    assert result.summary["token_forwards"] < full.token_forwards


def test_system_message_and_messages_prompts(chat_model, chat_tok):
    plain = probe(chat_model, chat_tok, "what sat on the mat", max_new_tokens=2, progress=False)
    brief = probe(chat_model, chat_tok, "what sat on the mat", max_new_tokens=2, progress=False, system="Be brief.")
    assert chat_tok.decode(brief.prompt_token_ids).count("Be brief.") == 1
    assert brief.prompt_token_ids != plain.prompt_token_ids
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what sat\non the mat"}]
    [result] = probe(chat_model, chat_tok, [conversation], max_new_tokens=2, progress=False)
    assert result.prompt == "what sat\non the mat" and result.messages == conversation
    assert "".join(t.token for t in result.tokens) == "what sat\non the mat"


def test_chat_template_setting_resolves(chat_model, chat_tok):
    raw = probe(chat_model, chat_tok, "what sat on the mat", max_new_tokens=2, progress=False, chat_template=False)
    assert not raw.chat_template and len(raw.tokens) == len(raw.prompt_token_ids)
    plain_tok = byte_bpe_tokenizer(CORPUS, vocab_size=300)  # no template: "auto" probes the raw text
    auto = probe(chat_model, plain_tok, "what sat on the mat", max_new_tokens=2, progress=False)
    assert not auto.chat_template
    with pytest.raises(ProbeInputError, match="has no chat template"):
        probe(chat_model, plain_tok, "what sat", progress=False, chat_template=True)
    with pytest.raises(ProbeInputError, match="needs the tokenizer's chat template"):
        probe(chat_model, chat_tok, [[{"role": "user", "content": "hi"}]], progress=False, chat_template=False)
    with pytest.raises(ProbeInputError, match="chat_template should be"):
        ProbeSettings(chat_template="yes")


def test_empty_response_is_flagged(chat_model, chat_tok):
    eos = chat_tok.eos_token_id
    empty = probe(chat_model, chat_tok, "what sat on the mat", responses=[eos], progress=False)
    assert empty.response_empty and empty.to_dict()["response_empty"] is True
    full = probe(chat_model, chat_tok, "what sat on the mat", responses=" the cat", progress=False)
    assert not full.response_empty


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory, chat_model, chat_tok):
    folder = tmp_path_factory.mktemp("tiny-chat")
    chat_model.save_pretrained(folder)
    chat_tok.save_pretrained(folder)
    return folder


def test_cli_jsonl_prompts_chat_flags_and_empty_warning(chat_model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"prompt": "what sat\non the mat"},
             {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "where did"}]}]
    prompts.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    out = tmp_path / "r.json"
    completed = run_cli("attribute", "--model", chat_model_dir, "--prompts-file", prompts, "--max-new-tokens", "2",
                        "--json", out, "--no-progress")
    assert completed.returncode == 0, completed.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [d["prompt"] for d in data] == ["what sat\non the mat", "where did"]
    assert all(d["chat_template"] for d in data) and "chat template" in completed.stdout

    off = run_cli("attribute", "--model", chat_model_dir, "--prompt", "what sat", "--chat-template", "off",
                  "--max-new-tokens", "2", "--json", out, "--no-progress")
    assert off.returncode == 0, off.stderr
    assert not json.loads(out.read_text(encoding="utf-8"))[0]["chat_template"]

    empty = run_cli("attribute", "--model", chat_model_dir, "--prompt", "what sat", "--response", "<|im_end|>",
                    "--no-progress")
    assert empty.returncode == 0, empty.stderr
    assert "the response is empty" in empty.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"text": "wrong"}\n', encoding="utf-8")
    assert_usage_error(cli_main("attribute", "--model", chat_model_dir, "--prompts-file", bad), "line 2")
    assert_usage_error(cli_main("attribute", "--model", chat_model_dir, "--prompt", "x", "--chat-template", "maybe"),
                       "invalid choice")


def test_sft_trainer_callback_probes_the_templated_prompts(tmp_path, chat_tok):
    """A real TRL SFTTrainer on a conversational dataset: the callback uses the same template."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from probattr_monitor import ProbAttrCallback
    from probattr_monitor.monitoring.record import CheckpointRecord

    model = tiny_gpt2(len(chat_tok), seed=0)
    data = Dataset.from_list([{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                              for q, a in QA])
    callback = ProbAttrCallback(prompts=["what sat on the mat", [{"role": "user", "content": "where did\nthe dog"}]],
                                report_to="none", response_mode="fixed", settings=ProbeSettings(max_new_tokens=3),
                                max_overhead=None)
    args = SFTConfig(output_dir=str(tmp_path), max_steps=4, save_steps=2, per_device_train_batch_size=4, use_cpu=True,
                     report_to="none", logging_steps=1, disable_tqdm=True, max_length=64, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=chat_tok, callbacks=[callback])
    trainer.train()
    record = CheckpointRecord.load(tmp_path / "checkpoint-4" / "probattr.json")
    assert record is not None and record.ok
    first, second = record.results
    assert first["chat_template"] and second["chat_template"]
    assert "".join(t["token"] for t in first["tokens"]) == "what sat on the mat"
    assert "".join(t["token"] for t in second["tokens"]) == "where did\nthe dog"
    assert first["prompt_token_ids"][0] != chat_tok.bos_token_id  # never doubled


def _scored_turn(tokenizer, encoded):
    """(the scored text, the text of the turn it sits in: everything since the last turn opener)."""
    scored = tokenizer.decode([encoded.prompt_ids[k] for k in encoded.positions])
    before = tokenizer.decode([encoded.start] + encoded.prompt_ids[:encoded.positions[0]])
    return scored, before.rsplit("<|im_start|>", 1)[-1]


@pytest.mark.parametrize("prompt, system", [
    ("a helpful assistant", None),  # inside the template's default system message
    ("system", None),  # the role markers
    ("user", None),
    ("the cat sat on", "the cat sat on the mat"),  # inside a --system text
])
def test_the_user_text_is_found_in_its_own_turn(chat_tok, prompt, system):
    """The user's text is scored where the user's turn puts it, never where it first occurs."""
    encoded = encode_chat(chat_tok, prompt, system, chat_tok.bos_token_id, "prompt")
    scored, turn = _scored_turn(chat_tok, encoded)
    assert scored == prompt and turn == "user\n"


def test_a_later_user_turn_is_not_found_in_an_earlier_assistant_turn(chat_tok):
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the cat sat on"},
                    {"role": "user", "content": "the cat sat on"}]
    encoded = encode_chat(chat_tok, conversation, None, chat_tok.bos_token_id, "prompt")
    rendered = chat_tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    second = rendered.rindex("user\nthe cat sat on")  # the last user turn
    ids = chat_tok(rendered, add_special_tokens=False, return_offsets_mapping=True)
    late = [k - 1 for k, (a, _) in enumerate(ids["offset_mapping"]) if a >= second + len("user\n")
            and a < second + len("user\nthe cat sat on")]
    assert chat_tok.decode([encoded.prompt_ids[k] for k in encoded.positions]) == "hithe cat sat on"
    assert [k for k in encoded.positions if k in late] == late and len(late) > 0


def test_a_template_that_rewrites_the_user_text_is_refused(chat_tok):
    import copy

    shouting = copy.deepcopy(chat_tok)
    shouting.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"
    with pytest.raises(ProbeInputError, match="changes the prompt's user text"):
        encode_chat(shouting, "the cat", None, shouting.bos_token_id, "prompt")
