"""What a record's weights fingerprint costs beside the probe run it identifies, on a model of
SmolLM2-135M's shape (a Llama config built in-process, float32): the seconds of one
``weights_fingerprint`` pass, its GB/s, and the ratio to one small budgeted probe run measured in
the same process.

Usage: python benchmarks/bench_fingerprint.py
"""

from __future__ import annotations

import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from probattr_monitor import probe
from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer
from probattr_monitor.monitoring.provenance import weights_fingerprint


def main() -> None:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    began = time.perf_counter()
    weights_fingerprint(model)
    fingerprint = time.perf_counter() - began
    tokenizer = byte_bpe_tokenizer(["What is the capital of France?"], vocab_size=300)
    began = time.perf_counter()
    probe(model, tokenizer, "What is the capital", responses=" of France", candidate_policy="budget",
          candidate_budget=64, progress=False)
    probing = time.perf_counter() - began
    print(f"weights: {size / 1e6:.0f} MB; fingerprint {fingerprint:.2f} s ({size / fingerprint / 1e9:.2f} GB/s); "
          f"one budgeted probe run (5 prompt tokens, 64 candidates per position) {probing:.1f} s; "
          f"fingerprint / probe run = {fingerprint / probing:.1%}")


if __name__ == "__main__":
    main()
