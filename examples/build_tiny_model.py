"""Build a tiny GPT-2 and its byte-level BPE tokenizer, and save them as a ``save_pretrained`` folder.

No network: the tokenizer is trained on the paper's seven prompts, the model is randomly
initialised. It exists to try ``probattr-monitor attribute`` in seconds:

    python examples/build_tiny_model.py out/tiny-gpt2
    probattr-monitor attribute --model out/tiny-gpt2 --max-new-tokens 8
"""

from __future__ import annotations

import argparse

from probattr_monitor import paper_prompts
from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tokenizer = byte_bpe_tokenizer(paper_prompts(), vocab_size=args.vocab_size)
    model = tiny_gpt2(
        len(tokenizer), n_layer=2, n_embd=64, n_head=4, n_positions=256, initializer_range=0.1, seed=args.seed
    )
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(
        f"wrote a tiny GPT-2 ({sum(p.numel() for p in model.parameters()):,} parameters, "
        f"|V| = {len(tokenizer)}) to {args.out}"
    )


if __name__ == "__main__":
    main()
