"""Every statistic of a probe run, declared once: its name, how it is computed, which way is better,
its label, and whether the report charts it.

Everything else reads this table: the run summary and the trackers' ``probattr/<name>`` scalars
(``monitoring.metrics``), the evaluation metrics ``eval_probattr_<name>``, the statistics
``ProbAttrEarlyStopping`` can stop on and their direction, the sweep's and the demo's summary
columns, and the report's charts. A statistic is either of one run (``compute(results)``) or a
comparison of two consecutive runs (``compute`` is ``None``; the drifts of
``monitoring.convergence``). :func:`register_statistic` adds one; the built-ins cannot be removed.

Example (a statistic in a few lines; ``docs/guides/extending.md``)::

    from probattr_monitor.monitoring.statistics import Statistic, register_statistic

    register_statistic(Statistic(
        "max_attribution", "largest AS (nats)", greater_is_better=True,
        compute=lambda results: max((t.attribution_score for r in results if r.valid for t in r.tokens),
                                    default=None)))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..errors import InputError
from ..probes.types.registry import Registry
from ..probes.types.result import ProbeResult
from ..probes.types.settings import SCOPE_NAMES
from .convergence import soft_noise
from .sampling import sampled_counts

Compute = Callable[[Sequence[ProbeResult]], Optional[float]]


@dataclass(frozen=True)
class Statistic:
    """One statistic of a probe run.

    Attributes:
        name: its key in the summary (``probattr/<name>`` in the trackers).
        label: what a chart or a table calls it, with its unit.
        greater_is_better: its direction, for early stopping and best-model selection.
        compute: ``results -> value`` (``None`` when nothing valid was scored); ``None`` for a
            statistic comparing two consecutive runs (the drifts), computed by ``monitoring.convergence.drift``.
        hint: which way reads as better, in words (under the report's chart).
        chart: whether the report draws it against step.
    """

    name: str
    label: str
    greater_is_better: bool
    compute: Optional[Compute] = None
    hint: str = ""
    chart: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InputError(f"a statistic's name should be an identifier (it becomes probattr/<name>), "
                             f"got {self.name!r}")
        if not isinstance(self.greater_is_better, bool):
            raise InputError(f"greater_is_better should be True or False, got {self.greater_is_better!r}")


def _tokens(results: Sequence[ProbeResult]) -> list:
    return [t for r in results if r.valid for t in r.tokens]


def _mean(values: list) -> Optional[float]:
    return sum(values) / len(values) if values else None


def pooled(field: str) -> Compute:
    """``results -> mean of token.<field>`` over every scored token of the valid results, tokens
    whose value is ``None`` left out (token-weighted; ``None`` when there is none)."""
    return lambda results: _mean([getattr(t, field) for t in _tokens(results) if getattr(t, field) is not None])


def noise_fraction(results: Sequence[ProbeResult]) -> Optional[float]:
    """Noise tokens over scored tokens, pooled over the valid results."""
    tokens = _tokens(results)
    return sum(1 for t in tokens if t.noise) / len(tokens) if tokens else None


def noise_tokens(results: Sequence[ProbeResult]) -> Optional[float]:
    """The noise count over every prompt; when positions were sampled (``max_positions``), the
    count over all of them, estimated: ``positions_total x noise_fraction`` (a float)."""
    if not any(r.valid for r in results):
        return None
    scored, total = sampled_counts(results)
    if scored < total:
        fraction = noise_fraction(results)
        return None if fraction is None else total * fraction
    return sum(1 for t in _tokens(results) if t.noise)


def log_p_response(results: Sequence[ProbeResult]) -> Optional[float]:
    """Mean ``log P(r | p)`` over the valid results."""
    return _mean([r.log_p_response for r in results if r.valid])


STATISTICS = Registry("statistic", InputError)


def register_statistic(statistic: Statistic) -> Statistic:
    """Declare ``statistic`` (replacing a non-built-in one of the same name); returns it. From then
    on every run's summary, the trackers, early stopping, the sweep's rows and (``chart=True``)
    the report include it."""
    if not isinstance(statistic, Statistic):
        raise InputError(f"register_statistic takes a Statistic, got {type(statistic).__name__}")
    if not callable(statistic.compute):
        raise InputError(f"statistic {statistic.name!r} needs compute=results -> value (the two-run drifts are "
                         "built in)")
    if statistic.name in STATISTICS.built_in:
        raise InputError(f"the built-in statistic {statistic.name!r} cannot be replaced")
    return STATISTICS.add(statistic.name, statistic)


def unregister_statistic(name: str) -> None:
    """Remove a statistic :func:`register_statistic` added (the built-ins stay)."""
    STATISTICS.remove(name)


def statistic_named(name: str) -> Statistic:
    """The statistic called ``name``; an ``InputError`` naming the known ones otherwise."""
    return STATISTICS.named(name)


def summary_keys() -> tuple:
    """The names of the statistics of one run, in declaration order."""
    return tuple(name for name, s in STATISTICS.items() if s.compute is not None)


def drift_keys() -> tuple:
    """The names of the statistics comparing two consecutive runs."""
    return tuple(name for name, s in STATISTICS.items() if s.compute is None)


def charted() -> tuple:
    """The statistics the report draws against step (``chart=True``), in declaration order."""
    return tuple(s for s in STATISTICS.values() if s.chart)


for _statistic in (
    Statistic("noise_tokens", "noise tokens", False, noise_tokens),
    Statistic("noise_fraction", "noise fraction", False, noise_fraction),
    Statistic("mean_attribution", "mean AS (nats)", True, pooled("attribution_score")),
    Statistic("mean_entropy_prompt", "mean prompt entropy (nats)", False, pooled("entropy_prompt")),
    Statistic("mean_entropy_context", "mean context entropy (nats)", False, pooled("entropy_context")),
    Statistic("mean_kl", "mean KL(context || prompt) (nats)", False, pooled("kl_context_prompt")),
    Statistic("log_p_response", "mean log P(response | prompt)", True, log_p_response,
              "higher: the fixed responses are likelier", chart=True),
    Statistic("soft_noise", "soft noise (nats)", False, soft_noise, "lower: fewer tokens that nothing pins down",
              chart=True),
    Statistic("mean_replacement_entropy", "replacement entropy (nats)", False, pooled("replacement_entropy"),
              "lower: responses stable under replacements", chart=True),
    Statistic("mean_original_response_share", "original response share", True,
              pooled("original_response_share")),
    # the scopes, like mean_attribution: greater, the response leans more on the prompt
    *(Statistic(f"mean_{name}_scope", f"mean {name} scope", True, pooled(f"{name}_scope")) for name in SCOPE_NAMES),
    Statistic("drift_attribution", "drift: mean |dAS| (nats)", False, None, "towards 0: the run has settled",
              chart=True),
    Statistic("drift_entropy", "drift: mean |dH| (nats)", False, None),
):
    STATISTICS.add(_statistic.name, _statistic)
STATISTICS.seal()
