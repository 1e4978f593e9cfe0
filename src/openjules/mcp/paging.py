"""The first few items of the SDK's auto-paging lists (they page on as long as asked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def take(items: AsyncIterator[T], count: int) -> list[T]:
    """Up to ``count`` items; the rest is never fetched (the SDK's async generator is closed
    here, not left to the garbage collector mid-request)."""
    taken: list[T] = []
    try:
        async for item in items:
            taken.append(item)
            if len(taken) >= count:
                break
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
    return taken
