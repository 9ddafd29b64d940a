"""Traffic shares to per-instance router weights: exact shares whatever the replica counts."""

from __future__ import annotations

import math
from collections.abc import Sequence


def share_weights(groups: Sequence[tuple[int, Sequence[str]]]) -> tuple[tuple[str, int], ...]:
    """Integer weights for instance groups so that each group gets exactly its share.

    Each group is (share in percent, instance names); the instances of a group
    split its share evenly. Weights are scaled to the smallest integers that
    keep the ratios exact; a group with share 0 gets weight 0.

    >>> share_weights([(10, ["c1"]), (90, ["s1", "s2", "s3"])])
    (('c1', 1), ('s1', 3), ('s2', 3), ('s3', 3))
    >>> share_weights([(25, ["c1", "c2"]), (25, ["b1"]), (50, ["s1", "s2"])])
    (('c1', 1), ('c2', 1), ('b1', 2), ('s1', 2), ('s2', 2))
    """
    if any(share < 0 for share, _ in groups):
        raise ValueError("a traffic share cannot be negative")
    live = [len(names) for share, names in groups if share > 0 and names]
    common = math.lcm(*live) if live else 1
    raw = [share * common // len(names) if share > 0 and names else 0 for share, names in groups]
    divisor = math.gcd(*raw) or 1
    return tuple(
        (name, per_instance // divisor)
        for (_, names), per_instance in zip(groups, raw, strict=True)
        for name in names
    )
