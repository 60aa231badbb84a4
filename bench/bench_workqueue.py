"""Throughput of the work queue and of reconcile workers (a benchmark, not a test).

    python bench/bench_workqueue.py [--items 50000] [--io-items 2000]

Columns: raw get/done through the queue with metrics off and on; reconciles per second with a
reconcile that only yields to the loop, and with one that awaits 1 ms of simulated I/O (where
more workers should help, as they overlap their waits).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from clusternet.runtime import QueueShutDown, WorkQueue, run_workers

WORKER_COUNTS = (1, 4, 16)


async def _fill_and_drain(
    queue: WorkQueue[int], items: int, consume: Callable[[], Coroutine[Any, Any, None]]
) -> float:
    """Items per second: add ``items`` distinct keys while ``consume`` processes them."""
    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for key in range(items):
        queue.add(key)
        if key % 64 == 0:
            await asyncio.sleep(0)  # let workers run alongside the producer, as in a controller
    await queue.shut_down_with_drain()
    await consumer
    return items / (time.perf_counter() - started)


async def queue_throughput(items: int, workers: int, *, metrics: bool) -> float:
    queue: WorkQueue[int] = WorkQueue("bench", registry=CollectorRegistry() if metrics else None)

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            queue.done(key)

    async def consume() -> None:
        await asyncio.gather(*(worker() for _ in range(workers)))

    return await _fill_and_drain(queue, items, consume)


async def reconcile_throughput(items: int, workers: int, *, io_seconds: float) -> float:
    registry = CollectorRegistry()  # metrics on, as in a controller process
    queue: WorkQueue[int] = WorkQueue("bench", registry=registry)

    async def reconcile(key: int) -> None:
        await asyncio.sleep(io_seconds)

    return await _fill_and_drain(
        queue, items, lambda: run_workers(queue, reconcile, workers=workers, registry=registry)
    )


async def main(items: int, io_items: int) -> None:
    header = (
        f"{'workers':>7} | {'queue/s':>10} | {'queue+metrics/s':>15} | "
        f"{'reconcile/s':>11} | {'reconcile 1ms I/O/s':>19}"
    )
    print(header)
    print("-" * len(header))
    for workers in WORKER_COUNTS:
        bare = await queue_throughput(items, workers, metrics=False)
        measured = await queue_throughput(items, workers, metrics=True)
        reconciles = await reconcile_throughput(items, workers, io_seconds=0)
        with_io = await reconcile_throughput(io_items, workers, io_seconds=0.001)
        print(
            f"{workers:>7} | {bare:>10,.0f} | {measured:>15,.0f} | "
            f"{reconciles:>11,.0f} | {with_io:>19,.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--io-items", type=int, default=2_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.items, arguments.io_items))
