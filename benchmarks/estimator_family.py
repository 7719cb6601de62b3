"""The budget policy on a family of models built for it, against exact values (issue 24, part 3).

Classes: tiny GPT-2 and tiny Llama configurations, each randomly initialised at initializer ranges
0.02 (flat) to 0.5 (peaked, chaotic likelihoods). In a class: vocabularies of 2,000 and 5,000 ids and
prompts of 4, 8 and 16 random ids (fixed seeds), each with its model's greedy 3-token response.
Exact ``a, b, c`` over the whole vocabulary are computed once per prompt; the budget policy is then
replayed ``--seeds`` times on them (``simulate_estimator.replay``: the policy's ``score`` callback
looks ids up instead of running suffixes, so every replay is the estimator a probe would run, with
other draws). Printed per class: the AS error's median and 95th percentile, the share of tokens within
0.05 nats (target >= 95%), the share of 95% intervals covering exact over all five quantities (target
>= 90%), token-forwards against exact (target <= 1/5), and, where 1/5 misses a target, the smallest
share of ``--shares`` that meets both. Two more columns say why a class is hard (:func:`hardness`): the share of
``q_prompt``'s mass outside the ``|V|/5`` ids the truth ranks highest, and the effective sample size
per draw of the policy's cheap guess (prior + lookahead) used as a proposal. The models use seed 2; the policy's
constants were examined on seed 1 (``family_inputs(..., seed=1)``), so the table is held out.

Usage: python benchmarks/estimator_family.py [--seeds 10] [--inits 0.02 0.05 0.12 0.25 0.5]
       [--archs gpt2 llama] [--vocabs 2000 5000] [--lengths 4 8 16] [--shares 0.2 0.33 0.5 0.75]
       (or python benchmarks/bench_estimator.py --family, with the same options)
"""

from __future__ import annotations

import argparse
import time

import torch
from simulate_estimator import replay, replay_inputs

from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama
from probattr_monitor.probes.engines.engine import score_exact
from probattr_monitor.probes.inputs.tokens import greedy_continuation
from probattr_monitor.probes.types.settings import ProbeSettings

RESPONSE_TOKENS = 3
WITHIN, COVER = 0.95, 0.90


def family_inputs(arch: str, init: float, vocab: int, length: int, seed: int = 1):
    """The model of a class member and one probe's ``ids = [s] + prompt + response``."""
    build = tiny_gpt2 if arch == "gpt2" else tiny_llama
    model = build(vocab, initializer_range=init, seed=seed).eval()
    generator = torch.Generator().manual_seed(1000 * length + vocab)
    prompt = torch.randint(3, vocab, (length,), generator=generator).tolist()
    with torch.inference_mode():
        response = greedy_continuation(model, [0] + prompt, RESPONSE_TOKENS, set())
    return model, torch.tensor([0] + prompt + response), length


def exact_rows(model, ids: torch.Tensor, n_prompt: int):
    with torch.inference_mode():
        scores = score_exact(model, ids, n_prompt, ProbeSettings(progress=False))
    return [(k, scores.prior[k], scores.rest_prompt[k], scores.response[k]) for k in range(n_prompt)]


def hardness(position: dict, size: int) -> tuple[float, float]:
    """Why a class is hard, from a position's exact vectors: the share of ``q_prompt``'s mass outside
    the ``size`` ids the truth ranks highest (what even a perfect ranking leaves to sampling), and
    the efficiency of the policy's cheap guess ``a`` + lookahead as a proposal ``pi = softmax(guess)``
    for ``q_prompt``, both over the looked-ahead ids: Kish's effective sample size per draw,
    ``1 / sum_v q(v)^2 / pi(v)`` (1 for a perfect guess; near 0 when a few unforeseen ids carry it)."""
    prior = position["prior"].double()
    truth = torch.softmax(prior + position["b"].double(), 0)
    left = float(1 - truth[torch.topk(truth, min(size, truth.shape[0])).indices].sum())
    looked = position["look_ids"]
    if looked.shape[0] == 0:
        return left, float("nan")
    target = torch.softmax(prior[looked] + position["b"].double()[looked], 0)
    proposal = torch.softmax(prior[looked] + position["look"].double(), 0)
    return left, float(1 / (target ** 2 / proposal).sum())


def figures(members, share: float, seeds: int):
    """Replays every member at ``candidate_budget = share x |V|``; returns the class's figures."""
    errors, cover, spent, exact_cost, missed = [], [], 0.0, 0, []
    for model, ids, n_prompt, rows in members:
        vocab = rows[0][1].shape[0]
        budget = ProbeSettings(candidate_budget=max(2, round(share * vocab))).budget_for(vocab)
        positions = replay_inputs(model, ids, n_prompt, rows, budget)
        found, coverage, forwards, _ = replay(positions, budget, seeds)
        missed += [hardness(position, budget) for position in positions]
        errors.append(found.flatten())
        cover += coverage
        spent += float(forwards.sum())
        exact_cost += vocab * sum(p["cost"] for p in positions)
    errors = torch.cat(errors)
    return {"median": float(errors.median()), "p95": float(errors.quantile(0.95)),
            "within": float((errors <= 0.05).double().mean()), "cover": sum(cover) / len(cover),
            "forwards": spent / exact_cost, "tokens": len(cover),
            "left": sum(m[0] for m in missed) / len(missed),
            "efficiency": float(torch.tensor([m[1] for m in missed]).nanmean())}


def family_table(archs, inits, vocabs, lengths, shares, seeds: int, model_seed: int = 2) -> None:
    """Prints the table, one row per class (``model_seed`` 2: the constants were looked at on seed 1)."""
    print("| class | positions | AS error median / p95 | within 0.05 | cover | token-forwards | "
          "mass outside the true top budget | the guess's ESS per draw | meets both at |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arch in archs:
        for init in inits:
            began = time.perf_counter()
            members = []
            for vocab in vocabs:
                for length in lengths:
                    model, ids, n_prompt = family_inputs(arch, init, vocab, length, seed=model_seed)
                    members.append((model, ids, n_prompt, exact_rows(model, ids, n_prompt)))
            first = figures(members, shares[0], seeds)
            meets = None
            if first["within"] >= WITHIN and first["cover"] >= COVER:
                meets = f"{first['forwards']:.2f}"
            else:
                for share in shares[1:]:
                    more = figures(members, share, seeds)
                    if more["within"] >= WITHIN and more["cover"] >= COVER:
                        meets = f"{more['forwards']:.2f} (within {100 * more['within']:.0f}%)"
                        break
                    meets = f"not at {more['forwards']:.2f} (within {100 * more['within']:.0f}%)"
            print(f"| {arch} init {init} | {first['tokens']} | {first['median']:.4f} / {first['p95']:.4f} | "
                  f"{100 * first['within']:.1f}% | {100 * first['cover']:.1f}% | {first['forwards']:.3f} | "
                  f"{100 * first['left']:.1f}% | {first['efficiency']:.3f} | {meets} | "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=10, help="replays per prompt, each with other draws")
    parser.add_argument("--archs", nargs="+", default=["gpt2", "llama"])
    parser.add_argument("--inits", nargs="+", type=float, default=[0.02, 0.05, 0.12, 0.25, 0.5])
    parser.add_argument("--vocabs", nargs="+", type=int, default=[2000, 5000])
    parser.add_argument("--lengths", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.2, 0.33, 0.5, 0.75])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(2)
    family_table(args.archs, args.inits, args.vocabs, args.lengths, args.shares, args.seeds)


if __name__ == "__main__":
    main()
