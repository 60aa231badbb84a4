"""Time as the runtime sees it: a monotonic clock with timers, and a fake one for tests.

Everything in the runtime that waits (delayed adds, rate limiters, latency metrics) reads time
through a :class:`Clock`, so tests step time forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        ...

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` in the event loop once ``now() >= deadline``."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and the running event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        # Relative scheduling: the loop's own clock need not be time.monotonic.
        return asyncio.get_running_loop().call_later(max(0.0, deadline - self.now()), callback)


class _FakeTimer:
    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to; timers fire synchronously inside :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._order = itertools.count()  # fires timers with equal deadlines in creation order

    def now(self) -> float:
        return self._now

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(deadline, callback)
        heapq.heappush(self._timers, (deadline, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward and fire every timer that became due, earliest first."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        target = self._now + seconds
        # Callbacks may arm new timers; those that are due by `target` fire in this call too.
        while self._timers and self._timers[0][0] <= target:
            deadline, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, deadline)
                timer.callback()
        self._now = target

    @property
    def pending_timers(self) -> int:
        return sum(not timer.cancelled for _, _, timer in self._timers)
