"""Workers that drain a :class:`~clusternet.runtime.workqueue.WorkQueue` into a reconcile function.

The contract is client-go's controller loop (and controller-runtime's ``Result``):

* the reconcile function raises -> the error is logged and the key is retried with backoff
  (``add_rate_limited``); a :class:`StaleCache` or a 409 ``Conflict`` (optimistic
  concurrency: the cache was behind a write, the retry reads the newer object) is expected
  and logged at info, every other error at error level with its traceback;
* it returns ``None`` or ``Result()`` -> the key's backoff is reset (``forget``);
* it returns ``Result(requeue_after=s)`` -> backoff reset, and the key comes back in ``s``
  seconds (periodic resync of one object).

While a key is reconciled, ``controller`` and ``key`` are bound in the structlog contextvars,
so every log line of the reconcile function carries them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from clusternet.kube import Conflict
from clusternet.runtime.metrics import PerRegistry
from clusternet.runtime.workqueue import QueueShutDown, WorkQueue

K = TypeVar("K", bound=Hashable)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """What a successful reconcile asks for; ``requeue_after`` in seconds."""

    requeue_after: float | None = None


Reconcile = Callable[[K], Awaitable[Result | None]]


class StaleCache(Exception):
    """A write found the informer cache behind (Conflict, AlreadyExists): the key is retried
    with backoff, without waiting for an event the controller's filters may ignore, and
    logged at info (it is expected with optimistic concurrency, not an error)."""


def expected_retry(err: BaseException) -> bool:
    """Whether a reconcile error is optimistic concurrency at work rather than a failure: a
    :class:`StaleCache`, or a ``Conflict`` (raised, or the cause of what was raised)."""
    return isinstance(err, StaleCache | Conflict) or isinstance(err.__cause__, Conflict)


class _ReconcileFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter(
            "clusternet_reconcile",
            "Reconciles by outcome: success, error or requeue_after.",
            ["controller", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "clusternet_reconcile_errors",
            "Reconciles that raised.",
            ["controller"],
            registry=registry,
        )
        self.duration = Histogram(
            "clusternet_reconcile_duration_seconds",
            "Seconds per reconcile, failed ones included.",
            ["controller"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.active_workers = Gauge(
            "clusternet_reconcile_active_workers",
            "Workers busy reconciling a key right now.",
            ["controller"],
            registry=registry,
        )


_reconcile_families = PerRegistry(_ReconcileFamilies)


class _ControllerMetrics:
    """One controller's children of the families, bound once: ``labels()`` is a locked lookup.

    All of them are created up front, so that the series exist (at zero) before the first
    error: alerts on ``rate(...errors_total)`` need them.
    """

    def __init__(self, families: _ReconcileFamilies, controller: str) -> None:
        self.outcomes = {
            outcome: families.total.labels(controller, outcome)
            for outcome in ("success", "error", "requeue_after")
        }
        self.errors = families.errors.labels(controller)
        self.duration = families.duration.labels(controller)
        self.active_workers = families.active_workers.labels(controller)


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Reconcile[K],
    *,
    workers: int = 1,
    registry: CollectorRegistry | None = REGISTRY,
) -> None:
    """Reconcile keys from ``queue`` with ``workers`` concurrent workers.

    Returns once the queue is shut down and its queued keys are processed; cancel the call
    to stop at once (keys being reconciled are released with ``done``, not retried).  The
    queue guarantees that no key is reconciled by two workers at the same time.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    metrics = None
    if registry is not None:
        metrics = _ControllerMetrics(_reconcile_families(registry), queue.name)
    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(_work(queue, reconcile, metrics))


async def _work(
    queue: WorkQueue[K], reconcile: Reconcile[K], metrics: _ControllerMetrics | None
) -> None:
    while True:
        try:
            key = await queue.get()
        except QueueShutDown:
            return
        try:
            await _reconcile_one(queue, reconcile, key, metrics)
        finally:
            queue.done(key)
        # get() does not suspend while keys are queued: without this, a reconcile that never
        # awaits, or a key that requeues itself at once, would starve the event loop.
        await asyncio.sleep(0)


async def _reconcile_one(
    queue: WorkQueue[K], reconcile: Reconcile[K], key: K, metrics: _ControllerMetrics | None
) -> None:
    started = queue.clock.now()
    if metrics:
        metrics.active_workers.inc()
    try:
        with structlog.contextvars.bound_contextvars(controller=queue.name, key=key):
            try:
                result = await reconcile(key)
            except Exception as err:
                queue.add_rate_limited(key)
                if expected_retry(err):
                    log.info(
                        "reconcile retried: the cache was behind a write",
                        reason=str(err),
                        requeues=queue.num_requeues(key),
                    )
                else:
                    log.exception("reconcile failed", requeues=queue.num_requeues(key))
                outcome = "error"
            else:
                queue.forget(key)
                if result is not None and result.requeue_after is not None:
                    queue.add_after(key, result.requeue_after)
                    outcome = "requeue_after"
                else:
                    outcome = "success"
        if metrics:
            metrics.outcomes[outcome].inc()
            if outcome == "error":
                metrics.errors.inc()
    finally:
        if metrics:
            metrics.active_workers.dec()
            metrics.duration.observe(queue.clock.now() - started)
