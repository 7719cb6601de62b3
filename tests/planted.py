"""A model with a planted cooperative pair: two prompt tokens that matter only together.

Token ids: 0 the start token, 1..12 fillers, ``KEY`` (13), ``YES`` (14), ``NO`` (15), ``MASK`` (16,
the token a deleted prompt token becomes). A sequence is ``[0] + six prompt tokens + [answer]``:
every prompt token is a random filler, except that the two *slots* (positions 1 and 4) hold ``KEY``
with probability 0.15 each; any token is replaced by ``MASK`` with probability 0.1. The answer is
``YES`` when a slot still holds ``KEY``, else ``NO`` (an OR of the slots).

On the planted prompt (``KEY`` in both slots) removing either slot alone, by marginalising it
(AS) or by deleting it (``MASK``), leaves the answer ``YES``: every per-token score is near zero.
Removing both makes ``YES`` about as likely as the prior says (1 - 0.85^2 = 0.28): the pair's
joint score is ``-log 0.28 ~ 1.3`` nats.
"""

from __future__ import annotations

import functools

import torch

FILLERS = tuple(range(1, 13))
KEY, YES, NO, MASK = 13, 14, 15, 16
VOCAB = 17
SLOTS = (1, 4)
PROMPT = (3, KEY, 7, 2, KEY, 9)  # the planted prompt: KEY in both slots
N_PROMPT = len(PROMPT)


HINT_POSITION, HINT = 5, 9  # the distractor grammar's hint: filler 9 as the last prompt token (as in PROMPT)


def sample_sequences(count: int, generator: torch.Generator, hint: bool = False) -> torch.Tensor:
    """``(count, 8)`` training sequences of the grammar in the module docstring. ``hint``: the
    distractor grammar, where the last prompt token is ``HINT`` half the time and a ``YES`` answer
    flips to ``NO`` with probability 0.3 unless it is; on the planted prompt the hint alone then
    scores ``AS ~ 0.16`` nats, more than either slot alone (``~ 0``) and far less than the pair
    (``~ 1.3``)."""
    prompt = torch.tensor(FILLERS)[torch.randint(len(FILLERS), (count, N_PROMPT), generator=generator)]
    for slot in SLOTS:
        keyed = torch.rand(count, generator=generator) < 0.15
        prompt[keyed, slot] = KEY
    masked = torch.rand(count, N_PROMPT, generator=generator) < 0.1
    prompt[masked] = MASK
    answer = torch.where((prompt[:, list(SLOTS)] == KEY).any(-1), YES, NO)
    if hint:
        hinted = torch.rand(count, generator=generator) < 0.5
        prompt[hinted, HINT_POSITION] = HINT
        flipped = (torch.rand(count, generator=generator) < 0.3) & (prompt[:, HINT_POSITION] != HINT)
        answer[flipped & (answer == YES)] = NO
    return torch.cat([torch.zeros(count, 1, dtype=torch.long), prompt, answer.unsqueeze(-1)], dim=1)


def trained(vocab: int, sampler) -> torch.nn.Module:
    """A tiny GPT-2 (2 layers, width 64) trained for 600 seeded steps of 64 sequences from
    ``sampler(count, generator)``."""
    from probattr_monitor.demo.tiny_models import tiny_gpt2

    torch.manual_seed(0)
    model = tiny_gpt2(vocab, n_embd=64, seed=0)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(600):
        batch = sampler(64, generator)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@functools.lru_cache(maxsize=2)
def planted_model(hint: bool = False):
    """The tiny GPT-2 of :func:`trained` on the grammar, until it has learnt the OR (about 10 s on 2
    CPU cores); ``hint``: on the distractor grammar. Cached for the test session."""
    return trained(VOCAB, lambda count, generator: sample_sequences(count, generator, hint))


def planted_ids() -> torch.Tensor:
    """``[0] + PROMPT + [YES]``: the sequence the probes score (``N_PROMPT`` prompt tokens)."""
    return torch.tensor([0, *PROMPT, YES])


COPY_VOCAB = 96  # the copy grammar: 0 the start token, 1..95 tokens
COPY_SOURCE, COPY_TARGET = 1, 4  # prompt positions: the target copies the source; so does the answer


def copy_sequences(count: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 8)`` sequences ``[0] + six prompt tokens + [answer]``: random tokens, except that
    prompt position 4 repeats position 1 and the answer repeats it again. Marginalised together,
    the two positions' joint candidates agree (``v_1 = v_4``) under both joint posteriors: a pair
    whose dependence product proposals cannot follow."""
    sequences = torch.randint(1, COPY_VOCAB, (count, 8), generator=generator)
    sequences[:, 0] = 0
    sequences[:, 1 + COPY_TARGET] = sequences[:, 1 + COPY_SOURCE]
    sequences[:, 7] = sequences[:, 1 + COPY_SOURCE]
    return sequences


@functools.lru_cache(maxsize=1)
def copy_model():
    """The tiny GPT-2 of :func:`trained` on :func:`copy_sequences`, until it copies. Cached."""
    return trained(COPY_VOCAB, copy_sequences)


def copy_ids(seed: int = 0) -> torch.Tensor:
    """One sequence of the copy grammar (``[0] + prompt + [answer]``), drawn with ``seed``."""
    return copy_sequences(1, torch.Generator().manual_seed(seed))[0]
