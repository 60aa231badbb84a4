"""The work queue against client-go's semantics; time is a FakeClock, never a sleep."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from clusternet.runtime.clock import FakeClock
from clusternet.runtime.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    QueueShutDown,
    RateLimiter,
    WorkQueue,
    default_controller_rate_limiter,
)

MakeQueue = Callable[..., WorkQueue[str]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_queue(clock: FakeClock, registry: CollectorRegistry) -> MakeQueue:
    def make(rate_limiter: RateLimiter | None = None) -> WorkQueue[str]:
        return WorkQueue("test", clock=clock, registry=registry, rate_limiter=rate_limiter)

    return make


async def drain_ready(queue: WorkQueue[str]) -> list[str]:
    """Get and release every item that is ready now, in order."""
    items = []
    while len(queue):
        item = await queue.get()
        queue.done(item)
        items.append(item)
    return items


async def yield_to_other_tasks() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        (["a"], ["a"]),
        (["a", "a", "a"], ["a"]),
        (["a", "b", "a", "c", "b"], ["a", "b", "c"]),
    ],
)
async def test_items_added_while_waiting_are_handed_out_once_in_order(
    make_queue: MakeQueue, adds: list[str], expected: list[str]
) -> None:
    queue = make_queue()
    for item in adds:
        queue.add(item)
    assert await drain_ready(queue) == expected


async def test_item_re_added_while_processing_is_held_back_until_done(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "a second worker must not get an item that is being processed"
    queue.done("a")
    assert await drain_ready(queue) == ["a"]


async def test_done_without_re_add_does_not_requeue(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0


async def test_get_waits_for_an_add(make_queue: MakeQueue) -> None:
    queue = make_queue()
    getter = asyncio.create_task(queue.get())
    await yield_to_other_tasks()
    assert not getter.done()
    queue.add("a")
    assert await getter == "a"


async def test_a_cancelled_getter_passes_its_wakeup_on(make_queue: MakeQueue) -> None:
    queue = make_queue()
    first, second = asyncio.create_task(queue.get()), asyncio.create_task(queue.get())
    await yield_to_other_tasks()
    queue.add("a")  # wakes `first`, which is cancelled before it can take the item
    first.cancel()
    async with asyncio.timeout(5):
        assert await second == "a"
    assert first.cancelled()


@pytest.mark.parametrize(
    ("base", "maximum", "expected_delays"),
    [
        (0.005, 1000.0, [0.005, 0.01, 0.02, 0.04, 0.08, 0.16]),
        (1.0, 10.0, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),
        (0.5, 0.5, [0.5, 0.5, 0.5]),
    ],
)
def test_exponential_backoff_sequence(
    base: float, maximum: float, expected_delays: list[float]
) -> None:
    limiter = ItemExponentialFailureRateLimiter(base, maximum)
    assert [limiter.when("a") for _ in expected_delays] == expected_delays
    assert limiter.num_requeues("a") == len(expected_delays)
    assert limiter.when("b") == base, "backoff is per item"
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == base


def test_exponential_backoff_stays_at_the_maximum_beyond_float_range() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(1100)]
    assert delays[-1] == 1000.0


# (seconds to advance before the call, expected delay); qps 10, burst 3.
TOKEN_BUCKET_STEPS = [
    (0.0, 0.0),
    (0.0, 0.0),
    (0.0, 0.0),  # burst used up
    (0.0, 0.1),  # one token refills every 0.1 s
    (0.0, 0.2),  # reservations queue up behind each other
    (0.2, 0.1),  # 0.2 s refilled the two borrowed tokens; this one waits for the next
    (10.0, 0.0),  # refill is capped at the burst...
    (0.0, 0.0),
    (0.0, 0.0),
    (0.0, 0.1),  # ...so a long idle time does not allow more than `burst` at once
]


def test_token_bucket(clock: FakeClock) -> None:
    limiter = BucketRateLimiter(qps=10, burst=3, clock=clock)
    delays = []
    for advance, _ in TOKEN_BUCKET_STEPS:
        clock.advance(advance)
        delays.append(limiter.when("any"))
    assert delays == pytest.approx([expected for _, expected in TOKEN_BUCKET_STEPS])


def test_default_controller_rate_limiter_is_the_max_of_backoff_and_bucket(
    clock: FakeClock,
) -> None:
    limiter = default_controller_rate_limiter(clock)
    # 100 distinct items fit the burst: each gets its first backoff step.
    assert {limiter.when(f"item-{i}") for i in range(100)} == {0.005}
    # The 101st waits for the bucket (10 qps), which is longer than its backoff.
    assert limiter.when("item-100") == pytest.approx(0.1)
    clock.advance(100)
    assert [limiter.when("item-0") for _ in range(3)] == [0.01, 0.02, 0.04]
    assert limiter.num_requeues("item-0") == 4
    limiter.forget("item-0")
    assert limiter.num_requeues("item-0") == 0


async def test_add_after_hands_items_out_by_deadline_then_insertion_order(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    for item, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0)]:
        queue.add_after(item, delay)
    assert clock.pending_timers == 1, "one timer for the earliest deadline, no polling"
    assert len(queue) == 0
    clock.advance(0.999)
    assert len(queue) == 0
    clock.advance(0.001)
    assert await drain_ready(queue) == ["a"]
    clock.advance(1.0)
    assert await drain_ready(queue) == ["b", "b2"]
    clock.advance(5.0)
    assert await drain_ready(queue) == ["c"]
    assert clock.pending_timers == 0


@pytest.mark.parametrize(
    ("first_delay", "second_delay", "ready_after"),
    [
        (5.0, 1.0, 1.0),  # an earlier deadline replaces the pending one
        (1.0, 5.0, 1.0),  # a later one is ignored
    ],
)
async def test_add_after_of_a_waiting_item_keeps_the_earliest_deadline(
    make_queue: MakeQueue,
    clock: FakeClock,
    first_delay: float,
    second_delay: float,
    ready_after: float,
) -> None:
    queue = make_queue()
    queue.add_after("a", first_delay)
    queue.add_after("a", second_delay)
    clock.advance(ready_after)
    assert await drain_ready(queue) == ["a"]
    clock.advance(10.0)
    assert len(queue) == 0, "the superseded deadline must not add the item again"


async def test_add_after_without_delay_adds_at_once(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.add_after("a", 0)
    queue.add_after("b", -1)
    assert await drain_ready(queue) == ["a", "b"]


async def test_add_after_with_the_real_clock() -> None:
    queue: WorkQueue[str] = WorkQueue("real-clock", registry=None)
    queue.add_after("late", 0.02)
    queue.add_after("early", 0.01)
    async with asyncio.timeout(5):
        assert [await queue.get(), await queue.get()] == ["early", "late"]


async def test_add_rate_limited_backs_off_per_item(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue(rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000.0))
    for expected_delay in [0.005, 0.01, 0.02]:
        queue.add_rate_limited("a")
        clock.advance(expected_delay - 0.001)
        assert len(queue) == 0
        clock.advance(0.001)
        assert await drain_ready(queue) == ["a"]
    assert queue.num_requeues("a") == 3
    queue.forget("a")
    assert queue.num_requeues("a") == 0


async def test_shut_down_hands_out_queued_items_then_raises(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue()
    queue.add("a")
    queue.add_after("delayed", 1.0)
    queue.shut_down()
    queue.add("ignored")
    queue.add_after("ignored-too", 1.0)
    clock.advance(10.0)
    assert clock.pending_timers == 0
    assert await drain_ready(queue) == ["a"]
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_shut_down_wakes_waiting_getters(make_queue: MakeQueue) -> None:
    queue = make_queue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await yield_to_other_tasks()
    queue.shut_down()
    results = await asyncio.gather(*getters, return_exceptions=True)
    assert all(isinstance(result, QueueShutDown) for result in results)


async def test_shut_down_with_drain_waits_for_queued_and_held_items(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue()
    queue.add("held")
    assert await queue.get() == "held"
    queue.add("held")  # dirty: must be processed again before the queue is drained
    queue.add("queued")
    drain = asyncio.create_task(queue.shut_down_with_drain())
    processed = []
    queue.done("held")
    while len(queue):
        item = await queue.get()
        await yield_to_other_tasks()
        assert not drain.done(), f"drained while {item!r} is still being processed"
        processed.append(item)
        queue.done(item)
    async with asyncio.timeout(5):
        await drain
    assert processed == ["queued", "held"]
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_shut_down_with_drain_of_an_idle_queue_returns_at_once(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue()
    async with asyncio.timeout(5):
        await queue.shut_down_with_drain()


async def test_metrics(
    make_queue: MakeQueue, clock: FakeClock, registry: CollectorRegistry
) -> None:
    def sample(metric: str) -> float | None:
        return registry.get_sample_value(metric, {"name": "test"})

    queue = make_queue(rate_limiter=ItemExponentialFailureRateLimiter(1.0, 10.0))
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert sample("workqueue_adds_total") == 2
    assert sample("workqueue_depth") == 2

    clock.advance(2.0)
    await queue.get()
    assert sample("workqueue_depth") == 1
    assert sample("workqueue_queue_duration_seconds_count") == 1
    assert sample("workqueue_queue_duration_seconds_sum") == 2.0

    clock.advance(1.0)
    await queue.get()
    clock.advance(3.0)
    assert sample("workqueue_unfinished_work_seconds") == 4.0 + 3.0
    assert sample("workqueue_longest_running_processor_seconds") == 4.0
    queue.done("a")
    queue.done("b")
    assert sample("workqueue_work_duration_seconds_sum") == 7.0
    assert sample("workqueue_unfinished_work_seconds") == 0
    assert sample("workqueue_longest_running_processor_seconds") == 0

    queue.add_rate_limited("a")
    queue.add_after("b", 5.0)
    assert sample("workqueue_retries_total") == 2


async def test_metrics_do_not_keep_a_discarded_queue_alive(
    make_queue: MakeQueue, registry: CollectorRegistry
) -> None:
    queue = make_queue()
    queue.add("a")
    alive = weakref.ref(queue)
    del queue
    gc.collect()
    assert alive() is None
    assert registry.get_sample_value("workqueue_depth", {"name": "test"}) == 0
