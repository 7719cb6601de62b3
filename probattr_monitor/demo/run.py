"""The demo: train a tiny GPT-2 on the grammar with ProbAttrCallback, and compare with the truth.

Steps: sample a corpus from :class:`HiddenMarkovGrammar` (fixed seed); build a word-level
tokenizer and a tiny GPT-2 from a config; train with the HF ``Trainer`` (CPU), evaluating and
saving every ``save_steps`` with the callback attached; then, per checkpoint, read the callback's
``probattr.json`` and compare it with the process's exact probe values, and measure the per-token
KL from the true process to the model on held-out sentences.

Longer than 300 lines because the demo is a script: building the grammar's data, training with the
callback, the sweep and the report, read top to bottom.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..monitoring.correlation import spearman
from ..monitoring.decision import DEFAULT_RULE, recommend
from ..monitoring.run import guard_values
from ..monitoring.statistics import drift_keys, summary_keys
from ..probes.maths.values import is_finite_number
from ..probes.types.result import ProbeResult
from ..probes.types.settings import ProbeSettings
from ..storage import write_json_atomic
from .grammar import HiddenMarkovGrammar, word_tokenizer
from .truth import next_word_distributions, true_quantities


@dataclass
class DemoConfig:
    """Demo settings; the defaults run in about a minute on 2 CPU cores.

    The study (``benchmarks/signal_study.py``) varies the regime: ``n_layer`` / ``n_embd``
    (capacity), ``learning_rate`` (stability), ``extra_words`` (a vocabulary of real size, probed
    with the budget policy), ``init_from`` + ``train_topic`` (a converged model fine-tuned on a
    narrow slice of the process: its own eval loss falls while it forgets the rest),
    ``train_sentences`` (few: overfitting), ``probe_source`` (``"held_out"`` or ``"train"``: probe
    prompts drawn from the training data), ``probe_topic`` (probe prompts of one topic only),
    ``truth_topic`` (the truth is the KL on one topic: the fine-tune's wanted target),
    ``lr_spike`` (``(first step, last step, factor)``: the learning rate multiplied in that window),
    ``nan_at_step`` (the weights go NaN after that step, as a diverged run's do) and
    ``guard_prompts`` (a guard set of that many prompt/response pairs, drawn like the probe set,
    scored for ``log P(r | p)`` only; ``0`` and ``base_guard=True``: the callback's default
    ``guard="base"``, frozen from the model at train begin, off with one line when it starts from
    random weights; ``0`` otherwise: no guard). ``quiet`` (the CLI's demo) keeps the Trainer's log lines,
    progress bars and library warnings off the console: the demo prints its own summary only.
    ``monitor=False`` trains without the callback and stops after training (the baseline of
    ``benchmarks/bench_overhead.py``, or a run a ``watch`` process probes): no table, no summary.
    ``max_overhead`` is the callback's (``None`` here: the demo checks every probe against exact
    truth at every checkpoint, so it probes every position; the callback's own default is 0.05).
    """

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
    extra_words: int = 0
    init_from: Optional[str] = None
    train_topic: Optional[str] = None
    rule: str = DEFAULT_RULE
    probe_source: str = "held_out"
    probe_topic: Optional[str] = None
    truth_topic: Optional[str] = None
    lr_spike: Optional[tuple] = None
    nan_at_step: Optional[int] = None
    guard_prompts: int = 0
    base_guard: bool = False
    quiet: bool = False
    monitor: bool = True
    max_overhead: Optional[float] = None


def row_columns() -> tuple:
    """The columns of a demo row: the checkpoint, the truth, every declared statistic
    (``monitoring.statistics``) and the truth's own comparisons."""
    return ("step", "checkpoint", "status", "eval_loss", "kl_to_truth", *summary_keys(), *drift_keys(),
            "invalid_prompts", "true_noise_tokens", "mean_abs_as_error", "prompt_log_p")
SUMMARY_FILE = "demo_summary.json"


@dataclass
class DemoReport:
    """What the demo found: one row per checkpoint (:func:`row_columns`), the recommendation
    (``{"step", "checkpoint", "rule", "reason", "regret"}``: regret = KL(recommended) / min KL),
    Spearman correlations across checkpoints, and times."""

    rows: list = field(default_factory=list)
    recommended: Optional[dict] = None
    correlations: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    train_seconds: float = 0.0  # trainer.train() alone (the training loop, with the in-loop probes)
    probe_seconds: float = 0.0
    true_noise_tokens: int = 0
    output_dir: str = ""
    report_path: Optional[str] = None


MAX_DRAWS_PER_PROMPT = 1000  # sentences drawn per wanted prompt, at most (a topic is about 1 sentence in 2)


def probe_set(grammar: HiddenMarkovGrammar, count: int, seed: int, topic: Optional[str] = None,
              sentences: Optional[Sequence[str]] = None) -> tuple[list[str], list[str]]:
    """``count`` sentences of at least 5 words (sampled from the grammar, or taken in order from
    ``sentences``; of ``topic`` only when given), split ~60/40 into prompt and response. Fewer when
    the sentences run out or :data:`MAX_DRAWS_PER_PROMPT` draws per prompt found too few."""
    rng = np.random.default_rng(seed)
    pool = iter(sentences) if sentences is not None else None
    prompts: list[str] = []
    responses: list[str] = []
    for _ in range(MAX_DRAWS_PER_PROMPT * count):  # a bound: a topic the grammar (almost) never emits ends
        if len(prompts) == count:
            break
        sentence = " ".join(grammar.sample(rng)) if pool is None else next(pool, None)
        if sentence is None:  # the given sentences ran out
            break
        words = sentence.split()
        if len(words) < 5 or (topic is not None and grammar.topic_of(" ".join(words)) != topic):
            continue
        cut = int(np.ceil(0.6 * len(words)))
        prompts.append(" ".join(words[:cut]))
        responses.append(" " + " ".join(words[cut:]))
    return prompts, responses


def _finite_or_none(value) -> Optional[float]:
    return float(value) if is_finite_number(value) else None


def _regime_callbacks(config: DemoConfig) -> list:
    """The callbacks that make a study regime: a learning-rate spike, weights that go NaN."""
    from transformers import TrainerCallback

    callbacks: list = []
    if config.lr_spike is not None:
        first, last, factor = config.lr_spike

        class Spike(TrainerCallback):
            def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
                if first <= state.global_step < last and optimizer is not None:
                    for group in optimizer.param_groups:  # the scheduler resets it at its next step
                        group["lr"] *= factor

        callbacks.append(Spike())
    if config.nan_at_step is not None:
        poisoned_at = config.nan_at_step

        class Diverge(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step == poisoned_at and model is not None:
                    with torch.no_grad():
                        for parameter in model.parameters():
                            parameter.fill_(float("nan"))

        callbacks.append(Diverge())
    return callbacks


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


def regret_of(rows: Sequence[dict], step: int) -> float:
    """KL to the truth of the checkpoint at ``step`` over the lowest KL of the run (finite ones):
    1.0 for the best checkpoint, ``inf`` for a diverged one."""
    finite = [r["kl_to_truth"] for r in rows if r["kl_to_truth"] is not None]
    chosen = next(r["kl_to_truth"] for r in rows if r["step"] == step)
    return float("inf") if chosen is None or not finite else chosen / min(finite)


def run_demo(config: DemoConfig, console=None) -> DemoReport:
    """Train with the callback, then build the convergence table and ``demo_summary.json`` (see
    the module docstring)."""
    from rich.console import Console
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from ..callbacks import ProbAttrCallback
    from .tiny_models import tiny_gpt2

    console = console or Console()
    began = time.perf_counter()
    grammar = HiddenMarkovGrammar.build()
    tokenizer = word_tokenizer(grammar, extra_words=config.extra_words)
    corpus = grammar.corpus(config.train_sentences + config.held_out_sentences, seed=config.seed)
    train, held_out = corpus[: config.train_sentences], corpus[config.train_sentences:]
    evaluated = held_out
    if config.train_topic is not None:  # a narrow slice: train and evaluate on one topic only
        train = [s for s in train if grammar.topic_of(s) == config.train_topic]
        evaluated = [s for s in held_out if grammar.topic_of(s) == config.train_topic]
    prompts, responses = probe_set(grammar, config.probe_prompts, seed=config.seed + 1, topic=config.probe_topic,
                                   sentences=train if config.probe_source == "train" else None)
    guard: Any = "base" if config.base_guard else None
    if config.guard_prompts:
        guard_prompts, guard_responses = probe_set(
            grammar, config.guard_prompts, seed=config.seed + 2, topic=config.probe_topic,
            sentences=train[::-1] if config.probe_source == "train" else None)
        guard = list(zip(guard_prompts, guard_responses))
    truth_sentences = held_out if config.truth_topic is None else [
        s for s in held_out if grammar.topic_of(s) == config.truth_topic]

    word_index = {word: i for i, word in enumerate(grammar.words)}
    truths = [true_quantities(grammar, [word_index[w] for w in p.split()], [word_index[w] for w in r.split()])
              for p, r in zip(prompts, responses)]
    band, threshold = config.settings.as_band, config.settings.entropy_threshold
    true_noise = sum(int(((t.attribution_score.abs() <= band) & (t.entropy_context >= threshold)).sum())
                     for t in truths)
    console.print(
        f"grammar: {len(grammar.words)} words, {len(grammar.states)} hidden states; vocabulary {len(tokenizer)}; "
        f"{len(train)} training sentences; {len(prompts)} probe prompts"
    )
    console.print(f"true noise tokens of the process (the floor a converged model approaches): {true_noise}")

    def encode(sentence: str) -> dict:
        ids = [tokenizer.bos_token_id] + tokenizer(sentence, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    model: Any
    if config.init_from is not None:
        model = AutoModelForCausalLM.from_pretrained(config.init_from)
    else:
        model = tiny_gpt2(len(tokenizer), n_layer=config.n_layer, n_embd=config.n_embd, n_head=4, n_positions=32,
                          seed=config.seed)
    callback = ProbAttrCallback(prompts=prompts, responses=responses, guard=guard, settings=config.settings,
                                max_overhead=config.max_overhead)
    args = TrainingArguments(
        output_dir=config.output_dir, max_steps=config.max_steps, save_steps=config.save_steps,
        eval_strategy="steps", eval_steps=config.save_steps, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=64, learning_rate=config.learning_rate, warmup_steps=config.save_steps // 3,
        weight_decay=0.0, use_cpu=True, report_to=list(config.report_to), logging_steps=config.save_steps // 3,
        seed=config.seed, data_seed=config.seed, disable_tqdm=True, save_total_limit=None,
    )
    trainer = Trainer(model=model, args=args, train_dataset=[encode(s) for s in train],
                      eval_dataset=[encode(s) for s in evaluated], processing_class=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
                      callbacks=_regime_callbacks(config))
    if config.monitor:
        callback.attach(trainer)
    if config.quiet:
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    trained = time.perf_counter()
    trainer.train()
    report = DemoReport(true_noise_tokens=true_noise, output_dir=config.output_dir,
                        train_seconds=time.perf_counter() - trained)
    if not config.monitor:
        report.wall_seconds = time.perf_counter() - began
        return report
    eval_losses = {entry["step"]: entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry}
    steps = sorted(int(p.name.split("-")[1]) for p in Path(config.output_dir).glob("checkpoint-*"))
    for step in steps:
        folder = Path(config.output_dir) / f"checkpoint-{step}"
        record = json.loads((folder / "probattr.json").read_text(encoding="utf-8"))
        report.probe_seconds += record["probe_seconds"]
        errors = [abs(token["attribution_score"] - float(truth.attribution_score[token["position"]]))
                  for result, truth in zip(record["results"], truths) for token in result["tokens"]]
        checkpoint_model = AutoModelForCausalLM.from_pretrained(folder)
        row = {"step": step, "checkpoint": folder.name, "status": record["status"],
               "eval_loss": _finite_or_none(eval_losses.get(step)),
               "kl_to_truth": _finite_or_none(kl_to_truth(checkpoint_model, tokenizer, grammar, truth_sentences[:200])),
               **{key: record["summary"].get(key) for key in (*summary_keys(), *drift_keys(), "invalid_prompts")},
               "true_noise_tokens": true_noise, "mean_abs_as_error": float(np.mean(errors)) if errors else None,
               "prompt_log_p": guard_values([ProbeResult.from_dict(r) for r in record["results"]],
                                            record.get("guard_log_p", []))}
        report.rows.append({name: row[name] for name in row_columns()})
    report.recommended = recommend(report.rows, config.rule)
    if report.recommended is not None:
        report.recommended["regret"] = regret_of(report.rows, report.recommended["step"])
    for a, b in (("noise_tokens", "kl_to_truth"), ("soft_noise", "kl_to_truth"), ("log_p_response", "kl_to_truth"),
                 ("noise_tokens", "eval_loss"), ("mean_abs_as_error", "kl_to_truth"), ("eval_loss", "kl_to_truth")):
        pairs = [(r[a], r[b]) for r in report.rows if r[a] is not None and r[b] is not None]
        report.correlations[f"{a} ~ {b}"] = spearman(*zip(*pairs)) if len(pairs) > 2 else float("nan")
    report.wall_seconds = time.perf_counter() - began
    from ..report import report_run

    try:
        report.report_path = str(report_run(config.output_dir, rule=config.rule))
    except Exception as error:  # noqa: BLE001 - the report is a view: the run and its summary stand without it
        console.print(f"[yellow]the report could not be written: {error}[/]")
    write_json_atomic(Path(config.output_dir) / SUMMARY_FILE, {
        "recommended": {**report.recommended, "regret": _finite_or_none(report.recommended["regret"])}
        if report.recommended else None, "rows": report.rows, "true_noise_tokens": true_noise,
        "correlations": {k: (v if np.isfinite(v) else None) for k, v in report.correlations.items()},
        "wall_seconds": report.wall_seconds, "probe_seconds": report.probe_seconds})
    print_report(report, console)
    return report


def print_report(report: DemoReport, console) -> None:
    """The convergence table, the recommendation with its regret, and the Spearman correlations."""
    from rich.table import Table

    from ..display import safe

    table = Table(title="convergence by checkpoint (KL: per token, true process || model, held-out text)",
                  title_justify="left")
    columns = (("step", "step", "{}"), ("eval loss", "eval_loss", "{:.4f}"), ("KL", "kl_to_truth", "{:.4f}"),
               ("noise", "noise_tokens", "{}"), ("soft noise", "soft_noise", "{:.4f}"),
               ("log P(r|p)", "log_p_response", "{:.3f}"), ("drift AS", "drift_attribution", "{:.4f}"),
               ("true noise", "true_noise_tokens", "{}"), ("|AS - true AS|", "mean_abs_as_error", "{:.4f}"))
    for name, _, _ in columns:
        table.add_column(name, justify="right")
    best = report.recommended["step"] if report.recommended else None
    for row in report.rows:
        table.add_row(*("-" if row[key] is None else form.format(row[key]) for _, key, form in columns),
                      style="bold green" if row["step"] == best else "")
    console.print(table)
    if report.recommended:
        console.print(f"recommended: [bold green]{safe(report.recommended['checkpoint'])}[/] - "
                      f"{safe(report.recommended['reason'])}; regret against the truth "
                      f"{report.recommended['regret']:.2f}x (KL of the recommended / the lowest KL)")
    for name, value in report.correlations.items():
        shown = f"{value:+.2f}" if np.isfinite(value) else "undefined (one side is constant)"
        console.print(f"Spearman {name}: {shown}")
    share = report.probe_seconds / report.wall_seconds if report.wall_seconds else float("nan")
    console.print(f"wall time {report.wall_seconds:.1f} s, probes {report.probe_seconds:.1f} s "
                  f"({100 * share:.1f}%); checkpoints and {SUMMARY_FILE} in {safe(report.output_dir)}")
    if report.report_path:
        console.print(f"the checkpoint-selection report: open {safe(report.report_path)} in a browser")
    runs = Path(report.output_dir) / "runs"
    if runs.is_dir():
        console.print(f"the training and probe curves: tensorboard --logdir {safe(str(runs))}")
