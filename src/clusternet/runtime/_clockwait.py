"""Waiting on an injected :class:`Clock`, so that tests step time instead of sleeping.

``asyncio.sleep`` and ``asyncio.timeout`` follow the event loop's clock; these follow the
given one, which is the loop's in production and a :class:`FakeClock` in unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from clusternet.runtime.clock import Clock

T = TypeVar("T")


async def sleep(clock: Clock, seconds: float) -> None:
    woken = asyncio.get_running_loop().create_future()
    timer = clock.call_at(clock.now() + seconds, lambda: _resolve(woken))
    try:
        await woken
    finally:
        timer.cancel()


async def before(clock: Clock, deadline: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; once ``clock`` reaches ``deadline`` cancel it, raise TimeoutError."""
    task = asyncio.ensure_future(awaitable)
    expired = asyncio.get_running_loop().create_future()
    timer = clock.call_at(deadline, lambda: _resolve(expired))
    try:
        await asyncio.wait({task, expired}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        expired.cancel()
        if not task.done():
            await cancel_and_wait(task)
    if task.cancelled():
        raise TimeoutError
    return task.result()


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has finished, whatever it raises."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
