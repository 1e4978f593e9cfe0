"""``with`` support for the test kit's background things (servers, proxies)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

# How long starting, stopping or one ``_call`` into a loop thread may take.
LOOP_TIMEOUT_S = 10.0


class Background:
    """Something with ``start() -> Self`` and ``stop()``; ``with`` starts and stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LoopThread(Background):
    """A background thing whose work runs in its own event loop on a daemon thread.
    Subclasses give ``_open()`` (run in the loop by ``start``) and ``_shut()`` (by ``stop``,
    before the loop ends) and reach the loop from any thread with ``_call``."""

    def __init__(self, *, thread_name: str) -> None:
        self._thread_name = thread_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _open(self) -> None:
        raise NotImplementedError

    async def _shut(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=self._thread_name, daemon=True
        )
        self._thread.start()
        self._call(self._open())
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._call(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=LOOP_TIMEOUT_S)
        self._loop.close()
        self._loop = None
        self._thread = None

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the loop and wait for it (from any other thread)."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError(f"{self._thread_name}: start() it first")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        future.result(timeout=LOOP_TIMEOUT_S)
