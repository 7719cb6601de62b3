"""What monitoring costs the training loop: no monitor, the in-loop callback, the watcher beside it.

Three runs of the demo's training (``probattr-monitor demo``'s model, data and schedule; a
checkpoint and an evaluation every ``--save-steps``), one after the other in one process, with the
same probe settings, prompts, fixed responses and guard set:

1. **none**: no monitor (the baseline);
2. **callback**: ``ProbAttrCallback`` in the loop (the demo as it ships);
3. **watch**: no callback; ``probattr-monitor watch`` in a second process probes each checkpoint
   as it lands (``--device`` for the watcher: ``cpu`` here; ``cuda:1`` where there is one).

Printed per run: the training loop's wall time (``trainer.train()``), its ratio to the baseline,
the probes' own time, and for the watcher how long after training ended its last checkpoint was
logged (the lag). On a machine whose cores the two processes share, the watcher competes with
training for them: the loop slows by the probes' CPU time spread over the run instead of stopping
for it. With a second device the watcher's probes leave the training cores alone.

Usage: python benchmarks/bench_overhead.py [--out out/bench-overhead] [--max-steps 2000] [--save-steps 100]
       [--repeats 2] [--watch-threads 1] [--watch-device cpu] [--watch-max-overhead none]
       python benchmarks/bench_overhead.py --real [...]  (SmolLM2 with ProbAttrCallback() at its defaults:
       bench_overhead_real.py, whose options it takes)
"""

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from probattr_monitor.demo.grammar import HiddenMarkovGrammar
from probattr_monitor.demo.run import DemoConfig, probe_set, run_demo
from probattr_monitor.watch import STATE_FILE


def probe_seconds(folder: Path) -> float:
    return sum(json.loads(p.read_text())["probe_seconds"] for p in folder.glob("checkpoint-*/probattr.json"))


def main() -> None:
    if "--real" in sys.argv[1:]:  # the real-model benchmark: SmolLM2 with ProbAttrCallback() at its defaults
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_overhead_real import main as real_main

        real_main([a for a in sys.argv[1:] if a != "--real"])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/bench-overhead")
    parser.add_argument("--max-steps", type=int, default=DemoConfig.max_steps)
    parser.add_argument("--save-steps", type=int, default=DemoConfig.save_steps)
    parser.add_argument("--watch-threads", type=int, default=1, help="torch threads of the watcher (OMP_NUM_THREADS)")
    parser.add_argument("--watch-device", default="cpu")
    parser.add_argument("--watch-max-overhead", default="none",
                        help="the watcher's --max-overhead (default none: every position, as the demo's callback)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three runs (the median is printed)")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    quiet = Console(file=io.StringIO())

    def config(name: str, monitor: bool) -> DemoConfig:
        return DemoConfig(output_dir=str(out / name), max_steps=args.max_steps, save_steps=args.save_steps,
                          report_to=(), quiet=True, monitor=monitor)

    # the demo's probe set, written for the watcher (the callback gets it from run_demo itself)
    base = DemoConfig()
    prompts, responses = probe_set(HiddenMarkovGrammar.build(), base.probe_prompts, seed=base.seed + 1)
    pairs = out / "probe_set.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in zip(prompts, responses)))

    env = {**os.environ, "OMP_NUM_THREADS": str(args.watch_threads), "TOKENIZERS_PARALLELISM": "false"}
    measured: dict = {"none": [], "callback": [], "watch": []}
    for _ in range(args.repeats):  # the three interleaved, so drift in the machine's speed hits each alike
        for name in measured:
            shutil.rmtree(out / name, ignore_errors=True)
        report = run_demo(config("none", monitor=False), console=quiet)
        measured["none"].append({"train": report.train_seconds, "probes": 0.0, "lag": None})
        report = run_demo(config("callback", monitor=True), console=quiet)
        measured["callback"].append({"train": report.train_seconds, "probes": probe_seconds(out / "callback"),
                                     "lag": None})
        watch_dir = out / "watch"
        watcher = subprocess.Popen(
            [sys.executable, "-m", "probattr_monitor", "watch", str(watch_dir), "--wait", "600", "--poll", "0.5",
             "--settle", "0.5", "--responses-file", str(pairs), "--device", args.watch_device,
             "--max-overhead", args.watch_max_overhead],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(10)  # the watcher imports torch and is polling before training starts, as in use
        report = run_demo(config("watch", monitor=False), console=quiet)
        ended = time.perf_counter()
        _, err = watcher.communicate(timeout=3600)
        lag = time.perf_counter() - ended
        if watcher.returncode != 0:
            raise SystemExit(f"the watcher failed: {err[-2000:]}")
        measured["watch"].append({"train": report.train_seconds, "probes": probe_seconds(watch_dir), "lag": lag})
        spent = json.loads((watch_dir / STATE_FILE).read_text()).get("spent") or {}
        if spent.get("since"):  # the watcher's own account: every second it spent, loading included
            elapsed = time.time() - spent["since"]
            print(f"watcher's metered share: {spent['probe_seconds']:.1f} s of {elapsed:.1f} s since the first "
                  f"checkpoint ({spent['probe_seconds'] / elapsed:.1%}; --max-overhead {args.watch_max_overhead})")
    rows = {name: {key: (statistics.median(r[key] for r in runs) if runs[0][key] is not None else None)
                   for key in runs[0]} for name, runs in measured.items()}
    print("train loop seconds per round: " + "; ".join(
        f"{name} " + ", ".join(f"{r['train']:.1f}" for r in runs) for name, runs in measured.items()))

    checkpoints = len(list((out / "callback").glob("checkpoint-*")))
    print(f"demo training: {args.max_steps} steps, {checkpoints} checkpoints, 7 prompts, exact probes, "
          f"{os.cpu_count()} CPU cores; watcher on {args.watch_device} with {args.watch_threads} thread(s)")
    print(f"{'monitor':<10}{'train loop s':>14}{'x none':>9}{'probes s':>11}{'probe share':>13}{'lag s':>8}")
    for name, row in rows.items():
        ratio = row["train"] / rows["none"]["train"]
        share = row["probes"] / row["train"]
        lag = "-" if row["lag"] is None else f"{row['lag']:.1f}"
        print(f"{name:<10}{row['train']:>14.1f}{ratio:>9.3f}{row['probes']:>11.1f}{share:>12.1%}{lag:>8}")
    summary = json.loads((watch_dir / "sweep_summary.json").read_text())
    print(f"watch recommended: {(summary.get('recommended') or {}).get('checkpoint')}; "
          f"{sum(1 for r in summary['rows'] if r['status'] == 'ok')} of {checkpoints} checkpoints ok")


if __name__ == "__main__":
    main()
