"""The scheduling queue: priority order, FIFO among equals, backoff, delays, no double hand-out."""

from __future__ import annotations

import asyncio

from clusternet.runtime.clock import FakeClock
from clusternet.scheduler.queue import SchedulingQueue


def drain(queue: SchedulingQueue[str]) -> list[str]:
    async def take() -> list[str]:
        items = []
        while len(queue):
            item = await queue.pop()
            queue.done(item)
            items.append(item)
        return items

    return asyncio.run(take())


def test_priority_then_fifo() -> None:
    queue: SchedulingQueue[str] = SchedulingQueue(clock=FakeClock())
    queue.add("low", 0)
    queue.add("high", 10)
    queue.add("also-low", None)
    queue.add("mid", 5)
    queue.add("high-2", 10)
    queue.add("low", 0)  # already queued: keeps its place
    assert drain(queue) == ["high", "high-2", "mid", "low", "also-low"]


def test_raising_the_priority_of_a_queued_key_moves_it_up() -> None:
    queue: SchedulingQueue[str] = SchedulingQueue(clock=FakeClock())
    queue.add("a", 0)
    queue.add("b", 0)
    queue.add("b", 9)
    assert drain(queue) == ["b", "a"]


def test_backoff_doubles_to_ten_seconds_and_resets() -> None:
    clock = FakeClock()
    queue: SchedulingQueue[str] = SchedulingQueue(clock=clock)
    delays = [queue.add_backoff("s") for _ in range(6)]
    assert delays == [1, 2, 4, 8, 10, 10]
    queue.forget("s")
    assert queue.add_backoff("s") == 1


def test_backoff_holds_the_key_until_due() -> None:
    clock = FakeClock()
    queue: SchedulingQueue[str] = SchedulingQueue(clock=clock)
    queue.add_backoff("s")
    queue.add_backoff("s")  # a later, longer delay does not postpone the earlier one
    assert len(queue) == 0
    clock.advance(0.9)
    assert len(queue) == 0
    clock.advance(0.1)
    assert drain(queue) == ["s"]


def test_an_immediate_add_cancels_a_pending_delay() -> None:
    clock = FakeClock()
    queue: SchedulingQueue[str] = SchedulingQueue(clock=clock)
    queue.add_after("s", 30)
    queue.add("s")
    assert drain(queue) == ["s"]
    clock.advance(30)
    assert len(queue) == 0


def test_a_key_added_while_held_comes_back_after_done() -> None:
    async def scenario() -> list[str]:
        queue: SchedulingQueue[str] = SchedulingQueue(clock=FakeClock())
        queue.add("s")
        held = await queue.pop()
        queue.add("s")
        assert len(queue) == 0  # not handed out twice
        queue.done(held)
        return [await queue.pop()]

    assert asyncio.run(scenario()) == ["s"]


def test_removed_keys_are_not_handed_out() -> None:
    clock = FakeClock()
    queue: SchedulingQueue[str] = SchedulingQueue(clock=clock)
    queue.add("gone")
    queue.add_after("later", 5)
    queue.add("kept")
    queue.remove("gone")
    queue.remove("later")
    clock.advance(5)
    assert drain(queue) == ["kept"]


def test_pop_waits_for_an_add() -> None:
    async def scenario() -> str:
        queue: SchedulingQueue[str] = SchedulingQueue(clock=FakeClock())
        waiter = asyncio.create_task(queue.pop())
        await asyncio.sleep(0)
        assert not waiter.done()
        queue.add("s")
        return await waiter

    assert asyncio.run(scenario()) == "s"
