"""Reconcile workers: the client-go controller loop contract on top of the work queue."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from clusternet.kube import Conflict, NotFound
from clusternet.runtime.clock import FakeClock
from clusternet.runtime.reconcile import Reconcile, Result, StaleCache, run_workers
from clusternet.runtime.workqueue import ItemExponentialFailureRateLimiter, WorkQueue


class ObservedQueue(WorkQueue[str]):
    """Tells when a worker has finished with a key: outcome handled, key released."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.released: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def done(self, item: str) -> None:
        super().done(item)
        self.released[item].set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def queue(clock: FakeClock, registry: CollectorRegistry) -> ObservedQueue:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    return ObservedQueue("ctl", clock=clock, registry=registry, rate_limiter=limiter)


async def test_a_key_is_never_reconciled_by_two_workers_and_no_add_is_lost(
    queue: WorkQueue[str], registry: CollectorRegistry
) -> None:
    keys = [f"key-{i}" for i in range(5)]
    step = itertools.count()  # a global order of adds and reconcile starts
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}
    in_flight: set[str] = set()
    overlaps: list[str] = []
    most_concurrent = 0
    rng = random.Random(7)

    async def reconcile(key: str) -> None:
        nonlocal most_concurrent
        if key in in_flight:
            overlaps.append(key)
        in_flight.add(key)
        most_concurrent = max(most_concurrent, len(in_flight))
        last_start[key] = next(step)
        for _ in range(rng.randint(1, 4)):
            await asyncio.sleep(0)
        in_flight.discard(key)

    workers = asyncio.create_task(run_workers(queue, reconcile, workers=8, registry=registry))
    for _ in range(400):
        key = rng.choice(keys)
        queue.add(key)
        last_add[key] = next(step)
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    await queue.shut_down_with_drain()
    async with asyncio.timeout(5):
        await workers

    assert overlaps == []
    assert most_concurrent > 1, "the test must actually run keys concurrently"
    for key, added in last_add.items():
        assert last_start[key] > added, f"{key} was added after its last reconcile started"


async def test_run_workers_returns_after_the_queue_is_shut_down(
    queue: WorkQueue[str], registry: CollectorRegistry
) -> None:
    reconciled: list[str] = []

    async def reconcile(key: str) -> None:
        reconciled.append(key)

    for key in ["a", "b", "c"]:
        queue.add(key)
    queue.shut_down()
    async with asyncio.timeout(5):
        await run_workers(queue, reconcile, workers=2, registry=registry)
    assert sorted(reconciled) == ["a", "b", "c"]


async def fail(key: str) -> Result | None:
    raise RuntimeError(f"cannot reconcile {key}")


async def succeed(key: str) -> Result | None:
    return None


async def succeed_with_empty_result(key: str) -> Result | None:
    return Result()


async def requeue_in_30s(key: str) -> Result | None:
    return Result(requeue_after=30.0)


@pytest.mark.parametrize(
    ("reconcile", "outcome", "requeues_after", "back_after"),
    [
        # Two earlier failures: backoff 0.005 * 2**2 for the third.
        (fail, "error", 3, 0.02),
        (succeed, "success", 0, None),
        (succeed_with_empty_result, "success", 0, None),
        (requeue_in_30s, "requeue_after", 0, 30.0),
    ],
)
async def test_outcome_of_a_reconcile(
    queue: ObservedQueue,
    clock: FakeClock,
    registry: CollectorRegistry,
    reconcile: Reconcile[str],
    outcome: str,
    requeues_after: int,
    back_after: float | None,
) -> None:
    queue.rate_limiter.when("a")
    queue.rate_limiter.when("a")
    queue.add("a")
    with structlog.testing.capture_logs() as logs:
        workers = asyncio.create_task(run_workers(queue, reconcile, registry=registry))
        await queue.released["a"].wait()
    workers.cancel()

    assert queue.num_requeues("a") == requeues_after
    for result in ("success", "error", "requeue_after"):
        labels = {"controller": "ctl", "result": result}
        count = registry.get_sample_value("clusternet_reconcile_total", labels)
        assert count == (1 if result == outcome else 0), result
    errors = registry.get_sample_value("clusternet_reconcile_errors_total", {"controller": "ctl"})
    assert errors == (1 if outcome == "error" else 0)
    failures = [entry for entry in logs if entry["event"] == "reconcile failed"]
    assert len(failures) == (1 if outcome == "error" else 0)
    assert len(queue) == 0
    if back_after is None:
        assert clock.pending_timers == 0
    else:
        clock.advance(back_after - 0.001)
        assert len(queue) == 0
        clock.advance(0.001)
        assert len(queue) == 1


async def test_failure_is_logged_with_controller_and_key(queue: ObservedQueue) -> None:
    queue.add("ns/name")
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        workers = asyncio.create_task(run_workers(queue, fail, registry=None))
        await queue.released["ns/name"].wait()
    workers.cancel()
    [entry] = logs
    assert entry["event"] == "reconcile failed"
    assert entry["controller"] == "ctl"
    assert entry["key"] == "ns/name"
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is True


def _conflict() -> Conflict:
    return Conflict(409, {"reason": "Conflict", "message": "the object has been modified"})


def _raising(err: Exception) -> Callable[[], None]:
    def raise_it() -> None:
        raise err

    return raise_it


def _raise_from_conflict() -> None:
    try:
        raise _conflict()
    except Conflict as err:
        raise StaleCache("ns/name: the cache is behind") from err


def _raise_from_not_found() -> None:
    try:
        raise NotFound(404, {"reason": "NotFound", "message": "gone"})
    except NotFound as err:
        raise RuntimeError("writing ns/name failed") from err


@pytest.mark.parametrize(
    ("case", "error", "level"),
    [
        ("a Conflict is optimistic concurrency at work", _raising(_conflict()), "info"),
        ("so is StaleCache", _raising(StaleCache("behind")), "info"),
        ("and an error caused by a Conflict", _raise_from_conflict, "info"),
        ("anything else is an error", _raising(RuntimeError("boom")), "error"),
        ("even when caused by another API error", _raise_from_not_found, "error"),
    ],
)
async def test_an_expected_retry_is_logged_at_info_and_still_retried(
    queue: ObservedQueue, case: str, error: Callable[[], None], level: str
) -> None:
    async def reconcile(key: str) -> None:
        error()

    queue.add("ns/name")
    with structlog.testing.capture_logs() as logs:
        workers = asyncio.create_task(run_workers(queue, reconcile, registry=None))
        await queue.released["ns/name"].wait()
    workers.cancel()
    [entry] = logs
    assert entry["log_level"] == level, case
    assert ("exc_info" in entry) == (level == "error"), case
    assert queue.num_requeues("ns/name") == 1, case  # retried with backoff either way


async def test_reconcile_duration_is_measured_on_the_queue_clock(
    queue: WorkQueue[str], clock: FakeClock, registry: CollectorRegistry
) -> None:
    async def slow(key: str) -> None:
        clock.advance(2.5)

    queue.add("a")
    queue.add("b")
    queue.shut_down()
    await run_workers(queue, slow, registry=registry)
    labels = {"controller": "ctl"}
    assert registry.get_sample_value("clusternet_reconcile_duration_seconds_count", labels) == 2
    assert registry.get_sample_value("clusternet_reconcile_duration_seconds_sum", labels) == 5.0
    assert registry.get_sample_value("clusternet_reconcile_active_workers", labels) == 0


async def test_cancelling_the_workers_releases_the_key_being_reconciled(
    queue: WorkQueue[str],
) -> None:
    started = asyncio.Event()

    async def hang(key: str) -> None:
        started.set()
        await asyncio.Event().wait()

    queue.add("a")
    workers = asyncio.create_task(run_workers(queue, hang, registry=None))
    await started.wait()
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    queue.add("a")
    assert len(queue) == 1, "a key still marked as processing would be held back"


@pytest.mark.timeout(30)  # a starved event loop cannot end the test any other way
async def test_a_key_that_requeues_itself_at_once_does_not_starve_the_loop(
    queue: WorkQueue[str],
) -> None:
    reconciles = 0
    hundred_done = asyncio.Event()

    async def again(key: str) -> Result:  # never suspends
        nonlocal reconciles
        reconciles += 1
        if reconciles == 100:
            hundred_done.set()
        return Result(requeue_after=0)

    queue.add("a")
    workers = asyncio.create_task(run_workers(queue, again, registry=None))
    await hundred_done.wait()
    workers.cancel()


async def test_workers_must_be_positive(queue: WorkQueue[str]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await run_workers(queue, succeed, workers=0)
