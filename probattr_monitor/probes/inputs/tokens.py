"""Token conventions of the maths guide, checks on the model and tokenizer, and the greedy continuation.

- start token: ``tokenizer.bos_token_id``, or ``eos_token_id`` when there is no BOS;
- prompt / response ids: ``tokenizer(text, add_special_tokens=False)``;
- the sequence is ``[start] + prompt + response``;
- no response given: the model's greedy continuation (plain forward passes, never ``generate``),
  stopping early at EOS, which then belongs to the response.
"""

from __future__ import annotations

from typing import Optional

import torch

from ...errors import NonFiniteLogitsError, ProbeInputError, one_line
from ..engines.cache import returned_cache, with_cache
from ..engines.engine import model_device

_CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def start_token_id(tokenizer) -> int:
    """``bos_token_id``, else ``eos_token_id``; a tokenizer with neither cannot be probed."""
    for token_id in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if token_id is not None:
            return int(token_id)
    raise ProbeInputError(
        "the tokenizer has neither a BOS nor an EOS token, so there is no start token to condition on; "
        "set tokenizer.bos_token (or eos_token)"
    )


def encode_text(tokenizer, text, what: str) -> list[int]:
    """``tokenizer(text, add_special_tokens=False)`` ids; empty or untokenizable text is an error.

    Args:
        what: ``"prompt"`` or ``"response"``, for the error message.
    """
    if not isinstance(text, str):
        raise ProbeInputError(f"the {what} should be a string, got {type(text).__name__}: {text!r}")
    if not text.strip():
        raise ProbeInputError(f"the {what} is empty: {text!r}")
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    except Exception as error:  # noqa: BLE001 - tokenizers raise bare Exception (WordLevel), TypeError (surrogates)
        raise ProbeInputError(f"the tokenizer cannot encode the {what} {text!r}: {one_line(error)}") from None
    if len(ids) == 0:
        raise ProbeInputError(f"the {what} {text!r} tokenizes to no tokens")
    return [int(i) for i in ids]


def check_token_ids(ids, vocab_size: int, what: str) -> list[int]:
    """``ids`` as a list of ints, each in ``0..vocab_size-1``, at least one; else ``ProbeInputError``."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise ProbeInputError(f"the {what} should be a string or a list of token ids, got {type(ids).__name__}")
    ids = list(ids)
    if not ids:
        raise ProbeInputError(f"the {what} holds no token ids")
    for token_id in ids:
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < vocab_size:
            raise ProbeInputError(f"the {what} holds {token_id!r}, not a token id of this model (0..{vocab_size - 1})")
    return ids


def vocab_size_of(model) -> int:
    """The number of token ids the model scores: the rows of its output embedding (the LM head),
    which may exceed ``len(tokenizer)`` (padded vocabularies). The one place this is read."""
    return int(model.get_output_embeddings().weight.shape[0])


def context_length(model) -> Optional[int]:
    """The longest sequence the model accepts, from its config; ``None`` when it does not say."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in _CONTEXT_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_causal_lm(model) -> None:
    """Refuse anything that is not a causal LM with an output head (e.g. ``GPT2Model``, BERT)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = type(model).__name__
    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    has_head = hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None
    is_causal = name in causal_names or name.endswith(("ForCausalLM", "LMHeadModel"))
    if not (has_head and is_causal):
        raise ProbeInputError(
            f"{name} is not a causal language model with an LM head; load it with AutoModelForCausalLM"
        )


@torch.inference_mode()
def check_causal_attention(model, start_id: int) -> None:
    """Refuse a model whose logits at position t depend on later tokens (e.g. BERT without
    ``is_decoder``): the maths guide's factorisation needs a causal model. Two forwards of 6 tokens that
    differ in their last four; the first two positions' logits of a causal model agree to float
    rounding (the same arithmetic on the same rows), a bidirectional one's move with the suffix.
    Non-finite logits are compared too (NaN equals NaN), so a head with NaN entries is checked
    rather than waved through."""
    device = model_device(model)
    vocab_size = vocab_size_of(model)
    later = [vocab_size - 1 - k % vocab_size for k in range(4)]
    first = model(input_ids=torch.tensor([[start_id, 0, 0, 0, 0, 0]], device=device)).logits[0, :2].float()
    second = model(input_ids=torch.tensor([[start_id, 0, *later]], device=device)).logits[0, :2].float()
    finite = torch.isfinite(first)
    scale = float(first[finite].abs().max()) if finite.any() else 1.0
    # equal_nan: a head with non-finite entries (a freshly initialised, "corrupted" one) is still checked
    if not torch.allclose(first, second, rtol=0.0, atol=1e-5 * max(1.0, scale), equal_nan=True):
        raise ProbeInputError(
            f"{type(model).__name__} is not a causal language model: its predictions change with later tokens"
        )


def check_fits_context(model, n_tokens: int, detail: str) -> None:
    """Raise if ``n_tokens`` exceeds the model's context length."""
    limit = context_length(model)
    if limit is not None and n_tokens > limit:
        raise ProbeInputError(f"{detail} needs {n_tokens} positions, more than the model's context of {limit}")


def stop_token_ids(model, tokenizer) -> set[int]:
    """EOS ids from the tokenizer and the model's generation config (which may hold a list)."""
    ids = set()
    candidates = [getattr(tokenizer, "eos_token_id", None)]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        candidates.append(getattr(generation_config, "eos_token_id", None))
    for value in candidates:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


@torch.inference_mode()
def greedy_continuation(model, input_ids: list[int], max_new_tokens: int, stop_ids: set[int]) -> list[int]:
    """The argmax continuation of ``input_ids``: up to ``max_new_tokens`` ids, EOS included if hit.

    One forward pass over the input, then one token at a time on the KV cache. Raises
    :class:`NonFiniteLogitsError` on NaN/inf logits.
    """
    device = model_device(model)
    tokens = torch.tensor([input_ids], device=device)  # (1, L)
    past = None
    generated: list[int] = []
    for _ in range(max_new_tokens):
        output = model(input_ids=tokens, **with_cache(model, past), use_cache=True)
        last = output.logits[0, -1].float()  # (V,)
        if not torch.isfinite(last).all():
            raise NonFiniteLogitsError("the model produced non-finite logits while generating the response")
        next_id = int(last.argmax())
        generated.append(next_id)
        if next_id in stop_ids:
            break
        past = returned_cache(output)
        tokens = torch.tensor([[next_id]], device=device)
    return generated
