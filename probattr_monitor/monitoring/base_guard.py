"""The model's own behaviour at train begin, frozen as the guard set (``guard="base"``).

Every fine-tune has a base model, and the base's own answers are what it must not lose. At train
begin, before the first step, :func:`freeze_base_guard` takes ``count`` (prompt, response) pairs
from the model as it is and freezes the responses as token ids; every later probe run scores
``log P(r | p)`` of each (one forward per pair), and the regression test compares them across
checkpoints.

Which prompts:

- a model whose tokenizer has a chat template (an instruct model) answers the general prompt
  pack shipped with the package (``data/general_prompts.txt``: 200 short, everyday questions and
  requests written for this project, released with it under its licence), through the template;
- any other model continues text it samples itself: ``BASE_PROMPT_TOKENS`` tokens drawn from its
  start token (seeded), decoded to a prompt text. That needs no language, no template and no data,
  so it suits every base LM (the demo's 54-word grammar included).

The response is the model's greedy continuation (``max_new_tokens`` of the settings), as token
ids; pairs whose response is empty or white space are dropped. The pairs are kept in a seeded
random order, so the first ``k`` of them (what a run under ``max_overhead`` scores) are a uniform
sample.

Off for a model that has not learnt anything yet: a randomly initialised model's answers are
noise, and a model that learns would "regress" on them. The measure is the mean entropy of the
model's next-token distribution along its own greedy responses, as a share of ``log |V|`` (the
uniform distribution's): above :data:`UNTRAINED_ENTROPY_SHARE` the model is taken as untrained.
Measured (``tests/monitoring/test_base_guard.py``): randomly initialised tiny GPT-2 and Llama models
give more than 0.97, a tiny GPT-2 after 12 steps on the test texts 0.97 (untrained by this rule),
the same model after 60 steps less than 0.9. Not yet measured on the demo or on SmolLM2.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

BASE_GUARD_PAIRS = 200  # pairs frozen at train begin
BASE_PROMPT_TOKENS = 8  # tokens of a prompt a base LM samples from its start token
UNTRAINED_ENTROPY_SHARE = 0.9  # above this share of log|V| on its own responses, a model is untrained
UNTRAINED_CHECK_PAIRS = 8  # pairs after which an untrained model stops the freezing


@dataclass
class BaseGuard:
    """What :func:`freeze_base_guard` found.

    Attributes:
        pairs: ``[(prompt text, response token ids)]``; empty when the model is untrained.
        source: ``"general prompt pack, chat template"`` or ``"the model's own samples"``.
        entropy_share: mean next-token entropy along its responses over ``log |V|``.
        seconds: wall time of the freezing.
    """

    pairs: list = field(default_factory=list)
    source: str = ""
    entropy_share: float = math.nan
    seconds: float = 0.0

    @property
    def untrained(self) -> bool:
        """Whether the model looked untrained (``entropy_share > UNTRAINED_ENTROPY_SHARE``)."""
        return not self.entropy_share <= UNTRAINED_ENTROPY_SHARE

    def describe(self) -> str:
        """One line for the log."""
        if self.untrained:
            return (f"guard='base' is off: the model at train begin looks untrained (its next-token entropy on "
                    f"its own responses is {self.entropy_share:.0%} of a uniform distribution's, above "
                    f"{UNTRAINED_ENTROPY_SHARE:.0%}); its answers would be noise to regress from. Pass guard= pairs "
                    "or a file to guard this run")
        return (f"guard='base': {len(self.pairs)} pairs frozen from the model at train begin ({self.source}; "
                f"entropy {self.entropy_share:.0%} of uniform), {self.seconds:.1f} s; each probe run scores them "
                "for log P(r|p), one forward each")


def sampled_prompts(model, tokenizer, start: int, count: int, seed: int) -> list[str]:
    """``count`` texts of :data:`BASE_PROMPT_TOKENS` tokens sampled from ``start`` (seeded, the
    global RNG untouched), decoded without special tokens; empty ones are dropped."""
    from ..probes.engines.engine import model_device

    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((count, 1), start, dtype=torch.long)
    for _ in range(BASE_PROMPT_TOKENS):
        logits = model(input_ids=ids.to(model_device(model))).logits[:, -1].float().cpu()
        probs = torch.softmax(torch.nan_to_num(logits, nan=0.0), -1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    texts = [tokenizer.decode(row[1:].tolist(), skip_special_tokens=True).strip() for row in ids]
    return [text for text in texts if text]


def response_entropy(model, prompt_in, response: list) -> tuple[float, int]:
    """``(sum of next-token entropies, count)`` along ``response`` after ``prompt_in`` (one forward)."""
    from ..probes.engines.engine import model_device

    sequence = [prompt_in.start, *prompt_in.prompt_ids, *response]
    logits = model(input_ids=torch.tensor([sequence], device=model_device(model))).logits[0].float()
    first = 1 + len(prompt_in.prompt_ids)
    log_probs = torch.log_softmax(logits[first - 1:len(sequence) - 1], -1)
    entropy = -(log_probs.exp() * log_probs).nan_to_num().sum(-1)
    return float(entropy.sum()), int(entropy.numel())


def freeze_base_guard(model, tokenizer, settings, count: int = BASE_GUARD_PAIRS,
                      prompts: Optional[list] = None) -> BaseGuard:
    """The model's own (prompt, greedy response ids) pairs, as the module docstring says; the model
    is put in eval mode and its training mode restored. ``prompts`` overrides the choice."""
    from ..api.inputs import eval_mode, prepare_inputs
    from ..probes.inputs.chat import has_chat_template
    from ..probes.inputs.tokens import greedy_continuation, start_token_id, stop_token_ids, vocab_size_of
    from ..prompts import general_prompts

    began = time.perf_counter()
    templated = has_chat_template(tokenizer) and settings.chat_template is not False
    with eval_mode(model), torch.inference_mode():
        if prompts is not None:
            source = "the prompts given"
        elif templated:
            prompts, source = general_prompts()[:count], "general prompt pack, chat template"
        else:
            prompts = sampled_prompts(model, tokenizer, start_token_id(tokenizer), count, settings.seed)
            source = "the model's own samples from its start token"
        encoded = prepare_inputs(model, tokenizer, prompts, None, settings)
        stop_ids = stop_token_ids(model, tokenizer)
        pairs, entropy, steps = [], 0.0, 0
        uniform = math.log(vocab_size_of(model))
        for index, (prompt, (prompt_in, _)) in enumerate(zip(prompts, encoded)):
            response = greedy_continuation(model, [prompt_in.start, *prompt_in.prompt_ids], settings.max_new_tokens,
                                           stop_ids)
            total, count_here = response_entropy(model, prompt_in, response)
            entropy, steps = entropy + total, steps + count_here
            if tokenizer.decode(response, skip_special_tokens=True).strip():
                pairs.append((prompt, [int(i) for i in response]))
            if index + 1 == UNTRAINED_CHECK_PAIRS and steps and entropy / steps / uniform > UNTRAINED_ENTROPY_SHARE:
                break  # untrained: no need to freeze the rest
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(settings.seed)).tolist()
    pairs = [pairs[i] for i in order]  # a seeded random order: any first k of them are a uniform sample
    share = entropy / steps / uniform if steps else math.nan
    guard = BaseGuard(pairs=pairs, source=source, entropy_share=share, seconds=time.perf_counter() - began)
    if guard.untrained:
        guard.pairs = []
    return guard
