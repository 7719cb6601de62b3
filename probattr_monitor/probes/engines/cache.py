"""The key-value cache argument, as the installed transformers names it.

transformers 5.24 renamed a causal LM's ``past_key_values=`` argument (and output field) to
``cache`` and warns that the old name goes in 5.40; 5.0 to 5.23 know only ``past_key_values``.
The engine passes whichever the model's ``forward`` declares, so it runs warning-free on both.
"""

from __future__ import annotations

import inspect
from typing import Any

_DECLARES_CACHE: dict[type, bool] = {}


def declares_cache(model: Any) -> bool:
    """Whether ``model.forward`` takes ``cache=`` (transformers >= 5.24), per model class. A PEFT
    model's ``forward`` takes ``**kwargs`` and hands them to its base model: the base decides."""
    if hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
        model = model.get_base_model()
    kind = type(model)
    if kind not in _DECLARES_CACHE:
        try:
            _DECLARES_CACHE[kind] = "cache" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _DECLARES_CACHE[kind] = False
    return _DECLARES_CACHE[kind]


def with_cache(model: Any, cache: Any) -> dict:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``: the keyword ``model`` takes."""
    return {"cache": cache} if declares_cache(model) else {"past_key_values": cache}


def returned_cache(output: Any) -> Any:
    """The cache a forward with ``use_cache=True`` returned (``output.cache``, or the older
    ``output.past_key_values``), ``None`` when there is none."""
    for name in ("cache", "past_key_values"):
        if name in output.keys():
            return output[name]
    return None
