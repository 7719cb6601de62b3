"""A monitor that costs a stated share of the run it watches: the meter and the plan of each probe run.

The share is of wall time: after ``T`` seconds of training (probe time excluded) the probes may
have taken ``share x T`` seconds in all, split in two accounts (:data:`LIKELIHOOD_SHARE`): one
pays for the cheap part of each run, the other saves up for the attribution scores, which cost
hundreds of times more per prompt and would otherwise never find the seconds. Before each run the
:class:`OverheadMeter` says how many seconds each account has (unspent seconds carry over; an
overrun is repaid by later runs), and :func:`plan_run` fits the run into them:

0. A run whose cheap part does not fit its account, and whose attribution account pays for no
   position either, is skipped (:func:`skips_run`): that checkpoint gets no probes, and the
   seconds carry over. The first run of a training session is never skipped (it freezes the
   responses), nor one whose evaluation needs the probes' metric, nor one whose cheap part takes
   under :data:`NEVER_SKIP_SECONDS` (a second per checkpoint goes unnoticed whatever the share;
   a small model's probes are never skipped).
1. ``log P(r | p)`` of every prompt runs always, and the guard on as many of its pairs as half the
   likelihood account pays for (:func:`guard_pairs_that_fit`: at least 8, a seeded order, never
   fewer than before, so each checkpoint is compared on pairs the earlier ones hold).
2. The attribution scores get their account, as token-forwards at the measured rate: every position at
   the settings' candidates when that fits; else a seeded sample of at least half the positions
   (:func:`smallest_sample`) at the same candidates
   (``ProbeSettings.max_positions``: the same positions at every checkpoint, so consecutive
   checkpoints are compared on the same tokens); else no position at this checkpoint, and the
   seconds carry over to the next. The statistics of a sampled run carry the sampling's standard
   errors (``monitoring.sampling``).

Before any of that, at train begin, freezing the base guard (``guard="base"``) may take
:data:`FREEZE_SHARE` of ``share x`` the run's expected training seconds (:func:`freeze_seconds`);
what it takes counts against the share like a probe run.

Why positions and never candidates: at a fixed cost, fewer candidates per position would buy more
positions, and the spread between positions (nats) is far larger than the budget policy's error at
one position (a median AS error on SmolLM2 of 0.007 nats at 768 candidates, 0.031 at 256); but the
per-token intervals stop holding when the budget shrinks. Replayed over 100 seeds on stored exact
SmolLM2 positions (``benchmarks/simulate_estimator.py --vectors --budget B``) they hold the exact
value in 98.4% at 768 candidates, 87.5% at 256 and 70.5% at 64 (where AS is also biased low, by
0.04 nats on average). A constrained run must not claim more precision than it has, so the plan
keeps the settings' candidates and cuts positions only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..errors import InputError
from ..probes.types.policies import policy_named
from ..probes.types.settings import ProbeSettings

LIKELIHOOD_SHARE = 0.5  # of the share, the account of the cheap part (log P, guard, train begin); the rest: AS
GUARD_SHARE = 0.5  # of the likelihood account's seconds, the most one run's guard pairs may use
FREEZE_SHARE = 0.25  # of the likelihood account the expected training earns: the most the base guard's freezing takes
OVER_SHARE = 2.0  # a run after which the overhead is above this many times the share is said once
TRAIN_STEP_FORWARDS = 3.0  # a training step costs about 3 forwards of its tokens (forward + backward)
NEVER_SKIP_SECONDS = 1.0  # a run whose cheap part takes less is never skipped
MIN_GUARD_PAIRS = 8  # a guard is scored on at least this many pairs (or all it has)
DEFAULT_MAX_OVERHEAD = 0.05  # ProbAttrCallback(max_overhead=...), WatchConfig: probe seconds per training second
OVERHEAD_TAG = "probattr/overhead"  # the trackers' scalar of :meth:`OverheadMeter.overhead`
MIN_POSITIONS = 32  # a sampled run scores at least this many positions, or none: below, 95% intervals
# of a skewed statistic's mean under-cover (exponential population: 88% at 16, 92% at 32; tests/monitoring)
MIN_SAMPLED_SHARE = 0.5  # ... and at least this share of the run's positions: AS and KL are so heavy-tailed
# over real positions that smaller samples' intervals under-cover (chosen and reported on halves of the
# paper's prompts on SmolLM2: benchmarks/bench_sampled_intervals.py; monitoring.sampling)


def check_share(name: str, value) -> Optional[float]:
    """``value`` as a share in (0, 1], or ``None``; anything else is an ``InputError`` naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InputError(f"{name} should be a share of the run's time in (0, 1] (0.05 is 5%) or None, got {value!r}")
    return float(value)


@dataclass
class OverheadMeter:
    """Probe seconds against training seconds since :meth:`start`.

    Attributes:
        share: the probes' share of training time.
        began: ``time.perf_counter()`` at the start (train begin).
        probe_seconds: seconds spent in probe runs so far (everything the monitor did, train begin included).
        scoring_seconds: of ``probe_seconds``, those spent scoring attribution (the second account).
        rate: token-forwards per second of the attribution scoring, measured (``None`` before any).
        fixed_seconds: seconds of the latest run outside attribution scoring (likelihoods, guard).
        guard_pair_seconds: seconds to score one guard pair, measured.
        runs: ``[(step, probe seconds, positions scored, positions total)]`` of each run.
        skipped: the steps whose run was skipped (:func:`skips_run`).
        shape: ``(vocabulary size, scorable positions, suffix tokens per candidate)`` of the
            latest planned run (``monitoring.fitting``), what :func:`plan_run` needs besides time.
        concurrent: the probes run beside training, in another process (the watcher), so training
            goes on while they run: its seconds are the wall seconds since ``began``, the probes'
            not taken out, and the share is of the device's wall time.
    """

    share: float
    began: float = field(default_factory=time.perf_counter)
    probe_seconds: float = 0.0
    scoring_seconds: float = 0.0
    rate: Optional[float] = None
    fixed_seconds: Optional[float] = None
    guard_pair_seconds: Optional[float] = None
    runs: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    shape: Optional[tuple] = None
    concurrent: bool = False

    def training_seconds(self, now: Optional[float] = None) -> float:
        """Wall seconds since the start, less the probes' (unless :attr:`concurrent`)."""
        now = time.perf_counter() if now is None else now
        return max(0.0, now - self.began - (0.0 if self.concurrent else self.probe_seconds))

    def likelihood_available(self, now: Optional[float] = None) -> float:
        """The cheap part's account: ``LIKELIHOOD_SHARE x share x training seconds`` less the probe
        seconds spent outside attribution scoring (can be < 0)."""
        return (LIKELIHOOD_SHARE * self.share * self.training_seconds(now)
                - (self.probe_seconds - self.scoring_seconds))

    def scoring_available(self, now: Optional[float] = None) -> float:
        """The attribution scores' account: ``(1 - LIKELIHOOD_SHARE) x share x training seconds``
        less the seconds spent scoring (can be < 0)."""
        return (1 - LIKELIHOOD_SHARE) * self.share * self.training_seconds(now) - self.scoring_seconds

    def count_outside_run(self, seconds: float) -> None:
        """Count ``seconds`` the monitor spent around a run (planning, timing, logging, the record)
        against the share, as part of the latest run's cheap part."""
        seconds = max(0.0, seconds)
        self.probe_seconds += seconds
        if self.fixed_seconds is not None:
            self.fixed_seconds += seconds

    def overhead(self, now: Optional[float] = None) -> Optional[float]:
        """Probe seconds per training second so far (``probattr/overhead``); ``None`` before any training."""
        training = self.training_seconds(now)
        return self.probe_seconds / training if training > 0 else None

    def record(self, step: int, seconds: float, results: Sequence, guard_seconds: float = 0.0,
               guard_pairs: int = 0) -> None:
        """Count a run of ``seconds`` whose per-prompt results are ``results`` (``ProbeResult``): the
        attribution scoring's rate from the prompts that scored positions, the rest as fixed; the
        guard's seconds per pair from ``guard_seconds`` over ``guard_pairs``."""
        if guard_pairs and guard_seconds > 0:
            self.guard_pair_seconds = guard_seconds / guard_pairs
        scoring = [r for r in results if r.valid and r.summary.get("positions_scored")]
        scoring_seconds = sum(float(r.summary.get("seconds") or 0.0) for r in scoring)
        forwards = sum(int(r.summary.get("token_forwards") or 0) for r in scoring)
        if scoring_seconds > 0 and forwards > 0:
            self.rate = forwards / scoring_seconds
        scoring_seconds = min(scoring_seconds, seconds)
        self.fixed_seconds = seconds - scoring_seconds
        self.probe_seconds += seconds
        self.scoring_seconds += scoring_seconds
        scored = sum(int(r.summary.get("positions_scored") or 0) for r in results if r.valid)
        total = sum(int(r.summary.get("positions_total") or 0) for r in results if r.valid)
        self.runs.append((step, seconds, scored, total))


def plan_run(settings: ProbeSettings, seconds: float, rate: float, vocab_size: int, positions: int,
             suffix_tokens: int) -> ProbeSettings:
    """``settings`` fitted into ``seconds`` of attribution scoring at ``rate`` token-forwards per
    second, for a run of ``positions`` scorable positions whose suffixes sum to ``suffix_tokens``
    per candidate (``api.cost.run_suffix_tokens``): every position when that fits, else the most
    positions that fit if they are at least :func:`smallest_sample`, else none (``max_positions=0``).
    The candidates are the settings' own, never cut (module docstring). The settings' own
    ``max_positions`` is an upper bound, never raised."""
    if positions <= 0 or suffix_tokens <= 0:
        return settings
    affordable = max(0.0, seconds) * rate  # token-forwards
    per_position = suffix_tokens / positions  # suffix tokens per candidate, on average
    ceiling = positions if settings.max_positions is None else min(positions, settings.max_positions)
    capped = policy_named(settings.policy_for(vocab_size)).capped
    budget = settings.budget_within(vocab_size, suffix_tokens) if capped else vocab_size
    fits = int(math.floor(affordable / (budget * per_position)))
    if fits < min(ceiling, smallest_sample(positions)):
        return settings.replace(max_positions=0)
    return settings.replace(max_positions=None if fits >= positions and settings.max_positions is None
                            else min(fits, ceiling))


def smallest_sample(positions: int, share: float = MIN_SAMPLED_SHARE) -> int:
    """The fewest of ``positions`` a sampled run scores (or it scores none): ``share`` of them
    (:data:`MIN_SAMPLED_SHARE`, half, rounded up), and at least :data:`MIN_POSITIONS`."""
    return max(MIN_POSITIONS, math.ceil(share * positions))


def skips_run(meter: OverheadMeter, planned: ProbeSettings, first: bool, needed: bool) -> bool:
    """Whether the run about to start is skipped (module docstring, lever 0): not the ``first`` of
    the session, not ``needed`` by an evaluation, its cheap part (``meter.fixed_seconds``, as the
    latest run measured it) at least :data:`NEVER_SKIP_SECONDS` and over the likelihood account,
    and ``planned`` (from the attribution account) scoring no position."""
    if first or needed or meter.fixed_seconds is None or meter.fixed_seconds < NEVER_SKIP_SECONDS:
        return False
    return meter.likelihood_available() < meter.fixed_seconds and planned.max_positions == 0


def skipped_line(meter: OverheadMeter, step: int) -> str:
    """What a skipped run says: which step, why, and how to probe it anyway."""
    return (f"the probe run at step {step} is skipped to keep the probes within {meter.share:.0%} of the training time "
            f"(max_overhead): its cheap part takes about {meter.fixed_seconds or 0.0:.1f} s, more than the "
            f"{max(0.0, meter.likelihood_available()):.1f} s its share holds now. Skipped checkpoints have no "
            "probattr.json; `probattr-monitor sweep` probes them afterwards, and a larger max_overhead (or None) "
            "probes every one")


def guard_pairs_that_fit(seconds: float, pair_seconds: float, scored: int, total: int) -> int:
    """How many guard pairs the next run scores: as many as :data:`GUARD_SHARE` of ``seconds`` (the
    likelihood account) pays
    for at ``pair_seconds`` each, at least :data:`MIN_GUARD_PAIRS` and never fewer than the
    ``scored`` of earlier runs (a pair scored once is scored at every later run: the regression test
    compares a checkpoint with earlier ones on the pairs both hold, and a pair that disappears would
    read as a regression), at most ``total``."""
    fits = int(GUARD_SHARE * max(0.0, seconds) / pair_seconds) if pair_seconds > 0 else total
    return min(total, max(scored, MIN_GUARD_PAIRS, fits))


def freeze_seconds(share: float, max_steps: int, step_seconds: Optional[float]) -> float:
    """Seconds the base guard's freezing may take at train begin:
    ``FREEZE_SHARE x LIKELIHOOD_SHARE x share x max_steps x step_seconds`` (a quarter of the
    likelihood account the whole run will earn); 0 (the smallest freezing) when the
    step time or the step count is unknown."""
    if step_seconds is None or not max_steps or max_steps <= 0 or not step_seconds > 0:
        return 0.0
    return FREEZE_SHARE * LIKELIHOOD_SHARE * share * max_steps * step_seconds


def step_seconds_estimate(tokens_per_step: Optional[float], rate: Optional[float]) -> Optional[float]:
    """A training step's seconds before any was timed: ``TRAIN_STEP_FORWARDS x tokens_per_step /
    rate`` with ``rate`` the model's measured token-forwards per second in inference. A low
    estimate (no optimizer, no padding, no data loading), so what it sizes errs small; ``None``
    when either is unknown."""
    if not tokens_per_step or not rate or rate <= 0:
        return None
    return TRAIN_STEP_FORWARDS * tokens_per_step / rate


def over_share(meter: OverheadMeter, guard_pairs: int, prompts: int) -> Optional[str]:
    """One line when the probes have taken more than :data:`OVER_SHARE` times the share so far
    (``None`` otherwise): what every run costs at least (``log P(r|p)`` of each prompt and the
    scored guard pairs, one forward each; at the first run the responses too), and how to lower it."""
    overhead = meter.overhead()
    if overhead is None or overhead <= OVER_SHARE * meter.share or meter.fixed_seconds is None:
        return None
    return (f"the probes have taken {overhead:.0%} of the training time, over the {meter.share:.0%} asked "
            f"(max_overhead): every probe run costs at least log P(r|p) of its {prompts} prompts and "
            f"{guard_pairs} guard pairs, one forward each ({meter.fixed_seconds:.1f} s at the last run), and the "
            "base guard's freezing and the first run's responses were paid at the start. Checkpoints further apart "
            "(save_steps), fewer prompts or guard=None lower it; runs are skipped while over the share")
