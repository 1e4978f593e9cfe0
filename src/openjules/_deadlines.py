"""Waiting with a time limit, without losing a cancellation.

``asyncio.wait_for`` on Python 3.11 runs the awaited thing as a task of its own, and when
the caller is cancelled just as that task finishes, it returns the result and drops the
cancellation. Stopping the server cancels its loops right after waking them (a change
heard, a wake-up set), which is exactly that moment: a loop went on as if never cancelled,
and ``serve`` waited for it forever after SIGTERM. ``asyncio.timeout`` awaits in the
caller's own task, where a cancellation always arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], *, seconds: float | None) -> T:
    """``await awaitable``; ``TimeoutError`` once ``seconds`` pass (None: no limit)."""
    async with asyncio.timeout(seconds):
        return await awaitable
