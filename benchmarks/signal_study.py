"""Which probe statistics track convergence, and which recommendation rule to trust: measured
against processes whose truth is known, with the rule chosen on one part of the study and
reported on the rest.

Each regime is a real Trainer run on the demo's hidden Markov grammar (exact probabilities), with
ProbAttrCallback probing 16 prompts with fixed responses at every checkpoint (AS, entropies, noise)
and scoring a guard set of 200 more prompt/response pairs for log P(r|p) only, and the per-token
KL from the true process to each checkpoint measured on held-out text (the truth):

  demo          the demo (tiny GPT-2, 2 layers x 64, lr 1e-3, 2000 steps)
  forgetting    demo's last checkpoint fine-tuned on one topic ("farm"): its own eval loss (on that
                topic) falls while the KL to the whole process rises
  overfit       300 training sentences, 1500 steps: the truth is U-shaped (held-out probes)
  train-probes  overfit, with the probe prompts drawn from the training sentences
  off-target    forgetting's fine-tune, probes from the other topic ("town"), truth on the target
                topic ("farm"): a wanted specialisation that the probes see as forgetting
  spike         the demo with the learning rate x30 for steps 800-900
  nan           the demo whose weights go NaN after step 1200
  capacity, unstable, large-vocab   (one seed) as in the first study

Regimes with a seed run at seeds 0, 1, 2. The guarded rule's tolerance is chosen on seed 0 of
every regime but off-target (where no rule that protects the probe set can be right, by
construction) and reported on seeds 1 and 2, and over random halves of the prompts. The
regression test pairs the probe prompts and the guard set (216 values per checkpoint);
``--no-guard`` analyses the 16 probe prompts alone, as the probes without a guard set would;
``--base-guard`` trains with no hand-made guard set and the callback's default ``guard="base"``
(frozen from the model at train begin: the fine-tunes get one, the runs from scratch do not).
Prints markdown tables; writes every row to OUT/study.json. Runs already in OUT are reused
(delete a regime's folder to train it again).

Usage: python benchmarks/signal_study.py [--out out/signal_study] [--regimes demo-s0 ...] [--analyse-only]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from probattr_monitor.demo.run import SUMMARY_FILE, DemoConfig, regret_of, run_demo
from probattr_monitor.monitoring.correlation import spearman
from probattr_monitor.monitoring.decision import RULES, guarded, recommend
from probattr_monitor.monitoring.regression import guard_comparisons

SEEDS = (0, 1, 2)
TUNING_SEEDS = (0,)
TOLERANCES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
SLACKS = (0.0, 0.001, 0.002, 0.005)  # relative eval-loss slack: the latest checkpoint within it of the lowest
BEFORE_ONSET = ("guard", "target")
HALVES = 20  # random halves of the probe set per run
PROBE_PROMPTS = 16
GUARD_PROMPTS = 200  # scored for log P(r|p) only: one forward each
SEEDED = ("demo", "forgetting", "overfit", "train-probes", "off-target", "spike", "nan")
NOT_TUNED = ("off-target",)  # the probes vetoing a wanted specialisation: no guard rule can be right
STATISTICS = ("eval_loss", "noise_tokens", "soft_noise", "log_p_response", "mean_entropy_context",
              "mean_attribution", "mean_kl", "drift_attribution", "drift_entropy")


def regimes(out: Path, base_guard: bool = False) -> dict[str, DemoConfig]:
    """The regimes of the study, each a :class:`DemoConfig` writing under ``out``, in run order
    (a fine-tune after the run it starts from). ``base_guard``: no hand-made guard set, the
    callback's default ``guard="base"`` instead (frozen from the model at train begin; off, with
    one line, for the runs that start from random weights)."""
    base = DemoConfig(report_to=("none",), probe_prompts=PROBE_PROMPTS,
                      guard_prompts=0 if base_guard else GUARD_PROMPTS, base_guard=base_guard)
    configs: dict[str, DemoConfig] = {}
    for seed in SEEDS:
        demo = replace(base, seed=seed, output_dir=str(out / f"demo-s{seed}"))
        start = str(out / f"demo-s{seed}" / f"checkpoint-{base.max_steps}")
        fine_tune = replace(demo, init_from=start, train_topic="farm", max_steps=1000)
        overfit = replace(demo, train_sentences=300, max_steps=1500)
        configs[f"demo-s{seed}"] = demo
        configs[f"forgetting-s{seed}"] = replace(fine_tune, output_dir=str(out / f"forgetting-s{seed}"))
        configs[f"overfit-s{seed}"] = replace(overfit, output_dir=str(out / f"overfit-s{seed}"))
        configs[f"train-probes-s{seed}"] = replace(overfit, probe_source="train",
                                                    output_dir=str(out / f"train-probes-s{seed}"))
        configs[f"off-target-s{seed}"] = replace(fine_tune, probe_topic="town", truth_topic="farm",
                                                  output_dir=str(out / f"off-target-s{seed}"))
        configs[f"spike-s{seed}"] = replace(demo, lr_spike=(800, 900, 30.0), output_dir=str(out / f"spike-s{seed}"))
        configs[f"nan-s{seed}"] = replace(demo, nan_at_step=1200, output_dir=str(out / f"nan-s{seed}"))
    configs["capacity"] = replace(base, n_layer=1, n_embd=8, output_dir=str(out / "capacity"))
    configs["unstable"] = replace(base, learning_rate=3e-2, output_dir=str(out / "unstable"))
    configs["large-vocab"] = replace(base, extra_words=4000, max_steps=1000, output_dir=str(out / "large-vocab"))
    return configs


def regime_of(name: str) -> str:
    return name.rsplit("-s", 1)[0] if name.rsplit("-s", 1)[-1].isdigit() else name


def seed_of(name: str) -> int:
    return int(name.rsplit("-s", 1)[1]) if name.rsplit("-s", 1)[-1].isdigit() else 0


def regret(rows: list[dict], choose) -> float:
    """KL of the checkpoint ``choose(rows)`` (a recommendation dict or ``None``) picks over the run's lowest KL."""
    chosen = choose(rows)
    return float("nan") if chosen is None else regret_of(rows, chosen["step"])


def rule_chooser(rule: str):
    return lambda rows: recommend(rows, rule)


def guarded_chooser(tolerance: float, slack: float = 0.0, before_onset: str = "guard"):
    def choose(rows):
        choice = guarded(rows, tolerance, slack, before_onset)
        return None if choice is None else {"step": choice[0]["step"]}
    return choose


def probes_only(rows: list[dict]) -> list[dict]:
    """The rows as the 16 probe prompts alone would give them (no guard set)."""
    return half(rows, list(range(PROBE_PROMPTS)))


def half(rows: list[dict], keep: list[int]) -> list[dict]:
    """The rows as a probe set of only the prompts ``keep`` would give them."""
    out = []
    for row in rows:
        values = row.get("prompt_log_p")
        kept = None if values is None else [values[i] for i in keep]
        finite = [v for v in kept or [] if v is not None]
        out.append({**row, "prompt_log_p": kept, "log_p_response": sum(finite) / len(finite) if finite else None})
    return out


def halves(rows: list[dict], seed: int) -> list[list[dict]]:
    count = len(next((r["prompt_log_p"] for r in rows if r.get("prompt_log_p")), []))
    rng = random.Random(seed)
    return [half(rows, sorted(rng.sample(range(count), count // 2))) for _ in range(HALVES)]


def warning_step(rows: list[dict], tolerance: float):
    """The first step the guard is confidently regressed at (what the early-stopping warning uses)."""
    return next((c.step for c in guard_comparisons(rows, tolerance) if c.regressed), None)


def truth_onset(rows: list[dict], share: float = 0.25):
    """The first step whose truth KL exceeds the best so far by more than ``share``."""
    best = math.inf
    for row in rows:
        kl = row["kl_to_truth"]
        if kl is None:
            return row["step"]
        if kl > best * (1 + share):
            return row["step"]
        best = min(best, kl)
    return None


def timely(rows: list[dict], tolerance: float) -> bool:
    """The warning fires at the truth's onset or one checkpoint later, and never on a run whose truth
    does not get worse. A run whose weights go NaN is warned about at once by the monitor's
    non-finite check instead (the guard has no values to compare there)."""
    onset, fired = truth_onset(rows), warning_step(rows, tolerance)
    if any(r["kl_to_truth"] is None for r in rows):
        return True
    if onset is None:
        return fired is None
    steps = [r["step"] for r in rows]
    return fired is not None and steps.index(onset) <= steps.index(fired) <= steps.index(onset) + 1


def correlation(rows: list[dict], statistic: str) -> float:
    pairs = [(r[statistic], r["kl_to_truth"]) for r in rows if r.get(statistic) is not None
             and r["kl_to_truth"] is not None]
    return spearman(*zip(*pairs)) if len(pairs) > 2 else float("nan")


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def number(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "inf" if value == math.inf else "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def spread(values: list[float]) -> str:
    """``median [5th, 95th percentile]`` of ``values``."""
    finite = sorted(v if math.isfinite(v) else 1e9 for v in values if not math.isnan(v))
    if not finite:
        return "-"

    def at(q):
        return finite[min(len(finite) - 1, int(q * (len(finite) - 1) + 0.5))]

    shown = [number(v) if v < 1e9 else "inf" for v in (at(0.5), at(0.05), at(0.95))]
    return f"{shown[0]} [{shown[1]}, {shown[2]}]"


def train(configs: dict[str, DemoConfig], chosen: list[str]) -> None:
    for name in chosen:
        summary = Path(configs[name].output_dir) / SUMMARY_FILE
        if summary.is_file():
            continue
        began = time.perf_counter()
        report = run_demo(configs[name], console=Console(file=io.StringIO()))
        kls = [r["kl_to_truth"] for r in report.rows if r["kl_to_truth"] is not None]
        print(f"{name}: {len(report.rows)} checkpoints, KL min {min(kls):.4f}, {time.perf_counter() - began:.0f} s, "
              f"probes {100 * report.probe_seconds / report.wall_seconds:.0f}%", flush=True)


def analyse(configs: dict[str, DemoConfig], chosen: list[str], out: Path, guard: bool = True) -> dict:
    runs = {name: json.loads((Path(configs[name].output_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))["rows"]
            for name in chosen if (Path(configs[name].output_dir) / SUMMARY_FILE).is_file()}
    if not guard:
        runs = {name: probes_only(rows) for name, rows in runs.items()}
    names = list(runs)
    tuning = [n for n in names if regime_of(n) in SEEDED and seed_of(n) in TUNING_SEEDS
              and regime_of(n) not in NOT_TUNED]
    held_out = [n for n in names if n not in tuning]  # seeds 1-2, off-target, and the one-seed regimes

    print("\nTolerance of the guarded rule, chosen on the tuning runs (seed 0, all regimes but off-target): the "
          "lowest worst regret, then the fewest untimely warnings (a warning on a run that does not get worse, or "
          "none within one checkpoint of the truth's onset), then the 90th percentile regret over probe halves, "
          "then the largest tolerance\n")
    worst = {}
    body = []
    for tolerance in TOLERANCES:
        for slack in SLACKS:
            for before_onset in BEFORE_ONSET:
                choose = guarded_chooser(tolerance, slack, before_onset)
                full = [regret(runs[n], choose) for n in tuning]
                halved = [regret(h, choose) for n in tuning for h in halves(runs[n], seed_of(n))]
                untimely = [n for n in tuning if not timely(runs[n], tolerance)]
                key = (tolerance, slack, before_onset)
                worst[key] = (round(max(full), 2), len(untimely), sorted(halved)[int(0.9 * (len(halved) - 1))])
                body.append([f"{tolerance:g}", f"{slack:g}", before_onset, number(max(full)),
                             ", ".join(untimely) or "none", number(worst[key][2])])
    print(markdown(["tolerance (nats/prompt)", "eval-loss slack", "before onset", "worst regret",
                    "untimely warnings", "90th pct regret, halves"], body))
    tolerance, slack, before_onset = min(worst, key=lambda k: (*worst[k], -k[0], k[1], k[2] != "guard"))
    print(f"\nchosen: tolerance {tolerance:g}, slack {slack:g}, before onset: {before_onset}")

    def table(run_names, title):
        print(f"\n{title}\n")
        regime_names = list(dict.fromkeys(regime_of(n) for n in run_names))
        body = []
        choosers = {"guarded (chosen)": guarded_chooser(tolerance, slack, before_onset),
                    **{r: rule_chooser(r) for r in RULES if r != "guarded"}}
        for label, choose in choosers.items():
            cells = []
            for regime in regime_names:
                values = [regret(runs[n], choose) for n in run_names if regime_of(n) == regime]
                cells.append("/".join(number(v) for v in values))
            body.append([label, *cells])
        print(markdown(["rule", *regime_names], body))

    table(tuning, "Regret on the tuning runs (KL(recommended) / min KL; one value per seed)")
    table(held_out, "Regret on the held-out runs (seeds 1 and 2, and the one-seed regimes; one value per run)")

    print("\nThe chosen rule over random halves of the probe set (held-out runs): median [5%, 95%] regret\n")
    choose = guarded_chooser(tolerance, slack, before_onset)
    body = [[n, spread([regret(h, choose) for h in halves(runs[n], seed_of(n))])]
            for n in held_out]
    print(markdown(["run", "regret over 20 probe halves"], body))

    print("\nWarnings: the first confidently regressed checkpoint against the first whose truth KL exceeds the "
          "best so far by 25%\n")
    body = []
    for n in names:
        if regime_of(n) in ("demo", "forgetting", "capacity", "large-vocab", "spike", "nan", "overfit"):
            fired = [warning_step(h, tolerance) for h in halves(runs[n], seed_of(n))]
            body.append([n, str(truth_onset(runs[n])), str(warning_step(runs[n], tolerance)),
                         f"{sum(f is not None for f in fired)}/{len(fired)}"])
    print(markdown(["run", "truth onset", "warning (full set)", "halves that warn"], body))

    print("\nThe paired interval's half-width at converged demo checkpoints (step >= 500): median [90th percentile]\n")
    body = []
    for label, keep in (("7 (the paper's set size)", list(range(7))), ("16 probe prompts", list(range(PROBE_PROMPTS))),
                        ("16 probe prompts + 200 guard pairs", None)):
        widths = sorted((c.high - c.low) / 2 for n in names if regime_of(n) == "demo"
                        for c in guard_comparisons(runs[n] if keep is None else half(runs[n], keep), tolerance)
                        if c.high is not None and c.low is not None and c.step >= 500)
        if widths:
            body.append([label, f"{widths[len(widths) // 2]:.2f} [{widths[int(0.9 * len(widths))]:.2f}] nats"])
    print(markdown(["prompts scored", "half-width"], body))

    print("\nSpearman correlation with the KL to the truth, across checkpoints (mean over seeds)\n")
    regime_names = list(dict.fromkeys(regime_of(n) for n in names))
    body = []
    for statistic in STATISTICS:
        cells = []
        for regime in regime_names:
            values = [correlation(runs[n], statistic) for n in names if regime_of(n) == regime]
            values = [v for v in values if math.isfinite(v)]
            cells.append(number(sum(values) / len(values), signed=True) if values else "-")
        body.append([statistic, *cells])
    print(markdown(["statistic", *regime_names], body))
    study = {"tolerance": tolerance, "slack": slack, "before_onset": before_onset, "tuning": tuning,
             "held_out": held_out, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(study, indent=1, default=str).replace("NaN", "null")
                                    .replace("Infinity", "null"), encoding="utf-8")
    print(f"\nall rows in {out / 'study.json'}")
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/signal_study")
    parser.add_argument("--regimes", nargs="+", default=None, help="a subset of the runs (in order)")
    parser.add_argument("--analyse-only", action="store_true", help="only the tables, from the runs in OUT")
    parser.add_argument("--no-guard", action="store_true", help="analyse the 16 probe prompts without the guard set")
    parser.add_argument("--base-guard", action="store_true",
                        help="no hand-made guard set: the callback's default guard='base' (use another --out)")
    args = parser.parse_args()
    out = Path(args.out)
    configs = regimes(out, args.base_guard)
    chosen = args.regimes or list(configs)
    if not args.analyse_only:
        train(configs, chosen)
    analyse(configs, chosen, out, guard=not args.no_guard)


if __name__ == "__main__":
    main()
