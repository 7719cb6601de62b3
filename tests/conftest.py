"""Shared fixtures: tiny models and a tokenizer built in-process (no network)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "the cat sat on the mat and the dog ran after it",
    "a bird sang in the tree while the sun rose over the hill",
    "What year did Albert Einstein visit Mars?",
]


@pytest.fixture(scope="session")
def tokenizer():
    from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer

    return byte_bpe_tokenizer(CORPUS, vocab_size=300)


def build_model(arch: str, vocab_size: int, peaked: bool, seed: int = 0):
    """A tiny GPT-2 or Llama; ``peaked`` uses a large init range so distributions are sharp."""
    from probattr_monitor.demo.tiny_models import tiny_gpt2, tiny_llama

    build = {"gpt2": tiny_gpt2, "llama": tiny_llama}[arch]
    return build(vocab_size, initializer_range=0.5 if peaked else 0.02, seed=seed)


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def arch(request):
    return request.param


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory):
    """A run trained with a plain Trainer (no callback): checkpoints 3, 6, 9, 12 with eval losses."""
    from .callbacks.helpers import make_trainer

    folder = tmp_path_factory.mktemp("plain") / "run"
    make_trainer(folder, [], max_steps=12, save_steps=3, evaluate=True).train()
    return folder


@pytest.fixture
def fresh_deprecation_warnings(monkeypatch):
    """The once-per-process deprecation warnings (``errors.warn_renamed``) seen afresh by one test."""
    from probattr_monitor import errors

    monkeypatch.setattr(errors, "_WARNED", set())
