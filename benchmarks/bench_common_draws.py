"""Do common random numbers make the drift between two checkpoints more precise? (issue 33, item 2)

The budget policy seeds its draws with ``ProbeSettings.seed`` at every run, and draws by
Gumbel-top-n (``probes.maths.estimator.draw_without_replacement``): each vocabulary id gets the
same Gumbel key at every checkpoint, so where the proposal barely moved, consecutive checkpoints
draw nearly the same candidates. This replays (``simulate_estimator``: exact ``b``, ``c`` looked
up) two nearby checkpoints of the tiny benchmark models (each model, and a copy whose weights
moved by ``--step`` of each tensor's standard deviation, a stand-in for the next checkpoint) and
compares the error of the per-position AS drift, ``(AS_2 - AS_1)`` estimated against exact, and
of the run's mean-AS drift, with the same seed at both (common draws, what the monitor does) and
with different seeds (independent draws).

Usage: python benchmarks/bench_common_draws.py [--seeds 40] [--step 0.02]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate_estimator import exact_values, replay_inputs  # noqa: E402

from probattr_monitor.probes.engines.budgeted import PositionSampler, head_size, run_rounds  # noqa: E402
from probattr_monitor.probes.engines.engine import score_exact  # noqa: E402
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
    with torch.inference_mode():
        scores = score_exact(model, ids, n_prompt, ProbeSettings(progress=False))
    rows = [(k, scores.prior[k], scores.rest_prompt[k], scores.response[k]) for k in range(n_prompt)]
    positions = replay_inputs(model, ids, n_prompt, rows, budget)
    return positions, [exact_values(p["prior"], p["b"], p["c"], p["actual"])["attribution_score"] for p in positions]


def attribution(positions, budget, seed) -> list:
    samplers = []
    for p in positions:
        b, c, cost = p["b"].double(), p["c"].double(), p["cost"]
        samplers.append(PositionSampler(p["prior"].double(), p["approx_b"], p["approx_c"], p["actual"],
                                        head_size(budget),
                                        lambda ids, b=b, c=c, cost=cost: (b[ids], c[ids], ids.shape[0] * cost),
                                        p["look_ids"], p["look"], p["look_cost"]))
    found = run_rounds(samplers, [p["cost"] for p in positions], budget, torch.Generator().manual_seed(seed))
    return [e.values["attribution_score"] for e in found]


def main() -> None:
    from bench_estimator import PROMPTS, RESPONSES, tiny_models

    from probattr_monitor.probes.inputs.tokens import encode_text, start_token_id

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--step", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, model, tokenizer in tiny_models():
        model.eval()
        nearby = moved(model, args.step).eval()
        position_errors = {"common": [], "independent": []}
        run_errors = {"common": [], "independent": []}
        true_drifts = []
        for prompt_text, response_text in zip(PROMPTS, RESPONSES):
            prompt = encode_text(tokenizer, prompt_text, "prompt")
            response = encode_text(tokenizer, response_text, "response")
            ids = torch.tensor([start_token_id(tokenizer)] + prompt + response)
            budget = ProbeSettings().budget_for(model.get_output_embeddings().weight.shape[0])
            first, exact_first = prepared(model, ids, len(prompt), budget)
            second, exact_second = prepared(nearby, ids, len(prompt), budget)
            truth = [b - a for a, b in zip(exact_first, exact_second)]
            true_drifts += truth
            for seed in range(args.seeds):
                one = attribution(first, budget, seed)
                for kind, other_seed in (("common", seed), ("independent", seed + 10_000)):
                    two = attribution(second, budget, other_seed)
                    drift = [b - a for a, b in zip(one, two)]
                    position_errors[kind] += [abs(d - t) for d, t in zip(drift, truth)]
                    run_errors[kind].append(abs(sum(drift) - sum(truth)) / len(truth))
        typical = float(torch.tensor(true_drifts).abs().median())
        print(f"{name}: {len(true_drifts)} positions x {args.seeds} seeds, weights moved {args.step:g} sd "
              f"(median |exact AS drift| {typical:.4f})")
        for kind in ("common", "independent"):
            errors = torch.tensor(position_errors[kind], dtype=torch.float64)
            runs = torch.tensor(run_errors[kind], dtype=torch.float64)
            print(f"  {kind:11s} draws: per-position drift |error| median {float(errors.median()):.4f}, "
                  f"p95 {float(errors.quantile(0.95)):.4f}; mean-AS drift |error| median {float(runs.median()):.4f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
