"""The demo: train a tiny GPT-2 on the grammar with ProbAttrCallback, and compare with the truth.

Steps: sample a corpus from :class:`HiddenMarkovGrammar` (fixed seed); build a word-level
tokenizer and a tiny GPT-2 from a config; train with the HF ``Trainer`` (CPU), evaluating and
saving every ``save_steps`` with the callback attached; then, per checkpoint, read the callback's
``probattr.json`` and compare it with the process's exact probe values, and measure the per-token
KL from the true process to the model on held-out sentences.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..probes.settings import ProbeSettings
from .grammar import HiddenMarkovGrammar, word_tokenizer
from .truth import next_word_distributions, true_quantities


@dataclass
class DemoConfig:
    """Demo settings; the defaults run in a few minutes on 2 CPU cores."""

    output_dir: str = "out/demo"
    max_steps: int = 2000
    save_steps: int = 100
    train_sentences: int = 20000
    held_out_sentences: int = 300
    probe_prompts: int = 7
    batch_size: int = 32
    learning_rate: float = 1e-3
    n_layer: int = 2
    n_embd: int = 64
    seed: int = 0
    report_to: Sequence[str] = ("tensorboard",)
    settings: ProbeSettings = field(default_factory=ProbeSettings)


@dataclass
class CheckpointRow:
    """One line of the convergence table."""

    step: int
    eval_loss: Optional[float]
    kl_to_truth: float
    noise_tokens: int
    true_noise_tokens: int
    mean_abs_as_error: float


@dataclass
class DemoReport:
    rows: list = field(default_factory=list)
    correlations: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    probe_seconds: float = 0.0
    true_noise_tokens: int = 0
    output_dir: str = ""


def probe_set(grammar: HiddenMarkovGrammar, count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` grammar sentences of at least 5 words, split ~60/40 into prompt and response."""
    rng = np.random.default_rng(seed)
    prompts: list[str] = []
    responses: list[str] = []
    while len(prompts) < count:
        words = grammar.sample(rng)
        if len(words) < 5:
            continue
        cut = int(np.ceil(0.6 * len(words)))
        prompts.append(" ".join(words[:cut]))
        responses.append(" " + " ".join(words[cut:]))
    return prompts, responses


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either side is constant."""

    def ranks(values):
        values = np.asarray(values, dtype=float)
        order = values.argsort(kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # average the ranks of ties
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    a, b = ranks(x), ranks(y)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@torch.inference_mode()
def kl_to_truth(model, tokenizer, grammar: HiddenMarkovGrammar, sentences: Sequence[str]) -> float:
    """Mean over held-out positions of ``KL(P_true(. | x_<t) || P_model(. | x_<t))`` in nats."""
    model.eval()
    columns = [tokenizer.convert_tokens_to_ids(word) for word in grammar.words]  # grammar word -> token id
    word_index = {word: i for i, word in enumerate(grammar.words)}
    total, count = 0.0, 0
    for sentence in sentences:
        words = sentence.split()
        truth = next_word_distributions(grammar, [word_index[w] for w in words])  # (T + 1, W)
        ids = [tokenizer.bos_token_id] + [tokenizer.convert_tokens_to_ids(w) for w in words]
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        log_model = torch.log_softmax(logits, -1)[:, columns].numpy()  # (T + 1, W)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(truth > 0, truth * (np.log(truth) - log_model), 0.0)
        total += terms.sum()
        count += truth.shape[0]
    return total / count


def run_demo(config: DemoConfig, console=None) -> DemoReport:
    """Train with the callback, then build the convergence table (see module docstring)."""
    from rich.console import Console
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from ..callbacks import ProbAttrCallback
    from ..tiny_models import tiny_gpt2

    console = console or Console()
    began = time.perf_counter()
    grammar = HiddenMarkovGrammar.build()
    tokenizer = word_tokenizer(grammar)
    corpus = grammar.corpus(config.train_sentences + config.held_out_sentences, seed=config.seed)
    train, held_out = corpus[: config.train_sentences], corpus[config.train_sentences:]
    prompts, responses = probe_set(grammar, config.probe_prompts, seed=config.seed + 1)

    word_index = {word: i for i, word in enumerate(grammar.words)}
    truths = [true_quantities(grammar, [word_index[w] for w in p.split()], [word_index[w] for w in r.split()])
              for p, r in zip(prompts, responses)]
    true_noise = sum(
        int(
            (
                (t.attribution_score.abs() <= config.settings.as_band)
                & (t.entropy_context >= config.settings.entropy_threshold)
            ).sum()
        )
        for t in truths
    )
    console.print(
        f"grammar: {len(grammar.words)} words, {len(grammar.states)} hidden states; "
        f"{len(train)} training sentences; {len(prompts)} probe prompts"
    )
    console.print(f"true noise tokens of the process (the floor a converged model approaches): {true_noise}")

    def encode(sentence: str) -> dict:
        ids = (
            [tokenizer.bos_token_id]
            + tokenizer(sentence, add_special_tokens=False)["input_ids"]
            + [tokenizer.eos_token_id]
        )
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    model = tiny_gpt2(
        len(tokenizer), n_layer=config.n_layer, n_embd=config.n_embd, n_head=4, n_positions=32, seed=config.seed
    )
    callback = ProbAttrCallback(prompts=prompts, responses=responses, settings=config.settings)
    args = TrainingArguments(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        save_steps=config.save_steps,
        eval_strategy="steps",
        eval_steps=config.save_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=config.learning_rate,
        warmup_steps=config.save_steps // 3,
        weight_decay=0.0,
        use_cpu=True,
        report_to=list(config.report_to),
        logging_steps=config.save_steps // 3,
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
        save_total_limit=None,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=[encode(s) for s in train],
        eval_dataset=[encode(s) for s in held_out],
        processing_class=tokenizer,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[callback],
    )
    trainer.train()

    report = DemoReport(true_noise_tokens=true_noise, output_dir=config.output_dir)
    eval_losses = {entry["step"]: entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry}
    steps = sorted(int(p.name.split("-")[1]) for p in Path(config.output_dir).glob("checkpoint-*"))
    for step in steps:
        folder = Path(config.output_dir) / f"checkpoint-{step}"
        record = json.loads((folder / "probattr.json").read_text(encoding="utf-8"))
        report.probe_seconds += record["probe_seconds"]
        errors = [
            abs(token["attribution_score"] - float(truth.attribution_score[token["position"]]))
            for result, truth in zip(record["results"], truths)
            for token in result["tokens"]
        ]
        checkpoint_model = AutoModelForCausalLM.from_pretrained(folder)
        report.rows.append(
            CheckpointRow(
                step=step,
                eval_loss=eval_losses.get(step),
                kl_to_truth=kl_to_truth(checkpoint_model, tokenizer, grammar, held_out[:200]),
                noise_tokens=record["summary"]["noise_tokens"],
                true_noise_tokens=true_noise,
                mean_abs_as_error=float(np.mean(errors)),
            )
        )
    columns = {
        "eval_loss": [r.eval_loss for r in report.rows],
        "kl_to_truth": [r.kl_to_truth for r in report.rows],
        "noise_tokens": [r.noise_tokens for r in report.rows],
        "mean_abs_as_error": [r.mean_abs_as_error for r in report.rows],
    }
    for a, b in (
        ("noise_tokens", "kl_to_truth"),
        ("noise_tokens", "eval_loss"),
        ("mean_abs_as_error", "kl_to_truth"),
        ("eval_loss", "kl_to_truth"),
    ):
        report.correlations[f"{a} ~ {b}"] = spearman(columns[a], columns[b])
    report.wall_seconds = time.perf_counter() - began
    print_report(report, console)
    return report


def print_report(report: DemoReport, console) -> None:
    """The convergence table and the Spearman correlations across checkpoints."""
    from rich.table import Table

    table = Table(
        title="convergence by checkpoint (KL: per token, true process || model, held-out text)", title_justify="left"
    )
    for name in ("step", "eval loss", "KL", "noise tokens", "true noise", "|AS - true AS|"):
        table.add_column(name, justify="right")
    for row in report.rows:
        table.add_row(
            str(row.step),
            f"{row.eval_loss:.4f}" if row.eval_loss is not None else "-",
            f"{row.kl_to_truth:.4f}",
            str(row.noise_tokens),
            str(row.true_noise_tokens),
            f"{row.mean_abs_as_error:.4f}",
        )
    console.print(table)
    for name, value in report.correlations.items():
        shown = f"{value:+.2f}" if np.isfinite(value) else "undefined (one side is constant)"
        console.print(f"Spearman {name}: {shown}")
    share = report.probe_seconds / report.wall_seconds if report.wall_seconds else float("nan")
    console.print(
        f"wall time {report.wall_seconds:.1f} s, probes {report.probe_seconds:.1f} s ({100 * share:.1f}%); "
        f"logs and checkpoints in {report.output_dir}"
    )
