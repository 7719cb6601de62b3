"""estimate_joint against exact_joint, side by side: the product-only proposal of 0.3 (``chain=False``)
and the default one with chains, on the same pairs, prompts and seeds.

Cases: random pairs of a flat tiny GPT-2 (|V| = 64), of a peaked tiny Llama (the test suite's two
classes) and of a chaotic GPT-2 (large random weights: likelihoods no cheap proposal can follow, the
case where estimates cannot be accurate and the figures show how far their intervals say so); the
planted OR pair (``tests/planted.py``, |V| = 17); the copy grammar's dependent pair (|V| = 96: the
second token and the answer copy the first), on several prompts of its grammar. For each case and
proposal: the share of 95% intervals (value +- 1.96 stderr, plus 1e-6) that cover the exact AS_S,
the median and maximum absolute error (nats), and the token-forwards per estimate.

Usage: python benchmarks/bench_joint_estimator.py [--seeds 20] [--prompts 5] [--draws 512] [--head 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama  # noqa: E402
from probattr_monitor.probes.engines.joint import estimate_joint, exact_joint  # noqa: E402
from probattr_monitor.probes.types.settings import ProbeSettings  # noqa: E402
from tests.planted import (  # noqa: E402
    COPY_SOURCE,
    COPY_TARGET,
    N_PROMPT,
    SLOTS,
    copy_ids,
    copy_model,
    planted_ids,
    planted_model,
)

SETTINGS = ProbeSettings(progress=False)


def cases(prompts: int):
    """``(name, model, [(ids, pair), ...])`` of every case."""
    generator = torch.Generator().manual_seed(0)
    random_ids = [torch.cat([torch.zeros(1, dtype=torch.long), torch.randint(1, 64, (9,), generator=generator)])
                  for _ in range(prompts)]
    random_pairs = [(0, 3), (2, 5), (1, 6)]
    models = (("flat GPT-2, |V|=64", tiny_gpt2(64, initializer_range=0.02, seed=1)),
              ("peaked Llama, |V|=64", tiny_llama(64, initializer_range=0.3, seed=1)),
              ("chaotic GPT-2, |V|=64", tiny_gpt2(64, initializer_range=1.0, seed=1)))
    for name, model in models:
        yield name, model.eval(), [(ids, pair) for ids in random_ids for pair in random_pairs][:prompts * 2]
    yield "planted OR pair, |V|=17", planted_model(), [(planted_ids(), list(SLOTS))]
    yield "copied pair, |V|=96", copy_model(), [(copy_ids(seed), [COPY_SOURCE, COPY_TARGET])
                                                for seed in range(prompts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--draws", type=int, default=512)
    parser.add_argument("--head", type=int, default=32)
    args = parser.parse_args()
    print(f"{'case':26s} {'proposal':9s} {'coverage':>9s} {'median err':>11s} {'max err':>8s} "
          f"{'token-fwd':>10s} {'s/est':>7s}")
    for name, model, items in cases(args.prompts):
        n_prompt = N_PROMPT if "planted" in name or "copied" in name else 8
        exact = [exact_joint(model, ids, n_prompt, pair, SETTINGS).attribution_score for ids, pair in items]
        for chain in (False, True):
            covered, errors, forwards, began = 0, [], [], time.perf_counter()
            for (ids, pair), truth in zip(items, exact):
                for seed in range(args.seeds):
                    estimate = estimate_joint(model, ids, n_prompt, pair, SETTINGS, draws=args.draws, head=args.head,
                                              seed=seed, chain=chain)
                    error = abs(estimate.attribution_score - truth)
                    covered += error <= 1.96 * estimate.stderrs["attribution_score"] + 1e-6
                    errors.append(error)
                    forwards.append(estimate.token_forwards)
            runs = len(errors)
            print(f"{name:26s} {'chains' if chain else 'products':9s} {covered / runs:9.1%} "
                  f"{statistics.median(errors):11.4f} {max(errors):8.3f} {statistics.mean(forwards):10.0f} "
                  f"{(time.perf_counter() - began) / runs:7.3f}")
        print(f"{'':26s} exact AS_S of its pairs: {min(exact):.3f} .. {max(exact):.3f} nats ({len(items)} pair(s))")


if __name__ == "__main__":
    main()
