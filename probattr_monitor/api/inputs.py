"""Inputs of a probe run, checked and encoded: the prompts (texts or chat conversations), their
responses (given texts or ids, or generated), by the token conventions of the maths guide or
through the chat template; every refusal is a :class:`~probattr_monitor.errors.ProbeInputError` before any compute."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, Union, cast

import torch

from ..errors import ProbeInputError
from ..probes.inputs.chat import (
    EncodedPrompt,
    check_messages,
    encode_chat,
    has_chat_template,
    uses_chat_template,
)
from ..probes.inputs.tokens import (
    check_causal_lm,
    check_fits_context,
    check_token_ids,
    encode_text,
    greedy_continuation,
    start_token_id,
    stop_token_ids,
    vocab_size_of,
)
from ..probes.types.settings import ProbeSettings
from .cost import check_token_forward_cap

# A prompt: a text, or a chat conversation (a list of {"role", "content"} messages).
Conversation = Sequence[dict]
Prompts = Union[str, Sequence[Union[str, Conversation]]]


# A response: None (the model's greedy continuation), a text, or token ids (scored as they are).
Response = Union[None, str, Sequence[int]]


Responses = Union[None, str, Sequence[int], Sequence[Response]]


def prepare_inputs(model, tokenizer, prompts: Prompts, responses: Responses, settings: ProbeSettings):
    """Check the model, tokenizer and texts, and encode them by the maths guide's conventions (or through
    the chat template, ``probes.inputs.chat``, when ``settings.chat_template`` resolves to it).

    Returns ``[(EncodedPrompt, response_ids or None), ...]``; a response given as token ids is
    checked against the model's vocabulary and kept as it is. Raises :class:`ProbeInputError` for
    anything :func:`probe` would refuse, so callers (the callback at train start) can fail early,
    before any compute.
    """
    single = isinstance(prompts, str)
    prompt_list = [prompts] if single else list(prompts)
    if not prompt_list:
        raise ProbeInputError("no prompts given: pass a prompt string or a non-empty list of prompts")
    response_list = response_list_of(responses, len(prompt_list), single)
    check_causal_lm(model)
    start = start_token_id(tokenizer)
    templated = uses_chat_template(tokenizer, settings.chat_template)
    if settings.system is not None and not templated:
        raise ProbeInputError("system= is a system message for the chat template, but "
                              + ("chat_template is off" if has_chat_template(tokenizer) else
                                 "the tokenizer has no chat template") + "; drop it (or use the template)")
    vocab_size = vocab_size_of(model)
    encoded = []
    for index, (prompt, response) in enumerate(zip(prompt_list, response_list)):
        what = "prompt" if single else f"prompt {index}"
        prompt_in = encode_prompt(tokenizer, prompt, settings, start, templated, what)
        if response is None or isinstance(response, str):
            response_ids = None if response is None else encode_text(tokenizer, response, "response")
        else:
            response_ids = check_token_ids(response, vocab_size, f"response {index}")
        response_len = settings.max_new_tokens if response_ids is None else len(response_ids)
        needs = "response" if response_ids is not None else f"max_new_tokens={settings.max_new_tokens}"
        check_fits_context(
            model,
            1 + len(prompt_in.prompt_ids) + response_len,
            f"prompt {index} ({len(prompt_in.prompt_ids)} tokens) + start token + {needs}",
        )
        encoded.append((prompt_in, response_ids))
    check_token_forward_cap(encoded, vocab_size, settings)
    return encoded


def with_responses(model, tokenizer, encoded, settings: ProbeSettings):
    """Each ``(EncodedPrompt, response_ids)`` of :func:`prepare_inputs` with its response filled in:
    the given ids, else the greedy continuation of ``settings.max_new_tokens`` tokens, generated
    when its pair is reached (call it in :func:`eval_mode`)."""
    stop_ids = stop_token_ids(model, tokenizer)
    for prompt_in, response_ids in encoded:
        if response_ids is None:
            with torch.inference_mode():
                response_ids = greedy_continuation(model, [prompt_in.start] + prompt_in.prompt_ids,
                                                   settings.max_new_tokens, stop_ids)
        yield prompt_in, response_ids


def encode_prompt(tokenizer, prompt, settings: ProbeSettings, start: int, templated: bool,
                  what: str = "prompt") -> EncodedPrompt:
    """One prompt as the engine takes it: through the chat template when ``templated`` (a list of
    messages needs it), else ``[s] + tokenizer(prompt, add_special_tokens=False)``, every token scored."""
    if not isinstance(prompt, str):
        check_messages(prompt, what)
        if not templated:
            raise ProbeInputError(f"the {what} is a list of chat messages, which needs the tokenizer's chat template "
                                  "(chat_template='auto' or True, and a tokenizer that has one)")
    if templated:
        return encode_chat(tokenizer, prompt, settings.system, start, what)
    ids = encode_text(tokenizer, prompt, "prompt")
    return EncodedPrompt(start=start, prompt_ids=ids, positions=list(range(len(ids))))


def response_list_of(responses: Responses, count: int, single: bool) -> list[Response]:
    """One response per prompt: ``None`` (generate), a text, or token ids (a single prompt's ids
    may come as one flat list)."""
    if responses is None:
        return [None] * count
    if isinstance(responses, str):
        if not single:
            raise ProbeInputError(f"got {count} prompts but one response string; pass a list of {count} responses")
        return [responses]
    if single and responses and all(isinstance(r, int) and not isinstance(r, bool) for r in responses):
        return [[int(cast(int, r)) for r in responses]]  # one prompt, its response as token ids
    response_list = cast(list[Response], list(responses))
    if len(response_list) != count:
        raise ProbeInputError(f"got {count} prompt(s) but {len(response_list)} response(s); pass one per prompt")
    return response_list


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """Eval mode inside, the caller's training mode restored afterwards (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
