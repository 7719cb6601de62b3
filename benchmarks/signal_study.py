"""Which probe statistics track convergence, and which recommendation rule to trust: measured
against processes whose truth is known.

Each regime is a real Trainer run on the demo's hidden Markov grammar (exact probabilities), with
ProbAttrCallback probing 7 prompts with fixed responses at every checkpoint, and the per-token
KL from the true process to each checkpoint measured on held-out text:

  demo-s0..2   the demo (tiny GPT-2, 2 layers x 64, lr 1e-3, 2000 steps) at three seeds
  capacity     a model too small to reach the floor (1 layer x 8)
  unstable     a learning rate high enough to make training unstable (3e-2)
  forgetting   demo-s0's last checkpoint fine-tuned on one topic only ("farm"): its own eval loss
               (on that topic) falls while the KL to the whole process rises after a minimum
  large-vocab  4,000 made-up words in the vocabulary (|V| = 4,049): probed with the budget policy

Prints two tables (markdown): the Spearman correlation of every statistic with the KL to the
truth, per regime; and every rule's regret, KL(recommended) / min over checkpoints of KL.
Writes everything to OUT/study.json.

Usage: python benchmarks/signal_study.py [--out out/signal_study] [--regimes demo-s0 forgetting ...]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from probattr_monitor.demo.run import DemoConfig, run_demo, spearman
from probattr_monitor.monitoring.decision import RULES, latest_not_regressed, recommend

MARGINS = (0.1, 0.15, 0.25, 0.5, 0.75, 1.0)
STATISTICS = ("eval_loss", "noise_tokens", "soft_noise", "log_p_response", "mean_entropy_context",
              "mean_attribution", "mean_kl", "drift_attribution", "drift_entropy")


def regimes(out: Path) -> dict[str, DemoConfig]:
    """The regimes of the study, each a :class:`DemoConfig` writing under ``out``."""
    base = DemoConfig(report_to=("none",))
    configs = {f"demo-s{seed}": replace(base, seed=seed, output_dir=str(out / f"demo-s{seed}")) for seed in range(3)}
    configs["capacity"] = replace(base, n_layer=1, n_embd=8, output_dir=str(out / "capacity"))
    configs["unstable"] = replace(base, learning_rate=3e-2, output_dir=str(out / "unstable"))
    configs["forgetting"] = replace(base, init_from=str(out / "demo-s0" / f"checkpoint-{base.max_steps}"),
                                    train_topic="farm", max_steps=1000, output_dir=str(out / "forgetting"))
    configs["large-vocab"] = replace(base, extra_words=4000, max_steps=1000, output_dir=str(out / "large-vocab"))
    return configs


def regret(rows: list[dict], rule: str) -> float:
    """KL of the checkpoint ``rule`` recommends over the lowest KL of the run (``nan`` if none)."""
    chosen = recommend(rows, rule)
    if chosen is None:
        return float("nan")
    kl = {r["step"]: r["kl_to_truth"] for r in rows}
    return kl[chosen["step"]] / min(kl.values())


def margin_regret(rows: list[dict], margin: float) -> float:
    """The regret of ``latest_not_regressed`` with another margin."""
    choice = latest_not_regressed(rows, margin)
    kl = {r["step"]: r["kl_to_truth"] for r in rows}
    return kl[choice[0]["step"]] / min(kl.values()) if choice else float("nan")


def correlation(rows: list[dict], statistic: str) -> float:
    pairs = [(r[statistic], r["kl_to_truth"]) for r in rows if r.get(statistic) is not None]
    return spearman(*zip(*pairs)) if len(pairs) > 2 else float("nan")


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def number(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/signal_study")
    parser.add_argument("--regimes", nargs="+", default=None, help="a subset of the regimes (in order)")
    args = parser.parse_args()
    out = Path(args.out)
    configs = regimes(out)
    chosen = args.regimes or list(configs)
    results = {}
    for name in chosen:
        began = time.perf_counter()
        report = run_demo(configs[name], console=Console(file=io.StringIO()))
        results[name] = {"rows": report.rows, "wall_seconds": report.wall_seconds,
                         "probe_seconds": report.probe_seconds, "recommended": report.recommended}
        kls = [r["kl_to_truth"] for r in report.rows]
        print(f"{name}: {len(report.rows)} checkpoints, KL {max(kls):.4f} -> min {min(kls):.4f} (last {kls[-1]:.4f}), "
              f"{time.perf_counter() - began:.0f} s, probes {100 * report.probe_seconds / report.wall_seconds:.0f}%",
              flush=True)

    print("\nSpearman correlation with the KL to the truth, across checkpoints (+1: falls as the model converges)\n")
    print(markdown(["statistic", *chosen],
                   [[s, *(number(correlation(results[n]["rows"], s), signed=True) for n in chosen)]
                    for s in STATISTICS]))
    print("\nRegret of each rule: KL(recommended) / min KL over the run's checkpoints (1.00 is the best checkpoint)\n")
    body = []
    for rule in RULES:
        values = [regret(results[n]["rows"], rule) for n in chosen]
        finite = [v for v in values if math.isfinite(v)]
        body.append([rule, *(number(v) for v in values), number(max(finite)) if finite else "-"])
    print(markdown(["rule", *chosen, "worst"], body))
    print("\nSensitivity of the default rule to its margin (nats of mean log P(r|p) below the run's best)\n")
    body = []
    for margin in MARGINS:
        values = [margin_regret(results[n]["rows"], margin) for n in chosen]
        body.append([f"{margin:g}", *(number(v) for v in values), number(max(values))])
    print(markdown(["margin", *chosen, "worst"], body))
    out.mkdir(parents=True, exist_ok=True)
    study = {"regimes": results,
             "correlations": {n: {s: correlation(results[n]["rows"], s) for s in STATISTICS} for n in chosen},
             "regrets": {rule: {n: regret(results[n]["rows"], rule) for n in chosen} for rule in RULES}}
    (out / "study.json").write_text(json.dumps(study, indent=1, default=str).replace("NaN", "null"), encoding="utf-8")
    print(f"\nall rows in {out / 'study.json'}")


if __name__ == "__main__":
    main()
