"""A rate-limited work queue for asyncio controllers, with the semantics of client-go's.

* An item added any number of times while it waits is handed out once (dedupe).
* An item is never handed to two workers at once: re-added while a worker holds it, it is
  marked dirty and queued again when the worker calls :meth:`WorkQueue.done`.
* :meth:`WorkQueue.add_after` delays an add (one heap and one timer, no polling);
  :meth:`WorkQueue.add_rate_limited` delays it by the queue's :class:`RateLimiter`, by default
  per-item exponential backoff combined with an overall token bucket, as client-go's
  ``DefaultControllerRateLimiter``.
* After :meth:`WorkQueue.shut_down` adds are ignored, delayed adds are dropped and
  :meth:`WorkQueue.get` hands out what is still queued, then raises :class:`QueueShutDown`.

Metrics follow client-go's ``workqueue_*`` families, labelled by queue name.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import weakref
from collections import deque
from collections.abc import Hashable
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from clusternet.runtime.clock import Clock, MonotonicClock, Timer
from clusternet.runtime.metrics import PerRegistry

T = TypeVar("T", bound=Hashable)


class QueueShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and empty."""


# -- rate limiters ---------------------------------------------------------------------------


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Seconds to wait before ``item`` is retried; counts one more retry of it."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item``: its next failure starts the backoff from the beginning."""
        ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """``base_delay * 2**failures`` per item, capped at ``max_delay``."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        try:
            return min(self.max_delay, math.ldexp(self.base_delay, failures))
        except OverflowError:  # an item that has failed ~1000 times in a row
            return self.max_delay

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket over all items (golang.org/x/time/rate's ``Reserve().Delay()``).

    Tokens refill at ``qps`` up to ``burst``; each retry takes one, and when the bucket is
    empty the retry is scheduled for when its token will have been refilled.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock | None = None) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock or MonotonicClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        now = self._clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1  # may go negative: later reservations queue up behind this one
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """Asks every limiter (so each records the retry) and waits for the longest delay."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max([limiter.when(item) for limiter in self.limiters])

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(
    clock: Clock | None = None, max_delay: float = 1000.0
) -> MaxOfRateLimiter:
    """client-go's default: 5 ms doubling to 1000 s per item, 10 qps with burst 100 overall.

    Queues whose failures come from another cluster being away (pushing to a child) cap the
    per-item delay lower, so that work resumes soon after the cluster is back."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, max_delay),
        BucketRateLimiter(10.0, 100, clock=clock),
    )


# -- metrics ---------------------------------------------------------------------------------

# client-go's buckets: 10 ns to 10 s in decades.
_LATENCY_BUCKETS = tuple(10.0**exponent for exponent in range(-8, 2))


class _QueueFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["name"]
        self.depth = Gauge(
            "workqueue_depth", "Current depth of the work queue.", labels, registry=registry
        )
        self.adds = Counter(
            "workqueue_adds", "Items added to the work queue.", labels, registry=registry
        )
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "Seconds an item stays in the work queue before a worker gets it.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "Seconds a worker holds an item, from get to done.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.unfinished_work = Gauge(
            "workqueue_unfinished_work_seconds",
            "Seconds of work in progress that has not been observed by work_duration yet; "
            "large values mean stuck workers.",
            labels,
            registry=registry,
        )
        self.longest_running = Gauge(
            "workqueue_longest_running_processor_seconds",
            "Seconds the longest-running worker has held its item.",
            labels,
            registry=registry,
        )
        self.retries = Counter(
            "workqueue_retries", "Delayed and rate-limited adds.", labels, registry=registry
        )


_queue_families = PerRegistry(_QueueFamilies)


class _QueueMetrics:
    """One queue's children of the families, bound once: ``labels()`` is a locked lookup."""

    def __init__(self, families: _QueueFamilies, queue: WorkQueue[Any]) -> None:
        name = queue.name
        self.adds = families.adds.labels(name)
        self.queue_duration = families.queue_duration.labels(name)
        self.work_duration = families.work_duration.labels(name)
        self.retries = families.retries.labels(name)
        # Computed when scraped, so they need no bookkeeping on the hot path.  The registry
        # holds these functions for good: a weak reference lets a discarded queue go.
        queue_ref = weakref.ref(queue)

        def depth() -> int:
            live = queue_ref()
            return 0 if live is None else len(live)

        def processing_seconds() -> list[float]:
            live = queue_ref()
            return [] if live is None else live._processing_seconds()

        families.depth.labels(name).set_function(depth)
        families.unfinished_work.labels(name).set_function(lambda: sum(processing_seconds()))
        families.longest_running.labels(name).set_function(
            lambda: max(processing_seconds(), default=0.0)
        )


# -- the queue -------------------------------------------------------------------------------


class WorkQueue(Generic[T]):
    """See the module docstring.  Workers loop over ``item = await get()`` ... ``done(item)``.

    ``name`` labels the metrics and must be unique per registry; ``registry=None`` turns the
    metrics off.
    """

    def __init__(
        self,
        name: str,
        *,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.clock: Clock = clock or MonotonicClock()
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter(self.clock)

        self._queue: deque[T] = deque()  # ready items in the order they will be handed out
        self._dirty: set[T] = set()  # items that need processing: queued, or re-added while held
        self._processing: dict[T, float] = {}  # item -> when a worker got it
        self._dirty_since: dict[T, float] = {}  # item -> when it was added, for queue latency
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained = asyncio.Event()

        # Delayed adds: a heap of (ready_at, sequence, item) with lazy deletion; `_waiting`
        # holds each item's live entry, and the sequence breaks ties in insertion order.
        self._heap: list[tuple[float, int, T]] = []
        self._waiting: dict[T, tuple[float, int]] = {}
        self._sequence = itertools.count()
        self._timer: Timer | None = None
        self._timer_deadline = math.inf

        self._metrics: _QueueMetrics | None = None
        if registry is not None:
            self._metrics = _QueueMetrics(_queue_families(registry), self)

    def __len__(self) -> int:
        """Items ready to be handed out (not the ones held by workers or waiting on a delay)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        self._dirty_since[item] = self.clock.now()
        if self._metrics:
            self._metrics.adds.inc()
        if item in self._processing:
            return  # done() queues it again, so that no two workers hold it at once
        self._queue.append(item)
        self._wake_one_getter()

    async def get(self) -> T:
        """The next item; the caller must call :meth:`done` with it when finished."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            await self._wait_for_item()
        item = self._queue.popleft()
        self._dirty.discard(item)
        now = self._processing[item] = self.clock.now()
        added = self._dirty_since.pop(item)
        if self._metrics:
            self._metrics.queue_duration.observe(now - added)
        return item

    def done(self, item: T) -> None:
        """Release ``item``; if it was added again meanwhile, it is queued once more."""
        started = self._processing.pop(item, None)
        if started is None:
            return
        if self._metrics:
            self._metrics.work_duration.observe(self.clock.now() - started)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one_getter()
        elif self._shutting_down and not self._queue and not self._processing:
            self._drained.set()

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed; the earliest pending add wins."""
        if self._shutting_down:
            return
        if self._metrics:
            self._metrics.retries.inc()
        if delay <= 0:
            self.add(item)
            return
        ready_at = self.clock.now() + delay
        pending = self._waiting.get(item)
        if pending is not None and pending[0] <= ready_at:
            return
        sequence = next(self._sequence)
        self._waiting[item] = (ready_at, sequence)
        heapq.heappush(self._heap, (ready_at, sequence, item))
        self._arm_timer()

    def add_rate_limited(self, item: T) -> None:
        """Add ``item`` after the delay the rate limiter gives it (a retry after a failure)."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """``item`` succeeded: reset its backoff.  It is not removed from the queue."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    def shut_down(self) -> None:
        """Refuse new items and drop delayed ones; workers finish what is queued, then stop."""
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._waiting.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
        if not self._queue and not self._processing:
            self._drained.set()

    async def shut_down_with_drain(self) -> None:
        """:meth:`shut_down`, then wait until workers have processed every queued item.

        Hangs if no worker is left to process them; bound it with ``asyncio.timeout``.
        """
        self.shut_down()
        await self._drained.wait()

    # -- internals ---------------------------------------------------------------------------

    def _processing_seconds(self) -> list[float]:
        now = self.clock.now()
        return [now - started for started in self._processing.values()]

    async def _wait_for_item(self) -> None:
        getter = asyncio.get_running_loop().create_future()
        self._getters.append(getter)
        try:
            await getter
        except asyncio.CancelledError:
            if getter.done() and not getter.cancelled():
                # Woken for an item, then cancelled: pass the wakeup on, or the item would
                # sit in the queue while other workers keep waiting.
                self._wake_one_getter()
            else:
                getter.cancel()
                with contextlib.suppress(ValueError):  # already skipped by a wakeup
                    self._getters.remove(getter)
            raise

    def _wake_one_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _arm_timer(self) -> None:
        """Keep one timer armed for the earliest live delayed add."""
        while self._heap and self._waiting.get(self._heap[0][2]) != self._heap[0][:2]:
            heapq.heappop(self._heap)  # superseded by an earlier add_after of the same item
        deadline = self._heap[0][0] if self._heap else math.inf
        if deadline >= self._timer_deadline and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if self._heap:
            self._timer = self.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = math.inf
        now = self.clock.now()
        while self._heap and self._heap[0][0] <= now:
            ready_at, sequence, item = heapq.heappop(self._heap)
            if self._waiting.get(item) == (ready_at, sequence):
                del self._waiting[item]
                self.add(item)
        self._arm_timer()
