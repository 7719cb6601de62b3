"""Train with ProbAttrCallback under torch.distributed (run by torchrun; used by the tests).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/scripts/ddp_train.py OUT [--fail-rank R]
        [--budget]

``--fail-rank R`` makes the probes raise on rank R only (fault injection), to show that the other
ranks do not hang and training completes. ``--budget`` probes with the budget policy and prints
how many prompts each rank scored (the work is split by prompt). ``--skewed-share`` probes under
``max_overhead=0.5`` with rank 1's meter told of 1000 s more training than rank 0's (ranks measure
their own seconds), and prints each rank's runs and skipped steps: they must be rank 0's plan.
"""

import argparse
import gc
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch.distributed as dist  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from probattr_monitor import ProbAttrCallback, ProbeSettings  # noqa: E402
from tests.callbacks.helpers import PROMPTS, make_trainer  # noqa: E402


class Skew(TrainerCallback):
    """Before the monitor plans each run, tell its meter of 1000 s more training (this rank only)."""

    def __init__(self, monitor):
        self.monitor = monitor

    def on_step_end(self, args, state, control, **kwargs):
        if self.monitor.meter is not None and state.global_step == 1:
            self.monitor.meter.began -= 1000.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail-rank", type=int, default=None)
    parser.add_argument("--budget", action="store_true")
    parser.add_argument("--skewed-share", action="store_true")
    args = parser.parse_args()
    callback = ProbAttrCallback(prompts=PROMPTS,
                                settings=ProbeSettings(max_new_tokens=4,
                                candidate_policy="budget" if args.budget else "auto"),
                                max_overhead=0.5 if args.skewed_share else None, guard=None)
    scored = []
    if args.budget:  # count the prompts this rank scores (the real estimator still runs)
        import probattr_monitor.probes.engines.budgeted as budgeted

        real = budgeted.score_budgeted

        def counting(*a, **k):
            scored.append(1)
            return real(*a, **k)

        budgeted.score_budgeted = counting
    rank = int(os.environ.get("RANK", "0"))
    skew = [Skew(callback)] if args.skewed_share and rank == 1 else []
    trainer = make_trainer(args.out, [*skew, callback], max_steps=4, save_steps=2, ddp_backend="gloo")
    if args.fail_rank is not None and rank == args.fail_rank:
        import probattr_monitor.api.dispatch as dispatch
        import probattr_monitor.probes.engines.scores as scores

        def broken(*a, **k):
            raise RuntimeError(f"injected failure on rank {rank}")

        dispatch.score_exact = scores.score_exact = broken  # the sharded and the single-process paths
    trainer.train()
    world = dist.get_world_size() if dist.is_initialized() else 1
    print(f"rank {rank} of {world} finished: step {trainer.state.global_step}, probe errors {callback.errors}",
          flush=True)
    if args.budget:
        print(f"rank {rank} scored {len(scored)} prompts", flush=True)
    if args.skewed_share:
        runs = [(step, positions) for step, _, positions, _ in callback.meter.runs]
        print(f"rank {rank} runs {runs} skipped {callback.meter.skipped}", flush=True)
    # Leave cleanly: free the DDP-wrapped model before its process group goes (a DDP reducer torn
    # down after destroy_process_group, when main's locals are freed, hung one rank in about one
    # run in ten), then tear the group down on every rank together (gloo threads torn down at
    # interpreter exit can abort).
    del trainer
    gc.collect()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
