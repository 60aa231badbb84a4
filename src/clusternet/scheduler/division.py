"""Replica division (spec §5.4) as pure functions over integers.

Every function is deterministic: ties are broken by position, never by hash or dict order,
so that the same inputs always give the same placement (no churn between cycles).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def static_divide(desired: int, weights: Sequence[int]) -> list[int]:
    """Divide ``desired`` replicas in proportion to ``weights``.

    ``r_i = floor(w_i·D/W)``; the remainder goes one replica each to the clusters in
    descending weight order (equal weights: earlier position first).  All-zero weights are
    the caller's error to report: there is no proportion to divide by.
    """
    if desired < 0:
        raise ValueError(f"desired replicas must not be negative, got {desired}")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must not be negative, got {list(weights)}")
    total = sum(weights)
    if total == 0:
        raise ValueError("all weights are zero: nothing to divide by")
    replicas = [w * desired // total for w in weights]
    remainder = desired - sum(replicas)
    order = [i for i in sorted(range(len(weights)), key=lambda i: -weights[i]) if weights[i]]
    # The remainder is below the number of positive weights (each lost < 1 to flooring).
    for i in order[:remainder]:
        replicas[i] += 1
    return replicas


def proportional_split(amount: int, shares: Sequence[int]) -> list[int]:
    """Split ``amount`` in proportion to ``shares``: floors, then the remainder by largest
    fractional part (equal parts: earlier position first).  Never gives more than the
    ``amount`` to split; ``shares`` all zero gives all zero."""
    total = sum(shares)
    if amount <= 0 or total <= 0:
        return [0] * len(shares)
    exact = [Fraction(s * amount, total) for s in shares]
    parts = [int(x) for x in exact]  # floor: all non-negative
    remainder = amount - sum(parts)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:remainder]:
        parts[i] += 1
    return parts


def dynamic_divide(desired: int, current: Sequence[int], capacity: Sequence[int]) -> list[int]:
    """Spread/incremental dynamic division of one feed (spec §5.4).

    ``current`` are the replicas already placed on each candidate cluster (0 for new ones),
    ``capacity`` the most each can take more (the predictor's answer).  Only the difference
    to ``desired`` moves: more replicas are spread in proportion to capacity (never more than
    a cluster's capacity: if the clusters cannot take them all, they are under-filled); fewer
    are taken away in proportion to what each cluster runs.  Returns the new totals.
    """
    if len(current) != len(capacity):
        raise ValueError("current and capacity must have one entry per cluster")
    deviation = desired - sum(current)
    if deviation > 0:
        capacity = [max(0, c) for c in capacity]
        # More than they can take: every cluster gets its capacity (under-filled).
        enough = deviation < sum(capacity)
        added = proportional_split(deviation, capacity) if enough else capacity
        return [c + a for c, a in zip(current, added, strict=True)]
    if deviation < 0:
        removed = proportional_split(-deviation, current)
        return [c - r for c, r in zip(current, removed, strict=True)]
    return list(current)
