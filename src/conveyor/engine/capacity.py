"""Replica arithmetic for rolling updates, kept pure and small.

Percentages resolve like Kubernetes: a surge rounds up, an unavailability
rounds down, so that "25%" of 3 replicas means a surge of 1 and an
unavailability of 0 (capacity never drops by accident).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def resolve_count(value: int | str, replicas: int, *, round_up: bool) -> int:
    """Turn `2` or `"25%"` into an instance count for `replicas` instances.

    >>> resolve_count(2, 10, round_up=True)
    2
    >>> resolve_count("25%", 3, round_up=True)
    1
    >>> resolve_count("25%", 3, round_up=False)
    0
    >>> resolve_count("100%", 4, round_up=False)
    4
    """
    if isinstance(value, int):
        return max(0, value)
    text = value.strip()
    if not text.endswith("%"):
        return max(0, int(text))
    fraction = float(text[:-1]) / 100 * replicas
    # Guard against 0.30000000000000004-style noise before rounding.
    fraction = round(fraction, 9)
    return max(0, math.ceil(fraction) if round_up else math.floor(fraction))


@dataclass(frozen=True)
class RollingLimits:
    """How far a rolling update may exceed and fall short of the desired count."""

    surge: int  # extra instances allowed above max(current, desired)
    unavailable: int  # serving instances allowed below min(current, desired)


def rolling_limits(
    max_surge: int | str, max_unavailable: int | str, current: int, desired: int
) -> RollingLimits:
    """Resolve the limits, keeping at least one serving instance and some progress.

    An update may never take the last serving instance away, and a surge of 0
    with an unavailability of 0 could never progress, so the surge becomes 1.

    >>> rolling_limits(1, 0, 2, 2)
    RollingLimits(surge=1, unavailable=0)
    >>> rolling_limits("25%", "25%", 4, 4)
    RollingLimits(surge=1, unavailable=1)
    >>> rolling_limits(0, 1, 1, 1)   # one replica: cannot go to zero, so surge instead
    RollingLimits(surge=1, unavailable=0)
    >>> rolling_limits(0, 0, 3, 3)
    RollingLimits(surge=1, unavailable=0)
    """
    base = max(current, desired, 1)
    surge = resolve_count(max_surge, base, round_up=True)
    unavailable = resolve_count(max_unavailable, base, round_up=False)
    floor = min(current, desired)
    unavailable = min(unavailable, max(0, floor - 1))
    if surge + unavailable == 0:
        surge = 1
    return RollingLimits(surge=surge, unavailable=unavailable)
