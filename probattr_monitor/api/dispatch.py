"""Where a probe run's work goes: whole prompts per rank (budget policy), a share of the
vocabulary per rank (exact policy, or a sharded model), and the progress shown meanwhile."""

from __future__ import annotations

import contextlib
import logging
import time

from ..probes.engines.engine import score_exact
from ..probes.inputs.chat import (
    EncodedPrompt,
)
from ..probes.inputs.tokens import vocab_size_of
from ..probes.types.settings import ProbeSettings

logger = logging.getLogger("probattr_monitor")
PROGRESS_LOG_SECONDS = 10.0  # a run longer than this logs its progress (INFO) this often


def sharded(model) -> bool:
    """Whether the model's parameters are sharded across ranks (FSDP, DeepSpeed ZeRO-3): every
    forward is then collective, so every rank must run the same forwards."""
    return any(hasattr(p, "ds_id") or type(p).__name__ == "DTensor" for p in model.parameters()) or any(
        "FullyShardedDataParallel" in type(m).__name__ for m in model.modules())


def my_share(count: int) -> list[int]:
    """This rank's prompts, round robin: ``rank, rank + world, ...``."""
    from ..distributed import world

    rank, size = world()
    return list(range(rank, count, size))


class ProgressLog:
    """A tqdm bar (when enabled) and, for a run longer than ``PROGRESS_LOG_SECONDS``, an INFO line
    on the ``probattr_monitor`` logger that often: what a Trainer log shows instead of a bar."""

    def __init__(self, total: int, bar_enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total, self.done = total, 0
        self.began = self.last = time.perf_counter()
        self.bar = tqdm(total=total, desc="probattr", unit="pos", disable=not bar_enabled, leave=False)

    def update(self, count: int = 1) -> None:
        """Count ``count`` more positions scored: the bar advances, and an INFO line every ``PROGRESS_LOG_SECONDS``."""
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
        """Close the bar."""
        self.bar.close()


@contextlib.contextmanager
def progress(total: int, enabled: bool):
    """A :class:`ProgressLog` over ``total`` positions (the bar shown when ``enabled``), closed on exit."""
    progress = ProgressLog(total, enabled)
    try:
        yield progress
    finally:
        progress.close()


def score_exact_sharded(model, generate_then, prompt_in: EncodedPrompt, settings: ProbeSettings, advance):
    """``(response_ids, CandidateScores)``: exact marginals with each rank scoring its share of the
    vocabulary (agreed on across ranks, so a failure on one raises on all), then gathered."""
    from ..distributed import candidate_share, gather_candidates, run_collectively, world

    rank, size = world()
    vocab_size = vocab_size_of(model)
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
