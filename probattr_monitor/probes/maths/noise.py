"""Noise-token classification (the maths guide, "Noise tokens"): pure functions of AS and entropy."""

from __future__ import annotations

NEGATIVE = "negative"
NEAR_ZERO = "near_zero"
HIGH = "high"


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


Z_95 = 1.96


def noise_uncertain(attribution_score: float, attribution_stderr: float, entropy_value: float,
                    entropy_stderr: float, as_band: float, entropy_threshold: float, z: float = Z_95) -> bool:
    """Whether the 95% intervals (value +- z * stderr) allow both answers to :func:`is_noise`.

    A token is *certainly* noise when its whole AS interval lies in the band and its whole entropy
    interval at or above the threshold; *certainly not* when its AS interval misses the band or its
    entropy interval lies below the threshold; uncertain otherwise. Exact results have zero
    standard errors and are never uncertain.
    """
    as_low, as_high = attribution_score - z * attribution_stderr, attribution_score + z * attribution_stderr
    h_low, h_high = entropy_value - z * entropy_stderr, entropy_value + z * entropy_stderr
    possible = as_low <= as_band and as_high >= -as_band and h_high >= entropy_threshold
    certain = as_low >= -as_band and as_high <= as_band and h_low >= entropy_threshold
    return possible and not certain
