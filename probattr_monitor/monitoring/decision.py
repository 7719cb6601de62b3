"""Choosing a checkpoint from summary rows, with the reason said out loud.

A *rule* takes the rows of one run (``step``, ``checkpoint``, ``status``, ``eval_loss`` and the
statistics of ``monitoring.metrics`` / ``monitoring.statistics``) in step order and returns the
row it recommends and why, or ``None`` when the rows do not carry what it needs. Rules are
compared by ``benchmarks/signal_study.py`` against processes whose truth is known;
:data:`DEFAULT_RULE` is the one that study supports (docs: "Choosing a checkpoint").
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..errors import InputError
from ..probes.maths.values import is_finite_number
from .regression import DEFAULT_TOLERANCE, guard_comparisons

# The guarded rule's other two settings, chosen with the tolerance on the signal study's tuning half.
DEFAULT_SLACK = 0.0
DEFAULT_BEFORE_ONSET = "guard"

Row = dict
Choice = tuple  # (row, reason) or (row, reason, extra fields for the recommendation)
Rule = Callable[[Sequence[Row]], Optional[Choice]]


def healthy(row: Row) -> bool:
    """A row any rule may recommend: its probes succeeded and at least one prompt was valid (a
    model whose weights went NaN gives an ``ok`` record with every prompt invalid)."""
    if row.get("status", "ok") != "ok":
        return False
    all_invalid = bool(row.get("invalid_prompts")) and row.get("log_p_response") is None \
        and row.get("noise_tokens") is None
    return not all_invalid


def _usable(rows: Sequence[Row], key: str) -> list[Row]:
    return [r for r in rows if healthy(r) and is_finite_number(r.get(key))]




def _lowest(rows: Sequence[Row], key: str, what: str) -> Optional[Choice]:
    usable = _usable(rows, key)
    if not usable:
        return None
    best = min(usable, key=lambda r: (r[key], r["step"]))
    return best, f"lowest {what} ({best[key]:.4g}; ties go to the earliest step)"


def fewest_noise_tokens(rows: Sequence[Row]) -> Optional[Choice]:
    """The fewest noise tokens, the earliest on ties (what ``metric_for_best_model`` keeps)."""
    return _lowest(rows, "noise_tokens", "noise-token count")


def lowest_soft_noise(rows: Sequence[Row]) -> Optional[Choice]:
    """The lowest ``soft_noise``."""
    return _lowest(rows, "soft_noise", "soft noise")


def lowest_eval_loss(rows: Sequence[Row]) -> Optional[Choice]:
    """The lowest eval loss the Trainer logged (needs evaluation at save steps)."""
    return _lowest(rows, "eval_loss", "eval loss")


def highest_log_p_response(rows: Sequence[Row]) -> Optional[Choice]:
    """The highest mean ``log P(r | p)`` of the probe prompts' responses. Meaningful only with fixed
    responses (the same text at every checkpoint): it is then a held-out likelihood of the probe set."""
    usable = _usable(rows, "log_p_response")
    if not usable:
        return None
    best = max(usable, key=lambda r: (r["log_p_response"], -r["step"]))
    return best, f"highest log P(response | prompt) of the fixed probe responses ({best['log_p_response']:.4g})"


# Nats of mean log P(r | p) by which a checkpoint may fall short of the run's best and still count as not
# regressed. Above the probe set's checkpoint-to-checkpoint noise (about 0.1-0.2 nats with 7 prompts in
# the demo), below what forgetting costs; the study's worst regret is 1.01x for any margin in 0.15-0.5.
REGRESSION_MARGIN = 0.25


def _not_regressed(rows: Sequence[Row], margin: float) -> list[Row]:
    """The ok rows whose ``log_p_response`` is within ``margin`` of the best up to and including
    them, *and* of the best over the whole run: the checkpoints the probes do not show breaking."""
    usable = _usable(rows, "log_p_response")
    if not usable:
        return []
    overall = max(r["log_p_response"] for r in usable)
    return [r for r in usable if r["log_p_response"] >= overall - margin]


def latest_not_regressed(rows: Sequence[Row], margin: float = REGRESSION_MARGIN) -> Optional[Choice]:
    """The latest checkpoint whose ``log P(r | p)`` (fixed responses) is within ``margin`` nats of
    the run's best: train as long as the probes do not show the model getting worse."""
    kept = _not_regressed(rows, margin)
    if not kept:
        return None
    best = kept[-1]
    return best, (f"the latest checkpoint whose log P(response | prompt) of the fixed probe responses "
                  f"({best['log_p_response']:.4g}) is within {margin:g} nats of the run's best")


def lowest_eval_loss_not_regressed(rows: Sequence[Row], margin: float = REGRESSION_MARGIN) -> Optional[Choice]:
    """The lowest eval loss among the checkpoints :func:`latest_not_regressed` would accept: eval
    loss ranks them, the probes veto the ones that broke what the probe set measures."""
    kept = [r for r in _not_regressed(rows, margin) if is_finite_number(r.get("eval_loss"))]
    if not kept:
        return None
    best = min(kept, key=lambda r: (r["eval_loss"], r["step"]))
    return best, (f"the lowest eval loss ({best['eval_loss']:.4g}) among checkpoints whose log P(response | "
                  f"prompt) is within {margin:g} nats of the run's best")


def guarded(rows: Sequence[Row], tolerance: float = DEFAULT_TOLERANCE, slack: float = DEFAULT_SLACK,
            before_onset: str = DEFAULT_BEFORE_ONSET) -> Optional[Choice]:
    """The target ranks, the guard vetoes only with confidence (``monitoring.regression``).

    Each checkpoint's guard log P(r|p) (fixed responses, per prompt) is compared with the best
    earlier checkpoint's; it has *regressed* when the 95% interval of the mean paired difference
    lies wholly below ``-tolerance``. Then:

    - while the latest checkpoints are regressed (a regression still under way), the
      recommendation is the best checkpoint before its onset: with ``before_onset="guard"`` the
      one the regression is measured against (the guard's best), with ``"target"`` the target's
      choice (below) among the checkpoints before the onset;
    - otherwise, among the checkpoints that have not regressed, the target's choice: the latest
      checkpoint whose eval loss is within ``slack`` (relative) of the lowest, when the Trainer
      logged one (eval losses closer than that are the eval set's noise, and training's progress
      breaks the tie), else the latest.

    When the lowest eval loss overall sits on a regressed checkpoint, target and guard disagree (a
    specialisation that costs what the guard measures, or forgetting: the probes cannot tell which
    is wanted): the reason says so and names both. Checkpoints whose probes failed or whose prompts
    are all invalid are never recommended.
    """
    usable = [r for r in rows if healthy(r)]
    comparisons = {c.step: c for c in guard_comparisons(usable, tolerance)}
    if not comparisons:
        return None
    by_step = {r["step"]: r for r in usable}
    guarded_rows = [r for r in usable if r["step"] in comparisons]
    latest = comparisons[guarded_rows[-1]["step"]]
    target_best = min((r for r in usable if is_finite_number(r.get("eval_loss"))),
                      key=lambda r: (r["eval_loss"], r["step"]), default=None)
    if before_onset not in ("guard", "target"):
        raise InputError(f"before_onset should be 'guard' or 'target', got {before_onset!r}")
    kept = [r for r in usable if not (r["step"] in comparisons and comparisons[r["step"]].regressed)]
    undecided = False
    if latest.regressed:
        onset = guarded_rows[-1]
        for row in reversed(guarded_rows):
            if not comparisons[row["step"]].regressed:
                break
            onset = row
        before = [r for r in kept if r["step"] < onset["step"]]
        target = _target_choice(before, slack) if before_onset == "target" else None
        choice = target[0] if target else by_step[comparisons[onset["step"]].reference]
        how = f"the target's choice: {target[1]}" if target else "the guard's best"
        reason = (f"the guard set regressed with 95% confidence from step {onset['step']} on "
                  f"({comparisons[onset['step']].describe()}; now {latest.describe()}): the best checkpoint "
                  f"before that onset ({how})")
    else:
        target = _target_choice(kept, slack)
        if target:
            choice, why = target
            reason = f"{why}, among checkpoints whose guard set has not regressed with 95% confidence (by more " \
                     f"than {tolerance:g} nats per prompt)"
        else:
            choice = kept[-1]
            reason = _undecided(comparisons, guarded_rows, tolerance)
            undecided = True
    extra: dict = {"undecided": True} if undecided else {}
    if target_best is not None and target_best["step"] != choice["step"] and \
            comparisons.get(target_best["step"], None) is not None and comparisons[target_best["step"]].regressed:
        extra["target_step"] = target_best["step"]
        reason += (f". Target and guard disagree: the lowest eval loss ({target_best['eval_loss']:.4g}) is at step "
                   f"{target_best['step']}, where the guard set regressed "
                   f"({comparisons[target_best['step']].describe()}); if that specialisation is wanted, choose it "
                   "(rule lowest_eval_loss)")
    return choice, reason, extra


def _undecided(comparisons: dict, guarded_rows: Sequence[Row], tolerance: float) -> str:
    """The reason of a recommendation the probes could not make: no eval loss ranks the checkpoints
    and the guard set confirmed no regression, so the latest checkpoint is shown for want of
    evidence, not as the best; names the largest drop the guard saw but could not confirm."""
    prompts = max((c.prompts for c in comparisons.values()), default=0)
    drops = [c for c in comparisons.values() if c.mean is not None and c.mean < -tolerance]
    worst = min(drops, key=lambda c: c.mean, default=None)
    seen = (f"the largest drop it saw, at step {worst.step} ({worst.describe()}), does not reach that confidence "
            f"with {worst.prompts} guard prompts" if worst is not None
            else f"it saw no drop larger than {tolerance:g} nats per prompt")
    return (f"the probes could not decide: there is no eval loss to rank the checkpoints by, and the guard set "
            f"({prompts} prompts) found no regression with 95% confidence; {seen}. This is the latest checkpoint "
            f"(step {guarded_rows[-1]['step']}) for want of evidence, not the best one: log an eval loss "
            "(eval_strategy) or give a larger guard set (guard=, --guard-file, --reference)")


SMALL_GUARD = 30  # a stated choice, not fitted: 3 and 7 prompts never confirmed the forgetting in the studies, 200 did


def what_the_recommendation_sees(eval_loss: bool, guard_prompts: int) -> tuple[str, bool]:
    """``(statement, blind)``: what the default rule (:func:`guarded`) can see in a run, said at its
    start: whether an eval loss ranks the checkpoints (``eval_loss``) and how many prompts with
    fixed responses the guard compares across checkpoints (``guard_prompts``: the probe prompts in
    fixed mode and the guard pairs). ``blind`` when it cannot tell forgetting from learning: no eval
    loss and fewer than :data:`SMALL_GUARD` guard prompts."""
    if guard_prompts <= 0:
        guard = "no guard set (nothing it can see forgetting on"
        guard += ")" if eval_loss else "; the recommendation will be the latest checkpoint, said as such)"
    elif guard_prompts < SMALL_GUARD:
        guard = (f"a guard of {guard_prompts} prompts with fixed responses, which rarely confirms a regression "
                 f"at 95% (fewer than {SMALL_GUARD})")
    else:
        guard = f"a guard of {guard_prompts} prompts with fixed responses, which vetoes checkpoints that regressed"
    target = ("an eval loss ranks the checkpoints" if eval_loss
              else "no eval loss ranks the checkpoints (set eval_strategy and an eval_dataset for one)")
    blind = not eval_loss and guard_prompts < SMALL_GUARD
    more = (": the probes cannot tell forgetting from learning here, and the recommendation will say so; give a "
            "guard (guard=, --guard-file, --reference) or log an eval loss") if blind else ""
    return f"what the recommendation can see: {target}; {guard}{more}", blind


def _target_choice(rows: Sequence[Row], slack: float) -> Optional[tuple]:
    """``(row, why)``: the latest row whose eval loss is within ``slack`` (relative) of the lowest."""
    ranked = [r for r in rows if is_finite_number(r.get("eval_loss"))]
    if not ranked:
        return None
    lowest = min(r["eval_loss"] for r in ranked)
    within = [r for r in ranked if r["eval_loss"] <= lowest + slack * abs(lowest)]
    choice = within[-1]
    if slack and len(within) > 1:
        return choice, (f"the latest checkpoint whose eval loss ({choice['eval_loss']:.4g}) is within {slack:.2%} of "
                        f"the lowest ({lowest:.4g})")
    return choice, f"the lowest eval loss ({choice['eval_loss']:.4g})"


def last(rows: Sequence[Row]) -> Optional[Choice]:
    """The last checkpoint whose probes succeeded on at least one prompt."""
    usable = [r for r in rows if healthy(r)]
    return (usable[-1], "the last checkpoint (no statistic to choose by)") if usable else None


RULES: dict[str, Rule] = {
    "fewest_noise_tokens": fewest_noise_tokens,
    "lowest_soft_noise": lowest_soft_noise,
    "highest_log_p_response": highest_log_p_response,
    "lowest_eval_loss": lowest_eval_loss,
    "latest_not_regressed": latest_not_regressed,
    "lowest_eval_loss_not_regressed": lowest_eval_loss_not_regressed,
    "guarded": guarded,
    "last": last,
}
DEFAULT_RULE = "guarded"  # chosen and reported on separate runs of the signal study (docs: choosing a checkpoint)
FALLBACKS = ("lowest_eval_loss", "last")
# Rules that read log P(r | p): meaningful only when every checkpoint scored the same responses.
NEEDS_FIXED_RESPONSES = ("highest_log_p_response", "latest_not_regressed", "lowest_eval_loss_not_regressed",
                         "guarded")


def recommend(rows: Sequence[Row], rule: str = DEFAULT_RULE, fixed_responses: bool = True) -> Optional[dict]:
    """``{"step", "checkpoint", "rule", "reason"}`` for ``rows``, or ``None`` when no row is usable.

    ``rule`` names one of :data:`RULES`. The rules of :data:`NEEDS_FIXED_RESPONSES` need fixed
    responses (with generated ones ``log P(r | p)`` measures confidence, not fit); without them, or
    when its statistic is missing, the recommendation falls back to the lowest eval loss, then to
    the last checkpoint, and the reason says so.
    """
    if rule not in RULES:
        raise InputError(f"unknown rule {rule!r}; known rules: {', '.join(RULES)}")
    order = [rule, *(f for f in FALLBACKS if f != rule)]
    if rule in NEEDS_FIXED_RESPONSES and not fixed_responses:
        order = list(FALLBACKS)
    for index, name in enumerate(order):
        choice = RULES[name](rows)
        if choice is not None:
            row, reason, *extra = choice
            if index or name != rule:
                reason += f" ({rule} could not decide: {_why_not(rule, fixed_responses)})"
            return {"step": row["step"], "checkpoint": row["checkpoint"], "rule": name, "reason": reason,
                    **(extra[0] if extra else {})}
    return None


def _why_not(rule: str, fixed_responses: bool) -> str:
    if rule in NEEDS_FIXED_RESPONSES and not fixed_responses:
        return "the responses are generated, not fixed"
    return "its statistic is missing"
