"""Truth-free convergence statistics of probe runs: soft noise, drift and the plateau, computed here
(declared, with every other statistic, in ``monitoring.statistics``).

The noise count is one thresholded statistic: it reaches its floor early and then stops moving.
These keep moving:

``soft_noise`` (one run): each scored token weighted by a smooth membership of the near-zero AS
band and by its entropy above a floor, averaged over tokens (nats)::

    soft_noise = mean_k  m(AS_k) * max(0, H_k - h0),   m(a) = exp(-(a / as_band)^2 / 2)

``m`` is 1 at AS = 0, 0.61 at the band's edge and 0.01 three bands out; ``H_k`` is the entropy the
noise flag uses (``noise_entropy``, context by default) and ``h0`` is half the noise threshold
(1 nat by default). A token counts fully only when nothing pins it down *and* the response does
not depend on it, as for the count, but a token that is merely becoming pinned down still moves it.

``drift_attribution`` and ``drift_entropy`` (two runs on the same prompts and the same response
token ids, the paper's "model stability")::

    drift_attribution = mean_k |AS_k - AS'_k|,   drift_entropy = mean_k |H_k - H'_k|

over the tokens of every prompt both runs scored validly; they go to zero as a run settles.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..probes.types.result import ProbeResult
from ..probes.types.settings import ProbeSettings

PLATEAU_DRIFT = 0.05  # nats of mean |dAS| between consecutive probe runs: below it, a run has settled


def membership(attribution_score: float, as_band: float) -> float:
    """Smooth membership of the near-zero AS band: ``exp(-(AS / as_band)^2 / 2)``."""
    return math.exp(-0.5 * (attribution_score / as_band) ** 2)


def soft_noise_terms(results: Sequence[ProbeResult], settings: Optional[ProbeSettings] = None) -> list[float]:
    """``m(AS_k) * max(0, H_k - h0)`` of every token of the valid results, in order (``settings``
    default to the results' own): what :func:`soft_noise` averages."""
    valid = [r for r in results if r.valid and r.tokens]
    if not valid:
        return []
    settings = settings or ProbeSettings.from_dict(valid[0].settings or {})
    floor = settings.entropy_threshold / 2
    entropy = "entropy_context" if settings.noise_entropy == "context" else "entropy_prompt"
    return [membership(t.attribution_score, settings.as_band) * max(0.0, getattr(t, entropy) - floor)
            for r in valid for t in r.tokens]


def soft_noise(results: Sequence[ProbeResult], settings: Optional[ProbeSettings] = None) -> Optional[float]:
    """``mean_k m(AS_k) * max(0, H_k - h0)`` over the tokens of the valid results (see the module
    docstring); ``settings`` default to the results' own. ``None`` when no token was scored."""
    terms = soft_noise_terms(results, settings)
    return sum(terms) / len(terms) if terms else None


def drift(previous: Sequence[ProbeResult], current: Sequence[ProbeResult]) -> dict[str, Optional[float]]:
    """``{"drift_attribution", "drift_entropy"}`` between two runs (see the module docstring).

    Only prompts whose prompt and response token ids are the same in both runs, and valid in both,
    are compared, at the positions both scored; the values are ``None`` when there is none (e.g.
    generated responses that changed).
    """
    pairs = [(a, b) for a, b in zip(previous, current)
             if a.valid and b.valid and a.prompt_token_ids == b.prompt_token_ids
             and a.response_token_ids == b.response_token_ids]
    same = []  # (earlier token, later token) at each position both runs scored (samples may differ)
    for a, b in pairs:
        later = {t.position: t for t in b.tokens}
        same += [(s, later[s.position]) for s in a.tokens if s.position in later]
    as_changes = [abs(s.attribution_score - t.attribution_score) for s, t in same]
    h_changes = [abs(s.entropy_context - t.entropy_context) for s, t in same]
    if not as_changes:
        return {"drift_attribution": None, "drift_entropy": None}
    return {"drift_attribution": sum(as_changes) / len(as_changes), "drift_entropy": sum(h_changes) / len(h_changes)}


def plateau_start(rows: Sequence[dict], threshold: float = PLATEAU_DRIFT) -> Optional[int]:
    """The first step from which ``drift_attribution`` stays at or below ``threshold`` to the end
    of ``rows`` (summary rows in step order): where the run has settled. ``None`` when it never does."""
    start = None
    for row in rows:
        value = row.get("drift_attribution")
        if value is None:
            continue
        if value <= threshold:
            start = row["step"] if start is None else start
        else:
            start = None
    return start
