"""One prompt's probe, assembled: its response generated when needed, its positions scored
(``probes.engines.scores.score_prompt``), the band and noise flags, the optional stability and scopes,
and the :class:`ProbeResult` with one :class:`TokenAttribution` per scored token."""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import torch

from ..errors import NonFiniteLogitsError
from ..probes.engines.engine import model_device
from ..probes.engines.scores import exact_scores, score_prompt
from ..probes.inputs.chat import (
    EncodedPrompt,
    user_text,
)
from ..probes.inputs.tokens import (
    greedy_continuation,
    stop_token_ids,
    vocab_size_of,
)
from ..probes.maths.noise import attribution_band, is_noise, noise_uncertain
from ..probes.maths.quantities import QUANTITIES, PositionQuantities
from ..probes.types.policies import policy_named
from ..probes.types.result import Candidate, ProbeResult, TokenAttribution, summarize
from .dispatch import score_exact_sharded


def response_is_empty(tokenizer, response_ids: Sequence[int], stop_ids: set) -> bool:
    """A response with nothing but end-of-sequence (or special) tokens and whitespace."""
    if all(int(i) in stop_ids for i in response_ids):
        return True
    return not tokenizer.decode(list(response_ids), skip_special_tokens=True).strip()


def generate_responses(model, tokenizer, encoded: list, indices: Sequence[int],
                       max_new_tokens: int) -> tuple[list, set]:
    """``(encoded, generated)``: the prompts of ``indices`` with no response get their greedy
    continuations, decoded together in left-padded batches
    (:func:`~probattr_monitor.probes.inputs.batched.greedy_continuations`: the ids one prompt at a
    time gives, up to float rounding), and ``generated`` holds their indices. Fewer than two to
    generate, or non-finite logits in the batch: ``encoded`` unchanged, and each prompt generates
    its own in :func:`probe_one` (which reports an invalid one alone)."""
    from ..probes.inputs.batched import greedy_continuations

    missing = [i for i in indices if encoded[i][1] is None]
    if len(missing) < 2:
        return encoded, set()
    rows = [[encoded[i][0].start, *encoded[i][0].prompt_ids] for i in missing]
    try:
        continuations = greedy_continuations(model, rows, max_new_tokens, stop_token_ids(model, tokenizer), rows[0][0])
    except NonFiniteLogitsError:
        return encoded, set()
    done = list(encoded)
    for index, continuation in zip(missing, continuations):
        done[index] = (encoded[index][0], [int(i) for i in continuation.ids])
    return done, set(missing)


def probe_one(model, tokenizer, prompt, prompt_in: EncodedPrompt, response_ids, settings, bar,
               distributed, positions_total: Optional[int] = None, generated: bool = False) -> ProbeResult:
    """Generate the response if needed, score the prompt's scored positions (:func:`score_prompt`)
    and build the result; non-finite logits give an invalid result. ``positions_total``: the
    prompt's scorable positions before ``max_positions`` sampled them (default: those scored);
    the summary holds ``positions_scored`` and ``positions_total``. A prompt with no position to
    score (the sample took none of its) gets ``log P(r | p)`` only, one forward. ``generated``:
    ``response_ids`` were generated already (:func:`generate_responses`), not given."""
    began = time.perf_counter()
    start, prompt_ids, positions = prompt_in.start, prompt_in.prompt_ids, prompt_in.positions
    source = "given" if response_ids is not None and not generated else "generated"
    extra: dict[str, Any] = {"response_source": source, "start_token_id": start, "settings": settings.to_dict(),
                             "chat_template": prompt_in.templated,
                             "messages": None if isinstance(prompt, str) else [dict(m) for m in prompt]}
    done = [0]
    policy = settings.policy_for(vocab_size_of(model))
    stop_ids = stop_token_ids(model, tokenizer)

    def advance() -> None:
        done[0] += 1
        bar.update(1)

    def generate_then(score):
        """The response (given, or generated now) and ``score(input_ids)`` of the whole sequence."""
        response = response_ids
        if response is None:
            response = greedy_continuation(model, [start] + prompt_ids, settings.max_new_tokens, stop_ids)
        input_ids = torch.tensor([start] + prompt_ids + response, device=model_device(model))
        return response, score(input_ids)

    def score_here(input_ids):
        return score_prompt(model, input_ids, len(prompt_ids), settings, policy, on_position=advance,
                            positions=positions)

    counts = {"positions_scored": len(positions),
              "positions_total": len(positions) if positions_total is None else int(positions_total)}
    try:
        if not positions:
            return likelihood_only(model, tokenizer, prompt, prompt_in, generate_then, stop_ids, began,
                                   {**extra, "summary_extra": counts})
        if distributed and policy_named(policy).splits == "vocabulary":
            response_ids, raw = score_exact_sharded(model, generate_then, prompt_in, settings, advance)
            scores = exact_scores(raw, torch.tensor([prompt_ids[k] for k in positions]), settings.top_k)
        elif distributed:  # every rank draws the same samples (same seed): identical work, no gather
            from ..distributed import run_collectively

            response_ids, scores = run_collectively(lambda: generate_then(score_here))
        else:
            response_ids, scores = generate_then(score_here)
    except NonFiniteLogitsError as error:
        bar.update(len(positions) - done[0])  # the positions left unscored
        response = tokenizer.decode(response_ids) if response_ids else ""
        return ProbeResult.invalid(user_text(prompt), response, prompt_ids, response_ids or [], str(error), **extra)

    tokens = token_rows(tokenizer, prompt_ids, positions, scores.quantities, scores.stderrs, settings)
    generations = 0
    if settings.replacement_entropy:
        try:
            generations = add_stability(model, tokens, start, prompt_ids, response_ids, positions, stop_ids,
                                         settings)
        except NonFiniteLogitsError as error:  # met only while regenerating (the budget policy skips some ids)
            return ProbeResult.invalid(user_text(prompt), tokenizer.decode(response_ids), prompt_ids, response_ids,
                                       str(error), **extra)
    if settings.scopes:
        add_scopes(model, tokens, start, prompt_ids, response_ids, positions, settings)
    summary = summarize(tokens)
    summary["token_forwards"] = scores.token_forwards
    if settings.replacement_entropy:
        summary["generations"] = generations
    summary["candidate_policy"] = scores.policy
    summary.update(counts)
    summary["seconds"] = time.perf_counter() - began
    return ProbeResult(
        prompt=user_text(prompt),
        response=tokenizer.decode(response_ids),
        prompt_token_ids=list(prompt_ids),
        response_token_ids=list(response_ids),
        log_p_response=scores.log_p_response,
        tokens=tokens,
        summary=summary,
        response_empty=response_is_empty(tokenizer, response_ids, stop_ids),
        **extra,
    )


def likelihood_only(model, tokenizer, prompt, prompt_in: EncodedPrompt, generate_then, stop_ids, began: float,
                    extra: dict) -> ProbeResult:
    """The result of a prompt none of whose positions is scored: its response (generated when
    not given) and ``log P(r | p)`` from one forward; no token rows (``candidate_policy`` ``"none"``)."""
    from ..probes.engines.likelihood import response_log_likelihoods

    counts = extra.pop("summary_extra")
    response_ids, _ = generate_then(lambda input_ids: None)
    [log_p] = response_log_likelihoods(model, [(prompt_in, list(response_ids))])
    response = tokenizer.decode(response_ids)
    if log_p is None:
        return ProbeResult.invalid(user_text(prompt), response, prompt_in.prompt_ids, list(response_ids),
                                   "the model produced non-finite logits", **extra)
    summary = {**summarize([]), "token_forwards": 1 + len(prompt_in.prompt_ids) + len(response_ids),
               "candidate_policy": "none", **counts, "seconds": time.perf_counter() - began}
    return ProbeResult(prompt=user_text(prompt), response=response, prompt_token_ids=list(prompt_in.prompt_ids),
                       response_token_ids=list(response_ids), log_p_response=log_p, tokens=[], summary=summary,
                       response_empty=response_is_empty(tokenizer, response_ids, stop_ids), **extra)


def add_stability(model, tokens, start, prompt_ids, response_ids, positions, stop_ids, settings) -> int:
    """Fill each token's replacement-entropy fields (``probes.engines.replacement``); returns the generations."""
    from ..probes.engines.replacement import replacement_entropy

    input_ids = torch.tensor([start] + list(prompt_ids) + list(response_ids), device=model_device(model))
    stats = replacement_entropy(model, input_ids, len(prompt_ids), positions, stop_ids,
                                top_p=settings.replacement_top_p, seed=settings.seed,
                                max_candidates=settings.replacement_max_candidates)
    for row, token in enumerate(tokens):
        token.top_p_set_size = stats.set_size[row]
        token.replacement_entropy = stats.entropy_greedy[row]
        token.replacement_entropy_sampled = stats.entropy_sampled[row]
        token.original_response_share = stats.share_greedy[row]
        token.original_response_share_sampled = stats.share_sampled[row]
    return stats.generations


def add_scopes(model, tokens, start, prompt_ids, response_ids, positions, settings) -> None:
    """Fill each token's ``<scope>_scope`` fields for ``settings.scopes`` (``probes.engines.scopes``,
    aggregated over the response; Fisher by its rank-8 variant, a lower bound of the full trace)."""
    from ..probes.engines.scopes import jacobian_scopes

    input_ids = torch.tensor([start] + list(prompt_ids) + list(response_ids), device=model_device(model))
    scores = jacobian_scopes(model, input_ids, len(prompt_ids), positions=positions, scopes=settings.scopes,
                             seed=settings.seed)
    for name in settings.scopes:
        for row, token in enumerate(tokens):
            setattr(token, f"{name}_scope", float(scores.aggregate[name][row]))


def token_rows(tokenizer, prompt_ids, positions, stats: PositionQuantities, stderrs: dict,
                settings) -> list[TokenAttribution]:
    """One :class:`TokenAttribution` per scored prompt position (row ``row`` of the quantities
    belongs to position ``positions[row]``)."""
    decode = Decoder(tokenizer)
    context = settings.noise_entropy == "context"
    tokens = []
    for row, k in enumerate(positions):
        token_id = prompt_ids[k]
        values: dict[str, Any] = {name: float(getattr(stats, name)[row]) for name in QUANTITIES}
        errors: dict[str, Any] = {name: float(stderrs[name][row]) for name in QUANTITIES}
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
                top_prompt=decode.candidates(stats.top_prompt_ids[row], stats.top_prompt_probs[row]),
                top_context=decode.candidates(stats.top_context_ids[row], stats.top_context_probs[row]),
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


class Decoder:
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
        """Top candidates as :class:`Candidate` objects: each id decoded (cached), with its probability."""
        return [Candidate(token_id=int(i), token=self(int(i)), prob=float(p)) for i, p in zip(ids, probs)]
