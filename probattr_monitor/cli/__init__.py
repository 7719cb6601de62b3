"""The ``probattr-monitor`` command line.

Exit codes: 0 success, 2 bad usage or input (one line on stderr naming the problem), 1 anything
else (also one line; ``--traceback`` shows the whole trace), 3 a sweep in which some checkpoints
failed (the others completed; see the summary), 130 interrupted.

The parts: ``arguments`` (the shared flags and how they are read), ``commands`` (what each
command does), ``exit_codes``; :func:`build_parser` here is what the documentation's CLI
reference is generated from.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..errors import InputError, MissingPackageError, one_line
from ..monitoring.overhead import DEFAULT_MAX_OVERHEAD
from ..sinks.base import resuming_trackers, tracker_names
from .arguments import (
    add_checkpoint_probe_arguments,
    add_model_arguments,
    add_rule_argument,
    add_settings_arguments,
    settings_flag,
    settings_from_args,
)
from .commands import (
    run_attribute,
    run_demo_command,
    run_faithfulness_command,
    run_joint_command,
    run_report_command,
    run_sweep_command,
    run_watch_command,
)
from .exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "add_settings_arguments",
           "build_parser", "entry_point", "main", "settings_flag", "settings_from_args"]


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
    demo.add_argument("--report-to", nargs="+", default=["tensorboard"], choices=(*tracker_names(), "none"),
                      help="where the Trainer and the callback log (default tensorboard; wandb runs offline "
                           "unless WANDB_MODE says otherwise; MLflow and trackio by their own settings)")
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
                    "TensorBoard folder or the runs of the trackers that resume one (--wandb-run-id, "
                    "--mlflow-run-id). Stops when "
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
    timing.add_argument("--max-overhead", default=str(DEFAULT_MAX_OVERHEAD), metavar="SHARE",
                        help=f"the share of this device's time the probes may take, as the callback's max_overhead "
                             f"(default {DEFAULT_MAX_OVERHEAD:g}): each checkpoint's likelihoods always, the "
                             "attribution scores at every position, at a seeded sample of at least half, or at none, "
                             "as the share has saved since the run's first checkpoint; 'none' scores every position "
                             "of every checkpoint (a device of its own that keeps up)")
    runs = watch.add_argument_group("the training run's trackers")
    runs.add_argument("--tensorboard-dir", metavar="DIR", help="TensorBoard folder to log into")
    for tracker in resuming_trackers():  # each tracker whose sink resumes a run by id declares it (sinks.base)
        runs.add_argument(f"--{tracker}-run-id", metavar="ID", help=f"the {tracker} run to log into (the Trainer's)")
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
