"""Prompt sets: the paper's seven prompts (package data, the default) and prompt files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Union

from .errors import ProbeInputError


def paper_prompts() -> list[str]:
    """The seven prompts of "Probabilistic Attribution for Large Language Models", verbatim."""
    text = resources.files("probattr_monitor").joinpath("data/paper_prompts.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def general_prompts() -> list[str]:
    """200 short, everyday questions and requests (``data/general_prompts.txt``, written for this
    project and released with it): what ``guard="base"`` asks an instruct model at train begin."""
    text = resources.files("probattr_monitor").joinpath("data/general_prompts.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def read_prompts_file(path: Union[str, os.PathLike]) -> list:
    """The prompts of a UTF-8 file; blank lines and a leading byte-order mark are skipped.

    A plain file holds one prompt per line. A JSONL file (``.jsonl``, or a first line that opens a
    JSON object) holds one object per line: ``{"prompt": "text"}`` (which may hold newlines) or
    ``{"messages": [{"role": ..., "content": ...}, ...]}`` (a chat conversation; the user's
    messages are scored, see ``probes.inputs.chat``).

    Raises:
        ProbeInputError: the file is missing, not UTF-8, holds no prompt, or a JSONL line is not
            one of those two objects (the line is named).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ProbeInputError(f"prompts file not found: {str(path)!r}") from None
    except IsADirectoryError:
        raise ProbeInputError(f"prompts file {str(path)!r} is a directory") from None
    except UnicodeDecodeError as error:
        raise ProbeInputError(f"prompts file {str(path)!r} is not UTF-8 text (byte {error.start})") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark (Windows editors write one) is not prompt text
    lines = [line for line in text.splitlines() if line.strip()]
    jsonl = path.suffix == ".jsonl" or (bool(lines) and lines[0].lstrip().startswith("{"))
    prompts = _jsonl_prompts(text, path) if jsonl else lines
    if not prompts:
        raise ProbeInputError(f"prompts file {str(path)!r} holds no prompt (one prompt per line)")
    return prompts


def _jsonl_prompts(text: str, path: Path) -> list:
    """``{"prompt": str}`` or ``{"messages": [...]}`` per non-blank line."""
    import json

    from .probes.inputs.chat import check_messages

    prompts: list = []
    for where, entry in _jsonl_lines(text, path, "prompts"):
        if isinstance(entry, dict) and isinstance(entry.get("prompt"), str) and entry["prompt"].strip():
            prompts.append(entry["prompt"])
        elif isinstance(entry, dict) and "messages" in entry:
            prompts.append(check_messages(entry["messages"], f"prompt at {where}"))
        else:
            raise ProbeInputError(
                f"prompts file {where} should be {{\"prompt\": \"text\"}} or {{\"messages\": [...]}}, "
                f"got {json.dumps(entry)[:80]!r}"
            )
    return prompts


def read_prompt_response_file(path: Union[str, os.PathLike]) -> list[tuple]:
    """``[(prompt, response), ...]`` from a JSONL file of ``{"prompt": text, "response": text}``
    objects (or ``{"messages": [...], "response": text}``), one per line: fixed responses, scored
    as given at every checkpoint.

    Raises:
        ProbeInputError: the file is missing or not UTF-8, or a line lacks a non-empty response
            (the line is named).
    """

    from .probes.inputs.chat import check_messages

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except FileNotFoundError:
        raise ProbeInputError(f"responses file not found: {str(path)!r}") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise ProbeInputError(f"responses file {str(path)!r} is not a UTF-8 text file") from None
    pairs: list[tuple] = []
    for where, entry in _jsonl_lines(text, path, "responses"):
        response = entry.get("response") if isinstance(entry, dict) else None
        if not isinstance(response, str) or not is_response(response):
            raise ProbeInputError(f"responses file {where} should hold a non-empty \"response\" text")
        if isinstance(entry.get("prompt"), str) and entry["prompt"].strip():
            pairs.append((entry["prompt"], response))
        elif "messages" in entry:
            pairs.append((check_messages(entry["messages"], f"prompt at {where}"), response))
        else:
            raise ProbeInputError(f"responses file {where} should hold a \"prompt\" text or \"messages\"")
    if not pairs:
        raise ProbeInputError(f"responses file {str(path)!r} holds no prompt")
    prompts = [repr(prompt) for prompt, _ in pairs]
    repeated = sorted({prompt for prompt in prompts if prompts.count(prompt) > 1})
    if repeated:
        from .errors import warn_user

        warn_user(f"responses file {str(path)!r} holds the prompt(s) {', '.join(repeated)} more than once: "
                  "each is probed once per line, so it weighs more in the run's statistics", stacklevel=2)
    return pairs


def is_response(response) -> bool:
    """The one rule for a fixed response, wherever it is given (``--response``,
    ``--responses-file``, the watcher, ``ProbAttrCallback(responses=...)``): a text that is not
    empty or white space alone, or a non-empty list of token ids."""
    if isinstance(response, str):
        return bool(response.strip())
    return isinstance(response, (list, tuple)) and len(response) > 0


def check_responses(responses, what: str) -> list:
    """``responses`` as a list, each checked by :func:`is_response` before anything is loaded.

    Raises:
        ProbeInputError: naming ``what`` and the 1-based index of the first that fails.
    """
    responses = list(responses)
    for index, response in enumerate(responses, start=1):
        if not is_response(response):
            raise ProbeInputError(f"{what} {index} is {response!r}: a fixed response should be a non-empty text")
    return responses


def _jsonl_lines(text: str, path: Path, kind: str):
    """``(where, parsed object)`` for every non-blank line of a JSONL ``text``; a line that is not
    JSON is ``ProbeInputError`` naming the file and line."""
    import json

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{str(path)!r} line {number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as error:
            raise ProbeInputError(f"{kind} file {where} is not JSON ({error.msg})") from None
