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
ids, decoded in left-padded batches with a KV cache
(:func:`~probattr_monitor.probes.inputs.batched.greedy_continuations`: the same ids as one prompt at
a time); the entropy below is read off the decoding logits, so it costs no extra forward. Pairs
whose response is empty or white space are dropped. The prompts are answered in a seeded random
order, so the first ``k`` pairs (what a run under ``max_overhead`` scores, or what a freezing
bounded by ``seconds`` reached) are a uniform sample.

Under ``ProbAttrCallback(max_overhead=...)`` the freezing is bounded too: it may take
``FREEZE_SHARE`` of the likelihood account the run's expected training earns
(``monitoring.overhead.freeze_seconds``), so a short run freezes fewer pairs (at least
:data:`UNTRAINED_CHECK_PAIRS`) and a long one all ``count``; the guard's description says how many.

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
        offered: prompts it could have answered (fewer are when ``seconds`` bounded the freezing).
    """

    pairs: list = field(default_factory=list)
    source: str = ""
    entropy_share: float = math.nan
    seconds: float = 0.0
    offered: int = 0

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
        bounded = f" of {self.offered} (what the share of this run's time pays for)" if self.offered > len(
            self.pairs) else ""
        return (f"guard='base': {len(self.pairs)} pairs{bounded} frozen from the model at train begin ({self.source}; "
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


def freeze_base_guard(model, tokenizer, settings, count: int = BASE_GUARD_PAIRS,
                      prompts: Optional[list] = None, seconds: Optional[float] = None) -> BaseGuard:
    """The model's own (prompt, greedy response ids) pairs, as the module docstring says; the model
    is put in eval mode and its training mode restored. ``prompts`` overrides the choice.

    ``seconds`` bounds the freezing: the first :data:`UNTRAINED_CHECK_PAIRS` prompts are always
    answered; then batches of :data:`~probattr_monitor.probes.inputs.batched.GENERATION_BATCH`
    follow while the seconds per pair measured so far say the next batch fits in what is left.
    The prompts are taken in a seeded random order, so the pairs frozen are a uniform sample of
    the ``count`` candidates."""
    from ..api.inputs import eval_mode, prepare_inputs
    from ..probes.inputs.batched import GENERATION_BATCH, greedy_continuations
    from ..probes.inputs.chat import has_chat_template
    from ..probes.inputs.tokens import start_token_id, stop_token_ids, vocab_size_of
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
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(settings.seed)).tolist()
        prompts = [prompts[i] for i in order]  # a seeded random order: any first k are a uniform sample
        encoded = prepare_inputs(model, tokenizer, prompts, None, settings)
        rows = [[prompt_in.start, *prompt_in.prompt_ids] for prompt_in, _ in encoded]
        stop_ids, pad_id = stop_token_ids(model, tokenizer), rows[0][0] if rows else 0
        uniform = math.log(vocab_size_of(model))
        answers: list = []
        for chunk in [rows[:UNTRAINED_CHECK_PAIRS], *(rows[i:i + GENERATION_BATCH]
                                                       for i in range(UNTRAINED_CHECK_PAIRS, len(rows),
                                                                      GENERATION_BATCH))]:
            if answers:
                entropy, steps = sum(c.entropy for c in answers), sum(len(c.ids) for c in answers)
                if steps and entropy / steps / uniform > UNTRAINED_ENTROPY_SHARE:
                    break  # untrained: no need to freeze the rest
                spent = time.perf_counter() - began
                if seconds is not None and spent + spent / len(answers) * len(chunk) > seconds:
                    break  # the next batch would not fit in the seconds given
            answers += greedy_continuations(model, chunk, settings.max_new_tokens, stop_ids, pad_id)
        entropy, steps = sum(c.entropy for c in answers), sum(len(c.ids) for c in answers)
        pairs = [(prompt, [int(i) for i in c.ids]) for prompt, c in zip(prompts, answers)
                 if tokenizer.decode(c.ids, skip_special_tokens=True).strip()]
    share = entropy / steps / uniform if steps else math.nan
    guard = BaseGuard(pairs=pairs, source=source, entropy_share=share, seconds=time.perf_counter() - began,
                      offered=len(prompts))
    if guard.untrained:
        guard.pairs = []
    return guard
