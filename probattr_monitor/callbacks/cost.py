"""What a probe run costs, said in the ``probattr_monitor`` log at the Trainer's log level:
before the first run (token-forwards) and after it (seconds; a warning when slow)."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import warn_user
from ..probes.inputs.tokens import vocab_size_of
from ..probes.types.policies import policy_named

SLOW_RUN_SECONDS = 60.0  # a probe run slower than this is a warning with what to turn down
logger = logging.getLogger("probattr_monitor")


def follow_trainer_log_level(args) -> None:
    """Give the ``probattr_monitor`` logger the Trainer's process log level and, when nothing
    would print it, a stderr handler (as transformers does for its own logger)."""
    try:
        level = args.get_process_log_level()
    except Exception:  # noqa: BLE001 - TrainingArguments-like objects without it keep the default
        return
    logger.setLevel(level)
    if not logger.hasHandlers():
        logger.addHandler(logging.StreamHandler())


def log_cost(args, model, encoded, settings) -> dict:
    """Log what one probe run will cost (INFO), at the Trainer's log level; returns it
    (``api.cost.run_cost``)."""
    from ..api.cost import run_cost

    follow_trainer_log_level(args)
    vocab_size = vocab_size_of(model)
    cost = run_cost(encoded, vocab_size, settings)
    templated = sum(1 for prompt_in, _ in encoded if prompt_in.templated)
    logger.info(
        "probattr: one probe run scores %d positions of %d prompts%s, %s policy with %d candidates per position: "
        "at most %s token-forwards; its time is logged after the first run",
        cost["positions"], cost["prompts"],
        f" ({templated} through the chat template)" if templated else "", cost["policy"],
        cost["candidates_per_position"], f"{cost['token_forwards']:,}")
    if settings.max_token_forwards is not None and not policy_named(cost["policy"]).capped:
        warn_user("probattr-monitor: max_token_forwards caps the budget policy only; this vocabulary is "
                      "probed exactly (candidate_policy='exact' or a small vocabulary)", stacklevel=3)
    return cost


def log_time(run, warn: bool = True) -> None:
    """After the first run: how long it took, and (``warn``: without ``max_overhead``, which fits
    the runs to the training itself) a warning when it is slow."""
    forwards = sum(r.summary.get("token_forwards") or 0 for r in run.results)
    rate = forwards / run.seconds if run.seconds > 0 else float("nan")
    logger.info("probattr: the probe run at step %d took %.1f s (%s token-forwards, %.0f per second)",
                run.step, run.seconds, f"{forwards:,}", rate)
    if warn and run.seconds > SLOW_RUN_SECONDS:
        warn_user(f"probattr-monitor: one probe run takes {run.seconds:.0f} s, at every save; lower it with "
                      "max_token_forwards=N (budget policy), a smaller candidate_budget, max_new_tokens or fewer "
                      "prompts", stacklevel=3)


LENGTH_SAMPLE = 16  # dataset items read to estimate the tokens of a training step


def tokens_per_step(args, train_dataloader) -> float | None:
    """Tokens one optimizer step trains on, estimated before the first step:
    ``per_device_train_batch_size x gradient_accumulation_steps x`` the mean ``input_ids``
    length of the dataset's first :data:`LENGTH_SAMPLE` items (read by index: no sampler or RNG
    is touched, so training is unchanged). ``None`` when the dataset has no such items."""
    dataset: Any = getattr(train_dataloader, "dataset", None)
    try:
        lengths = [len(dataset[index]["input_ids"]) for index in range(min(LENGTH_SAMPLE, len(dataset)))]
    except Exception:  # noqa: BLE001 - iterable datasets, other layouts: no estimate
        return None
    if not lengths:
        return None
    batch = getattr(args, "per_device_train_batch_size", 1) * getattr(args, "gradient_accumulation_steps", 1)
    return float(batch * sum(lengths) / len(lengths))
