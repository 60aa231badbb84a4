"""The scheduling queue (spec §5.1): by priority, with per-Subscription backoff.

* Active items are handed out highest ``spec.priority`` first, then in the order they were
  added (FIFO among equals).
* A failed attempt goes to backoff: 1 s, doubling per consecutive failure, at most 10 s; a
  successful one (``forget``) resets it.
* Like client-go's work queue, a key is never held by two workers: one added while it is
  being scheduled is handed out again after ``done``.
* ``add_after`` delays an add (used to rate-limit rescheduling caused by cluster changes).

Timers go through a :class:`~clusternet.runtime.Clock`, so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from clusternet.runtime.clock import Clock, MonotonicClock, Timer

K = TypeVar("K", bound=Hashable)

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0


class QueueShutDown(Exception):
    pass


class SchedulingQueue(Generic[K]):
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        initial_backoff: float = INITIAL_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._active: list[tuple[int, int, K]] = []  # (-priority, sequence, key), lazy deletion
        self._entry: dict[K, tuple[int, int]] = {}  # key -> its live heap entry
        self._priority: dict[K, int] = {}  # last known priority of every key
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing
        self._attempts: dict[K, int] = {}
        self._delayed: dict[K, tuple[float, Timer]] = {}
        self._sequence = itertools.count()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shut_down = False

    # -- adding ----------------------------------------------------------------------------

    def add(self, key: K, priority: int | None = None) -> None:
        """Queue ``key`` now (``priority``: the Subscription's; None keeps the last known)."""
        if self._shut_down:
            return
        if priority is not None:
            self._priority[key] = priority
        delayed = self._delayed.pop(key, None)
        if delayed is not None:
            delayed[1].cancel()
        if key in self._processing:
            self._dirty.add(key)
            return
        prio = self._priority.get(key, 0)
        live = self._entry.get(key)
        if live is not None and live[0] == -prio:
            return  # already queued at this priority: keep its place
        entry = (-prio, next(self._sequence))
        self._entry[key] = entry
        heapq.heappush(self._active, (*entry, key))
        self._wake()

    def add_after(self, key: K, delay: float, priority: int | None = None) -> None:
        """Queue ``key`` in ``delay`` seconds; an earlier pending add wins, an immediate
        :meth:`add` cancels it."""
        if self._shut_down:
            return
        if priority is not None:
            self._priority[key] = priority
        if delay <= 0:
            self.add(key)
            return
        if key in self._entry:
            return  # queued already: it will be scheduled sooner than that
        deadline = self.clock.now() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= deadline:
                return
            pending[1].cancel()
        timer = self.clock.call_at(deadline, lambda: self._fire(key))
        self._delayed[key] = (deadline, timer)

    def add_backoff(self, key: K) -> float:
        """A failed attempt: queue ``key`` after its backoff; returns the delay."""
        attempts = self._attempts.get(key, 0)
        self._attempts[key] = attempts + 1
        delay = min(self.initial_backoff * 2.0**attempts, self.max_backoff)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """A successful attempt: the next failure starts at the initial backoff again."""
        self._attempts.pop(key, None)

    def attempts(self, key: K) -> int:
        return self._attempts.get(key, 0)

    def remove(self, key: K) -> None:
        """The Subscription is gone: drop every trace of it."""
        self._entry.pop(key, None)  # its heap entry becomes stale
        self._dirty.discard(key)
        self._attempts.pop(key, None)
        self._priority.pop(key, None)
        delayed = self._delayed.pop(key, None)
        if delayed is not None:
            delayed[1].cancel()

    def _fire(self, key: K) -> None:
        if self._delayed.pop(key, None) is not None:
            self.add(key)

    # -- taking ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out."""
        return len(self._entry)

    def pending(self) -> int:
        """Keys waiting on a delay or backoff."""
        return len(self._delayed)

    async def pop(self) -> K:
        """The highest-priority key; call :meth:`done` with it when its attempt is over."""
        while True:
            while self._active:
                neg_prio, sequence, key = heapq.heappop(self._active)
                if self._entry.get(key) != (neg_prio, sequence):
                    continue  # superseded by a re-add at another priority, or removed
                del self._entry[key]
                self._processing.add(key)
                return key
            if self._shut_down:
                raise QueueShutDown
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        self._shut_down = True
        for _, timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
