"""The public entry point: ``probe(model, tokenizer, prompts, responses=None, **settings)``.

Orchestration only: it checks the inputs, applies MATH.md's token conventions, puts the model in
eval mode (and back), runs the engine per prompt and assembles :class:`ProbeResult` objects. The
maths lives in ``probes/quantities.py`` and ``probes/noise.py``, the model work in ``probes/engine.py``.
The callback, the sweep and the CLI all come through here, so one checkpoint gives one set of numbers.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator, Optional, Sequence, Union, cast

import torch

from .probes.engine import model_device, score_exact
from .probes.errors import NonFiniteLogitsError, ProbeInputError
from .probes.noise import attribution_band, is_noise, noise_uncertain
from .probes.quantities import QUANTITIES, PositionQuantities
from .probes.result import Candidate, ProbeResult, TokenAttribution, summarize
from .probes.scores import exact_scores, score_prompt
from .probes.settings import ProbeSettings
from .probes.tokens import (
    check_causal_attention,
    check_causal_lm,
    check_fits_context,
    check_token_ids,
    encode_text,
    greedy_continuation,
    start_token_id,
    stop_token_ids,
)

Prompts = Union[str, Sequence[str]]
# A response: None (the model's greedy continuation), a text, or token ids (scored as they are).
Response = Union[None, str, Sequence[int]]
Responses = Union[None, str, Sequence[Response]]


def probe(
    model,
    tokenizer,
    prompts: Prompts,
    responses: Responses = None,
    settings: Optional[ProbeSettings] = None,
    distributed: bool = False,
    **overrides,
) -> Union[ProbeResult, list[ProbeResult]]:
    """Run the probabilistic-attribution probes of MATH.md on one prompt or a list of prompts.

    For each prompt token ``p_k``: ``AS_k = log P(r | p) - log P(r | p_-k)``, the entropies of
    ``q_prompt = P(p_k | p_-k)`` and ``q_context = P(p_k | p_-k, r)``, both KL divergences between
    them, their top candidates, the AS band and the noise flag; and ``log P(r | p)``.

    Args:
        model: a causal LM (``AutoModelForCausalLM``); put in eval mode while probing, then its
            training mode is restored.
        tokenizer: its tokenizer; it needs a BOS or an EOS token (the start token).
        prompts: one prompt, or a list of prompts.
        responses: ``None`` (each response is the model's greedy continuation), one response for a
            single prompt, or a list with one entry per prompt: a string (tokenized by MATH.md's
            convention), a list of token ids (scored exactly as given: what a callback freezes so
            that every checkpoint scores the same ids), or ``None`` (generated).
        settings: a :class:`ProbeSettings`; keyword ``overrides`` (e.g. ``max_new_tokens=10``,
            ``progress=False``) replace its fields.
        distributed: every rank of an initialised ``torch.distributed`` group calls ``probe`` with
            the same arguments; each scores an equal share of the vocabulary and every rank gets
            the full results (see ``probattr_monitor.distributed``). A failure on one rank raises
            on every rank instead of hanging. Leave ``False`` when only one process calls.

    Returns:
        One :class:`ProbeResult` for a single prompt string, else a list of them, in prompt order.
        A prompt whose forward passes give non-finite logits yields a result with ``valid=False``.

    Raises:
        ProbeInputError: empty or untokenizable text, too long for the model's context, a model
            without a causal LM head, a tokenizer with no BOS/EOS, bad settings.

    Example:
        >>> from probattr_monitor import probe
        >>> from probattr_monitor.tiny_models import byte_bpe_tokenizer, tiny_gpt2
        >>> tokenizer = byte_bpe_tokenizer(["the cat sat on the mat"], vocab_size=270)
        >>> model = tiny_gpt2(len(tokenizer))
        >>> result = probe(model, tokenizer, "the cat", responses=" sat", progress=False)
        >>> [t.token for t in result.tokens][:2], result.to_dict()["summary"]["noise_tokens"] >= 0
        (['the', ' cat'], True)
    """
    settings = (settings or ProbeSettings()).replace(**overrides)
    single = isinstance(prompts, str)
    start, encoded = prepare_inputs(model, tokenizer, prompts, responses, settings)
    prompt_list = [prompts] if single else list(prompts)

    results = []
    total_positions = sum(len(prompt_ids) for prompt_ids, _ in encoded)
    with _eval_mode(model), _progress(total_positions, settings.progress) as bar:
        check_causal_attention(model, start)
        for prompt, (prompt_ids, response_ids) in zip(prompt_list, encoded):
            results.append(
                _probe_one(model, tokenizer, start, prompt, prompt_ids, response_ids, settings, bar, distributed)
            )
    return results[0] if single else results


def prepare_inputs(model, tokenizer, prompts: Prompts, responses: Responses, settings: ProbeSettings):
    """Check the model, tokenizer and texts, and encode them by MATH.md's conventions.

    Returns ``(start_token_id, [(prompt_ids, response_ids or None), ...])``; a response given as
    token ids is checked against the model's vocabulary and kept as it is. Raises
    :class:`ProbeInputError` for anything :func:`probe` would refuse, so callers (the callback at
    train start) can fail early, before any compute.
    """
    single = isinstance(prompts, str)
    prompt_list = [prompts] if single else list(prompts)
    if not prompt_list:
        raise ProbeInputError("no prompts given: pass a prompt string or a non-empty list of prompts")
    response_list = _response_list(responses, len(prompt_list), single)
    check_causal_lm(model)
    start = start_token_id(tokenizer)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    encoded = []
    for index, (prompt, response) in enumerate(zip(prompt_list, response_list)):
        prompt_ids = encode_text(tokenizer, prompt, "prompt")
        if response is None or isinstance(response, str):
            response_ids = None if response is None else encode_text(tokenizer, response, "response")
        else:
            response_ids = check_token_ids(response, vocab_size, f"response {index}")
        response_len = settings.max_new_tokens if response_ids is None else len(response_ids)
        what = "response" if response_ids is not None else f"max_new_tokens={settings.max_new_tokens}"
        check_fits_context(
            model,
            1 + len(prompt_ids) + response_len,
            f"prompt {index} ({len(prompt_ids)} tokens) + start token + {what}",
        )
        encoded.append((prompt_ids, response_ids))
    return start, encoded


def _response_list(responses: Responses, count: int, single: bool) -> list[Response]:
    if responses is None:
        return [None] * count
    if isinstance(responses, str):
        if not single:
            raise ProbeInputError(f"got {count} prompts but one response string; pass a list of {count} responses")
        return [responses]
    if single and responses and all(isinstance(r, int) and not isinstance(r, bool) for r in responses):
        return [[int(cast(int, r)) for r in responses]]  # one prompt, its response as token ids
    response_list = list(responses)
    if len(response_list) != count:
        raise ProbeInputError(f"got {count} prompt(s) but {len(response_list)} response(s); pass one per prompt")
    return response_list


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Eval mode inside, the caller's training mode restored afterwards (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="probattr", unit="pos", disable=not enabled, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def _probe_one(model, tokenizer, start, prompt, prompt_ids, response_ids, settings, bar, distributed) -> ProbeResult:
    """Generate the response if needed, score every prompt position (:func:`score_prompt`) and
    build the result; non-finite logits give an invalid result."""
    began = time.perf_counter()
    source = "given" if response_ids is not None else "generated"
    extra = {"response_source": source, "start_token_id": start, "settings": settings.to_dict()}
    done = [0]
    policy = settings.policy_for(model.get_output_embeddings().weight.shape[0])

    def advance() -> None:
        done[0] += 1
        bar.update(1)

    def generate_then(score):
        """The response (given, or generated now) and ``score(input_ids)`` of the whole sequence."""
        response = response_ids
        if response is None:
            response = greedy_continuation(
                model, [start] + prompt_ids, settings.max_new_tokens, stop_token_ids(model, tokenizer)
            )
        input_ids = torch.tensor([start] + prompt_ids + response, device=model_device(model))
        return response, score(input_ids)

    def score_here(input_ids):
        return score_prompt(model, input_ids, len(prompt_ids), settings, policy, on_position=advance)

    try:
        if distributed and policy == "exact":
            response_ids, raw = _score_exact_sharded(model, generate_then, len(prompt_ids), settings, advance)
            scores = exact_scores(raw, torch.tensor(prompt_ids), settings.top_k)
        elif distributed:  # every rank draws the same samples (same seed): identical work, no gather
            from .distributed import run_collectively

            response_ids, scores = run_collectively(lambda: generate_then(score_here))
        else:
            response_ids, scores = generate_then(score_here)
    except NonFiniteLogitsError as error:
        bar.update(len(prompt_ids) - done[0])  # the positions left unscored
        response = tokenizer.decode(response_ids) if response_ids else ""
        return ProbeResult.invalid(prompt, response, prompt_ids, response_ids or [], str(error), **extra)

    tokens = _token_rows(tokenizer, prompt_ids, scores.quantities, scores.stderrs, settings)
    summary = summarize(tokens)
    summary["token_forwards"] = scores.token_forwards
    summary["candidates"] = scores.policy
    summary["seconds"] = time.perf_counter() - began
    return ProbeResult(
        prompt=prompt,
        response=tokenizer.decode(response_ids),
        prompt_token_ids=list(prompt_ids),
        response_token_ids=list(response_ids),
        log_p_response=scores.log_p_response,
        tokens=tokens,
        summary=summary,
        **extra,
    )


def _token_rows(tokenizer, prompt_ids, stats: PositionQuantities, stderrs: dict, settings) -> list[TokenAttribution]:
    """One :class:`TokenAttribution` per prompt token from the per-position quantities."""
    decode = _Decoder(tokenizer)
    context = settings.noise_entropy == "context"
    tokens = []
    for k, token_id in enumerate(prompt_ids):
        values = {name: float(getattr(stats, name)[k]) for name in QUANTITIES}
        errors = {name: float(stderrs[name][k]) for name in QUANTITIES}
        entropy_name = "entropy_context" if context else "entropy_prompt"
        score = values["attribution_score"]
        tokens.append(
            TokenAttribution(
                position=k,
                token_id=token_id,
                token=decode(token_id),
                **values,
                band=attribution_band(score, settings.as_band),
                noise=is_noise(score, values[entropy_name], settings.as_band, settings.entropy_threshold),
                top_prompt=decode.candidates(stats.top_prompt_ids[k], stats.top_prompt_probs[k]),
                top_context=decode.candidates(stats.top_context_ids[k], stats.top_context_probs[k]),
                **{f"{name}_stderr": errors[name] for name in QUANTITIES},
                noise_uncertain=noise_uncertain(
                    score,
                    errors["attribution_score"],
                    values[entropy_name],
                    errors[entropy_name],
                    settings.as_band,
                    settings.entropy_threshold,
                ),
            )
        )
    return tokens


def _score_exact_sharded(model, generate_then, n_prompt: int, settings: ProbeSettings, advance):
    """``(response_ids, CandidateScores)``: exact marginals with each rank scoring its share of the
    vocabulary (agreed on across ranks, so a failure on one raises on all), then gathered."""
    from .distributed import candidate_share, gather_candidates, run_collectively, world

    rank, size = world()
    vocab_size = model.get_output_embeddings().weight.shape[0]
    share = candidate_share(vocab_size, rank, size)
    response_ids, raw = run_collectively(
        lambda: generate_then(
            lambda input_ids: score_exact(model, input_ids, n_prompt, settings, on_position=advance, candidates=share)
        )
    )
    raw.rest_prompt = gather_candidates(raw.rest_prompt, vocab_size)
    raw.response = gather_candidates(raw.response, vocab_size)
    raw.token_forwards *= size  # equal shares (padding included)
    return response_ids, raw


class _Decoder:
    """``tokenizer.decode([id])`` with a cache; ids beyond the tokenizer show as ``<id N>``."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self._cache:
            try:
                text = self._tokenizer.decode([token_id])
            except (IndexError, KeyError, TypeError, OverflowError):
                text = None
            self._cache[token_id] = text if text is not None else f"<id {token_id}>"
        return self._cache[token_id]

    def candidates(self, ids: torch.Tensor, probs: torch.Tensor) -> list[Candidate]:
        return [Candidate(token_id=int(i), token=self(int(i)), prob=float(p)) for i, p in zip(ids, probs)]
