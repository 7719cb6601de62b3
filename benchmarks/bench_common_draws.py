"""Reuse across checkpoints: common random numbers, and the previous checkpoint's head (issue 33, item 2).

The budget policy seeds its draws with ``ProbeSettings.seed`` at every run, and draws by
Gumbel-top-n (``probes.maths.estimator.draw_without_replacement``): each vocabulary id gets the
same Gumbel key at every checkpoint, so where the proposal barely moved, consecutive checkpoints
draw nearly the same candidates. This replays (``simulate_estimator``: exact ``b``, ``c`` looked
up) two nearby checkpoints of the tiny benchmark models (each model, and a copy whose weights
moved by ``--step`` of each tensor's standard deviation, a stand-in for the next checkpoint) and
compares the error of the per-position AS drift, ``(AS_2 - AS_1)`` estimated against exact, and
of the run's mean-AS drift, with the same seed at both (common draws, what the monitor does) and
with different seeds (independent draws).

Second, the previous checkpoint's head as the proposal's lead: at the second checkpoint the
ids the first one scored exactly (head and draws), guessed at ``a_2 + b_1`` (this checkpoint's
prior, the last one's exact ``b``), take the place of the lookahead, whose token-forwards (3/8 +
1/32 of the allowance) then go to draws. Printed: the second checkpoint's AS error and the
share of its 95% intervals that hold exact, with its own lookahead and with the reused head, at
the same budget, and the token-forwards each spent.

Usage: python benchmarks/bench_common_draws.py [--seeds 40] [--step 0.02]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate_estimator import exact_rows, exact_values, lookup_sampler, replay_inputs, tiny_probe_ids  # noqa: E402

from probattr_monitor.probes.engines.budgeted import run_rounds  # noqa: E402
from probattr_monitor.probes.types.settings import ProbeSettings  # noqa: E402


def moved(model, step: float, seed: int = 0):
    """A copy of ``model`` whose every weight tensor moved by ``step`` x its standard deviation x N(0, 1)."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in other.parameters():
            if parameter.numel() > 1:
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.add_(step * float(parameter.std()) * noise)
    return other


def prepared(model, ids, n_prompt, budget):
    positions = replay_inputs(model, ids, n_prompt, exact_rows(model, ids, n_prompt), budget)
    return positions, [exact_values(p["prior"], p["b"], p["c"], p["actual"])["attribution_score"] for p in positions]


def scored(positions, budget, seed, previous=None):
    """The budget policy replayed on ``positions`` with ``seed``: ``(estimates, samplers)``. With
    ``previous`` (the first checkpoint's ``(positions, samplers)``), each position's lookahead is
    replaced by the ids the first checkpoint scored exactly, guessed at this prior + its exact ``b``."""
    samplers = []
    for row, p in enumerate(positions):
        look = None
        if previous is not None:
            ids = previous[1][row].scored()[0]
            look = (ids, previous[0][row]["b"].double()[ids], 0)
        samplers.append(lookup_sampler(p, budget, look))
    found = run_rounds(samplers, [p["cost"] for p in positions], budget, torch.Generator().manual_seed(seed))
    return found, samplers


def attribution(positions, budget, seed) -> list:
    return [e.values["attribution_score"] for e in scored(positions, budget, seed)[0]]


def main() -> None:
    from bench_estimator import tiny_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--step", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, model, tokenizer in tiny_models():
        model.eval()
        nearby = moved(model, args.step).eval()
        position_errors = {"common": [], "independent": []}
        second_errors: dict = {"own lookahead": [], "reused head": []}
        second_cover: dict = {"own lookahead": [], "reused head": []}
        second_forwards: dict = {"own lookahead": 0, "reused head": 0}
        run_errors = {"common": [], "independent": []}
        true_drifts = []
        for ids, n_prompt in tiny_probe_ids(tokenizer):
            budget = ProbeSettings().budget_for(model.get_output_embeddings().weight.shape[0])
            first, exact_first = prepared(model, ids, n_prompt, budget)
            second, exact_second = prepared(nearby, ids, n_prompt, budget)
            truth = [b - a for a, b in zip(exact_first, exact_second)]
            true_drifts += truth
            for seed in range(args.seeds):
                one = attribution(first, budget, seed)
                for kind, other_seed in (("common", seed), ("independent", seed + 10_000)):
                    two = attribution(second, budget, other_seed)
                    drift = [b - a for a, b in zip(one, two)]
                    position_errors[kind] += [abs(d - t) for d, t in zip(drift, truth)]
                    run_errors[kind].append(abs(sum(drift) - sum(truth)) / len(truth))
                before = (first, scored(first, budget, seed)[1])
                for kind, reuse in (("own lookahead", None), ("reused head", before)):
                    found, samplers = scored(second, budget, seed, reuse)
                    second_forwards[kind] += sum(sampler.token_forwards for sampler in samplers)
                    for estimate, exact in zip(found, exact_second):
                        error = abs(estimate.values["attribution_score"] - exact)
                        second_errors[kind].append(error)
                        second_cover[kind].append(error <= 1.96 * estimate.stderrs["attribution_score"] + 1e-4)
        typical = float(torch.tensor(true_drifts).abs().median())
        print(f"{name}: {len(true_drifts)} positions x {args.seeds} seeds, weights moved {args.step:g} sd "
              f"(median |exact AS drift| {typical:.4f})")
        for kind in ("common", "independent"):
            errors = torch.tensor(position_errors[kind], dtype=torch.float64)
            runs = torch.tensor(run_errors[kind], dtype=torch.float64)
            print(f"  {kind:11s} draws: per-position drift |error| median {float(errors.median()):.4f}, "
                  f"p95 {float(errors.quantile(0.95)):.4f}; mean-AS drift |error| median {float(runs.median()):.4f}")
        for kind in ("own lookahead", "reused head"):
            errors = torch.tensor(second_errors[kind], dtype=torch.float64)
            print(f"  second checkpoint, {kind:13s}: AS |error| median {float(errors.median()):.4f}, "
                  f"p95 {float(errors.quantile(0.95)):.4f}; cover {100 * sum(second_cover[kind]) / len(errors):.1f}%; "
                  f"token-forwards {second_forwards[kind] / second_forwards['own lookahead']:.0%} of own lookahead's")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
