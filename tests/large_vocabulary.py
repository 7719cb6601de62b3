"""A grammar model with a real-sized vocabulary, for the budget policy's tests and benchmark.

Real LMs have large vocabularies most of whose tokens are rare in any given text. This builds a
byte-level BPE of ``vocab_size`` tokens on grammar sentences plus thousands of made-up rare words,
and trains a tiny GPT-2 on the sentences, so its posteriors are peaked the way a trained model's
are (not chaotically, as a randomly initialised one's)."""

from __future__ import annotations

from typing import Optional

from probattr_monitor.demo.grammar import HiddenMarkovGrammar


def rare_word_tokenizer(vocab_size: int = 4096, sentences: int = 3000, seed: int = 0):
    """``(tokenizer, corpus)``: a byte-level BPE over grammar sentences and 3,000 rare words."""
    from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer

    corpus = HiddenMarkovGrammar.build().corpus(sentences, seed=seed)
    rare = " ".join(f"zq{i}x" for i in range(3000))
    return byte_bpe_tokenizer(corpus + [rare], vocab_size=vocab_size), corpus


def trained_tiny_gpt2(tokenizer, corpus, steps: int = 300, output_dir: Optional[str] = None):
    """A tiny GPT-2 (2 layers, width 64) trained ``steps`` steps on ``corpus`` with the Trainer
    (``output_dir``: the Trainer's folder; a temporary one, removed afterwards, by default)."""
    import tempfile

    if output_dir is None:
        with tempfile.TemporaryDirectory(prefix="probattr-trained-tiny-") as folder:
            return trained_tiny_gpt2(tokenizer, corpus, steps, folder)
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from probattr_monitor.demo.tiny_models import tiny_gpt2

    model = tiny_gpt2(len(tokenizer), n_layer=2, n_embd=64, n_positions=64, seed=0)
    data = [{"input_ids": [tokenizer.bos_token_id] + tokenizer(s, add_special_tokens=False)["input_ids"]
             + [tokenizer.eos_token_id]} for s in corpus]
    args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=32,
                             learning_rate=2e-3, use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()
    return model.eval()
