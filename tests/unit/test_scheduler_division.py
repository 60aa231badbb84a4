"""Replica division maths (spec §5.4 test vectors and the dynamic/incremental rules)."""

from __future__ import annotations

import pytest

from clusternet.scheduler.division import dynamic_divide, proportional_split, static_divide


@pytest.mark.parametrize(
    ("desired", "weights", "expected"),
    [
        (5, [2, 1, 0, 2], [2, 1, 0, 2]),
        (10, [2, 1, 2], [4, 2, 4]),
        (6, [2, 1, 0, 2], [3, 1, 0, 2]),
        (5, [5, 1, 0, 2], [4, 0, 0, 1]),
        (12, [1, 2], [4, 8]),
        (12, [1, 2, 1], [3, 6, 3]),
        (6, [1, 2], [2, 4]),
        (0, [1, 2], [0, 0]),
        # Remainder to the heaviest first; equal weights by position.
        (7, [1, 1, 1], [3, 2, 2]),
        (2, [1, 3, 3], [0, 1, 1]),
        (1, [0, 1], [0, 1]),
    ],
)
def test_static_divide(desired: int, weights: list[int], expected: list[int]) -> None:
    assert static_divide(desired, weights) == expected
    assert sum(static_divide(desired, weights)) == desired


def test_static_divide_refuses_all_zero_weights() -> None:
    with pytest.raises(ValueError, match="all weights are zero"):
        static_divide(6, [0, 0])


@pytest.mark.parametrize(
    ("amount", "shares", "expected"),
    [
        (4, [10, 10, 10], [2, 1, 1]),
        (6, [1, 2, 3], [1, 2, 3]),
        (5, [0, 0], [0, 0]),
        (3, [1, 1], [2, 1]),
        (10, [3, 7], [3, 7]),
        (1, [1, 3], [0, 1]),  # largest fractional part: 0.75 beats 0.25
    ],
)
def test_proportional_split(amount: int, shares: list[int], expected: list[int]) -> None:
    assert proportional_split(amount, shares) == expected


@pytest.mark.parametrize(
    ("desired", "current", "capacity", "expected"),
    [
        # spec §5.4: f1=[1,3,0], desired 8, capacity 10 each → +[2,1,1].
        (8, [1, 3, 0], [10, 10, 10], [3, 4, 1]),
        # First schedule: proportional to capacity.
        (6, [0, 0, 0], [10, 20, 30], [1, 2, 3]),
        # Unchanged desired: nothing moves.
        (6, [1, 2, 3], [0, 0, 0], [1, 2, 3]),
        # Scale down: taken in proportion to what runs.
        (3, [1, 2, 3], [5, 5, 5], [0, 1, 2]),  # removes [1, 1, 1]: .5 ties by position
        (0, [1, 2, 3], [5, 5, 5], [0, 0, 0]),
        # More than the clusters can take: each gets its capacity (under-filled).
        (20, [0, 0], [3, 4], [3, 4]),
        # A cluster that left gave its replicas back: only the new delta is spread.
        (6, [2, 0], [0, 9], [2, 4]),
    ],
)
def test_dynamic_divide(
    desired: int, current: list[int], capacity: list[int], expected: list[int]
) -> None:
    assert dynamic_divide(desired, current, capacity) == expected


def test_dynamic_scale_up_adds_only_the_delta() -> None:
    first = dynamic_divide(6, [0, 0, 0], [10, 20, 30])
    second = dynamic_divide(9, first, [9, 18, 27])
    assert sum(second) == 9
    assert all(after >= before for before, after in zip(first, second, strict=True))
