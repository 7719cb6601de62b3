"""The flags the commands share and how they are read: the model, the prompts and responses, the
guard set, the checkpoints to probe, and one flag per ``ProbeSettings`` field (generated from the
fields' metadata, as ``HfArgumentParser`` does; the 0.2 ``--candidates`` kept until 0.5)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Optional

from ..errors import ProbeInputError, warn_renamed
from ..probes.types.settings import RENAMED_SETTINGS, ProbeSettings
from ..sinks.base import tracker_names


def add_checkpoint_probe_arguments(parser: argparse.ArgumentParser, tensorboard: str) -> None:
    """The flags of the commands that probe a run's checkpoints (``sweep``, ``watch``): outputs,
    trackers (``tensorboard``: where TensorBoard logs go), loading, the rule, the prompts and the
    fixed responses."""
    parser.add_argument("--out", metavar="DIR", help="write results here (for a read-only run folder)")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer for checkpoints without tokenizer files")
    parser.add_argument("--report-to", nargs="+", default=[], choices=tracker_names(),
                       help=f"log each checkpoint at its step (TensorBoard: {tensorboard}; MLflow and trackio "
                             "by their own settings: MLFLOW_TRACKING_URI, TRACKIO_DIR)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom modelling code")
    add_base_model_argument(parser)
    add_rule_argument(parser)
    add_prompt_arguments(parser)
    responses = parser.add_argument_group(
        "fixed responses (what the recommendation's regression test compares across checkpoints; without these "
        "flags: the responses the callback froze in the run's records, else for sweep each checkpoint's own "
        "generation, for watch the first checkpoint's greedy responses, frozen)")
    responses.add_argument("--response", action="append", metavar="TEXT",
                           help="the response of each prompt, in order (repeatable: one per prompt)")
    responses.add_argument("--responses-file", metavar="FILE",
                           help='JSONL, one {"prompt": ..., "response": ...} per line (instead of --prompt)')
    responses.add_argument("--guard-file", metavar="FILE",
                           help='JSONL of {"prompt", "response"} pairs scored for log P(r|p) only (one forward '
                                "each): a large guard set for the recommendation's regression test")
    responses.add_argument("--reference", metavar="DIR",
                           help="a model folder or checkpoint (the base of a fine-tune) whose greedy responses are "
                                "frozen as token ids and scored at every checkpoint")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--gguf-file``, ``--tokenizer``, ``--base-model`` and the prompt flags
    (:func:`add_prompt_arguments`): what every command that loads one model and probes prompts takes."""
    parser.add_argument("--model", required=True, metavar="DIR_OR_ID",
                        help="a save_pretrained folder, or a Hub model id (from the local cache when offline)")
    parser.add_argument("--gguf-file", metavar="NAME", help="a GGUF file inside --model")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder when --model has none")
    add_base_model_argument(parser)
    add_prompt_arguments(parser)


def add_base_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--base-model``: the base of PEFT adapter folders whose config names no local one."""
    parser.add_argument("--base-model", metavar="DIR_OR_ID", help="base model of PEFT adapter folders (a "
                        "save_pretrained folder, a .gguf file or a Hub id; default: the adapter config's "
                        "base_model_name_or_path)")


def add_rule_argument(parser: argparse.ArgumentParser) -> None:
    """``--rule``: how the checkpoint is recommended (``monitoring.decision``)."""
    from ..monitoring.decision import DEFAULT_RULE, RULES

    parser.add_argument("--rule", default=DEFAULT_RULE, choices=tuple(RULES),
                        help=f"how to recommend a checkpoint (default {DEFAULT_RULE}, the rule the signal study "
                             "supports; see the docs' \"Choosing a checkpoint\")")


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every command that probes: prompts, settings (see
    :func:`add_settings_arguments`), device and dtype."""
    parser.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable)")
    parser.add_argument("--prompts-file", metavar="FILE", help="UTF-8 file, one prompt per line")
    add_settings_arguments(parser)
    parser.add_argument("--device", default="auto", help="torch device: auto (default: cuda, then mps, then cpu), "
                        "cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16", "float64"),
                        help="model dtype (default: the checkpoint's own, from its config.json; float32 for GGUF); "
                             "probability arithmetic is float32 or wider regardless")


def settings_flag(setting: dataclasses.Field) -> str:
    """The command-line flag of a :class:`ProbeSettings` field: its metadata's ``flag``, else
    ``--`` and its name with dashes (``max_new_tokens`` -> ``--max-new-tokens``)."""
    return setting.metadata.get("flag", "--" + setting.name.replace("_", "-"))


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ProbeSettings` field, generated from the fields' metadata (help,
    choices, metavar) as ``HfArgumentParser`` does for ``TrainingArguments``. Every default is
    ``None`` ("not given"), so :func:`settings_from_args` changes only what was passed."""
    group = parser.add_argument_group("probe settings (ProbeSettings)")
    old_spellings = {new: old for old, new in RENAMED_SETTINGS.items()}
    for setting in dataclasses.fields(ProbeSettings):
        meta = setting.metadata
        if setting.type in ("bool", bool):  # a switch that turns the default (True or False) around
            group.add_argument(settings_flag(setting), dest=setting.name, action="store_const",
                               const=not setting.default, default=None, help=meta["help"])
            continue
        kind = _PARSERS.get(str(meta.get("parse")))
        kind = kind or _FIELD_TYPES[str(setting.type).removeprefix("Optional[").removesuffix("]")]
        choices = meta.get("choices")
        choices = choices() if callable(choices) else choices  # a registry's names, read now (policies)
        options: dict[str, Any] = dict(dest=setting.name, type=kind, default=None, choices=choices,
                       metavar=meta.get("metavar"), nargs=meta.get("nargs"))
        group.add_argument(settings_flag(setting), help=meta["help"], **options)
        if setting.name in old_spellings:  # the 0.2 flag, hidden, until 0.5
            group.add_argument("--" + old_spellings[setting.name].replace("_", "-"), action=_RenamedFlag,
                               new_flag=settings_flag(setting), help=argparse.SUPPRESS, **options)


class _RenamedFlag(argparse.Action):
    """An old flag that still works until 0.5, after a ``FutureWarning`` naming the new one."""

    def __init__(self, *args: Any, new_flag: str, **kwargs: Any) -> None:
        self.new_flag = new_flag
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warn_renamed(str(option_string), self.new_flag, "probattr-monitor", stacklevel=2)
        setattr(namespace, self.dest, values)


_FIELD_TYPES = {"int": int, "float": float, "str": str, "tuple": str}


def parse_chat_template(text: str):
    """``--chat-template``: ``auto``, ``on`` (True) or ``off`` (False)."""
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from auto, on, off)")
    return choices[text]


_PARSERS = {"chat_template": parse_chat_template}


def settings_from_args(args: argparse.Namespace, base: Optional[ProbeSettings] = None) -> ProbeSettings:
    """``base`` (default ``ProbeSettings()``) with the settings flags that were given (validated)."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(ProbeSettings)}
    return (base or ProbeSettings()).with_overrides(**given)


def prompts_from_args(args: argparse.Namespace) -> list[str]:
    """``--prompt`` values, then ``--prompts-file`` lines; the paper's seven when neither is given."""
    from ..prompts import paper_prompts, read_prompts_file

    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        prompts += read_prompts_file(args.prompts_file)
    return prompts or paper_prompts()


def share_from_text(flag: str, text: str) -> Optional[float]:
    """``--max-overhead``'s value: ``"none"`` (any case) is ``None``, else a share in (0, 1]
    (``monitoring.overhead.check_share``); anything else is an ``InputError`` naming ``flag``."""
    from ..monitoring.overhead import check_share

    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ProbeInputError(f"{flag} should be a share in (0, 1] (0.05 is 5%) or 'none', got {text!r}") from None
    return check_share(flag, value)


def check_writable(path: str, flag: str) -> None:
    """Raise :class:`ProbeInputError` unless a file can be written at ``path``: it is not a folder,
    its folder exists, and a file can be created there (tried, then removed if it was not there)."""
    target = Path(path)
    if target.is_dir():
        raise ProbeInputError(f"{flag}: {path!r} is a folder; give the path of a file")
    if not target.resolve().parent.is_dir():
        raise ProbeInputError(f"{flag}: the folder of {path!r} does not exist")
    existed = target.exists()
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ProbeInputError(f"{flag}: cannot write {path!r} ({error.strerror or error})") from None
    if not existed:
        target.unlink(missing_ok=True)


def guard_from_args(args: argparse.Namespace) -> Optional[list]:
    """``--guard-file``'s ``(prompt, response)`` pairs, or ``None``."""
    if args.guard_file is None:
        return None
    from ..prompts import read_prompt_response_file

    return read_prompt_response_file(args.guard_file)


def sweep_prompt_set(args: argparse.Namespace, settings: ProbeSettings) -> tuple[list, Optional[list], Any, Any]:
    """``(prompts, responses, vocabulary, base_guard)`` of a sweep: ``--responses-file``, or the
    prompts with ``--response`` texts, or with the ``--reference`` model's greedy responses frozen as
    token ids (``vocabulary``: the reference tokenizer's
    :class:`~probattr_monitor.probes.inputs.vocabulary.Vocabulary`, which every checkpoint's must
    equal; ``base_guard``: the reference's own answers frozen as the guard,
    :class:`~probattr_monitor.monitoring.base_guard.BaseGuard`, unless ``--guard-file`` gives one;
    both ``None`` otherwise); responses ``None`` (each checkpoint's own continuation) when none of the
    three is given."""
    given = [flag for flag, value in (("--response", args.response), ("--responses-file", args.responses_file),
                                      ("--reference", args.reference)) if value]
    if len(given) > 1:
        raise ProbeInputError(f"give one of --response, --responses-file and --reference, not {' and '.join(given)}")
    if args.responses_file is not None:
        if args.prompt or args.prompts_file:
            raise ProbeInputError("--responses-file holds the prompts too; drop --prompt / --prompts-file")
        from ..prompts import read_prompt_response_file

        pairs = read_prompt_response_file(args.responses_file)
        return [p for p, _ in pairs], [r for _, r in pairs], None, None
    prompts = prompts_from_args(args)
    if args.response:
        if len(args.response) != len(prompts):
            raise ProbeInputError(f"--response given {len(args.response)} time(s) for {len(prompts)} prompt(s); "
                                  "give one per prompt")
        from ..prompts import check_responses

        return prompts, check_responses(args.response, "--response"), None, None
    if args.reference:
        from ..loading import load_model_and_tokenizer
        from ..monitoring.run import reference_responses

        model, tokenizer = load_model_and_tokenizer(args.reference, device=args.device, dtype=args.dtype,
                                                    tokenizer_dir=args.tokenizer, base_model=args.base_model,
                                                    trust_remote_code=args.trust_remote_code)
        from ..monitoring.base_guard import freeze_base_guard
        from ..probes.inputs.vocabulary import Vocabulary

        guard = None if args.guard_file is not None else freeze_base_guard(model, tokenizer, settings)
        return prompts, reference_responses(model, tokenizer, prompts, settings), Vocabulary.of(tokenizer), guard
    return prompts, None, None, None
