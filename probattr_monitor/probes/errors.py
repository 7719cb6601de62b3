"""Errors raised for bad input: one clear line naming the problem, never a deep torch traceback."""


class ProbeInputError(ValueError):
    """The prompt, response, model, tokenizer or a setting cannot be probed as given."""


class NonFiniteLogitsError(RuntimeError):
    """The model produced NaN or infinite logits (a diverged checkpoint); the result is marked invalid."""


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (stripped), or ``""``."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def one_line(error: BaseException) -> str:
    """``"Type: first line of the message"`` (just ``"Type"`` when the message is empty): how every
    error report of the monitor shows an exception (CLI, sweep rows, warnings), so a multi-line
    message never spills into a table or a log."""
    message = first_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
