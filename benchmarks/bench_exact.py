"""Exact engine vs a batched naive algorithm, side by side in one process, on the same inputs.

Shapes (issue 2): tiny GPT-2, 4 layers, width 128, |V| = 2,000; a 16-token prompt and a 16-token
response (random ids, fixed seed); CPU, float32. Prints:

- wall time of each and their ratio, next to the ratio prefix sharing allows at these shapes:
  sum over positions of the full length L (what naive runs per candidate) over the sum of the
  suffix lengths S_k = n + m - 1 - k (what the engine runs);
- the engine's achieved FLOP/s (2 x parameters per scored suffix token) against the machine's
  dense float32 matmul FLOP/s measured in the same run;
- the peak live heap each algorithm adds above the process baseline (glibc mallinfo2, sampled every 1 ms).

Usage: python benchmarks/bench_exact.py [--repeats 3] [--budgets 16 256]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import threading
import time
from pathlib import Path

import torch

from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.probes.engines.engine import score_exact
from probattr_monitor.probes.types.settings import ProbeSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the float64 oracle lives in tests/
from tests.reference import score_naive  # noqa: E402

VOCAB, LAYERS, WIDTH, HEADS, PROMPT, RESPONSE = 2000, 4, 128, 4, 16, 16


class PeakHeap:
    """Peak live heap (glibc ``mallinfo2``: arena + mmapped bytes in use) above its value at entry,
    sampled every millisecond by a thread. Unlike RSS it falls when memory is freed, so each
    measurement stands alone even after earlier runs grew the process."""

    def __enter__(self):
        self._libc = ctypes.CDLL("libc.so.6")
        self._libc.mallinfo2.restype = _MallInfo2
        self.baseline = self.peak = self._in_use()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _in_use(self) -> int:
        info = self._libc.mallinfo2()
        return info.uordblks + info.hblkhd

    def _watch(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._in_use())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def added_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def matmul_flops(seconds: float = 2.0, size: int = 2048) -> float:
    """Best float32 FLOP/s of ``size x size`` matmuls over about ``seconds``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - began))
    return best


def interleaved(runs: dict, repeats: int) -> dict:
    """Run every function once per round, ``repeats`` rounds, so all see the same machine noise.

    Returns ``{name: (best seconds, last result, peak MB added)}``.
    """
    best = {name: (float("inf"), None, 0.0) for name in runs}
    for _ in range(repeats):
        for name, function in runs.items():
            with PeakHeap() as memory:
                began = time.perf_counter()
                result = function()
                seconds = time.perf_counter() - began
            old_seconds, _, old_peak = best[name]
            best[name] = (min(old_seconds, seconds), result, max(old_peak, memory.added_mb))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budgets", type=float, nargs="*", default=[],
                        help="engine memory budgets (MB) to compare besides the default")
    parser.add_argument("--naive-batches", type=int, nargs="+", default=[64, 128, 256],
                        help="candidate batch sizes for naive; its best time is the baseline")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = tiny_gpt2(VOCAB, n_layer=LAYERS, n_embd=WIDTH, n_head=HEADS, n_positions=64, seed=0)
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(3, VOCAB, (1 + PROMPT + RESPONSE,))
    ids[0] = 0
    length = ids.shape[0]
    full_tokens = PROMPT * length
    suffix_tokens = sum(PROMPT + RESPONSE - 1 - k for k in range(PROMPT))
    allowed = full_tokens / suffix_tokens

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; GPT-2 {LAYERS} layers x {WIDTH}, "
          f"|V| = {VOCAB}, {params:,} parameters; prompt {PROMPT}, response {RESPONSE} tokens")
    machine = matmul_flops()
    print(f"dense float32 matmul (2048^2): {machine / 1e9:.1f} GFLOP/s")

    runs = {f"naive {b}": (lambda b=b: score_naive(model, ids, PROMPT, batch_size=b)) for b in args.naive_batches}
    budgets = [None, *args.budgets]
    for budget in budgets:
        settings = ProbeSettings(memory_budget_mb=budget, progress=False)
        runs[f"engine {budget}"] = lambda settings=settings: score_exact(model, ids, PROMPT, settings)
    measured = interleaved(runs, args.repeats)

    naive_s, naive, naive_batch = float("inf"), None, None
    for batch in args.naive_batches:
        seconds, result, peak_mb = measured[f"naive {batch}"]
        print(f"naive (batch {batch}): {seconds:.3f} s, {result.token_forwards:,} token forwards, "
              f"peak +{peak_mb:.0f} MB")
        if seconds < naive_s:
            naive_s, naive, naive_batch = seconds, result, batch
    print(f"naive baseline: its best, batch {naive_batch}, {naive_s:.3f} s")
    for budget in budgets:
        engine_s, engine, engine_mb = measured[f"engine {budget}"]
        label = (
            f"{budget:g} MB"
            if budget is not None
            else f"default {ProbeSettings().memory_budget_bytes('cpu') / 2**20:g} MB"
        )
        error = max(
            (engine.response - naive.response).abs().max().item(),
            (engine.rest_prompt - naive.rest_prompt).abs().max().item(),
        )
        achieved = 2 * params * engine.token_forwards / engine_s
        ratio = naive_s / engine_s
        print(
            f"engine (budget {label}): {engine_s:.3f} s, {engine.token_forwards:,} token forwards, "
            f"peak +{engine_mb:.0f} MB, max |diff| vs naive {error:.1e}"
        )
        print(
            f"  speed-up {ratio:.2f}x; prefix sharing allows {allowed:.2f}x ({full_tokens}/{suffix_tokens} tokens "
            f"per candidate); reached {100 * ratio / allowed:.0f}% (target >= 90%)"
        )
        print(f"  engine {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / machine:.0f}% of matmul (target >= 40%)")


if __name__ == "__main__":
    main()
