"""The checks and readings of ``ProbAttrCallback``'s arguments (one meaning each; the 0.2
spellings mapped with one ``FutureWarning``), and of the state it saved in a checkpoint."""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from ..errors import InputError, ProbeInputError, UnexpectedArgumentError, warn_renamed
from ..probes.types.settings import RENAMED_SETTINGS, ProbeSettings
from ..prompts import check_responses, paper_prompts, read_prompts_file
from ..sinks import tracker_named, tracker_names
from .integrations import integration_names

RESPONSE_MODES = ("generate", "fixed")


def as_json(prompts) -> list:
    """The prompts as a JSON round trip gives them back (tuples become lists)."""
    return [list(map(dict, p)) if isinstance(p, (list, tuple)) else p for p in prompts]


def unusable_state(attributes: Any, count: int, mode: str, vocab_size: int) -> Optional[str]:
    """Why ``attributes`` (a saved :meth:`ProbAttrCallback.state`'s) cannot be taken back, or ``None``."""
    if not isinstance(attributes, dict):
        return f"its attributes are {type(attributes).__name__}, not an object"
    errors, steps = attributes.get("errors", 0), attributes.get("logged_steps", [])
    if isinstance(errors, bool) or not isinstance(errors, int) or errors < 0:
        return f"errors is {errors!r}, not a count"
    if not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        return f"logged_steps is {steps!r}, not a list of steps"
    base_guard = attributes.get("base_guard")
    if base_guard is not None and not (isinstance(base_guard, list) and all(
            isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], list)
            and pair[1] and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in pair[1])
            for pair in base_guard)):
        return f"base_guard is {base_guard!r:.60}, not (prompt, token ids below {vocab_size}) pairs"
    responses = attributes.get("responses")
    if mode == "generate":
        return None if responses is None else "it holds responses, but this callback generates them"
    if not isinstance(responses, list) or len(responses) != count:
        return f"responses should hold one entry per prompt ({count}), got {responses!r:.60}"
    for index, response in enumerate(responses):
        if response is None or (isinstance(response, str) and response.strip()):
            continue
        if not (isinstance(response, list) and response and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in response)):
            return f"response {index} is {response!r:.60}, not a text or token ids below {vocab_size}"
    return None


def prompt_set(prompts, prompts_file) -> tuple:
    """The prompt set: the paper's prompts, one prompt, a list, or a prompts file (``prompts_file``
    or a ``Path``; a string that names a file is read too, with a ``FutureWarning``, as 0.2 did)."""
    if prompts_file is not None:
        if prompts is not None:
            raise InputError("give prompts or prompts_file, not both")
        return tuple(read_prompts_file(prompts_file))
    if prompts is None:
        return tuple(paper_prompts())
    if isinstance(prompts, os.PathLike):
        return tuple(read_prompts_file(prompts))
    if isinstance(prompts, str):
        if "\n" not in prompts and len(prompts) < 4096 and Path(prompts).is_file():
            warn_renamed(f"prompts={prompts!r} (the path of a file, read as prompts)",
                         "prompts_file=<path> or prompts=Path(<path>)", "ProbAttrCallback", stacklevel=4, once=False)
            return tuple(read_prompts_file(prompts))
        prompts = [prompts]
    prompt_list = list(prompts)
    if not prompt_list:
        raise InputError("prompts should hold at least one prompt, got an empty list")
    from ..probes.inputs.chat import check_messages

    for index, prompt in enumerate(prompt_list):
        if isinstance(prompt, (list, tuple)):
            check_messages(prompt, f"prompt {index}")
        elif not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"prompt {index} should be a non-empty string or a list of chat messages, got {prompt!r}")
    return tuple(list(p) if isinstance(p, tuple) else p for p in prompt_list)


def guard_pairs(guard) -> Optional[list]:
    """The guard set as ``[(prompt, response), ...]`` (a JSONL path is read), or ``None``."""
    if guard is None:
        return None
    if isinstance(guard, (str, os.PathLike)):
        from ..prompts import read_prompt_response_file

        return [tuple(pair) for pair in read_prompt_response_file(guard)]
    pairs = [tuple(pair) for pair in guard]
    for index, pair in enumerate(pairs):
        if len(pair) != 2 or not isinstance(pair[1], (str, list)) or not pair[1]:
            raise InputError(f"guard entry {index} should be a (prompt, response) pair with a response, got {pair!r}")
    return pairs or None


def given_responses(responses, response_mode: str, count: int) -> Optional[list]:
    """The given response texts (one per prompt), or ``None``; checks ``response_mode``."""
    if response_mode not in RESPONSE_MODES:
        raise InputError(f"response_mode should be one of {', '.join(map(repr, RESPONSE_MODES))}, "
                         f"got {response_mode!r}")
    if responses is None:
        return None
    if isinstance(responses, str):
        raise InputError("responses should hold one response text per prompt (a list), got a string; "
                         "response_mode= chooses 'fixed' or 'generate'")
    if response_mode != "fixed":
        raise InputError("given responses are fixed: drop response_mode='generate', or the responses")
    response_list = check_responses(responses, "responses entry")
    if len(response_list) != count:
        raise InputError(f"responses should hold one response per prompt ({count}), got {len(response_list)}")
    return response_list


SETTINGS_KEYWORDS_0_2 = (  # the settings the 0.2 callback took as keywords
    "max_new_tokens", "as_band", "entropy_threshold", "noise_entropy", "candidates", "candidate_budget",
    "memory_budget_mb", "chat_template", "system", "max_token_forwards",
)


def old_keywords(renamed: dict, responses, response_mode: str, probe_on_save, probe_on_evaluate):
    """The 0.2 spellings, each after one ``FutureWarning``: a settings keyword becomes a
    ``settings`` override, ``on_save`` / ``on_evaluate`` the ``probe_on_*`` flags, and
    ``responses="fixed"`` / ``"generate"`` the ``response_mode``. Unknown names raise
    ``UnexpectedArgumentError`` (a ``TypeError``)."""
    unknown = sorted(set(renamed) - {*SETTINGS_KEYWORDS_0_2, "on_save", "on_evaluate"})
    if unknown:
        raise UnexpectedArgumentError(
            f"ProbAttrCallback got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    overrides = {}
    for name in SETTINGS_KEYWORDS_0_2:
        if name in renamed:
            field_name = RENAMED_SETTINGS.get(name, name)
            warn_renamed(f"{name}=", f"settings=ProbeSettings({field_name}=...)", "ProbAttrCallback", stacklevel=4)
            overrides[field_name] = renamed[name]
    if "on_save" in renamed:
        warn_renamed("on_save=", "probe_on_save=", "ProbAttrCallback", stacklevel=4)
        probe_on_save = renamed["on_save"]
    if "on_evaluate" in renamed:
        warn_renamed("on_evaluate=", "probe_on_evaluate=", "ProbAttrCallback", stacklevel=4)
        probe_on_evaluate = renamed["on_evaluate"]
    if isinstance(responses, str) and responses in RESPONSE_MODES:
        warn_renamed(f"responses={responses!r}", f"response_mode={responses!r}", "ProbAttrCallback", stacklevel=4)
        responses, response_mode = None, responses
    return responses, response_mode, overrides, probe_on_save, probe_on_evaluate


Init = TypeVar("Init", bound=Callable[..., None])


def accepts_0_2_keywords(init: Init) -> Init:
    """``ProbAttrCallback.__init__`` that also takes the 0.2 spellings (:func:`old_keywords`), each
    after one ``FutureWarning``, while its signature (what ``inspect``, IDEs and type checkers see)
    holds only the current arguments: a misspelt keyword is a type checker's error, and at run
    time an ``UnexpectedArgumentError`` (a ``TypeError``), as without the 0.2 names."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def with_old_keywords(*args: Any, **kwargs: Any) -> None:
        old = {name: kwargs.pop(name) for name in list(kwargs) if name not in signature.parameters}
        bound = signature.bind_partial(*args, **kwargs)
        given = {name: bound.arguments.get(name, signature.parameters[name].default) for name in
                 ("responses", "response_mode", "probe_on_save", "probe_on_evaluate", "settings")}
        responses, response_mode, overrides, probe_on_save, probe_on_evaluate = old_keywords(
            old, given["responses"], given["response_mode"], given["probe_on_save"], given["probe_on_evaluate"])
        bound.arguments.update(responses=responses, response_mode=response_mode, probe_on_save=probe_on_save,
                               probe_on_evaluate=probe_on_evaluate)
        if overrides:
            base = settings_from(given["settings"])
            conflicting_overrides(given["settings"], base, overrides)
            bound.arguments["settings"] = base.with_overrides(**overrides)
        init(*bound.args, **bound.kwargs)

    return with_old_keywords  # type: ignore[return-value]


def settings_from(settings: Any) -> ProbeSettings:
    """``settings=`` read: a :class:`ProbeSettings`, its ``to_dict()``, or ``None`` (the defaults)."""
    base = ProbeSettings.from_dict(settings) if isinstance(settings, dict) else (settings or ProbeSettings())
    if not isinstance(base, ProbeSettings):
        raise InputError(f"settings should be a ProbeSettings (or its to_dict()), got {type(settings).__name__}")
    return base


def conflicting_overrides(settings, base, overrides: dict) -> None:
    """Refuse a 0.2 settings keyword that contradicts ``settings=``: a field the given settings set
    to something other than its default, and the keyword to something else again.

    Raises:
        ProbeInputError: naming the field and both values.
    """
    if settings is None:
        return
    default = ProbeSettings()
    for name, value in overrides.items():
        given = getattr(base, name)
        if given != getattr(default, name) and given != value:
            raise ProbeInputError(f"ProbAttrCallback got {name}={value!r} and settings with {name}={given!r}; "
                                  f"set it once, in settings=ProbeSettings({name}=...)")


def report_targets(report_to) -> tuple[str, ...]:
    """``report_to`` checked and normalised: ``()`` for ``"none"``, ``("all",)``, ``("auto",)`` or the named
    targets (each sink's package must be installed); an unknown name raises ``InputError`` (a ``ValueError``)."""
    trackers = tracker_names()
    forwarded = tuple(name for name in sorted(set(integration_names().values())) if name not in trackers)
    valid = ("auto", "none", "all", *trackers, *forwarded)
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    for name in names:
        if name not in valid:
            raise InputError(f"report_to should be one or a list of {', '.join(map(repr, valid))}, got {name!r}")
    if "none" in names:
        return ()
    if "all" in names:
        return ("all",)
    if names == ["auto"]:
        return ("auto",)
    if "auto" in names:
        raise InputError(f"report_to 'auto' cannot be combined with other targets, got {names!r}")
    for name in names:
        if name in trackers:
            tracker_named(name).require()
    return tuple(dict.fromkeys(names))
