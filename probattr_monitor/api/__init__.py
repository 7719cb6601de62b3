"""The public entry point: ``probe(model, tokenizer, prompts, responses=None, **settings)``.

Orchestration only: it checks and encodes the inputs (``inputs``), keeps a budgeted run
within its cap (``cost``), shares the work among ranks (``dispatch``), puts the
model in eval mode (and back) and assembles one :class:`ProbeResult` per prompt
(``assembly``). The maths lives in ``probes/``. The callback, the sweep and the CLI all
come through here, so one checkpoint gives one set of numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Union, overload

from ..probes.inputs.tokens import check_causal_attention, vocab_size_of
from ..probes.types.policies import policy_named
from ..probes.types.result import ProbeResult
from ..probes.types.settings import ProbeSettings
from .assembly import generate_responses, probe_one
from .cost import within_cap
from .dispatch import my_share, progress, sharded
from .inputs import Conversation, Prompts, Response, Responses, eval_mode, prepare_inputs
from .positions import sample_positions

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@overload
def probe(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", prompts: str,
          responses: Union[None, str, Sequence[int]] = None, settings: Optional[ProbeSettings] = None,
          distributed: bool = False, **overrides: Any) -> ProbeResult: ...


@overload
def probe(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase",
          prompts: Sequence[Union[str, Conversation]], responses: Optional[Sequence[Response]] = None,
          settings: Optional[ProbeSettings] = None, distributed: bool = False,
          **overrides: Any) -> list[ProbeResult]: ...


def probe(
    model: "PreTrainedModel",
    tokenizer: "PreTrainedTokenizerBase",
    prompts: Prompts,
    responses: Responses = None,
    settings: Optional[ProbeSettings] = None,
    distributed: bool = False,
    **overrides: Any,
) -> Union[ProbeResult, list[ProbeResult]]:
    """Run the probabilistic-attribution probes (docs: the maths guide) on one prompt or a list of prompts.

    For each prompt token ``p_k``: ``AS_k = log P(r | p) - log P(r | p_-k)``, the entropies of
    ``q_prompt = P(p_k | p_-k)`` and ``q_context = P(p_k | p_-k, r)``, both KL divergences between
    them, their top candidates, the AS band and the noise flag; and ``log P(r | p)``.

    Args:
        model: a causal LM (``AutoModelForCausalLM``); put in eval mode while probing, then its
            training mode is restored.
        tokenizer: its tokenizer; it needs a BOS or an EOS token (the start token).
        prompts: one prompt, or a list of prompts.
        responses: ``None`` (each response is the model's greedy continuation), one response for a
            single prompt, or a list with one entry per prompt: a string (tokenized by the maths guide's
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

    Examples:
        >>> from probattr_monitor import probe
        >>> from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2
        >>> tokenizer = byte_bpe_tokenizer(["the cat sat on the mat"], vocab_size=270)
        >>> model = tiny_gpt2(len(tokenizer))
        >>> result = probe(model, tokenizer, "the cat", responses=" sat", progress=False)
        >>> [t.token for t in result.tokens][:2], result.to_dict()["summary"]["noise_tokens"] >= 0
        (['the', ' cat'], True)
    """
    settings = (settings or ProbeSettings()).replace(**overrides)
    single = isinstance(prompts, str)
    encoded = prepare_inputs(model, tokenizer, prompts, responses, settings)
    totals = [len(prompt_in.positions) for prompt_in, _ in encoded]
    encoded = sample_positions(encoded, settings.max_positions, settings.seed)
    prompt_list = [prompts] if single else list(prompts)
    vocab_size = vocab_size_of(model)
    policy = settings.policy_for(vocab_size)
    run_settings = within_cap(settings, policy, vocab_size, encoded)
    if distributed and policy_named(policy).splits == "prompts" and not sharded(model):
        indices = my_share(len(prompt_list))  # whole prompts per rank: the numbers do not depend on the split
    else:
        indices = list(range(len(prompt_list)))

    results: dict[int, ProbeResult] = {}
    total_positions = sum(len(encoded[i][0].positions) for i in indices)
    with eval_mode(model), progress(total_positions, settings.progress) as bar:
        start = encoded[0][0].start
        check_causal_attention(model, start)

        def work() -> dict:
            ready, generated = generate_responses(model, tokenizer, encoded, indices, settings.max_new_tokens)
            for i in indices:
                prompt_in, response_ids = ready[i]
                results[i] = probe_one(model, tokenizer, prompt_list[i], prompt_in, response_ids, run_settings, bar,
                                        distributed and len(indices) == len(prompt_list), positions_total=totals[i],
                                        generated=i in generated)
            return results

        if len(indices) != len(prompt_list):
            from ..distributed import gather_objects, run_collectively

            results = {i: r for part in gather_objects(run_collectively(work)) for i, r in part.items()}
        else:
            work()
    ordered = [results[i] for i in range(len(prompt_list))]
    return ordered[0] if single else ordered


