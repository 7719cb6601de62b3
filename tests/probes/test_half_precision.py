"""The GPU path on any machine: half-precision weights run in their dtype with float32 (or wider)
probability arithmetic, and the transient budget on a CUDA device follows its free memory."""

from __future__ import annotations

import copy

import pytest
import torch

from probattr_monitor import ProbeSettings, probe
from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2, tiny_llama
from probattr_monitor.probes.types.settings import CUDA_FREE_MEMORY_SHARE, cuda_budget_bytes

from ..run_if import run_if

TEXTS = ["the cat sat on the mat and the dog ran after it", "a bird sang in the tree while the sun rose"] * 8
PROMPTS = ["the cat sat on the", "a bird sang in"]
MB = 2**20


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
@pytest.mark.parametrize("init, tolerance", [(0.02, 0.01), (0.2, 0.15)])
def test_bfloat16_weights_agree_with_float32_on_the_same_weights(build, init, tolerance):
    """Measured: max |AS_bf16 - AS_fp32| 0.002 nats on flat models (init 0.02), 0.026-0.065 on
    peaked ones (0.2), the rounding of bf16 activations (8-bit mantissa); the scores come back as
    Python floats and the model stays in bf16."""
    tokenizer = byte_bpe_tokenizer(TEXTS, vocab_size=300)
    settings = ProbeSettings(max_new_tokens=4, progress=False)
    half = build(len(tokenizer), seed=0, initializer_range=init).to(torch.bfloat16).eval()
    got = probe(half, tokenizer, PROMPTS, settings=settings)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters()), "run in its own dtype, not upcast"
    ids = [list(r.response_token_ids) for r in got]
    reference = probe(copy.deepcopy(half).to(torch.float32), tokenizer, PROMPTS, responses=ids, settings=settings)
    pairs = [(a, b) for r, g in zip(reference, got) for a, b in zip(r.tokens, g.tokens)]
    assert pairs and all(r.valid for r in got)
    assert all(isinstance(b.attribution_score, float) for _, b in pairs)
    assert max(abs(a.attribution_score - b.attribution_score) for a, b in pairs) <= tolerance
    assert max(abs(a.entropy_context - b.entropy_context) for a, b in pairs) <= tolerance


def test_the_cuda_budget_is_a_share_of_the_free_memory_within_bounds():
    assert cuda_budget_bytes(40 * 1024 * MB) == int(CUDA_FREE_MEMORY_SHARE * 40 * 1024 * MB)
    assert cuda_budget_bytes(200 * 1024 * MB) == 16384 * MB, "capped"
    assert cuda_budget_bytes(600 * MB) == 256 * MB, "floor"
    assert cuda_budget_bytes(300 * MB) == 150 * MB, "the floor never above half of what is free"
    assert ProbeSettings().memory_budget_bytes(torch.device("cpu")) == 32 * MB
    assert ProbeSettings(memory_budget_mb=10).memory_budget_bytes("cuda:0") == 10 * MB, "given: never measured"


@run_if(cuda=True)
def test_the_cuda_budget_reads_the_device():
    free, _ = torch.cuda.mem_get_info(0)
    budget = ProbeSettings().memory_budget_bytes(torch.device("cuda:0"))
    assert budget == cuda_budget_bytes(free) or abs(budget - cuda_budget_bytes(free)) < 64 * MB
