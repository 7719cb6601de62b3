"""Prompts through a tokenizer's chat template, with only the user's words scored.

An instruct model expects its chat template. The probe then runs on

    [s] + T_1 + u + T_2 + response

where ``T_1`` and ``T_2`` are the template's tokens (role markers, a system message, the
generation prompt) and ``u`` the tokens of the user's text. In the maths guide's terms the *prompt* is
``T_1 + u + T_2``: every quantity conditions on all of it, but only the positions of ``u`` are
scored, i.e. marginalised over the vocabulary. The template tokens are fixed context; they are
never candidates, so they neither dilute the summary means nor cost candidate forwards.

The start token is never doubled: when the rendered template already begins with the start token
(SmolLM2's ``<|im_start|>`` is both its BOS and the template's first token; Llama templates
write ``{{ bos_token }}``) that token is ``s``; otherwise ``s`` is prepended as usual.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from ...errors import ProbeInputError, one_line

Message = dict
Prompt = Union[str, Sequence[Message]]


@dataclass
class EncodedPrompt:
    """One prompt ready for the engine.

    Attributes:
        start: the start token ``s``.
        prompt_ids: every token between ``s`` and the response (the template's included).
        positions: the indices into ``prompt_ids`` that are scored (all of them without a template).
        templated: whether the chat template built ``prompt_ids``.
    """

    start: int
    prompt_ids: list
    positions: list
    templated: bool = False


def has_chat_template(tokenizer) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def uses_chat_template(tokenizer, setting: Any) -> bool:
    """Resolve ``chat_template``: ``"auto"`` uses the template when the tokenizer has one;
    ``True`` requires one (``ProbeInputError`` otherwise); ``False`` never uses it."""
    if setting == "auto":
        return has_chat_template(tokenizer)
    if setting and not has_chat_template(tokenizer):
        raise ProbeInputError(
            "chat_template=True, but the tokenizer has no chat template; set tokenizer.chat_template or use "
            "chat_template=False"
        )
    return bool(setting)


def chat_messages(prompt: Prompt, system: Optional[str]) -> list[Message]:
    """The conversation for ``prompt``: a string becomes one user message; a list of
    ``{"role", "content"}`` messages is kept. ``system`` is put first unless the list has one."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
    if system is not None and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def check_messages(prompt: Any, what: str) -> list[Message]:
    """``prompt`` as a list of ``{"role": str, "content": str}`` with at least one non-empty user
    message; else ``ProbeInputError``."""
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise ProbeInputError(f"the {what} should be a string or a non-empty list of chat messages")
    for message in prompt:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise ProbeInputError(f"the {what} holds {message!r}, not a {{'role': str, 'content': str}} message")
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        raise ProbeInputError(f"the {what} has no user message with text to score")
    return list(prompt)


def user_text(prompt: Prompt) -> str:
    """The text a result shows as its prompt: the string, or the last user message's content."""
    if isinstance(prompt, str):
        return prompt
    return [m["content"] for m in prompt if m.get("role") == "user"][-1]


def encode_chat(tokenizer, prompt: Prompt, system: Optional[str], start: int, what: str) -> EncodedPrompt:
    """Render ``prompt`` with ``apply_chat_template(..., add_generation_prompt=True)``, tokenize the
    rendered text without special tokens, and find the tokens of every user message's content.

    A token is scored when its characters overlap a user message's content (a token that merges
    a template newline with the first word is scored). Tokenizers without offsets are handled by
    encoding the rendered text up to each content's start and end.

    Raises:
        ProbeInputError: the template fails, or a user's text cannot be mapped back to its own turn
            (see :func:`_content_spans`).
    """
    messages = chat_messages(prompt, system)
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # noqa: BLE001 - jinja raises TemplateError, templates raise their own
        raise ProbeInputError(f"the chat template cannot render the {what}: {one_line(error)}") from None
    spans = _content_spans(tokenizer, rendered, messages, what)
    ids, token_spans = _encode_with_offsets(tokenizer, rendered, spans)
    positions = [i for i, (a, b) in enumerate(token_spans) if any(a < end and b > begin for begin, end in spans)]
    if ids and ids[0] == start:  # the template already starts with s: do not double it
        ids, positions = ids[1:], [k - 1 for k in positions if k > 0]
    if not positions:
        raise ProbeInputError(f"the {what}'s user text gives no tokens after the chat template")
    return EncodedPrompt(start=start, prompt_ids=[int(i) for i in ids], positions=positions, templated=True)


SENTINEL = "PROBATTRUSERTEXT{}X"  # letters and digits only: survives templates that trim or escape


def _content_spans(tokenizer, rendered: str, messages: Sequence[Message], what: str) -> list[tuple[int, int]]:
    """Character spans of the user messages' contents in ``rendered``, each inside its own turn.

    The conversation is rendered a second time with every scored user content replaced by a
    unique sentinel; the text around the sentinels is then the template's own (role markers, the
    system message, earlier turns), and each content must sit in ``rendered`` exactly where its
    sentinel sat. A plain search would instead find the first occurrence of the text anywhere,
    such as inside a default system message that happens to contain it.

    Raises:
        ProbeInputError: the template renders the contents in a way that cannot be mapped back
            (it changes them, or renders the rest differently with other contents).
    """
    scored = [i for i, m in enumerate(messages) if m.get("role") == "user" and m["content"].strip()]
    marked = [dict(m) for m in messages]
    for number, index in enumerate(scored):
        marked[index]["content"] = SENTINEL.format(number)
    try:
        skeleton = tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # noqa: BLE001 - jinja raises TemplateError, templates raise their own
        raise ProbeInputError(f"the chat template cannot render the {what}: {one_line(error)}") from None
    pieces = re.split(r"PROBATTRUSERTEXT(\d+)X", skeleton)
    # pieces = [template, number, template, number, ..., template]
    numbers = [int(n) for n in pieces[1::2]]
    unmappable = ProbeInputError(
        f"the chat template changes the {what}'s user text or renders it more than once, so its tokens cannot be "
        "found; use chat_template=False"
    )
    if numbers != list(range(len(scored))):
        raise unmappable
    spans, cursor = [], 0
    for number, template in enumerate(pieces[0::2]):
        if not rendered.startswith(template, cursor):
            raise unmappable
        cursor += len(template)
        if number == len(scored):
            break
        content = messages[scored[number]]["content"]
        for candidate in (content, content.strip()):
            if rendered.startswith(candidate, cursor):
                break
        else:
            raise unmappable
        spans.append((cursor, cursor + len(candidate)))
        cursor += len(candidate)
    if cursor != len(rendered):
        raise unmappable
    return spans


def _encode_with_offsets(tokenizer, rendered: str, spans) -> tuple[list, list]:
    """``(ids, [(char_start, char_end) per token])``; for tokenizers without offset mappings the
    spans are rebuilt by encoding the text up to each content's boundaries."""
    try:
        encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError):
        pass
    ids = list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    token_spans = [(0, 0)] * len(ids)
    for begin, end in spans:
        first = len(tokenizer(rendered[:begin], add_special_tokens=False)["input_ids"])
        last = len(tokenizer(rendered[:end], add_special_tokens=False)["input_ids"])
        for k in range(first, min(last, len(ids))):
            token_spans[k] = (begin, end)
    return ids, token_spans
