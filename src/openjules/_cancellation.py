"""Waiting on tasks and time limits without losing a cancellation.

``asyncio.wait_for`` on Python 3.11 runs the awaited thing as a task of its own, and when
the caller is cancelled just as that task finishes, it returns the result and drops the
cancellation. Stopping the server cancels its loops right after waking them (a change
heard, a wake-up set), which is exactly that moment: a loop went on as if never cancelled,
and ``serve`` waited for it forever after SIGTERM. ``asyncio.timeout`` awaits in the
caller's own task, where a cancellation always arrives.

Likewise ``with suppress(CancelledError): await task`` after ``task.cancel()`` absorbs a
cancellation of the caller itself along with the task's: a stop under a time limit, or a
stream's handler cancelled while it stops its helpers, would go on as if never cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], *, seconds: float | None) -> T:
    """``await awaitable``; ``TimeoutError`` once ``seconds`` pass (None: no limit)."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel each task, then wait until each has ended; what one raises other than its
    cancellation is raised here. A cancellation of the caller is raised at once (the tasks
    have all been told to stop)."""
    stopping = list(tasks)
    for task in stopping:
        task.cancel()
    for task in stopping:
        try:
            await task
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling():
                raise
