"""What each command does, once its arguments are parsed: ``run_<command>(args) -> exit code``;
bad input raises an ``InputError`` that ``cli.main`` turns into one line and exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..errors import ProbeInputError, RunFolderError
from ..sinks.base import resuming_trackers
from .arguments import (
    check_writable,
    guard_from_args,
    prompts_from_args,
    settings_from_args,
    share_from_text,
    sweep_prompt_set,
)
from .exit_codes import EXIT_OK, EXIT_SOME_FAILED


def run_attribute(args: argparse.Namespace) -> int:
    """``probattr-monitor attribute``: load, probe, print tables, optionally write JSON."""
    from ..api import probe
    from ..display import print_results
    from ..loading import load_model_and_tokenizer

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
        from ..storage import write_json_atomic

        write_json_atomic(args.json, [r.to_dict() for r in results])
    print_results(results)
    return EXIT_OK


def run_demo_command(args: argparse.Namespace) -> int:
    """``probattr-monitor demo``: train with the callback and print the convergence table."""
    import os

    from ..demo.run import DemoConfig, run_demo

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
    from ..sweep import SweepConfig, resolve_checkpoints, run_sweep
    from ..sweep.config import check_run_vocabulary

    if args.run_dir is None and not args.checkpoints:
        raise RunFolderError("give RUN_DIR or --checkpoints DIR [DIR ...]")
    settings = settings_from_args(args)
    prompts, responses, vocabulary, base_guard = sweep_prompt_set(args, settings)
    guard = guard_from_args(args) or reference_guard(base_guard)
    if responses is None:  # the responses (and guard set) the callback froze in this run, if it did
        from ..sweep import frozen_by_the_run

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
                         rule=args.rule, base_model=args.base_model, reference=args.reference,
                         reference_vocabulary=vocabulary)
    check_run_vocabulary(config, resolve_checkpoints(config))
    summary = run_sweep(config)
    if summary is not None and summary.failed:
        return EXIT_SOME_FAILED
    return EXIT_OK


def reference_guard(base_guard) -> Optional[list]:
    """The pairs ``--reference`` froze as the guard (``monitoring.base_guard``), said in one line;
    ``None`` when there is no reference or it looks untrained."""
    if base_guard is None:
        return None
    if base_guard.untrained:
        print(f"probattr-monitor: no guard from --reference: it looks untrained (next-token entropy "
              f"{base_guard.entropy_share:.0%} of uniform on its own answers)")
        return None
    print(f"probattr-monitor: guard: {len(base_guard.pairs)} pairs frozen from --reference ({base_guard.source}), "
          "scored for log P(r|p) at every checkpoint")
    return list(base_guard.pairs) or None


def run_watch_command(args: argparse.Namespace) -> int:
    """``probattr-monitor watch``: exit 0 when it stops (finished, stop step, idle, or a signal)."""
    import time

    from rich.console import Console

    from ..sweep import SweepConfig
    from ..watch import WatchConfig, check_timing, watch

    check_timing(args.poll, args.settle, args.idle_timeout, args.stop_step,
                 names=("--poll", "--settle", "--idle-timeout", "--stop-step"))
    if not 0 <= args.wait < float("inf"):
        raise ProbeInputError(f"--wait should be a finite number of seconds >= 0, got {args.wait}")
    max_overhead = share_from_text("--max-overhead", args.max_overhead)
    settings = settings_from_args(args)
    prompts, responses, vocabulary, base_guard = sweep_prompt_set(args, settings)
    deadline = time.monotonic() + args.wait
    while not Path(args.run_dir).is_dir() and time.monotonic() < deadline:
        time.sleep(min(args.poll, 1.0))
    if not Path(args.run_dir).is_dir():
        raise RunFolderError(f"run folder not found: {args.run_dir!r} (pass --wait SECONDS to wait for it)")
    config = SweepConfig(run_dir=args.run_dir, out=args.out, tokenizer=args.tokenizer, prompts=prompts,
                         responses=responses, guard=guard_from_args(args) or reference_guard(base_guard),
                         settings=settings.replace(progress=False),
                         report_to=args.report_to, device=args.device, dtype=args.dtype,
                         trust_remote_code=args.trust_remote_code, progress=False, rule=args.rule,
                         base_model=args.base_model, reference=args.reference, reference_vocabulary=vocabulary)
    console = Console()
    logged = watch(WatchConfig(sweep=config, poll_seconds=args.poll, settle_seconds=args.settle,
                               stop_step=args.stop_step, idle_timeout=args.idle_timeout,
                               tensorboard_dir=args.tensorboard_dir, max_overhead=max_overhead,
                               run_ids={tracker: run_id for tracker in resuming_trackers()
                                        if (run_id := getattr(args, f"{tracker}_run_id", None))}), console=console)
    console.print(f"probattr-monitor watch: stopped after logging {logged} checkpoint(s); summaries in "
                  f"{Path(args.out or args.run_dir) / 'sweep_summary.json'}")
    return EXIT_OK


def run_faithfulness_command(args: argparse.Namespace) -> int:
    """``probattr-monitor faithfulness``: load, compare, print; optionally JSON and a plot."""
    from ..faithfulness import evaluate_faithfulness, plot_faithfulness, print_faithfulness
    from ..faithfulness.methods import DEFAULT_METHODS
    from ..loading import load_model_and_tokenizer

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
        from ..storage import write_json_atomic

        write_json_atomic(args.json, result.to_dict())
    if args.plot is not None:
        plot_faithfulness(result, args.plot)
    print_faithfulness(result)
    return EXIT_OK


def run_joint_command(args: argparse.Namespace) -> int:
    """``probattr-monitor joint``: load, choose each prompt's set, print; optionally JSON."""
    from ..display import safe
    from ..faithfulness import select_tokens
    from ..loading import load_model_and_tokenizer

    prompts = prompts_from_args(args)
    if args.response is not None and len(prompts) != 1:
        raise ProbeInputError(f"--response needs exactly one prompt, got {len(prompts)}")
    if args.size is not None and args.size < 1:
        raise ProbeInputError(f"--size should be a positive integer, got {args.size}")
    sparsity = 0.1 if args.size is None and args.sparsity is None else args.sparsity
    if sparsity is not None and not 0 < sparsity <= 1:
        raise ProbeInputError(f"--sparsity should lie in (0, 1], got {sparsity}")
    ignored = [flag for flag, value in (("--candidate-policy", args.candidate_policy),
                                        ("--max-token-forwards", args.max_token_forwards)) if value is not None]
    if ignored:  # the set search has its own exact-or-estimate choice and no token-forward cap: never ignore them
        raise ProbeInputError(f"joint does not take {' or '.join(ignored)}: the joint scores are exact when the "
                              "vocabulary to the set's size is small, else estimated with error bars; drop "
                              f"{'it' if len(ignored) == 1 else 'them'}")
    if args.json is not None:
        check_writable(args.json, "--json")
    settings = settings_from_args(args)
    model, tokenizer = load_model_and_tokenizer(args.model, gguf_file=args.gguf_file, device=args.device,
                                                dtype=args.dtype, tokenizer_dir=args.tokenizer,
                                                base_model=args.base_model)
    rows = select_tokens(model, tokenizer, prompts, None if args.response is None else [args.response],
                         method=args.method, size=args.size, sparsity=sparsity, settings=settings, seed=settings.seed)
    if args.json is not None:
        from ..storage import write_json_atomic

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
    from ..report import report_run

    path = report_run(args.run_dir, out=args.out, rule=args.rule)
    print(f"wrote {path}")
    return EXIT_OK
