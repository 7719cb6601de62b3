"""Prompt sets: the paper's seven prompts (package data, the default) and prompt files."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Union

from .probes.errors import ProbeInputError


def paper_prompts() -> list[str]:
    """The seven prompts of "Probabilistic Attribution for Large Language Models", verbatim."""
    text = resources.files("probattr_monitor").joinpath("data/paper_prompts.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def read_prompts_file(path: Union[str, os.PathLike]) -> list[str]:
    """One prompt per line of a UTF-8 text file; blank lines are skipped.

    Raises:
        ProbeInputError: the file is missing, not UTF-8, or holds no prompt.
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
    prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ProbeInputError(f"prompts file {str(path)!r} holds no prompt (one prompt per line)")
    return prompts
