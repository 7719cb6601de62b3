"""The public entry point: ``probe(model, tokenizer, prompts, responses=None, **settings)``.

Orchestration only: it checks the inputs, applies MATH.md's token conventions, puts the model in
eval mode (and back), runs the engine per prompt and assembles :class:`ProbeResult` objects. The
maths lives in ``probes/quantities.py`` and ``probes/noise.py``, the model work in ``probes/engine.py``.
The callback, the sweep and the CLI all come through here, so one checkpoint gives one set of numbers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator, Optional, Sequence, Union, cast

import torch

from .errors import NonFiniteLogitsError, ProbeInputError
from .probes.chat import (
    EncodedPrompt,
    check_messages,
    encode_chat,
    has_chat_template,
    user_text,
    uses_chat_template,
)
from .probes.engine import model_device, score_exact
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

logger = logging.getLogger("probattr_monitor")
PROGRESS_LOG_SECONDS = 10.0  # a run longer than this logs its progress (INFO) this often

# A prompt: a text, or a chat conversation (a list of {"role", "content"} messages).
Prompts = Union[str, Sequence[Union[str, Sequence[dict]]]]
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
    encoded = prepare_inputs(model, tokenizer, prompts, responses, settings)
    prompt_list = [prompts] if single else list(prompts)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    policy = settings.policy_for(vocab_size)
    run_settings = _within_cap(settings, policy, vocab_size, encoded)
    if distributed and policy == "budget" and not _sharded(model):
        indices = _my_share(len(prompt_list))  # whole prompts per rank: the numbers do not depend on the split
    else:
        indices = list(range(len(prompt_list)))

    results: dict[int, ProbeResult] = {}
    total_positions = sum(len(encoded[i][0].positions) for i in indices)
    with eval_mode(model), _progress(total_positions, settings.progress) as bar:
        start = encoded[0][0].start
        check_causal_attention(model, start)

        def work() -> dict:
            for i in indices:
                prompt_in, response_ids = encoded[i]
                results[i] = _probe_one(model, tokenizer, prompt_list[i], prompt_in, response_ids, run_settings, bar,
                                        distributed and len(indices) == len(prompt_list))
            return results

        if len(indices) != len(prompt_list):
            from .distributed import gather_objects, run_collectively

            results = {i: r for part in gather_objects(run_collectively(work)) for i, r in part.items()}
        else:
            work()
    ordered = [results[i] for i in range(len(prompt_list))]
    return ordered[0] if single else ordered


def prepare_inputs(model, tokenizer, prompts: Prompts, responses: Responses, settings: ProbeSettings):
    """Check the model, tokenizer and texts, and encode them by MATH.md's conventions (or through
    the chat template, ``probes.chat``, when ``settings.chat_template`` resolves to it).

    Returns ``[(EncodedPrompt, response_ids or None), ...]``; a response given as token ids is
    checked against the model's vocabulary and kept as it is. Raises :class:`ProbeInputError` for
    anything :func:`probe` would refuse, so callers (the callback at train start) can fail early,
    before any compute.
    """
    single = isinstance(prompts, str)
    prompt_list = [prompts] if single else list(prompts)
    if not prompt_list:
        raise ProbeInputError("no prompts given: pass a prompt string or a non-empty list of prompts")
    response_list = _response_list(responses, len(prompt_list), single)
    check_causal_lm(model)
    start = start_token_id(tokenizer)
    templated = uses_chat_template(tokenizer, settings.chat_template)
    if settings.system is not None and not templated:
        raise ProbeInputError("system= is a system message for the chat template, but "
                              + ("chat_template is off" if has_chat_template(tokenizer) else
                                 "the tokenizer has no chat template") + "; drop it (or use the template)")
    vocab_size = model.get_output_embeddings().weight.shape[0]
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


def check_token_forward_cap(encoded, vocab_size: int, settings: ProbeSettings) -> None:
    """Refuse a ``max_token_forwards`` that the budget policy cannot meet: even its floor of 2
    candidates per position costs ``2 x sum_k (n - k + m - 1)`` token-forwards over the run
    (generated responses counted at ``max_new_tokens``), and a cap below that would be exceeded."""
    if settings.max_token_forwards is None or settings.policy_for(vocab_size) != "budget":
        return
    floor = 2 * run_suffix_tokens(encoded, settings)
    if settings.max_token_forwards < floor:
        raise ProbeInputError(
            f"max_token_forwards={settings.max_token_forwards:,} is below the {floor:,} token-forwards that the "
            "floor of 2 candidates per position costs for these prompts (responses counted at max_new_tokens); "
            f"raise it to at least {floor:,}, or probe fewer or shorter prompts")


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


def suffix_tokens(prompt_in: EncodedPrompt, response_len: int) -> int:
    """Suffix tokens one candidate costs summed over the scored positions: ``sum_k (n - k + m - 1)``."""
    n = len(prompt_in.prompt_ids)
    return sum(n - k + response_len - 1 for k in prompt_in.positions)


def run_suffix_tokens(encoded, settings: ProbeSettings) -> int:
    """:func:`suffix_tokens` summed over a run's prompts, generated responses counted at ``max_new_tokens``."""
    return sum(suffix_tokens(p, settings.max_new_tokens if r is None else len(r)) for p, r in encoded)


def run_cost(encoded, vocab_size: int, settings: ProbeSettings) -> dict:
    """What one :func:`probe` call over ``encoded`` (:func:`prepare_inputs`' output) costs at most:
    ``{"prompts", "positions", "policy", "candidates_per_position", "token_forwards"}``, where
    ``token_forwards = candidates x sum over prompts and scored positions of (n - k + m - 1)``,
    generated responses counted at ``max_new_tokens`` (the generation itself is not counted)."""
    policy = settings.policy_for(vocab_size)
    total = run_suffix_tokens(encoded, settings)
    per_position = vocab_size if policy == "exact" else min(vocab_size, settings.budget_within(vocab_size, total))
    return {"prompts": len(encoded), "positions": sum(len(p.positions) for p, _ in encoded), "policy": policy,
            "candidates_per_position": per_position, "token_forwards": per_position * total}


def _within_cap(settings: ProbeSettings, policy: str, vocab_size: int, encoded) -> ProbeSettings:
    """``settings`` with the candidate budget lowered so that a budgeted run stays within
    ``max_token_forwards`` (generated responses counted at ``max_new_tokens``)."""
    if policy != "budget" or settings.max_token_forwards is None:
        return settings
    total = run_suffix_tokens(encoded, settings)
    budget = settings.budget_within(vocab_size, total)
    return settings if budget == settings.budget_for(vocab_size) else settings.replace(candidate_budget=budget)


def _sharded(model) -> bool:
    """Whether the model's parameters are sharded across ranks (FSDP, DeepSpeed ZeRO-3): every
    forward is then collective, so every rank must run the same forwards."""
    return any(hasattr(p, "ds_id") or type(p).__name__ == "DTensor" for p in model.parameters()) or any(
        "FullyShardedDataParallel" in type(m).__name__ for m in model.modules())


def _my_share(count: int) -> list[int]:
    """This rank's prompts, round robin: ``rank, rank + world, ...``."""
    from .distributed import world

    rank, size = world()
    return list(range(rank, count, size))


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
def eval_mode(model) -> Iterator[None]:
    """Eval mode inside, the caller's training mode restored afterwards (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class _ProgressLog:
    """A tqdm bar (when enabled) and, for a run longer than ``PROGRESS_LOG_SECONDS``, an INFO line
    on the ``probattr_monitor`` logger that often: what a Trainer log shows instead of a bar."""

    def __init__(self, total: int, bar_enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total, self.done = total, 0
        self.began = self.last = time.perf_counter()
        self.bar = tqdm(total=total, desc="probattr", unit="pos", disable=not bar_enabled, leave=False)

    def update(self, count: int = 1) -> None:
        self.done += count
        self.bar.update(count)
        now = time.perf_counter()
        if now - self.last >= PROGRESS_LOG_SECONDS and self.done < self.total:
            self.last = now
            elapsed = now - self.began
            left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
            logger.info("probattr: %d/%d positions scored in %.0f s, about %.0f s left",
                        self.done, self.total, elapsed, left)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def _progress(total: int, enabled: bool):
    progress = _ProgressLog(total, enabled)
    try:
        yield progress
    finally:
        progress.close()


def response_is_empty(tokenizer, response_ids: Sequence[int], stop_ids: set) -> bool:
    """A response with nothing but end-of-sequence (or special) tokens and whitespace."""
    if all(int(i) in stop_ids for i in response_ids):
        return True
    return not tokenizer.decode(list(response_ids), skip_special_tokens=True).strip()


def _probe_one(model, tokenizer, prompt, prompt_in: EncodedPrompt, response_ids, settings, bar,
               distributed) -> ProbeResult:
    """Generate the response if needed, score the prompt's scored positions (:func:`score_prompt`)
    and build the result; non-finite logits give an invalid result."""
    began = time.perf_counter()
    start, prompt_ids, positions = prompt_in.start, prompt_in.prompt_ids, prompt_in.positions
    source = "given" if response_ids is not None else "generated"
    extra: dict[str, Any] = {"response_source": source, "start_token_id": start, "settings": settings.to_dict(),
                             "chat_template": prompt_in.templated,
                             "messages": None if isinstance(prompt, str) else [dict(m) for m in prompt]}
    done = [0]
    policy = settings.policy_for(model.get_output_embeddings().weight.shape[0])
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

    try:
        if distributed and policy == "exact":
            response_ids, raw = _score_exact_sharded(model, generate_then, prompt_in, settings, advance)
            scores = exact_scores(raw, torch.tensor([prompt_ids[k] for k in positions]), settings.top_k)
        elif distributed:  # every rank draws the same samples (same seed): identical work, no gather
            from .distributed import run_collectively

            response_ids, scores = run_collectively(lambda: generate_then(score_here))
        else:
            response_ids, scores = generate_then(score_here)
    except NonFiniteLogitsError as error:
        bar.update(len(positions) - done[0])  # the positions left unscored
        response = tokenizer.decode(response_ids) if response_ids else ""
        return ProbeResult.invalid(user_text(prompt), response, prompt_ids, response_ids or [], str(error), **extra)

    tokens = _token_rows(tokenizer, prompt_ids, positions, scores.quantities, scores.stderrs, settings)
    generations = 0
    if settings.replacement_entropy:
        try:
            generations = _add_stability(model, tokens, start, prompt_ids, response_ids, positions, stop_ids,
                                         settings)
        except NonFiniteLogitsError as error:  # met only while regenerating (the budget policy skips some ids)
            return ProbeResult.invalid(user_text(prompt), tokenizer.decode(response_ids), prompt_ids, response_ids,
                                       str(error), **extra)
    if settings.scopes:
        _add_scopes(model, tokens, start, prompt_ids, response_ids, positions, settings)
    summary = summarize(tokens)
    summary["token_forwards"] = scores.token_forwards
    if settings.replacement_entropy:
        summary["generations"] = generations
    summary["candidate_policy"] = scores.policy
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


def _add_stability(model, tokens, start, prompt_ids, response_ids, positions, stop_ids, settings) -> int:
    """Fill each token's replacement-entropy fields (``probes.replacement``); returns the generations."""
    from .probes.replacement import replacement_entropy

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


def _add_scopes(model, tokens, start, prompt_ids, response_ids, positions, settings) -> None:
    """Fill each token's ``<scope>_scope`` fields for ``settings.scopes`` (``probes.scopes``,
    aggregated over the response; Fisher by its low-rank variant)."""
    from .probes.scopes import jacobian_scopes

    input_ids = torch.tensor([start] + list(prompt_ids) + list(response_ids), device=model_device(model))
    scores = jacobian_scopes(model, input_ids, len(prompt_ids), positions=positions, scopes=settings.scopes,
                             seed=settings.seed)
    for name in settings.scopes:
        for row, token in enumerate(tokens):
            setattr(token, f"{name}_scope", float(scores.aggregate[name][row]))


def _token_rows(tokenizer, prompt_ids, positions, stats: PositionQuantities, stderrs: dict,
                settings) -> list[TokenAttribution]:
    """One :class:`TokenAttribution` per scored prompt position (row ``row`` of the quantities
    belongs to position ``positions[row]``)."""
    decode = _Decoder(tokenizer)
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


def _score_exact_sharded(model, generate_then, prompt_in: EncodedPrompt, settings: ProbeSettings, advance):
    """``(response_ids, CandidateScores)``: exact marginals with each rank scoring its share of the
    vocabulary (agreed on across ranks, so a failure on one raises on all), then gathered."""
    from .distributed import candidate_share, gather_candidates, run_collectively, world

    rank, size = world()
    vocab_size = model.get_output_embeddings().weight.shape[0]
    share = candidate_share(vocab_size, rank, size)
    response_ids, raw = run_collectively(
        lambda: generate_then(
            lambda input_ids: score_exact(model, input_ids, len(prompt_in.prompt_ids), settings, on_position=advance,
                                          candidates=share, positions=prompt_in.positions)
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
