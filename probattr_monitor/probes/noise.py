"""Noise-token classification (MATH.md, "Noise tokens"): pure functions of AS and entropy."""

from __future__ import annotations

NEGATIVE = "negative"
NEAR_ZERO = "near_zero"
HIGH = "high"
BANDS = (NEGATIVE, NEAR_ZERO, HIGH)


def attribution_band(attribution_score: float, as_band: float) -> str:
    """The AS band of a token.

    ``"negative"`` if ``AS < -as_band``, ``"high"`` if ``AS > as_band``, else ``"near_zero"``
    (the paper's near-zero band is ``[-0.2, 0.2]`` nats).
    """
    if attribution_score < -as_band:
        return NEGATIVE
    if attribution_score > as_band:
        return HIGH
    return NEAR_ZERO


def is_noise(attribution_score: float, entropy_value: float, as_band: float, entropy_threshold: float) -> bool:
    """A noise token: ``|AS| <= as_band`` and ``entropy >= entropy_threshold``.

    It contributes nothing to the response, and the rest of the text does not pin it down.
    Which entropy is passed (prompt or context) is the caller's setting; the default is context.
    """
    return abs(attribution_score) <= as_band and entropy_value >= entropy_threshold
