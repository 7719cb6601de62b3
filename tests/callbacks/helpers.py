"""A tiny real training run: GPT-2 from a config, a byte-level BPE tokenizer, a real Trainer."""

from __future__ import annotations

from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2

TEXTS = [
    "the cat sat on the mat and the dog ran after it",
    "a bird sang in the tree while the sun rose over the hill",
    "the dog sat in the sun and the cat ran up the tree",
    "a cat and a bird sang on the hill",
] * 4
PROMPTS = ["the cat sat on", "a bird sang"]


def tokenizer():
    return byte_bpe_tokenizer(TEXTS, vocab_size=300)


def make_trainer(output_dir, callbacks=(), report_to="none", max_steps=6, save_steps=2, learning_rate=5e-4,
                 evaluate=False, tok=None, model=None, **extra):
    """A Trainer on CPU, saving every ``save_steps`` (and evaluating then, if ``evaluate``)."""
    tok = tok or tokenizer()
    model = model or tiny_gpt2(len(tok), seed=0)
    data = [{"input_ids": tok(t)["input_ids"]} for t in TEXTS]
    if evaluate:
        extra.update(eval_strategy="steps", eval_steps=save_steps)
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, save_steps=save_steps, save_strategy="steps",
        per_device_train_batch_size=4, learning_rate=learning_rate, use_cpu=True, report_to=report_to,
        logging_steps=1, seed=0, data_seed=0, disable_tqdm=True, **extra,
    )
    return Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:4] if evaluate else None,
                   processing_class=tok, data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
                   callbacks=list(callbacks))
