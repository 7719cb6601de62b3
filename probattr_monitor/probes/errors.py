"""Errors raised for bad input: one clear line naming the problem, never a deep torch traceback."""


class ProbeInputError(ValueError):
    """The prompt, response, model, tokenizer or a setting cannot be probed as given."""


class NonFiniteLogitsError(RuntimeError):
    """The model produced NaN or infinite logits (a diverged checkpoint); the result is marked invalid."""
