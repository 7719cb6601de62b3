"""Tiny models and tokenizers built in-process, with no network: the demo's models, and what the
examples, the benchmarks, the tests and the documentation's runnable snippets build.

Examples:
    >>> from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2
    >>> tokenizer = byte_bpe_tokenizer(["a tiny corpus", "of two lines"], vocab_size=300)
    >>> model = tiny_gpt2(len(tokenizer), seed=0)
    >>> model.config.n_layer
    2
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# SmolLM2-Instruct's ChatML template: a default system message, <|im_start|> both BOS and first token.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chat_tokenizer(texts: Iterable[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """:func:`byte_bpe_tokenizer` shaped like SmolLM2-Instruct's: ``<|im_start|>`` (id 0) is the BOS
    and opens every turn, ``<|im_end|>`` (id 1) is the EOS, and the ChatML template
    :data:`CHATML_TEMPLATE` adds a default system message."""
    tokenizer = byte_bpe_tokenizer(texts, vocab_size, bos=IM_START, eos=IM_END)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def byte_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 300, bos: str = BOS,
                       eos: str = EOS) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``; it encodes any text (bytes are the base).

    Special tokens: ``bos`` (``<s>``, id 0), ``eos`` (``</s>``, id 1), ``<pad>`` (id 2).
    ``vocab_size`` counts the 256 byte tokens and the three specials, so it must be at least 259.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 259:
        raise ValueError(f"vocab_size should be at least 259 (256 bytes + 3 specials), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[bos, eos, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=PAD)


def tiny_gpt2(
    vocab_size: int,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 4,
    n_positions: int = 128,
    initializer_range: float = 0.02,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 LM; a large ``initializer_range`` gives peaked distributions."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    return GPT2LMHeadModel(config).eval()


def tiny_llama(
    vocab_size: int,
    num_hidden_layers: int = 2,
    hidden_size: int = 32,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 128,
    initializer_range: float = 0.02,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama LM (grouped-query attention, rotary positions)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    return LlamaForCausalLM(config).eval()
