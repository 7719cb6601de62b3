"""Seconds per checkpoint of a sweep, and the speed-up of 2 processes over 1, on this machine.

Trains a tiny GPT-2 with a plain Trainer (8 checkpoints; |V| = 300, context 128, too short for
the paper's prompts), then sweeps it with four short prompts (exact probes, 20-token greedy
responses): once in one process, once with
``torchrun --nproc_per_node 2`` (checkpoints split across processes), each into its own --out
folder, each a fresh CLI process (start-up included), and checks that both summaries agree.

Usage: python benchmarks/bench_sweep.py [--work out/bench-sweep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["the cat sat on", "a bird sang", "the dog ran after", "a cat and a bird"]


def sweep(run: Path, out: Path, processes: int, max_new_tokens: int) -> float:
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        "--nproc_per_node", str(processes)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if processes > 1:
        env["OMP_NUM_THREADS"] = str(max(1, os.cpu_count() // processes))
    began = time.perf_counter()
    prompts = [item for prompt in PROMPTS for item in ("--prompt", prompt)]
    subprocess.run([*launcher, "-m", "probattr_monitor", "sweep", str(run), "--out", str(out), "--no-progress",
                    "--max-new-tokens", str(max_new_tokens), *prompts], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="out/bench-sweep")
    parser.add_argument("--max-new-tokens", type=int, nargs="+", default=[20, 80],
                        help="response lengths to compare (longer: more probing per checkpoint)")
    args = parser.parse_args()
    from tests.callbacks.helpers import make_trainer

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    run = work / "run"
    make_trainer(run, [], max_steps=16, save_steps=2).train()
    count = len(list(run.glob("checkpoint-*")))
    print(f"{count} checkpoints, {len(PROMPTS)} prompts, exact, |V| = 300, {os.cpu_count()} CPU cores")
    for length in args.max_new_tokens:
        one = sweep(run, work / f"one-{length}", 1, length)
        two = sweep(run, work / f"two-{length}", 2, length)
        rows = [json.loads((work / f"{name}-{length}" / "sweep_summary.json").read_text())["rows"]
                for name in ("one", "two")]
        agree = [r["noise_tokens"] for r in rows[0]] == [r["noise_tokens"] for r in rows[1]]
        probe = sum(r["seconds"] for r in rows[0])
        print(f"responses of {length} tokens:")
        print(f"  1 process:   {one:.1f} s wall = {one / count:.2f} s per checkpoint ({probe / count:.2f} s probing)")
        print(f"  2 processes: {two:.1f} s wall = {two / count:.2f} s per checkpoint; speed-up {one / two:.2f}x; "
              f"summaries agree: {agree}")


if __name__ == "__main__":
    main()
