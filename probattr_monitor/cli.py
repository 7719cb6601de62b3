"""The ``probattr-monitor`` command line.

Exit codes: 0 success, 2 bad usage or input (one line on stderr naming the problem), 1 anything
else (also one line; ``--traceback`` shows the whole trace), 3 a sweep in which some checkpoints
failed (the others completed; see the summary), 130 interrupted.

Longer than 300 lines because each subcommand's parser sits beside its handler, and the whole parser
is what the documentation's CLI reference is generated from.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import InputError, MissingPackageError, ProbeInputError, RunFolderError, one_line, warn_renamed
from .probes.settings import RENAMED_SETTINGS, ProbeSettings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="probattr-monitor",
        description="Probabilistic-attribution probes for causal language models.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on unexpected errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    attribute = commands.add_parser(
        "attribute",
        help="probe prompts with one model and print a table per prompt",
        description="Score every prompt token (AS, entropies, KL, noise) of each prompt.",
    )
    add_model_arguments(attribute)
    attribute.add_argument("--response", metavar="TEXT", help="the response to score (single prompt only); "
                           "default: the model's greedy continuation")
    attribute.add_argument("--json", metavar="OUT", help="write the results as a JSON list, one object per prompt")
    attribute.set_defaults(handler=run_attribute)

    demo = commands.add_parser(
        "demo",
        help="train a tiny GPT-2 on a synthetic grammar with the callback and show the convergence table",
        description="Train a tiny GPT-2 from scratch on sentences of a hidden Markov grammar whose "
                    "probabilities are exact, with ProbAttrCallback attached, and compare the probes with the "
                    "process's own values at every checkpoint.",
    )
    demo.add_argument("--out", default="out/demo", metavar="DIR", help="output folder (default out/demo)")
    demo.add_argument("--max-steps", type=int, default=2000, metavar="N", help="training steps (default 2000)")
    demo.add_argument("--save-steps", type=int, default=100, metavar="N", help="checkpoint every N steps (default 100)")
    demo.add_argument("--report-to", nargs="+", default=["tensorboard"], choices=("tensorboard", "wandb", "none"),
                      help="where the Trainer and the callback log (default tensorboard; wandb runs offline "
                           "unless WANDB_MODE says otherwise)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo_command)

    sweep = commands.add_parser(
        "sweep",
        help="probe every checkpoint of a run folder, log them, and recommend one",
        description="Probe every checkpoint-<step> folder of RUN_DIR in step order (resumable: finished "
                    "checkpoints with the same settings and prompts are reused), write probattr.json per "
                    "checkpoint, sweep_summary.csv/.json and probattr_report.html. Exit code 3: some "
                    "checkpoints failed (recorded in the summary), the others completed.",
    )
    sweep.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a Trainer output folder")
    sweep.add_argument("--checkpoints", nargs="+", metavar="DIR", help="model folders instead of RUN_DIR's")
    sweep.add_argument("--steps", nargs="+", type=int, metavar="STEP", help="only these steps")
    add_checkpoint_probe_arguments(sweep, tensorboard="OUT/runs/probattr-sweep")
    sweep.set_defaults(handler=run_sweep_command)

    watch = commands.add_parser(
        "watch",
        help="probe each checkpoint of a training run as it lands, in a process beside the training",
        description="Watch RUN_DIR while the Trainer writes it and probe each checkpoint-<step> folder once it is "
                    "complete (trainer_state.json written, weights checked, files unchanged for --settle seconds), "
                    "with the sweep's settings, records and outputs: probattr.json per checkpoint, the summaries and "
                    "the report rewritten after each one, logged at the checkpoint's step into the run's own "
                    "TensorBoard folder, W&B run (--wandb-run-id) or MLflow run (--mlflow-run-id). Stops when "
                    "training has finished (a checkpoint at max_steps), at --stop-step, after --idle-timeout, or on "
                    "Ctrl-C / SIGTERM; a restarted watcher picks up where it stopped.",
    )
    watch.add_argument("run_dir", metavar="RUN_DIR", help="the Trainer's output folder (it may not exist yet)")
    add_checkpoint_probe_arguments(watch, tensorboard="the newest folder of RUN_DIR/runs, where the Trainer logs")
    timing = watch.add_argument_group("when to probe and when to stop")
    timing.add_argument("--poll", type=float, default=10.0, metavar="SECONDS",
                        help="list RUN_DIR every SECONDS (default 10)")
    timing.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                        help="a checkpoint's files must be unchanged this long before it is probed (default 2)")
    timing.add_argument("--stop-step", type=int, metavar="STEP", help="stop after the checkpoint at STEP or later")
    timing.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                        help="stop after SECONDS with no new checkpoint (default: wait for the end of training)")
    timing.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to SECONDS for RUN_DIR to appear (default 0: it must exist)")
    runs = watch.add_argument_group("the training run's trackers")
    runs.add_argument("--tensorboard-dir", metavar="DIR", help="TensorBoard folder to log into")
    runs.add_argument("--wandb-run-id", metavar="ID", help="the W&B run to resume and log into (the Trainer's)")
    runs.add_argument("--mlflow-run-id", metavar="ID", help="the MLflow run to log into (the Trainer's)")
    watch.set_defaults(handler=run_watch_command)

    faithfulness = commands.add_parser(
        "faithfulness",
        help="compare AS with Captum's attribution methods on four faithfulness metrics",
        description="Score AS and the comparison methods (occlusion, LIME, Shapley value sampling, input x "
                    "gradient, gradient SHAP; ReAgent needs Inseq) on each prompt's response, then normalised "
                    "AOPC (deletion), AOPC, comprehensiveness, sufficiency and infidelity, with replacement by a "
                    "baseline token as the deletion operator. Needs the faithfulness extra (Captum).",
    )
    add_model_arguments(faithfulness)
    faithfulness.add_argument("--methods", nargs="+", metavar="METHOD", help="methods to compare (default: "
                              "attribution_score occlusion lime shapley input_x_gradient gradient_shap random)")
    faithfulness.add_argument("--samples", type=int, default=50, metavar="N",
                              help="LIME / Shapley / GradientShap samples (default 50)")
    faithfulness.add_argument("--json", metavar="OUT", help="write the full result as JSON")
    faithfulness.add_argument("--plot", metavar="PNG", help="write a plot (needs matplotlib)")
    faithfulness.set_defaults(handler=run_faithfulness_command)

    joint = commands.add_parser(
        "joint",
        help="the set of prompt tokens whose removal matters most together (JoPA or the joint-AS search)",
        description="For each prompt, choose the set of SIZE tokens (or a SPARSITY share of them) whose removal "
                    "changes the response most together: by the greedy search for the largest joint attribution "
                    "score AS_S (--method joint_as: the tokens marginalised together over the vocabulary) or by "
                    "JoPA's gradient-guided search (--method jopa: the tokens replaced by the baseline token). "
                    "Prints the set, the drop of log P(response) when it is removed, and the search's settings.",
    )
    add_model_arguments(joint)
    joint.add_argument("--response", metavar="TEXT", help="the response to attribute (one prompt only; default: "
                       "the model's greedy continuation)")
    joint.add_argument("--method", default="joint_as", choices=("joint_as", "jopa"),
                       help="joint_as (default) or jopa")
    size = joint.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, metavar="K", help="tokens in the set")
    size.add_argument("--sparsity", type=float, metavar="SHARE",
                      help="the set's share of the prompt's tokens (default 0.1: ceil(0.1 n) tokens)")
    joint.add_argument("--json", metavar="OUT", help="write the sets as JSON")
    joint.set_defaults(handler=run_joint_command)

    report = commands.add_parser(
        "report",
        help="write the HTML checkpoint-selection report of a run folder",
        description="Build probattr_report.html (self-contained, no network) from the probattr.json "
                    "records of RUN_DIR's checkpoints, written by a sweep or by the callback.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", metavar="DIR", help="where the sweep wrote its results, if not RUN_DIR")
    add_rule_argument(report)
    report.set_defaults(handler=run_report_command)
    return parser


def add_checkpoint_probe_arguments(parser: argparse.ArgumentParser, tensorboard: str) -> None:
    """The flags of the commands that probe a run's checkpoints (``sweep``, ``watch``): outputs,
    trackers (``tensorboard``: where TensorBoard logs go), loading, the rule, the prompts and the
    fixed responses."""
    parser.add_argument("--out", metavar="DIR", help="write results here (for a read-only run folder)")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer for checkpoints without tokenizer files")
    parser.add_argument("--report-to", nargs="+", default=[], choices=("tensorboard", "wandb", "mlflow", "trackio"),
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
    from .monitoring.decision import DEFAULT_RULE, RULES

    parser.add_argument("--rule", default=DEFAULT_RULE, choices=tuple(RULES),
                        help=f"how to recommend a checkpoint (default {DEFAULT_RULE}, the rule the signal study "
                             "supports; see the README)")


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
    for setting in dataclasses.fields(ProbeSettings):
        meta = setting.metadata
        if setting.type in ("bool", bool):  # a switch that turns the default (True or False) around
            group.add_argument(settings_flag(setting), dest=setting.name, action="store_const",
                               const=not setting.default, default=None, help=meta["help"])
            continue
        kind = _PARSERS.get(str(meta.get("parse")))
        kind = kind or _FIELD_TYPES[str(setting.type).removeprefix("Optional[").removesuffix("]")]
        group.add_argument(settings_flag(setting), dest=setting.name, type=kind, default=None,
                           choices=meta.get("choices"), metavar=meta.get("metavar"), help=meta["help"],
                           nargs=meta.get("nargs"))
    for old, new in RENAMED_SETTINGS.items():  # the old flag, hidden, for one release
        group.add_argument("--" + old.replace("_", "-"), dest=new, action=_RenamedFlag, new_flag=_flag_of(new),
                           choices=_choices_of(new),
                           help=argparse.SUPPRESS)


def _flag_of(name: str) -> str:
    return next(settings_flag(f) for f in dataclasses.fields(ProbeSettings) if f.name == name)


def _choices_of(name: str):
    return next(f.metadata.get("choices") for f in dataclasses.fields(ProbeSettings) if f.name == name)


class _RenamedFlag(argparse.Action):
    """An old flag that still works for one release, after a ``FutureWarning`` naming the new one."""

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
    from .prompts import paper_prompts, read_prompts_file

    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        prompts += read_prompts_file(args.prompts_file)
    return prompts or paper_prompts()


def run_attribute(args: argparse.Namespace) -> int:
    """``probattr-monitor attribute``: load, probe, print tables, optionally write JSON."""
    from .api import probe
    from .display import print_results
    from .loading import load_model_and_tokenizer

    settings = settings_from_args(args)
    prompts = prompts_from_args(args)
    if not settings.progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if args.response is not None and len(prompts) != 1:
        raise ProbeInputError(f"--response needs exactly one prompt, got {len(prompts)}")
    if args.json is not None:
        check_writable(args.json, "--json")  # before any compute, not after it
    model, tokenizer = load_model_and_tokenizer(
        args.model, gguf_file=args.gguf_file, device=args.device, dtype=args.dtype, tokenizer_dir=args.tokenizer,
        base_model=args.base_model,
    )
    responses = None if args.response is None else [args.response]
    results = probe(model, tokenizer, prompts, responses=responses, settings=settings)
    assert isinstance(results, list)  # a list of prompts gives a list of results
    if args.json is not None:  # written first: nothing printing does can lose it
        from .storage import write_json_atomic

        write_json_atomic(args.json, [r.to_dict() for r in results])
    print_results(results)
    return EXIT_OK


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


def run_demo_command(args: argparse.Namespace) -> int:
    """``probattr-monitor demo``: train with the callback and print the convergence table."""
    import os

    from .demo.run import DemoConfig, run_demo

    for name, value in (("--max-steps", args.max_steps), ("--save-steps", args.save_steps)):
        if value < 1:
            raise ProbeInputError(f"{name} should be a positive integer, got {value}")
    report_to = [] if "none" in args.report_to else list(dict.fromkeys(args.report_to))
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_MODE", "offline")
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # the demo's own saves and loads: no bars, no notices
    transformers_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the libraries' notices about their own future
        run_demo(DemoConfig(output_dir=args.out, max_steps=args.max_steps, save_steps=args.save_steps,
                            report_to=report_to or ["none"], seed=args.seed, quiet=True))
    return EXIT_OK


def run_sweep_command(args: argparse.Namespace) -> int:
    """``probattr-monitor sweep``: exit 0, or 3 when some checkpoints failed."""
    from .sweep import SweepConfig, run_sweep

    if args.run_dir is None and not args.checkpoints:
        raise RunFolderError("give RUN_DIR or --checkpoints DIR [DIR ...]")
    settings = settings_from_args(args)
    prompts, responses = sweep_prompt_set(args, settings)
    guard = guard_from_args(args)
    if responses is None:  # the responses (and guard set) the callback froze in this run, if it did
        from .sweep import frozen_by_the_run, resolve_checkpoints

        frozen = frozen_by_the_run(resolve_checkpoints(SweepConfig(run_dir=args.run_dir, checkpoints=args.checkpoints)),
                                   prompts)
        if frozen is not None:
            responses, guard = frozen[0], guard if guard is not None else frozen[1]
            print("probattr-monitor: scoring the responses the callback froze in this run's records (fixed responses; "
                  "pass --response, --responses-file or --reference for others)")
    config = SweepConfig(run_dir=args.run_dir, checkpoints=args.checkpoints, steps=args.steps, out=args.out,
                         tokenizer=args.tokenizer, prompts=prompts, responses=responses, guard=guard,
                         settings=settings.replace(progress=False), report_to=args.report_to, device=args.device,
                         dtype=args.dtype, trust_remote_code=args.trust_remote_code, progress=settings.progress,
                         rule=args.rule, base_model=args.base_model)
    summary = run_sweep(config)
    if summary is not None and summary.failed:
        return EXIT_SOME_FAILED
    return EXIT_OK


def run_watch_command(args: argparse.Namespace) -> int:
    """``probattr-monitor watch``: exit 0 when it stops (finished, stop step, idle, or a signal)."""
    import time

    from rich.console import Console

    from .sweep import SweepConfig
    from .watch import WatchConfig, watch

    for flag, value in (("--poll", args.poll), ("--settle", args.settle), ("--wait", args.wait),
                        ("--idle-timeout", args.idle_timeout)):
        if value is not None and not (value >= 0 and value != float("inf")):
            raise ProbeInputError(f"{flag} should be a finite number of seconds >= 0, got {value}")
    if args.poll <= 0:
        raise ProbeInputError(f"--poll should be > 0 seconds, got {args.poll}")
    settings = settings_from_args(args)
    prompts, responses = sweep_prompt_set(args, settings)
    deadline = time.monotonic() + args.wait
    while not Path(args.run_dir).is_dir() and time.monotonic() < deadline:
        time.sleep(min(args.poll, 1.0))
    if not Path(args.run_dir).is_dir():
        raise RunFolderError(f"run folder not found: {args.run_dir!r} (pass --wait SECONDS to wait for it)")
    config = SweepConfig(run_dir=args.run_dir, out=args.out, tokenizer=args.tokenizer, prompts=prompts,
                         responses=responses, guard=guard_from_args(args), settings=settings.replace(progress=False),
                         report_to=args.report_to, device=args.device, dtype=args.dtype,
                         trust_remote_code=args.trust_remote_code, progress=False, rule=args.rule,
                         base_model=args.base_model)
    console = Console()
    logged = watch(WatchConfig(sweep=config, poll_seconds=args.poll, settle_seconds=args.settle,
                               stop_step=args.stop_step, idle_timeout=args.idle_timeout,
                               tensorboard_dir=args.tensorboard_dir, wandb_run_id=args.wandb_run_id,
                               mlflow_run_id=args.mlflow_run_id), console=console)
    console.print(f"probattr-monitor watch: stopped after logging {logged} checkpoint(s); summaries in "
                  f"{Path(args.out or args.run_dir) / 'sweep_summary.json'}")
    return EXIT_OK


def guard_from_args(args: argparse.Namespace) -> Optional[list]:
    """``--guard-file``'s ``(prompt, response)`` pairs, or ``None``."""
    if args.guard_file is None:
        return None
    from .prompts import read_prompt_response_file

    return read_prompt_response_file(args.guard_file)


def sweep_prompt_set(args: argparse.Namespace, settings: ProbeSettings) -> tuple[list, Optional[list]]:
    """``(prompts, responses)`` of a sweep: ``--responses-file``, or the prompts with ``--response``
    texts, or with the ``--reference`` model's greedy responses frozen as token ids; responses
    ``None`` (each checkpoint's own continuation) when none of the three is given."""
    given = [flag for flag, value in (("--response", args.response), ("--responses-file", args.responses_file),
                                      ("--reference", args.reference)) if value]
    if len(given) > 1:
        raise ProbeInputError(f"give one of --response, --responses-file and --reference, not {' and '.join(given)}")
    if args.responses_file is not None:
        if args.prompt or args.prompts_file:
            raise ProbeInputError("--responses-file holds the prompts too; drop --prompt / --prompts-file")
        from .prompts import read_prompt_response_file

        pairs = read_prompt_response_file(args.responses_file)
        return [p for p, _ in pairs], [r for _, r in pairs]
    prompts = prompts_from_args(args)
    if args.response:
        if len(args.response) != len(prompts):
            raise ProbeInputError(f"--response given {len(args.response)} time(s) for {len(prompts)} prompt(s); "
                                  "give one per prompt")
        return prompts, list(args.response)
    if args.reference:
        from .loading import load_model_and_tokenizer
        from .monitoring.run import reference_responses

        model, tokenizer = load_model_and_tokenizer(args.reference, device=args.device, dtype=args.dtype,
                                                    tokenizer_dir=args.tokenizer, base_model=args.base_model,
                                                    trust_remote_code=args.trust_remote_code)
        return prompts, reference_responses(model, tokenizer, prompts, settings)
    return prompts, None


def run_faithfulness_command(args: argparse.Namespace) -> int:
    """``probattr-monitor faithfulness``: load, compare, print; optionally JSON and a plot."""
    from .faithfulness import evaluate_faithfulness, plot_faithfulness, print_faithfulness
    from .faithfulness.methods import DEFAULT_METHODS
    from .loading import load_model_and_tokenizer

    for path, flag in ((args.json, "--json"), (args.plot, "--plot")):
        if path is not None:
            check_writable(path, flag)
    if args.samples < 1:
        raise ProbeInputError(f"--samples should be a positive integer, got {args.samples}")
    settings = settings_from_args(args)
    model, tokenizer = load_model_and_tokenizer(args.model, gguf_file=args.gguf_file, device=args.device,
                                                dtype=args.dtype, tokenizer_dir=args.tokenizer,
                                                base_model=args.base_model)
    result = evaluate_faithfulness(model, tokenizer, prompts_from_args(args), methods=args.methods or DEFAULT_METHODS,
                                   settings=settings, seed=settings.seed, samples=args.samples)
    if args.json is not None:
        from .storage import write_json_atomic

        write_json_atomic(args.json, result.to_dict())
    if args.plot is not None:
        plot_faithfulness(result, args.plot)
    print_faithfulness(result)
    return EXIT_OK


def run_joint_command(args: argparse.Namespace) -> int:
    """``probattr-monitor joint``: load, choose each prompt's set, print; optionally JSON."""
    from .display import safe
    from .faithfulness import select_tokens
    from .loading import load_model_and_tokenizer

    prompts = prompts_from_args(args)
    if args.response is not None and len(prompts) != 1:
        raise ProbeInputError(f"--response needs exactly one prompt, got {len(prompts)}")
    if args.size is not None and args.size < 1:
        raise ProbeInputError(f"--size should be a positive integer, got {args.size}")
    sparsity = 0.1 if args.size is None and args.sparsity is None else args.sparsity
    if sparsity is not None and not 0 < sparsity <= 1:
        raise ProbeInputError(f"--sparsity should lie in (0, 1], got {sparsity}")
    if args.json is not None:
        check_writable(args.json, "--json")
    settings = settings_from_args(args)
    model, tokenizer = load_model_and_tokenizer(args.model, gguf_file=args.gguf_file, device=args.device,
                                                dtype=args.dtype, tokenizer_dir=args.tokenizer,
                                                base_model=args.base_model)
    rows = select_tokens(model, tokenizer, prompts, None if args.response is None else [args.response],
                         method=args.method, size=args.size, sparsity=sparsity, settings=settings, seed=settings.seed)
    if args.json is not None:
        from .storage import write_json_atomic

        write_json_atomic(args.json, rows)
    for row in rows:
        marked = " ".join(f"[{safe(repr(t))}]" if j in row["removed"] else safe(repr(t))
                          for j, t in enumerate(row["tokens"]))
        search = row["search"]
        joint_score = ""
        if "attribution_score" in search:
            joint_score = (f"; AS_S {search['attribution_score']:+.3f} +- "
                           f"{1.96 * search['attribution_score_stderr']:.3f} ({search['policy']})")
        print(f"{safe(row['prompt'] if isinstance(row['prompt'], str) else str(row['prompt']))[:80]}\n  {marked}\n"
              f"  {row['method']}, {row['size']} of {len(row['tokens'])} token(s): removing them drops log P(response) "
              f"by {row['probability_faithfulness']:.3f} nats{joint_score}; seed {search['seed']}")
    return EXIT_OK


def run_report_command(args: argparse.Namespace) -> int:
    """``probattr-monitor report``."""
    from .sweep import report_run

    path = report_run(args.run_dir, out=args.out, rule=args.rule)
    print(f"wrote {path}")
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    try:
        return args.handler(args)
    except (InputError, MissingPackageError) as error:
        print(f"probattr-monitor: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("probattr-monitor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the CLI's last line of defence: one line, exit 1
        if args.traceback:
            raise
        print(f"probattr-monitor: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE


def entry_point() -> None:
    """Console-script entry: ``sys.exit(main())``."""
    sys.exit(main())
