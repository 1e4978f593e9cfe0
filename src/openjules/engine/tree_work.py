"""Threads for work over whole trees: checkouts, ownership walks, size walks, removals.

Such work takes tens of milliseconds to seconds per session. On the event loop's default
pool (a handful of threads) a burst of sessions starting together queues its checkouts in
front of every short blocking call of the sessions already working (reading a file for a
tool, a patch, the git lookups before a run's first model request), and the walks, which
are Python code, hold the GIL against the event loop serving the API. Here they take
turns on threads of their own, as many as the machine has cores.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class TreeWork:
    def __init__(self, *, threads: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=threads or os.cpu_count() or 1, thread_name_prefix="openjules-trees"
        )

    async def run(self, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``work(*args, **kwargs)`` on one of the pool's threads, in this task's context
        (the timing hook's observer goes with it, as with ``asyncio.to_thread``)."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Let the threads go once their work ends (a checkout in a thread cannot be
        interrupted; runs waited for theirs)."""
        self._pool.shutdown(wait=False)
