"""What the callback costs in the demo: the share of wall time spent in probes, seconds per checkpoint.

Runs the demo at its defaults (``probattr-monitor demo``: tiny GPT-2 on the grammar, 2000 steps,
a checkpoint and an evaluation every 100 steps, 7 prompts, exact probes) and reads the probe time
of every checkpoint from its ``probattr.json``. Target: probes take at most 25% of the wall time.

Usage: python benchmarks/bench_callback.py [--out out/bench-callback] [--max-steps 2000] [--save-steps 100]
"""

import argparse
import io
import json
import shutil
from pathlib import Path

from rich.console import Console

from probattr_monitor.demo.run import DemoConfig, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/bench-callback")
    parser.add_argument("--max-steps", type=int, default=DemoConfig.max_steps)
    parser.add_argument("--save-steps", type=int, default=DemoConfig.save_steps)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    report = run_demo(DemoConfig(output_dir=args.out, max_steps=args.max_steps, save_steps=args.save_steps),
                      console=Console(file=io.StringIO()))
    seconds = [json.loads(p.read_text())["probe_seconds"] for p in Path(args.out).glob("checkpoint-*/probattr.json")]
    share = sum(seconds) / report.wall_seconds
    print(f"demo: {args.max_steps} steps, {len(seconds)} checkpoints, wall time {report.wall_seconds:.1f} s")
    print(f"probes: {sum(seconds):.2f} s in all = {100 * share:.1f}% of the wall time (target <= 25%)")
    print(f"per checkpoint: mean {sum(seconds) / len(seconds):.3f} s, max {max(seconds):.3f} s "
          f"(7 prompts, exact over |V| = 54)")


if __name__ == "__main__":
    main()
