"""Sessions of one source that start at once share one fetch into its mirror.

Every session run brings the source's mirror up to date before it checks out its tree
(``workspace.sync_mirror``), and syncs of one mirror take turns under a file lock. A
hundred sessions created together would queue a hundred fetches one behind the other,
each holding a thread of the event loop's small pool while it waits for the lock: the
last session would start many seconds late, and the patches and checkouts of the running
ones would wait for threads too.

So in a process, a run joins the next fetch to *start*: one that began after the run asked
(a fetch already under way may have missed a commit pushed just before), and everyone who
asks while a fetch runs shares the one after it. Waiting costs no thread. The file lock
still orders syncs of several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path


class MirrorSyncs:
    def __init__(self) -> None:
        # Per mirror: the fetch under way, and the one that the runs asking now will share.
        self._running: dict[Path, asyncio.Task[None]] = {}
        self._next: dict[Path, asyncio.Task[None]] = {}

    async def sync(self, mirror: Path, fetch: Callable[[], None]) -> None:
        """Run ``fetch`` (blocking; it is run in a thread) or share one that starts after
        this call; raises what that fetch raised. Cancelling the caller stops its wait,
        not a fetch others share."""
        shared = self._next.get(mirror)
        if shared is None:
            shared = asyncio.create_task(
                self._after(self._running.get(mirror), mirror, fetch),
                name=f"openjules-mirror-sync:{mirror.name}",
            )
            # Its outcome belongs to its waiters; if every one of them was cancelled,
            # nobody retrieves it and asyncio would log it as never retrieved.
            shared.add_done_callback(_retrieve)
            self._next[mirror] = shared
        await asyncio.shield(shared)

    async def _after(
        self, previous: asyncio.Task[None] | None, mirror: Path, fetch: Callable[[], None]
    ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)  # its result is its own waiters'
        me = asyncio.current_task()
        assert me is not None
        # From now on, a run that asks joins a later fetch: this one may start too early.
        if self._next.get(mirror) is me:
            del self._next[mirror]
        self._running[mirror] = me
        try:
            await asyncio.to_thread(fetch)
        finally:
            if self._running.get(mirror) is me:
                del self._running[mirror]


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
