"""The one check every layer makes of a stored or given number."""

from __future__ import annotations

import math
from typing import Any


def is_finite_number(value: Any) -> bool:
    """A real, finite number: an ``int`` or ``float`` (not a ``bool``), neither NaN nor infinite.

    Examples:
        >>> [is_finite_number(v) for v in (1, 2.5, True, float("nan"), "3", None)]
        [True, True, False, False, False, False]
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
