"""Work that must reach its end even when whoever awaits it is cancelled.

A session's run is cancelled when the session is cancelled, paused or deleted, or the
server stops. Some of what it has started cannot be left half-done: a killed command must
be waited for (and its tree's watch ended), git work in a thread cannot be interrupted
anyway, and a workspace half-removed or a spare tree half-built would be worse than either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """Await ``work`` to its end, however often the caller is cancelled meanwhile, then let
    the cancellation go on; it wins over whatever ``work`` raised."""
    task = asyncio.ensure_future(work)
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            interrupted = interrupted or not task.done()
        except Exception:
            pass
    if interrupted:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise asyncio.CancelledError
    return task.result()
